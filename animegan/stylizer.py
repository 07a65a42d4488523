"""The one object that takes a photo through the whole path: decode, size policy,
(faces), the generator on a backend, and back to an image, with a result cache."""

from __future__ import annotations

import functools
import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from . import images, weights
from .models import load_generator
from .runtime import INFERENCE_LOCK, Backend, make_backend
from .styles import DEFAULT_STYLE, Style, get_style

ProgressFn = Callable[[float, str], None]


@dataclass
class Result:
    """A stylized image and what a person may want to know about how it was made."""

    image: Image.Image
    style: str
    size: tuple[int, int]
    seconds: float
    backend: str
    cached: bool = False
    faces: int | None = None
    notes: list[str] = field(default_factory=list)
    upgrading: bool = False  # the automatic backend is still building a faster one
    source: Image.Image | None = None  # what the network saw: the resized photo, or a portrait's framed face

    def summary(self) -> str:
        w, h = self.size
        parts = [get_style(self.style).title, f"{w} x {h}"]
        parts.append("from cache" if self.cached else f"{self.seconds:.2f} s on {self.backend}"
                     + (" (a faster backend is being prepared)" if self.upgrading else ""))
        if self.faces is not None:
            parts.append(f"{self.faces} face{'s' if self.faces != 1 else ''} found")
        return " · ".join(parts)


class Stylizer:
    """Holds the loaded models (one per style), the backend choice and a result cache.

    Create one per process and share it: the app, the command line and the tests do.
    """

    def __init__(
        self,
        style: str = DEFAULT_STYLE,
        *,
        backend: str | None = None,
        max_side: int | None = images.DEFAULT_MAX_SIDE,
        max_pixels: int = images.DEFAULT_MAX_PIXELS,
        weights_file: str | Path | None = None,
        cache_size: int = 32,
    ) -> None:
        get_style(style)  # fail early on a typo
        self.style = style
        self.backend_name = backend
        self.max_side = max_side
        self.max_pixels = max_pixels
        # a .pt/.safetensors file, a model folder (config.json + model.safetensors) or a Hub repo id
        self._overrides: dict[str, str | Path] = {style: weights_file} if weights_file else {}
        self._backends: dict[str, Backend] = {}
        self._load_lock = threading.Lock()
        self._cache: OrderedDict[str, Result] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    # -- models -----------------------------------------------------------------------
    def weights_path(self, style: str) -> str | Path:
        """Where the style's generator comes from: a weights file, a model folder or a Hub repo id."""
        if style in self._overrides:
            return self._overrides[style]
        spec = get_style(style)
        if spec.repo_id and not spec.filename:
            return spec.repo_id  # a model repo: config.json + model.safetensors
        return weights.resolve(spec)

    def backend(self, style: str | None = None) -> Backend:
        """The ready backend for ``style``, loading (and downloading) it on first use."""
        style = style or self.style
        with self._load_lock:
            if style not in self._backends:
                model = load_generator(self.weights_path(style))
                self._backends[style] = make_backend(model, self.backend_name)
            return self._backends[style]

    def is_loaded(self, style: str) -> bool:
        return style in self._backends

    # -- the path of one photo -----------------------------------------------------------
    def run_array(self, style: str, img: Image.Image) -> Image.Image:
        """Stylize an RGB image at its own size (no size policy, no cache)."""
        backend = self.backend(style)
        with INFERENCE_LOCK:
            out = backend(images.to_array(img))
        return images.from_array(out)

    def run(
        self,
        image: images.ImageInput,
        style: str | None = None,
        *,
        face_crop: str | bool | None = None,
        max_side: int | None | bool = True,
        keep_size: bool = False,
        side_by_side: bool = False,
        progress: ProgressFn | None = None,
    ) -> Result:
        """Stylize ``image`` and say how. ``max_side=True`` means this Stylizer's default."""
        style = style or self.style
        spec: Style = get_style(style)
        limit = self.max_side if max_side is True else (max_side or None)
        report = progress or (lambda fraction, text: None)
        start = time.perf_counter()

        decoded = images.decode(image, self.max_pixels)
        mode = _face_mode(face_crop)
        key = _cache_key(decoded, style, mode, limit, keep_size, side_by_side)
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
        if hit is not None:
            return replace(hit, image=hit.image.copy(), seconds=time.perf_counter() - start, cached=True,
                           notes=list(hit.notes))

        if not self.is_loaded(style):
            report(0.05, f"Loading the {spec.title} weights")
        self.backend(style)
        report(0.2, "Stylizing")
        source = images.resize(decoded.rgb, images.fit_size(decoded.rgb.size, limit))
        faces = None
        notes: list[str] = []
        shown = source  # what the network saw: the photo, or the framed face of a portrait
        if mode is None:
            out = self.run_array(style, source)
        else:
            from .faces import stylize_faces

            out, faces, notes, shown = stylize_faces(self, style, source, mode, report)
        if side_by_side:
            out = _side_by_side(images.resize(shown, out.size), out)
        elif mode != "portrait" or not faces:  # a portrait that fell back is the whole photo
            if keep_size:
                out = images.resize(out, decoded.rgb.size)
            out = images.with_alpha(out, decoded.alpha)
        report(1.0, "Done")
        backend = self._backends[style]
        ready = getattr(backend, "ready", None)  # AutoBackend: set once no faster backend is coming
        upgrading = ready is not None and not ready.is_set()
        result = Result(out, style, out.size, time.perf_counter() - start, backend.name, faces=faces, notes=notes,
                        source=shown)
        with self._cache_lock:
            self._cache[key] = result
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return replace(result, image=out.copy(), notes=list(notes), upgrading=upgrading)

    def __call__(self, image: images.ImageInput, style: str | None = None, **options) -> Image.Image:
        return self.run(image, style, **options).image


def _face_mode(face_crop: str | bool | None) -> str | None:
    if face_crop in (None, False, "", "off", "none"):
        return None
    if face_crop is True:
        return "portrait"
    if face_crop in ("portrait", "paste"):
        return face_crop
    raise ValueError(f"face_crop must be 'portrait', 'paste' or off, not {face_crop!r}.")


def _cache_key(decoded: images.Decoded, *options) -> str:
    h = hashlib.sha256()
    for img in (decoded.rgb, decoded.alpha):
        if img is not None:
            h.update(f"{img.mode}{img.size}".encode())
            h.update(img.tobytes())
    h.update(repr(options).encode())
    return h.hexdigest()


def _side_by_side(before: Image.Image, after: Image.Image) -> Image.Image:
    canvas = Image.new("RGB", (before.width + after.width, max(before.height, after.height)), "white")
    canvas.paste(before, (0, 0))
    canvas.paste(after, (before.width, 0))
    return canvas


@functools.cache
def shared_stylizer() -> Stylizer:
    """The process-wide Stylizer behind :func:`stylize` (models load once per process)."""
    return Stylizer()


def stylize(
    image: images.ImageInput,
    style: str = DEFAULT_STYLE,
    face_crop: str | bool | None = False,
    max_side: int | None = images.DEFAULT_MAX_SIDE,
    **options,
) -> Image.Image:
    """Photo in (path, bytes, PIL image or array), anime image out (PIL)."""
    return shared_stylizer().run(image, style, face_crop=face_crop, max_side=max_side, **options).image
