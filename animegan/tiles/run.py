"""A picture of any size stylized in tiles, with memory bounded by the tile size.

1. **Statistics, exactly.** Layer by layer, each tile runs the network up to that
   normalisation layer (with the whole picture's statistics of the layers before it,
   already known) and measures it over its core; the tiles' measurements combine into
   the whole picture's (:func:`animegan.tiles.layout.combine`). A statistics pass stops
   at its layer, so all 24 together cost about six full passes (most layers sit early,
   where the network is cheap). A single pass at a reduced size, or re-measuring every
   layer at once under estimates, was measured and is not good enough: the first is 35 to
   48 dB from the untiled picture, the second diverges (each layer is measured under the
   earlier layers' errors, which compound).
2. **Tiles.** Each tile runs the whole network with those statistics, and its core is
   written into the result. The picture is held as 8-bit RGB, in and out; only one
   tile's activations exist at a time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
from PIL import Image

from .. import images
from . import layout

TileProgress = Callable[[int, int, str], None]  # (steps done, steps in all, what is running)
Hold = Callable[[], contextlib.AbstractContextManager]  # a context held around each pass (the runtime's inference lock)


def _tile_input(rgb: np.ndarray, tile: layout.Tile) -> np.ndarray:
    y0, y1, x0, x1 = tile.extent
    part = rgb[y0:y1, x0:x1].astype(np.float32) * np.float32(2 / 255) - np.float32(1)
    return np.ascontiguousarray(part.transpose(2, 0, 1)[None])


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


def stylize_tiled(engine, img: Image.Image, *, tile: int = layout.TILE_SIDE, margin: int = layout.MARGIN,
                  progress: TileProgress | None = None, hold: Hold = contextlib.nullcontext) -> Image.Image:
    """Stylize an RGB picture at its own size in tiles with its exact statistics.

    ``progress(done, total, text)`` after every tile pass; ``hold()`` (the process's
    inference lock) is held around each pass, not the whole picture, so other work
    interleaves."""
    # the LiteGenerator pads to whole attention windows (multiple 32); AnimeGANv2 (4) pads nothing
    rgb, top, left = _pad_to(np.asarray(img.convert("RGB")), engine.multiple if engine.multiple > 4 else 1)
    h, w = rgb.shape[:2]
    tiles = layout.tile_layout((w, h), tile, max(margin, engine.multiple), engine.multiple)
    total = len(tiles) * (engine.layers + 1) if len(tiles) > 1 else 1
    done = 0

    def step(text: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total, text)

    places = [(t, layout.masks(t), layout.sampling_grids((h, w), t.origin, t.size)) for t in tiles]
    stats = None if len(tiles) == 1 else whole_statistics(engine, rgb, places, step, hold)
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
        step(f"tile {i + 1} of {len(tiles)}")
    out = out[top:top + img.height, left:left + img.width]
    return Image.fromarray(np.ascontiguousarray(out), "RGB")
