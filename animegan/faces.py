"""Faces: find them with MTCNN and frame them as the face models were trained. Pure
detection and geometry: the face loop itself (stylize the crop, paste it back) is the
Stylizer's.

The face_paint models saw 512 x 512 crops with the face filling the middle, hair and chin
included; a face that covers a tenth of a holiday photo gets a much worse result than
the same face framed like that. So: detect, square crop with a margin, stylize at the
trained size, and (paste mode) scale back and feather it into the stylized photo.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from . import runtime
from .runtime import Runtime

DETECT_SIDE = 640  # detect on a copy whose long side is at most this
THRESHOLD = 0.95  # MTCNN's final (ONet) probability; real faces score 0.99+
MIN_FACE = 0.03  # ignore faces whose box is smaller than this fraction of the photo's long side
MIN_FACE_PX = 20  # ... or than this many pixels in the copy detection runs on
MAX_FACES = 8
# Square side = MARGIN x the box's longer side. The known demo frames faces FFHQ-style from
# landmarks, enlarged 1.3x; on our photos' MTCNN landmarks that is 1.98-2.13x the box.
MARGIN = 2.0
LIFT = 0.05  # move the square up by this fraction of its side: hair matters more than neck
FEATHER = 0.12  # paste mode: the mask fades in over this fraction of the square's side


@dataclass(frozen=True)
class Face:
    """A detected face: its box (x0, y0, x1, y1) in the photo's pixels and MTCNN's probability."""

    box: tuple[float, float, float, float]
    prob: float

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def center(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


@dataclass(frozen=True)
class Square:
    """A square region of the photo (it may reach outside it): left, top and side in pixels."""

    left: int
    top: int
    side: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        return self.left, self.top, self.left + self.side, self.top + self.side


# -- detection ---------------------------------------------------------------------------
def _make_detector():
    """An MTCNN (CPU). Its weights ship with the package."""
    from facenet_pytorch import MTCNN

    return MTCNN(keep_all=True, select_largest=True, device="cpu").eval()


def detector(rt: Runtime | None = None):
    """The process's one MTCNN, kept by the runtime, made on first use."""
    return (rt or runtime.get()).shared("faces.mtcnn", _make_detector)


def detect_faces(
    img: Image.Image,
    *,
    rt: Runtime | None = None,
    threshold: float = THRESHOLD,
    min_face: float = MIN_FACE,
    max_faces: int = MAX_FACES,
    detect_side: int = DETECT_SIDE,
) -> list[Face]:
    """Human faces in ``img`` (any mode), largest first, at most ``max_faces``.

    The caller decides when detection may use the cores (the Stylizer holds the
    inference lock around it); the shared detector is never changed by a call.

    Detection runs on a copy whose long side is at most ``detect_side`` and the boxes are
    mapped back, so a 12-megapixel photo costs about as much as a small one. Faces below
    ``threshold`` probability or smaller than ``min_face`` x the photo's long side (and
    than ``MIN_FACE_PX`` in the detection copy) are dropped.
    """
    rgb = img if img.mode == "RGB" else img.convert("RGB")
    w, h = rgb.size
    small = rgb
    if max(w, h) > detect_side:
        k = detect_side / max(w, h)
        small = rgb.resize((max(1, round(w * k)), max(1, round(h * k))), Image.Resampling.BILINEAR, reducing_gap=2.0)
    # The image pyramid starts at faces of min_face_size: the smaller, the slower (on a
    # 512 px photo on 2 threads: 12 px ~110 ms, 15 px ~75 ms, 20 px ~55 ms). Below 20 px
    # (facenet's own default) a face upscaled to 512 has nothing left for the model anyway.
    min_size = max(MIN_FACE_PX, round(min_face * max(small.size)))
    if min(small.size) < min_size:
        return []  # no face that large fits (and MTCNN would fail on an empty pyramid)
    from facenet_pytorch.models.utils.detect_face import detect_face

    mtcnn = detector(rt)
    with torch.inference_mode():  # the minimum face size is this call's, not the detector's
        found, _ = detect_face(np.asarray(small), min_size, mtcnn.pnet, mtcnn.rnet, mtcnn.onet,
                               mtcnn.thresholds, mtcnn.factor, mtcnn.device)
    found = np.asarray(found[0] if len(found) else [], dtype=np.float64).reshape(-1, 5)
    sx, sy = w / small.width, h / small.height
    faces = []
    for box, prob in zip(found[:, :4], found[:, 4], strict=True):
        x0, y0 = max(0.0, box[0] * sx), max(0.0, box[1] * sy)
        x1, y1 = min(float(w), box[2] * sx), min(float(h), box[3] * sy)
        if prob < threshold or max(x1 - x0, y1 - y0) < min_face * max(w, h):
            continue
        faces.append(Face((float(x0), float(y0), float(x1), float(y1)), float(prob)))
    faces.sort(key=lambda f: f.width * f.height, reverse=True)
    return faces[:max_faces]


# -- framing ----------------------------------------------------------------------------
def face_square(
    face: Face, photo_size: tuple[int, int] | None = None, margin: float = MARGIN, lift: float = LIFT
) -> Square:
    """The square around ``face``: ``margin`` x its longer side, centred on it and moved up
    by ``lift`` x the side. Given the photo's size, the square is then slid back inside the
    photo along each axis where it fits (the face stays inside it: real pixels beat mirrored
    ones); where it is larger than the photo it stays centred and reaches outside."""
    side = max(1, round(max(face.width, face.height) * margin))
    cx, cy = face.center
    left, top = round(cx - side / 2), round(cy - side / 2 - lift * side)
    if photo_size is not None:
        w, h = photo_size
        if side <= w:
            left = min(max(left, 0), w - side)
        if side <= h:
            top = min(max(top, 0), h - side)
    return Square(left, top, side)


def crop_square(img: Image.Image, square: Square) -> Image.Image:
    """``img`` cut to ``square`` at its own scale. Parts outside the photo repeat its edge
    (mirroring would double faces); never black bars."""
    arr = np.asarray(img)
    h, w = arr.shape[:2]
    ys = np.clip(np.arange(square.top, square.top + square.side), 0, h - 1)
    xs = np.clip(np.arange(square.left, square.left + square.side), 0, w - 1)
    return Image.fromarray(np.ascontiguousarray(arr[ys[:, None], xs[None, :]]), img.mode)


def frame_face(img: Image.Image, face: Face, size: int, margin: float = MARGIN) -> tuple[Image.Image, Square]:
    """The face framed as the face models expect: the square crop resized to ``size``."""
    square = face_square(face, img.size, margin)
    crop = crop_square(img, square)
    resample = Image.Resampling.LANCZOS
    return crop.resize((size, size), resample, reducing_gap=3.0 if crop.width > 2 * size else None), square


# -- pasting back -----------------------------------------------------------------------
def feather_mask(side: int, feather: float = FEATHER) -> np.ndarray:
    """side x side weights in [0, 1]: 1 in the middle, easing to 0 at the square's edges."""
    ramp_px = max(1.0, feather * side)
    d = np.minimum(np.arange(side), np.arange(side)[::-1]).astype(np.float32) + 0.5
    t = np.clip(d / ramp_px, 0.0, 1.0)
    ramp = t * t * (3 - 2 * t)  # smoothstep: no visible seam where the fade starts
    return np.outer(ramp, ramp)


def paste_face(canvas: np.ndarray, face_img: Image.Image, square: Square, feather: float = FEATHER) -> None:
    """Blend ``face_img`` (scaled to the square) into ``canvas`` (H x W x 3 float32) in place."""
    h, w = canvas.shape[:2]
    x0, y0, x1, y1 = square.box
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
    if cx0 >= cx1 or cy0 >= cy1:
        return
    face = np.asarray(face_img.resize((square.side, square.side), Image.Resampling.LANCZOS), dtype=np.float32)
    mask = feather_mask(square.side, feather)[..., None]
    sy, sx = slice(cy0 - y0, cy1 - y0), slice(cx0 - x0, cx1 - x0)
    region = canvas[cy0:cy1, cx0:cx1]
    canvas[cy0:cy1, cx0:cx1] = region + mask[sy, sx] * (face[sy, sx] - region)
