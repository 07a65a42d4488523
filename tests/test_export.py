"""python -m animegan export: ONNX (checked against PyTorch with ONNX Runtime), OpenVINO
float and gated int8, safetensors, the model card, and a failed upload that keeps the files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import PROXY_WEIGHTS, photo

from animegan import images, load_generator
from animegan.cli import main


def _x(side: int) -> np.ndarray:
    img = images.decode(photo("astronaut.png")).rgb
    return images.to_array(images.resize(img, images.fit_size(img.size, side)))


@pytest.mark.slow  # the published network, timed at 512 px (test_export_small.py: the fast lane's)
def test_onnx_export_matches_pytorch_and_has_a_card(tmp_path, capsys):
    import onnxruntime as ort

    out = tmp_path / "onnx"
    assert main(["export", str(PROXY_WEIGHTS), "--to", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "model.onnx" in printed and "MB" in printed and "512 x 512:" in printed
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    x = _x(77)  # odd sizes, not the export's
    with torch.inference_mode():
        ref = load_generator(PROXY_WEIGHTS)(torch.from_numpy(x)).numpy()
    assert np.abs(session.run(None, {"image": x})[0] - ref).max() < 1e-4
    card = (out / "README.md").read_text()
    assert "animeganv2" in card and "M params" not in card  # the card's own rows, not a summary line
    assert "multiply-adds at 512 x 512 | 105." in card  # the published network: 105 G
    assert "512 x 512 time" in card and "ONNX Runtime vs PyTorch" in card
    facts = json.loads((out / "export.json").read_text())
    assert facts["onnxruntime_max_abs_diff"] < 1e-4


@pytest.mark.slow  # an int8 build of the published network (test_export_small.py: the fast lane's)
def test_int8_export_is_gated_and_safetensors_round_trips(tmp_path, monkeypatch):
    monkeypatch.setenv("ANIMEGAN_CALIBRATION_SIDE", "128")
    out = tmp_path / "int8"
    assert main(["export", str(PROXY_WEIGHTS), "--to", "openvino-int8", "--out", str(out), "--no-timing"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["min_psnr"] >= 38 and (out / "model.xml").is_file()
    assert "int8 vs float32" in (out / "README.md").read_text()

    st = tmp_path / "st"
    assert main(["export", str(PROXY_WEIGHTS), "--to", "safetensors", "--out", str(st), "--no-timing"]) == 0
    x = _x(64)
    with torch.inference_mode():
        a = load_generator(PROXY_WEIGHTS)(torch.from_numpy(x))
        b = load_generator(st)(torch.from_numpy(x))
    assert torch.equal(a, b)
    assert main(["export", str(PROXY_WEIGHTS), "--to", "safetensors", "--out", str(st), "--no-timing"]) == 1


def test_bad_source_and_failed_upload_are_messages(tmp_path, monkeypatch, capsys):
    assert main(["export", str(tmp_path / "nothing.pt"), "--to", "onnx", "--out", str(tmp_path / "o")]) == 1
    assert "Weights not found" in capsys.readouterr().err
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    out = tmp_path / "up"
    code = main(["export", str(PROXY_WEIGHTS), "--to", "safetensors", "--out", str(out), "--no-timing",
                 "--push-to-hub", "me/anime"])
    err = capsys.readouterr().err
    assert code == 1 and "upload to me/anime failed" in err and (out / "model.safetensors").is_file()


@pytest.mark.parametrize("flag", ["--help"])
def test_help_names_every_kind(flag, capsys):
    with pytest.raises(SystemExit):
        main(["export", flag])
    text = capsys.readouterr().out
    assert all(kind in text for kind in ("onnx", "openvino-int8", "safetensors"))
