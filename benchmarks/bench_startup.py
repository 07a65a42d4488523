"""How long `python app.py` takes to serve its page as a new user first starts it offline, and
what its log says on the way.

The set-up the issue names (22): only the default style's weights in ANIMEGAN_WEIGHTS_DIR (the
project's test weights, tests/data/proxy_toon.pt, as face_paint_512_v2.pt: the published
network, so the same work as the real style), a fresh Hugging Face cache (nothing cached, int8
not built), HF_HUB_OFFLINE *unset* and no network to reach (on a machine that has one, point
--endpoint at a closed port; the GitHub-hosted styles still try github.com). The clock starts
when `python app.py` is launched and stops when GET / answers with the page. The log is then
read after --after seconds (the background work: the gallery, the fast backend's choice).

    python benchmarks/bench_startup.py                 # 3 runs
    python benchmarks/bench_startup.py --runs 5 --after 60

Prints one JSON line: each run's seconds, the median, the log's lines and warnings, the load
average at the start of each run (the machine may be shared) and the CPU model.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROXY = ROOT / "tests" / "data" / "proxy_toon.pt"
DEVELOPER_WARNINGS = re.compile(r"FutureWarning|DeprecationWarning|DependencyWarning|UserWarning|Traceback")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(after: float, endpoint: str | None) -> dict:
    home = Path(tempfile.mkdtemp(prefix="animegan-startup-"))
    try:
        weights = home / "weights"
        weights.mkdir()
        shutil.copy(PROXY, weights / "face_paint_512_v2.pt")  # the test weights, as the default style
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "ANIMEGAN_", "GRADIO_"))}
        env.update(ANIMEGAN_WEIGHTS_DIR=str(weights), HF_HOME=str(home / "hf"), GRADIO_SERVER_NAME="127.0.0.1",
                   GRADIO_SERVER_PORT=str(port), GRADIO_TEMP_DIR=str(home / "gradio"), PYTHONUNBUFFERED="1")
        if endpoint:
            env["HF_ENDPOINT"] = endpoint
        load = os.getloadavg()[0]
        with open(home / "app.log", "wb") as log:
            start = time.perf_counter()
            proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log,
                                    stderr=subprocess.STDOUT)
        seconds = None
        try:
            while time.perf_counter() - start < 120 and proc.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                        if r.status == 200 and b"AnimeGAN" in r.read():
                            seconds = time.perf_counter() - start
                            break
                except OSError:
                    time.sleep(0.05)
            time.sleep(after)
        finally:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        text = (home / "app.log").read_text(errors="replace")
        lines = text.splitlines()
        return {"seconds": None if seconds is None else round(seconds, 2), "load": round(load, 2),
                "log_lines": len(lines), "warnings": sum("WARNING" in line for line in lines),
                "developer_warnings": len(DEVELOPER_WARNINGS.findall(text))}
    finally:
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--after", type=float, default=5.0, help="seconds of log kept after the page answers")
    p.add_argument("--endpoint", help="HF_ENDPOINT for the app (a closed port where the machine is online)")
    args = p.parse_args()
    runs = [one_run(args.after, args.endpoint) for _ in range(args.runs)]
    times = [r["seconds"] for r in runs if r["seconds"] is not None]
    print(json.dumps({"median_s": statistics.median(times) if times else None, "runs": runs, "cpu": cpu_model(),
                      "cpus": os.cpu_count(), "python": sys.version.split()[0]}))


if __name__ == "__main__":
    main()
