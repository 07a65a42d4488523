"""Distil the proxy weights into a LiteGenerator on this CPU and measure what came out.

    python benchmarks/bench_distill.py                 # 30-minute run, then the figures
    python benchmarks/bench_distill.py --minutes 2     # a short try
    python benchmarks/bench_distill.py --evaluate-only # figures for an existing run folder

1. ``python -m animegan distill`` with the proxy weights (tests/data/proxy_toon.pt) as the
   teacher on the 5 calibration photos (animegan/backends/calibration/*.jpg), for --minutes of wall
   time (the teacher's work on the crop pool included). The perceptual term is off by
   default here (--perceptual 0): this machine cannot download the VGG16 ImageNet weights,
   and the distiller never trains with a random perceptual network; PSNR, the target, is
   what L1 optimises anyway.
2. PSNR of the student against the teacher (both float32, compared as 8-bit images) at
   512 px on the long side, on scikit-image sample photos the student never saw, and on
   the 5 it was trained on for reference.
3. 512 x 512 time of both on the same backend families: PyTorch float32 eager, and
   OpenVINO (the teacher through the project's own graph builder, the student through
   openvino.convert_model) in f32 and bf16 (bf16 only where the CPU has it). Medians of
   --repeats interleaved runs, so both see the same machine load; 256 x 256 frames per
   second of the student (live webcam size).
4. Parameters and multiply-adds of both, counted in code (animegan.models.complexity).

Writes benchmarks/results/distill.md, distill_samples.png (the run's last sample sheet)
and distill_unseen.png (photo | teacher | student on the unseen photos).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from animegan import images  # noqa: E402
from animegan.backends import psnr  # noqa: E402
from animegan.host import configure_threads, native_bf16  # noqa: E402
from animegan.models.complexity import count  # noqa: E402
from animegan.weights import load_generator  # noqa: E402

TEACHER = ROOT / "tests" / "data" / "proxy_toon.pt"
PHOTOS = ROOT / "animegan" / "backends" / "calibration"
RESULTS = ROOT / "benchmarks" / "results"
# scikit-image's shipped photos that are not among the 5 training photos.
UNSEEN = ["motorcycle_left.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png", "coins.png", "moon.png"]


def unseen_photos() -> dict[str, Image.Image]:
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    out = {}
    for name in UNSEEN:
        path = folder / name
        if path.is_file():
            img = images.decode(path).rgb
            out[name] = images.resize(img, images.fit_size(img.size, 512))
    if len(out) < 4:
        raise SystemExit(f"need at least 4 unseen photos; found {sorted(out)} in {folder}")
    return out


def train(args: argparse.Namespace) -> float:
    cmd = [sys.executable, "-m", "animegan", "distill", "--teacher-weights", str(TEACHER), "--photos", str(PHOTOS),
           "--out", str(args.out), "--minutes", str(args.minutes), "--size", str(args.size),
           "--batch", str(args.batch), "--perceptual", str(args.perceptual), "--res-blocks", str(args.res_blocks),
           "--pool", str(args.pool), "--refresh", str(args.refresh), "--lr", str(args.lr),
           "--sample-every", "100", "--log-every", "10", "--quiet"]
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return time.perf_counter() - start


def run_torch(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy()


def timers(teacher: torch.nn.Module, student: torch.nn.Module, side: int) -> dict[str, dict[str, object]]:
    """name -> {"teacher": fn, "student": fn} on the same backend family."""
    import tempfile

    import openvino as ov

    from animegan.backends import openvino as ovb

    families: dict[str, dict[str, object]] = {
        "torch fp32": {"teacher": lambda a: run_torch(teacher, a), "student": lambda a: run_torch(student, a)},
    }
    precisions = ["f32"] + (["bf16"] if native_bf16() else [])
    core = ov.Core()
    student_graph = ovb.build_graph(ovb.to_openvino(student))
    teacher_graph = ovb.build_graph(ovb.to_openvino(teacher))
    for precision in precisions:
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1,
                  "INFERENCE_NUM_THREADS": configure_threads()}
        t = core.compile_model(teacher_graph, "CPU", config)
        s = core.compile_model(student_graph, "CPU", config)
        families[f"OpenVINO {precision}"] = {
            "teacher": (lambda c: lambda a: c(a)[0])(t), "student": (lambda c: lambda a: c(a)[0])(s)}
    # the default backend: each generator through the project's int8 pass (gated at 38 dB)
    folder = Path(tempfile.mkdtemp(prefix="bench-distill-int8-"))
    pair = {}
    for name, model in (("teacher", teacher), ("student", student)):
        meta = ovb.build_int8(model, folder / name, 256)
        backend = ovb.OpenVINOBackend(folder / name / "model.xml", "openvino-int8")
        pair[name] = backend
        print(f"int8 {name}: {meta['min_psnr']:.1f} dB worst vs float32; not int8: {meta['not_int8']}", flush=True)
    families["OpenVINO int8 (default backend)"] = pair
    return families


def time_pair(fns: dict[str, object], x: np.ndarray, repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn(x)  # warm-up
    for _ in range(repeats):  # interleaved: both see the same load
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(x)
            times[name].append(time.perf_counter() - start)
    return {k: float(np.median(v)) for k, v in times.items()}


def curve(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "runs" / "distill")
    # Small crops and batches: on a shared 2-core CPU, more steps beat bigger ones (a first
    # 30-minute run at 128 px, batch 8, made 233 steps and reached 18.5 dB; see distill.md).
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--res-blocks", type=int, default=2)
    p.add_argument("--perceptual", type=float, default=0.0)
    p.add_argument("--pool", type=int, default=128)
    p.add_argument("--refresh", type=float, default=0.25)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--evaluate-only", action="store_true", help="skip training; measure the run in --out")
    args = p.parse_args()

    configure_threads()
    load_before = os.getloadavg()
    wall = None if args.evaluate_only else train(args)
    run = args.out
    teacher = load_generator(TEACHER)
    student = load_generator(run)
    metrics = curve(run)
    last = [m for m in metrics if "loss" in m][-1]
    settings = json.loads((run / "run.json").read_text())

    # -- fidelity at 512 px ---------------------------------------------------------------
    rows, sheet_rows = [], []
    for group, photos in (("unseen", unseen_photos()), ("trained on", {
            p.name: images.resize(images.decode(p).rgb, images.fit_size(images.decode(p).rgb.size, 512))
            for p in sorted(PHOTOS.glob("*.jpg"))})):
        for name, img in photos.items():
            x = images.to_array(img)
            t, s = run_torch(teacher, x), run_torch(student, x)
            rows.append((group, name, img.size, psnr(s, t)))
            if group == "unseen":
                small = images.fit_size(img.size, 256)
                shown = (img, images.from_array(t), images.from_array(s))
                sheet_rows.append([images.resize(im, small) for im in shown])
    unseen = [r[3] for r in rows if r[0] == "unseen"]
    seen = [r[3] for r in rows if r[0] != "unseen"]

    # -- speed ------------------------------------------------------------------------------------
    photo = images.to_array(images.resize(images.decode(PHOTOS / "astronaut.jpg").rgb, (512, 512)))
    speed = {}
    for family, fns in timers(teacher, student, 512).items():
        speed[family] = time_pair(fns, photo, args.repeats)
    live_fns = timers(teacher, student, 256)
    frame = images.to_array(images.resize(images.decode(PHOTOS / "astronaut.jpg").rgb, (256, 256)))
    live = {}
    for family, fns in live_fns.items():
        fn = fns["student"]
        fn(frame)
        start, n = time.perf_counter(), 0
        while time.perf_counter() - start < 3.0:
            fn(frame)
            n += 1
        live[family] = n / (time.perf_counter() - start)
    ct, cs = count(teacher, 512), count(student, 512)
    load_after = os.getloadavg()

    # -- report -----------------------------------------------------------------------------------
    RESULTS.mkdir(parents=True, exist_ok=True)
    samples = run / "samples" / "latest.png"
    if samples.is_file():
        shutil.copy(samples, RESULTS / "distill_samples.png")
    from animegan.train.loop import sample_sheet

    sample_sheet(sheet_rows, ["photo (never seen)", "teacher", "student"],
                 "unseen photos at 512 px (shown at 256)").save(RESULTS / "distill_unseen.png")
    best = min(speed, key=lambda f: speed[f]["student"] / speed[f]["teacher"])
    lines = [
        "# Distillation: the proxy teacher into a LiteGenerator",
        "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}; "
        f"bf16 native: {native_bf16()}. Load average {load_before[0]:.1f} before, {load_after[0]:.1f} after "
        "(the machine is shared with other work: absolute times are inflated, ratios are from interleaved runs).",
        "",
        f"Run: `{run.relative_to(ROOT) if run.is_relative_to(ROOT) else run}`: "
        f"{settings.get('minutes')} min budget"
        + (f" ({wall / 60:.1f} min wall, teacher pool included)" if wall else "")
        + f", {last['step']} steps of batch {settings['batch']} at {settings['size']} px "
        f"({last['crops']} crops seen), L1 weight {settings['l1']}, perceptual {settings['perceptual']}, "
        f"lr {settings['lr']} cosine, pool {settings['pool']} refreshed {settings['refresh']}/step, "
        f"5 calibration photos; student {json.loads((run / 'config.json').read_text())}.",
        "",
        "## Student vs teacher at 512 px (PSNR of the 8-bit images, both float32)",
        "",
        "| photo | set | size | PSNR |",
        "|---|---|---|---|",
        *[f"| {n} | {g} | {w} x {h} | {v:.2f} dB |" for g, n, (w, h), v in rows],
        "",
        f"Unseen photos: median **{np.median(unseen):.2f} dB**, mean {np.mean(unseen):.2f}, worst {min(unseen):.2f} "
        f"(target >= 28 dB: {'met' if np.median(unseen) >= 28 else 'missed'}); training photos: median "
        f"{np.median(seen):.2f} dB.",
        "",
        "## Cost and speed at 512 x 512",
        "",
        "| | params | multiply-adds |",
        "|---|---|---|",
        f"| teacher (AnimeGANv2) | {ct.params / 1e6:.2f} M | {ct.macs / 1e9:.1f} G |",
        f"| student (LiteGenerator) | {cs.params / 1e6:.2f} M | {cs.macs / 1e9:.1f} G ({cs.macs / ct.macs:.2f} x) |",
        "",
        "| backend family | teacher 512² s | student 512² s | student / teacher | student 256² frames/s |",
        "|---|---|---|---|---|",
        *[f"| {f} | {v['teacher']:.3f} | {v['student']:.3f} | {v['student'] / v['teacher']:.2f} | {live[f]:.1f} |"
          for f, v in speed.items()],
        "",
        f"Best ratio: {best}, {speed[best]['student'] / speed[best]['teacher']:.2f} (target <= 0.25: "
        f"{'met' if speed[best]['student'] / speed[best]['teacher'] <= 0.25 else 'missed'}).",
        "",
        "## Curve (metrics.jsonl)",
        "",
        "| step | minutes | train L1 | batch PSNR | sample-sheet PSNR |",
        "|---|---|---|---|---|",
    ]
    sheets = {m["step"]: m["sample_psnr"] for m in metrics if "sample_psnr" in m}
    shown = [m for m in metrics if "loss" in m]
    stride = max(1, len(shown) // 15)
    for m in shown[::stride] + ([shown[-1]] if shown[-1] not in shown[::stride] else []):
        lines.append(f"| {m['step']} | {m['elapsed'] / 60:.1f} | {m['l1']:.4f} | {m['psnr']:.2f} | "
                     f"{sheets.get(m['step'], '')} |")
    lines += ["", "![last sample sheet](distill_samples.png)", "", "![unseen photos](distill_unseen.png)", ""]
    (RESULTS / "distill.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
