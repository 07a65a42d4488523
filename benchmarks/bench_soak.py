"""Attacks and a soak against the real app (``python app.py``), issue 11.

1. **Attacks**: each hostile request of issue 11, sent once, timing how long the server
   takes to answer (refuse or finish) and how much its peak resident memory (VmHWM) grew.
   ``--tree`` runs the same attacks against another source tree (e.g. the commit before
   the hardening, exported with ``git archive``), so before and after come from one run.
2. **Soak**: 20 clients x 10 requests each, good and bad mixed, at once. Counts errors
   on good requests (must be 0), checks the server never died, and compares its RSS at
   the end with its RSS after warm-up (must stay within 10 %); the warm-up is every
   request once, then one round of 20 at once.

    PYTHONPATH=. python benchmarks/bench_soak.py                       # attacks + soak, this tree
    PYTHONPATH=. python benchmarks/bench_soak.py --tree /tmp/base --attacks-only

The app runs with the proxy test weights, ``ANIMEGAN_BACKEND=torch-fp32`` (no background
int8 build moving the numbers) and ``ANIMEGAN_QUEUE_SIZE=64`` (the soak's 20 clients would
otherwise be told "queue full", which is the app working as designed, not an error).
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from app_helpers import AppServer, app_env, post  # noqa: E402
from clips import frame_bomb  # noqa: E402

EXAMPLES = ROOT / "examples"


def reset_peak(pid: int) -> None:
    """Start the process's peak RSS (VmHWM) again from its current RSS (Linux clear_refs)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory in MB."""
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status").read().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def call(url: str, api: str, data: list, timeout: float = 300) -> tuple[bool, str]:
    """The /gradio_api/call route as an API client uses it: (succeeded, what came back)."""
    status, text = post(f"{url}/gradio_api/call/{api}", json.dumps({"data": data}).encode(), timeout)
    if status != 200:
        return False, f"HTTP {status}: {text[:200]}"
    event = json.loads(text)["event_id"]
    conn = http.client.HTTPConnection(urllib.parse.urlsplit(url).hostname, urllib.parse.urlsplit(url).port,
                                      timeout=timeout)
    conn.request("GET", f"/gradio_api/call/{api}/{event}")
    body = conn.getresponse().read().decode(errors="replace")
    ok = "event: complete" in body
    return ok, body[-300:]


def upload(url: str, path: Path) -> dict:
    import httpx

    with open(path, "rb") as f:
        r = httpx.post(f"{url}/gradio_api/upload", files={"files": (path.name, f)}, timeout=300)
    if r.status_code != 200:
        raise RuntimeError(f"upload refused: HTTP {r.status_code}")
    return {"path": r.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def data_url(png: bytes) -> dict:
    return {"url": "data:image/png;base64," + base64.b64encode(png).decode(), "meta": {"_type": "gradio.FileData"}}


def png_bytes(img: Image.Image, level: int = 6) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=level)
    return buf.getvalue()


class Files:
    """The attack files, made once."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        rng = np.random.default_rng(0)
        noise = Image.fromarray(rng.integers(0, 256, (3000, 3000, 3), dtype=np.uint8))
        self.big_data_url = data_url(png_bytes(noise, level=0))  # 27 MB PNG, 36 MB as a data: URL
        self.huge_png = folder / "huge.png"
        Image.new("L", (12000, 12000)).save(self.huge_png)  # 144 MP of zeros, ~0.4 MB
        self.live_6300 = folder / "live6300.png"
        Image.new("RGB", (6300, 6300), (150, 120, 100)).save(self.live_6300)  # 39.7 MP
        self.bomb = frame_bomb(folder / "bomb.mp4", count=3000, side=64)
        self.text = folder / "notes.png"
        self.text.write_text("not an image")
        self.photos = []
        for i, name in enumerate(["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "camera.png"]):
            img = Image.open(EXAMPLES / name).convert("RGB")
            img.thumbnail((192, 192))
            path = folder / f"good{i}.png"
            img.save(path)
            self.photos.append(path)


def attacks(url: str, pid: int, files: Files, only: int | None = None) -> list[dict]:
    """Each attack once (``only``: just that one, after a single warm-up photo, for a
    server of its own: glibc keeps freed memory, so a big warm-up hides later growth)."""
    style = "face_paint_512_v2"
    for photo in files.photos[:1] if only is not None else files.photos[:2]:  # warm-up
        for mode in ("off",) if only is not None else ("off", "portrait"):
            call(url, "stylize", [upload(url, photo), style, mode])
    cases = [
        ("110 MB-class data: URL in the JSON body (/stylize)",
         lambda: call(url, "stylize", [files.big_data_url, style, "off"])),
        ("144 MP PNG to /stylize_frame", lambda: call(url, "stylize_frame", [upload(url, files.huge_png), None,
                                                                            style, 128, False, False])),
        ("6300 x 6300 live frame, face crop (/stylize_frame)",
         lambda: call(url, "stylize_frame", [upload(url, files.live_6300), None, style, 128, True, False])),
        ("3000-frame MP4 in 0.03 s (/stylize_video)",
         lambda: call(url, "stylize_video", [upload(url, files.bomb), style, 256,
                                             False], timeout=600)),
    ]
    rows = []
    for name, run in cases if only is None else cases[only:only + 1]:
        reset_peak(pid)
        _, peak0 = rss_mb(pid)
        start = time.perf_counter()
        try:
            ok, said = run()
        except Exception as exc:  # a refused upload, a dropped connection
            ok, said = False, f"{type(exc).__name__}: {exc}"
        seconds = time.perf_counter() - start
        _, peak1 = rss_mb(pid)
        rows.append({"attack": name, "seconds": round(seconds, 2), "peak_growth_mb": round(peak1 - peak0),
                     "accepted": ok, "answer": said.replace("\n", " ")[-160:]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def soak(url: str, pid: int, files: Files, clients: int = 20, per_client: int = 10) -> dict:
    style = "face_paint_512_v2"
    uploads = {p: upload(url, p) for p in files.photos}
    huge = upload(url, files.huge_png)
    text = upload(url, files.text)
    bomb = upload(url, files.bomb)

    def good(rng):
        photo = uploads[rng.choice(files.photos)]
        return "good", lambda: call(url, "stylize", [photo, style, rng.choice(["off", "portrait"])])

    bad = [
        lambda: call(url, "stylize", [files.big_data_url, style, "off"]),
        lambda: call(url, "stylize", [huge, style, "off"]),
        lambda: call(url, "stylize", [text, style, "off"]),
        lambda: call(url, "stylize", [uploads[files.photos[0]], "no_such_style", "off"]),
        lambda: call(url, "stylize_frame", [huge, None, style, 128, False, False]),
        lambda: call(url, "stylize_video", [bomb, style, 256, False]),
    ]
    for photo in files.photos:  # warm-up: every good request once (the result cache then answers repeats)
        for mode in ("off", "portrait"):
            ok, said = call(url, "stylize", [uploads[photo], style, mode])
            assert ok, said
    for run in bad:
        run()
    with ThreadPoolExecutor(clients) as pool:  # and one round at full concurrency
        list(pool.map(lambda i: (bad[i % len(bad)] if i % 2 else good(random.Random(i))[1])(), range(clients)))
    warm, _ = rss_mb(pid)

    def client(seed: int) -> list[tuple[str, bool, str]]:
        rng = random.Random(seed)
        out = []
        for _ in range(per_client):
            if rng.random() < 0.5:
                kind, run = good(rng)
            else:
                kind, run = "bad", rng.choice(bad)
            try:
                ok, said = run()
            except Exception as exc:
                ok, said = False, f"{type(exc).__name__}: {exc}"
            out.append((kind, ok, said))
        return out

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for chunk in pool.map(client, range(clients)) for r in chunk]
    seconds = time.perf_counter() - start
    end, peak = rss_mb(pid)
    good_runs = [r for r in results if r[0] == "good"]
    bad_runs = [r for r in results if r[0] == "bad"]
    summary = {
        "requests": len(results), "good": len(good_runs), "good_errors": sum(not ok for _, ok, _ in good_runs),
        "bad": len(bad_runs), "bad_accepted": sum(ok for _, ok, _ in bad_runs), "seconds": round(seconds, 1),
        "rss_after_warmup_mb": round(warm), "rss_end_mb": round(end), "rss_change": f"{(end - warm) / warm:+.1%}",
        "peak_mb": round(peak),
    }
    errors = [said for kind, ok, said in good_runs if not ok][:3]
    if errors:
        summary["first_good_errors"] = errors
    return summary


def start_app(tree: Path, weights: Path, home: Path) -> AppServer:
    env = app_env(weights, home, ANIMEGAN_BACKEND="torch-fp32", ANIMEGAN_QUEUE_SIZE="64")
    env["PYTHONPATH"] = str(tree)
    return AppServer(env, home / "app.log", cwd=tree).start()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tree", type=Path, default=ROOT, help="the source tree whose app.py runs (default: this one)")
    p.add_argument("--attacks-only", action="store_true")
    p.add_argument("--soak-only", action="store_true")
    p.add_argument("--fresh", action="store_true", help="a fresh server for each attack (cleaner peak memory)")
    args = p.parse_args()
    home = Path(tempfile.mkdtemp(prefix="animegan-soak-"))
    weights = home / "weights"
    weights.mkdir()
    from animegan.styles import STYLES

    for name in STYLES:
        shutil.copy(ROOT / "tests" / "data" / "proxy_toon.pt", weights / f"{name}.pt")
    files = Files(home)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; tree: {args.tree}",
          flush=True)
    try:
        if not args.soak_only and args.fresh:
            for i in range(4):
                with start_app(args.tree, weights, home / f"a{i}") as server:
                    attacks(server.url, server.proc.pid, files, only=i)
        elif not args.soak_only:
            with start_app(args.tree, weights, home / "a") as server:
                rows = attacks(server.url, server.proc.pid, files)
                print(json.dumps({"attacks": rows, "alive": server.alive()}), flush=True)
        if not args.attacks_only:
            with start_app(args.tree, weights, home / "s") as server:
                result = soak(server.url, server.proc.pid, files)
                result["server_alive"] = server.alive()
                print(json.dumps({"soak": result}), flush=True)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
