"""How much memory one pass takes, by network, backend and CPU kind: measured, kept here,
and used to decide whether a picture fits the runtime's memory budget in one pass or goes
in tiles (and how big the tiles may be).

The figures are bytes per pixel of the picture, above what the process held before the
pass (the peak, VmHWM, of a fresh process running one picture through the Stylizer,
minus its resident memory just before): ``benchmarks/bench_memory.py`` measures them at
several sizes on both CPU kinds (AVX-512 and AVX2-only; an ISA cap makes one machine
the other) and prints this table. Where a figure is missing, the largest one of that
backend family counts, so a prediction errs towards tiling.
"""

from __future__ import annotations

import math
from typing import Any

from ..host import Machine

# (network, backend) -> {CPU kind: bytes per pixel of one untiled pass}: the largest of
# benchmarks/results/memory-<kind>.md's sizes + 10 %. PyTorch's figure varies from run to
# run (glibc's heap, kept for speed while PyTorch runs: 1.3 to 2.5 KB per pixel measured).
PASS_BYTES: dict[tuple[str, str], dict[str, int]] = {
    ("animeganv2", "torch-fp32"): {"avx512": 2800},
    ("animeganv2", "torch-exact"): {"avx512": 2800},
    ("animeganv2", "openvino-f32"): {"avx512": 1900},
    ("animeganv2", "openvino-int8"): {"avx512": 950},
    ("lite", "torch-fp32"): {"avx512": 900},
    ("lite", "openvino-f32"): {"avx512": 600},
}
# (network, engine family) -> {CPU kind: bytes per pixel of a tile pass (the injected network)}
TILE_BYTES: dict[tuple[str, str], dict[str, int]] = {
    ("animeganv2", "torch"): {"avx512": 2150},
    ("animeganv2", "openvino"): {"avx512": 2000},
}
PICTURE_BYTES = 24  # per pixel: the photo and its result held whole while the tiles run (8-bit RGB, a few copies)
SLACK = 64 << 20  # bytes kept free for what else the process does meanwhile
TILE_MIN, TILE_MAX, TILE_STEP = 256, 2048, 64


def cpu_kind(machine: Machine) -> str:
    return "avx512" if machine.avx512 else "avx2"


def _lookup(table: dict, key: tuple[str, str], machine: Machine) -> int:
    kind = cpu_kind(machine)
    row = table.get(key)
    if row and kind in row:
        return row[kind]
    family_rows = [r for k, r in table.items() if k[1].split("-")[0] == key[1].split("-")[0]] or list(table.values())
    return max(max(r.values()) for r in family_rows)


def network(model: Any) -> str:
    """The network's name in the tables: its architecture (``animeganv2``, ``lite``), or ``onnx``."""
    return getattr(model, "architecture", "onnx")


def pass_bytes(model: Any, backend_name: str, machine: Machine, pixels: int) -> int:
    """Predicted bytes one untiled pass over ``pixels`` adds to the process's peak."""
    return _lookup(PASS_BYTES, (network(model), backend_name), machine) * pixels


def tile_side(model: Any, family: str, machine: Machine, pixels: int, room: int) -> int:
    """The largest tile side (margins included, a multiple of TILE_STEP, between TILE_MIN
    and TILE_MAX) whose pass fits in ``room`` bytes beside the whole picture. Where not even
    TILE_MIN fits, TILE_MIN: the smallest tiles that still carry their margins."""
    per_pixel = _lookup(TILE_BYTES, (network(model), family), machine)
    left = room - PICTURE_BYTES * pixels - SLACK
    side = int(math.sqrt(left / per_pixel)) if left > 0 else 0
    return max(TILE_MIN, min(TILE_MAX, side - side % TILE_STEP))
