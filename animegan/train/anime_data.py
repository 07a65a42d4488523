"""The anime side of GAN training: frames, their grayscale and edge-smoothed copies.

AnimeGANv2 shows its discriminator three kinds of anime picture: the frames themselves
(real), their grayscale copies and copies whose edges were blurred (both "fake"), so that
it learns that anime means colour *and* crisp lines. Preparing the smoothed copies costs
a Canny pass and a blur per frame; it is done once, written to a cache folder keyed by the
frames (names, sizes, modification times) and the preparation settings, and reused by
every later run or resume on the same data.

Edge smoothing as in AnimeGANv2's ``edge_smooth.py``: Canny edges (100, 200) of the
grayscale frame, dilated with a 5 x 5 square, and inside that band each pixel replaced by
its 5 x 5 Gaussian average (reflected borders); outside the band the frame is untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps

from . import TrainingError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}
PREP_VERSION = 1  # bump when the preparation changes, so old caches are not reused
KERNEL = 5
# Keep the prepared frames in memory up to this many bytes; beyond it, read them per batch.
MEMORY_LIMIT = 1536 * 2**20


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Every image file under ``folder`` (recursive, sorted); a clear error when there are none."""
    root = Path(folder)
    if not root.is_dir():
        raise TrainingError(f"{root} is not a folder. Pass a folder of anime frames (PNG or JPEG) to --anime.")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise TrainingError(
            f"No images found under {root} (looked for {', '.join(sorted(IMAGE_SUFFIXES))}). "
            "Put the anime frames there, e.g. stills extracted from one film."
        )
    return files


def edge_smooth(rgb: np.ndarray) -> np.ndarray:
    """The frame with its edges blurred: Gaussian 5 x 5 inside the dilated Canny edges only."""
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    band = edge_band(gray)
    blurred = cv2.GaussianBlur(rgb, (KERNEL, KERNEL), 0, borderType=cv2.BORDER_REFLECT_101)
    return np.where(band[..., None], blurred, rgb)


def edge_band(gray: np.ndarray) -> np.ndarray:
    """Boolean mask of the dilated Canny edges of a uint8 grayscale image."""
    edges = cv2.Canny(gray, 100, 200)
    return cv2.dilate(edges, np.ones((KERNEL, KERNEL), np.uint8)) > 0


def to_gray3(rgb: np.ndarray) -> np.ndarray:
    """Grayscale copy with three equal channels (what the discriminator and VGG take)."""
    return np.repeat(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)


def _load_rgb(path: Path, side: int) -> np.ndarray:
    """Decode (EXIF orientation applied), RGB, shorter side scaled to ``side`` (area filter down, cubic up)."""
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im).convert("RGB")
            w, h = im.size
            scale = side / min(w, h)
            size = (max(side, round(w * scale)), max(side, round(h * scale)))
            resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BICUBIC
            return np.asarray(im.resize(size, resample))
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise TrainingError(f"Cannot read anime frame {path}: {exc}. Remove or replace the file.") from exc


def cache_key(root: Path, files: list[Path], side: int) -> str:
    """Hash of the frames (names relative to ``root``, sizes, mtimes) and the preparation settings."""
    h = hashlib.sha256(json.dumps({"version": PREP_VERSION, "side": side}).encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.relative_to(root)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


@dataclass
class AnimeFrames:
    """Prepared frames on disk (``folder``/colour, gray, smooth), some or all of them in memory."""

    folder: Path
    names: list[str]
    reused: bool  # True when an earlier run's preparation was found and used

    def __post_init__(self) -> None:
        self._memory: dict[tuple[str, str], np.ndarray] = {}
        total = 0
        for name in self.names:
            for kind in ("colour", "gray", "smooth"):
                arr = self._read(kind, name)
                total += arr.nbytes
                if total > MEMORY_LIMIT:
                    self._memory.clear()
                    return
                self._memory[(kind, name)] = arr

    def __len__(self) -> int:
        return len(self.names)

    def _read(self, kind: str, name: str) -> np.ndarray:
        with Image.open(self.folder / kind / name) as im:
            return np.asarray(im.convert("L" if kind == "gray" else "RGB"))

    def image(self, kind: str, index: int) -> np.ndarray:
        """``kind`` is "colour", "gray" or "smooth"; uint8 H x W x 3 RGB (gray: three equal channels)."""
        name = self.names[index]
        arr = self._memory.get((kind, name))
        if arr is None:
            arr = self._read(kind, name)
        return np.repeat(arr[..., None], 3, axis=2) if kind == "gray" else arr

    def sample(self, batch: int, size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """One batch of random ``size`` px crops (random horizontal flips), N x 3 x size x size in [-1, 1].

        ``anime`` and ``anime_gray`` are the same crops in colour and in gray (the style
        loss compares the output with the gray ones); ``smooth_gray`` are gray crops of
        edge-smoothed frames drawn independently, as AnimeGANv2 draws them.
        """
        colour, gray = zip(*(self._crop(("colour", "gray"), size, rng) for _ in range(batch)), strict=True)
        smooth = [to_gray3(self._crop(("smooth",), size, rng)[0]) for _ in range(batch)]
        return {"anime": _to_tensor(colour), "anime_gray": _to_tensor(gray), "smooth_gray": _to_tensor(smooth)}

    def _crop(self, kinds: tuple[str, ...], size: int, rng: np.random.Generator) -> list[np.ndarray]:
        index = int(rng.integers(len(self)))
        images = [self.image(k, index) for k in kinds]
        h, w = images[0].shape[:2]
        if min(h, w) < size:  # frames were prepared for a smaller crop: scale up
            scale = size / min(h, w)
            dsize = (max(size, round(w * scale)), max(size, round(h * scale)))
            images = [cv2.resize(im, dsize, interpolation=cv2.INTER_CUBIC) for im in images]
            h, w = images[0].shape[:2]
        y, x = int(rng.integers(h - size + 1)), int(rng.integers(w - size + 1))
        flip = bool(rng.integers(2))
        out = []
        for im in images:
            crop = im[y : y + size, x : x + size]
            out.append(np.ascontiguousarray(crop[:, ::-1] if flip else crop))
        return out


def _to_tensor(images) -> torch.Tensor:
    arr = np.stack(images).astype(np.float32)
    return torch.from_numpy(arr).permute(0, 3, 1, 2).div_(127.5).sub_(1.0)


def prepare(anime_dir: str | os.PathLike, cache_root: str | os.PathLike, side: int = 256,
            progress: bool = False) -> AnimeFrames:
    """Prepare (or find already prepared) colour, gray and edge-smoothed frames.

    Frames are scaled so the shorter side is ``side`` px (crops are taken from them at
    training time). The result lives in ``cache_root/anime-<key>/``; a ``manifest.json``
    written last marks a finished preparation, so an interrupted one is redone.
    """
    root = Path(anime_dir)
    files = list_images(root)
    folder = Path(cache_root) / f"anime-{cache_key(root, files, side)}"
    manifest = folder / "manifest.json"
    if manifest.is_file():
        names = json.loads(manifest.read_text())["names"]
        if all((folder / k / n).is_file() for k in ("colour", "gray", "smooth") for n in names):
            return AnimeFrames(folder, names, reused=True)
    for kind in ("colour", "gray", "smooth"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
    names = []
    iterator = files
    if progress:
        from tqdm import tqdm

        iterator = tqdm(files, desc="anime frames", unit="frame")
    for i, path in enumerate(iterator):
        rgb = _load_rgb(path, side)
        name = f"{i:06d}.png"
        Image.fromarray(rgb).save(folder / "colour" / name)
        Image.fromarray(to_gray3(rgb)[..., 0]).save(folder / "gray" / name)
        Image.fromarray(edge_smooth(rgb)).save(folder / "smooth" / name)
        names.append(name)
    sources = [str(f.relative_to(root)) for f in files]
    manifest.write_text(json.dumps({"version": PREP_VERSION, "side": side, "names": names, "sources": sources},
                                   indent=1))
    return AnimeFrames(folder, names, reused=False)
