"""Memory of one pass, per pixel, for every backend and network on this CPU kind: the
figures behind animegan.backends.memory (which decides when a picture goes in tiles).

    python benchmarks/bench_memory.py                    # this CPU as it is
    python benchmarks/bench_memory.py --isa AVX2         # the same machine limited to AVX2
    python benchmarks/bench_memory.py --quick            # two sizes, animeganv2 only

Each measurement is a fresh process (so its peak is that of a whole process, import
torch included): it loads the network (the real-size AnimeGANv2 with the proxy weights,
or a default-size LiteGenerator), runs one pass at a small size (warm-up: compiled
kernels, OpenVINO's compilation), reads its resident memory (VmRSS), runs one untiled
pass over the picture, and reads its peak (VmHWM). The cost of a pass is
``(VmHWM - VmRSS before) / pixels``; the table keeps the largest over the sizes measured
(at least 1 MP), so a prediction errs towards tiling. Tile passes (the injected network
the tiles run on) are measured the same way on a square tile.

Writes benchmarks/results/memory-<kind>.md and prints the rows for the code's table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "tests" / "data" / "proxy_toon.pt"
ISA_ENV = ("ONEDNN_MAX_CPU_ISA", "OV_CPU_MAX_ISA")  # oneDNN (PyTorch's and OpenVINO's) and OpenVINO's own kernels

CHILD = r'''
import json, sys, time
import numpy as np
from PIL import Image
from animegan import host, runtime, images
from animegan.settings import Settings
from animegan.models import LiteGenerator
from animegan.backends import make_backend

net, backend, mode, w, h, cache = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6]
from dataclasses import replace
from pathlib import Path
settings = replace(Settings.from_env(), hub_cache=Path(cache), memory_budget=1 << 45, backend=backend)
rt = runtime.start(settings)
if net == "lite":
    import torch
    torch.manual_seed(0)
    model = LiteGenerator().eval()
else:
    from animegan.weights import load_generator
    model = load_generator(sys.argv[7])
be = make_backend(model, backend, rt, background=False)
rng = np.random.default_rng(0)

def reset_peak():
    """VmHWM back to the resident memory now (so the peak read later is the pass's own)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

if mode == "build":
    print(json.dumps({"before": 0, "peak": host.peak_rss(), "seconds": 0, "isa": rt.machine.isa}))
    raise SystemExit
if mode == "pass":
    small = images.to_array(Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)))
    be(small)
    img = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    reset_peak()
    before = host.rss()
    start = time.perf_counter()
    with rt.inference(be.family):
        out = images.from_array(be(images.to_array(img)))
    seconds = time.perf_counter() - start
else:
    from animegan.tiles import engines, layout
    engine = engines.engine_for(model, be, rt)
    def tile(side):
        x = rng.uniform(-1, 1, (1, 3, side, side)).astype(np.float32)
        t = layout.tile_layout((side, side), side, 64 if side > 256 else 32, engine.multiple)[0]
        masks, grids = layout.masks(t), layout.sampling_grids((side, side), t.origin, t.size)
        stats = np.tile(np.array([[0.0, 1.0]], np.float32), (engine.layers, 1))
        kind = "tiles" if engine.family == "torch" else engine.family
        with rt.inference(kind):
            return engine.tile(x, stats, masks, grids)
    tile(256)
    reset_peak()
    before = host.rss()
    start = time.perf_counter()
    tile(w)
    seconds = time.perf_counter() - start
print(json.dumps({"before": before, "peak": host.peak_rss(), "seconds": seconds, "isa": rt.machine.isa}))
'''


def measure(net: str, backend: str, mode: str, size: tuple[int, int], cache: Path, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, net, backend, mode, str(size[0]), str(size[1]), str(cache),
                          str(WEIGHTS)], capture_output=True, text=True, env=env, timeout=3600)
    if out.returncode:
        raise RuntimeError(f"{net} {backend} {mode} {size}: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--isa", default=None, help="limit the ISA (e.g. AVX2): sets ONEDNN_MAX_CPU_ISA and OV_CPU_MAX_ISA")
    p.add_argument("--quick", action="store_true")
    args = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from animegan import host, runtime
    from animegan.backends.memory import cpu_kind

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for name in ISA_ENV:
        env.pop(name, None)
    if args.isa:
        env.update({name: args.isa for name in ISA_ENV})
    machine = host.Machine.read(args.isa)
    kind = cpu_kind(machine)
    rt = runtime.get()
    backends = ["torch-fp32", "openvino-f32", "openvino-int8"] + (["torch-bf16", "openvino-bf16"] if
                                                                     machine.bf16 else [])
    nets = ["animeganv2"] if args.quick else ["animeganv2", "lite"]
    sizes = [(1024, 1024), (2048, 1536)] if args.quick else [(1024, 1024), (2048, 1536), (2560, 1920)]
    tile_sides = [768, 1280]
    rows, table, tiles = [], {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-memory-") as tmp:
        cache = Path(tmp)
        for net in nets:
            measure(net, "openvino-int8", "build", (0, 0), cache, env)  # the int8 model, built once, not measured
            for backend in backends:
                per = []
                for size in sizes:
                    m = measure(net, backend, "pass", size, cache, env)
                    px = size[0] * size[1]
                    per.append((m["peak"] - m["before"]) / px)
                    rows.append((net, backend, "pass", f"{size[0]} x {size[1]}", m["before"] / 2**20,
                                 m["peak"] / 2**20, per[-1], m["seconds"]))
                    print(rows[-1], flush=True)
                table[(net, backend)] = round(max(per) * 1.1 / 50) * 50  # 10 % headroom, rounded to 50 B
            for family, backend in (("torch", "torch-fp32"), ("openvino", "openvino-int8")):
                per = []
                for side in tile_sides:
                    m = measure(net, backend, "tile", (side, side), cache, env)
                    per.append((m["peak"] - m["before"]) / side**2)
                    rows.append((net, f"{family} tiles ({backend})", "tile", f"{side} x {side}",
                                 m["before"] / 2**20, m["peak"] / 2**20, per[-1], m["seconds"]))
                    print(rows[-1], flush=True)
                tiles[(net, family)] = round(max(per) * 1.1 / 50) * 50
    lines = [f"# Memory of one pass ({kind})", "",
             f"Machine: {machine.cpu}, {machine.isa}" + (f" (limited with ONEDNN_MAX_CPU_ISA / OV_CPU_MAX_ISA="
                                                        f"{args.isa})" if args.isa else "")
             + f"; flags {' '.join(sorted(f for f in machine.flags if f.startswith(('avx', 'amx', 'fma'))))}; "
             f"{rt.threads} threads. Command: `python benchmarks/bench_memory.py"
             + (f" --isa {args.isa}" if args.isa else "") + (" --quick" if args.quick else "") + "`; "
             f"{time.strftime('%Y-%m-%d')}. Each row is a fresh process; random pixels; one untiled pass.", "",
             "| network | backend | what | size | RSS before (MB) | peak VmHWM (MB) | bytes per pixel | seconds |",
             "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {n} | {b} | {w} | {s} | {r:.0f} | {pk:.0f} | {per:.0f} | {sec:.2f} |"
              for n, b, w, s, r, pk, per, sec in rows]
    lines += ["", "Rows for animegan/backends/memory.py (largest per pixel + 10 %):", "", "```"]
    lines += [f"{k}: {{{kind!r}: {v}}}" for k, v in table.items()]
    lines += [f"{k}: {{{kind!r}: {v}}}" for k, v in tiles.items()]
    lines += ["```", ""]
    out = ROOT / "benchmarks" / "results" / f"memory-{kind}.md"
    out.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
