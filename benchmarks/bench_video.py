"""Speed of the live webcam path and of video clips, on a fixed number of threads.

    PYTHONPATH=. python benchmarks/bench_video.py [--threads 2] [--frames 40] [--seconds 2]

1. Live frames at 256 x 256, end to end on the server side: decode the frame as the
   browser sends it (PNG), stylize (LiveStylizer, as the /live endpoint does), encode
   the result as the tab sends it back (JPEG). Reports frames per second (median and
   quartiles of per-frame times). Target: >= 10 frames/s on 2 threads.
2. A 480p clip (854 x 480, 30 fps, AAC sound) made from the real photos, through
   stylize_video: decode -> stylize every frame -> encode H.264 + AAC. Reports seconds of
   processing per second of video, at the default video size policy (512 px long side)
   and at the clip's full 480p.

The backend is the automatic choice, or $ANIMEGAN_BACKEND. Weights: the proxy test
weights unless ANIMEGAN_WEIGHTS_DIR is set (speed does not depend on the values).
Results go to stdout and benchmarks/results/video.md.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))


def proxy_weights_dir() -> Path:
    from animegan.styles import STYLES

    folder = Path(tempfile.mkdtemp(prefix="animegan-bench-weights-"))
    for name in STYLES:
        shutil.copy(ROOT / "tests" / "data" / "proxy_toon.pt", folder / f"{name}.pt")
    return folder


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(values, n=4)
    return q[0], statistics.median(values), q[2]


def bench_live(stylizer, frames: int, side: int = 256) -> dict:
    from clips import EXAMPLES
    from PIL import Image

    from animegan import images
    from animegan.live import LiveStylizer

    engine = LiveStylizer(stylizer, side=side, time_limit=None)
    sources = []
    for name in ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg"):
        img = Image.open(EXAMPLES / name).convert("RGB")
        img = images.resize(img, (side, side))
        buf = io.BytesIO()
        img.save(buf, "PNG")  # what the browser posts for a webcam frame
        sources.append(buf.getvalue())
    times, parts = [], {"decode": [], "stylize": [], "encode": []}
    session = None
    for i in range(frames + 5):
        t0 = time.perf_counter()
        frame = Image.open(io.BytesIO(sources[i % len(sources)]))
        frame.load()
        t1 = time.perf_counter()
        session, result = engine.process(session, frame, side=side)
        t2 = time.perf_counter()
        out = io.BytesIO()
        result.image.save(out, "JPEG", quality=90)  # what the live tab sends back
        t3 = time.perf_counter()
        assert result.processed and result.image.size == (side, side)
        if i >= 5:  # warm-up done
            times.append(t3 - t0)
            parts["decode"].append(t1 - t0)
            parts["stylize"].append(t2 - t1)
            parts["encode"].append(t3 - t2)
    q1, med, q3 = quartiles(times)
    return {"fps": 1 / med, "fps_q": (1 / q3, 1 / q1), "ms": med * 1000,
            "parts_ms": {k: statistics.median(v) * 1000 for k, v in parts.items()}}


def bench_clip(stylizer, seconds: float, max_side: int | None, folder: Path) -> dict:
    from clips import photo_frames, write_clip

    from animegan.video import stylize_video

    clip = folder / "clip480p.mp4"
    if not clip.exists():
        write_clip(clip, photo_frames((854, 480), round(30 * seconds), 30), 30, audio_seconds=seconds)
    result = stylize_video(stylizer, clip, folder / f"out_{max_side}.mp4", max_side=max_side, max_seconds=None)
    return {"size": result.size, "frames": result.frames, "seconds": result.seconds,
            "per_video_second": result.seconds / result.duration, "fps": result.frames / result.seconds}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=40, help="live frames to time (after 5 warm-up)")
    p.add_argument("--seconds", type=float, default=2.0, help="length of the 480p test clip")
    p.add_argument("--clip-sizes", default="512,full",
                   help="video size policies to time, comma-separated: long side in px or full (default: %(default)s)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "video.md"))
    args = p.parse_args()

    if not os.environ.get("ANIMEGAN_WEIGHTS_DIR"):
        os.environ["ANIMEGAN_WEIGHTS_DIR"] = str(proxy_weights_dir())
    from animegan import Stylizer, host

    host.configure_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    stylizer = Stylizer()
    backend = stylizer.backend()
    host.configure_threads(args.threads)  # the backend may have chosen its own; hold it at --threads
    import torch

    lines = [
        "# Video and live webcam speed",
        "",
        f"{platform.processor() or platform.machine()}, {args.threads} threads (torch {torch.get_num_threads()}), "
        f"backend `{backend.name}`, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. "
        f"Load average at start: {os.getloadavg()[0]:.1f}.",
        "",
    ]
    live = bench_live(stylizer, args.frames)
    lo, hi = live["fps_q"]
    parts = ", ".join(f"{k} {v:.1f} ms" for k, v in live["parts_ms"].items())
    lines += [
        "| path | result |",
        "|---|---|",
        f"| live frame 256 x 256, decode PNG -> stylize -> encode JPEG | **{live['fps']:.1f} frames/s** "
        f"(median {live['ms']:.0f} ms; quartiles {lo:.1f}-{hi:.1f} frames/s; {parts}) |",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        for item in filter(None, args.clip_sizes.split(",")):
            side = None if item == "full" else int(item)
            label = "full 854 x 480" if side is None else f"size policy {side} px long side"
            clip = bench_clip(stylizer, args.seconds, side, Path(tmp))
            w, h = clip["size"]
            lines.append(
                f"| 480p clip, {label}: decode -> stylize -> encode H.264 + AAC | "
                f"**{clip['per_video_second']:.1f} s per second of video** ({clip['frames']} frames at {w} x {h} "
                f"in {clip['seconds']:.1f} s, {clip['fps']:.1f} frames/s) |"
            )
    lines += ["", "Medians over the timed frames; the live target is >= 10 frames/s at 256 x 256 on 2 threads."]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
