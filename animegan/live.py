"""Live webcam: stylize frames as they arrive, small, and never let them queue up.

A webcam sends frames faster than a 2-core CPU can stylize them. Queueing them would make
the picture lag further and further behind; instead a frame that arrives while another
is being stylized is dropped at once (the caller keeps showing the last result), so the
delay stays one frame's work. Gradio's stream event also keeps only the newest frame of
each visitor while their previous one is being processed; the drop here covers several
visitors and the photo and video tabs sharing one process.

Frames are stylized at a reduced size (256 px on the long side by default), each visitor
gets a time limit, and the measured frame rate and time per frame are reported. Face
framing (portrait) follows the largest face with a smoothed square, so it does not jitter.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from . import faces, images, policy
from .stylizer import Busy

DEFAULT_TIME_LIMIT = 60.0  # seconds of live preview per visitor and start
DEFAULT_WINDOW = 600.0  # live seconds per client are counted over this window, whatever it restarts
ADDRESS_SHARE = 4  # one address (people behind one router) gets this many visitors' time
MAX_CHARGE = 1.0  # at most this many seconds are charged for the gap between two frames
MAX_CLIENTS = 10_000  # clients remembered at once (the oldest are forgotten first)
SESSION_GAP = 3.0  # no frame for this long: the next frame starts a new session
MAX_SESSIONS = 32  # sessions kept by key at once (a Steady one holds a few MB); the least recent go first
DETECT_EVERY = 3  # look for the face on every n-th processed frame; smooth in between


class LiveLimitReached(RuntimeError):
    """This visitor's live time is used up; the message says so and what to do."""


class Usage:
    """Live seconds used per client key (session hash, address) over a sliding window.

    Each frame is charged the time since that key's previous frame (at most MAX_CHARGE),
    so a client cannot reset its allowance by pausing, reloading or opening a new session.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self._charges: dict[str, deque] = {}  # key -> (time, seconds) charged
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def charge(self, key: str, now: float) -> float:
        """Charge one frame to ``key``; the seconds it used within the window, this one included."""
        with self._lock:
            last = self._last.pop(key, None)
            self._last[key] = now  # re-inserted: the dict stays ordered by last use
            charges = self._charges.setdefault(key, deque())
            if last is not None:
                charges.append((now, min(MAX_CHARGE, max(0.0, now - last))))
            while charges and charges[0][0] < now - self.window:
                charges.popleft()
            while len(self._last) > MAX_CLIENTS:
                oldest = next(iter(self._last))
                self._last.pop(oldest)
                self._charges.pop(oldest, None)
            return sum(seconds for _, seconds in charges)

    def wait(self, key: str, limit: float, now: float) -> float:
        """Seconds until enough of ``key``'s charges leave the window to be back under ``limit``."""
        with self._lock:
            charges = list(self._charges.get(key, ()))
        used, until = sum(seconds for _, seconds in charges), now
        for when, seconds in charges:  # oldest first
            if used <= limit:
                break
            used, until = used - seconds, when + self.window
        return max(0.0, until - now)


# -- face framing ---------------------------------------------------------------------------
class BoxSmoother:
    """A square that follows a face box over frames without jitter.

    Each new box moves the tracked face (centre and size) a fraction ``alpha`` of the way
    towards it (exponential smoothing). A box far from it (another person, a jump) snaps
    there at once; after ``hold`` frames without a face the face is let go and the framing
    falls back to the centre of the picture. The square itself is the photo mode's
    framing (:func:`animegan.faces.face_square`) around the smoothed face.
    """

    def __init__(self, alpha: float = 0.35, snap: float = 0.6, hold: int = 10,
                 margin: float = faces.MARGIN, lift: float = faces.LIFT) -> None:
        self.alpha, self.snap, self.hold, self.margin, self.lift = alpha, snap, hold, margin, lift
        self.state: np.ndarray | None = None  # cx, cy, size of the face box's longer side
        self.missing = 0

    def update(self, box: tuple[float, float, float, float] | None) -> None:
        if box is None:
            self.missing += 1
            if self.missing > self.hold:
                self.state = None
            return
        self.missing = 0
        x0, y0, x1, y1 = box
        target = np.array([(x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0)])
        if self.state is None:
            self.state = target
            return
        moved = np.hypot(*(target[:2] - self.state[:2]))
        ratio = target[2] / self.state[2]
        if moved > self.snap * self.margin * self.state[2] or not 0.6 < ratio < 1.6:
            self.state = target
        else:
            self.state = self.state + self.alpha * (target - self.state)

    def square(self, size: tuple[int, int]) -> faces.Square:
        """The square around the smoothed face; the centred square when there is none."""
        w, h = size
        if self.state is None:
            side = min(w, h)
            return faces.Square((w - side) // 2, (h - side) // 2, side)
        cx, cy, s = self.state
        face = faces.Face((cx - s / 2, cy - s / 2, cx + s / 2, cy + s / 2), 1.0)
        return faces.face_square(face, size, self.margin, self.lift)


# -- one visitor ------------------------------------------------------------------------------
@dataclass
class LiveSession:
    """One visitor's live preview: its clock, counters, last result and face square."""

    started: float = field(default_factory=time.monotonic)
    last_seen: float = field(default_factory=time.monotonic)
    processed: int = 0
    dropped: int = 0
    last_image: Image.Image | None = None
    last_latency: float | None = None
    done_times: deque = field(default_factory=lambda: deque(maxlen=30))
    smoother: BoxSmoother = field(default_factory=BoxSmoother)
    face_frames: int = 0
    note: str = ""
    model: str = ""  # "fast model" / "full model" where the style has a fast variant
    steady: object | None = None  # the session's animegan.steady.Stabilizer, while "steady" is on

    def fps(self) -> float:
        """Processed frames per second over the last few seconds."""
        t = self.done_times
        if len(t) < 2 or t[-1] <= t[0]:
            return 0.0
        return (len(t) - 1) / (t[-1] - t[0])

    def status(self, limit: float | None, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        # a rate needs two frames: before that, say so rather than "0.0 fps"
        parts = [f"{self.fps():.1f} fps" if len(self.done_times) >= 2 else "measuring the frame rate"]
        if self.last_latency is not None:
            parts.append(f"{self.last_latency * 1000:.0f} ms per frame")
        if self.last_image is not None:
            parts.append(f"{self.last_image.width} x {self.last_image.height}")
        parts.append(f"{self.processed} shown" + (f", {self.dropped} skipped while busy" if self.dropped else ""))
        if limit:
            parts.append(f"{max(0.0, limit - (now - self.started)):.0f} s left")
        parts += [text for text in (self.model, self.note) if text]
        return " · ".join(parts)


@dataclass
class FrameResult:
    """What to show for one incoming frame."""

    image: Image.Image | None  # the new result, or the last one when this frame was dropped
    processed: bool
    status: str
    seconds: float = 0.0


class LiveStylizer:
    """Stylizes live frames for any number of visitors, one frame at a time per process."""

    def __init__(self, stylizer, *, side: int = policy.LIVE_SIDE, time_limit: float | None = DEFAULT_TIME_LIMIT,
                 detect_every: int = DETECT_EVERY, window: float = DEFAULT_WINDOW) -> None:
        self.stylizer = stylizer
        self.side = side
        self.time_limit = time_limit
        self.detect_every = max(1, detect_every)
        self.usage = Usage(window)
        self._busy = threading.Lock()  # one live frame at a time in this process
        # sessions kept here by key (the app's): a session idle for SESSION_GAP is over anyway
        self._sessions: OrderedDict[str, LiveSession] = OrderedDict()
        self._sessions_lock = threading.Lock()

    def new_session(self) -> LiveSession:
        return LiveSession()

    def prune(self, now: float | None = None) -> int:
        """Let go of the kept sessions that are over (no frame for SESSION_GAP) and of the
        least recent beyond MAX_SESSIONS; returns how many are kept."""
        now = time.monotonic() if now is None else now
        with self._sessions_lock:
            for key in [k for k, s in self._sessions.items() if now - s.last_seen > SESSION_GAP]:
                del self._sessions[key]
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
            return len(self._sessions)

    def _kept(self, key: str, now: float) -> LiveSession | None:
        self.prune(now)
        with self._sessions_lock:
            return self._sessions.get(key)

    def _keep(self, key: str, session: LiveSession) -> None:
        with self._sessions_lock:
            self._sessions[key] = session
            self._sessions.move_to_end(key)
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)

    def _session_for(self, session: LiveSession | None, now: float) -> LiveSession:
        if session is None or now - session.last_seen > SESSION_GAP:
            return LiveSession(started=now, last_seen=now)  # a new start of the webcam
        return session

    def process(
        self,
        session: LiveSession | None,
        frame: images.ImageInput | None,
        style: str | None = None,
        side: int | None = None,
        face_crop: bool = False,
        clients: tuple[str, ...] = (),
        steady: bool = False,
        key: str | None = None,
        lite: bool = True,
    ) -> tuple[LiveSession, FrameResult]:
        """Stylize ``frame`` unless another frame is being stylized (then it is dropped).

        ``clients``: keys that identify the visitor across sessions (``"session:<hash>"``,
        ``"address:<ip>"``); each may use ``time_limit`` live seconds per window (an
        address ADDRESS_SHARE times that). Returns the (possibly new) session and what to
        show. Raises :class:`LiveLimitReached` when the session's or a client's time is used up.
        ``steady``: blend each result with the previous one along the optical flow
        (:mod:`animegan.steady`), for less flicker. ``key``: the engine keeps the session
        under this key (e.g. the app's session id) instead of the caller: it is let go
        once it is over (SESSION_GAP without a frame), not when the caller forgets it.
        ``lite``: frames go through the style's fast variant (a distilled student) where it
        has one (:meth:`Stylizer.lite_style`); False: always the full model.
        """
        # the core's policy, before any work; lite: the fast variant where the style has one
        asked = self.stylizer.variant(style)
        fast = self.stylizer.lite_style(asked)
        both = fast not in (None, asked)  # a fast variant beside the full model (a variant is its own)
        style = fast if lite and both else asked
        now = time.monotonic()
        if key is not None:
            session = self._kept(key, now) or session
        session = self._session_for(session, now)
        if key is not None:
            self._keep(key, session)
        session.last_seen = now
        # which of the two runs, where the style has both (the status says it)
        session.model = ("fast model" if lite else "full model") if both else ""
        if self.time_limit and now - session.started > self.time_limit:
            raise LiveLimitReached(
                f"The live preview stops after {self.time_limit:g} s so that everyone gets a turn. "
                "Start the webcam again to continue."
            )
        for key in clients:
            limit = (self.time_limit or 0) * (ADDRESS_SHARE if key.startswith("address:") else 1)
            if self.time_limit and self.usage.charge(key, now) > limit:
                wait = self.usage.wait(key, limit, now)
                raise LiveLimitReached(
                    f"The live preview has been used for {limit:g} s from here in the last "
                    f"{self.usage.window / 60:g} minutes, the most allowed so that everyone gets a turn. "
                    f"Try again in {max(1, round(wait / 60))} minute(s)."
                )
        if frame is None:
            return session, FrameResult(session.last_image, False, session.status(self.time_limit, now))
        side = policy.clamp_side(side or self.side, policy.LIVE_SIDE_MIN, policy.LIVE_SIDE_MAX, self.side)
        self.stylizer.backend(style)  # loads once; outside the locks

        if not self._busy.acquire(blocking=False):
            return session, self._drop(session, now)
        try:
            start = time.perf_counter()
            img = images.decode(frame, policy.LIVE_MAX_PIXELS).rgb  # size read from the header first
            # shrink first: face detection and cropping then work on a bounded picture
            img = images.resize(img, images.fit_size(img.size, max(policy.LIVE_WORK_SIDE, side)))
            if face_crop:
                img = self._frame_face(session, img)
            else:
                session.note = ""
            # portrait framing always gives side x side (a small face square is enlarged)
            small = images.resize(img, (side, side) if face_crop else images.fit_size(img.size, side))
            # a photo or clip is being stylized: drop this frame rather than wait for it
            out = self._stylize(session, style, small, steady)
            seconds = time.perf_counter() - start
        except Busy:
            return session, self._drop(session, now)
        finally:
            self._busy.release()
        session.processed += 1
        session.last_image, session.last_latency = out, seconds
        session.last_seen = time.monotonic()  # a slow frame is not a pause between two starts
        session.done_times.append(session.last_seen)
        return session, FrameResult(out, True, session.status(self.time_limit), seconds)

    def _stylize(self, session: LiveSession, style: str, small: Image.Image, steady: bool) -> Image.Image:
        if steady and (session.steady is None or session.steady.style != style):
            from .steady import Stabilizer

            session.steady = Stabilizer(self.stylizer, style)
        if not steady:
            session.steady = None
            return self.stylizer.run_array(style, small, wait=False)
        return Image.fromarray(session.steady(np.asarray(small), wait=False))

    def _drop(self, session: LiveSession, now: float) -> FrameResult:
        session.dropped += 1
        return FrameResult(session.last_image, False, session.status(self.time_limit, now))

    def _frame_face(self, session: LiveSession, img: Image.Image) -> Image.Image:
        """The square around the (smoothed) largest face; the centre square without one."""
        session.face_frames += 1
        if session.face_frames % self.detect_every == 1 or self.detect_every == 1:
            found = self.stylizer.detect_faces(img, wait=False)  # Busy drops the frame
            session.smoother.update(found[0].box if found else None)
        session.note = "face" if session.smoother.state is not None else "no face: centre crop"
        return faces.crop_square(img, session.smoother.square(img.size))
