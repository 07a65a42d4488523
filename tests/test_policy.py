"""The policy lives in the core: with ANIMEGAN_HIDE_NONCOMMERCIAL=1 a hidden style is refused
on every way in (the library's Stylizer, face styles, live frames, clips, the command line,
batch, export, and every endpoint of the app), with one message that names only the
styles offered here, repeats at most a short part of what was sent, and says what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from clips import photo_frames, write_clip
from conftest import ROOT, photo
from PIL import Image

from animegan import Stylizer, video
from animegan.live import LiveStylizer
from animegan.styles import STYLES, StyleError

HIDDEN = "paprika"  # non-commercial weights
NONCOMMERCIAL = [n for n, s in STYLES.items() if s.licence.noncommercial]


def assert_refused(message: str, name: str = HIDDEN) -> None:
    assert f"'{name[:40]}" in message, message
    assert "Choose one of: face_paint_512_v2" in message, message
    listed = message.split("Choose one of:")[1]
    assert not any(n in listed for n in NONCOMMERCIAL), message  # the hidden styles are never listed
    assert "Traceback" not in message


@pytest.fixture(scope="module")
def hiding(stylizer) -> Stylizer:
    """A Stylizer with the proxy weights for every style and the non-commercial ones hidden."""
    return Stylizer(settings=replace(stylizer.settings, hide_noncommercial=True, backend="torch-fp32"))


def test_the_library_refuses_a_hidden_style_before_any_work(hiding):
    with pytest.raises(StyleError) as info:
        Stylizer(HIDDEN, settings=hiding.settings)
    assert_refused(str(info.value))
    for call in (lambda: hiding.run(photo("coffee.png"), HIDDEN, max_side=64),
                 lambda: hiding.run(photo("astronaut.png"), face_crop="paste", face_style=HIDDEN, max_side=64),
                 lambda: hiding.run_array(HIDDEN, Image.new("RGB", (32, 32))),
                 lambda: hiding.backend(HIDDEN),
                 lambda: hiding.weights_path(HIDDEN)):
        with pytest.raises(StyleError) as info:
            call()
        assert_refused(str(info.value))
    assert not hiding.is_loaded(HIDDEN)
    assert hiding.run(photo("coffee.png"), max_side=64).style == "face_paint_512_v2"  # the others still run


def test_live_frames_and_clips_go_through_the_same_check(hiding, tmp_path):
    live = LiveStylizer(hiding, time_limit=None)
    with pytest.raises(StyleError) as info:
        live.process(None, Image.new("RGB", (64, 48)), HIDDEN)
    assert_refused(str(info.value))
    clip = write_clip(tmp_path / "c.mp4", photo_frames((64, 48), 3, 10), 10)
    with pytest.raises(StyleError) as info:
        video.stylize_video(hiding, clip, tmp_path / "out.mp4", style=HIDDEN)
    assert_refused(str(info.value))
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("sent", ["x" * 100_000, ["face_paint_512_v2"], {"name": "paprika"}, 3])
def test_anything_that_is_not_an_offered_name_gets_a_short_clear_message(hiding, sent):
    with pytest.raises(StyleError) as info:
        hiding.check_style(sent)
    text = str(info.value)
    assert len(text) < 400 and "Choose one of: face_paint_512_v2" in text
    assert not any(n in text.split("Choose one of:")[1] for n in NONCOMMERCIAL)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), ANIMEGAN_HIDE_NONCOMMERCIAL="1", ANIMEGAN_BACKEND="torch-fp32")
    return subprocess.run([sys.executable, "-m", "animegan", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


def test_the_command_line_batch_and_export_refuse_a_hidden_style(offline_weights, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    Image.open(photo("coffee.png")).resize((64, 42)).save(src / "a.png")
    for args in ([str(src / "a.png"), "-o", str(tmp_path / "out"), "-s", HIDDEN],
                 [str(src / "a.png"), "-o", str(tmp_path / "out"), "--face-crop", "paste", "--face-style", HIDDEN],
                 ["batch", str(src), str(tmp_path / "batch"), "-s", HIDDEN],
                 ["export", HIDDEN, "--to", "safetensors", "--out", str(tmp_path / "export")]):
        done = _cli(*args)
        assert done.returncode != 0, (args, done.stderr)
        assert_refused(done.stderr)
    assert not (tmp_path / "out").exists() and not (tmp_path / "export").exists()
    assert not (tmp_path / "batch").exists() or not list((tmp_path / "batch").rglob("*.png"))
    listed = _cli("--list-styles").stdout
    assert HIDDEN.ljust(20) not in listed and "face_paint_512_v2".ljust(20) in listed


# -- every endpoint of the app ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def hiding_app(weights_dir, tmp_path_factory):
    from servers import live_app

    log = tmp_path_factory.mktemp("hiding-app") / "app.log"
    with live_app(weights_dir, log, ANIMEGAN_HIDE_NONCOMMERCIAL="1", ANIMEGAN_VIDEO_MAX_SECONDS="3") as url:
        yield url


def _error_of(call) -> str:
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        call()
    return str(info.value)


@pytest.mark.slow
def test_every_endpoint_of_the_app_refuses_a_hidden_style(hiding_app, tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import ValidationError
    from stream_client import StreamSession

    client = Client(hiding_app, verbose=False)
    frame = handle_file(str(photo("coffee.png")))
    clip = write_clip(tmp_path / "c.mp4", photo_frames((64, 48), 3, 10), 10)
    assert_refused(_error_of(lambda: client.predict(frame, HIDDEN, "off", api_name="/stylize")))
    assert_refused(_error_of(lambda: client.predict(frame, "face_paint_512_v2", "paste", HIDDEN,
                                                    api_name="/stylize")))
    assert_refused(_error_of(lambda: client.predict(frame, HIDDEN, 256, False, False,
                                                    api_name="/stylize_frame")))
    # a clip's style is checked as the job asks to join the queue (the tab's validator)
    with pytest.raises(ValidationError) as refused:
        client.predict(handle_file(str(clip)), HIDDEN, 256, False, api_name="/stylize_video")
    assert_refused(str(refused.value))
    long = "y" * 100_000
    assert_refused(_error_of(lambda: client.predict(frame, long, "off", api_name="/stylize")), long)
    assert_refused(_error_of(lambda: client.predict(frame, long, 256, False, False,
                                                    api_name="/stylize_frame")), long)
    listed = _error_of(lambda: client.predict(frame, ["paprika"], "off", api_name="/stylize"))
    assert "not a list" in listed and "TypeError" not in listed

    stream = StreamSession(hiding_app, "live")
    img = Image.fromarray(np.full((48, 64, 3), 128, np.uint8))
    stream.start([stream.upload(img), HIDDEN, 256, False, False])
    stream.send([stream.upload(img), HIDDEN, 256, False, False])
    stream.close()
    errors = [m for _, m in stream.messages if m.get("msg") == "process_completed" and not m.get("success", True)]
    assert errors, stream.messages
    assert_refused(str(errors[0].get("output", {}).get("error")))
    # and the visible style still works on the same server
    out = client.predict(frame, "face_paint_512_v2", "off", api_name="/stylize")
    assert Image.open(out).size[0] > 0
