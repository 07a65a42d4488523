"""Distil the proxy weights into a LiteGenerator with the plain command and measure what came out.

    python benchmarks/bench_distill.py                     # 30-minute run, then the figures
    python benchmarks/bench_distill.py --minutes 4 --set validation --out /tmp/v1 --no-speed
                                                           # a short run scored on the validation photos
    python benchmarks/bench_distill.py --evaluate-only     # figures for an existing run folder
    python benchmarks/bench_distill.py --time-layouts '{"res_blocks": 1, "half_convs": 2}'
                                                           # int8 time of a student layout vs the teacher

1. ``python -m animegan distill --teacher face_paint_512_v2 --photos DIR --out DIR --minutes M``,
   the plain command with its defaults (``--extra`` adds options, for trials only): the
   teacher is the proxy weights (tests/data/proxy_toon.pt) put where the style's weights
   go (a temporary ANIMEGAN_WEIGHTS_DIR holding face_paint_512_v2.pt), the photos are the 5
   calibration photos (animegan/backends/calibration/). --minutes is wall time, the
   teacher's labelling included.
2. PSNR of the student against the teacher (both float32, compared as 8-bit images,
   animegan.backends.psnr) at 512 px on the long side, on the held-out photos
   (benchmarks/photos/: ``unseen`` are only scored here, ``validation`` chose the settings)
   and on the 5 training photos for reference.
3. Speed on the default backend (``auto``, prepared in the foreground, for both models):
   512 x 512 time of teacher and student, medians of --repeats interleaved runs (both see
   the same machine load); PyTorch float32 beside it. Live frames: the library's frame
   loop (animegan.live.LiveStylizer) at 256 px, the student registered as the style's fast
   variant (ANIMEGAN_WEIGHTS_DIR/face_paint_512_v2-lite/) against the full model, rounds
   interleaved.
4. Parameters and multiply-adds of both, counted in code (animegan.models.complexity).

Writes benchmarks/results/distill.md (machine: CPU model, ISA flags, load before and
after), docs/images/distill_unseen.png (photo | teacher | student on the unseen photos,
made with the test weights) and benchmarks/results/distill_samples.png (the run's last
sample sheet).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEACHER = ROOT / "tests" / "data" / "proxy_toon.pt"
STYLE = "face_paint_512_v2"
# The teacher goes where the style's weights go, before anything reads the settings.
WEIGHTS = Path(tempfile.mkdtemp(prefix="bench-distill-weights-"))
shutil.copy(TEACHER, WEIGHTS / f"{STYLE}.pt")
os.environ["ANIMEGAN_WEIGHTS_DIR"] = str(WEIGHTS)
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from animegan import images, runtime  # noqa: E402
from animegan.backends import make_backend, psnr  # noqa: E402
from animegan.files import atomic_write_text  # noqa: E402
from animegan.models.complexity import count  # noqa: E402
from animegan.weights import load_generator  # noqa: E402

TRAIN = ROOT / "animegan" / "backends" / "calibration"
HELD_OUT = ROOT / "benchmarks" / "photos"
RESULTS = ROOT / "benchmarks" / "results"
SHEET = ROOT / "docs" / "images" / "distill_unseen.png"


def machine() -> str:
    """CPU model, the ISA flags that matter for these kernels, CPUs, memory."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")), "?")
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    shown = [f for f in flags if f.startswith(("avx", "amx", "fma")) or f in ("f16c", "vnni")]
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{model}, {len(os.sched_getaffinity(0))} CPUs, {mem:.0f} GiB; ISA flags: {' '.join(shown) or '?'}"


def load() -> str:
    return " ".join(f"{v:.1f}" for v in os.getloadavg())


def photos(folder: Path, side: int = 512) -> dict[str, Image.Image]:
    out = {}
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png")):
        img = images.decode(path).rgb
        out[path.name] = images.resize(img, images.fit_size(img.size, side))
    return out


def train(args: argparse.Namespace) -> float:
    budget = ["--steps", str(args.steps)] if args.steps else ["--minutes", f"{args.minutes:g}"]
    cmd = [sys.executable, "-m", "animegan", "distill", "--teacher", STYLE, "--photos", str(TRAIN),
           "--out", str(args.out), *budget, *args.extra.split()]
    print("$", " ".join(cmd), flush=True)
    start = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TQDM_MININTERVAL": "30"}
    subprocess.run(cmd, check=True, cwd=ROOT, env=env)
    return time.perf_counter() - start


def run_torch(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return model(torch.from_numpy(x)).numpy()


def fidelity(teacher, student, sets: list[str]) -> tuple[list[tuple], list[list[Image.Image]]]:
    rows, sheet = [], []
    for name in sets:
        folder = TRAIN if name == "training" else HELD_OUT / name
        for file, img in photos(folder).items():
            x = images.to_array(img)
            t, s = run_torch(teacher, x), run_torch(student, x)
            rows.append((name, file, img.size, psnr(s, t)))
            if name == "unseen":
                small = images.fit_size(img.size, 256)
                sheet.append([images.resize(im, small) for im in (img, images.from_array(t), images.from_array(s))])
    return rows, sheet


def time_pair(fns: dict, x: np.ndarray, repeats: int) -> dict[str, float]:
    times: dict[str, list[float]] = {k: [] for k in fns}
    for fn in fns.values():
        fn(x)  # warm-up
    for _ in range(repeats):  # interleaved: both see the same load
        for name, fn in fns.items():
            start = time.perf_counter()
            fn(x)
            times[name].append(time.perf_counter() - start)
    return {k: float(np.median(v)) for k, v in times.items()}


def default_backends(models: dict) -> tuple[np.ndarray, dict]:
    """The 512 x 512 photo the speed figures use, and each model on the default backend
    (``auto``), prepared in the foreground."""
    from animegan.settings import Settings

    rt = runtime.start(Settings.from_env())
    x = images.to_array(images.resize(images.decode(TRAIN / "astronaut.jpg").rgb, (512, 512)))
    return x, {name: make_backend(model, "auto", rt, background=False) for name, model in models.items()}


def speed(teacher, student, run: Path, repeats: int) -> dict:
    """512 x 512 on the default backend and PyTorch float32; live fps at 256 in LiveStylizer."""
    from animegan import Stylizer
    from animegan.live import LiveStylizer
    from animegan.settings import Settings

    x, default = default_backends({"teacher": teacher, "student": student})
    out: dict = {f"{name}_backend": backend.name for name, backend in default.items()}
    out["default"] = time_pair(default, x, repeats)
    out["torch"] = time_pair({"teacher": lambda a: run_torch(teacher, a),
                              "student": lambda a: run_torch(student, a)}, x, max(2, repeats // 2))

    # live: the style with its fast variant registered, through the library's frame loop
    lite = WEIGHTS / f"{STYLE}-lite"
    if lite.exists():
        shutil.rmtree(lite)
    shutil.copytree(run, lite, ignore=shutil.ignore_patterns("checkpoints", "samples", "metrics.jsonl"))
    stylizer = Stylizer(STYLE, settings=Settings.from_env(), wait_for_fast=True)
    assert stylizer.lite_style(STYLE) == f"{STYLE}-lite", "the student is not found as the style's fast variant"
    engine = LiveStylizer(stylizer, side=256, time_limit=None)
    frame = images.resize(images.decode(TRAIN / "astronaut.jpg").rgb, (256, 256))
    counts = {"teacher": [0, 0.0], "student": [0, 0.0]}
    for lite_on in (False, True):  # warm: both backends built and loaded before timing
        stylizer.backend(stylizer.variant(STYLE, lite_on))
        engine.process(None, frame, STYLE, 256, lite=lite_on)
    for _ in range(6):  # rounds of ~2 s each, interleaved
        for name, lite_on in (("teacher", False), ("student", True)):
            session, start = None, time.perf_counter()
            while time.perf_counter() - start < 2.0:
                session, result = engine.process(session, frame, STYLE, 256, lite=lite_on)
                counts[name][0] += int(result.processed)
            counts[name][1] += time.perf_counter() - start
    out["live_fps"] = {k: n / s for k, (n, s) in counts.items()}
    out["live_backend"] = {k: stylizer.backend(stylizer.variant(STYLE, k == "student")).name for k in counts}
    return out


def time_layouts(layouts: list[str], repeats: int) -> str:
    """The default backend's 512 x 512 time of LiteGenerator layouts (randomly initialised:
    the layout sets the time, not the weights) against the teacher's, interleaved."""
    from animegan.models import LiteGenerator

    models = {"teacher": load_generator(TEACHER)}
    for text in layouts:
        torch.manual_seed(0)
        models[text] = LiteGenerator(**{"stem": "unshuffle", **json.loads(text)}).eval()
    x, fns = default_backends(models)
    times = time_pair(fns, x, repeats)
    return "\n".join(f"{name}: {t:.4f} s, {t / times['teacher']:.3f} x the teacher ({fns[name].name})"
                     for name, t in times.items())


def curve(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]


def report(args, run: Path, rows, sheet, fast, wall, before: str, after: str) -> str:
    from animegan.train.loop import sample_sheet

    settings = json.loads((run / "run.json").read_text())
    metrics = curve(run)
    last = [m for m in metrics if "loss" in m][-1]
    teacher, student = load_generator(TEACHER), load_generator(run)
    ct, cs = count(teacher, 512), count(student, 512)
    by_set: dict[str, list[float]] = {}
    for name, _, _, v in rows:
        by_set.setdefault(name, []).append(v)
    unseen = by_set.get("unseen", [])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout
    lines = [
        "# Distillation: the proxy teacher into a LiteGenerator",
        "",
        f"`python benchmarks/bench_distill.py` ({args.minutes:g}-minute run, then the figures), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {commit.strip()}.",
        f"Machine: {machine()}; torch {torch.__version__}. Load average (1, 5, 15 min) {before} before, "
        f"{after} after (this run's own work included: a load well over 2 means other work shared the "
        "cores and absolute times are inflated); ratios come from interleaved runs.",
        "",
        "The command, as a user types it (the proxy weights stand in for the style's in ANIMEGAN_WEIGHTS_DIR):",
        "",
        f"    python -m animegan distill --teacher {STYLE} --photos animegan/backends/calibration --out RUN "
        f"--minutes {args.minutes:g}" + (f" {args.extra}" if args.extra else ""),
        "",
        f"What it chose on this machine: crops {settings['size']} px, batch {settings['batch']}, pool "
        f"{settings['pool']}, {settings['refresh']} fresh teacher crops a step, perceptual {settings['perceptual']}, "
        f"lr {settings['lr']} (cosine), EMA {settings.get('ema')}, augmentation "
        f"{'on' if settings.get('augment', True) else 'off'}; student {student.config}. "
        f"{last['step']} steps ({last['crops']} crops) in "
        + (f"{wall / 60:.1f} min wall" if wall else f"{settings.get('minutes')} min")
        + f", {last.get('teacher_seconds', 0):.0f} s of it the teacher labelling crops.",
        "",
        "## Student vs teacher at 512 px (PSNR of the 8-bit images, both float32)",
        "",
        "| photo | set | size | PSNR |",
        "|---|---|---|---|",
        *[f"| {n} | {g} | {w} x {h} | {v:.2f} dB |" for g, n, (w, h), v in rows],
        "",
        *[f"- {name}: median **{np.median(v):.2f} dB**, mean {np.mean(v):.2f}, worst {min(v):.2f} ({len(v)} photos)"
          for name, v in by_set.items()],
    ]
    if unseen:
        lines += ["", f"Target >= 28 dB median on unseen photos: "
                      f"**{'met' if np.median(unseen) >= 28 else 'missed'}** ({np.median(unseen):.2f} dB)."]
    lines += ["", "## Cost and speed", "",
              "| | params | multiply-adds at 512 x 512 |", "|---|---|---|",
              f"| teacher (AnimeGANv2) | {ct.params / 1e6:.2f} M | {ct.macs / 1e9:.1f} G |",
              f"| student (LiteGenerator) | {cs.params / 1e6:.2f} M | {cs.macs / 1e9:.1f} G "
              f"({cs.macs / ct.macs:.2f} x) |", ""]
    if fast:
        d, t = fast["default"], fast["torch"]
        ratio = d["student"] / d["teacher"]
        live = fast["live_fps"]
        lines += [
            "| backend | teacher 512² s | student 512² s | student / teacher |",
            "|---|---|---|---|",
            f"| default (auto: teacher {fast['teacher_backend']}, student {fast['student_backend']}) | "
            f"{d['teacher']:.3f} | {d['student']:.3f} | **{ratio:.2f}** |",
            f"| torch fp32 (for reference) | {t['teacher']:.3f} | {t['student']:.3f} | "
            f"{t['student'] / t['teacher']:.2f} |",
            "",
            f"Target <= 0.25 x on the default backend: **{'met' if ratio <= 0.25 else 'missed'}**.",
            "",
            "Live frames at 256 px in the library's frame loop (LiveStylizer, 6 interleaved rounds of 2 s):",
            "",
            "| | frames/s | backend |",
            "|---|---|---|",
            f"| teacher (full model) | {live['teacher']:.1f} | {fast['live_backend']['teacher']} |",
            f"| student (the style's fast variant, the live default) | {live['student']:.1f} | "
            f"{fast['live_backend']['student']} |",
            "",
            f"Student / teacher: **{live['student'] / live['teacher']:.1f} x** (target >= 3 x: "
            f"{'met' if live['student'] / live['teacher'] >= 3 else 'missed'}).",
            "",
        ]
    lines += ["## Curve (metrics.jsonl)", "", "| step | minutes | train L1 | batch PSNR | sample-sheet PSNR |",
              "|---|---|---|---|---|"]
    sheets = {m["step"]: m["sample_psnr"] for m in metrics if "sample_psnr" in m}
    shown = [m for m in metrics if "loss" in m]
    stride = max(1, len(shown) // 15)
    for m in shown[::stride] + ([shown[-1]] if shown[-1] not in shown[::stride] else []):
        lines.append(f"| {m['step']} | {m['elapsed'] / 60:.1f} | {m['l1']:.4f} | {m['psnr']:.2f} | "
                     f"{sheets.get(m['step'], '')} |")
    if sheet and args.write:
        SHEET.parent.mkdir(parents=True, exist_ok=True)
        sample_sheet(sheet, ["photo (never trained on)", "teacher (test weights)", "student"],
                     "made with the test (proxy) weights, not a published style").save(SHEET)
        lines += ["", "![unseen photos: photo | teacher | student](../../docs/images/distill_unseen.png)"]
        samples = run / "samples" / "latest.png"
        if samples.is_file():
            shutil.copy(samples, RESULTS / "distill_samples.png")
            lines += ["", "![the run's last sample sheet](distill_samples.png)"]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--steps", type=int, default=None,
                   help="a fixed number of steps instead of --minutes (trials that compare settings on a busy machine)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "runs" / "distill")
    p.add_argument("--extra", default="", help="options added to the command (trials only; the figure uses none)")
    p.add_argument("--set", default="unseen,validation,training",
                   help="photo sets scored, comma-separated (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--no-speed", action="store_true", help="skip the speed measurements")
    p.add_argument("--evaluate-only", action="store_true", help="skip training; measure the run in --out")
    p.add_argument("--no-write", dest="write", action="store_false",
                   help="print the report only (trials): distill.md and the pictures stay as they are")
    p.add_argument("--time-layouts", nargs="+", metavar="JSON",
                   help="only time LiteGenerator layouts against the teacher, e.g. '{\"res_blocks\": 1}' "
                        "(stem unshuffle unless given)")
    args = p.parse_args()
    if args.time_layouts:
        print(time_layouts(args.time_layouts, max(args.repeats, 9)))
        shutil.rmtree(WEIGHTS, ignore_errors=True)
        return

    before = load()
    if not args.evaluate_only and args.out.exists():
        shutil.rmtree(args.out)
    wall = None if args.evaluate_only else train(args)
    teacher, student = load_generator(TEACHER), load_generator(args.out)
    runtime.get().engage()
    rows, sheet = fidelity(teacher, student, args.set.split(","))
    fast = None if args.no_speed else speed(teacher, student, args.out, args.repeats)
    text = report(args, args.out, rows, sheet, fast, wall, before, load())
    if args.write:
        atomic_write_text(RESULTS / "distill.md", text)
    print(text)
    shutil.rmtree(WEIGHTS, ignore_errors=True)


if __name__ == "__main__":
    main()
