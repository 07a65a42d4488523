"""The network against the published layout and an independent restatement of its maths."""

from __future__ import annotations

import json
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from conftest import DATA, PROXY_WEIGHTS

from animegan import Generator

MANIFEST = json.loads((DATA / "animeganv2_state_dict.json").read_text())


def test_state_dict_matches_published_manifest():
    sd = Generator().state_dict()
    assert list(sd) == list(MANIFEST["state_dict"])  # same keys, same order
    assert {k: list(v.shape) for k, v in sd.items()} == MANIFEST["state_dict"]
    assert sum(v.numel() for v in sd.values()) == MANIFEST["parameters"] == 2_143_552


def test_strict_load_of_a_checkpoint_written_as_published(tmp_path):
    torch.manual_seed(0)
    published = OrderedDict((k, torch.randn(shape, dtype=torch.float32)) for k, shape in MANIFEST["state_dict"].items())
    path = tmp_path / "face_paint_512_v2.pt"
    torch.save(published, path)
    model = Generator()
    model.load_state_dict(torch.load(path, weights_only=True), strict=True)
    for k, v in model.state_dict().items():
        assert torch.equal(v, published[k])


# --- an independent restatement of the layer table, straight from the state_dict -----
def _cnl(x, sd, key, stride=1, pad=(1, 1, 1, 1), groups=1):
    x = F.pad(x, pad, mode="reflect")
    x = F.conv2d(x, sd[f"{key}.1.weight"], sd.get(f"{key}.1.bias"), stride=stride, groups=groups)
    x = F.group_norm(x, 1, sd[f"{key}.2.weight"], sd[f"{key}.2.bias"], eps=1e-5)
    return F.leaky_relu(x, 0.2)


def _irb(x, sd, key):
    hidden = sd[f"{key}.layers.0.1.weight"].shape[0]
    y = _cnl(x, sd, f"{key}.layers.0", pad=(0, 0, 0, 0))
    y = _cnl(y, sd, f"{key}.layers.1", groups=hidden)
    y = F.conv2d(y, sd[f"{key}.layers.2.weight"])
    y = F.group_norm(y, 1, sd[f"{key}.layers.3.weight"], sd[f"{key}.layers.3.bias"], eps=1e-5)
    return x + y if x.shape == y.shape else y


def reference_forward(x, sd):
    down = (0, 1, 0, 1)
    x0 = x
    x = _cnl(x, sd, "block_a.0", pad=(3, 3, 3, 3))
    x = _cnl(x, sd, "block_a.1", stride=2, pad=down)
    x = _cnl(x, sd, "block_a.2")
    half = x.shape[-2:]
    x = _cnl(x, sd, "block_b.0", stride=2, pad=down)
    x = _cnl(x, sd, "block_b.1")
    x = _cnl(x, sd, "block_c.0")
    for i in range(1, 5):
        x = _irb(x, sd, f"block_c.{i}")
    x = _cnl(x, sd, "block_c.5")
    x = F.interpolate(x, size=half, mode="bilinear", align_corners=True)
    x = _cnl(x, sd, "block_d.0")
    x = _cnl(x, sd, "block_d.1")
    x = F.interpolate(x, size=x0.shape[-2:], mode="bilinear", align_corners=True)
    x = _cnl(x, sd, "block_e.0")
    x = _cnl(x, sd, "block_e.1")
    x = _cnl(x, sd, "block_e.2", pad=(3, 3, 3, 3))
    return torch.tanh(F.conv2d(x, sd["out_layer.0.weight"]))


@pytest.mark.parametrize("size", [(64, 64), (37, 53), (100, 31), (16, 16), (129, 96)])
def test_forward_matches_the_layer_table(size):
    sd = torch.load(PROXY_WEIGHTS, weights_only=True)
    model = Generator().eval()
    model.load_state_dict(sd, strict=True)
    torch.manual_seed(1)
    x = torch.rand(2, 3, *size) * 2 - 1
    with torch.inference_mode():
        ours = model(x)
        ref = reference_forward(x, sd)
    assert ours.shape == x.shape
    assert (ours - ref).abs().max().item() < 1e-4
    assert ours.abs().max() <= 1.0
