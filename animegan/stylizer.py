"""The one object that takes a photo through the whole path: decode, size policy,
(faces), the generator on a backend, and back to an image, with a result cache.

It owns the face loop too (find the faces, stylize each framed face, paste it back):
``animegan.faces`` only detects and frames. It is also where the policy lives, so that
every way in (the app's endpoints, live frames, clips, batch, export, the command line,
the library) gets the same answer: a style name is checked once, where it comes in
(:meth:`Stylizer.check_style`: hidden non-commercial styles, unknown names, anything
that is not a name), and a picture is stylized in one pass only when the pass fits the
runtime's memory budget, else in tiles that do.

Every model pass and every face detection holds the runtime's inference lock; live
frames ask with ``wait=False`` and get :class:`Busy` instead of waiting behind a photo or
a clip.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from . import faces as facelib
from . import host, images, policy, runtime, styles, weights
from .backends import Backend, make_backend
from .backends import memory as pass_memory
from .policy import FaceMode
from .runtime import Busy, Runtime
from .settings import Settings
from .styles import DEFAULT_STYLE, Style, get_style, licence_line
from .tiles import engines as tile_engines
from .tiles import layout as tile_layout
from .tiles.run import stylize_tiled

ProgressFn = Callable[[float, str], None]
NO_FACE_NOTE = "No face found; stylized the whole photo."

__all__ = ["Busy", "Result", "Stylizer", "stylize"]


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
    """Holds the loaded models (one per style), the backend choice, the policy and a result cache.

    Create one per process and share it: the app, the command line and the tests do.
    ``settings`` default to the process runtime's (read from the environment once);
    ``runtime`` to the process's (:mod:`animegan.runtime`). ``wait_for_fast=True`` makes
    the automatic backend choose (and build the int8 model, once per machine) before the
    first picture instead of in the background, telling ``progress(fraction, text)``;
    ``defer_fast=True`` serves on float32 and starts that background work only when
    :meth:`start_fast` is called (the app: once its port is open, so that preparing never
    delays serving). ``lite=True``: the style's fast variant (:meth:`lite_style`) is the
    default style, and an error says how to get one where there is none.
    """

    def __init__(
        self,
        style: str = DEFAULT_STYLE,
        *,
        settings: Settings | None = None,
        runtime: Runtime | None = None,
        backend: str | None = None,
        max_side: int | None = policy.DEFAULT_MAX_SIDE,
        max_pixels: int = policy.DEFAULT_MAX_PIXELS,
        weights_file: str | Path | None = None,
        cache_size: int = 32,
        wait_for_fast: bool = False,
        progress: ProgressFn | None = None,
        defer_fast: bool = False,
        exact_statistics: bool = False,
        lite: bool = False,
    ) -> None:
        rt = runtime or _runtime_for(settings)
        self.runtime = rt.with_settings(settings) if settings is not None else rt
        self.settings = self.runtime.settings
        # fail early on a typo or a hidden style; lite: the style's fast variant (a distilled student)
        self.style = self.variant(style, lite)
        self.backend_name = backend or self.settings.backend
        self.max_side = max_side
        self.max_pixels = max_pixels
        self.exact_statistics = exact_statistics  # tiles: layer-by-layer statistics (slow) instead of the fast ones
        self.wait_for_fast = wait_for_fast
        self._prepare_progress = progress
        self._fast_started = not defer_fast
        # a .pt/.safetensors file, a model folder (config.json + model.safetensors) or a Hub repo id
        self._overrides: dict[str, str | Path] = {self.style: weights_file} if weights_file else {}
        self._backends: dict[tuple[str, str], Backend] = {}  # (style, backend asked for) -> backend
        self._models: dict[str, object] = {}  # the generator behind each style's backends
        self._engines: dict[tuple[str, str], object] = {}  # (style, backend name) -> tile engine
        self._load_lock = threading.Lock()
        self._style_locks: dict[str, threading.Lock] = {}
        self._cache: OrderedDict[str, Result] = OrderedDict()
        self._cache_size = cache_size
        self._cache_lock = threading.Lock()

    # -- policy ---------------------------------------------------------------------------
    def check_style(self, name: object) -> Style:
        """The style ``name`` names, if it is offered here; else a :class:`animegan.styles.StyleError`
        (a ValueError) that says which are (see :func:`animegan.styles.choose`)."""
        return styles.choose(name, hide_noncommercial=self.settings.hide_noncommercial)

    @property
    def styles(self) -> dict[str, Style]:
        """The styles offered here (all, or without the non-commercial ones)."""
        return styles.visible_styles(self.settings.hide_noncommercial)

    def lite_style(self, style: str | None = None) -> str | None:
        """The name of ``style``'s fast variant offered here (a student distilled from it:
        ``ANIMEGAN_WEIGHTS_DIR/<style>-lite/`` or ``register_style(..., lite_of=<style>)``),
        or None when it has none; a fast variant is its own."""
        spec = self.check_style(style or self.style)
        found = styles.lite_variant(spec, self.settings.weights_dir)
        if found is None:
            return None
        try:
            return self.check_style(found.name).name  # the policy holds for the variant too
        except styles.StyleError:
            return None

    def variant(self, style: str | None = None, lite: bool = False, *, required: bool = True) -> str:
        """The style to run: ``style`` itself, or with ``lite`` its fast variant; where it has
        none, ``style`` itself (``required=False``: the live default, the app's box) or a
        :class:`~animegan.styles.StyleError` that says how to get one."""
        spec = self.check_style(style or self.style)
        if not lite:
            return spec.name
        found = self.lite_style(spec.name)
        if found is None and not required:
            return spec.name
        if found is None:
            raise styles.StyleError(
                f"The style {spec.name!r} has no fast variant here. Distil one (python -m animegan distill "
                f"--teacher {spec.name} --photos DIR --out DIR --minutes 30) and put the folder at "
                f"$ANIMEGAN_WEIGHTS_DIR/{spec.name}{styles.LITE_SUFFIX}/, or run without --lite.")
        return found

    # -- models -----------------------------------------------------------------------
    def weights_path(self, style: str) -> str | Path:
        """Where the style's generator comes from: a weights file, a model folder or a Hub repo id."""
        spec = self.check_style(style)
        if spec.name in self._overrides:
            return self._overrides[spec.name]
        if spec.repo_id and not spec.filename:
            return spec.repo_id  # a model repo: config.json + model.safetensors
        return weights.resolve(spec, self.runtime)

    def model(self, style: str):
        """The style's generator (an nn.Module, or an OnnxGenerator), loaded once."""
        spec = self.check_style(style)
        with self._load_lock:  # held only to find this style's own lock
            lock = self._style_locks.setdefault(spec.name, threading.Lock())
        with lock:  # one load per style; other styles load (or serve) meanwhile
            if spec.name not in self._models:
                self._models[spec.name] = weights.load_model(self.weights_path(spec.name), spec, self.runtime)
            return self._models[spec.name]

    def backend(self, style: str | None = None, name: str | None = None) -> Backend:
        """The ready backend for ``style`` (``name``: another backend than the Stylizer's,
        e.g. ``float32``), loading (and downloading) the weights on first use."""
        spec = self.check_style(style or self.style)
        key = (spec.name, name or self.backend_name)
        ready = self._backends.get(key)
        if ready is not None:  # loaded: never wait behind another style's download
            return ready
        model = self.model(spec.name)
        with self._style_locks[spec.name]:
            if key not in self._backends:
                self._backends[key] = make_backend(model, key[1], self.runtime, background=not self.wait_for_fast,
                                                   progress=self._prepare_progress, start=self._fast_started)
            return self._backends[key]

    def start_fast(self) -> None:
        """Start preparing the fast backend of every style loaded so far, and of any loaded later."""
        self._fast_started = True
        for backend in list(self._backends.values()):
            if hasattr(backend, "start"):
                backend.start()

    def loaded_backend(self, style: str | None = None) -> Backend | None:
        """The style's backend if it is loaded already, else None (nothing is loaded)."""
        return self._backends.get((style or self.style, self.backend_name))

    def is_loaded(self, style: str) -> bool:
        return self.loaded_backend(style) is not None

    # -- the path of one photo -----------------------------------------------------------
    def engine(self, style: str):
        """The injected-statistics engine for ``style`` on the backend serving it now
        (tiles of big photos, steadier video); made once per style and backend."""
        backend = self.backend(style)
        spec = self.check_style(style)
        key = (spec.name, backend.name)
        with self._load_lock:
            if key not in self._engines:
                for old in [k for k in self._engines if k[0] == spec.name]:  # the backend was upgraded since
                    del self._engines[old]
                try:
                    self._engines[key] = tile_engines.engine_for(self._models[spec.name], backend, self.runtime)
                except tile_engines.UnsupportedGenerator as exc:
                    raise ValueError(f"The {spec.title} style cannot run in tiles or carry statistics "
                                     f"({exc}).") from None
            return self._engines[key]

    def fits_in_one_pass(self, style: str, size: tuple[int, int], backend: Backend | None = None) -> bool:
        """Whether one pass over a picture of ``size`` stays within the memory budget, as
        predicted from what this process holds now and the measured cost per pixel."""
        backend = backend or self.backend(style)
        predicted = host.rss() + pass_memory.pass_bytes(self.model(style), backend.name, self.runtime.machine,
                                                        size[0] * size[1])
        return predicted <= self.runtime.memory_budget

    def run_array(self, style: str, img: Image.Image, *, wait: bool = True, progress: ProgressFn | None = None,
                  backend: str | None = None, background: bool = False) -> Image.Image:
        """Stylize an RGB image at its own size (no size policy, no cache). With
        ``wait=False`` raise :class:`Busy` instead of waiting for another picture;
        ``backend`` names another backend than the Stylizer's (``float32``);
        ``background=True`` lets foreground work go first (thumbnails).

        A picture whose pass would not fit the memory budget goes in tiles with the whole
        picture's statistics (``animegan.tiles``: fast, or exact with ``exact_statistics``),
        as big as the budget allows; ``progress`` hears of every tile pass."""
        be = self.backend(style, backend)
        if not self.fits_in_one_pass(style, img.size, be):
            return self._run_tiled(style, img, progress)
        x = images.to_array(img)
        hold = self.runtime.background(be.family) if background else self.runtime.inference(be.family, wait=wait)
        with hold:
            out = be(x)
        return images.from_array(out)

    def _run_tiled(self, style: str, img: Image.Image, progress: ProgressFn | None) -> Image.Image:
        try:
            engine = self.engine(style)
        except ValueError as exc:
            raise ValueError(f"{exc} A {img.width} x {img.height} picture needs more memory than the budget "
                             f"({self.runtime.memory_budget / 2**30:.1f} GB, ANIMEGAN_MEMORY_BUDGET) in one pass: "
                             f"use a smaller --max-side, or raise the budget.") from None
        report = progress or (lambda fraction, text: None)

        def tile_progress(done: int, total: int, text: str) -> None:
            report(0.2 + 0.78 * done / total, f"Stylizing {img.width} x {img.height} in tiles: {text}")

        room = self.runtime.memory_budget - host.rss()
        side = pass_memory.tile_side(self.model(style), engine.family, self.runtime.machine, img.width * img.height,
                                     room)
        kind = "tiles" if engine.family == "torch" else engine.family
        return stylize_tiled(engine, img, tile=side, margin=tile_layout.MARGIN, progress=tile_progress,
                             hold=lambda: self.runtime.inference(kind), exact=self.exact_statistics)

    def detect_faces(self, img: Image.Image, *, wait: bool = True) -> list[facelib.Face]:
        """Faces in ``img``, largest first (MTCNN takes the cores like a model pass)."""
        with self.runtime.inference(None, wait=wait):
            return facelib.detect_faces(img, rt=self.runtime)

    def run(
        self,
        image: images.ImageInput,
        style: str | None = None,
        *,
        face_crop: FaceMode | bool | None = None,
        face_style: str | None = None,
        max_side: int | None | bool = True,
        keep_size: bool = False,
        side_by_side: bool = False,
        progress: ProgressFn | None = None,
    ) -> Result:
        """Stylize ``image`` and say how. ``max_side=True`` means this Stylizer's default.

        With ``face_crop="paste"``, ``face_style`` names the style each face is redone in
        (the photo stays in ``style``), e.g. a Shinkai scene with Face Paint faces; it is
        ignored in the other face modes. The notes end with each style's licence line."""
        style = self.check_style(style or self.style).name  # a typo or a hidden style fails before any work
        mode = policy.parse_face_mode(face_crop)
        face_style = self.check_style(face_style or style).name
        if mode != "paste":
            face_style = style
        limit = self.max_side if max_side is True else (max_side or None)
        report = progress or (lambda fraction, text: None)
        start = time.perf_counter()

        decoded = images.decode(image, self.max_pixels)
        key = _cache_key(decoded, style, mode, face_style, limit, keep_size, side_by_side)
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
        if hit is not None:
            return replace(hit, image=hit.image.copy(), seconds=time.perf_counter() - start, cached=True,
                           notes=list(hit.notes))

        for name in dict.fromkeys((style, face_style)):
            if not self.is_loaded(name):
                report(0.05, f"Loading the {get_style(name).title} weights")
            self.backend(name)
        report(0.2, "Stylizing")
        source = images.resize(decoded.rgb, images.fit_size(decoded.rgb.size, limit))
        faces = None
        notes: list[str] = list(decoded.notes)
        shown = source  # what the network saw: the photo, or the framed face of a portrait
        if mode == "off":
            out = self.run_array(style, source, progress=report)
        else:
            out, faces, face_notes, shown = self._stylize_faces(style, source, mode, report, face_style)
            notes += face_notes
        used = (style, face_style) if faces else (style,)  # no face found: the face style did nothing
        notes = notes + [licence_line(name) for name in dict.fromkeys(used)]
        if side_by_side:
            out = _side_by_side(images.resize(shown, out.size), out)
        elif mode != "portrait" or not faces:  # a portrait that fell back is the whole photo
            if keep_size:
                out = images.resize(out, decoded.rgb.size)
            out = images.with_alpha(out, decoded.alpha)
        report(1.0, "Done")
        backend = self.backend(style)
        upgrading = backend.upgrading
        result = Result(out, style, out.size, time.perf_counter() - start, backend.name, faces=faces, notes=notes,
                        source=shown)
        with self._cache_lock:
            self._cache[key] = result
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return replace(result, image=out.copy(), notes=list(notes), upgrading=upgrading)

    def _stylize_faces(self, style: str, source: Image.Image, mode: FaceMode, report: ProgressFn,
                       face_style: str | None = None) -> tuple[Image.Image, int, list[str], Image.Image]:
        """Face mode ``portrait`` or ``paste`` on ``source`` (RGB): the image, how many
        faces were found, notes for the person, and the picture the network saw (the
        framed face in a portrait, else ``source``). With no face, the whole photo is
        stylized and a note says so. ``paste`` redoes each face in ``face_style``
        (default: ``style``)."""
        face_style = face_style or style
        size = get_style(style if mode == "portrait" else face_style).size
        report(0.25, "Finding faces")
        found = self.detect_faces(source)
        if not found:
            report(0.5, "No face found; stylizing the whole photo")
            return self.run_array(style, source), 0, [NO_FACE_NOTE], source
        if mode == "portrait":
            notes = [f"Found {len(found)} faces; the portrait shows the largest."] if len(found) > 1 else []
            report(0.4, "Stylizing the face")
            crop, _ = facelib.frame_face(source, found[0], size)
            return self.run_array(style, crop), len(found), notes, crop
        report(0.3, "Stylizing the whole photo")
        canvas = np.asarray(self.run_array(style, source, progress=report), dtype=np.float32).copy()
        # Paste the smallest first so that where squares overlap, the larger face wins.
        for i, face in enumerate(reversed(found)):
            report(0.4 + 0.55 * i / len(found), f"Stylizing face {i + 1} of {len(found)}")
            crop, square = facelib.frame_face(source, face, size)
            facelib.paste_face(canvas, self.run_array(face_style, crop), square)
        out = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), "RGB")
        return out, len(found), [], source

    def __call__(self, image: images.ImageInput, style: str | None = None, **options) -> Image.Image:
        return self.run(image, style, **options).image


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


def _runtime_for(settings: Settings | None) -> Runtime:
    return runtime.get(settings)


def shared_stylizer() -> Stylizer:
    """The process-wide Stylizer behind :func:`stylize` (models load once per process), kept by the runtime."""
    return runtime.get().shared("stylizer", Stylizer)


def stylize(
    image: images.ImageInput,
    style: str = DEFAULT_STYLE,
    face_crop: FaceMode | bool | None = False,
    max_side: int | None = policy.DEFAULT_MAX_SIDE,
    **options,
) -> Image.Image:
    """Photo in (path, bytes, PIL image or array), anime image out (PIL)."""
    return shared_stylizer().run(image, style, face_crop=face_crop, max_side=max_side, **options).image
