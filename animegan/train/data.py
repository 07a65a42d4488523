"""Training photos: loading, random crops with scale jitter and flips, and face-priority
sampling with a per-pixel loss weight map.

- Every file Pillow can open is a photo (decoded by :func:`animegan.images.decode`: EXIF
  orientation, any colour mode -> RGB); each is kept in memory at ``photo_side`` px on
  its long side (the size photos are stylized at).
- MTCNN (:func:`animegan.faces.detect_faces`) looks for faces once per photo; the boxes
  are cached in memory and, given ``cache_file``, on disk (keyed by path, size, mtime).
- :class:`CropSampler` draws batches: at least ``face_fraction`` of every batch are face
  crops when any photo holds a face; each crop comes with a weight map that is
  ``face_weight`` inside every face box it contains and 1 elsewhere.
- :class:`Augment` (distillation's, off unless given): a few photos made to look like
  many, as a camera and a light would vary them (rotation, colour and lighting, blur,
  noise, JPEG, grayscale, a patch of another photo). Only the input is changed: the
  teacher labels what the student will see, so every change is a correct example.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageEnhance, ImageFilter

from .. import images
from . import TrainingError

VIDEO_SUFFIXES = {".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v"}


def image_suffixes() -> set[str]:
    """Every file suffix Pillow can open (what images.decode accepts), lower case."""
    Image.init()
    return {s.lower() for s in Image.registered_extensions()} - VIDEO_SUFFIXES


def find_images(source: str | Path | list[str | Path]) -> list[Path]:
    """Image files in a folder (searched recursively, sorted), or the given list."""
    if isinstance(source, (list, tuple)):
        return [Path(p) for p in source]
    folder = Path(source)
    if folder.is_file():
        return [folder]
    if not folder.is_dir():
        raise TrainingError(f"Photo folder not found: {folder}")
    suffixes = image_suffixes()
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)


@dataclass
class Photo:
    path: Path
    pixels: np.ndarray  # H x W x 3 uint8
    faces: list[tuple[float, float, float, float]]  # boxes in this array's pixels


def _face_key(path: Path, side: int) -> str:
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{side}"


def load_photos(
    source: str | Path | list[str | Path],
    photo_side: int = 512,
    detect: bool = True,
    cache_file: str | Path | None = None,
    min_side: int = 64,
) -> list[Photo]:
    """Decode every photo (unreadable files are skipped with a note), scale the long side
    to ``photo_side``, and find the faces in each (once; cached)."""
    paths = find_images(source)
    cache: dict[str, list] = {}
    cache_path = Path(cache_file) if cache_file else None
    if cache_path and cache_path.is_file():
        try:
            cache = json.loads(cache_path.read_text())
        except ValueError:
            cache = {}
    photos: list[Photo] = []
    changed = False
    for path in paths:
        try:
            rgb = images.decode(path).rgb
        except (images.ImageError, OSError) as exc:
            print(f"skipped {path}: {exc}", file=sys.stderr)
            continue
        k = photo_side / max(rgb.size)
        size = (max(1, round(rgb.width * k)), max(1, round(rgb.height * k)))
        if min(size) < min_side:
            print(f"skipped {path}: under {min_side} px on its short side at {photo_side} px", file=sys.stderr)
            continue
        rgb = images.resize(rgb, size)
        faces: list = []
        if detect:
            key = _face_key(path, photo_side)
            if key not in cache:
                from ..faces import detect_faces

                cache[key] = [list(f.box) for f in detect_faces(rgb)]
                changed = True
            faces = [tuple(b) for b in cache[key]]
        photos.append(Photo(path, np.asarray(rgb, dtype=np.uint8).copy(), faces))
    if not photos:
        shown = ", ".join(sorted(image_suffixes())[:12])
        raise TrainingError(f"No readable photos in {source} (looked for: {shown} ...).")
    if cache_path and changed:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_text(json.dumps(cache, indent=1))
    return photos


@dataclass(frozen=True)
class Augment:
    """How strongly :class:`CropSampler` varies each crop (probabilities and ranges).

    ``whole``: the share of crops that are a whole photo's short side scaled down (the
    whole picture's statistics, as a full photo gives them at inference); ``rotate``: the
    share turned by up to ``max_angle`` degrees; ``colour``: the share with brightness,
    contrast, saturation and gamma changed (``hue``: and the hue turned); ``gray``,
    ``blur``, ``noise``, ``jpeg``: a camera's and a file's losses; ``mix``: the share
    with a rectangle of another photo pasted in (content no photo has)."""

    whole: float = 0.1
    rotate: float = 0.3
    max_angle: float = 20.0
    colour: float = 0.8
    hue: float = 0.3
    gray: float = 0.08
    blur: float = 0.15
    noise: float = 0.15
    jpeg: float = 0.1
    mix: float = 0.2

    def apply(self, crop: Image.Image, rng: np.random.Generator, other: np.ndarray | None = None) -> Image.Image:
        """The crop, varied (same size and mode)."""
        if self.colour and rng.random() < self.colour:
            crop = ImageEnhance.Brightness(crop).enhance(rng.uniform(0.6, 1.4))
            crop = ImageEnhance.Contrast(crop).enhance(rng.uniform(0.6, 1.5))
            crop = ImageEnhance.Color(crop).enhance(rng.uniform(0.3, 1.8))
            gamma = math.exp(rng.uniform(math.log(0.7), math.log(1.4)))
            crop = crop.point([round(255 * (i / 255) ** gamma) for i in range(256)] * 3)
            if rng.random() < self.hue:
                hsv = np.asarray(crop.convert("HSV")).copy()
                hsv[..., 0] = (hsv[..., 0].astype(np.int16) + int(rng.integers(-25, 26))) % 256
                crop = Image.fromarray(hsv, "HSV").convert("RGB")
        if rng.random() < self.gray:
            crop = crop.convert("L").convert("RGB")
        if other is not None and rng.random() < self.mix:
            w, h = crop.size
            pw, ph = int(rng.integers(w // 4, w // 2 + 1)), int(rng.integers(h // 4, h // 2 + 1))
            oy, ox = int(rng.integers(0, other.shape[0] - ph + 1)), int(rng.integers(0, other.shape[1] - pw + 1))
            crop = crop.copy()
            crop.paste(Image.fromarray(other[oy : oy + ph, ox : ox + pw]),
                       (int(rng.integers(0, w - pw + 1)), int(rng.integers(0, h - ph + 1))))
        if rng.random() < self.blur:
            crop = crop.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 1.5)))
        if rng.random() < self.noise:
            arr = np.asarray(crop, dtype=np.float32) + rng.normal(0, rng.uniform(2, 8), (crop.height, crop.width, 1))
            crop = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
        if rng.random() < self.jpeg:
            import io

            buf = io.BytesIO()
            crop.save(buf, "JPEG", quality=int(rng.integers(40, 91)))
            crop = Image.open(buf).convert("RGB")
        return crop


@dataclass
class Batch:
    images: torch.Tensor  # N x 3 x S x S float32 in [-1, 1]
    weights: torch.Tensor  # N x 1 x S x S float32: face_weight in faces, 1 elsewhere
    is_face: list[bool]  # which crops were drawn around a face


class CropSampler:
    """Random square crops of ``size`` px from the photos, with face priority.

    Scale jitter: a crop covers ``size / s`` photo pixels, s drawn log-uniformly from
    ``scale`` (s > 1 zooms in); face crops are squares of ``face_zoom`` x the face box,
    moved a little at random. Horizontal flips with probability 1/2.
    """

    def __init__(
        self,
        photos: list[Photo],
        size: int = 256,
        *,
        scale: tuple[float, float] = (0.75, 1.5),
        face_fraction: float = 0.3,
        face_weight: float = 1.5,
        face_zoom: tuple[float, float] = (1.6, 3.0),
        flip: bool = True,
        seed: int = 0,
        augment: Augment | None = None,
    ) -> None:
        self.photos = photos
        self.augment = augment
        self.size = size
        self.scale = scale
        self.face_fraction = face_fraction
        self.face_weight = face_weight
        self.face_zoom = face_zoom
        self.flip = flip
        self.rng = np.random.default_rng(seed)
        self.face_index = [(i, j) for i, p in enumerate(photos) for j in range(len(p.faces))]

    @property
    def has_faces(self) -> bool:
        return bool(self.face_index)

    # -- resumable state --------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]

    # -- sampling ------------------------------------------------------------------------
    def face_count(self, n: int) -> int:
        """How many of a batch of n are face crops: ceil(face_fraction * n) when there are faces."""
        return min(n, math.ceil(self.face_fraction * n)) if self.has_faces and self.face_fraction > 0 else 0

    def batch(self, n: int) -> Batch:
        """n crops, ``face_count(n)`` of them around faces, in random order."""
        faces = self.face_count(n)
        kinds = [i < faces for i in range(n)]
        return self.crops([kinds[i] for i in self.rng.permutation(n)])

    def crops(self, kinds: list[bool]) -> Batch:
        """One crop per entry: around a face where True (if any photo has one), else anywhere."""
        crops = [self.face_crop() if face and self.has_faces else self.random_crop() for face in kinds]
        imgs = np.stack([c[0] for c in crops])
        weights = np.stack([c[1] for c in crops])
        return Batch(
            images=torch.from_numpy(imgs).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0),
            weights=torch.from_numpy(weights)[:, None],
            is_face=[bool(c[2]) for c in crops],
        )

    def random_crop(self) -> tuple[np.ndarray, np.ndarray, bool]:
        photo = self.photos[int(self.rng.integers(len(self.photos)))]
        h, w = photo.pixels.shape[:2]
        lo, hi = self.scale
        s = math.exp(self.rng.uniform(math.log(lo), math.log(hi)))
        side = min(h, w, max(8, round(self.size / s)))
        if self.augment is not None and self.rng.random() < self.augment.whole:
            side = min(h, w)  # the whole photo's short side, scaled down to the crop
        x0 = int(self.rng.integers(0, w - side + 1))
        y0 = int(self.rng.integers(0, h - side + 1))
        return self._cut(photo, x0, y0, side, face=False)

    def face_crop(self) -> tuple[np.ndarray, np.ndarray, bool]:
        i, j = self.face_index[int(self.rng.integers(len(self.face_index)))]
        photo = self.photos[i]
        h, w = photo.pixels.shape[:2]
        x0, y0, x1, y1 = photo.faces[j]
        zoom = self.rng.uniform(*self.face_zoom)
        side = min(h, w, max(16, round(max(x1 - x0, y1 - y0) * zoom)))
        cx = (x0 + x1) / 2 + self.rng.uniform(-0.15, 0.15) * side
        cy = (y0 + y1) / 2 + self.rng.uniform(-0.15, 0.15) * side
        left = int(round(min(max(cx - side / 2, 0), w - side)))
        top = int(round(min(max(cy - side / 2, 0), h - side)))
        return self._cut(photo, left, top, side, face=True)

    def _cut(self, photo: Photo, x0: int, y0: int, side: int, face: bool) -> tuple[np.ndarray, np.ndarray, bool]:
        k = self.size / side
        aug = self.augment
        if aug is not None and aug.rotate and self.rng.random() < aug.rotate:
            crop = self._rotated(photo, x0, y0, side)
        else:
            crop = Image.fromarray(photo.pixels[y0 : y0 + side, x0 : x0 + side])
        if side != self.size:
            crop = crop.resize((self.size, self.size), Image.Resampling.BILINEAR, reducing_gap=None)
        if aug is not None:
            other = self.photos[int(self.rng.integers(len(self.photos)))].pixels
            crop = aug.apply(crop, self.rng, other if min(other.shape[:2]) >= self.size else None)
        arr = np.asarray(crop, dtype=np.uint8)
        weight = np.ones((self.size, self.size), dtype=np.float32)
        for fx0, fy0, fx1, fy1 in photo.faces:  # every face inside the crop, not only the chosen one
            a0, b0 = max(0, math.floor((fx0 - x0) * k)), max(0, math.floor((fy0 - y0) * k))
            a1, b1 = min(self.size, math.ceil((fx1 - x0) * k)), min(self.size, math.ceil((fy1 - y0) * k))
            if a1 > a0 and b1 > b0:
                weight[b0:b1, a0:a1] = self.face_weight
        if self.flip and self.rng.random() < 0.5:
            arr, weight = arr[:, ::-1], weight[:, ::-1]
        return np.ascontiguousarray(arr), np.ascontiguousarray(weight), face

    def _rotated(self, photo: Photo, x0: int, y0: int, side: int) -> Image.Image:
        """The ``side`` square at (x0, y0), turned about its centre by a random angle: cut
        from a region large enough that no corner is empty (the plain square where the
        photo is too small for that)."""
        h, w = photo.pixels.shape[:2]
        angle = self.rng.uniform(-self.augment.max_angle, self.augment.max_angle)
        t = math.radians(abs(angle))
        big = math.ceil(side * (math.cos(t) + math.sin(t))) + 2
        cx, cy = x0 + side / 2, y0 + side / 2
        bx0 = int(round(min(max(cx - big / 2, 0), w - big)))
        by0 = int(round(min(max(cy - big / 2, 0), h - big)))
        if big > min(h, w):
            return Image.fromarray(photo.pixels[y0 : y0 + side, x0 : x0 + side])
        region = Image.fromarray(photo.pixels[by0 : by0 + big, bx0 : bx0 + big])
        region = region.rotate(angle, resample=Image.Resampling.BILINEAR)
        off = (big - side) // 2
        return region.crop((off, off, off + side, off + side))
