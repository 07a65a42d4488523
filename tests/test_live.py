"""The live webcam: the engine (library), the stream endpoint and the frame endpoint
through a real server, and the tab in headless Chromium with a fake camera."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, photo
from PIL import Image

from animegan import live
from animegan.faces import Square

CELLS = 12  # frames carry their number as a black cell in a white band along the top
SCREENSHOTS = ROOT / "screenshots"


def marked_frame(index: int, name: str = "astronaut.png", size: tuple[int, int] = (640, 480)) -> Image.Image:
    w, h = size
    img = np.array(Image.open(photo(name)).convert("RGB").resize(size, Image.Resampling.BILINEAR))
    band = h // 8
    img[:band] = 255
    cell = w // CELLS
    img[:band, index * cell:(index + 1) * cell] = 0
    return Image.fromarray(img)


def read_mark(img: Image.Image) -> int:
    """The number a (stylized) marked frame carries; the proxy keeps white light and black dark."""
    arr = np.asarray(img.convert("L"), dtype=np.float64)
    h, w = arr.shape
    band = arr[h // 40: h // 8 - h // 40]
    means = [band[:, round(i * w / CELLS) + 2: round((i + 1) * w / CELLS) - 2].mean() for i in range(CELLS)]
    darkest = int(np.argmin(means))
    assert means[darkest] < 0.5 * np.median(means), means
    return darkest


@pytest.fixture
def engine(stylizer):
    return live.LiveStylizer(stylizer)


# -- the engine ------------------------------------------------------------------------------
def test_frames_come_back_small_and_marked(engine):
    session = None
    for i, side in enumerate((None, 128, 10_000)):
        session, result = engine.process(session, marked_frame(i), side=side)
        assert result.processed
        assert result.image.size == {None: (256, 192), 128: (128, 96), 10_000: (512, 384)}[side]
        assert read_mark(result.image) == i
        r, _, b = np.asarray(result.image).reshape(-1, 3).mean(0)
        assert r > b  # the proxy's orange tint: RGB order kept
        if i == 0:  # one frame is no rate yet: not "0.0 fps" for the first seconds
            assert result.status.startswith("measuring the frame rate ·") and "0.0 fps" not in result.status
    assert session.processed == 3 and session.dropped == 0
    assert session.last_seen == session.done_times[-1]  # a slow frame does not look like a restart
    assert "fps" in result.status and "ms per frame" in result.status and "512 x 384" in result.status


def test_busy_frames_are_dropped_at_once_not_queued(engine, stylizer):
    session, first = engine.process(None, marked_frame(1))
    # a photo being stylized holds the model: a live frame does not wait for it
    with stylizer.runtime.lock:
        start = time.perf_counter()
        session, result = engine.process(session, marked_frame(2))
        assert time.perf_counter() - start < 0.1
    assert not result.processed and result.image is first.image and session.dropped == 1

    # another visitor's frame in progress: dropped at once as well
    other = {}
    worker = threading.Thread(target=lambda: other.update(r=engine.process(None, marked_frame(3), side=512)))
    worker.start()
    deadline = time.monotonic() + 10
    while not engine._busy.locked() and worker.is_alive() and time.monotonic() < deadline:
        time.sleep(0.001)
    start = time.perf_counter()
    session, result = engine.process(session, marked_frame(4))
    waited = time.perf_counter() - start
    worker.join()
    assert other["r"][1].processed and read_mark(other["r"][1].image) == 3
    assert not result.processed and waited < 0.1 and session.dropped == 2
    session, result = engine.process(session, marked_frame(5))  # free again
    assert result.processed and read_mark(result.image) == 5


def test_each_session_has_a_time_limit(stylizer):
    engine = live.LiveStylizer(stylizer, time_limit=0.5)
    session, result = engine.process(None, marked_frame(0), side=128)
    assert result.processed and "s left" in result.status
    time.sleep(0.6)
    with pytest.raises(live.LiveLimitReached, match="stops after 0.5 s"):
        engine.process(session, marked_frame(1), side=128)


def test_the_face_square_follows_smoothly():
    smoother, unsmoothed = live.BoxSmoother(), live.BoxSmoother(alpha=1.0)
    rng = np.random.default_rng(0)
    squares, raw = [], []
    for _ in range(40):  # a face that stays put, with the detector's usual jitter of a few px
        box = tuple(np.array([200, 100, 300, 220]) + rng.normal(0, 4, 4))
        for s, found in ((smoother, squares), (unsmoothed, raw)):
            s.update(box)
            sq = s.square((640, 480))
            found.append(np.array([sq.left, sq.top, sq.side]))
    wobble = np.std(squares[10:], axis=0)
    assert (wobble < 0.6 * np.std(raw[10:], axis=0)).all()  # much steadier than the raw boxes
    left, top, side = squares[-1]
    assert side == pytest.approx(240, abs=15) and left <= 200 and left + side >= 300 and top <= 100
    smoother.update((480, 300, 560, 400))  # someone else, far away: jump there at once
    sq = smoother.square((640, 480))
    left, side = sq.left, sq.side
    assert left <= 480 and left + side >= 560 and side == pytest.approx(200, abs=2)
    for _ in range(smoother.hold + 1):  # nobody for a while: back to the centre square
        smoother.update(None)
    assert smoother.square((640, 480)) == Square(80, 0, 480)


def test_face_crop_gives_a_square_portrait(engine):
    session, result = engine.process(None, marked_frame(0), face_crop=True)
    assert result.processed and result.image.size == (256, 256)
    # astronaut.png has one face: the square follows it
    assert session.smoother.state is not None and "· face" in result.status


# -- through the real server -------------------------------------------------------------------
@pytest.fixture(scope="module")
def server(app_server):
    """The session's app (conftest.py): these tests only call it."""
    return app_server.url


def wait_for_outputs(stream, count: int, timeout: float = 60) -> list:
    deadline = time.monotonic() + timeout
    while len(stream.outputs()) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"only {len(stream.outputs())} outputs: {stream.messages[-3:]}")
        time.sleep(0.01)
    return stream.outputs()


@pytest.mark.slow
def test_stream_endpoint_in_order_small_and_without_backlog(server):
    from stream_client import StreamSession

    stream = StreamSession(server, "live")
    args = ["face_paint_512_v2", 256, False, False]
    uploads = [stream.upload(marked_frame(i)) for i in range(CELLS)]
    burst = [stream.upload(marked_frame(i, "coffee.png")) for i in range(CELLS)]
    try:
        # one frame at a time: each comes back, in order, at the reduced size
        round_trips = []
        for i in range(6):
            sent = time.monotonic()
            if i == 0:
                stream.start([uploads[0], *args])
            else:
                stream.send([uploads[i], *args])
            arrived, data = wait_for_outputs(stream, i + 1)[-1]
            round_trips.append(arrived - sent)
            img = stream.fetch(data[0])
            assert img.size == (256, 192)
            assert read_mark(img) == i
            assert f"{i + 1} shown" in data[1]
        # a burst, faster than frames can be stylized: the newest frame wins, no queue builds up
        before = len(stream.outputs())
        for i in range(CELLS):
            stream.send([burst[i], *args])
        last_sent = time.monotonic()
        deadline = time.monotonic() + 60
        while True:
            outs = stream.outputs()[before:]
            marks = [read_mark(stream.fetch(d[0])) for _, d in outs]
            if marks and marks[-1] == CELLS - 1:
                break
            assert time.monotonic() < deadline, marks
            time.sleep(0.05)
        assert marks == sorted(marks) and len(set(marks)) == len(marks)  # in order, none twice
        assert len(marks) < CELLS // 2  # most of the burst was skipped, not queued
        typical = float(np.median(round_trips))
        assert outs[-1][0] - last_sent < 3 * typical + 1.0  # the newest frame came back promptly
    finally:
        stream.close()


@pytest.mark.slow
def test_stream_stops_at_the_time_limit_with_a_message(weights_dir, tmp_path):
    from servers import live_app
    from stream_client import StreamSession

    with live_app(weights_dir, tmp_path / "app.log", ANIMEGAN_LIVE_TIME_LIMIT="3") as url:
        stream = StreamSession(url, "live")
        args = ["face_paint_512_v2", 128, False, False]
        frame = stream.upload(marked_frame(1))
        stream.start([frame, *args])
        deadline = time.monotonic() + 60
        while not stream.done.is_set() and time.monotonic() < deadline:
            time.sleep(0.3)
            if not stream.send([frame, *args]):
                break  # the server ended the stream
        assert stream.done.wait(30)
        last = stream.messages[-1][1]
        assert last["msg"] == "process_completed" and last["success"] is False
        assert "stops after 3 s so that everyone gets a turn" in last["output"]["error"]
        assert stream.outputs()  # frames were shown until then
        stream.close()
        # another visitor (or the same one starting again) is served
        again = StreamSession(url, "live")
        second = again.upload(marked_frame(2))
        again.start([second, *args])
        deadline = time.monotonic() + 60  # keep sending as a browser does: a busy moment drops a frame
        while not again.outputs() and not again.done.is_set() and time.monotonic() < deadline:
            time.sleep(0.3)
            again.send([second, *args])
        _, data = wait_for_outputs(again, 1)[0]
        assert read_mark(again.fetch(data[0])) == 2
        again.close()


@pytest.mark.slow
def test_frame_endpoint_drops_a_burst_and_keeps_serving(server):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    path = Path(SCREENSHOTS.parent / ".pytest_frame.png")
    try:
        marked_frame(7).save(path)
        image, status = client.predict(handle_file(str(path)), "face_paint_512_v2", 128, False, False,
                                       api_name="/stylize_frame")
        assert Image.open(image).size == (128, 96) and read_mark(Image.open(image)) == 7
        start = time.monotonic()
        jobs = [client.submit(handle_file(str(path)), "face_paint_512_v2", 128, False, False,
                              api_name="/stylize_frame") for _ in range(12)]
        results = [job.result(timeout=120) for job in jobs]
        elapsed = time.monotonic() - start
        dropped = [img for img, s in results if s.startswith("dropped (busy)")]
        shown = [img for img, s in results if not s.startswith("dropped (busy)")]
        assert len(dropped) >= 6, [s for _, s in results]  # answered at once, without a picture
        assert all(img is None for img in dropped)
        assert shown and all(Image.open(img).size == (128, 96) for img in shown)
        assert elapsed < 60
        image, status = client.predict(handle_file(str(path)), "face_paint_512_v2", 128, False, False,
                                       api_name="/stylize_frame")
        assert not status.startswith("dropped") and "128 x 96" in status
    finally:
        path.unlink(missing_ok=True)


# -- in a real browser, with Chromium's fake camera -----------------------------------------------
def write_y4m(path: Path, frames: list[Image.Image], fps: int = 10) -> Path:
    import av

    with av.open(str(path), "w", format="yuv4mpegpipe") as out:
        s = out.add_stream("rawvideo", rate=fps)
        s.width, s.height, s.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_image(img)
            f.pts = i
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode():
            out.mux(p)
    return path


@pytest.mark.slow
def test_live_tab_in_chromium_with_a_fake_camera(server, tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    from app_helpers import launch_chromium, require_chromium

    require_chromium()
    camera = write_y4m(tmp_path / "camera.y4m", [marked_frame(i % CELLS) for i in range(24)])
    SCREENSHOTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p, f"--use-file-for-fake-video-capture={camera}")
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(server, wait_until="load")
            page.get_by_role("tab", name="Live webcam").click(timeout=60_000)
            page.locator("#live-webcam").get_by_text("Click to Access Webcam").click(timeout=60_000)
            page.locator("#live-webcam button", has_text="Record").click(timeout=30_000)
            # the status line counts the frames shown; wait for a few
            page.wait_for_function(
                "() => { const t = document.querySelector('#live-status textarea');"
                " const m = t && t.value.match(/(\\d+) shown/); return m && +m[1] >= 4; }", timeout=90_000)
            status = page.input_value("#live-status textarea")
            assert "fps" in status and "256 x 192" in status
            page.wait_for_function(  # the anime picture, at the reduced size
                "() => [...document.querySelectorAll('#live-output img')]"
                ".some(i => i.complete && i.naturalWidth === 256 && i.naturalHeight === 192)", timeout=30_000)
            page.screenshot(path=str(SCREENSHOTS / "live_tab.png"))
            # portrait framing: the picture turns square
            page.get_by_label("Face crop").check()
            page.wait_for_function(
                "() => [...document.querySelectorAll('#live-output img')]"
                ".some(i => i.complete && i.naturalWidth === 256 && i.naturalHeight === 256)", timeout=60_000)
            page.screenshot(path=str(SCREENSHOTS / "live_tab_face.png"))
            # steady: the stream goes on through the stabilizer
            shown = int(page.input_value("#live-status textarea").split(" shown")[0].split()[-1])
            page.get_by_label("Steady").check()
            page.wait_for_function(
                "n => { const t = document.querySelector('#live-status textarea');"
                " const m = t && t.value.match(/(\\d+) shown/); return m && +m[1] >= n + 4; }", arg=shown,
                timeout=90_000)
            page.screenshot(path=str(SCREENSHOTS / "live_tab_steady.png"))
        finally:
            browser.close()


# -- live limits the client cannot reset (issue 11, item 6) -----------------------------------------
def test_live_time_is_counted_per_client_across_restarts_and_sessions(stylizer):
    engine = live.LiveStylizer(stylizer, side=128, time_limit=0.6)
    frame = marked_frame(3, size=(160, 120))

    def stream(clients, seconds):
        """Frames every 0.15 s, each as a fresh start (session=None): what a client that
        reloads the page or sends no session would do. Returns the seconds served."""
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            try:
                engine.process(None, frame, clients=clients)
            except live.LiveLimitReached as exc:
                return time.monotonic() - start, str(exc)
            time.sleep(0.15)
        return seconds, None

    served, said = stream(("session:a", "address:10.0.0.1"), 3)
    assert said is not None and served < 1.5, "restarting the webcam must not reset the allowance"
    assert "in the last 10 minutes" in said and "Try again in" in said
    # another session from the same address: served, until the address's share (4 x 0.6 s) is used
    served, said = stream(("session:b", "address:10.0.0.1"), 6)
    assert said is not None and served < 3.5
    # someone else is served at once
    _, result = engine.process(None, frame, clients=("session:c", "address:10.0.0.2"))
    assert result.processed


def test_a_huge_live_frame_is_refused_from_its_header(stylizer):
    import io

    engine = live.LiveStylizer(stylizer, side=128)
    buf = io.BytesIO()
    Image.new("L", (6300, 6300)).save(buf, "PNG")  # 39.7 MP: under the photo limit, over the live one
    with pytest.raises(Exception, match="over the limit of 17 megapixels"):
        engine.process(None, buf.getvalue())
    big = Image.new("RGB", (4000, 3000), (120, 90, 60))  # 12 MP, accepted: shrunk before faces are looked for
    _, result = engine.process(None, big, face_crop=True)
    assert result.processed and result.image.size == (128, 128)


def test_the_engine_keeps_sessions_by_key_until_they_are_over(stylizer, monkeypatch):
    """What the app relies on (issue 19, item 3): the same key continues its session, and
    the engine holds at most MAX_SESSIONS of them, none once SESSION_GAP has passed."""
    monkeypatch.setattr(live, "MAX_SESSIONS", 4)
    engine = live.LiveStylizer(stylizer, side=64, time_limit=None)
    frame = marked_frame(2, size=(80, 60))
    _, first = engine.process(None, frame, key="a")
    _, second = engine.process(None, frame, key="a")
    assert "1 shown" in first.status and "2 shown" in second.status
    for i in range(10):
        engine.process(None, frame, key=f"other{i}")
    assert engine.prune() == 4
    assert engine.prune(time.monotonic() + live.SESSION_GAP + 1) == 0
