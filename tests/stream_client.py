"""Drive a Gradio stream event the way the browser does (gradio_client cannot send a
stream of inputs): join the queue once, then post each new frame to
``/gradio_api/stream/{event_id}``, and read the results from the server-sent events."""

from __future__ import annotations

import io
import json
import threading
import time
import uuid

import httpx
from PIL import Image


class StreamSession:
    def __init__(self, base: str, api_name: str) -> None:
        self.base = base.rstrip("/")
        self.http = httpx.Client(timeout=60)
        config = self.http.get(f"{self.base}/config").json()
        dep = next(d for d in config["dependencies"] if d.get("api_name") == api_name)
        self.fn_index = dep["id"]
        self.trigger_id = dep["targets"][0][0]
        self.inputs = dep["inputs"]
        self.session_hash = uuid.uuid4().hex[:11]
        self.event_id: str | None = None
        self.messages: list[tuple[float, dict]] = []  # (arrival time, message)
        self.done = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)

    def upload(self, img: Image.Image, name: str = "frame.png") -> dict:
        buf = io.BytesIO()
        img.save(buf, "PNG")
        r = self.http.post(f"{self.base}/gradio_api/upload", files={"files": (name, buf.getvalue(), "image/png")})
        r.raise_for_status()
        return {"path": r.json()[0], "orig_name": name, "meta": {"_type": "gradio.FileData"}}

    def _body(self, data: list) -> dict:
        return {"data": data, "event_data": None, "fn_index": self.fn_index, "trigger_id": self.trigger_id,
                "session_hash": self.session_hash}

    def start(self, data: list) -> None:
        r = self.http.post(f"{self.base}/gradio_api/queue/join", json=self._body(data))
        r.raise_for_status()
        self.event_id = r.json()["event_id"]
        self._reader.start()

    def send(self, data: list) -> bool:
        """Post the next frame; False when the server has ended this stream (404)."""
        r = self.http.post(f"{self.base}/gradio_api/stream/{self.event_id}", json=self._body(data))
        if r.status_code == 404:
            return False
        r.raise_for_status()
        return True

    def close(self) -> None:
        if self.event_id:
            self.http.post(f"{self.base}/gradio_api/stream/{self.event_id}/close")
        self.done.wait(30)
        self.http.close()

    def _read(self) -> None:
        url = f"{self.base}/gradio_api/queue/data"
        with httpx.stream("GET", url, params={"session_hash": self.session_hash}, timeout=None) as r:
            for line in r.iter_lines():
                if not line.startswith("data:"):
                    continue
                msg = json.loads(line[5:])
                self.messages.append((time.monotonic(), msg))
                if msg.get("msg") in ("process_completed", "close_stream") or msg.get("msg") == "unexpected_error":
                    break
        self.done.set()

    def outputs(self) -> list[tuple[float, list]]:
        """(arrival time, output data) of every streamed result that carried a new picture."""
        found = []
        for t, msg in self.messages:
            if msg.get("msg") in ("process_streaming", "process_generating", "process_completed"):
                data = (msg.get("output") or {}).get("data") or []
                if data and isinstance(data[0], dict) and data[0].get("path"):
                    found.append((t, data))
        return found

    def fetch(self, filedata: dict) -> Image.Image:
        url = filedata.get("url") or f"{self.base}/gradio_api/file={filedata['path']}"
        return Image.open(io.BytesIO(self.http.get(url).content))
