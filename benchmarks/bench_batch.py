"""Throughput of `animegan batch` against the plain command-line loop, side by side.

    PYTHONPATH=. python benchmarks/bench_batch.py [--photos 200] [--max-side 256] [--backend torch-fp32]

Makes ``--photos`` distinct photos from examples/ (random crops, long sides from 300 to
1200 px, JPEG and PNG, in subfolders), then times, each as a user runs it (a subprocess,
start-up included):

1. the plain loop: ``python -m animegan SRC -o OUT`` (one process, every CPU's threads);
2. ``animegan batch SRC DST --engine local`` (default: one process per CPU, 1 thread each);
3. ``animegan batch SRC DST --engine ray --address ADDR`` on a Ray cluster started
   here beforehand (as `ray start --head` would be; its start-up is not counted).

Target: both engines >= 0.9x the plain loop's photos per second. From the engines'
manifests (per-task seconds, finishing times) it derives the per-worker rate, the
per-task overhead and the start-up, and from those a scaling estimate for N machines
like this one. The same backend runs everywhere (``--backend``, default torch-fp32: the
automatic choice would upgrade itself half-way through the plain loop). Weights: the
proxy test weights (the same network, so the same speed). Results go to stdout and
benchmarks/results/batch.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EXAMPLES = ["astronaut.png", "camera.png", "chelsea.png", "coffee.png", "rocket.jpg"]


def proxy_weights_dir() -> Path:
    from animegan.styles import STYLES

    folder = Path(tempfile.mkdtemp(prefix="animegan-bench-weights-"))
    for name in STYLES:
        shutil.copy(ROOT / "tests" / "data" / "proxy_toon.pt", folder / f"{name}.pt")
    return folder


def make_photos(folder: Path, count: int, seed: int = 0) -> list[tuple[int, int]]:
    """``count`` distinct photos (no two alike, so no result cache helps), varied sizes."""
    from PIL import Image

    rng = random.Random(seed)
    sources = [Image.open(ROOT / "examples" / name).convert("RGB") for name in EXAMPLES]
    sizes = []
    for i in range(count):
        img = sources[i % len(sources)]
        w, h = img.size
        cw, ch = rng.randint(w // 2, w), rng.randint(h // 2, h)
        left, top = rng.randint(0, w - cw), rng.randint(0, h - ch)
        crop = img.crop((left, top, left + cw, top + ch))
        side = rng.choice([300, 480, 640, 800, 1200])
        scale = side / max(crop.size)
        crop = crop.resize((max(16, round(crop.width * scale)), max(16, round(crop.height * scale))))
        sub = folder / f"set{i % 4}"
        sub.mkdir(parents=True, exist_ok=True)
        crop.save(sub / f"p{i:04d}.{'jpg' if i % 3 else 'png'}", quality=92)
        sizes.append(crop.size)
    return sizes


def run(cmd: list[str], env: dict) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return seconds, proc


def from_manifest(path: Path, wall: float, workers: int) -> dict:
    """Per-task worker seconds, the steady rate between the first and last finished
    task, the per-task overhead of a worker slot beyond the work itself, and start-up."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    done = [r for r in rows if r["status"] == "done"]
    finished = sorted(datetime.fromisoformat(r["finished"]).timestamp() for r in done)
    work = statistics.mean(r["seconds"] for r in done)
    span = finished[-1] - finished[0]
    steady = (len(done) - 1) / span if span > 0 else float("nan")
    slot = workers / steady  # seconds of one worker slot per task, in the steady state
    return {
        "tasks": len(done),
        "work": work,
        "steady": steady,
        "overhead": slot - work,
        "startup": wall - len(done) / steady,
        "backends": sorted({r["backend"] for r in done}),
    }


def cpu_name() -> str:
    from animegan.host import cpu_name as name

    return name()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--max-side", type=int, default=256)
    ap.add_argument("--backend", default="torch-fp32")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "batch.md"))
    args = ap.parse_args()

    import ray

    from animegan.batch.engines import split_cpus
    from animegan.host import available_cpus

    cpus = available_cpus()
    work = Path(tempfile.mkdtemp(prefix="animegan-bench-batch-"))
    weights = proxy_weights_dir()
    src = work / "photos"
    sizes = make_photos(src, args.photos)
    env = dict(os.environ, PYTHONPATH=str(ROOT), ANIMEGAN_WEIGHTS_DIR=str(weights), ANIMEGAN_BACKEND=args.backend,
               HF_HUB_OFFLINE="1", HF_HOME=str(work / "hf"))
    ms = ["--max-side", str(args.max_side)]
    py = [sys.executable, "-m", "animegan"]
    load_before = os.getloadavg()

    results: dict[str, dict] = {}
    print(f"{args.photos} photos ({min(map(max, sizes))}-{max(map(max, sizes))} px long side) -> "
          f"{args.max_side} px, {args.backend}, {cpus} CPUs", flush=True)
    wall, _ = run([*py, str(src), "-o", str(work / "plain"), *ms], env)
    results["plain loop"] = {"wall": wall, "layout": f"1 x {cpus} threads"}
    print(f"plain loop: {wall:.1f} s", flush=True)

    workers, threads = split_cpus(None, None, cpus)
    wall, _ = run([*py, "batch", str(src), str(work / "local"), *ms, "--engine", "local"], env)
    results["batch --engine local"] = {"wall": wall, "layout": f"{workers} x {threads} thread(s)",
                                       **from_manifest(work / "local" / "animegan-manifest.jsonl", wall, workers)}
    print(f"local: {wall:.1f} s", flush=True)

    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    saved = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = str(ROOT)  # the cluster's workers import this checkout
    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=cpus, object_store_memory=256 * 1024**2, _temp_dir=temp,
             include_dashboard=False, logging_level="ERROR")
    ray_start = time.perf_counter() - t0
    try:
        address = ray.get_runtime_context().gcs_address
        # ray.init turned token authentication on (RAY_AUTH_MODE=token): a client given an
        # explicit address needs it set too (Ray never sends its token to an address unasked)
        env_ray = {**env, **{k: v for k, v in os.environ.items() if k.startswith("RAY_")}}
        wall, _ = run([*py, "batch", str(src), str(work / "ray"), *ms, "--engine", "ray", "--address", address],
                      env_ray)
    finally:
        ray.shutdown()
        if saved is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved
        shutil.rmtree(temp, ignore_errors=True)
    results["batch --engine ray"] = {"wall": wall, "layout": f"{workers} actors x {threads} CPU(s)",
                                     **from_manifest(work / "ray" / "animegan-manifest.jsonl", wall, workers)}
    print(f"ray: {wall:.1f} s (cluster start {ray_start:.1f} s, not counted)", flush=True)
    load_after = os.getloadavg()

    base = args.photos / results["plain loop"]["wall"]
    lines = [
        "# Batch throughput: `animegan batch` against the plain command-line loop",
        "",
        f"`PYTHONPATH=. python benchmarks/bench_batch.py --photos {args.photos} --max-side {args.max_side} "
        f"--backend {args.backend}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"Machine: {cpu_name()}, {cpus} CPUs usable, Python {platform.python_version()}, ray {ray.__version__}. "
        f"Load average before / after: {load_before[0]:.1f} / {load_after[0]:.1f} (a machine shared with other "
        "agents' jobs: absolute numbers are noisy, the three runs are back to back).",
        f"{args.photos} distinct photos made from examples/ (long sides 300-1200 px, JPEG and PNG, 4 subfolders), "
        f"each shrunk to {args.max_side} px and stylized with the proxy weights (the published network) on "
        f"{args.backend}; wall clock of the whole command, start-up included (the Ray cluster was started "
        f"beforehand, in {ray_start:.1f} s, as `ray start --head` would be).",
        "",
        "| run | workers | wall s | photos/s | vs plain loop |",
        "|---|---|---:|---:|---:|",
    ]
    for name, r in results.items():
        rate = args.photos / r["wall"]
        lines.append(f"| {name} | {r['layout']} | {r['wall']:.1f} | {rate:.2f} | {rate / base:.2f}x |")
    lines += [
        "",
        "From the engines' manifests (per-task seconds inside the worker; finishing times):",
        "",
        "| engine | worker s/photo | steady photos/s | overhead s/task | start-up s |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        if "work" in r:
            lines.append(f"| {name} | {r['work']:.3f} | {r['steady']:.2f} | {r['overhead']:.3f} | "
                         f"{r['startup']:.1f} |")
    ray_r = results["batch --engine ray"]
    per_slot = ray_r["work"] + max(ray_r["overhead"], 0.0)
    lines += [
        "",
        "overhead = a worker slot's seconds per task beyond the work itself (workers / steady rate - worker "
        "seconds): scheduling, reading, encoding and writing, the manifest row. start-up = wall - photos / "
        "steady rate (process or actor start, model load).",
        "",
        f"Scaling estimate for N machines like this one ({workers} Ray actors each), from the measured Ray "
        f"figures: time = start-up + photos x (worker s + overhead s) / (N x {workers}); photos at "
        f"{args.max_side} px. It assumes shared storage keeps up and the driver is not the limit "
        "(it only appends one manifest line per photo).",
        "",
        "| machines | photos/s | 200,000 photos |",
        "|---:|---:|---:|",
    ]
    for n in (1, 2, 4, 8, 16, 32):
        rate = n * workers / per_slot
        total = ray_r["startup"] + 200_000 / rate
        lines.append(f"| {n} | {rate:.1f} | {total / 3600:.1f} h |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    shutil.rmtree(work, ignore_errors=True)
    shutil.rmtree(weights, ignore_errors=True)


if __name__ == "__main__":
    main()
