"""Bounds on what one request may cost the server: the size of its body, on every route.

Gradio refuses a file upload over ``max_file_size`` (413), but the JSON bodies of the
queue and API routes had no bound: a 110 MB image sent as a ``data:`` URL was read and
decoded (about 4x its size in memory). :class:`BodyLimit` is a plain ASGI middleware in
front of every route: ``/upload`` may carry up to the upload limit, everything else up
to the request limit. A declared ``Content-Length`` over the limit is answered 413 before
a byte of the body is read; a body without one (chunked) is counted as it arrives and
refused as soon as it passes the limit.
"""

from __future__ import annotations

import json
import re

from ..errors import UserMessage

_UPLOAD_PATH = re.compile(r"/upload/?$")


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: 413 for request bodies over ``max_bytes`` (``upload_bytes`` on /upload)."""

    def __init__(self, app, max_bytes: int, upload_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.upload_bytes if _UPLOAD_PATH.search(scope.get("path", "")) else self.max_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, limit)
            return
        received = 0
        started = False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _TooLarge
            return message

        async def watched_send(message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, watched_send)
        except _TooLarge:
            if not started:
                await _refuse(send, limit)


def too_large_message(limit: int) -> UserMessage:
    return UserMessage("Request too large",
                       f"The request is larger than the {limit / 1e6:.0f} MB this app accepts. "
                       "Send a smaller image (or upload the file instead of embedding it).")


async def _refuse(send, limit: int) -> None:
    said = too_large_message(limit)
    body = json.dumps({"error": said.title, "detail": said.text}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
