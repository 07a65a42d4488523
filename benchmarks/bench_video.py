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

3. Flicker (part ``flicker``): a clip of a camera panning and zooming over a real photo,
   with sensor noise and a brightness ramp (tests/clips.py, 256 x 192), steadied
   (animegan.steady, as clips get it; and with statistics carried too) against frame by
   frame, in the same run, frames alternating: temporal warping error along the known
   motion (target >= 40 % lower), PSNR of steadied against frame-by-frame frames (>= 28 dB: the style is kept), time per
   frame (<= +25 %); draws the per-frame mean colour of both (benchmarks/results/flicker.png).
   Clips in part 2 are steadied, as stylize_video does by default.

The backend is the automatic choice, $ANIMEGAN_BACKEND, or --backend. Weights: the proxy test
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


def bench_flicker(stylizer, frames: int, size: tuple[int, int] = (256, 192)) -> dict:
    import numpy as np
    from clips import moving_clip, warping_error
    from PIL import Image

    from animegan.steady import Stabilizer

    clip = moving_clip(frames, size=size)
    style = stylizer.style
    own = lambda f: np.asarray(stylizer.run_array(style, Image.fromarray(f)))  # noqa: E731
    Stabilizer(stylizer, style)(clip[0])  # warm-up: the engine is made and compiled
    own(clip[0])
    steadies = {"steadied": Stabilizer(stylizer, style), "carried": Stabilizer(stylizer, style, carry=True)}
    results = {name: [] for name in ("frame by frame", *steadies)}
    times = {name: [] for name in results}
    for f in clip:  # alternate, so all see the same machine
        for name in results:
            t0 = time.perf_counter()
            results[name].append(own(f) if name == "frame by frame" else steadies[name](f))
            times[name].append(time.perf_counter() - t0)
    plain, out, carried = results["frame by frame"], results["steadied"], results["carried"]
    t_plain, t_steady, t_carried = times["frame by frame"], times["steadied"], times["carried"]

    def psnr8(a, b) -> float:
        mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
        return float("inf") if mse == 0 else float(10 * np.log10(255**2 / mse))

    scores = [psnr8(a, b) for a, b in zip(out[1:], plain[1:], strict=True)]  # the first has nothing to blend
    return {
        "size": size, "frames": frames,
        "before": warping_error(plain), "after": warping_error(out),
        "psnr_mean": float(np.mean(scores)), "psnr_min": float(min(scores)),
        "ms_plain": statistics.median(t_plain[1:]) * 1000, "ms_steady": statistics.median(t_steady[1:]) * 1000,
        "carried_after": warping_error(carried), "ms_carried": statistics.median(t_carried[1:]) * 1000,
        "carried_psnr_mean": float(np.mean([psnr8(a, b) for a, b in zip(carried[1:], plain[1:], strict=True)])),
        "colours": {name: [f.reshape(-1, 3).mean(0) for f in frames]
                    for name, frames in (("photo", clip), ("frame by frame", plain), ("steadied", out))},
    }


def flicker_plot(colours: dict, path: Path) -> None:
    """Per-frame mean colour (R, G, B as three thin lines per series) of the photo's
    frames, frame-by-frame results and steadied results, drawn with Pillow."""
    from PIL import Image, ImageDraw

    w, h, pad = 900, 420, 50
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    series = list(colours.items())
    values = [v for _, rows in series for row in rows for v in row]
    lo, hi = min(values) - 2, max(values) + 2
    n = len(series[0][1])
    x = lambda i: pad + i * (w - 2 * pad) / max(1, n - 1)  # noqa: E731
    y = lambda v: h - pad - (v - lo) * (h - 2 * pad) / (hi - lo)  # noqa: E731
    d.rectangle([pad, pad, w - pad, h - pad], outline=(180, 180, 180))
    styles = {"photo": ((150, 150, 150), 1), "frame by frame": ((214, 39, 40), 2), "steadied": ((31, 119, 180), 3)}
    channel_shade = (1.0, 0.75, 0.5)
    for name, rows in series:
        colour, width = styles.get(name, ((0, 0, 0), 1))
        for c in range(3):
            shade = tuple(int(v * channel_shade[c] + 255 * (1 - channel_shade[c])) for v in colour)
            d.line([(x(i), y(r[c])) for i, r in enumerate(rows)], fill=shade, width=width)
    d.text((pad, 12), "Mean colour per frame (R, G, B) of a panning, zooming clip with noise and a brightness ramp",
           fill=(0, 0, 0))
    for k, (name, _) in enumerate(series):
        colour, width = styles.get(name, ((0, 0, 0), 1))
        d.line([(pad + 220 * k, h - 20), (pad + 220 * k + 30, h - 20)], fill=colour, width=width)
        d.text((pad + 220 * k + 36, h - 27), name, fill=(0, 0, 0))
    d.text((w - pad - 60, h - pad + 6), f"frame {n - 1}", fill=(0, 0, 0))
    d.text((pad, h - pad + 6), "frame 0", fill=(0, 0, 0))
    img.save(path)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=40, help="live frames to time (after 5 warm-up)")
    p.add_argument("--seconds", type=float, default=2.0, help="length of the 480p test clip")
    p.add_argument("--clip-sizes", default="512,full",
                   help="video size policies to time, comma-separated: long side in px or full (default: %(default)s)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "video.md"))
    p.add_argument("--parts", default="live,clips,flicker", help="what to run (default: %(default)s)")
    p.add_argument("--flicker-frames", type=int, default=30)
    p.add_argument("--backend", default=None, help="force a backend (default: $ANIMEGAN_BACKEND or auto)")
    args = p.parse_args()
    parts = set(args.parts.split(","))
    if args.backend:
        os.environ["ANIMEGAN_BACKEND"] = args.backend

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
    lines += ["| path | result |", "|---|---|"]
    if "live" in parts:
        live = bench_live(stylizer, args.frames)
        lo, hi = live["fps_q"]
        steps = ", ".join(f"{k} {v:.1f} ms" for k, v in live["parts_ms"].items())
        lines.append(f"| live frame 256 x 256, decode PNG -> stylize -> encode JPEG | **{live['fps']:.1f} frames/s** "
                     f"(median {live['ms']:.0f} ms; quartiles {lo:.1f}-{hi:.1f} frames/s; {steps}) |")
    with tempfile.TemporaryDirectory() as tmp:
        for item in filter(None, args.clip_sizes.split(",") if "clips" in parts else []):
            side = None if item == "full" else int(item)
            label = "full 854 x 480" if side is None else f"size policy {side} px long side"
            clip = bench_clip(stylizer, args.seconds, side, Path(tmp))
            w, h = clip["size"]
            lines.append(
                f"| 480p clip, {label}: decode -> stylize -> encode H.264 + AAC | "
                f"**{clip['per_video_second']:.1f} s per second of video** ({clip['frames']} frames at {w} x {h} "
                f"in {clip['seconds']:.1f} s, {clip['fps']:.1f} frames/s) |"
            )
    if "flicker" in parts:
        f = bench_flicker(stylizer, args.flicker_frames)
        w, h = f["size"]
        lower = 1 - f["after"] / f["before"]
        extra = f["ms_steady"] / f["ms_plain"] - 1
        lines.append(f"| flicker, {f['frames']} frames {w} x {h} (pan + zoom over a real photo, noise, brightness "
                     f"ramp) | temporal warping error **{f['before']:.2f} -> {f['after']:.2f} levels "
                     f"({lower:.0%} lower)**; steadied vs frame by frame {f['psnr_mean']:.1f} dB mean "
                     f"({f['psnr_min']:.1f} worst); **{f['ms_plain']:.0f} -> {f['ms_steady']:.0f} ms per frame "
                     f"({extra:+.0%})** |")
        lines.append(f"| the same, statistics carried too (`--carry-statistics`) | warping "
                     f"error {f['before']:.2f} -> {f['carried_after']:.2f} levels "
                     f"({1 - f['carried_after'] / f['before']:.0%} lower); {f['carried_psnr_mean']:.1f} dB mean vs "
                     f"frame by frame; {f['ms_plain']:.0f} -> "
                     f"{f['ms_carried']:.0f} ms per frame ({f['ms_carried'] / f['ms_plain'] - 1:+.0%}) |")
        flicker_plot(f["colours"], Path(args.out).with_name("flicker.png"))
    lines += ["", "Medians over the timed frames; the live target is >= 10 frames/s at 256 x 256 on 2 threads."]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
