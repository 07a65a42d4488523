"""The generators as models: LiteGenerator's shapes and cost, config.json + model.safetensors
round trips through load_generator (folder, local Hub, published file), exports, and the
places that take a model folder (--weights, register_style, --list-styles -v)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import PROXY_WEIGHTS, photo
from hub_server import FakeHub
from PIL import Image

from animegan import Generator, LiteGenerator, Stylizer, WeightsError, load_generator, register_style
from animegan.cli import main as cli_main
from animegan.models.complexity import count
from animegan.settings import Settings
from animegan.styles import STYLES


def small_lite(**config) -> LiteGenerator:
    """A LiteGenerator with random weights everywhere (gamma too, so attention counts)."""
    torch.manual_seed(0)
    model = LiteGenerator(**{"width": 8, "res_blocks": 1, **config}).eval()
    with torch.no_grad():
        model.attention.gamma.fill_(0.7)
    return model


def same_outputs(a: torch.nn.Module, b: torch.nn.Module, shape=(1, 3, 40, 48)) -> bool:
    x = torch.rand(*shape) * 2 - 1
    with torch.no_grad():
        return torch.equal(a(x), b(x))


# --- LiteGenerator -------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 3, 64, 64), (2, 3, 37, 71), (1, 3, 5, 3), (1, 3, 130, 97)])
def test_lite_keeps_any_input_size_and_range(shape):
    model = small_lite()
    with torch.no_grad():
        out = model(torch.rand(*shape) * 2 - 1)
    assert out.shape == shape
    assert out.abs().max() <= 1 and out.std() > 0


def test_lite_has_the_described_layers():
    model = LiteGenerator()
    convs = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0]) for c in convs] == [
        (3, 32, 7, 1), (32, 64, 3, 2), (64, 128, 3, 2)]
    assert (model.attention.project.in_channels, model.attention.project.out_channels) == (128, 16)
    assert (model.attention.expand.in_channels, model.attention.expand.out_channels) == (16, 128)
    assert model.attention.gamma.item() == 0.0  # starts as the identity
    shuffles = [m for m in model.decoder.modules() if isinstance(m, torch.nn.PixelShuffle)]
    assert len(shuffles) == 2 and model.decoder[1][0].out_channels == 4 * 32
    assert model.out_layer[0].kernel_size == (7, 7) and isinstance(model.out_layer[1], torch.nn.Tanh)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def test_sub_pixel_upsampling_starts_without_a_checkerboard():
    """ICNR init: each 2 x 2 block of an upsampling layer's output starts uniform."""
    up = LiteGenerator(width=8).decoder[0]
    y = torch.nn.functional.pixel_shuffle(up[0](torch.rand(1, 32, 6, 6)), 2)
    assert torch.equal(y[..., 0::2, 0::2], y[..., 1::2, 1::2]) and torch.equal(y[..., 0::2, 0::2], y[..., 0::2, 1::2])


def test_attention_only_looks_inside_its_window():
    """Changing one window's input changes that window's attention output only."""
    attention = small_lite().attention.attention
    x = torch.rand(1, 16, 16, 16)
    y = x.clone()
    y[..., :8, :8] += 1.0
    with torch.no_grad():
        diff = (attention(x) - attention(y)).abs().sum(1)[0]
    assert diff[:8, :8].min() > 0 and diff[8:, :].max() == 0 and diff[:, 8:].max() == 0


def test_multiply_adds_are_counted_from_the_layers():
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1, groups=8))
    c = count(conv, (10, 20))
    assert c.macs == 200 * 8 * 27 + 200 * 8 * 9 and c.params == sum(p.numel() for p in conv.parameters())


def test_default_lite_needs_at_most_a_quarter_of_the_published_multiply_adds():
    big, lite = count(Generator(), 512), count(LiteGenerator(), 512)
    assert 100e9 < big.macs < 110e9  # the published figure: 105 G
    assert lite.macs <= big.macs / 4
    assert 1.0e6 < lite.params < 1.2e6 and 2.1e6 < big.params < 2.2e6
    # the attention matmuls are counted too: more windows, more multiply-adds
    assert count(LiteGenerator(res_blocks=0, window=16), 512).macs > count(LiteGenerator(res_blocks=0), 512).macs


# --- saving and loading ----------------------------------------------------------------
def test_lite_folder_round_trip(tmp_path):
    model = small_lite(width=12, res_blocks=3, window=4)
    model.save_pretrained(tmp_path / "lite")
    config = json.loads((tmp_path / "lite" / "config.json").read_text())
    assert config == {"architecture": "lite", "width": 12, "res_blocks": 3, "attn_dim": 16, "window": 4, "stem": "conv",
                      "half_convs": 1}
    loaded = load_generator(tmp_path / "lite")
    assert type(loaded) is LiteGenerator and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    assert same_outputs(model, loaded)
    assert same_outputs(model, load_generator(tmp_path / "lite" / "model.safetensors"))


def test_published_generator_keeps_its_keys_and_loads_both_ways(tmp_path):
    published = load_generator(PROXY_WEIGHTS)
    assert type(published) is Generator
    assert list(published.state_dict()) == list(torch.load(PROXY_WEIGHTS, weights_only=True))
    published.save_pretrained(tmp_path / "big")
    assert json.loads((tmp_path / "big" / "config.json").read_text()) == {"architecture": "animeganv2"}
    again = load_generator(tmp_path / "big")
    assert type(again) is Generator and same_outputs(published, again, (1, 3, 33, 47))


def test_broken_folders_say_what_is_wrong(tmp_path):
    small_lite().save_pretrained(tmp_path / "a")
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    (tmp_path / "a" / "config.json").write_text(json.dumps({**config, "res_blocks": 2}))
    with pytest.raises(WeightsError, match="does not match its config.json"):
        load_generator(tmp_path / "a")
    (tmp_path / "a" / "config.json").write_text(json.dumps({"architecture": "unet"}))
    with pytest.raises(WeightsError, match="Unknown generator architecture 'unet'"):
        load_generator(tmp_path / "a")
    (tmp_path / "b").mkdir()
    with pytest.raises(WeightsError, match="without a config.json"):
        load_generator(tmp_path / "b")
    with pytest.raises(WeightsError, match="Weights not found"):
        load_generator(tmp_path / "nothing-here.pt")


def test_hub_repo_through_the_local_hub(tmp_path, monkeypatch):
    model = small_lite()
    model.save_pretrained(tmp_path / "lite")
    with FakeHub() as hub:
        for name in ("config.json", "model.safetensors"):
            hub.add_hub_file("someone/lite-toon", name, (tmp_path / "lite" / name).read_bytes())
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
        loaded = load_generator("someone/lite-toon", rt=here())
        assert type(loaded) is LiteGenerator and same_outputs(model, loaded)
        assert hub.downloads() == 2
        with pytest.raises(WeightsError, match="someone/missing"):
            load_generator("someone/missing", rt=here())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the server is gone: the cache serves
    assert same_outputs(model, load_generator("someone/lite-toon", rt=here()))


def here():
    """A runtime for the environment as the test has set it (the process's reads it once)."""
    from animegan import runtime

    return runtime.get(Settings.from_env())


# --- export friendliness ---------------------------------------------------------------
def test_lite_exports_to_onnx_with_free_sizes_and_converts_to_openvino(tmp_path):
    import onnxruntime as ort
    import openvino as ov

    model = small_lite()
    path = tmp_path / "lite.onnx"
    axes = {0: "n", 2: "h", 3: "w"}
    torch.onnx.export(model, (torch.rand(1, 3, 40, 56),), str(path), input_names=["image"], output_names=["anime"],
                      dynamic_axes={"image": axes, "anime": axes}, dynamo=False, opset_version=17)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    compiled = ov.Core().compile_model(ov.convert_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    for shape in [(1, 3, 40, 56), (2, 3, 37, 71)]:
        x = torch.rand(*shape) * 2 - 1
        with torch.no_grad():
            ref = model(x).numpy()
        assert np.abs(session.run(None, {"image": x.numpy()})[0] - ref).max() < 1e-4
        assert np.abs(compiled(x.numpy())[0] - ref).max() < 1e-4


# --- where users give a model folder ------------------------------------------------------
def test_stylizer_and_registered_style_take_a_model_folder(tmp_path):
    small_lite().save_pretrained(tmp_path / "lite")
    out = Stylizer(weights_file=tmp_path / "lite", backend="torch-fp32").run(photo("chelsea.png"), max_side=96)
    assert out.size == (96, 64) and np.asarray(out.image).std() > 0
    register_style("my_lite", path=tmp_path / "lite", title="My lite")
    try:
        result = Stylizer("my_lite", backend="torch-fp32").run(photo("coffee.png"), max_side=80)
        assert result.image.size == (80, 53)
        assert type(Stylizer("my_lite", backend="torch-fp32").backend().model) is LiteGenerator
    finally:
        STYLES.pop("my_lite")


def test_registered_hub_model_repo(tmp_path, monkeypatch):
    small_lite().save_pretrained(tmp_path / "lite")
    with FakeHub() as hub:
        for name in ("config.json", "model.safetensors"):
            hub.add_hub_file("someone/lite-toon", name, (tmp_path / "lite" / name).read_bytes())
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        style = register_style("hub_lite", repo_id="someone/lite-toon")
        try:
            assert style.source == "hf://someone/lite-toon"
            img = Stylizer("hub_lite", settings=Settings.from_env(), backend="torch-fp32").run(
                Image.new("RGB", (64, 48), "red"), max_side=64).image
            assert img.size == (64, 48)
        finally:
            STYLES.pop("hub_lite")


def test_cli_weights_folder_and_list_styles_counts(tmp_path, capsys):
    small_lite().save_pretrained(tmp_path / "lite")
    assert cli_main([str(photo("rocket.jpg")), "-o", str(tmp_path / "out"), "--weights", str(tmp_path / "lite"),
                     "--max-side", "64", "--backend", "torch-fp32"]) == 0
    assert Image.open(tmp_path / "out" / "rocket_anime.png").size == (64, 43)
    assert cli_main(["--list-styles", "-v"]) == 0
    listing = capsys.readouterr().out
    assert listing.count("2.14 M params, 105.1 G multiply-adds at 512 x 512") == len(STYLES)
