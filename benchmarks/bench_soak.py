"""Attacks and a soak against the real app (``python app.py``), issues 11 and 19.

1. **Attacks**: each hostile request, sent once, recording how the server answered
   (refused or accepted), how long it took, how much its peak resident memory (VmHWM)
   grew, and for issue 19 what it left behind: files on disk, memory held, broken
   downloads, a photo visitor locked out.
2. **CLI attacks**: ``animegan batch SRC SRC`` three times (files after each run) and a
   bad ONNX ``--weights`` file (a traceback or a message).
3. **Soak**: 40 clients at once, each with its own address (as a Space's proxy reports
   it), 30 sending good requests (photos, every result downloaded and checked; live
   frames; short clips) and 10 sending bad ones. A good request told "busy, try again" (a full
   line: the clips' line holds a quarter of the queue) tries again 10 s later, up to 5 times, as
   a person would; the busy answers are counted. Reports failed good requests (must be
   0), accepted bad ones (must be 0), broken downloads (must be 0), the upload folder's
   size at start, after the soak and after the cache time (must be back to the start),
   and the RSS at the end against the RSS after warm-up (must stay within 10 %).

    PYTHONPATH=. python benchmarks/bench_soak.py                          # everything, this tree
    PYTHONPATH=. python benchmarks/bench_soak.py --tree /tmp/base         # the same against another tree
    PYTHONPATH=. python benchmarks/bench_soak.py --only soak --json out.json

``--tree`` runs the same against another source tree (the commit before the fixes,
exported with ``git archive``, or the built Space tree from scripts/build_space.py), so
before and after come from one script. The app runs with the proxy test weights and
``ANIMEGAN_BACKEND=torch-fp32`` (no background int8 build moving the numbers). The soak
runs as on a Space: SPACE_ID set (one proxy trusted) and every client's address in
X-Forwarded-For, with ``ANIMEGAN_QUEUE_SIZE=64`` (40 clients at once are not an attack)
and ``ANIMEGAN_CACHE_MINUTES=1``. FORWARDED_ALLOW_IPS='' everywhere: uvicorn treats this
machine's 127.0.0.1 connections as visitors, not as a local proxy.
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
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from app_helpers import AppServer, abandoned_upload, app_env, chunked_upload, post, tiny_files  # noqa: E402
from clips import frame_bomb, long_sound_clip, photo_frames, write_clip  # noqa: E402

EXAMPLES = ROOT / "examples"
BUSY_RETRIES, BUSY_WAIT = 5, 10.0  # soak: a good client told "busy" tries again this often, this long after
STYLE = "face_paint_512_v2"


# -- measuring ------------------------------------------------------------------------------------
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


def entries(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def disk(folder: Path) -> tuple[int, int]:
    """(bytes of the files, number of files and folders) under ``folder``."""
    size = count = 0
    for path in folder.rglob("*"):
        count += 1
        try:
            if path.is_file() and not path.is_symlink():
                size += path.stat().st_size
        except OSError:
            pass
    return size, count


# -- talking to the app ---------------------------------------------------------------------------
def call(url: str, api: str, data: list, timeout: float = 300, headers: dict | None = None) -> tuple[bool, str, list]:
    """The /gradio_api/call route as an API client uses it: (succeeded, what came back, data)."""
    status, text = post(f"{url}/gradio_api/call/{api}", json.dumps({"data": data}).encode(), timeout, headers)
    if status != 200:
        return False, f"HTTP {status}: {text[:200]}", []
    event = json.loads(text)["event_id"]
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    conn.request("GET", f"/gradio_api/call/{api}/{event}")
    body = conn.getresponse().read().decode(errors="replace")
    conn.close()
    ok = "event: complete" in body
    out = []
    if ok:
        try:
            out = json.loads(body.rsplit("data:", 1)[1])
        except (ValueError, IndexError):
            pass
    return ok, body[-300:], out


def upload(url: str, path: Path, headers: dict | None = None) -> dict:
    import httpx

    with open(path, "rb") as f:
        r = httpx.post(f"{url}/gradio_api/upload", files={"files": (path.name, f)}, timeout=300, headers=headers)
    if r.status_code != 200:
        raise RuntimeError(f"upload refused: HTTP {r.status_code}")
    return {"path": r.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def fetch(url: str, filedata: dict) -> bytes:
    """Download a result as a browser does (raises on a response cut short)."""
    import httpx

    link = filedata.get("url") or f"{url}/gradio_api/file={filedata['path']}"
    r = httpx.get(link, timeout=60)
    r.raise_for_status()
    return r.content


def whole_png(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
        return img.width > 0
    except Exception:
        return False


def data_url(png: bytes) -> dict:
    return {"url": "data:image/png;base64," + base64.b64encode(png).decode(), "meta": {"_type": "gradio.FileData"}}


def png_bytes(img: Image.Image, level: int = 6) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", compress_level=level)
    return buf.getvalue()


def many_frames_gif(path: Path, frames: int, side: int = 64) -> Path:
    """A GIF of ``frames`` one-pixel frames on a ``side`` x ``side`` screen, written byte by
    byte (23 bytes a frame: 4 million frames are 92 MB)."""
    head = b"GIF89a" + side.to_bytes(2, "little") * 2 + b"\x80\x00\x00" + b"\x00\x00\x00\xff\xff\xff"
    frame = (b"\x21\xf9\x04\x00\x00\x00\x00\x00"  # graphic control extension
             + b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00"  # a 1 x 1 image at (0, 0)
             + b"\x02\x02\x44\x01\x00")  # LZW: clear, pixel 0, end
    with open(path, "wb") as f:
        f.write(head)
        chunk = frame * 100_000
        for _ in range(frames // 100_000):
            f.write(chunk)
        f.write(frame * (frames % 100_000) + b"\x3b")
    return path


class Files:
    """The attack and soak files, made once."""

    def __init__(self, folder: Path, quick: bool = False) -> None:
        self.folder = folder
        self.quick = quick
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
        self.frame = folder / "frame.png"
        Image.open(EXAMPLES / "astronaut.png").convert("RGB").resize((320, 240)).save(self.frame)
        self.frame640 = folder / "frame640.png"  # stylized at 512 x 384 when asked for 512 px
        Image.open(EXAMPLES / "astronaut.png").convert("RGB").resize((640, 480)).save(self.frame640)
        self.clip = write_clip(folder / "short.mp4", photo_frames((160, 120), 20, 10), 10, audio_seconds=2.0)
        # Opus is decoded (only AAC is copied as it is): an hour of it is work, 6 hours are 3 MB
        self.long_sound = long_sound_clip(folder / "one_frame.mp4", minutes=10 if quick else 360, codec="libopus")
        self.gif = many_frames_gif(folder / "frames.gif", 100_000 if quick else 4_000_000)
        self.clip30 = None if quick else write_clip(folder / "thirty.mp4", photo_frames((320, 240), 300, 10), 10,
                                                    audio_seconds=30.0)


def start_app(tree: Path, weights: Path, home: Path, **env: str) -> AppServer:
    """The app of ``tree``, not yet started: use it as ``with start_app(...) as server`` (which starts
    it; starting it here too ran a second app.py on the same port, measured in place of the first,
    and left the first one running)."""
    extra = dict(ANIMEGAN_BACKEND="torch-fp32", FORWARDED_ALLOW_IPS="", SPACE_ID="")
    extra.update(env)
    environment = app_env(weights, home, **extra)
    environment["PYTHONPATH"] = str(tree)
    return AppServer(environment, home / "app.log", cwd=tree)  # started once, by ``with``


def timed(pid: int, run) -> dict:
    reset_peak(pid)
    _, peak0 = rss_mb(pid)
    start = time.perf_counter()
    try:
        out = run()
    except Exception as exc:  # a refused upload, a dropped connection
        out = {"accepted": False, "answer": f"{type(exc).__name__}: {exc}"}
    out["seconds"] = round(time.perf_counter() - start, 2)
    _, peak1 = rss_mb(pid)
    out["peak_growth_mb"] = round(peak1 - peak0)
    if "answer" in out:
        out["answer"] = str(out["answer"]).replace("\n", " ")[-160:]
    return out


def _answered(said: tuple) -> dict:
    ok, text, _ = said
    return {"accepted": ok, "answer": text}


# -- the attacks ----------------------------------------------------------------------------------
def attacks_a(server: AppServer, files: Files) -> list[dict]:
    """Issue 11's attacks and most of issue 19's, on one server (defaults, a 20 s job limit)."""
    url, pid = server.url, server.proc.pid
    folder = Path(server.env["GRADIO_TEMP_DIR"])
    for photo in files.photos[:2]:  # warm-up
        for mode in ("off", "portrait"):
            call(url, "stylize", [upload(url, photo), STYLE, mode, ""])
    rows = []

    def row(name: str, run) -> None:
        rows.append({"attack": name, **timed(pid, run)})
        print(json.dumps(rows[-1]), flush=True)

    row("11: 27 MB PNG as a 36 MB data: URL (/stylize)",
        lambda: _answered(call(url, "stylize", [files.big_data_url, STYLE, "off", ""])))
    row("11: 144 MP PNG to /stylize_frame",
        lambda: _answered(call(url, "stylize_frame", [upload(url, files.huge_png), STYLE, 128, False, False])))
    row("11: 6300 x 6300 live frame, face crop (/stylize_frame)",
        lambda: _answered(call(url, "stylize_frame", [upload(url, files.live_6300), STYLE, 128, True, False])))
    row("11: 3000-frame MP4 in 0.03 s (/stylize_video)",
        lambda: _answered(call(url, "stylize_video", [upload(url, files.bomb), STYLE, 256, False], timeout=900)))
    row(f"19.5: one video frame + {round(_sound_minutes(files.long_sound))} min of silent Opus sound "
        "(MP4) to /stylize_video, 20 s job limit",
        lambda: _answered(call(url, "stylize_video", [upload(url, files.long_sound), STYLE, 256, False], timeout=900)))
    gif_mb = files.gif.stat().st_size / 1e6

    def gif() -> dict:
        out = _answered(call(url, "stylize", [upload(url, files.gif), STYLE, "off", ""], timeout=900))
        out["file_mb"] = round(gif_mb)
        return out

    row(f"19.5: {gif_mb:.0f} MB GIF of one-pixel frames (/stylize)", gif)

    def left_after(send) -> dict:
        before = entries(folder)
        status = send()
        time.sleep(5)
        new = sorted(entries(folder) - before)
        size = sum((folder / n).stat().st_size for n in new if (folder / n).is_file())
        return {"accepted": status == 200, "answer": f"HTTP {status}", "left_mb": round(size / 1e6, 1),
                "left_entries": len(new), "left": new[:3]}

    row("19.4: chunked upload past the 100 MB limit", lambda: left_after(lambda: chunked_upload(url, 101)))
    row("19.4: 30 of 60 MB uploaded, then the client walks away",
        lambda: left_after(lambda: abandoned_upload(url, 60, 30) or 0))

    def identical() -> dict:
        sent = upload(url, files.photos[4])
        broken, empty, done = [0], [0], [0]

        refused = [0]

        def client(i):
            for _ in range(8):  # each client a visitor of its own, as the Space's proxy reports it
                ok, text, out = call(url, "stylize", [sent, STYLE, "off", ""],
                                     headers={"X-Forwarded-For": f"198.51.100.{i + 1}"})
                if not ok:
                    refused[0] += 1
                    continue
                try:
                    data = fetch(url, out[0])
                except Exception:
                    broken[0] += 1
                    continue
                done[0] += 1
                if not data:
                    empty[0] += 1
                elif not whole_png(data):
                    broken[0] += 1

        with ThreadPoolExecutor(12) as pool:
            list(pool.map(client, range(12)))
        return {"accepted": True, "answer": f"{done[0]} downloads", "broken_downloads": broken[0],
                "empty_pngs": empty[0], "refused": refused[0]}

    row("19.6: 12 clients x 8 requests for the same photo, every result downloaded", identical)

    def tiny() -> dict:
        before = disk(folder)
        status = tiny_files(url, 1000)
        return {"accepted": status == 200, "answer": f"HTTP {status}",
                "entries_added": disk(folder)[1] - before[1]}

    row("19.4: 1000 tiny files in one upload request", tiny)
    return rows


def _sound_minutes(path: Path) -> float:
    import av

    with av.open(str(path)) as c:
        return (c.duration or 0) / 60e6


_SESSIONS_SCRIPT = r"""
import gc, json, os, sys, time, tracemalloc
from pathlib import Path
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
from gradio_client import Client, handle_file
from animegan import Stylizer
from animegan import app as ui
from animegan.app.photo import App
from animegan.settings import Settings
from animegan.steady import Stabilizer

weights, frame, port, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
settings = Settings(backend="torch-fp32")
demo = ui.build(app=App(Stylizer(settings=settings, weights_file=weights), settings=settings), check_weights=False)
ui.launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
url = f"http://127.0.0.1:{port}"


def one(steady=True):
    client = Client(url, verbose=False, download_files=False)
    return "1 shown" in client.predict(handle_file(frame), "face_paint_512_v2", 512, False, steady,
                                       api_name="/stylize_frame")[1]


def held():
    gc.collect()
    return sum(isinstance(o, Stabilizer) for o in gc.get_objects()), tracemalloc.get_traced_memory()[0] / 1e6


one()
time.sleep(4)
one(steady=False)
tracemalloc.start()
base = held()
start = time.perf_counter()
shown = sum(one() for _ in range(count))
seconds = time.perf_counter() - start
during = held()
time.sleep(4)  # every session is over: 3 s without a frame
one(steady=False)
after = held()
print(json.dumps({"frames_shown": shown, "seconds": round(seconds, 1),
                  "steady_sessions_held_after_sessions": during[0] - base[0],
                  "traced_mb_held_after_sessions": round(during[1] - base[1], 1),
                  "steady_sessions_held_once_over": after[0] - base[0],
                  "traced_mb_held_once_over": round(after[1] - base[1], 1)}))
demo.close()
"""


def attack_sessions(tree: Path, weights: Path, home: Path, files: Files) -> dict:
    """19.3: sessions that send one Steady frame at 512 px each and leave. Measured inside
    the server's process (the app built and launched there, driven over HTTP): how many
    sessions' Steady state is still held and the memory Python's allocations hold
    (tracemalloc: numpy arrays included), after the sessions and once they are over. RSS
    says little here: freed heap is reused and trimmed at the allocator's own pace."""
    from app_helpers import free_port

    count = 20 if files.quick else 200
    env = dict(os.environ, PYTHONPATH=str(tree), HF_HUB_OFFLINE="1", ANIMEGAN_WEIGHTS_DIR=str(weights),
               HF_HOME=str(home / "hf"), GRADIO_TEMP_DIR=str(home / "gradio"))
    home.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-c", _SESSIONS_SCRIPT, str(weights / f"{STYLE}.pt"),
                           str(files.frame640), str(free_port()), str(count)],
                          env=env, capture_output=True, text=True, timeout=3600, cwd=home)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    row = {"attack": f"19.3: {count} sessions, one Steady frame each at 512 px, then gone",
           **(json.loads(lines[-1]) if lines else {"error": done.stderr[-500:]})}
    print(json.dumps(row), flush=True)
    return row


def attack_forwarded(tree: Path, weights: Path, home: Path, files: Files) -> dict:
    """19.7: a visitor whose address has used its live time sends a new X-Forwarded-For."""
    import gradio_client

    with start_app(tree, weights, home, ANIMEGAN_LIVE_TIME_LIMIT="1") as server:
        frame = gradio_client.handle_file(str(files.frame))
        used = False
        for _ in range(40):
            client = gradio_client.Client(server.url, verbose=False, download_files=False)
            for _ in range(12):
                try:
                    client.predict(frame, STYLE, 128, False, False, api_name="/stylize_frame")
                except Exception as exc:
                    used = "used for 4 s" in str(exc)
                    break
                time.sleep(0.2)
            if used:
                break
        spoof = gradio_client.Client(server.url, verbose=False, download_files=False,
                                     headers={"X-Forwarded-For": "203.0.113.7"})
        try:
            spoof.predict(frame, STYLE, 128, False, False, api_name="/stylize_frame")
            ok, said = True, "served: a fresh allowance"
        except Exception as exc:
            ok, said = False, str(exc)
    row = {"attack": "19.7: X-Forwarded-For: 203.0.113.7 after the address's live time is used (no proxy)",
           "address_used_up": used, "accepted": ok, "answer": said[-160:]}
    print(json.dumps(row), flush=True)
    return row


def attack_lockout(tree: Path, weights: Path, home: Path, files: Files) -> dict:
    """19.2: one address queues 17 clips of 30 s (the queue holds 16), then a photo visitor."""
    with start_app(tree, weights, home, SPACE_ID="local/animegan") as server:
        url = server.url
        sent = upload(url, files.clip30)
        answers = []
        for _ in range(17):
            status, text = post(f"{url}/gradio_api/call/stylize_video",
                                json.dumps({"data": [sent, STYLE, 320, False]}).encode(),
                                headers={"X-Forwarded-For": "198.51.100.1"})
            answers.append(status)
        start = time.perf_counter()
        ok, said, _ = call(url, "stylize", [upload(url, files.photos[0]), STYLE, "off", ""],
                           headers={"X-Forwarded-For": "198.51.100.99"})
        seconds = time.perf_counter() - start
    row = {"attack": "19.2: 17 clips of 30 s from one address, then one photo from another visitor",
           "clips_taken": answers.count(200), "clips_refused": answers.count(503), "photo_answered": ok,
           "photo_seconds": round(seconds, 1), "answer": said.replace("\n", " ")[-160:]}
    print(json.dumps(row), flush=True)
    return row


def cli_attacks(tree: Path, weights: Path, home: Path) -> list[dict]:
    env = dict(os.environ, PYTHONPATH=str(tree), HF_HUB_OFFLINE="1", ANIMEGAN_WEIGHTS_DIR=str(weights),
               ANIMEGAN_BACKEND="torch-fp32", HF_HOME=str(home / "hf"))
    folder = home / "photos"
    folder.mkdir(parents=True)
    for name in ("astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "camera.png", "chelsea.png"):
        img = Image.open(EXAMPLES / name).convert("RGB")
        img.thumbnail((64, 64))
        img.save(folder / (Path(name).stem + (".jpg" if (folder / f"{Path(name).stem}.png").exists() else ".png")))
    counts = [sum(1 for p in folder.iterdir() if p.name != "animegan-manifest.jsonl")]
    for _ in range(3):
        subprocess.run([sys.executable, "-m", "animegan", "batch", str(folder), str(folder), "--max-side", "64"],
                       env=env, capture_output=True, timeout=600, cwd=home)  # not the repository: -m looks there first
        counts.append(sum(1 for p in folder.iterdir() if p.name != "animegan-manifest.jsonl"))
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Foo", ["x"], ["y"], domain="com.example")], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, "h", "w"])])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    model.ir_version = 8
    bad = home / "bad.onnx"
    bad.write_bytes(model.SerializeToString())
    done = subprocess.run([sys.executable, "-m", "animegan", str(folder / "camera.png"), "-o", str(home / "o"),
                           "--weights", str(bad)], env=env, capture_output=True, text=True, timeout=600, cwd=home)
    rows = [{"attack": "19.8: animegan batch SRC SRC, three runs (files in SRC before, after each run)",
             "files": counts},
            {"attack": "19.8: animegan --weights bad.onnx (a custom op OpenVINO cannot convert)",
             "traceback": "Traceback" in done.stderr, "answer": done.stderr.strip().splitlines()[-1][:160]}]
    for r in rows:
        print(json.dumps(r), flush=True)
    return rows


# -- the soak -------------------------------------------------------------------------------------
def settle(server: AppServer, timeout: float = 180) -> None:
    """Wait until the app has made its style thumbnails (in the background after start; the
    page's gallery shows them, and Gradio keeps what the page shows for the app's life),
    then load the page once, as the first visitor would."""
    from animegan.styles import STYLES

    thumbnails = Path(server.env["HF_HOME"]) / "hub" / "animegan-artefacts" / "thumbnails"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and len(list(thumbnails.glob("*.png"))) < len(STYLES) + 1:
        time.sleep(1)
    for path in ("/", "/config"):
        urllib.request.urlopen(server.url + path, timeout=60).read()
    time.sleep(5)


def soak(server: AppServer, files: Files, clients: int = 40, per_client: int = 8, cache_wait: float = 420) -> dict:
    url, pid = server.url, server.proc.pid
    folder = Path(server.env["GRADIO_TEMP_DIR"])
    settle(server)
    disk_start, at_start = disk(folder), entries(folder)

    def address(i: int) -> dict:  # what a Space's proxy appends; some clients put a lie in front of it
        own = f"198.51.100.{i + 1}"
        return {"X-Forwarded-For": f"6.6.6.{i}, {own}" if i % 5 == 0 else own}

    expected: dict[tuple, bytes] = {}
    broken = []
    busy: list[str] = []  # good requests answered "busy, try again" (then tried again)

    def up(path: Path, headers: dict | None = None) -> dict:  # every request uploads its file, as the page does
        return upload(url, path, headers)

    def photo_request(rng, headers):
        photo, mode = rng.choice(files.photos), rng.choice(["off", "portrait"])
        ok, said, out = call(url, "stylize", [up(photo, headers), STYLE, mode, ""], headers=headers)
        if ok:
            try:
                data = fetch(url, out[0])
            except Exception as exc:
                broken.append(repr(exc))
                return ok, said
            want = expected.get((photo, mode))
            if not whole_png(data) or (want is not None and data != want):
                broken.append(f"{len(data)} bytes, not the result")
        return ok, said

    good = {
        "photo": photo_request,
        "live frame": lambda rng, h: call(url, "stylize_frame", [up(files.frame, h), STYLE, 128, rng.random() < 0.3,
                                                                 False], headers=h)[:2],
        "clip": lambda rng, h: call(url, "stylize_video", [up(files.clip, h), STYLE, 256, False], headers=h)[:2],
    }
    good_weights = {"photo": 6, "live frame": 3, "clip": 1}

    def done(said: tuple) -> tuple[bool, str]:  # a live frame dropped while another is drawn did no work
        ok, text = said[:2]
        return ok and "dropped (busy)" not in text, text

    def refused(status: int) -> tuple[bool, str]:
        return status == 200, f"HTTP {status}"

    bad = {
        "36 MB data: URL": lambda h: call(url, "stylize", [files.big_data_url, STYLE, "off", ""], headers=h)[:2],
        "144 MP PNG": lambda h: call(url, "stylize", [up(files.huge_png, h), STYLE, "off", ""], headers=h)[:2],
        "text as .png": lambda h: call(url, "stylize", [up(files.text, h), STYLE, "off", ""], headers=h)[:2],
        "unknown style": lambda h: call(url, "stylize", [up(files.photos[0], h), "no_such_style", "off", ""],
                                        headers=h)[:2],
        "40 MP live frame": lambda h: done(call(url, "stylize_frame", [up(files.live_6300, h), STYLE, 128, True,
                                                                       False], headers=h)),
        "frame bomb": lambda h: call(url, "stylize_video", [up(files.bomb, h), STYLE, 256, False], headers=h)[:2],
        "1 frame + long sound": lambda h: call(url, "stylize_video", [up(files.long_sound, h), STYLE, 256, False],
                                               headers=h)[:2],
        "chunked upload past 100 MB": lambda h: refused(chunked_upload(url, 101, h)),
        "upload abandoned half way": lambda h: (abandoned_upload(url, 60, 30, h), (False, "walked away"))[1],
    }

    # warm-up: every good request once (the expected picture of each photo), each bad one once,
    # then one round at full concurrency
    for photo in files.photos:
        for mode in ("off", "portrait"):
            ok, said, out = call(url, "stylize", [up(photo), STYLE, mode, ""])
            assert ok, said
            expected[(photo, mode)] = fetch(url, out[0])
    for name, run in good.items():
        ok, said = run(random.Random(0), address(0))
        assert ok, (name, said)
    for run in bad.values():
        run(address(1))
    kinds = [k for k, w in good_weights.items() for _ in range(w)]

    def one(i: int, rng: random.Random) -> tuple[str, str, bool, str]:
        headers = address(i)
        if i % 4 == 3:
            name = rng.choice(sorted(bad))
            try:
                ok, said = bad[name](headers)
            except Exception as exc:
                ok, said = False, f"{type(exc).__name__}: {exc}"
            return "bad", name, ok, said
        name = rng.choice(kinds)
        for attempt in range(BUSY_RETRIES + 1):
            try:
                ok, said = good[name](rng, headers)
            except Exception as exc:
                ok, said = False, f"{type(exc).__name__}: {exc}"
            # "busy, try again" is the app's answer to a full line: a person tries again a little later
            if ok or not said.startswith("HTTP 503") or attempt == BUSY_RETRIES:
                break
            busy.append(name)
            time.sleep(BUSY_WAIT)
        return "good", name, ok, said

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda i: one(i, random.Random(1000 + i)), range(clients)))
    time.sleep(2)
    warm, _ = rss_mb(pid)
    broken.clear()
    reset_peak(pid)

    def client(i: int) -> list[tuple[str, str, bool, str]]:
        rng = random.Random(i)
        return [one(i, rng) for _ in range(per_client)]

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = [r for chunk in pool.map(client, range(clients)) for r in chunk]
    seconds = time.perf_counter() - start
    time.sleep(5)  # the last frames' sessions end, the last requests' buffers are given back
    end, peak = rss_mb(pid)
    disk_end = disk(folder)
    deadline = time.monotonic() + cache_wait
    while time.monotonic() < deadline and disk(folder) != disk_start:
        time.sleep(10)
    disk_after = disk(folder)
    waited = round(cache_wait - max(0.0, deadline - time.monotonic()))
    good_runs = [r for r in results if r[0] == "good"]
    bad_runs = [r for r in results if r[0] == "bad"]
    summary = {
        "clients": clients, "requests": len(results), "good": len(good_runs),
        "good_by_kind": {k: sum(r[1] == k for r in good_runs) for k in good},
        "good_failed": sum(not r[2] for r in good_runs),
        "good_busy_then_retried": {k: busy.count(k) for k in good},
        "good_failed_by_kind": {k: sum(r[1] == k and not r[2] for r in good_runs) for k in good},
        "bad": len(bad_runs),
        "bad_accepted": sum(r[2] for r in bad_runs), "broken_downloads": len(broken),
        "seconds": round(seconds, 1), "rss_after_warmup_mb": round(warm), "rss_end_mb": round(end),
        "rss_change": f"{(end - warm) / warm:+.1%}", "peak_mb": round(peak),
        "disk_start": {"mb": round(disk_start[0] / 1e6, 2), "entries": disk_start[1]},
        "disk_after_soak": {"mb": round(disk_end[0] / 1e6, 2), "entries": disk_end[1]},
        "disk_after_cache_time": {"mb": round(disk_after[0] / 1e6, 2), "entries": disk_after[1],
                                  "waited_s": waited},
        "server_alive": server.alive(),
    }
    failed = [f"{r[1]}: {r[3][-200:]}" for r in good_runs if not r[2]]
    if failed:
        summary["first_good_failures"] = failed[:3]
    accepted = [r[1] for r in bad_runs if r[2]]
    if accepted:
        summary["bad_accepted_kinds"] = sorted(set(accepted))
    if broken:
        summary["first_broken"] = broken[:3]
    extra = sorted(entries(folder) - at_start)
    if extra:
        summary["disk_extra_entries"] = extra[:5]
    return summary


def machine() -> dict:
    info = {}
    for line in open("/proc/cpuinfo"):
        if ":" in line:
            key, value = (s.strip() for s in line.split(":", 1))
            info.setdefault(key, value)
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "fma", "avx_vnni")
    flags = info.get("flags", "").split()
    return {"cpu": info.get("model name", platform.processor()), "cpus": os.cpu_count(),
            "isa": [f for f in wanted if f in flags], "load_at_start": os.getloadavg()[0],
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "python": platform.python_version()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tree", type=Path, default=ROOT, help="the source tree whose app.py runs (default: this one)")
    p.add_argument("--only", choices=["attacks", "sessions", "forwarded", "lockout", "cli", "soak"], action="append",
                   help="run only these parts (repeatable; default: all)")
    p.add_argument("--clients", type=int, default=40)
    p.add_argument("--per-client", type=int, default=8)
    p.add_argument("--quick", action="store_true", help="smaller attack files (a check of the script, not figures)")
    p.add_argument("--json", type=Path, help="also write everything to this file")
    p.add_argument("--keep", action="store_true", help="keep the working folder (the servers' files) to look at")
    args = p.parse_args()
    parts = set(args.only or ["attacks", "sessions", "forwarded", "lockout", "cli", "soak"])
    home = Path(tempfile.mkdtemp(prefix="animegan-soak-"))
    weights = home / "weights"
    weights.mkdir()
    from animegan.styles import STYLES

    for name in STYLES:
        shutil.copy(ROOT / "tests" / "data" / "proxy_toon.pt", weights / f"{name}.pt")
    report = {"machine": machine(), "tree": str(args.tree),
              "command": " ".join([Path(sys.executable).name, *sys.argv])}
    print(json.dumps(report), flush=True)
    files = Files(home, quick=args.quick)
    try:
        if "attacks" in parts:
            with start_app(args.tree, weights, home / "a", ANIMEGAN_VIDEO_MAX_JOB_SECONDS="20",
                           SPACE_ID="local/animegan") as server:
                folder = Path(server.env["GRADIO_TEMP_DIR"])
                start = disk(folder)
                report["attacks"] = attacks_a(server, files)
            left = disk(folder)  # the server has stopped
            report["left_after_shutdown"] = {"mb": round((left[0] - start[0]) / 1e6, 1),
                                             "entries": left[1] - start[1]}
            print(json.dumps({"left_after_shutdown": report["left_after_shutdown"]}), flush=True)
        if "sessions" in parts:
            report["sessions"] = attack_sessions(args.tree, weights, home / "d", files)
        if "forwarded" in parts:
            report["forwarded"] = attack_forwarded(args.tree, weights, home / "b", files)
        if "lockout" in parts and files.clip30 is not None:
            report["lockout"] = attack_lockout(args.tree, weights, home / "c", files)
        if "cli" in parts:
            report["cli"] = cli_attacks(args.tree, weights, home / "cli")
        if "soak" in parts:
            with start_app(args.tree, weights, home / "s", SPACE_ID="local/animegan", ANIMEGAN_QUEUE_SIZE="64",
                           ANIMEGAN_CACHE_MINUTES="1") as server:
                report["soak"] = soak(server, files, args.clients, args.per_client)
            print(json.dumps({"soak": report["soak"]}), flush=True)
    finally:
        if args.keep:
            print(f"kept: {home}", flush=True)
        else:
            shutil.rmtree(home, ignore_errors=True)
        if args.json:
            args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
