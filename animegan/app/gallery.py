"""The style gallery: one small picture per style, made from an example photo so a visitor
sees what a style does before pressing the button.

Each thumbnail is made once, on a float32 backend of its own (PyTorch for weights,
OpenVINO f32 or ONNX Runtime for ONNX files: nothing to build, no background upgrade),
and cached as a PNG under ``<hub cache>/animegan-artefacts/thumbnails/``, keyed by the
weights file, the photo and the size, so a restart only reads them back. The app makes
them in a background thread after start-up, one at a time, each holding the inference
lock only for its own pass.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

from PIL import Image

from .. import images, weights
from ..backends import hub_cache
from ..host import INFERENCE_LOCK
from ..settings import Settings
from ..styles import get_style

log = logging.getLogger("animegan.app")

THUMB_SIDE = 160


def _float_backend(model):
    from ..models.onnx import OnnxGenerator

    if not isinstance(model, OnnxGenerator):
        from ..backends.torch_eager import TorchBackend

        return TorchBackend(model)
    try:
        from ..backends import openvino

        return openvino.float_backend(model, "f32")
    except Exception:  # OpenVINO missing or cannot read the graph
        from ..backends.onnxruntime import OnnxRuntimeBackend

        return OnnxRuntimeBackend(model)


class Thumbnails:
    """Style name -> a cached thumbnail PNG, made from ``photo``."""

    def __init__(self, photo: Path, settings: Settings, side: int = THUMB_SIDE) -> None:
        self.photo = Path(photo)
        self.side = side
        self.folder = hub_cache(settings) / "animegan-artefacts" / "thumbnails"
        self.made: dict[str, Path] = {}
        self.done = threading.Event()
        self._thread: threading.Thread | None = None
        self._plain: Path | None = None
        self._images: dict[Path, Image.Image] = {}

    def plain(self) -> Path:
        """The photo itself at thumbnail size (the placeholder while a style has none)."""
        if self._plain is None:
            img = images.decode(self.photo).rgb
            target = self.folder / f"photo-{self._key(self.photo.name)}.png"
            if not target.is_file():
                self._save(images.resize(img, images.fit_size(img.size, self.side)), target)
            self._plain = target
        return self._plain

    def _key(self, *parts: object) -> str:
        stat = self.photo.stat()
        return hashlib.sha256(repr((parts, str(self.photo), stat.st_size, stat.st_mtime_ns, self.side)).encode()
                              ).hexdigest()[:20]

    def _save(self, img: Image.Image, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{threading.get_ident()}.tmp")
        img.save(tmp, "PNG")
        tmp.replace(target)

    def make(self, name: str, weights_file: Path) -> Path:
        """The thumbnail of style ``name`` with ``weights_file``, from the cache or made now."""
        stat = weights_file.stat()
        target = self.folder / f"{name}-{self._key(name, str(weights_file), stat.st_size, stat.st_mtime_ns)}.png"
        if not target.is_file():
            img = images.decode(self.photo).rgb
            img = images.resize(img, images.fit_size(img.size, self.side))
            backend = _float_backend(weights.load_model(weights_file, get_style(name)))
            x = images.to_array(img)
            with INFERENCE_LOCK:
                out = backend(x)
            self._save(images.from_array(out), target)
        self.made[name] = target
        return target

    def start(self, jobs: dict[str, Path]) -> None:
        """Make the thumbnails of ``jobs`` (style -> weights file) in the background."""
        def work() -> None:
            try:
                self.plain()
                for name, path in jobs.items():
                    try:
                        self.make(name, path)
                    except Exception as exc:  # a thumbnail is a nicety: never break the app for one
                        log.warning("no thumbnail for style %s: %s", name, exc)
            finally:
                self.done.set()

        self._thread = threading.Thread(target=work, name="animegan-thumbnails", daemon=True)
        self._thread.start()

    def image(self, path: Path) -> Image.Image:
        """A thumbnail read into memory (kept: they are small, and read on every page load)."""
        if path not in self._images:
            with Image.open(path) as img:
                self._images[path] = img.convert("RGB")
        return self._images[path]

    @property
    def running(self) -> bool:
        """Started and not finished yet."""
        return self._thread is not None and not self.done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)
