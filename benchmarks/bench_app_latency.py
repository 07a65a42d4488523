"""Median time from pressing the button to seeing the result, for a 512 x 512 photo,
through the real server (python app.py) in the real browser (Debian's Chromium).

Each run uploads a slightly different copy of examples/astronaut.png (one pixel changed),
so the result cache never answers; the upload itself is not timed. The clock starts at
the click and stops when the new result image has loaded in the page. A few presses of an
unchanged photo then time the cache path.

    python benchmarks/bench_app_latency.py                 # starts app.py itself
    python benchmarks/bench_app_latency.py --runs 9
    python benchmarks/bench_app_latency.py --url http://127.0.0.1:7860   # an app already running

Without ANIMEGAN_WEIGHTS_DIR (or --weights-dir) the app is started with the proxy test
weights (tests/data/proxy_toon.pt, the published architecture, so the same amount of
work as the real styles). Prints one JSON line with the numbers at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from app_helpers import AppServer, app_env, launch_chromium, open_app, press_and_wait, upload  # noqa: E402

WARMUP_MAX = 60  # warm-up presses at most (a first start builds the int8 model: ~15-30 s)


def variants(src: Path, n: int, folder: Path) -> list[Path]:
    base = np.array(Image.open(src).convert("RGB"))
    assert base.shape[:2] == (512, 512), base.shape
    paths = []
    for i in range(n):
        arr = base.copy()
        arr[i // 512, i % 512, 0] ^= 1  # a different hash, the same picture
        path = folder / f"photo_{i:02d}.png"
        Image.fromarray(arr).save(path)
        paths.append(path)
    return paths


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=7, help="uncached presses (default: %(default)s)")
    p.add_argument("--cached-runs", type=int, default=3, help="presses served from the cache (default: %(default)s)")
    p.add_argument("--url", help="use an app that is already running instead of starting app.py")
    p.add_argument("--weights-dir", help="ANIMEGAN_WEIGHTS_DIR for the app started here")
    p.add_argument("--photo", default=str(ROOT / "examples" / "astronaut.png"), help="a 512 x 512 photo")
    args = p.parse_args()

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="bench-app-") as tmp:
        tmp = Path(tmp)
        server = None
        url = args.url
        if url is None:
            weights = args.weights_dir or os.environ.get("ANIMEGAN_WEIGHTS_DIR")
            if not weights:
                from animegan.styles import STYLES

                weights = tmp / "weights"
                weights.mkdir()
                for name in STYLES:
                    shutil.copy(ROOT / "tests" / "data" / "proxy_toon.pt", weights / f"{name}.pt")
                print("weights: the proxy test weights (same architecture, same work)")
            server = AppServer(app_env(weights, tmp), tmp / "app.log").start()
            url = server.url
        photos = variants(Path(args.photo), args.runs + WARMUP_MAX, tmp)
        try:
            with sync_playwright() as pw:
                browser = launch_chromium(pw)
                page = open_app(browser.new_context(viewport={"width": 1280, "height": 900}), url)
                # Warm-up: the first request, and until the automatic backend has finished
                # preparing its fastest backend (the status line says so meanwhile), so the
                # runs below time what visitors get once the app has settled.
                for photo in photos[args.runs:]:
                    upload(page, photo)
                    _, status = press_and_wait(page)
                    print(f"warm-up: {status.strip()}")
                    if "being prepared" not in status:
                        break
                uncached, server_side = [], []
                for i, photo in enumerate(photos[: args.runs]):
                    upload(page, photo)
                    seconds, status = press_and_wait(page)
                    if "from cache" in status:
                        raise SystemExit(f"run {i} came from the cache: {status}")
                    m = re.search(r"([\d.]+) s on", status)
                    server_side.append(float(m.group(1)) if m else float("nan"))
                    uncached.append(seconds)
                    print(f"run {i + 1}: {seconds:.2f} s in the browser ({status.strip()})")
                cached = []
                for _ in range(args.cached_runs):
                    seconds, status = press_and_wait(page)
                    cached.append(seconds)
                    print(f"cached: {seconds:.3f} s ({status.strip()})")
                browser.close()
        finally:
            if server is not None:
                server.stop()

    result = {
        "median_s": round(statistics.median(uncached), 3),
        "min_s": round(min(uncached), 3),
        "max_s": round(max(uncached), 3),
        "server_median_s": round(statistics.median(server_side), 3),
        "cached_median_s": round(statistics.median(cached), 3) if cached else None,
        "runs": len(uncached),
        "photo": "512 x 512",
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs visible, {platform.python_version()}",
    }
    print(f"median button-to-result: {result['median_s']:.2f} s over {len(uncached)} runs "
          f"(stylizing on the server: {result['server_median_s']:.2f} s; from the cache: "
          f"{result['cached_median_s']} s)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
