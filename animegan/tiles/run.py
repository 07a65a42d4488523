"""A picture of any size stylized in tiles, with memory bounded by the tile size.

Every normalisation layer of the generator needs the *whole* picture's statistics (mean and
variance of its input); a tile normalised with its own looks different from its neighbours
(25 dB from the untiled picture: visible seams).

1. **Statistics, fast (the default).** :func:`fast_statistics`: one pass over the picture
   reduced (to about a megapixel, at most half its size) gives each layer's statistics of
   the whole picture's content at the wrong resolution; full-size crops spread over a
   third of the picture, each run once as it is and once reduced, measure what the
   reduction changes, and correct for it. About half a pass in all; 45-51 dB from the
   untiled picture at 2048 x 1536 (benchmarks/results/fullres.md). Measured and not good
   enough: the reduced pass alone (35-48 dB), and re-measuring every layer at full size
   under the reduced estimate (worse than no correction: each layer is measured under
   the earlier layers' errors, which compound).
2. **Statistics, exactly** (``exact=True``, ``--exact-statistics``): layer by layer, each
   tile runs the network up to that normalisation layer (with the whole picture's
   statistics of the layers before it, already known) and measures it over its core; the
   tiles' measurements combine into the whole picture's
   (:func:`animegan.tiles.layout.combine`). All 24 together cost about six full passes.
3. **Tiles.** Each tile runs the whole network with those statistics, and its core is
   written into the result. The picture is held as 8-bit RGB, in and out; only one
   tile's activations exist at a time.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import numpy as np
from PIL import Image

from .. import images
from . import layout

TileProgress = Callable[[int, int, str], None]  # (steps done, steps in all, what is running)
Hold = Callable[[], contextlib.AbstractContextManager]  # a context held around each pass (the runtime's inference lock)
# fast statistics (fast_statistics): the reduced picture's pixels (capped at a tile's, so it
# fits the same memory) and at most half the picture's size; full-size crops over about a
# third of the picture measure what the reduction changes (tested: 0.25-0.5 reductions)
REDUCED_PIXELS = 1 << 20
MAX_REDUCTION = 0.5
CROP_COVERAGE = 1 / 3


def _tile_input(rgb: np.ndarray, tile: layout.Tile) -> np.ndarray:
    y0, y1, x0, x1 = tile.extent
    return _as_input(rgb[y0:y1, x0:x1])


def _to_uint8(out: np.ndarray) -> np.ndarray:
    """1 x 3 x h x w in [-1, 1] -> h x w x 3 uint8 (:func:`animegan.images.levels`)."""
    return images.levels(out[0]).transpose(1, 2, 0)


def _pad_to(rgb: np.ndarray, multiple: int) -> tuple[np.ndarray, int, int]:
    """Edge-pad to a multiple, split around the picture as the LiteGenerator does."""
    h, w = rgb.shape[:2]
    pad_h, pad_w = (multiple - h % multiple) % multiple, (multiple - w % multiple) % multiple
    if not pad_h and not pad_w:
        return rgb, 0, 0
    top, left = pad_h // 2, pad_w // 2
    return np.pad(rgb, ((top, pad_h - top), (left, pad_w - left), (0, 0)), mode="edge"), top, left


def whole_statistics(engine, rgb: np.ndarray, places: list, step: Callable[[str], None],
                     hold: Hold = contextlib.nullcontext) -> np.ndarray:
    """The whole picture's statistics (L x 2), one layer after the other. ``places``:
    (tile, masks, grids) for every tile."""
    stats = np.zeros((engine.layers, 2), np.float32)
    counts = [[float(m.sum()) for m in masks] for _, masks, _ in places]  # core pixels per level
    for k in range(engine.layers):
        parts = []
        for (t, masks, grids), count in zip(places, counts, strict=True):
            with hold():
                _, measured = engine.tile(_tile_input(rgb, t), stats, masks, grids, stop=k)
            parts.append((count[engine.levels[k]], measured.reshape(1, 2)))
            step(f"statistics of layer {k + 1} of {engine.layers}")
        stats[k] = layout.combine(parts)[0]
    return stats


def _as_input(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray((rgb.astype(np.float32) * np.float32(2 / 255) - np.float32(1)).transpose(2, 0, 1)[None])


def _reduced_size(h: int, w: int, scale: float, multiple: int) -> tuple[int, int]:
    """(w, h) at ``scale``, in whole strides of the network."""
    return max(multiple, int(w * scale) // multiple * multiple), max(multiple, int(h * scale) // multiple * multiple)


def _reduce(rgb: np.ndarray, scale: float, multiple: int) -> np.ndarray:
    """``rgb`` area-averaged to ``scale`` of its size."""
    size = _reduced_size(*rgb.shape[:2], scale, multiple)
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BOX))


def _own_statistics(engine, rgb: np.ndarray, hold: Hold) -> tuple[np.ndarray, np.ndarray]:
    """One pass over ``rgb`` as a picture of its own: (pixels per layer, L x 2 statistics)."""
    h, w = rgb.shape[:2]
    with hold():
        _, measured = engine.frame(_as_input(rgb), np.zeros((engine.layers, 2), np.float32), 0.0,
                                   layout.sampling_grids((h, w)))
    count = np.array([float(layout.level_length(h, lv) * layout.level_length(w, lv)) for lv in engine.levels])
    return count, np.asarray(measured, np.float32).reshape(engine.layers, 2)


def crop_places(size: tuple[int, int], side: int, coverage: float, multiple: int) -> list[tuple[int, int, int]]:
    """(y, x, side) of the full-size crops the fast statistics measure: squares of at most
    ``side`` px spread evenly over a picture of ``size`` (h, w), together about
    ``coverage`` of it."""
    h, w = size
    side = min(side, h, w, int(math.sqrt(coverage * h * w / 4)))
    side = max(multiple, side - side % multiple)
    ny = max(1, round(h * math.sqrt(coverage) / side))
    nx = max(1, round(w * math.sqrt(coverage) / side))
    return [(int((h - side) * (i + 0.5) / ny) // multiple * multiple,
             int((w - side) * (j + 0.5) / nx) // multiple * multiple, side)
            for i in range(ny) for j in range(nx)]


def fast_statistics(engine, rgb: np.ndarray, step: Callable[[str, int], None], hold: Hold = contextlib.nullcontext,
                    *, pixels: int = REDUCED_PIXELS, crop_side: int = layout.TILE_SIDE,
                    coverage: float = CROP_COVERAGE) -> np.ndarray:
    """The whole picture's statistics (L x 2) at the cost of about half a pass.

    The picture reduced to at most ``pixels`` (and half its size) gives every layer's
    statistics of the whole picture's content, but at the wrong resolution (a few to 15 %
    off in variance: fine detail is gone). Full-size crops spread over the picture (about
    ``coverage`` of it, each at most ``crop_side``), run once as they are and once reduced
    the same way, measure that resolution effect, each run with its own statistics
    throughout, so every layer is measured under its own earlier layers, as the whole
    picture is: the whole picture's variance is the reduced one times the crops' ratio, its
    mean the reduced one plus the crops' difference. ``step(text, pixels)`` after each pass."""
    m = engine.multiple
    scale, places = _fast_plan(rgb.shape[:2], m, pixels, crop_side, coverage)
    small = _reduce(rgb, scale, m)
    _, whole = _own_statistics(engine, small, hold)
    step("statistics of the reduced picture", small.shape[0] * small.shape[1])
    full, reduced = [], []
    for i, (y, x, side) in enumerate(places):
        crop = rgb[y:y + side, x:x + side]
        full.append(_own_statistics(engine, crop, hold))
        reduced.append(_own_statistics(engine, _reduce(crop, scale, m), hold))
        step(f"statistics, sample {i + 1} of {len(places)}", side * side)
    at_full, at_reduced = layout.combine(full), layout.combine(reduced)
    stats = whole.copy()
    stats[:, 0] += at_full[:, 0] - at_reduced[:, 0]
    stats[:, 1] *= at_full[:, 1] / np.maximum(at_reduced[:, 1], np.float32(1e-12))
    return stats


def fast_statistics_pixels(size: tuple[int, int], multiple: int, *, pixels: int = REDUCED_PIXELS,
                           crop_side: int = layout.TILE_SIDE, coverage: float = CROP_COVERAGE) -> int:
    """The pixels :func:`fast_statistics` runs through for a picture of ``size`` (h, w): the
    progress bar's share of it."""
    scale, places = _fast_plan(size, multiple, pixels, crop_side, coverage)
    rw, rh = _reduced_size(*size, scale, multiple)
    return rw * rh + sum(side * side for _, _, side in places)


def _fast_plan(size: tuple[int, int], multiple: int, pixels: int, crop_side: int, coverage: float
               ) -> tuple[float, list[tuple[int, int, int]]]:
    """What :func:`fast_statistics` runs for a picture of ``size`` (h, w): the reduction's
    scale and the full-size crops' places."""
    h, w = size
    return min(MAX_REDUCTION, math.sqrt(pixels / (h * w))), crop_places(size, crop_side, coverage, multiple)


def stylize_tiled(engine, img: Image.Image, *, tile: int = layout.TILE_SIDE, margin: int = layout.MARGIN,
                  progress: TileProgress | None = None, hold: Hold = contextlib.nullcontext,
                  exact: bool = False) -> Image.Image:
    """Stylize an RGB picture at its own size in tiles, with the whole picture's
    statistics: fast (:func:`fast_statistics`, the default) or ``exact`` (layer by layer).

    ``progress(done, total, text)`` after every pass, in units of work (pixels through the
    network; exact mode: passes), so that done / total tracks the time; ``hold()`` (the
    process's inference lock) is held around each pass, not the whole picture, so other
    work interleaves. The reduced picture and the crops of the fast statistics are no
    bigger than a tile, so they fit the memory a tile does."""
    # the LiteGenerator pads to whole attention windows (multiple 32); AnimeGANv2 (4) pads nothing
    rgb, top, left = _pad_to(np.asarray(img.convert("RGB")), engine.multiple if engine.multiple > 4 else 1)
    h, w = rgb.shape[:2]
    tiles = layout.tile_layout((w, h), tile, max(margin, engine.multiple), engine.multiple)
    places = [(t, layout.masks(t), layout.sampling_grids((h, w), t.origin, t.size)) for t in tiles]
    fast = dict(pixels=min(REDUCED_PIXELS, tile * tile), crop_side=tile)

    def work(t: layout.Tile) -> int:  # what one image pass costs, in the unit of ``total``
        return 1 if exact else t.size[0] * t.size[1]

    total = sum(work(t) for t in tiles)
    if len(tiles) > 1:
        total += len(tiles) * engine.layers if exact else fast_statistics_pixels((h, w), engine.multiple, **fast)
    done = 0

    def step(text: str, amount: int = 1) -> None:
        nonlocal done
        done += amount
        if progress:
            progress(min(done, total), total, text)

    if len(tiles) == 1:
        stats = None
    elif exact:
        stats = whole_statistics(engine, rgb, places, step, hold)
    else:
        stats = fast_statistics(engine, rgb, step, hold, **fast)
    engine.release()  # the statistics' passes keep memory the tiles need
    out = np.empty((h, w, 3), np.uint8)
    for i, (t, masks, grids) in enumerate(places):
        x = _tile_input(rgb, t)
        with hold():
            if stats is None:  # fits in one tile: the plain generator, its own statistics
                y, _ = engine.frame(x, np.zeros((engine.layers, 2), np.float32), 0.0, grids)
            else:
                y, _ = engine.tile(x, stats, masks, grids)
        (ey0, _, ex0, _), (cy0, cy1, cx0, cx1) = t.extent, t.core
        out[cy0:cy1, cx0:cx1] = _to_uint8(y[..., cy0 - ey0:cy1 - ey0, cx0 - ex0:cx1 - ex0])
        step(f"tile {i + 1} of {len(tiles)}", work(t))
    engine.release()
    out = out[top:top + img.height, left:left + img.width]
    return Image.fromarray(np.ascontiguousarray(out), "RGB")
