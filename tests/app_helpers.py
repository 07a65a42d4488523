"""Run the real app (``python app.py``) in a subprocess, and drive it from Chromium.

Used by test_app.py, test_browser.py and benchmarks/bench_app_latency.py.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "screenshots"  # ignored by git
CHROMIUM = os.environ.get("ANIMEGAN_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # a synthetic webcam, allowed without a prompt
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def app_env(weights_dir: Path | str | None, home: Path, **extra: str) -> dict[str, str]:
    """The environment for app.py: local weights, no analytics, an own HF cache, offline Hub."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(
        GRADIO_ANALYTICS_ENABLED="False",
        GRADIO_SERVER_NAME="127.0.0.1",
        HF_HOME=str(home / "hf"),
        HF_HUB_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        GRADIO_TEMP_DIR=str(home / "gradio"),
        PYTHONUNBUFFERED="1",
    )
    if weights_dir is not None:
        env["ANIMEGAN_WEIGHTS_DIR"] = str(weights_dir)
    else:
        env.pop("ANIMEGAN_WEIGHTS_DIR", None)
    env.update(extra)
    return env


class AppServer:
    """``python app.py`` on 127.0.0.1 and a free port, started and waited for."""

    def __init__(self, env: dict[str, str], log_path: Path, timeout: float = 240, cwd: Path = ROOT) -> None:
        self.cwd = Path(cwd)  # the folder whose app.py runs: the repository, or a built Space tree
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(env, GRADIO_SERVER_PORT=str(self.port))
        self.log_path = log_path
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None

    def start(self) -> AppServer:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "app.py"], cwd=self.cwd, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app.py exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/config", timeout=5) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"app.py did not answer within {self.timeout:.0f} s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def __enter__(self) -> AppServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


_shared: dict[str, AppServer] = {}


def shared_server(weights_dir: Path, home: Path, **env_extra: str) -> tuple[AppServer, bool]:
    """One app with the proxy weights for the whole test session: (server, started_now)."""
    server = _shared.get("proxy")
    if server is not None and server.alive():
        return server, False
    server = AppServer(app_env(weights_dir, home, **env_extra), home / "app.log").start()
    _shared["proxy"] = server
    return server, True


def have_chromium() -> bool:
    return Path(CHROMIUM).is_file() or shutil.which(CHROMIUM) is not None


def chromium_missing_reason() -> str:
    return (f"Chromium not found at {CHROMIUM}: install Debian's chromium (apt-get install chromium; "
            "scripts/test.sh does) or set ANIMEGAN_CHROMIUM")


def require_chromium() -> None:
    """Skip a browser test where Chromium is missing, except in CI (CI=true), where it fails."""
    import pytest

    if not have_chromium():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(chromium_missing_reason(), pytrace=False)
        pytest.skip(chromium_missing_reason())


def launch_chromium(playwright, *extra_args: str):
    """Debian's Chromium; Playwright never downloads a browser of its own here."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args], headless=True)


def open_app(context, url: str):
    page = context.new_page()
    page.goto(url, wait_until="domcontentloaded")
    page.wait_for_selector("#run-button", timeout=60_000)
    return page


def upload(page, path: Path | str) -> None:
    """Put a file in the photo input and wait until the page shows it."""
    before = page.evaluate("() => document.querySelector('#input-image img')?.src || ''")
    page.locator("#input-image input[type=file]").set_input_files(str(path))
    page.wait_for_function(
        "prev => { const i = document.querySelector('#input-image img');"
        " return i && i.src && i.src !== prev && i.complete; }",
        arg=before, timeout=60_000)


def result_src(page) -> str:
    return page.evaluate("() => document.querySelector('#result-image img')?.src || ''")


def status_text(page) -> str:
    return page.evaluate("() => document.querySelector('#status [data-testid=markdown]')?.innerText || ''")


_WATCH_JS = """() => {
  // Note when the result's progress tracker shows work going on: an identical result from the
  // cache keeps the same file and status line, so that is the sure sign a press was answered.
  const box = document.querySelector('#result-image');
  const busy = () => { const t = box.querySelector('[data-testid=status-tracker]');
                       return t && !t.classList.contains('hide'); };
  window.__animeBusySeen = false;
  if (window.__animeObserver) window.__animeObserver.disconnect();
  window.__animeObserver = new MutationObserver(() => { if (busy()) window.__animeBusySeen = true; });
  window.__animeObserver.observe(box, {attributes: true, childList: true, subtree: true});
}"""

_DONE_JS = """prev => {
  const i = document.querySelector('#result-image img');
  const s = document.querySelector('#status [data-testid=markdown]')?.innerText || '';
  const t = document.querySelector('#result-image [data-testid=status-tracker]');
  if (!i || !i.src || !i.complete || i.naturalWidth === 0 || !s.includes(' x ')) return false;
  if (t && !t.classList.contains('hide')) return false;  // still working
  return i.src !== prev.src || s !== prev.status || window.__animeBusySeen;
}"""


def press_and_wait(page, timeout_ms: int = 180_000) -> tuple[float, str]:
    """Press the button and wait until the page shows the answer: the result image loaded
    and the status line written. Returns (seconds from the click, status line)."""
    before = {"src": result_src(page), "status": status_text(page)}
    page.evaluate(_WATCH_JS)
    start = time.perf_counter()
    page.click("#run-button")
    page.wait_for_function(_DONE_JS, arg=before, timeout=timeout_ms, polling="raf")
    return time.perf_counter() - start, status_text(page)


def error_toast(page, timeout_ms: int = 60_000) -> str:
    """The text of the error toast Gradio shows for a gr.Error."""
    toast = page.locator(".toast-body.error, [data-testid='toast-body']").first
    toast.wait_for(state="visible", timeout=timeout_ms)
    return toast.inner_text()


def post(url: str, body: bytes, timeout: float = 60, headers: dict[str, str] | None = None) -> tuple[int, str]:
    """POST ``body`` as a browser would; the server may answer (413) before it is all sent."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    conn.putrequest("POST", parts.path)
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        conn.putheader(name, value)
    conn.endheaders()
    try:
        conn.send(body)
    except (BrokenPipeError, ConnectionResetError):
        pass  # refused early: the answer is already there
    response = conn.getresponse()
    return response.status, response.read().decode()


# -- uploads as a hostile client makes them (tests/test_public_app.py, benchmarks/bench_soak.py) -------------
BOUNDARY = "animegan-test-boundary"


def _open_upload(url: str, headers: dict[str, str]) -> http.client.HTTPConnection:
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=300)
    conn.putrequest("POST", "/gradio_api/upload")
    conn.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
    for name, value in headers.items():
        conn.putheader(name, value)
    conn.endheaders()
    return conn


def _part_head(name: str) -> bytes:
    return (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()


def chunked_upload(url: str, megabytes: int, headers: dict | None = None) -> int:
    """An upload without a declared length: the HTTP status."""
    conn = _open_upload(url, {"Transfer-Encoding": "chunked", **(headers or {})})
    block = b"\0" * 1_000_000
    try:
        for piece in [_part_head("big.bin")] + [block] * megabytes:
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        conn.send(b"0\r\n\r\n")
    except (BrokenPipeError, ConnectionResetError):
        pass
    try:
        return conn.getresponse().status
    except (ConnectionError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def abandoned_upload(url: str, declared_mb: int, sent_mb: int, headers: dict | None = None) -> None:
    """Declare ``declared_mb``, send ``sent_mb`` of it, and walk away (close the connection)."""
    conn = _open_upload(url, {"Content-Length": str(declared_mb * 1_000_000), **(headers or {})})
    conn.send(_part_head("half.bin"))
    for _ in range(sent_mb):
        conn.send(b"\0" * 1_000_000)
    conn.sock.close()


def tiny_files(url: str, count: int) -> int:
    """One request of ``count`` tiny files, each with its own content: the status."""
    body = b"".join(_part_head(f"f{i}.txt") + f"file {i}".encode() + b"\r\n" for i in range(count))
    body += f"--{BOUNDARY}--\r\n".encode()
    conn = _open_upload(url, {"Content-Length": str(len(body))})
    conn.send(body)
    try:
        return conn.getresponse().status
    finally:
        conn.close()
