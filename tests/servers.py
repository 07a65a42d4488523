"""Start the test app (tests/live_app.py) in a real subprocess on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def live_app(weights_dir: Path, log: Path, **env_extra: str):
    """Yield the base URL of a running app; stop it (and show its log on failure) after."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), ANIMEGAN_WEIGHTS_DIR=str(weights_dir), HF_HUB_OFFLINE="1",
               GRADIO_ANALYTICS_ENABLED="False", **env_extra)
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "live_app.py"), str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the app exited early:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/config", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the app did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
