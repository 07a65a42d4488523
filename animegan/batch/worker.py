"""One model on one worker (a local process or a Ray actor): turns a task into an
output file and a manifest row, and never raises for a bad input."""

from __future__ import annotations

import io
import os
import posixpath
import socket
import tempfile
import time
from dataclasses import asdict, replace
from datetime import datetime, timezone

from .. import images, runtime, video
from ..files import atomic_write_bytes
from ..host import available_cpus
from ..options import encode_options
from ..runtime import Runtime
from ..settings import Settings
from ..stylizer import Stylizer
from .plan import Options, Task, is_local, join, open_fs

__all__ = ["Worker", "available_cpus", "encode", "start_runtime"]


def start_runtime(threads: int | None) -> Runtime:
    """This worker process's runtime, with ``threads`` inference threads (PyTorch's,
    OpenVINO's and ONNX Runtime's alike): the one place batch sets threads, through the
    runtime, before anything else in the process made one."""
    settings = Settings.from_env()
    return runtime.start(replace(settings, threads=threads) if threads else settings)


def encode(img, fmt: str) -> bytes:
    kind, extra = encode_options(fmt)
    if kind == "JPEG" and img.mode != "RGB":
        img = img.convert("RGB")  # JPEG has no alpha
    buf = io.BytesIO()
    img.save(buf, kind, **extra)
    return buf.getvalue()


class Worker:
    """Loads the model once (``threads`` inference threads), then runs tasks one by one."""

    def __init__(self, options: Options, threads: int | None = None) -> None:
        self.options = options
        self.src_fs, self.src_root = open_fs(options.src)
        self.dst_fs, self.dst_root = open_fs(options.dst)
        self.src_is_file = self.src_fs.isfile(self.src_root)
        rt = start_runtime(threads)
        self.threads = rt.threads
        # wait_for_fast: the driver prepared the fast backend (local engine), so this loads it;
        # elsewhere (a Ray node) the worker prepares it before its first file, not in a thread
        self.stylizer = Stylizer(options.style, runtime=rt, backend=options.backend,
                                 max_side=options.max_side or None, weights_file=options.weights, cache_size=0,
                                 wait_for_fast=True, exact_statistics=options.exact_statistics,
                                 lite=options.lite)
        self.stylizer.backend()  # load now: a worker that cannot load its model fails at the start
        self.host = socket.gethostname()
        self.key = options.key()

    def __call__(self, task: Task | dict) -> dict:
        task = Task(**task) if isinstance(task, dict) else task
        start = time.perf_counter()
        row = {**asdict(task), "status": "done", "error": None, "options": self.key}
        try:
            if task.kind == "video":
                row.update(self._video(task))
            else:
                row.update(self._photo(task))
        except (images.ImageError, video.VideoError) as exc:  # the input's fault: its message says what
            row.update(status="failed", error=str(exc))
        except Exception as exc:  # anything else is reported, never allowed to stop the batch
            row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        backend = self.stylizer.backend()
        row.update(seconds=round(time.perf_counter() - start, 4), backend=backend.name, threads=self.threads,
                   host=self.host,
                   finished=datetime.now(timezone.utc).isoformat(timespec="milliseconds"))
        return row

    # -- one photo ------------------------------------------------------------------------
    def _photo(self, task: Task) -> dict:
        source = self._source(task)
        # A local path goes to Pillow as it is (and messages name the file); else the bytes.
        data = source if is_local(self.src_fs) else self.src_fs.cat_file(source)
        try:
            result = self.stylizer.run(data, face_crop=self.options.face_crop)
        except images.ImageError as exc:
            raise images.ImageError(str(exc).replace("the uploaded data", task.input)) from None
        self._write(task.output, encode(result.image, self.options.format))
        out = {"width": result.size[0], "height": result.size[1]}
        if result.faces is not None:
            out["faces"] = result.faces
        if result.notes:
            out["notes"] = result.notes
        return out

    def _write(self, rel: str, data: bytes) -> None:
        """Write an output whole or not at all: a temporary file renamed into place
        locally; object stores publish an object only once it is complete."""
        target = join(self.dst_root, rel)
        if not is_local(self.dst_fs):
            self.dst_fs.pipe_file(target, data)
            return
        atomic_write_bytes(target, data)

    # -- one clip ---------------------------------------------------------------------------
    def _video(self, task: Task) -> dict:
        """One clip in one task. PyAV needs local files: a remote clip is downloaded to a
        temporary folder first and its result uploaded when it is complete."""
        o = self.options
        source, target = self._source(task), join(self.dst_root, task.output)
        with tempfile.TemporaryDirectory(prefix="animegan-batch-") as tmp:
            local_in = source
            if not is_local(self.src_fs):
                local_in = os.path.join(tmp, posixpath.basename(task.input))
                self.src_fs.get_file(source, local_in)
            local_out = target if is_local(self.dst_fs) else os.path.join(tmp, "out.mp4")
            os.makedirs(os.path.dirname(local_out), exist_ok=True)
            result = video.stylize_video(self.stylizer, local_in, local_out, max_side=o.video_max_side or None,
                                         max_seconds=o.max_seconds or None, trim=o.trim)  # .part, then renamed
            if not is_local(self.dst_fs):
                self.dst_fs.put_file(local_out, target)
        out = {"width": result.size[0], "height": result.size[1], "frames": result.frames}
        if result.notes:
            out["notes"] = result.notes
        return out

    def _source(self, task: Task) -> str:
        return self.src_root if self.src_is_file else join(self.src_root, task.input)
