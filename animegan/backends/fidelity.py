"""How close a backend stays to float32: PSNR as a person sees it, the bound every
faster backend must meet, and the real photos it is checked on."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import images

MIN_PSNR = 38.0  # dB against float32: below this a person may tell the outputs apart
CALIBRATION_DIR = Path(__file__).resolve().parent / "calibration"


def psnr(a, b) -> float:
    """PSNR in dB between generator outputs (one picture or a batch, numpy or torch, in
    [-1, 1]), compared as the 8-bit images a person sees (:func:`animegan.images.levels`);
    ``inf`` for identical pictures. The package's one PSNR."""
    return psnr_8bit(images.levels(a), images.levels(b))


def psnr_8bit(a, b) -> float:
    """PSNR in dB between two 8-bit pictures (arrays or PIL images of the same size); ``inf`` if identical."""
    x = np.asarray(a, dtype=np.float64)
    y = np.asarray(b, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"PSNR of pictures of different shapes: {x.shape} and {y.shape}")
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def calibration_photos(max_side: int = 512) -> list[np.ndarray]:
    """The real photos shipped for calibration (public domain / CC0), as network inputs."""
    out = []
    for path in sorted(CALIBRATION_DIR.glob("*.jpg")):
        img = images.decode(path).rgb
        out.append(images.to_array(images.resize(img, images.fit_size(img.size, max_side))))
    return out
