"""A local stand-in for the Hugging Face Hub: enough of ``/<repo>/resolve/<rev>/<file>``
for huggingface_hub's real ``hf_hub_download`` (HEAD + GET), plus plain file URLs.

It serves on 127.0.0.1 only; ``status`` forces an error code (404, 500) for every request.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class FakeHub:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}  # URL path -> content
        self.status: int | None = None
        self.delay = 0.0  # seconds every GET waits before answering (a slow network)
        self.gets_started = 0
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def _serve(self, body: bool) -> None:
                hub.requests.append((self.command, self.path))
                path = self.path.split("?")[0]
                # /<org>/<repo>/resolve/<revision>/<file>: any revision maps to the same files
                parts = path.strip("/").split("/")
                commit = COMMIT
                if len(parts) >= 5 and parts[2] == "resolve":
                    path = "/" + "/".join(parts[:3] + ["main"] + parts[4:])
                    if re.fullmatch(r"[0-9a-f]{40}", parts[3]):
                        commit = parts[3]  # the Hub answers a pinned commit with that commit
                code = hub.status or (200 if path in hub.files else 404)
                if code != 200:
                    payload = b'{"error": "nope"}'
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    if code == 404:
                        self.send_header("X-Error-Code", "EntryNotFound")
                    self.end_headers()
                    if body:
                        self.wfile.write(payload)
                    return
                data = hub.files[path]
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
                self.send_header("X-Repo-Commit", commit)
                self.end_headers()
                if body:
                    self.wfile.write(data)

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                hub.gets_started += 1
                time.sleep(hub.delay)
                self._serve(body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def add_hub_file(self, repo_id: str, filename: str, data: bytes) -> None:
        self.files[f"/{repo_id}/resolve/main/{filename}"] = data

    def add_url_file(self, path: str, data: bytes) -> str:
        self.files[path] = data
        return self.url + path

    def downloads(self) -> int:
        return sum(1 for method, _ in self.requests if method == "GET")

    def __enter__(self) -> FakeHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
