"""Less flicker in clips and the live webcam, without washing out the style.

Stylized one by one, neighbouring frames of a clip come out differently: sensor noise,
exposure drift and motion change each normalisation layer's whole-frame statistics (so
colours pulse) and the fine textures (so strokes crawl). Two remedies:

1. **Flow blending** (always). The previous *result* is warped onto the current frame
   with OpenCV's DIS optical flow (current -> previous, on frames shrunk to
   ``FLOW_SIDE``) and blended in with weight up to ``blend``, only where the flow is
   trustworthy: where the warped previous *input* matches the current input, so things
   that appear, disappear or move unlike the flow keep their own stylization. It runs on
   the style's own backend and costs a few milliseconds a frame.
2. **Carried statistics** (``carry=True``). Every normalisation layer normalises with a
   running average of its statistics over the frames (``alpha`` of the previous
   average, ``1 - alpha`` of this frame's own), measured in the same single pass (the
   injected-statistics network, :mod:`animegan.models.injected`, in its ``frames``
   mode). Off by default: on the benchmark clip it added nothing measurable to the flow
   blending (warping error 1.24 levels either way) and cost 72 % more time per frame on
   the int8 backend (benchmarks/bench_video.py); it is for clips whose colours jump when
   something enters the frame.

A scene cut (the two frames' grey thumbnails correlate below ``cut_correlation``) or a
change of frame size starts afresh: no carried statistics, no blending.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from .stylizer import Stylizer
from .tiles.layout import sampling_grids

DEFAULT_ALPHA = 0.8  # weight of the carried statistics
DEFAULT_BLEND = 0.6  # the most the warped previous result counts for
CUT_CORRELATION = 0.5  # thumbnails correlating less than this: a scene cut
FLOW_SIDE = 256  # long side of the frames the optical flow is computed on
TRUST_LEVELS = 12.0  # photometric error (8-bit levels, blurred) at which trust falls to 1/e


class Stabilizer:
    """Stylizes the frames of one clip (or one webcam session) in order, with less flicker.

    Frames are H x W x 3 uint8 RGB arrays; each call returns the stylized frame, same
    size, uint8. ``carry=True`` also carries the statistics (a style whose statistics
    cannot be carried, an ONNX style, keeps the flow blending alone: ``note`` says so).
    """

    def __init__(self, stylizer: Stylizer, style: str | None = None, *, carry: bool = False,
                 alpha: float = DEFAULT_ALPHA, blend: float = DEFAULT_BLEND,
                 cut_correlation: float = CUT_CORRELATION) -> None:
        self.style = style or stylizer.style
        self._stylizer = stylizer
        self.engine, self.note = None, ""
        if carry:
            try:
                self.engine = stylizer.engine(self.style)
            except ValueError as exc:
                self.note = f"statistics not carried: {exc}"
        self.alpha, self.blend, self.cut_correlation = alpha, blend, cut_correlation
        self.frames = 0
        self.cuts = 0  # fresh starts after the first frame
        self._dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)
        self._thumb: np.ndarray | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame (the next one is stylized on its own)."""
        self._stats: np.ndarray | None = None  # the carried statistics (L x 2)
        self._prev_in: np.ndarray | None = None  # the previous frame, RGB uint8
        self._prev_out: np.ndarray | None = None  # the previous result, float32 RGB

    def _is_cut(self, frame: np.ndarray) -> bool:
        thumb = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (32, 32),
                           interpolation=cv2.INTER_AREA).astype(np.float32)
        previous, self._thumb = self._thumb, thumb
        return previous is None or _correlation(thumb, previous) < self.cut_correlation

    def __call__(self, frame: np.ndarray, *, wait: bool = True) -> np.ndarray:
        """The stylized frame. With ``wait=False`` raise :class:`animegan.stylizer.Busy`
        instead of waiting for the cores (live frames)."""
        frame = np.ascontiguousarray(frame[..., :3], dtype=np.uint8)
        cut = self._is_cut(frame)
        if self._prev_in is not None and (cut or self._prev_in.shape != frame.shape):
            self.cuts += 1
            self.reset()
        out = self._stylize(frame, wait).astype(np.float32)
        if self._prev_out is not None and self.blend > 0:
            out = self._blend_previous(frame, out)
        self._prev_in, self._prev_out = frame, out
        self.frames += 1
        return out.astype(np.uint8)

    def _stylize(self, frame: np.ndarray, wait: bool) -> np.ndarray:
        """The frame through the network: with the carried statistics, or on its own."""
        if self.engine is None:
            return np.asarray(self._stylizer.run_array(self.style, Image.fromarray(frame), wait=wait))
        h, w = frame.shape[:2]
        x = np.ascontiguousarray((frame.astype(np.float32) * np.float32(2 / 255) - 1).transpose(2, 0, 1)[None])
        carried = self._stats is not None
        given = self._stats if carried else np.zeros((self.engine.layers, 2), np.float32)
        alpha = self.alpha if carried else 0.0
        with self._stylizer.runtime.inference(self.engine.family, wait=wait):
            y, own = self.engine.frame(x, given, alpha, sampling_grids((h, w)))
        self._stats = (alpha * given + (1 - alpha) * own).astype(np.float32)
        return (y[0] * np.float32(0.5) + np.float32(0.5)).clip(0, 1).transpose(1, 2, 0) * np.float32(255)

    def _blend_previous(self, frame: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Blend the previous result, warped along the flow, where the flow is trustworthy."""
        h, w = frame.shape[:2]
        scale = min(1.0, FLOW_SIDE / max(h, w))
        small = (max(8, round(w * scale)), max(8, round(h * scale)))
        cur = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), small, interpolation=cv2.INTER_AREA)
        prev = cv2.resize(cv2.cvtColor(self._prev_in, cv2.COLOR_RGB2GRAY), small, interpolation=cv2.INTER_AREA)
        flow = self._dis.calc(cur, prev, None)  # for each current pixel: where it was before
        flow = cv2.resize(flow, (w, h), interpolation=cv2.INTER_LINEAR) / np.float32(scale)
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        map_x, map_y = gx + flow[..., 0], gy + flow[..., 1]
        warped_out = cv2.remap(self._prev_out, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        warped_in = cv2.remap(self._prev_in, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # trust: the warped previous frame matches this one (blurred, so noise does not count)
        diff = cv2.GaussianBlur(np.abs(warped_in.astype(np.float32) - frame.astype(np.float32)).mean(axis=2),
                                (0, 0), 2.0)
        inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
        weight = (self.blend * np.exp(-((diff / TRUST_LEVELS) ** 2)) * inside)[..., None].astype(np.float32)
        return out * (1 - weight) + warped_out * weight


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation of two thumbnails (1: the same picture, whatever the brightness)."""
    a, b = a - a.mean(), b - b.mean()
    denom = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return 1.0 if denom < 1e-6 else float((a * b).sum() / denom)
