"""Bounds on what one request and one visitor may cost the server.

- :class:`BodyLimit`: the size of a request's body, on every route. Gradio refuses a file
  upload over ``max_file_size`` (413), but the JSON bodies of the queue and API routes had
  no bound: a 110 MB image sent as a ``data:`` URL was read and decoded (about 4x its size
  in memory). It is a plain ASGI middleware in front of every route: ``/upload`` may carry
  up to the upload limit, everything else up to the request limit. A declared
  ``Content-Length`` over the limit is answered 413 before a byte of the body is read; a
  body without one (chunked) is counted as it arrives and refused as soon as it passes the
  limit. An upload refused that way, cut off by its client, or stalled for ``upload_idle``
  seconds fails as Gradio's own multipart parser fails, so the parser deletes the part it
  had already written to disk (it only does that for its own errors).
- :class:`Visitors`: who is asking, as the limits count it: the Gradio session and the
  address. The address is the connection's, unless the app runs behind proxies it trusts
  (``Settings.trusted_proxies``; one on a Hugging Face Space): then it is the entry of
  ``X-Forwarded-For`` the nearest of them wrote, which the visitor cannot choose.
- :class:`FairQueue`: Gradio's queue has one bound for all its events and none per
  visitor, so one visitor's clips could fill it and turn every photo away. Each lane
  (concurrency id) gets its own bound on waiting jobs, and each session and address its
  own share of a lane.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import UserMessage
from .files import Pins, file_paths

_UPLOAD_PATH = re.compile(r"/upload/?$")


class _TooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: 413 for request bodies over ``max_bytes`` (``upload_bytes`` on /upload)."""

    def __init__(self, app, max_bytes: int, upload_bytes: int, upload_idle: float = 60.0) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.upload_bytes = upload_bytes
        self.upload_idle = upload_idle

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = bool(_UPLOAD_PATH.search(scope.get("path", "")))
        limit = self.upload_bytes if upload else self.max_bytes
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _refuse(send, limit)
            return
        received = 0
        started = False
        body_done = False

        async def counted_receive():
            nonlocal received, body_done
            if upload and not body_done:
                try:
                    message = await asyncio.wait_for(receive(), self.upload_idle)
                except asyncio.TimeoutError:
                    raise _upload_failed(f"No data arrived for {self.upload_idle:g} s; the upload was given up.") \
                        from None
            else:
                message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                body_done = not message.get("more_body", False)
                if received > limit:
                    if upload:  # Gradio's parser deletes what it wrote, and answers 413 with this text
                        raise _upload_failed(f"{too_large_message(limit).text} (maximum allowed size: {limit} bytes)")
                    raise _TooLarge
            elif message["type"] == "http.disconnect" and upload and not body_done:
                raise _upload_failed("The upload was cut off before its end.")
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


def _upload_failed(text: str) -> Exception:
    """The exception Gradio's upload parser deletes its partial files for, and answers
    (413 when the text says "maximum allowed size", else 400)."""
    from gradio.route_utils import MultiPartException

    return MultiPartException(text)


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


# -- a fair share of the queue -------------------------------------------------------------------
@dataclass(frozen=True)
class Lane:
    """The bounds of one concurrency id's queue."""

    waiting: int  # jobs waiting (not yet running) at most; more are told to try again
    per_session: int  # jobs of one session, running and waiting
    per_address: int  # jobs of one address (several people behind one router), running and waiting


BUSY = "This application is busy right now. Please try again in a minute."


class FairQueue:
    """Each lane's own bound and each visitor's share, checked when Gradio's queue takes a
    job (in front of ``Queue.push``, so every way in is covered: the page, ``/call``,
    gradio_client). A refusal is Gradio's own "queue full" answer (HTTP 503), which the
    page and the clients show as "busy, try again"; the text says which bound was hit."""

    def __init__(self, demo: Any, lanes: Mapping[str, Lane], visitors: Visitors, pins: Pins | None = None) -> None:
        self.demo = demo
        self.lanes = dict(lanes)
        self.visitors = visitors
        self.pins = pins
        self._lock = asyncio.Lock()
        self._push = None
        self._joining: list[_Joining] = []  # admitted, while Gradio's push (and its validator) runs

    @property
    def total_waiting(self) -> int:
        return sum(lane.waiting for lane in self.lanes.values())

    def install(self) -> FairQueue:
        """Put the checks in front of the demo's queue (after ``demo.queue(...)``)."""
        queue = self.demo._queue
        if self._push is None:
            self._push = queue.push

            async def push(body, request, username):
                async with self._lock:  # count and admit as one step
                    refused = self.refusal(body, request)
                    if refused:
                        return False, refused, "queue_full"
                    joining = self._admit(body, request)
                # Gradio's push runs the event's validator (a clip's header is read) outside the
                # lock, so other visitors are not held up; the job counts as waiting meanwhile
                try:
                    answer = await self._push(body=body, request=request, username=username)
                finally:
                    self._joining.remove(joining)
                if self.pins is not None and answer and answer[0]:
                    self.pins.hold(file_paths(getattr(body, "data", None)))
                return answer

            queue.push = push
        return self

    def refusal(self, body: Any, request: Any) -> str | None:
        """Why this job may not join its lane now (None: it may)."""
        fn = self.demo.fns.get(getattr(body, "fn_index", None))
        lane_id = getattr(fn, "concurrency_id", None)
        lane = self.lanes.get(lane_id)
        if lane is None:
            return None
        queue = self.demo._queue
        joining = [j for j in self._joining if j.lane == lane_id]
        waiting = list(getattr(queue.event_queue_per_concurrency_id.get(lane_id), "queue", ())) + joining
        running = [e for job in queue.active_jobs if job for e in job if e.concurrency_id == lane_id]
        if len(waiting) >= lane.waiting:
            return BUSY
        session = getattr(body, "session_hash", None)
        address = self.visitors.address(request)
        jobs = waiting + running
        mine = sum(1 for e in jobs if session and e.session_hash == session)
        here = sum(1 for e in jobs if address and self._address(e) == address)
        if mine >= lane.per_session or here >= lane.per_address:
            share = lane.per_session if mine >= lane.per_session else lane.per_address
            return (f"You already have {share} request(s) of this kind running or waiting here, your share "
                    "while others wait too. Please try again when one of them is done.")
        return None

    def _admit(self, body: Any, request: Any) -> _Joining:
        fn = self.demo.fns.get(getattr(body, "fn_index", None))
        joining = _Joining(getattr(fn, "concurrency_id", None), getattr(body, "session_hash", None),
                           self.visitors.address(request))
        self._joining.append(joining)
        return joining

    def _address(self, job: Any) -> str | None:
        return job.address if isinstance(job, _Joining) else self.visitors.address(job.request)

    def files_in_line(self) -> set[str]:
        """The files the queue's jobs (waiting and running) refer to."""
        queue = self.demo._queue
        events = [e for q in queue.event_queue_per_concurrency_id.values() for e in getattr(q, "queue", ())]
        events += [e for job in queue.active_jobs if job for e in job]
        return set().union(*(file_paths(getattr(getattr(e, "data", None), "data", None)) for e in events))


@dataclass(frozen=True, eq=False)
class _Joining:
    """A job that passed the checks and is being put in Gradio's queue."""

    lane: str | None
    session_hash: str | None
    address: str | None
