"""Where the tiles of a big picture go, and what each tile's network needs to know about
its place in the whole: the pixels its statistics are measured over (its core) and the
sampling positions of AnimeGANv2's two bilinear upsamplings.

Every tile starts on a multiple of the generator's stride (4 px: two stride-2 steps;
32 px for the LiteGenerator's attention windows), so its convolutions sample the same
pixels as on the whole picture, and carries a margin of context on each side that faces
another tile, wider than the network's receptive field. Given the whole picture's
statistics, a tile's core is then the untiled result up to float rounding, and the cores
are put side by side: there is no seam to blend away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

TILE_SIDE = 768  # px per tile side, margins included
MARGIN = 64  # px of context on each side facing another tile (results exact from 48, measured)


@dataclass(frozen=True)
class Tile:
    """One tile: its extent (y0, y1, x0, x1) in the picture and its core, the part it writes."""

    extent: tuple[int, int, int, int]
    core: tuple[int, int, int, int]

    @property
    def origin(self) -> tuple[int, int]:
        return self.extent[0], self.extent[2]

    @property
    def size(self) -> tuple[int, int]:
        y0, y1, x0, x1 = self.extent
        return y1 - y0, x1 - x0


def _round_to(value: float, multiple: int) -> int:
    return int(round(value / multiple)) * multiple


def _axis(length: int, tile: int, margin: int, multiple: int) -> list[tuple[int, int, int, int]]:
    """(extent start, extent end, core start, core end) along one axis: the fewest tiles
    whose extents stay within ``tile`` px; cores balanced, starting on multiples."""
    if length <= tile:
        return [(0, length, 0, length)]
    count = max(2, math.ceil((length - 2 * margin) / (tile - 2 * margin)))
    while True:
        cuts = [0] + [_round_to(i * length / count, multiple) for i in range(1, count)] + [length]
        spans = [(max(0, c0 - margin), min(length, c1 + margin), c0, c1)
                 for c0, c1 in zip(cuts, cuts[1:], strict=False)]
        if max(e1 - e0 for e0, e1, _, _ in spans) <= tile:
            return spans
        count += 1


def tile_layout(size: tuple[int, int], tile: int = TILE_SIDE, margin: int = MARGIN, multiple: int = 4
                ) -> list[Tile]:
    """Tiles covering a picture of ``size`` (w, h), row by row; cores do not overlap."""
    w, h = size
    if margin % multiple or tile <= 2 * margin + multiple:
        raise ValueError(f"tiles of {tile} px need a margin that is a multiple of {multiple} and under a third")
    rows, cols = _axis(h, tile, margin, multiple), _axis(w, tile, margin, multiple)
    return [Tile((ey0, ey1, ex0, ex1), (cy0, cy1, cx0, cx1))
            for ey0, ey1, cy0, cy1 in rows for ex0, ex1, cx0, cx1 in cols]


def level_length(n: int, level: int) -> int:
    """Length of an axis of ``n`` px on ``level`` (stride-2 steps floor: n // 2**level)."""
    return n >> level


def masks(tile: Tile) -> tuple[np.ndarray, ...]:
    """Per level (full, 1/2, 1/4), a 1 x 1 x h x w float mask: 1 on the tile's core."""
    (ey0, ey1, ex0, ex1), (cy0, cy1, cx0, cx1) = tile.extent, tile.core
    out = []
    for level in range(3):
        h, w = level_length(ey1 - ey0, level), level_length(ex1 - ex0, level)
        m = np.zeros((1, 1, h, w), np.float32)
        # extents start on multiples of 4, so a core's bounds map to bounds on each level
        m[..., (cy0 - ey0) >> level:(cy1 - ey0) >> level, (cx0 - ex0) >> level:(cx1 - ex0) >> level] = 1
        out.append(m)
    return tuple(out)


def _axis_grid(out_size: int, in_size: int, start_out: int, count_out: int, start_in: int, count_in: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear with align_corners=True from a whole axis of ``in_size`` to ``out_size``,
    for the tile's output positions ``start_out ..`` read from its input positions
    ``start_in ..`` (in float32, as PyTorch computes them)."""
    scale = np.float32((in_size - 1) / (out_size - 1)) if out_size > 1 else np.float32(0)
    src = scale * np.arange(start_out, start_out + count_out, dtype=np.float32) - np.float32(start_in)
    src = np.maximum(src, np.float32(0))
    i0 = np.minimum(np.floor(src).astype(np.int64), count_in - 1)
    i1 = np.minimum(i0 + 1, count_in - 1)
    w = np.clip(src - i0.astype(np.float32), 0, 1).astype(np.float32)
    return i0, i1, w


def sampling_grids(full: tuple[int, int], origin: tuple[int, int] = (0, 0), tile: tuple[int, int] | None = None
                   ) -> tuple[np.ndarray, ...]:
    """The 12 index/weight arrays of the two upsamplings (1/4 -> 1/2, then 1/2 -> full)
    for the tile at ``origin`` (y, x; multiples of 4) of size ``tile`` (h, w) in a picture
    of size ``full`` (h, w); rows then columns for each."""
    tile = tile or full
    out: list[np.ndarray] = []
    for src_level, dst_level in ((2, 1), (1, 0)):
        for axis in (0, 1):
            n, o, t = full[axis], origin[axis], tile[axis]
            out += _axis_grid(level_length(n, dst_level), level_length(n, src_level), o >> dst_level,
                              level_length(t, dst_level), o >> src_level, level_length(t, src_level))
    return tuple(out)


def combine(measured: list[tuple[float | np.ndarray, np.ndarray]]) -> np.ndarray:
    """The whole picture's statistics (L x 2) from tiles' (pixels counted, per layer or
    one for all; L x 2 mean and variance over their cores), in float64 (Chan's formula)."""
    counts = np.array([np.broadcast_to(np.asarray(c, np.float64), (len(s),)) for c, s in measured])  # tiles x L
    stats = np.array([s for _, s in measured], np.float64)  # tiles x L x 2
    total = counts.sum(axis=0)
    mean = (counts * stats[..., 0]).sum(axis=0) / total
    var = (counts * (stats[..., 1] + (stats[..., 0] - mean) ** 2)).sum(axis=0) / total
    return np.stack([mean, var], axis=-1).astype(np.float32)
