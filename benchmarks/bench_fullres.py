"""Full resolution in tiles: fidelity against one untiled pass, and memory and time at 12 MP.

    PYTHONPATH=. python benchmarks/bench_fullres.py [--threads 2] [--skip-psnr] [--skip-12mp] [--backends ...]

1. Fidelity at 2048 x 1536 on real photos (examples/, upscaled): the tiled picture
   (animegan.tiles, 768 px tiles, exact statistics) against one untiled pass, PSNR of the
   8-bit results; the baseline is naive tiling (each tile with its own statistics), in
   the same run. PyTorch float32, and OpenVINO int8 (tiled int8 against untiled int8, and
   each against float32). Target: >= 40 dB.
2. 4000 x 3000 (12 MP), each case in a fresh subprocess that reports its own peak RSS
   (VmHWM: getrusage's ru_maxrss would carry the parent's peak across fork and exec) and
   time: the Stylizer at --max-side 0 on openvino-int8 and on torch-fp32; the baseline
   is one untiled pass at 2048 x 1536 (what fits) on the same backend. Targets: <= 2 GB
   (int8), <= 4 GB (float32). Writes a before/after crop of the 12 MP int8 result (benchmarks/results/fullres_crop.png).

Weights: the proxy test weights (speed and memory do not depend on the values); int8
artefacts are built in a temporary Hugging Face cache. Results: stdout and
benchmarks/results/fullres.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
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
PHOTOS = ["rocket.jpg", "coffee.png", "astronaut.png"]
HF_CACHE = Path(tempfile.mkdtemp(prefix="animegan-bench-hf-"))




def upscaled(name: str, size: tuple[int, int]) -> Image.Image:
    return Image.open(ROOT / "examples" / name).convert("RGB").resize(size, Image.Resampling.BICUBIC)


def naive_tiles(run, img: Image.Image) -> np.ndarray:
    """The baseline: the same tiles, each stylized with its own statistics."""
    from animegan.tiles import layout

    out = np.empty((img.height, img.width, 3), np.uint8)
    for t in layout.tile_layout(img.size):
        (ey0, ey1, ex0, ex1), (cy0, cy1, cx0, cx1) = t.extent, t.core
        part = run(img.crop((ex0, ey0, ex1, ey1)))
        out[cy0:cy1, cx0:cx1] = part[cy0 - ey0:cy1 - ey0, cx0 - ex0:cx1 - ex0]
    return out


def bench_psnr(size: tuple[int, int], photos: list[str]) -> list[str]:
    from animegan import images, runtime, weights
    from animegan.backends import make_backend
    from animegan.backends.fidelity import psnr_8bit as psnr8
    from animegan.settings import Settings
    from animegan.tiles import engines
    from animegan.tiles.run import stylize_tiled

    generator = weights.load_generator(PROXY)
    settings = dataclasses.replace(Settings.from_env(), hub_cache=HF_CACHE)
    rt = runtime.get(settings)
    int8 = make_backend(generator, "openvino-int8", settings)
    fp32 = make_backend(generator, "torch-fp32", settings)
    rows = []
    for name in photos:
        img = upscaled(name, size)
        run32 = lambda im: np.asarray(images.from_array(fp32(images.to_array(im))))  # noqa: E731
        run8 = lambda im: np.asarray(images.from_array(int8(images.to_array(im))))  # noqa: E731
        t0 = time.perf_counter()
        ref32 = run32(img)
        t1 = time.perf_counter()
        tiled32 = stylize_tiled(engines.engine_for(generator, fp32, rt), img)
        t2 = time.perf_counter()
        naive32 = naive_tiles(run32, img)
        ref8 = run8(img)
        t3 = time.perf_counter()
        tiled8 = stylize_tiled(engines.engine_for(generator, int8, rt), img)
        t4 = time.perf_counter()
        rows.append(f"| {name} | torch-fp32 | **{psnr8(tiled32, ref32):.1f} dB** | {psnr8(naive32, ref32):.1f} dB | "
                    f"{t2 - t1:.0f} s tiled, {t1 - t0:.1f} s untiled |")
        print(rows[-1], flush=True)
        rows.append(f"| {name} | openvino-int8 | **{psnr8(tiled8, ref8):.1f} dB** (vs float32: tiled "
                    f"{psnr8(tiled8, ref32):.1f}, untiled int8 {psnr8(ref8, ref32):.1f}) | "
                    f"{psnr8(naive_tiles(run8, img), ref8):.1f} dB | {t4 - t3:.0f} s tiled |")
        print(rows[-1], flush=True)
    return rows


CHILD = r"""
import dataclasses, json, sys, time
sys.path.insert(0, {root!r})
from pathlib import Path
from PIL import Image
from animegan import Stylizer
from animegan.settings import Settings
settings = dataclasses.replace(Settings.from_env(), hub_cache=Path({cache!r}), threads={threads})
stylizer = Stylizer(settings=settings, backend={backend!r}, max_side=None, weights_file={weights!r})
stylizer.backend()
img = Image.open({photo!r}).convert("RGB")
if {size!r} is not None:
    img = img.resize({size!r}, Image.Resampling.BICUBIC)
def high_water_mb():  # this process's own peak (getrusage's would include the parent's, across fork + exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
before = high_water_mb()
try:  # start the peak afresh: loading (or building the int8 model) is not the photo's cost
    open("/proc/self/clear_refs", "w").write("5")
except OSError:
    pass
t0 = time.perf_counter()
out = stylizer.run_array(stylizer.style, img)
seconds = time.perf_counter() - t0
peak = high_water_mb()
if {save!r}:
    out.save({save!r})
print(json.dumps({{"seconds": seconds, "peak_mb": peak, "loaded_mb": before, "size": out.size}}))
"""


def child(backend: str, photo: Path, size, threads: int, save: str | None = None) -> dict:
    code = CHILD.format(root=str(ROOT), threads=threads, cache=str(HF_CACHE), backend=backend, weights=str(PROXY),
                        photo=str(photo), size=size, save=save)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["killed"])[-1], "rc": out.returncode}
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_12mp(backends: list[str], threads: int) -> list[str]:
    photo = Path(tempfile.mkdtemp()) / "big.jpg"
    upscaled("rocket.jpg", (4000, 3000)).save(photo, quality=92)
    rows = []
    for backend in backends:
        base = child(backend, photo, (2048, 1536), threads)
        save = str(photo.with_name(f"out-{backend}.png")) if backend == "openvino-int8" else None
        big = child(backend, photo, None, threads, save)
        if "error" in big:
            rows.append(f"| {backend} | failed: {big['error']} | | {base.get('peak_mb', 0) / 1024:.2f} GB |")
        else:
            rows.append(f"| {backend} | **{big['peak_mb'] / 1024:.2f} GB** | {big['seconds']:.0f} s | "
                        f"{base['peak_mb'] / 1024:.2f} GB, {base['seconds']:.1f} s |")
        print(rows[-1], flush=True)
        if save and Path(save).exists():
            crop_box = (1700, 1300, 2300, 1700)
            before = Image.open(photo).convert("RGB").crop(crop_box)
            after = Image.open(save).crop(crop_box)
            sheet = Image.new("RGB", (1200, 400), "white")
            sheet.paste(before, (0, 0))
            sheet.paste(after, (600, 0))
            RESULTS.mkdir(exist_ok=True)
            sheet.save(RESULTS / "fullres_crop.png")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-psnr", action="store_true")
    ap.add_argument("--skip-12mp", action="store_true")
    ap.add_argument("--backends", nargs="+", default=["openvino-int8", "torch-fp32"])
    ap.add_argument("--photos", nargs="+", default=PHOTOS)
    args = ap.parse_args()
    os.environ["HF_HUB_CACHE"] = str(HF_CACHE)
    os.environ["ANIMEGAN_THREADS"] = str(args.threads)  # read once, by this process's runtime
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = os.getloadavg()[0]
    lines = ["# Full resolution in tiles", "",
             f"{platform.machine()}, {args.threads} threads, {started}; load average at start {load:.1f}. "
             "Tiles of 768 px with 64 px margins; the whole photo's statistics measured layer by layer. "
             "Proxy test weights. `python benchmarks/bench_fullres.py`", ""]
    if not args.skip_psnr:
        lines += ["## Tiled vs one untiled pass at 2048 x 1536", "",
                  "| photo | backend | tiled vs untiled | naive tiles (own statistics) | time |",
                  "|---|---|---|---|---|"]
        lines += bench_psnr((2048, 1536), args.photos) + [""]
    if not args.skip_12mp:
        lines += ["## 4000 x 3000 (12 MP), each in a fresh process", "",
                  "| backend | peak RSS, 12 MP tiled | time | baseline: one untiled pass at 2048 x 1536 |",
                  "|---|---|---|---|"]
        lines += bench_12mp(args.backends, args.threads) + [""]
        lines += ["Crop of the 12 MP int8 result (photo left, anime right), 600 x 400 px at (1700, 1300): "
                  "`fullres_crop.png`.", ""]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "fullres.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
