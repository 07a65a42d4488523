"""Full resolution in tiles: the fast statistics against one untiled pass and against the
exact statistics, and time and memory at 12 MP on the default backend.

    PYTHONPATH=. python benchmarks/bench_fullres.py [--threads 2] [--skip-psnr] [--skip-12mp] [--backends ...]

Pictures: collages of the real photos in examples/ pasted side by side at their own
resolution (never upscaled: an upscaled photo is smooth, and reduced-size statistics look
exact on it), one collage led by each photo.

1. Fidelity at 2048 x 1536, on every collage: the tiled picture (768 px tiles, the fast
   statistics, the default) against one untiled pass, PSNR of the 8-bit results, on
   PyTorch float32 (target >= 40 dB) and on OpenVINO int8 against untiled float32
   (target >= 38 dB; untiled int8's own figure beside it); times beside one untiled pass.
   On the first collage also the exact statistics (--exact-statistics), its time and
   fidelity, and a crop where fast and exact differ most with the difference amplified
   (docs/images/fullres_fast_vs_exact.png).
2. 4032 x 3024 (12 MP) on the default backend (``auto``) and each of --backends, each in a
   fresh process under a 2 GB memory budget (ANIMEGAN_MEMORY_BUDGET) with --max-side 0:
   its peak RSS (VmHWM, import torch included) and time; the baseline is one untiled pass
   at 2048 x 1536 on the same backend (budget unlimited), whose time per pixel estimates
   an untiled 12 MP pass. Target: <= 3x that estimate, <= 2 GB.

Weights: the proxy test weights (speed and memory do not depend on the values); int8
artefacts are built in a temporary Hugging Face cache. Results: stdout and
benchmarks/results/fullres.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
PROXY = ROOT / "tests" / "data" / "proxy_toon.pt"
RESULTS = ROOT / "benchmarks" / "results"
DOC_IMAGE = ROOT / "docs" / "images" / "fullres_fast_vs_exact.png"
PHOTOS = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "camera.png"]
HF_CACHE = Path(tempfile.mkdtemp(prefix="animegan-bench-hf-"))
BUDGET = "2G"


def collage(lead: str, size: tuple[int, int]) -> Image.Image:
    """The photos of examples/ at their own resolution, side by side row by row from
    ``lead`` on (every other round mirrored), filling ``size``."""
    order = PHOTOS[PHOTOS.index(lead):] + PHOTOS[:PHOTOS.index(lead)]
    canvas = Image.new("RGB", size)
    x = y = row = i = 0
    while y < size[1]:
        img = Image.open(ROOT / "examples" / order[i % len(order)]).convert("RGB")
        if (i // len(order)) % 2:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        canvas.paste(img, (x, y))
        x, row, i = x + img.width, max(row, img.height), i + 1
        if x >= size[0]:
            x, y, row = 0, y + row, 0
    return canvas


def difference_sheet(photo: np.ndarray, exact: np.ndarray, fast: np.ndarray, side: int = 256) -> Image.Image:
    """Where fast and exact differ most (mean difference over ``side`` px windows): the
    photo, exact, fast and the difference x8, side by side."""
    diff = np.abs(fast.astype(np.int16) - exact.astype(np.int16)).mean(axis=2)
    h, w = diff.shape
    best, at = -1.0, (0, 0)
    for y in range(0, h - side + 1, side // 4):
        for x in range(0, w - side + 1, side // 4):
            m = float(diff[y:y + side, x:x + side].mean())
            if m > best:
                best, at = m, (y, x)
    y, x = at
    parts = [photo, exact, fast, np.clip(diff[..., None].repeat(3, axis=2) * 8, 0, 255).astype(np.uint8)]
    sheet = Image.new("RGB", (4 * side + 30, side), "white")
    for k, part in enumerate(parts):
        sheet.paste(Image.fromarray(np.ascontiguousarray(part[y:y + side, x:x + side])), (k * (side + 10), 0))
    return sheet


def bench_psnr(size: tuple[int, int], photos: list[str], exact: bool = True) -> list[str]:
    from animegan import images, runtime, weights
    from animegan.backends import make_backend
    from animegan.backends.fidelity import psnr_8bit as psnr8
    from animegan.settings import Settings
    from animegan.tiles import engines, layout
    from animegan.tiles.run import stylize_tiled

    generator = weights.load_generator(PROXY)
    settings = dataclasses.replace(Settings.from_env(), hub_cache=HF_CACHE)
    rt = runtime.get(settings)
    int8 = make_backend(generator, "openvino-int8", settings)
    fp32 = make_backend(generator, "torch-fp32", settings)
    e32, e8 = engines.engine_for(generator, fp32, rt), engines.engine_for(generator, int8, rt)
    tiles = len(layout.tile_layout(size))
    rows = []
    for k, name in enumerate(photos):
        img = collage(name, size)
        t0 = time.perf_counter()
        ref32 = np.asarray(images.from_array(fp32(images.to_array(img))))
        t1 = time.perf_counter()
        fast32 = np.asarray(stylize_tiled(e32, img))
        t2 = time.perf_counter()
        ref8 = np.asarray(images.from_array(int8(images.to_array(img))))
        t3 = time.perf_counter()
        fast8 = np.asarray(stylize_tiled(e8, img))
        t4 = time.perf_counter()
        rows.append(f"| {name} | torch-fp32 | **{psnr8(fast32, ref32):.1f} dB** | {t2 - t1:.1f} s ({tiles} tiles), "
                    f"untiled {t1 - t0:.1f} s |")
        print(rows[-1], flush=True)
        rows.append(f"| {name} | openvino-int8 | **{psnr8(fast8, ref32):.1f} dB** vs untiled float32 (untiled int8: "
                    f"{psnr8(ref8, ref32):.1f} dB; vs untiled int8 {psnr8(fast8, ref8):.1f} dB) | "
                    f"{t4 - t3:.1f} s, untiled {t3 - t2:.1f} s |")
        print(rows[-1], flush=True)
        if k == 0 and exact:
            t5 = time.perf_counter()
            exact32 = np.asarray(stylize_tiled(e32, img, exact=True))
            t6 = time.perf_counter()
            rows.append(f"| {name} | torch-fp32, **exact** statistics | {psnr8(exact32, ref32):.1f} dB "
                        f"(fast vs exact: {psnr8(fast32, exact32):.1f} dB) | {t6 - t5:.1f} s |")
            print(rows[-1], flush=True)
            DOC_IMAGE.parent.mkdir(parents=True, exist_ok=True)
            difference_sheet(np.asarray(img), exact32, fast32).save(DOC_IMAGE)
    return rows


CHILD = r"""
import dataclasses, json, sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from PIL import Image
from animegan import Stylizer, host
from animegan.settings import Settings
settings = dataclasses.replace(Settings.from_env(), hub_cache=Path({cache!r}), threads={threads})
stylizer = Stylizer(settings=settings, backend={backend!r}, max_side=None, weights_file={weights!r},
                    wait_for_fast=True)
backend = stylizer.backend().name
img = Image.open({photo!r}).convert("RGB")
untiled = stylizer.fits_in_one_pass(stylizer.style, img.size)
t0 = time.perf_counter()
out = stylizer.run_array(stylizer.style, img)
seconds = time.perf_counter() - t0
print(json.dumps({{"seconds": seconds, "peak_mb": host.peak_rss() / 2**20, "size": out.size, "backend": backend,
                  "untiled": untiled}}))
"""


def child(backend: str, photo: Path, threads: int, budget: str) -> dict:
    code = CHILD.format(root=str(ROOT), threads=threads, cache=str(HF_CACHE), backend=backend, weights=str(PROXY),
                        photo=str(photo))
    env = dict(os.environ, ANIMEGAN_MEMORY_BUDGET=budget)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["killed"])[-1], "rc": out.returncode}
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_12mp(backends: list[str], threads: int) -> list[str]:
    folder = Path(tempfile.mkdtemp())
    big, base = folder / "big.png", folder / "base.png"
    collage("rocket.jpg", (4032, 3024)).save(big)
    collage("rocket.jpg", (2048, 1536)).save(base)
    rows = []
    for backend in backends:
        one = child(backend, base, threads, "64G")  # one untiled pass: the baseline
        run = child(backend, big, threads, BUDGET)
        if "error" in run or "error" in one:
            rows.append(f"| {backend} | failed: {run.get('error') or one.get('error')} | | |")
        else:
            estimate = one["seconds"] * (4032 * 3024) / (2048 * 1536)
            rows.append(f"| {backend} ({run['backend']}) | **{run['peak_mb'] / 1024:.2f} GB** | {run['seconds']:.1f} s "
                        f"= **{run['seconds'] / estimate:.2f}x** an untiled pass | {one['seconds']:.2f} s, "
                        f"{one['peak_mb'] / 1024:.2f} GB (untiled 12 MP estimated {estimate:.1f} s) |")
        print(rows[-1], flush=True)
    return rows


def machine() -> str:
    from animegan import host

    m = host.Machine.read(os.environ.get("ONEDNN_MAX_CPU_ISA"))
    return f"{m.cpu}, {m.isa}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-psnr", action="store_true")
    ap.add_argument("--skip-12mp", action="store_true")
    ap.add_argument("--skip-exact", action="store_true",
                    help="no exact-statistics run on the first collage (about 30 minutes of the run)")
    ap.add_argument("--backends", nargs="+", default=["auto"], help="12 MP runs (default: the default backend)")
    ap.add_argument("--photos", nargs="+", default=PHOTOS, help="the collages' lead photos")
    ap.add_argument("--output", default=str(RESULTS / "fullres.md"))
    args = ap.parse_args()
    os.environ["HF_HUB_CACHE"] = str(HF_CACHE)
    os.environ["ANIMEGAN_THREADS"] = str(args.threads)  # read once, by this process's runtime
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    lines = ["# Full resolution in tiles", "",
             f"{machine()}; {args.threads} threads; {started}; load average at start {load:.1f}. "
             "Collages of the photos in examples/ at their own resolution; proxy test weights. "
             "`python benchmarks/bench_fullres.py`", ""]
    if not args.skip_psnr:
        lines += ["## Fast statistics, tiled vs one untiled pass at 2048 x 1536 (768 px tiles)", "",
                  "| collage led by | backend | tiled vs untiled | time |", "|---|---|---|---|"]
        lines += bench_psnr((2048, 1536), args.photos, not args.skip_exact) + [""]
        lines += [] if args.skip_exact else [f"Where fast and exact differ most (photo, exact, fast, difference x8): "
                  f"[{DOC_IMAGE.name}](../../docs/images/{DOC_IMAGE.name}).", ""]
    if not args.skip_12mp:
        lines += [f"## 4032 x 3024 (12 MP) under a {BUDGET} memory budget, each in a fresh process", "",
                  "| backend | peak RSS | time | baseline: one untiled pass at 2048 x 1536 |", "|---|---|---|---|"]
        lines += bench_12mp(args.backends, args.threads) + [""]
    out = Path(args.output)
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
