"""The app's temporary files on disk: nothing a visitor sends or gets stays longer than
the cache time, nor past shutdown.

Gradio writes every upload to a temporary file in its upload folder (``GRADIO_TEMP_DIR``)
as it arrives, then moves it into a folder named after its content; its cache cleanup
deletes those files, by age and at shutdown, but

- a partial upload whose request fails in a way Gradio's parser does not catch (the body
  limit in front of it, a client that walks away) stays where it was written:
  :class:`~animegan.app.limits.BodyLimit` turns both into the parser's own error, so the
  parser deletes its files at once; anything else still left (an upload refused after it
  was read, a process killed mid-upload) is removed here once nobody has written to it
  for ``stale`` seconds;
- the folders are never deleted: one per file, forever (1000 tiny files in one request
  left 1000 empty folders). Empty ones are removed here once they are a minute old;
- a picture an event returns is written by Gradio under its content's name, in place,
  again for every request that makes the same picture, while others download it
  (truncated downloads, empty PNGs). :class:`Results` writes it once, whole, under a new
  name renamed into place, and hands Gradio that file, which Gradio copies into its cache
  the same careful way (or reuses the copy it has).

:class:`AppFiles` does that every ``every`` seconds while the app runs and once more at
shutdown. Gradio's own last cleanup runs when its server shuts down, which waits for every
open connection to end, and an open page's heartbeat never ends: Gradio gives up after 5 s
and the process exits without it. So the last round also deletes what Gradio's cleanup
would have (its own function, for ``demo``), then what that leaves.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image

from ..files import atomic_write_bytes

log = logging.getLogger("animegan.app")

UPLOAD_IDLE = 60.0  # seconds an upload may send nothing before it counts as abandoned (BodyLimit)
STALE = 2 * UPLOAD_IDLE  # a partial upload file untouched this long belongs to no request any more
EMPTY_AGE = 60.0  # an empty folder this old is left over (a new one is filled at once)
# what is Gradio's in its upload folder: the parser's NamedTemporaryFile(dir=...) files, and
# one folder per file named after its content's sha256 (nothing else there is touched)
_PARTIAL = re.compile(r"tmp[a-z0-9_]{8}")
_CONTENT_FOLDER = re.compile(r"[0-9a-f]{64}")


class AppFiles:
    """Sweeps the upload folder (see the module's docstring) on a timer and at shutdown."""

    def __init__(self, folder: str | os.PathLike, every: float = 60.0, stale: float = STALE,
                 empty_age: float = EMPTY_AGE, demo: Any = None) -> None:
        self.folder = Path(folder)
        self.demo = demo
        self.every, self.stale, self.empty_age = every, stale, empty_age
        self.also: list[Callable[[bool], object]] = []  # more work for each round, given ``final``
        self.pins: Pins | None = None  # let go of at shutdown, before the last cleanup
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sweep(self, final: bool = False) -> dict[str, int]:
        """One round: stale partial uploads and old empty folders (``final``: all of them,
        the server has stopped). Returns what was removed."""
        now = time.time()
        removed = {"partial_uploads": 0, "empty_folders": 0}
        if not self.folder.is_dir():
            return removed
        for entry in _entries(self.folder):
            try:
                if entry.is_file(follow_symlinks=False) and _PARTIAL.fullmatch(entry.name):
                    if final or now - entry.stat(follow_symlinks=False).st_mtime > self.stale:
                        os.unlink(entry.path)
                        removed["partial_uploads"] += 1
                elif entry.is_dir(follow_symlinks=False) and _CONTENT_FOLDER.fullmatch(entry.name):
                    if (final or now - entry.stat(follow_symlinks=False).st_mtime > self.empty_age) \
                            and not any(_entries(Path(entry.path))):
                        os.rmdir(entry.path)  # fails (and is skipped) if a file arrived meanwhile
                        removed["empty_folders"] += 1
            except OSError:
                continue  # gone already, or in use: the next round
        for work in self.also:
            try:
                work(final)
            except Exception as exc:  # a sweep never stops the app
                log.warning("cleanup: %s", exc)
        return removed

    def start(self) -> AppFiles:
        """Sweep every ``every`` seconds in a background thread, and once more at exit."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="animegan-files", daemon=True)
            self._thread.start()
            atexit.register(self.close)
        return self

    def close(self) -> None:
        """Stop the timer and sweep everything (called at exit)."""
        self._stop.set()
        if self.pins is not None:
            self.pins.keep_only(set())  # no job will run now: their files go too
        if self.demo is not None and getattr(self.demo, "delete_cache", None):
            try:  # what Gradio's shutdown deletes, in case its server did not get that far
                from gradio.route_utils import delete_files_created_by_app

                delete_files_created_by_app(self.demo, None)
            except Exception as exc:
                log.warning("cleanup at exit: %s", exc)
        self.sweep(final=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sweep()


class Pins:
    """Uploads that a job in the queue will read, kept from Gradio's cache cleanup until the
    job is over. The cleanup (``delete_cache``) deletes files by age, also while the job
    that reads them still waits its turn: a clip that waited longer than the cache time
    failed with "No such file". Pinned paths go into Gradio's own do-not-delete set (a
    component's ``keep_in_cache``, which its cleanup skips); :meth:`keep_only` lets go of
    those no job holds any more (the app calls it every round with the queue's files)."""

    def __init__(self, demo: Any) -> None:
        holder = next((b for b in demo.blocks.values() if isinstance(getattr(b, "keep_in_cache", None), set)), None)
        self._keep: set[str] = holder.keep_in_cache if holder is not None else set()
        self._mine: set[str] = set()  # what this object added (the set may hold Gradio's own too)
        self._lock = threading.Lock()

    def hold(self, paths: set[str]) -> None:
        with self._lock:
            new = paths - self._keep
            self._mine |= new
            self._keep |= new

    def keep_only(self, paths: set[str]) -> None:
        """Let go of every pinned path not in ``paths`` (all of them for an empty set)."""
        with self._lock:
            gone = self._mine - paths
            self._keep -= gone
            self._mine -= gone


def file_paths(value: Any) -> set[str]:
    """The paths of the files a job's data refers to (Gradio's FileData dicts, at any depth)."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            path = item.get("path")
            if isinstance(path, str) and path:
                found.add(path)
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
        elif hasattr(item, "path") and isinstance(getattr(item, "path", None), str):
            found.add(item.path)
    return found


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except OSError:
        return []


class Results:
    """Pictures an event returns, as files written once each (see the module's docstring)
    in ``folder``, kept ``max_age`` seconds after they were last handed out."""

    def __init__(self, folder: str | os.PathLike, max_age: float) -> None:
        self.folder = Path(folder)
        self.max_age = max_age
        self._lock = threading.Lock()  # a sweep never takes a file that is being handed out

    def save(self, img: Image.Image, fmt: str, name: str = "anime") -> str:
        """The path of ``img`` encoded as ``fmt`` (Gradio's own encoder), written whole."""
        from gradio.processing_utils import encode_pil_to_bytes

        data = encode_pil_to_bytes(img, fmt)
        folder = self.folder / hashlib.sha256(data).hexdigest()
        path = folder / f"{name}.{fmt.lower()}"
        with self._lock:
            try:
                os.utime(path)  # the same picture again: the file is there, whole; its age starts again
                return str(path)
            except FileNotFoundError:
                pass
            atomic_write_bytes(path, data)  # readers see the old file or the new one, never a part
        return str(path)

    def as_files(self, fn: Callable, *formats: str | None, name: str = "anime") -> Callable:
        """``fn`` with its pictures returned as files: output ``i`` (or each picture in the
        tuple at ``i``) encoded as ``formats[i]``; None leaves that output as it is."""

        def convert(value: Any, fmt: str | None) -> Any:
            if fmt is None:
                return value
            if isinstance(value, Image.Image):
                return self.save(value, fmt, name)
            if isinstance(value, tuple):
                return tuple(convert(v, fmt) for v in value)
            return value

        @functools.wraps(fn)  # Gradio reads the signature (progress, request) through __wrapped__
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            out = fn(*args, **kwargs)
            if len(formats) == 1 and not isinstance(out, tuple):
                return convert(out, formats[0])
            return tuple(convert(v, f) for v, f in zip(out, formats, strict=False)) + tuple(out[len(formats):])

        return wrapper

    def sweep(self, final: bool = False) -> int:
        """Remove the pictures not handed out for ``max_age`` seconds (``final``: all)."""
        with self._lock:
            if final:
                shutil.rmtree(self.folder, ignore_errors=True)
                return 0
            return self._sweep_old(time.time())

    def _sweep_old(self, now: float) -> int:
        removed = 0
        for entry in _entries(self.folder):
            if not entry.is_dir(follow_symlinks=False):
                continue
            for item in _entries(Path(entry.path)):
                try:
                    if now - item.stat(follow_symlinks=False).st_mtime > self.max_age:
                        os.unlink(item.path)
                        removed += 1
                except OSError:
                    continue
            try:
                os.rmdir(entry.path)  # only if nothing is left in it
            except OSError:
                pass
        try:
            self.folder.rmdir()  # nothing handed out for a while: no folder either (save makes it again)
        except OSError:
            pass
        return removed
