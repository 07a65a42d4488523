"""The batch's memory: one JSON line per finished input in ``DST/animegan-manifest.jsonl``.

A row holds the input (relative to SRC, the key), its output (relative to DST), status
(``done`` or ``failed``), the error message, seconds, backend, the input's size and
fingerprint, the options' hash, and when and where it ran. Rows are appended as work
finishes, so a batch stopped at any point resumes from its last row; when an input
appears more than once, its last row counts. On a local DST each row is flushed at
once; object stores cannot append, so there the whole file is rewritten every
``flush_seconds`` and at the end.
"""

from __future__ import annotations

import json
import os
import time
from typing import IO

from .plan import MANIFEST_NAME, is_local, join, open_fs


class Manifest:
    def __init__(self, dst: str, flush_seconds: float = 30.0) -> None:
        self.fs, root = open_fs(dst)
        self.path = join(root, MANIFEST_NAME)
        self.rows: dict[str, dict] = {}
        self._local = is_local(self.fs)
        self._handle: IO[str] | None = None
        self._flush_seconds = flush_seconds
        self._dirty = False
        self._flushed = time.monotonic()

    def read(self) -> dict[str, dict]:
        """The last row of every input (a line cut short by a crash is ignored)."""
        self.rows = {}
        lines = 0
        if self.fs.exists(self.path):
            with self.fs.open(self.path, "r", encoding="utf-8") as f:
                for line in f:
                    try:
                        row = json.loads(line)
                        self.rows[row["input"]] = row
                        lines += 1
                    except (ValueError, KeyError, TypeError):
                        continue
        if lines > 2 * len(self.rows) + 100:  # many reruns: keep the file as short as its news
            self._rewrite()
        return self.rows

    def add(self, row: dict) -> None:
        self.rows[row["input"]] = row
        if self._local:
            if self._handle is None:
                self.fs.makedirs(os.path.dirname(self.path), exist_ok=True)
                self._handle = open(self.path, "a", encoding="utf-8")
            self._handle.write(json.dumps(row) + "\n")
            self._handle.flush()
        else:
            self._dirty = True
            if time.monotonic() - self._flushed > self._flush_seconds:
                self._rewrite()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._dirty:
            self._rewrite()

    def _rewrite(self) -> None:
        data = "".join(json.dumps(row) + "\n" for row in self.rows.values()).encode()
        if self._local:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            partial = f"{self.path}.{os.getpid()}.tmp"
            with open(partial, "wb") as f:
                f.write(data)
            os.replace(partial, self.path)
        else:
            self.fs.pipe_file(self.path, data)  # an object store replaces the whole object at once
        self._dirty = False
        self._flushed = time.monotonic()
