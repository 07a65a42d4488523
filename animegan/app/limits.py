"""Bounds on what one request and one visitor may cost the server.

- :class:`BodyLimit`: the size of a request's body, on every route. Gradio refuses a file
  upload over ``max_file_size`` (413), but the JSON bodies of the queue and API routes had
  no bound: a 110 MB image sent as a ``data:`` URL was read and decoded (about 4x its size
  in memory). It is a plain ASGI middleware in front of every route: ``/upload`` may carry
  up to the upload limit, everything else up to the request limit. A declared
  ``Content-Length`` over the limit is answered 413 before a byte of the body is read; a
  body without one (chunked) is counted as it arrives and refused as soon as it passes the
  limit.
- :class:`Visitors`: who is asking, as the limits count it: the Gradio session and the
  address. The address is the connection's, unless the app runs behind proxies it trusts
  (``Settings.trusted_proxies``; one on a Hugging Face Space): then it is the entry of
  ``X-Forwarded-For`` the nearest of them wrote, which the visitor cannot choose.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


# -- who is asking ------------------------------------------------------------------------------
MAX_ADDRESS = 64  # characters kept of an address (the limits remember up to 10 000 of them)


@dataclass(frozen=True)
class Visitors:
    """The keys the per-visitor limits count a request under.

    ``proxies``: how many proxies in front of the app append to ``X-Forwarded-For`` and are
    believed. 0: the header is ignored (anyone can send it) and the address is the
    connection's. N: the N-th entry from the right is the visitor's (each proxy appends the
    address it saw; what the visitor wrote itself stays to the left of that).
    """

    proxies: int = 0

    @classmethod
    def from_settings(cls, settings: Any, env: Mapping[str, str] | None = None) -> Visitors:
        """``settings.trusted_proxies``, where -1 means one on a Hugging Face Space (its
        front end appends the address it saw; SPACE_ID is set there) and none elsewhere."""
        proxies = getattr(settings, "trusted_proxies", -1)
        if proxies < 0:
            env = os.environ if env is None else env
            proxies = 1 if env.get("SPACE_ID") else 0
        return cls(proxies)

    def address(self, request: Any) -> str:
        """The visitor's address for a Starlette / FastAPI / Gradio request ("" if unknown)."""
        client = getattr(request, "client", None)
        peer = (getattr(client, "host", None) or "") if client else ""
        if self.proxies <= 0:
            return peer[:MAX_ADDRESS]
        headers = getattr(request, "headers", None) or {}
        values = headers.getlist("x-forwarded-for") if hasattr(headers, "getlist") else \
            [headers.get("x-forwarded-for") or ""]
        entries = [e.strip() for e in ",".join(values).split(",") if e.strip()]
        if len(entries) < self.proxies:  # it did not come through every proxy: the header is not theirs
            return peer[:MAX_ADDRESS]
        return entries[-self.proxies][:MAX_ADDRESS]

    def keys(self, request: Any) -> tuple[str, ...]:
        """``("session:<hash>", "address:<ip>")``, as far as they are known."""
        if request is None:
            return ()
        keys = []
        if getattr(request, "session_hash", None):
            keys.append(f"session:{request.session_hash}")
        address = self.address(request)
        if address:
            keys.append(f"address:{address}")
        return tuple(keys)
