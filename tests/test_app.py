"""The real app: `python app.py` in a subprocess, called with gradio_client."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from app_helpers import AppServer, app_env
from conftest import photo
from PIL import Image

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402


@pytest.fixture(scope="module")
def client(app_server):
    return Client(app_server.url, verbose=False, download_files=True)


def stylize(client, path, style="face_paint_512_v2", face_crop="off") -> Image.Image:
    out = client.predict(handle_file(str(path)), style, face_crop, api_name="/stylize")
    with Image.open(out) as img:
        img.load()
        return img


@pytest.mark.slow
def test_api_is_named_and_documented(client):
    info = client.view_api(print_info=False, return_format="dict")
    endpoint = info["named_endpoints"]["/stylize"]
    assert [p["parameter_name"] for p in endpoint["parameters"]] == ["image", "style", "face_crop", "face_style"]
    # the fourth is optional, so three-argument calls keep working (test_face_style_is_an_optional_fourth_argument)
    assert endpoint["parameters"][3]["parameter_has_default"]
    assert len(endpoint["returns"]) == 1
    # the page's own events stay private; the live and video tabs add their named endpoints
    assert sorted(info["named_endpoints"]) == ["/live", "/stylize", "/stylize_frame", "/stylize_video"]


@pytest.mark.slow
def test_good_photo(client):
    img = stylize(client, photo("astronaut.png"))  # 512 x 512
    assert img.size == (512, 512)
    assert img.mode == "RGB"
    assert img.format == "PNG"
    # the proxy weights give an orange-tinted cartoon: not blank, not the photo itself
    arr = np.asarray(img, dtype=np.float32)
    assert arr.std() > 10
    big = stylize(client, photo("coffee.png"))  # 600 x 400 -> the default size policy (512)
    assert big.size == (512, 341)


@pytest.mark.slow
def test_bad_files_get_a_message_and_the_server_keeps_serving(client, tmp_path, app_server):
    not_image = tmp_path / "notes.png"
    not_image.write_text("this is not an image")
    with pytest.raises(AppError, match="not an image"):
        stylize(client, not_image)

    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(photo("astronaut.png").read_bytes()[:20_000])
    with pytest.raises(AppError, match="truncated or damaged"):
        stylize(client, truncated)

    huge = tmp_path / "huge.png"  # 42 megapixels, a small file: refused before decoding
    Image.new("L", (7000, 6000), 128).save(huge)
    with pytest.raises(AppError, match="megapixels"):
        stylize(client, huge)

    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (8, 8), "pink").save(tiny)
    with pytest.raises(AppError, match="at least 16 px"):
        stylize(client, tiny)

    with pytest.raises(AppError, match="Unknown style"):
        stylize(client, photo("camera.png"), style="no_such_style")
    with pytest.raises(AppError, match="Face crop must be one of"):
        stylize(client, photo("camera.png"), face_crop="sideways")

    assert app_server.alive()
    assert stylize(client, photo("camera.png")).size == (512, 512)


@pytest.mark.slow
def test_same_input_twice_comes_from_the_cache(client, tmp_path):
    # a photo no other test sends, so the first call really runs the network
    arr = np.array(Image.open(photo("chelsea.png")).convert("RGB"))
    arr[0, 0] = (arr[0, 0].astype(int) + 1) % 256
    unique = tmp_path / "chelsea_unique.png"
    Image.fromarray(arr).save(unique)

    start = time.perf_counter()
    first = stylize(client, unique, style="paprika")
    first_s = time.perf_counter() - start
    start = time.perf_counter()
    second = stylize(client, unique, style="paprika")
    second_s = time.perf_counter() - start

    assert first.size == second.size == (451, 300)
    assert np.array_equal(np.asarray(first), np.asarray(second))
    assert second_s < first_s, (first_s, second_s)


@pytest.mark.slow
def test_page_has_the_controls_the_palette_and_the_credits(app_server):
    with urllib.request.urlopen(app_server.url + "/config", timeout=10) as r:
        config = json.load(r)
    text = json.dumps(config)
    assert "Xin Chen, Gang Liu and Gang Chen" in text  # footer credits
    assert "MIT licence" in text
    labels = [c["props"].get("label") for c in config["components"]]
    assert {"Your photo", "Style", "Faces", "Output size (px)", "Anime (PNG)", "Before / after"} <= set(labels)
    photo_input = next(c["props"] for c in config["components"] if c["props"].get("elem_id") == "input-image")
    assert photo_input["sources"] == ["upload", "clipboard", "webcam"]
    assert photo_input["webcam_options"]["mirror"] is True
    with urllib.request.urlopen(app_server.url + "/theme.css", timeout=10) as r:
        css = r.read().decode().lower()
    assert "#fffaf3" in css and "#a83a64" in css  # cream background, sakura buttons


@pytest.mark.slow
def test_starts_without_weights_and_says_which_styles_are_unavailable(tmp_path):
    empty = tmp_path / "no-weights"
    empty.mkdir()
    env = app_env(empty, tmp_path, HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_OFFLINE="1")
    with AppServer(env, tmp_path / "app.log") as server:
        with urllib.request.urlopen(server.url + "/config", timeout=10) as r:
            config = json.load(r)
        notice = next(c["props"] for c in config["components"] if c["props"].get("elem_id") == "notice")
        assert notice["visible"] is True
        assert "No style has its weights on this server yet" in notice["value"]
        # which file each style needs, folded away: an ONNX style needs its ONNX graph
        for title, file in (("Face Paint v2", "face_paint_512_v2.pt"), ("Webtoon", "celeba_distill.pt"),
                            ("Shinkai", "shinkai.onnx"), ("Portrait Sketch", "portrait_sketch.onnx")):
            assert f"{title} `{file}`" in notice["value"]
        assert "ANIMEGAN_WEIGHTS_DIR" in notice["value"] and "shinkai.pt" not in notice["value"]
        picker = next(c["props"] for c in config["components"] if c["props"].get("elem_id") == "style-picker")
        assert picker["choices"] == []  # nothing to pick that cannot run
        # said once, for all eight: not a warning per style, nor twice
        said = [line for line in server.log().splitlines() if "WARNING" in line]
        assert len(said) == 1 and "8 of 8 styles have no weights here" in said[0], said
        assert "HF_HUB_OFFLINE is set" in said[0] and "shinkai.onnx" in said[0]
        assert "Warning:" not in server.log()  # no developer warning (a picker set to a value it does not offer)

        client = Client(server.url, verbose=False)
        for _ in range(2):  # a readable error each time, and the server keeps serving
            with pytest.raises(AppError, match="ANIMEGAN_WEIGHTS_DIR"):
                stylize(client, photo("astronaut.png"))
        assert server.alive()
        # it failed at start moments ago: answered at once, not fetched (and waited for) again
        assert "weights for face_paint_512_v2" not in server.log()


# -- the server-side policy, in process (no server needed) -----------------------------------
def test_size_policy_is_clamped_on_the_server(stylizer, monkeypatch):
    from dataclasses import replace

    from animegan import policy
    from animegan.app import photo as ui

    app = ui.App(stylizer)
    settings = app.settings
    assert app.clamp_side(10**9) == settings.max_side_limit
    assert app.clamp_side(-3) == policy.SIDE_MIN
    assert app.clamp_side("not a number") == settings.default_side
    assert app.clamp_side(float("nan")) == settings.default_side

    # cheap to run: a page asking for 99999 px gets 256
    app = ui.App(stylizer, settings=replace(settings, max_side_limit=256))
    image, (before, after), status = app.stylize_page({"path": str(photo("coffee.png"))}, "paprika", "off", 99999,
                                                      progress=None)
    assert image.size == after.size == before.size == (256, 171)
    assert "256 x 171" in status


def test_progress_reports_the_weights_then_stylizing(offline_weights):
    from animegan import Stylizer
    from animegan.app import photo as ui

    seen = []
    app = ui.App(Stylizer())  # nothing loaded yet: the first use loads the weights
    app.stylize_page({"path": str(photo("camera.png"))}, "face_paint_512_v1", "off", 256,
                     progress=lambda fraction, desc=None: seen.append((fraction, desc)))
    texts = [desc for _, desc in seen]
    assert texts[0] == "Loading the Face Paint v1 weights"
    assert "Stylizing" in texts and texts[-1] == "Done"
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)


def test_missing_image_is_a_readable_error(stylizer):
    import gradio as gr

    from animegan.app import photo as ui

    with pytest.raises(gr.Error, match="Add a photo first"):
        ui.App(stylizer).stylize_api(None, "paprika", "off", progress=None)
    with pytest.raises(gr.Error, match="not an image upload"):
        ui.image_source("/etc/passwd")  # only Gradio's own upload records are accepted


def test_readme_snippet_names_the_endpoint():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert 'api_name="/stylize"' in readme


def test_queue_is_bounded_and_runs_one_at_a_time(monkeypatch):
    """In process, with a slow stand-in Stylizer: a full queue turns callers away with a
    'busy, try again' message instead of piling up work, and jobs never overlap."""
    import threading

    from app_helpers import free_port

    from animegan import app as ui
    from animegan.settings import Settings
    from animegan.stylizer import Result, Stylizer

    class SlowStylizer(Stylizer):  # the real policy and runtime; a slow stand-in for the passes
        running = overlap = 0
        lock = threading.Lock()

        def run(self, src, style, **options):
            with self.lock:
                SlowStylizer.running += 1
                SlowStylizer.overlap = max(SlowStylizer.overlap, SlowStylizer.running)
            time.sleep(1.5)
            with self.lock:
                SlowStylizer.running -= 1
            return Result(Image.new("RGB", (32, 32), "pink"), style, (32, 32), 1.5, "stand-in")

        def is_loaded(self, style):
            return True

    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")
    settings = Settings(queue_size=1)
    demo = ui.build(app=ui.App(SlowStylizer(settings=settings), settings=settings), check_weights=False)
    port = free_port()
    ui.launch(demo, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        client = Client(f"http://127.0.0.1:{port}", verbose=False)
        jobs = [client.submit(handle_file(str(photo("camera.png"))), "paprika", "off", api_name="/stylize")
                for _ in range(4)]
        outcomes = []
        for job in jobs:
            try:
                job.result(timeout=60)
                outcomes.append("done")
            except Exception as exc:  # gradio_client's QueueError: "Queue is full! Please try again."
                assert "try again" in str(exc).lower(), exc
                outcomes.append("busy")
        assert outcomes.count("done") >= 1 and outcomes.count("busy") >= 1, outcomes
        assert SlowStylizer.overlap == 1
    finally:
        demo.close()


@pytest.mark.slow
def test_face_modes_through_the_api(client):
    portrait = stylize(client, photo("astronaut.png"), face_crop="portrait")
    assert portrait.size == (512, 512)
    whole = stylize(client, photo("astronaut.png"))
    assert not np.array_equal(np.asarray(portrait), np.asarray(whole))  # a framed face, not the photo
    pasted = stylize(client, photo("coffee.png"), face_crop="paste")  # no face: the whole photo
    assert pasted.size == (512, 341)
    assert np.array_equal(np.asarray(pasted), np.asarray(stylize(client, photo("coffee.png"))))


@pytest.mark.slow
def test_face_style_is_an_optional_fourth_argument(client):
    """Today's three positional arguments still work; a fourth names the faces' style with paste."""
    three = stylize(client, photo("astronaut.png"), face_crop="paste")
    out = client.predict(handle_file(str(photo("astronaut.png"))), "face_paint_512_v2", "paste", "",
                         api_name="/stylize")
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(three))  # "": the same style
    out = client.predict(handle_file(str(photo("astronaut.png"))), "face_paint_512_v2", "paste", "celeba_distill",
                         api_name="/stylize")
    # the test weights are the same file under every name, but Webtoon frames faces at 256 px
    assert not np.array_equal(np.asarray(Image.open(out)), np.asarray(three))
    with pytest.raises(AppError, match="Unknown style 'nope'"):
        client.predict(handle_file(str(photo("astronaut.png"))), "face_paint_512_v2", "paste", "nope",
                       api_name="/stylize")
