"""The whole app in this process, at small sizes (the fast lane's check of animegan.app):
build() around the session's Stylizer (proxy weights), launch() on 127.0.0.1, and every
named endpoint called with gradio_client: a photo, a live frame, a clip, a request over
the body limit, and the style gallery made in the background.

`python app.py` in a subprocess, Chromium and the longer checks are in test_app.py,
test_live.py, test_video.py, test_limits.py and test_browser.py (the slow tier).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from app_helpers import free_port, post
from clips import photo_frames, read_clip, write_clip
from conftest import photo
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError, ValidationError  # noqa: E402

STYLE = "face_paint_512_v2"


@pytest.fixture(scope="module")
def served(stylizer, tmp_path_factory):
    """(App, URL, Client) for an app built and launched here; closed after the module."""
    from animegan.app import build, launch
    from animegan.app.photo import App

    mp = pytest.MonkeyPatch()
    mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    mp.setenv("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
    # small on purpose: 256 px results, a 1 MB request limit, clips of at most 2 s
    settings = replace(stylizer.settings, default_side=256, max_request_mb=1.0, video_max_seconds=2.0)
    app = App(stylizer, settings=settings)
    demo = build(app=app)  # checks every style's weights and loads the default
    port = free_port()
    try:
        # serving, it warms the default up and makes the gallery; its thumbnails take the model
        # in turns, and a live frame that meets one is dropped (as it should be), so the
        # endpoints are called once they are made
        launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
        assert app.thumbnails.wait(120)
        url = f"http://127.0.0.1:{port}"
        yield app, url, Client(url, verbose=False, download_files=True)
    finally:
        demo.close()
        mp.undo()


def _image(path) -> Image.Image:
    with Image.open(path) as img:
        img.load()
        return img


def test_a_photo_through_the_api(served):
    app, _, client = served
    assert not app.unavailable  # every style found its (proxy) weights
    out = _image(client.predict(handle_file(str(photo("coffee.png"))), STYLE, "off", api_name="/stylize"))
    assert out.size == (256, 171) and out.mode == "RGB"
    r, _, b = np.asarray(out, dtype=np.float32).reshape(-1, 3).mean(0)
    assert r > b  # the proxy's orange tint: channels in order
    with pytest.raises(AppError, match="Unknown style"):
        client.predict(handle_file(str(photo("coffee.png"))), "no_such_style", "off", api_name="/stylize")
    with pytest.raises(AppError, match="not an image"):
        client.predict(handle_file(str(photo("CREDITS.md"))), STYLE, "off", api_name="/stylize")


def test_a_live_frame_through_the_api(served, tmp_path):
    _, _, client = served
    frame = tmp_path / "frame.png"
    Image.open(photo("astronaut.png")).convert("RGB").resize((320, 240)).save(frame)
    image, status = client.predict(handle_file(str(frame)), STYLE, 128, False, False, api_name="/stylize_frame")
    assert _image(image).size == (128, 96) and "128 x 96" in status


def test_a_clip_through_the_api_and_one_over_the_limit(served, tmp_path):
    _, _, client = served
    clip = write_clip(tmp_path / "short.mp4", photo_frames((96, 64), 6, 10), 10, audio_seconds=0.6)
    out, status = client.predict(handle_file(str(clip)), STYLE, 256, False, api_name="/stylize_video")
    info = read_clip(out)
    assert info["size"] == (96, 64) and len(info["frames"]) == 6 and info["audio_codec"] == "aac"
    assert "6 frames at 10 fps" in status
    long_clip = write_clip(tmp_path / "long.mp4", photo_frames((64, 48), 30, 10), 10)
    with pytest.raises(ValidationError, match=r"clip: long.mp4 is 3.0 s long; the limit here is 2 s"):
        client.predict(handle_file(str(long_clip)), STYLE, 256, False, api_name="/stylize_video")


def test_a_request_over_the_body_limit_is_refused_before_it_is_read(served):
    _, url, _ = served
    body = b'{"data": ["' + b"x" * 1_100_000 + b'", "face_paint_512_v2", "off"]}'
    status, text = post(url + "/gradio_api/call/stylize", body)
    assert status == 413 and "larger than the 1 MB this app accepts" in text


def test_the_gallery_shows_each_style_made_from_the_example_photo(served):
    app, _, _ = served
    gallery = app.gallery()
    assert [caption for _, caption in gallery] == [s.title for s in app.styles.values()]
    plain = np.asarray(app.thumbnails.image(app.thumbnails.plain()), dtype=np.float32)
    for image, caption in gallery:
        arr = np.asarray(image, dtype=np.float32)
        assert max(image.size) == 160, caption
        assert arr.shape == plain.shape and np.abs(arr - plain).mean() > 3, caption  # stylized, not the photo
    assert all(path.is_file() for path in app.thumbnails.made.values())  # cached on disk
