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
  left 1000 empty folders). Empty ones are removed here once they are a minute old.

:class:`AppFiles` does that every ``every`` seconds while the app runs and once more at
shutdown, after Gradio's own last cleanup.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

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
                 empty_age: float = EMPTY_AGE) -> None:
        self.folder = Path(folder)
        self.every, self.stale, self.empty_age = every, stale, empty_age
        self.also: list[Callable[[], object]] = []  # more work for each round (e.g. live sessions)
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
                work()
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
        """Stop the timer and sweep everything (called at exit, after Gradio's own cleanup)."""
        self._stop.set()
        self.sweep(final=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sweep()


def _entries(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return list(it)
    except OSError:
        return []
