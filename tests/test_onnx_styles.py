"""ONNX styles (the Hub's TensorFlow exports as one more generator kind), licence cards,
hiding non-commercial styles, and faces in a second style.

The ONNX generators are written here with onnx.helper (tests/onnx_models.py), in both
layouts, and served by the local Hub stand-in under the registry's own repo ids.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import PROXY_WEIGHTS, ROOT, photo
from hub_server import FakeHub
from onnx_models import ROTATION, channel_rotation, small_convnet
from PIL import Image

from animegan import images, runtime
from animegan.backends import make_backend
from animegan.backends.fidelity import MIN_PSNR, calibration_photos, psnr
from animegan.models.onnx import OnnxGenerator
from animegan.settings import Settings
from animegan.styles import LICENCE_NOTE, STYLES, register_style
from animegan.stylizer import Stylizer
from animegan.weights import load_model

ONNX_BACKENDS = ["openvino-f32", "onnxruntime"]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("onnx")
    return {
        "rotation": channel_rotation(folder / "rotation.onnx"),  # NHWC, [-1, 1]
        "rotation01": channel_rotation(folder / "rotation01.onnx", (0.0, 1.0), name="x:0"),  # NHWC, [0, 1]
        "convnet": small_convnet(folder / "convnet.onnx"),  # NCHW, even sizes only
    }


@pytest.fixture
def extra_style():
    """Register styles for one test and take them out again."""
    added: list[str] = []

    def add(name: str, **kw):
        added.append(name)
        return register_style(name, **kw)

    yield add
    for name in added:
        STYLES.pop(name, None)


def odd_photo(size=(301, 211)) -> Image.Image:
    return images.resize(images.decode(photo("coffee.png")).rgb, size)


# -- the generator kind ------------------------------------------------------------------------
def test_layout_is_read_from_the_graph(models):
    assert OnnxGenerator.load(models["rotation"]).layout == "NHWC"
    assert OnnxGenerator.load(models["convnet"]).layout == "NCHW"
    assert OnnxGenerator.load(models["rotation01"]).input_name == "x:0"


@pytest.mark.parametrize("backend", ONNX_BACKENDS)
@pytest.mark.parametrize("kind", ["rotation", "rotation01"])
def test_colours_come_back_right_at_an_odd_size(models, backend, kind):
    """A known per-pixel mapping (out R = in G, ...) through the adapted graph: a wrong
    layout, channel order, value range, pad or crop would show as wrong or shifted pixels."""
    value_range = (0.0, 1.0) if kind == "rotation01" else (-1.0, 1.0)
    gen = OnnxGenerator.load(models[kind], value_range=value_range, multiple=32)
    run = make_backend(gen, backend, Settings(backend=backend, malloc=False))
    img = odd_photo()
    out = images.from_array(run(images.to_array(img)))
    assert out.size == img.size
    want = np.asarray(img)[..., ROTATION].astype(int)
    assert np.abs(np.asarray(out).astype(int) - want).max() <= 1


@pytest.mark.parametrize("backend", ONNX_BACKENDS)
def test_the_size_rule_pads_with_the_edge_and_crops_back(models, backend):
    gen = OnnxGenerator.load(models["convnet"], multiple=2)
    x = images.to_array(odd_photo((97, 75)))
    import onnxruntime as ort

    raw = ort.InferenceSession(str(models["convnet"]), providers=["CPUExecutionProvider"])
    with pytest.raises(Exception, match="broadcast|Add"):  # the graph itself refuses odd sizes
        raw.run(None, {"image": x})
    y = make_backend(gen, backend, Settings(backend=backend, malloc=False))(x)
    assert y.shape == x.shape
    # the same as running the graph on the edge-padded photo and cropping by hand
    padded = np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 1)), mode="edge")
    want = raw.run(None, {"image": padded})[0][:, :, :75, :97]
    assert np.abs(y - want).max() < 1e-3


def test_the_int8_pass_and_its_gate_apply_to_an_onnx_file(models, tmp_path):
    """The same int8 pass as for PyTorch weights, with OpenVINO f32 as the reference."""
    from animegan.backends import openvino

    gen = OnnxGenerator.load(models["convnet"], multiple=2)
    rt = runtime.get(Settings(hub_cache=tmp_path, calibration_side=128, malloc=False))
    int8 = openvino.load_or_build_int8(gen, rt)
    meta_file = openvino.artefact_dir(gen, rt) / "meta.json"
    assert meta_file.is_file()
    ref = openvino.float_backend(gen, "f32", rt)
    measured = [psnr(int8(x), ref(x)) for x in calibration_photos(128)]
    assert abs(min(measured) - int8.min_psnr) < 0.5  # the gate's figure is what the graph does
    xml = (meta_file.parent / "model.xml").read_text()
    quantized = "FakeQuantize" in xml
    assert quantized or int8.min_psnr == float("inf")
    auto = make_backend(gen, "auto", Settings(hub_cache=tmp_path, calibration_side=128, malloc=False),
                        background=False)
    assert (auto.name == "openvino-int8") == (int8.min_psnr >= MIN_PSNR)
    assert auto.name in {"openvino-int8", "openvino-bf16", "openvino-f32"}


def test_torch_backend_names_map_to_openvino_floats_for_onnx(models):
    gen = OnnxGenerator.load(models["rotation"])
    assert make_backend(gen, "torch-fp32", Settings(malloc=False)).name == "openvino-f32"
    with pytest.raises(ValueError, match="ONNX styles only"):
        make_backend(load_model(PROXY_WEIGHTS, "face_paint_512_v2"), "onnxruntime", Settings(malloc=False))


# -- the registry's ONNX styles, from the (local) Hub ---------------------------------------------
@pytest.fixture
def hub(models, tmp_path, monkeypatch):
    """The local Hub serving rotation models as Shinkai and Portrait Sketch (under the
    registry's repo ids and file names); Hayao and Paprika (TF export) absent."""
    with FakeHub() as server:
        for name in ("shinkai", "portrait_sketch"):
            s = STYLES[name]
            server.add_hub_file(s.repo_id, s.filename, models["rotation"].read_bytes())
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        yield server


@pytest.fixture
def pytorch_weights_only(tmp_path) -> Path:
    folder = tmp_path / "weights"
    folder.mkdir()
    for name, style in STYLES.items():
        if not style.is_onnx:
            (folder / f"{name}.pt").write_bytes(PROXY_WEIGHTS.read_bytes())
    return folder


def test_registry_onnx_styles_load_by_repo_id_and_absent_ones_are_unavailable(hub, pytorch_weights_only, tmp_path):
    from animegan.app.photo import App

    settings = Settings(weights_dir=pytorch_weights_only, backend="torch-fp32", hub_cache=tmp_path / "hub",
                        malloc=False, hf_endpoint=hub.url)
    app = App(Stylizer(settings=settings), settings)
    unavailable = app.check_weights(timeout=60)
    assert set(unavailable) == {"hayao", "paprika_onnx"}  # 404 on the Hub: the rest are fine
    assert {n for _, n in app.style_choices()} == set(STYLES) - {"hayao", "paprika_onnx"}  # not offered
    assert "`hayao.onnx`" in app.notice()  # the file it needs is named, with the right type
    assert app.stylizer.weights_path("shinkai").name == "AnimeGANv2_Shinkai.onnx"
    result = app.stylizer.run(odd_photo(), "shinkai", max_side=None)
    assert result.backend == "openvino-f32" and result.image.size == (301, 211)
    want = np.asarray(odd_photo())[..., ROTATION].astype(int)
    assert np.abs(np.asarray(result.image).astype(int) - want).max() <= 1
    assert any(n.startswith(LICENCE_NOTE) and "non-commercial use only" in n for n in result.notes)
    assert app.thumbnails.wait(60) and "shinkai" in app.thumbnails.made  # the gallery has its picture
    assert "hayao" not in app.thumbnails.made


# -- licence cards and hiding non-commercial styles ----------------------------------------------
def _cli(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "animegan", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, timeout=120)


def test_list_styles_shows_each_licence_card_and_the_setting_hides_noncommercial():
    shown = _cli("--list-styles")
    assert shown.returncode == 0
    blocks = shown.stdout.split("\n" + "shinkai".ljust(20))
    assert "non-commercial use only" in blocks[1].split("\n\n")[0]
    assert "terms not stated" in shown.stdout.split("face_paint_512_v1")[0]
    for name in STYLES:
        assert f"\n{name.ljust(20)} " in "\n" + shown.stdout
    hidden = _cli("--list-styles", ANIMEGAN_HIDE_NONCOMMERCIAL="1")
    assert hidden.returncode == 0
    noncommercial = [n for n, s in STYLES.items() if s.licence.noncommercial]
    assert {"paprika", "shinkai", "hayao", "portrait_sketch"} <= set(noncommercial)
    for name in noncommercial:
        assert name.ljust(20) not in hidden.stdout
    assert "face_paint_512_v2".ljust(20) in hidden.stdout
    assert f"{len(noncommercial)} non-commercial style(s) hidden" in hidden.stdout
    refused = _cli(str(photo("coffee.png")), "--style", "shinkai", ANIMEGAN_HIDE_NONCOMMERCIAL="1")
    assert refused.returncode == 1 and "'shinkai' is not offered here" in refused.stderr
    assert "non-commercial use only" in refused.stderr and "shinkai," not in refused.stderr
    assert "Traceback" not in refused.stderr


def test_the_app_hides_noncommercial_styles_on_the_page_and_in_the_api(stylizer):
    import gradio as gr

    from animegan import Stylizer
    from animegan.app.photo import App

    app = App(Stylizer(settings=replace(stylizer.settings, hide_noncommercial=True)))  # the policy is the core's
    names = [n for _, n in app.style_choices()]
    assert "face_paint_512_v2" in names and not {"paprika", "shinkai", "portrait_sketch"} & set(names)
    assert [n for _, n in app.face_style_choices()][1:] == [n for n in names if STYLES[n].is_face_model]
    with pytest.raises(gr.Error, match="'shinkai' is not offered here"):
        app.stylize_api({"path": str(photo("coffee.png"))}, "shinkai", "off", progress=None)
    assert "non-commercial" not in app.licence("face_paint_512_v2")
    assert "non-commercial use only" in App(stylizer).licence("paprika")


# -- faces in a second style ------------------------------------------------------------------------
@pytest.mark.slow  # 512 px photos through two styles with faces
def test_paste_with_a_face_style_differs_only_inside_the_face_squares(stylizer, models, extra_style):
    """The photo in one style, each face in another: outside the squares the pixels are
    those of the one-style result; inside they differ."""
    from animegan import faces as facelib

    extra_style("test_rotation_faces", path=models["rotation"], is_face_model=True, multiple=8)
    src = photo("astronaut.png")
    one = stylizer.run(src, "face_paint_512_v2", face_crop="paste")
    two = stylizer.run(src, "face_paint_512_v2", face_crop="paste", face_style="test_rotation_faces")
    assert one.faces == two.faces == 1
    a, b = (np.asarray(r.image).astype(int) for r in (one, two))
    inside = np.zeros(a.shape[:2], bool)
    source = images.resize(images.decode(src).rgb, two.image.size)
    for face in facelib.detect_faces(source):
        x0, y0, x1, y1 = facelib.face_square(face, source.size).box
        inside[max(0, y0):y1, max(0, x0):x1] = True
    diff = np.abs(a - b).max(axis=2)
    assert diff[~inside].max() == 0
    assert diff[inside].mean() > 10
    assert sum(n.startswith(LICENCE_NOTE) for n in two.notes) == 2  # both styles' terms
    off = stylizer.run(src, "face_paint_512_v2", face_style="test_rotation_faces")  # ignored without paste
    assert np.array_equal(np.asarray(off.image), np.asarray(stylizer.run(src, "face_paint_512_v2").image))
