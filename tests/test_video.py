"""Video clips through the library, the app's API (a real server) and the command line.

The clips are made here with PyAV from the real photos, with a 440 Hz sine as sound.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from clips import frame_bomb, long_sound_clip, photo_frames, read_clip, write_clip
from conftest import ROOT, photo
from PIL import Image

from animegan import video
from animegan.video import VideoError, probe, stylize_video

FPS = 10


def styled(stylizer, frame: np.ndarray) -> np.ndarray:
    """The frame stylized on its own, as a photo: what the clip's frame must show."""
    return np.asarray(stylizer.run_array(stylizer.style, Image.fromarray(np.ascontiguousarray(frame))))


def assert_matches(stylizer, out_frame: np.ndarray, src_frame: np.ndarray) -> None:
    """A frame of the result is the source frame stylized, up to H.264's small losses."""
    ref = styled(stylizer, src_frame)
    assert out_frame.shape == ref.shape
    assert np.abs(out_frame.astype(np.int16) - ref).mean() < 6  # 8-bit levels
    r, _, b = out_frame.reshape(-1, 3).mean(0)
    assert r > b  # the proxy's orange tint: channels in the right order


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """2 s, 160 x 120 at 10 fps, AAC sine sound of 2 s."""
    folder = tmp_path_factory.mktemp("clip")
    frames = photo_frames((160, 120), 2 * FPS, FPS)
    return write_clip(folder / "holiday.mp4", frames, FPS, audio_seconds=2.0), frames


@pytest.fixture(scope="module")
def server(app_server):
    """The session's app (conftest.py), whose clips are capped at 3 s: these tests only call it."""
    return app_server.url


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server, verbose=False)


def check_clip(stylizer, path, frames_in, size, seconds, audio=True):
    info = read_clip(path)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and info["format"].startswith("mov,mp4")
    assert info["size"] == size
    assert len(info["frames"]) == len(frames_in)
    assert info["average_rate"] == FPS
    assert info["times"] == pytest.approx([i / FPS for i in range(len(frames_in))], abs=1e-3)
    assert info["rotations"] == {0}
    if audio:
        assert info["audio_codec"] == "aac"
        # as long as the video (AAC adds a few ms of priming)
        assert info["audio_seconds"] == pytest.approx(seconds, abs=0.06)
    else:
        assert info["audio_codec"] is None
    for i in (0, len(frames_in) // 2, len(frames_in) - 1):
        assert_matches(stylizer, info["frames"][i], frames_in[i])
    return info


# -- through the app's API ----------------------------------------------------------------------
@pytest.mark.slow
def test_api_clip_keeps_frames_rate_size_and_sound(client, clip, stylizer):
    from gradio_client import handle_file

    path, frames = clip
    out, status = client.predict(handle_file(str(path)), "face_paint_512_v2", 512, False, api_name="/stylize_video")
    check_clip(stylizer, out, frames, (160, 120), 2.0)
    assert "20 frames at 10 fps" in status and "with sound" in status


@pytest.mark.slow
def test_api_bad_inputs_say_why_and_the_server_keeps_serving(client, clip, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import ValidationError

    text = tmp_path / "notes.mp4"
    text.write_text("a text file with a video's name")
    with pytest.raises(ValidationError, match="clip: notes.mp4 is not a video FFmpeg can read"):
        client.predict(handle_file(str(text)), "face_paint_512_v2", 512, False, api_name="/stylize_video")
    with pytest.raises(ValidationError, match="still image, not a video"):
        client.predict(handle_file(str(photo("coffee.png"))), "face_paint_512_v2", 512, False,
                       api_name="/stylize_video")

    long_clip = write_clip(tmp_path / "long.mp4", photo_frames((64, 48), 4 * FPS, FPS), FPS, audio_seconds=4.0)
    # refused as it asks to join the queue (Gradio's validator): it never waits in line
    with pytest.raises(ValidationError, match=r"clip: long.mp4 is 4.0 s long; the limit here is 3 s"):
        client.predict(handle_file(str(long_clip)), "face_paint_512_v2", 512, False, api_name="/stylize_video")
    # the same clip, cut to the limit on request
    out, status = client.predict(handle_file(str(long_clip)), "face_paint_512_v2", 512, True,
                                 api_name="/stylize_video")
    info = read_clip(out)
    assert len(info["frames"]) == 3 * FPS and info["audio_seconds"] == pytest.approx(3.0, abs=0.06)
    assert "Cut to the first 3 s of 4.0 s" in status

    # and the server still serves a good clip
    path, frames = clip
    out, _ = client.predict(handle_file(str(path)), "face_paint_512_v2", 256, False, api_name="/stylize_video")
    assert read_clip(out)["size"] == (160, 120)


# -- through the command line -------------------------------------------------------------------
@pytest.mark.slow  # a 15-frame clip through the command line
def test_cli_clips_and_photos_together(tmp_path, weights_dir, stylizer):
    src = tmp_path / "in"
    src.mkdir()
    frames = photo_frames((320, 180), 15, FPS)
    write_clip(src / "wide.mov", frames, FPS, audio_seconds=1.5)
    Image.open(photo("chelsea.png")).save(src / "cat.png")
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", ANIMEGAN_WEIGHTS_DIR=str(weights_dir))
    proc = subprocess.run([sys.executable, "-m", "animegan", str(src), "-o", str(tmp_path / "out"),
                           "--video-max-side", "128", "--max-side", "64"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    small = [np.asarray(Image.fromarray(f).resize((128, 72), Image.Resampling.BOX)) for f in frames]
    info = check_clip(stylizer, tmp_path / "out" / "wide_anime.mp4", small, (128, 72), 1.5)
    assert info["video_duration"] == pytest.approx(1.5, abs=0.01)
    assert Image.open(tmp_path / "out" / "cat_anime.png").size == (64, 43)
    assert "frame" in proc.stderr  # the progress bar counts frames
    assert "wide.mov -> " in proc.stderr and "2 of 2 file(s) written" in proc.stderr


def test_cli_refuses_a_long_clip_and_a_fake_one(tmp_path, weights_dir):
    write_clip(tmp_path / "long.webm", photo_frames((64, 48), 25, FPS), FPS, video_codec="libvpx-vp9")
    (tmp_path / "fake.mkv").write_bytes(b"\x1a\x45\xdf\xa3 not really matroska")
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", ANIMEGAN_WEIGHTS_DIR=str(weights_dir))
    proc = subprocess.run([sys.executable, "-m", "animegan", str(tmp_path / "long.webm"), str(tmp_path / "fake.mkv"),
                           "-o", str(tmp_path / "out"), "--max-seconds", "2"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 1
    assert "long.webm is 2.5 s long; the limit here is 2 s" in proc.stderr
    assert "fake.mkv is not a video FFmpeg can read" in proc.stderr
    assert "0 of 2 clip(s) written" in proc.stderr and "Traceback" not in proc.stderr
    assert not list((tmp_path / "out").glob("*.mp4"))  # no half-written file left behind


# -- awkward clips, through the library -----------------------------------------------------------
def test_rotation_metadata_gives_an_upright_result(stylizer, tmp_path):
    upright = photo_frames((96, 64), 6, FPS)  # landscape, as the person saw it
    # a phone stores the frames turned and says how to turn them back (clockwise here)
    stored = [np.rot90(f, 1) for f in upright]
    path = write_clip(tmp_path / "phone.mp4", stored, FPS, audio_seconds=0.6, rotation=-90)
    assert probe(path).rotation == -90 and (probe(path).width, probe(path).height) == (96, 64)
    result = stylize_video(stylizer, path, tmp_path / "out.mp4")
    info = read_clip(result.path)
    assert info["size"] == (96, 64) and info["rotations"] == {0}
    assert_matches(stylizer, info["frames"][0], upright[0])
    turned = np.abs(info["frames"][0].astype(np.int16) - styled(stylizer, np.rot90(upright[0], 2))).mean()
    assert turned > 20  # upside down would be far off
    assert any("rotation" in n for n in result.notes)


def test_variable_frame_rate_odd_size_and_no_sound(stylizer, tmp_path):
    times = [0.0, 0.1, 0.15, 0.4, 0.5, 0.55, 0.9, 1.0, 1.3, 1.35]
    frames = [f[:75, :101] for f in photo_frames((102, 76), len(times), FPS)]  # 101 x 75: odd
    path = write_clip(tmp_path / "vfr.mkv", frames, FPS, times=times, pix_fmt="yuv444p")
    result = stylize_video(stylizer, path, tmp_path / "out.mp4")
    info = read_clip(result.path)
    assert info["size"] == (100, 74)  # one column and one row cropped, not stretched
    assert info["times"] == pytest.approx(times, abs=2e-3)  # every frame keeps its own time
    assert info["audio_codec"] is None and not result.has_audio
    assert any("no sound" in n for n in result.notes)
    for i in (0, 5, 9):
        assert_matches(stylizer, info["frames"][i], frames[i][:74, :100])


def test_opus_sound_is_reencoded_and_size_policy_applies(stylizer, tmp_path):
    frames = photo_frames((320, 240), 8, FPS)
    path = write_clip(tmp_path / "web.webm", frames, FPS, audio_seconds=0.8, audio_codec="libopus",
                      sample_rate=48000, video_codec="libvpx-vp9", container="webm")
    seen = []
    result = stylize_video(stylizer, path, tmp_path / "out.mp4", max_side=128,
                           progress=lambda done, total, eta: seen.append((done, total, eta)))
    info = read_clip(result.path)
    assert info["size"] == (128, 96) and len(info["frames"]) == 8
    assert info["audio_codec"] == "aac" and info["audio_rate"] == 48000
    assert info["audio_seconds"] == pytest.approx(0.8, abs=0.06)
    assert [d for d, _, _ in seen] == list(range(1, 9)) and all(t == 8 for _, t, _ in seen)
    assert seen[-1][2] == 0.0 and all(e is not None and e >= 0 for _, _, e in seen)


def test_not_a_clip(stylizer, tmp_path):
    silence = tmp_path / "sound.m4a"
    import av

    with av.open(str(silence), "w", format="mp4") as out:
        a = out.add_stream("aac", rate=44100)
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        frame.sample_rate = 44100
        for p in [*a.encode(frame), *a.encode(None)]:
            out.mux(p)
    with pytest.raises(VideoError, match="has no video track"):
        stylize_video(stylizer, silence)
    with pytest.raises(VideoError, match="No such file"):
        stylize_video(stylizer, tmp_path / "missing.mp4")
    assert video.is_video_path("a/B.MOV") and not video.is_video_path("a/b.png")


# -- the tab, in a real browser ----------------------------------------------------------------------
@pytest.mark.slow
def test_video_tab_in_chromium(server, clip):
    sync_api = pytest.importorskip("playwright.sync_api")
    from app_helpers import launch_chromium, require_chromium

    require_chromium()
    path, _ = clip
    screenshots = ROOT / "screenshots"
    screenshots.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(server, wait_until="load")
            page.get_by_role("tab", name="Video").click(timeout=60_000)
            page.locator("#video-input input[type=file]").set_input_files(str(path))
            page.locator("#video-input video").wait_for(timeout=30_000)
            page.evaluate(  # note every progress text the page shows
                "() => { window.progress = new Set(); new MutationObserver(() => {"
                " for (const m of document.body.innerText.matchAll(/(\\d+)\\/20 frames/g)) window.progress.add(m[0]);"
                " }).observe(document.body, {subtree: true, childList: true, characterData: true}); }")
            page.get_by_role("button", name="Stylize the clip").click()
            page.wait_for_function(  # the anime clip, playable in the browser, at the clip's size
                "() => { const v = document.querySelector('#video-output video');"
                " return v && v.readyState >= 2 && v.videoWidth === 160 && v.videoHeight === 120; }",
                timeout=120_000)
            assert "20 frames at 10 fps" in page.input_value("#video-status textarea")
            assert page.evaluate("() => [...window.progress]")  # the progress bar counted frames, e.g. 7/20 frames
            page.screenshot(path=str(screenshots / "video_tab.png"))
        finally:
            browser.close()


# -- bounded work per clip (issue 11, item 1) ---------------------------------------------------
@pytest.mark.slow
def test_api_refuses_a_frame_bomb_at_once(client, tmp_path):
    from gradio_client import handle_file
    from gradio_client.exceptions import ValidationError

    bomb = frame_bomb(tmp_path / "bomb.mp4")
    # refused from its header as it asks to join the queue (no frame decoded, no place in line)
    with pytest.raises(ValidationError, match="frames per second; the limit is 60"):
        client.predict(handle_file(str(bomb)), "face_paint_512_v2", 256, False, api_name="/stylize_video")


@pytest.mark.slow  # encodes a 4400 x 2400 clip to refuse
def test_cli_refuses_frame_bombs_a_raw_stream_and_a_huge_frame(tmp_path, weights_dir):
    frame_bomb(tmp_path / "bomb.mp4")
    frame_bomb(tmp_path / "bomb.mkv")  # Matroska keeps no frame count: caught while decoding
    write_clip(tmp_path / "raw.mp4", photo_frames((64, 48), 20, FPS), FPS, container="h264")
    write_clip(tmp_path / "huge.mp4", [np.zeros((2400, 4400, 3), np.uint8)] * 2, FPS)
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", ANIMEGAN_WEIGHTS_DIR=str(weights_dir))
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "animegan", *(str(tmp_path / n) for n in
                           ("bomb.mp4", "bomb.mkv", "raw.mp4", "huge.mp4")), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert re.search(r"bomb.mp4 runs at \d{4,} frames per second; the limit is 60", proc.stderr)
    assert re.search(r"bomb.mkv packs 3\d frames into its first 0.00 s", proc.stderr)
    assert "raw.mp4 is a raw video stream without a container" in proc.stderr
    assert "huge.mp4 has 4400 x 2400 frames; the largest accepted is 4K" in proc.stderr
    assert "0 of 4 clip(s) written" in proc.stderr
    assert time.perf_counter() - start < 60  # (mostly the interpreter starting on a shared machine)


def test_a_job_over_its_time_limit_stops_with_a_message(stylizer, tmp_path):
    path = write_clip(tmp_path / "c.mp4", photo_frames((64, 48), 10, FPS), FPS)
    with pytest.raises(VideoError, match="took longer than the 0.05 s allowed per clip"):
        stylize_video(stylizer, path, tmp_path / "o.mp4", max_job_seconds=0.05)
    assert not list(tmp_path.glob("*o*.mp4"))


def test_a_damaged_sound_track_is_said_not_passed_off_as_silence(stylizer, tmp_path):
    import av

    src = write_clip(tmp_path / "snd.mkv", photo_frames((64, 48), 20, FPS), FPS, audio_seconds=2.0, audio_codec="mp3")
    damaged = tmp_path / "damaged.mkv"
    rng = np.random.default_rng(0)
    with av.open(str(src)) as inp, av.open(str(damaged), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is None:
                continue
            target = streams[packet.stream.index]
            if packet.stream.type == "audio":  # the sound's bytes replaced by noise, the timing kept
                noise = av.Packet(rng.integers(0, 256, packet.size, dtype=np.uint8).tobytes())
                noise.pts, noise.dts, noise.time_base = packet.pts, packet.dts, packet.time_base
                packet = noise
            packet.stream = target
            out.mux(packet)
    result = stylize_video(stylizer, damaged, tmp_path / "out.mp4")
    assert not result.has_audio
    assert "The clip's sound track could not be read (damaged?); the result has no sound." in result.notes


def test_a_long_sound_track_is_the_clips_length_and_the_clock_covers_it(stylizer, tmp_path):
    """Issue 19, item 5: one video frame and an hour of silence. The length is the
    sound's (refused, or cut with trim, reading no further), and with no length limit the
    job's clock stops the reading of the sound, not only of the pictures."""
    path = long_sound_clip(tmp_path / "one_frame.mp4", minutes=60)
    with pytest.raises(VideoError, match=r"one_frame.mp4 is 3600.0 s long; the limit here is 30 s"):
        stylize_video(stylizer, path, tmp_path / "o.mp4", max_seconds=30)
    result = stylize_video(stylizer, path, tmp_path / "t.mp4", max_seconds=30, trim=True)
    assert "Cut to the first 30 s of 3600.0 s." in result.notes and result.has_audio
    assert read_clip(tmp_path / "t.mp4")["audio_seconds"] < 30.5
    with pytest.raises(VideoError, match=r"took longer than the 0.2 s allowed per clip here") as info:
        stylize_video(stylizer, path, tmp_path / "c.mp4", max_seconds=None, max_job_seconds=0.2)
    stopped = re.search(r"frames done, stopped at (\d+) s of the clip", str(info.value))
    assert stopped and int(stopped.group(1)) < 3600, str(info.value)  # not read to the end first
    assert not list(tmp_path.glob("*c.mp4"))
