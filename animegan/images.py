"""Decode anything a caller has into an RGB image (+ alpha), apply the size policy,
and convert between images and the generator's [-1, 1] NCHW arrays."""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .policy import DEFAULT_MAX_PIXELS, MIN_SIDE

ImageInput = str | os.PathLike | bytes | bytearray | Image.Image | np.ndarray


class ImageError(ValueError):
    """The input is not a usable image; the message says what was wrong and what to do."""


@dataclass
class Decoded:
    """An RGB image ready for the network, and the alpha channel to put back (if any)."""

    rgb: Image.Image
    alpha: Image.Image | None = None
    notes: list[str] = field(default_factory=list)  # what a person should know (e.g. first frame only)


def _array_to_image(arr: np.ndarray) -> Image.Image:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ImageError(
            f"An array of shape {arr.shape} is not an image; expected H x W, H x W x 3 (RGB) "
            "or H x W x 4 (RGBA)."
        )
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        arr = (arr.astype(np.float32) / 257.0).round().astype(np.uint8)
    elif np.issubdtype(arr.dtype, np.floating):
        finite = np.nan_to_num(arr.astype(np.float32), nan=0.0, posinf=1.0, neginf=0.0)
        scale = 255.0 if finite.size and finite.max() <= 1.0 else 1.0  # 0..1 floats are usual
        arr = (finite * scale).clip(0, 255).round().astype(np.uint8)
    elif arr.dtype != np.uint8:
        arr = arr.clip(0, 255).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(arr))


def _check_pixels(size: tuple[int, int], max_pixels: int) -> None:
    w, h = size
    if w * h > max_pixels:
        raise ImageError(
            f"The image is {w} x {h} ({w * h / 1e6:.0f} megapixels), over the limit of "
            f"{max_pixels / 1e6:.0f} megapixels. Please resize it before uploading."
        )


@contextlib.contextmanager
def _decoding(name: str):
    """Pillow's failures while reading ``name`` as the one ImageError a person reads."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except Image.DecompressionBombError:
        raise ImageError(f"{name} is far too large to decode safely (a decompression bomb?).") from None
    except UnidentifiedImageError:
        raise ImageError(
            f"{name} is not an image Pillow can read. Use a JPEG, PNG, WebP, BMP, GIF or TIFF file."
        ) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{name} is truncated or damaged and cannot be decoded ({exc}).") from None


def open_image(src: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Open and fully decode ``src``, refusing bombs, non-images and truncated files."""
    if isinstance(src, Image.Image):
        _check_pixels(src.size, max_pixels)
        return src
    if isinstance(src, np.ndarray):
        _check_pixels((src.shape[1], src.shape[0]) if src.ndim >= 2 else (0, 0), max_pixels)
        return _array_to_image(src)
    if isinstance(src, (bytes, bytearray)):
        name, fp = "the uploaded data", io.BytesIO(src)
    elif isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.is_file():
            raise ImageError(f"No such file: {path}")
        name, fp = path.name, path
    else:
        raise ImageError(f"Cannot read an image from a {type(src).__name__}; pass a path, bytes, PIL image or array.")
    with _decoding(name):
        img = Image.open(fp)
    _check_pixels(img.size, max_pixels)  # from the header, before any pixel is decoded
    with _decoding(name):
        img.load()
    return img


FRAMES_COUNTED = 10  # a frame count stops here: formats without one in the header are walked frame by frame
_WALKED = {"GIF", "TIFF"}  # Pillow counts these by walking every frame (a 95 MB GIF: 4 million steps)


def frame_count(img: Image.Image, limit: int = FRAMES_COUNTED) -> int:
    """How many frames (pages) ``img`` holds, counted up to ``limit + 1`` (= "more than
    ``limit``"): a GIF or TIFF is walked, at most that far; other formats say it in their
    header. The image is left at the frame it was at."""
    if not getattr(img, "is_animated", False):
        return 1
    if (img.format or "").upper() not in _WALKED:
        return int(getattr(img, "n_frames", 1) or 1)
    current, count = img.tell(), 1
    try:
        while count <= limit:
            img.seek(count)
            count += 1
    except (EOFError, OSError, ValueError, SyntaxError):
        pass  # the last frame, or a damaged one further on: what was counted stands
    finally:
        img.seek(current)
    return count


def frames_note(img: Image.Image, limit: int = FRAMES_COUNTED) -> str | None:
    """A note for an animated GIF/WebP/PNG or a multi-page TIFF: only its first frame is used."""
    count = frame_count(img, limit)
    if count <= 1:
        return None
    kind = "pages" if (img.format or "").upper() == "TIFF" else "frames"
    many = f"more than {limit}" if count > limit else str(count)
    return f"The file holds {many} {kind}; only the first was used."


def _to_rgb(img: Image.Image) -> Decoded:
    """Every Pillow mode to RGB, keeping alpha (also palette transparency) aside."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if not np.isfinite(arr).all():
            raise ImageError("The image holds NaN or infinite values (a float TIFF?), so its colours are unknown. "
                             "Export it as an 8- or 16-bit image and try again.")
        if mode.startswith("I;16") or arr.max(initial=0) > 255:
            arr = arr / 257.0  # 16-bit range to 8-bit
        elif mode == "F" and arr.max(initial=0) <= 1.0:
            arr = arr * 255.0
        gray = Image.fromarray(arr.clip(0, 255).round().astype(np.uint8), "L")
        return Decoded(gray.convert("RGB"))
    if mode == "P" or mode == "PA":
        img = img.convert("RGBA" if ("transparency" in img.info or mode == "PA") else "RGB")
    elif mode in ("LA", "La", "RGBa"):
        img = img.convert("RGBA")
    if img.mode == "RGBA":
        alpha = img.getchannel("A")
        if alpha.getextrema() == (255, 255):  # fully opaque: nothing to put back
            alpha = None
        return Decoded(img.convert("RGB"), alpha)
    return Decoded(img if img.mode == "RGB" else img.convert("RGB"))


def decode(src: ImageInput, max_pixels: int = DEFAULT_MAX_PIXELS) -> Decoded:
    """Open ``src``, apply its EXIF orientation, and split it into RGB + optional alpha."""
    img = open_image(src, max_pixels)
    with _decoding(getattr(img, "filename", None) or "the image"):
        note = frames_note(img)
        img.load()  # the frame walk may have let go of the first frame's pixels
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block must not lose the photo
        pass
    decoded = _to_rgb(img)
    if note:
        decoded.notes.append(note)
    return decoded


def fit_size(size: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """The size after the size policy: long side at most ``max_side``, aspect kept."""
    w, h = size
    if max_side and max(w, h) > max_side:
        scale = max_side / max(w, h)
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
    if min(w, h) < MIN_SIDE:
        raise ImageError(
            f"The image would be {w} x {h} px; both sides must be at least {MIN_SIDE} px. "
            "Use a larger image (or a larger maximum side for very long, thin images)."
        )
    return w, h


def resize(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    if img.size == size:
        return img
    # reducing_gap: a fast box pre-shrink for huge photos, then Lanczos for quality
    return img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def to_array(img: Image.Image) -> np.ndarray:
    """RGB image -> 1 x 3 x H x W float32 in [-1, 1], as the published demo computes it
    (``to_tensor(img) * 2 - 1``), so results match it pixel for pixel."""
    arr = np.asarray(img, dtype=np.uint8).astype(np.float32) / np.float32(255)
    return np.ascontiguousarray((arr * np.float32(2) - np.float32(1)).transpose(2, 0, 1)[None])


def levels(out) -> np.ndarray:
    """Generator outputs in [-1, 1] (any shape; numpy or torch) -> the 8-bit levels a person
    sees, as the published demo makes them (``(x * 0.5 + 0.5).clip(0, 1)``, then
    ``mul(255).byte()``, which truncates). The one conversion: images, tiles and PSNR use it."""
    if hasattr(out, "detach"):
        out = out.detach().float().cpu().numpy()
    out = np.asarray(out, dtype=np.float32)
    return ((out * np.float32(0.5) + np.float32(0.5)).clip(0, 1) * np.float32(255)).astype(np.uint8)


def from_array(out: np.ndarray) -> Image.Image:
    """1 x 3 x H x W (or 3 x H x W) in [-1, 1] -> RGB image (:func:`levels`)."""
    out = np.asarray(out, dtype=np.float32)
    if out.ndim == 4:
        out = out[0]
    return Image.fromarray(levels(out).transpose(1, 2, 0), "RGB")


def with_alpha(rgb: Image.Image, alpha: Image.Image | None) -> Image.Image:
    """Put the original alpha channel back on a result (resized to match)."""
    if alpha is None:
        return rgb
    out = rgb.copy()
    out.putalpha(resize(alpha, rgb.size))
    return out
