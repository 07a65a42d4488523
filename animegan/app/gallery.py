"""The style gallery: one small picture per style, made from an example photo so a visitor
sees what a style does before pressing the button.

Each thumbnail is made once by the app's Stylizer on the style's float32 backend (PyTorch
for weights, OpenVINO f32 or ONNX Runtime for ONNX files: nothing to build), as
background work (requests go first), and cached as a PNG in the runtime's artefact folder
(``thumbnails/``), keyed by the weights, the photo and the size, so a restart only reads
them back. The app makes them in a background thread after start-up, one at a time.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from pathlib import Path

from PIL import Image

from .. import images
from ..files import atomic_write

log = logging.getLogger("animegan.app")

THUMB_SIDE = 160


class Thumbnails:
    """Style name -> a cached thumbnail PNG, made from ``photo`` by ``stylizer``."""

    def __init__(self, photo: Path, stylizer, side: int = THUMB_SIDE) -> None:
        self.photo = Path(photo)
        self.side = side
        self.stylizer = stylizer
        self.folder = stylizer.runtime.artefacts / "thumbnails"
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
        atomic_write(target, lambda path: img.save(path, "PNG"))

    def make(self, name: str, weights: str | Path) -> Path:
        """The thumbnail of style ``name`` with ``weights`` (a file, a folder or a Hub repo id),
        from the cache or made now."""
        where = Path(weights)
        stat = (where.stat().st_size, where.stat().st_mtime_ns) if where.exists() else ()
        target = self.folder / f"{name}-{self._key(name, str(weights), *stat)}.png"
        if not target.is_file():
            img = images.decode(self.photo).rgb
            img = images.resize(img, images.fit_size(img.size, self.side))
            self._save(self.stylizer.run_array(name, img, backend="float32", background=True), target)
        self.made[name] = target
        return target

    def start(self, jobs: dict[str, str | Path]) -> None:
        """Make the thumbnails of ``jobs`` (style -> where its weights are) in the background."""
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
