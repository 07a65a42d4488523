"""python -m animegan export on a small LiteGenerator (the fast lane's check of
animegan.train.export): ONNX checked with ONNX Runtime against PyTorch at an odd size,
the float OpenVINO IR, safetensors that load back, and each folder's model card.

The published-size network (timed at 512 px, and its gated int8 build) is exported in
test_export.py (the slow tier).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import photo

from animegan import images, load_generator
from animegan.cli import main
from animegan.models import LiteGenerator


@pytest.fixture(scope="module")
def lite(tmp_path_factory):
    """A small LiteGenerator saved as a model folder (what distill and train write)."""
    torch.manual_seed(0)
    model = LiteGenerator(width=8, res_blocks=1).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    folder = tmp_path_factory.mktemp("lite")
    model.save_pretrained(folder)
    return folder


def _x(side: int) -> np.ndarray:
    img = images.decode(photo("rocket.jpg")).rgb
    return images.to_array(images.resize(img, images.fit_size(img.size, side)))


def _reference(folder, x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
        return load_generator(folder)(torch.from_numpy(x)).numpy()


def test_onnx_runs_at_other_sizes_as_pytorch_does(lite, tmp_path, capsys):
    import onnxruntime as ort

    out = tmp_path / "onnx"
    assert main(["export", str(lite), "--to", "onnx", "--out", str(out), "--no-timing"]) == 0
    assert "model.onnx" in capsys.readouterr().out
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    x = _x(77)  # 77 x 51: odd sizes, not the export's
    assert np.abs(session.run(None, {"image": x})[0] - _reference(lite, x)).max() < 1e-4
    assert json.loads((out / "export.json").read_text())["onnxruntime_max_abs_diff"] < 1e-4
    card = (out / "README.md").read_text()
    assert "lite" in card and "multiply-adds at 512 x 512" in card and "512 x 512 time" not in card


def test_the_float_openvino_ir_computes_the_same(lite, tmp_path):
    import openvino as ov

    out = tmp_path / "ov"
    assert main(["export", str(lite), "--to", "openvino", "--out", str(out), "--no-timing"]) == 0
    x = _x(64)
    compiled = ov.Core().compile_model(str(out / "model.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled.create_infer_request().infer({0: x})[0]
    assert got.shape == x.shape and np.abs(got - _reference(lite, x)).max() < 1e-3
    assert (out / "README.md").is_file()


def test_safetensors_load_back_bit_for_bit_and_a_full_folder_is_refused(lite, tmp_path):
    out = tmp_path / "st"
    assert main(["export", str(lite), "--to", "safetensors", "--out", str(out), "--no-timing"]) == 0
    x = _x(48)
    assert np.array_equal(_reference(out, x), _reference(lite, x))
    assert main(["export", str(lite), "--to", "safetensors", "--out", str(out), "--no-timing"]) == 1


def test_a_style_exported_carries_its_licence_terms(offline_weights, tmp_path):
    """A plain export of a registered style: its model card says who trained the weights,
    where they come from and their terms (here Paprika's: non-commercial use only)."""
    from animegan.styles import STYLES

    out = tmp_path / "paprika"
    assert main(["export", "paprika", "--to", "safetensors", "--out", str(out), "--no-timing"]) == 0
    card = (out / "README.md").read_text()
    lic = STYLES["paprika"].licence
    assert "## Credit and licence of the weights" in card
    assert "Paprika: non-commercial use only." in card
    for part in (lic.trained_by, lic.origin, lic.terms):
        assert part in card, part
