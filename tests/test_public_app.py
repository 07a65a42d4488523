"""A public Space, round 3 (issue 19): fair to every visitor, nothing left behind, every
limit on every way in. Each test runs the real app (``python app.py``) with the proxy
weights and attacks it as a hostile visitor would, then checks the bound that holds:
refused, capped, freed or answered (never a wall-clock time; the times are in
benchmarks/bench_soak.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from app_helpers import abandoned_upload, chunked_upload, post, tiny_files
from clips import photo_frames, write_clip
from conftest import photo
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

STYLE = "face_paint_512_v2"


def upload(url: str, path: Path) -> dict:
    """A file uploaded as the page uploads it: the FileData to pass to an endpoint."""
    import httpx

    with open(path, "rb") as f:
        r = httpx.post(f"{url}/gradio_api/upload", files={"files": (path.name, f)}, timeout=120)
    r.raise_for_status()
    return {"path": r.json()[0], "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def join(url: str, api: str, data: list, headers: dict | None = None) -> tuple[int, str]:
    """Ask the queue to take one job through /call (what any HTTP client can do): the
    HTTP status (200 taken, 503 refused) and the event id or the refusal's text."""
    status, text = post(f"{url}/gradio_api/call/{api}", json.dumps({"data": data}).encode(), headers=headers)
    if status not in (200, 503):
        return status, text
    answer = json.loads(text)
    return status, answer.get("event_id") or answer.get("detail") or text


def outcome(url: str, api: str, event: str, timeout: float = 300) -> str:
    """The end of a job's event stream ("complete ..." or "error ...")."""
    import httpx

    with httpx.stream("GET", f"{url}/gradio_api/call/{api}/{event}", timeout=timeout) as r:
        text = "".join(r.iter_text())
    last = [line for line in text.splitlines() if line.startswith("event:")][-1]
    return last.removeprefix("event:").strip() + " " + text.rsplit("data:", 1)[-1].strip()


# -- 2. one visitor cannot lock everyone out --------------------------------------------------------
@pytest.mark.slow  # a real server (or an int8 build): the whole suite's tier
def test_one_visitors_clips_neither_fill_the_queue_nor_turn_photos_away(weights_dir, tmp_path):
    """One address queues more clips than the whole queue holds (queue size 4): before, the
    shared queue was full and every photo visitor was told "Queue is full"; now clips have
    their own lane, the address its share of it, and the photo is answered."""
    from servers import live_app

    clip = write_clip(tmp_path / "clip.mp4", photo_frames((320, 240), 60, 10), fps=10)
    with live_app(weights_dir, tmp_path / "app.log", ANIMEGAN_QUEUE_SIZE="4") as url:
        sent = upload(url, clip)
        answers = [join(url, "stylize_video", [sent, STYLE, 320, False]) for _ in range(5)]
        status, event = join(url, "stylize", [upload(url, photo("camera.png")), STYLE, "off", ""])
        assert status == 200, event  # a photo is taken while the clips are still queued ...
        assert outcome(url, "stylize", event).startswith("complete")  # ... and answered
        taken = [event for status, event in answers if status == 200]
        refused = [said for status, said in answers if status == 503]
        assert len(taken) == 2 and len(refused) == 3, answers  # the address's share of the clip lane
        assert all("your share while others wait too" in said for said in refused), refused


def _in_process_app(stylizer, monkeypatch, tmp_path, **settings):
    """The app built and served in this process (so the test can hold the inference lock
    and call Gradio's own cleanup); returns (demo, url)."""
    from app_helpers import free_port

    from animegan import app as ui
    from animegan.app.photo import App
    from animegan.settings import Settings

    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    demo = ui.build(app=App(stylizer, settings=Settings(backend="torch-fp32", **settings)), check_weights=False)
    port = free_port()
    ui.launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return demo, f"http://127.0.0.1:{port}"


def test_an_upload_stays_while_its_job_waits_in_line(stylizer, monkeypatch, tmp_path):
    """A clip waiting behind another for longer than the cache time: before, Gradio's cache
    cleanup deleted its upload while it waited and the job failed ("No such file"); now
    the files of queued jobs are pinned until their job has run."""
    from gradio.route_utils import delete_files_created_by_app

    from animegan import runtime

    first = write_clip(tmp_path / "first.mp4", photo_frames((96, 64), 4, 10), fps=10)
    second = write_clip(tmp_path / "second.mp4", photo_frames((64, 96), 4, 10), fps=10)
    demo, url = _in_process_app(stylizer, monkeypatch, tmp_path)
    try:
        queue = demo._queue
        with runtime.get().inference():  # the cores are busy: the first clip runs and waits at its first frame
            status, running = join(url, "stylize_video", [upload(url, first), STYLE, 256, False])
            assert status == 200, running
            assert _until(lambda: any(job for job in queue.active_jobs), 30)
            sent = upload(url, second)
            status, waiting = join(url, "stylize_video", [sent, STYLE, 256, False])
            assert status == 200, waiting
            assert _until(lambda: len(queue.event_queue_per_concurrency_id["video"].queue) == 1, 30)
            delete_files_created_by_app(demo, age=0)  # what Gradio's timer does once the cache time has passed
            assert Path(sent["path"]).is_file()
        assert outcome(url, "stylize_video", running).startswith("complete")
        assert outcome(url, "stylize_video", waiting).startswith("complete")
        demo.animegan_files.sweep()  # the app's round: the jobs are over, their files are Gradio's to delete
        delete_files_created_by_app(demo, age=0)
        assert not Path(sent["path"]).exists()
    finally:
        demo.close()


def test_a_clip_that_would_be_refused_never_takes_a_place_in_line(stylizer, monkeypatch, tmp_path):
    """Before, a clip was checked only when its turn came, so refused clips (a frame
    bomb, one frame with hours of sound) held places in the clips' line meanwhile; now
    the checks run as the job asks to join (Gradio's validator) and the answer says why."""
    from clips import frame_bomb, long_sound_clip

    from animegan import runtime

    bomb = frame_bomb(tmp_path / "bomb.mp4")
    long_sound = long_sound_clip(tmp_path / "one_frame.mp4", minutes=10, codec="libopus")
    good = write_clip(tmp_path / "good.mp4", photo_frames((96, 64), 4, 10), fps=10)
    demo, url = _in_process_app(stylizer, monkeypatch, tmp_path, video_max_seconds=5.0)
    try:
        lane = demo._queue.event_queue_per_concurrency_id
        with runtime.get().inference():  # nothing runs meanwhile: whatever is taken waits in line
            for clip, said in ((bomb, "frames"), (long_sound, "600.0 s long; the limit here is 5 s")):
                status, answer = join(url, "stylize_video", [upload(url, clip), STYLE, 256, False])
                assert status == 422 and said in answer, (status, answer)
            assert len(getattr(lane.get("video"), "queue", ())) == 0 and not any(demo._queue.active_jobs)
            status, event = join(url, "stylize_video", [upload(url, good), STYLE, 256, False])
            assert status == 200, event
        assert outcome(url, "stylize_video", event).startswith("complete")
    finally:
        demo.close()


# -- 3. live sessions hold nothing once they are over ----------------------------------------------
def test_live_sessions_are_let_go_when_they_are_over_not_an_hour_later(stylizer, monkeypatch, tmp_path):
    """Sessions that each send one Steady frame and leave: before, Gradio kept each one's
    gr.State (its Stabilizer, a few MB) for an hour; now the engine holds them by session
    and lets them go once over (no frame for live.SESSION_GAP seconds)."""
    import gc

    from app_helpers import free_port

    from animegan import app as ui
    from animegan import live
    from animegan.app.photo import App
    from animegan.settings import Settings
    from animegan.steady import Stabilizer

    def steadies() -> int:
        gc.collect()
        return sum(isinstance(o, Stabilizer) for o in gc.get_objects())

    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    demo = ui.build(app=App(stylizer, settings=Settings(backend="torch-fp32")), check_weights=False)
    port = free_port()
    ui.launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    frame = tmp_path / "frame.png"
    Image.open(photo("astronaut.png")).convert("RGB").resize((160, 160)).save(frame)
    url = f"http://127.0.0.1:{port}"
    try:
        before = steadies()
        for _ in range(8):
            client = Client(url, verbose=False, download_files=False)
            for _ in range(20):  # a frame that meets a busy moment (the fast backend preparing) is dropped: send again
                _, status = client.predict(handle_file(str(frame)), STYLE, 128, False, True,
                                           api_name="/stylize_frame")
                if "1 shown" in status:
                    break
                time.sleep(0.5)
            assert "1 shown" in status
        time.sleep(live.SESSION_GAP + 0.5)  # every one of them is over
        Client(url, verbose=False, download_files=False).predict(handle_file(str(frame)), STYLE, 128, False, False,
                                                                 api_name="/stylize_frame")
        assert steadies() == before  # nothing of the eight is kept
    finally:
        demo.close()


# -- 4. broken uploads leave nothing on disk -------------------------------------------------------
def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def _until(check, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.2)
    return check()


@pytest.mark.slow  # a real server (or an int8 build): the whole suite's tier
def test_broken_uploads_leave_nothing_on_disk_and_nothing_survives_shutdown(weights_dir, tmp_path):
    """An upload refused at the size limit mid-stream, one its client walks away from half
    way, and a request of 1000 tiny files: before, the first two stayed on disk for good
    (100 MB and 31 MB, outside what any cleanup knew) and the third left 1000 folders
    after its files were deleted. Now the partial files are deleted when their request
    fails, and the upload folder holds at shutdown only what it held at start."""
    from app_helpers import AppServer, app_env

    home = tmp_path / "home"
    server = AppServer(app_env(weights_dir, home), tmp_path / "app.log").start()
    folder = home / "gradio"  # GRADIO_TEMP_DIR: uploads and results
    try:
        at_start = _files(folder)
        assert chunked_upload(server.url, 101) == 413
        assert _until(lambda: _files(folder) == at_start, 30), sorted(_files(folder) - at_start)[:5]
        abandoned_upload(server.url, 60, 30)
        assert _until(lambda: _files(folder) == at_start, 60), sorted(_files(folder) - at_start)[:5]
        assert tiny_files(server.url, 1000) == 200
        assert len(_files(folder) - at_start) == 2000  # a folder and a file each, until they expire
        assert server.alive()
        # an open page (its heartbeat never ends) while the server stops: Gradio's own
        # shutdown cleanup waits for it and never runs; the app's does the work
        visitor = Client(server.url, verbose=False, download_files=False)
        visitor.predict(handle_file(str(photo("camera.png"))), STYLE, "off", api_name="/stylize")
    finally:
        server.stop()
    assert server.proc.returncode is not None
    assert _files(folder) == at_start, sorted(_files(folder) - at_start)[:5]


def test_the_sweep_takes_only_what_gradio_left_behind(tmp_path):
    """Between the timer's rounds: a partial upload nobody has written to for ``stale``
    seconds and an empty content folder older than a minute go; a fresh one, a folder
    holding a file, and anything not named as Gradio names its files stay."""
    import os

    from animegan.app.files import AppFiles

    old = time.time() - 600
    (tmp_path / "tmpab12cd_e").write_bytes(b"half an upload")
    (tmp_path / "tmpfresh123").write_bytes(b"an upload arriving now")
    empty, full, fresh = (tmp_path / (c * 64) for c in "abc")
    for folder in (empty, full, fresh):
        folder.mkdir()
    (full / "photo.png").write_bytes(b"x")
    (tmp_path / "deep_links").mkdir()
    (tmp_path / "notes.txt").write_text("not Gradio's")
    for path in (tmp_path / "tmpab12cd_e", empty, full, tmp_path / "deep_links", tmp_path / "notes.txt"):
        os.utime(path, (old, old))
    removed = AppFiles(tmp_path).sweep()
    assert removed == {"partial_uploads": 1, "empty_folders": 1}
    assert _files(tmp_path) == {"tmpfresh123", "b" * 64, "b" * 64 + "/photo.png", "c" * 64, "deep_links",
                                "notes.txt"}
    AppFiles(tmp_path).sweep(final=True)  # at shutdown: every partial upload and empty content folder
    assert _files(tmp_path) == {"b" * 64, "b" * 64 + "/photo.png", "deep_links", "notes.txt"}


# -- 6. identical results download whole -----------------------------------------------------------
def _result(url: str, photo_data: dict) -> dict:
    status, event = join(url, "stylize", [photo_data, STYLE, "off", ""])
    assert status == 200, event
    said = outcome(url, "stylize", event)
    assert said.startswith("complete"), said
    return json.loads(said.split(" ", 1)[1])[0]


@pytest.mark.slow  # a real server (or an int8 build): the whole suite's tier
def test_identical_results_download_whole_while_others_ask_for_them(app_server):
    """Visitors asking for the same example photo at once (12 clients x 8 requests
    before): each result was written again under the same content-named file while
    others downloaded it, giving truncated downloads and empty PNGs. Every download must
    be the whole picture."""
    import io
    import threading

    import httpx

    url = app_server.url
    sent = upload(url, photo("camera.png"))
    first = _result(url, sent)
    link = first.get("url") or f"{url}/gradio_api/file={first['path']}"
    want = httpx.get(link, timeout=60).content
    assert Image.open(io.BytesIO(want)).size == (512, 512)
    stop, broken, downloads, results = threading.Event(), [], [0], []

    def ask(n: int) -> None:  # the same photo again: the same result, handed out again
        for _ in range(n):
            results.append(_result(url, sent))

    def download() -> None:
        with httpx.Client(timeout=60) as http:
            while not stop.is_set():
                try:
                    got = http.get(link).content
                except httpx.HTTPError as exc:  # a response cut short of its declared length
                    broken.append(repr(exc))
                    continue
                downloads[0] += 1
                if got != want:
                    broken.append(f"{len(got)} of {len(want)} bytes")

    readers = [threading.Thread(target=download) for _ in range(6)]
    writers = [threading.Thread(target=ask, args=(20,)) for _ in range(4)]
    for t in readers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in readers:
        t.join()
    assert len(results) == 80 and downloads[0] > 100
    assert not broken, f"{len(broken)} of {downloads[0]} downloads broken: {broken[:5]}"
    for result in results[:: 10]:  # and each visitor's own link gives the picture
        assert httpx.get(result.get("url") or f"{url}/gradio_api/file={result['path']}", timeout=60).content == want


# -- 7. X-Forwarded-For only from a proxy the app trusts ------------------------------------------
def _use_up_the_address(url: str, frame: Path) -> None:
    """Sessions from this address send frames until the address's live share is used."""
    for _ in range(40):
        client = Client(url, verbose=False, download_files=False)
        for _ in range(12):
            try:
                client.predict(handle_file(str(frame)), STYLE, 128, False, False, api_name="/stylize_frame")
            except AppError as exc:
                if "s from here in the last" in str(exc) and "used for 4 s" in str(exc):
                    return  # the address's own share (4 x 1 s), not a session's
                break  # this session's time is up: the next one
            time.sleep(0.2)
    raise AssertionError("the address's live share was never used up")


@pytest.mark.slow  # a real server (or an int8 build): the whole suite's tier
def test_a_forwarded_address_is_believed_only_from_a_trusted_proxy(weights_dir, tmp_path):
    """Outside a Space (no SPACE_ID, ANIMEGAN_TRUSTED_PROXIES unset) X-Forwarded-For is the
    visitor's own text: a visitor whose address has used its live time cannot get a fresh
    allowance by sending a new one. (FORWARDED_ALLOW_IPS='' tells uvicorn that this test's
    127.0.0.1 connection is a visitor, not a local proxy, as a remote connection would be.)"""
    from servers import live_app

    frame = tmp_path / "frame.png"
    Image.open(photo("astronaut.png")).convert("RGB").resize((160, 160)).save(frame)
    with live_app(weights_dir, tmp_path / "app.log", ANIMEGAN_LIVE_TIME_LIMIT="1", FORWARDED_ALLOW_IPS="",
                  SPACE_ID="") as url:
        _use_up_the_address(url, frame)
        spoofing = Client(url, verbose=False, download_files=False, headers={"X-Forwarded-For": "203.0.113.7"})
        with pytest.raises(AppError, match="used for 4 s from here"):
            spoofing.predict(handle_file(str(frame)), STYLE, 128, False, False, api_name="/stylize_frame")


def test_behind_trusted_proxies_the_address_is_the_one_the_nearest_proxy_wrote():
    """On a Space (SPACE_ID set) one proxy is trusted: the visitor is the last entry, which
    the proxy appended; what the visitor wrote itself is to the left of it and ignored."""
    from starlette.requests import Request

    from animegan.app.limits import Visitors
    from animegan.settings import Settings

    def request(peer: str, *forwarded: str) -> Request:
        headers = [(b"x-forwarded-for", value.encode()) for value in forwarded]
        return Request({"type": "http", "client": (peer, 5000), "headers": headers})

    space = Visitors.from_settings(Settings(), env={"SPACE_ID": "someone/animegan"})
    local = Visitors.from_settings(Settings(), env={})
    assert (space.proxies, local.proxies) == (1, 0)
    assert space.address(request("10.16.3.80", "6.6.6.6, 198.51.100.7")) == "198.51.100.7"
    assert space.address(request("10.16.3.80", "6.6.6.6", "198.51.100.7")) == "198.51.100.7"  # two header lines
    assert space.address(request("10.16.3.80")) == "10.16.3.80"  # no header: the connection
    assert local.address(request("192.0.2.4", "198.51.100.7")) == "192.0.2.4"
    two = Visitors.from_settings(Settings(trusted_proxies=2), env={"SPACE_ID": "x"})
    assert two.address(request("10.0.0.1", "6.6.6.6, 198.51.100.7, 10.0.0.9")) == "198.51.100.7"
    assert Visitors.from_settings(Settings(trusted_proxies=0), env={"SPACE_ID": "x"}).proxies == 0
