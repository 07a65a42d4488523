"""GAN training (AnimeGANv2 recipe): discriminator, losses, anime data prep and the three stages.

Real components at tiny sizes: the photos are the real examples, the "anime" frames are
made from them here with OpenCV (edge-preserving stylization, a small palette and dark
outlines), the perceptual network is VGG16 with stand-in weights placed in torch's cache.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from conftest import PHOTOS, photo
from PIL import Image

from animegan.models.discriminator import Discriminator
from animegan.train import TrainingError, anime_data, gan_losses

# ---------------------------------------------------------------- test data


def cartoon(rgb: np.ndarray) -> np.ndarray:
    """A crude anime look: flattened shading, 12 colours, dark outlines."""
    flat = cv2.stylization(rgb, sigma_s=60, sigma_r=0.45)
    pal = np.asarray(Image.fromarray(flat).quantize(12, method=Image.Quantize.MEDIANCUT).convert("RGB")).copy()
    edges = cv2.dilate(cv2.Canny(cv2.cvtColor(flat, cv2.COLOR_RGB2GRAY), 60, 120), np.ones((2, 2), np.uint8))
    pal[edges > 0] = (30, 20, 30)
    return pal


@pytest.fixture(scope="module")
def anime_dir(tmp_path_factory):
    """Six "anime frames" made from the real photos (two crops of one of them, in a subfolder)."""
    folder = tmp_path_factory.mktemp("anime")
    for i, name in enumerate(PHOTOS):
        rgb = np.asarray(Image.open(photo(name)).convert("RGB").resize((160, 120), Image.Resampling.BOX))
        Image.fromarray(cartoon(rgb)).save(folder / f"frame{i}.png")
    (folder / "more").mkdir()
    big = np.asarray(Image.open(photo("coffee.png")).convert("RGB"))
    Image.fromarray(cartoon(big[:200, :300])).save(folder / "more" / "closeup.jpg")
    return folder


# ---------------------------------------------------------------- discriminator


def test_discriminator_is_a_spectrally_normalised_patch_critic():
    torch.manual_seed(0)
    d = Discriminator(width=16)
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 7
    for conv in convs:
        assert torch.nn.utils.parametrize.is_parametrized(conv, "weight")
    x = torch.randn(2, 3, 32, 24)
    for _ in range(30):  # the power iteration converges as training runs forward passes
        out = d(x)
    assert out.shape == (2, 1, 8, 6)  # one logit per patch, 1/4 resolution
    d.eval()
    for conv in convs:
        sigma = torch.linalg.matrix_norm(conv.weight.detach().reshape(conv.out_channels, -1), ord=2)
        assert abs(float(sigma) - 1.0) < 0.05, float(sigma)
        raw = conv.parametrizations.weight.original.detach().reshape(conv.out_channels, -1)
        assert float(torch.linalg.matrix_norm(raw, ord=2)) != pytest.approx(1.0, abs=0.05)


# ---------------------------------------------------------------- losses


def test_lsgan_losses_reach_zero_only_at_their_targets():
    ones, zeros = torch.ones(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)
    assert float(gan_losses.lsgan_d_loss(ones, zeros, zeros, zeros)) == 0.0
    assert float(gan_losses.lsgan_g_loss(ones)) == 0.0
    # A discriminator fooled by each kind of fake pays that kind's weight.
    w = (1.2, 1.3, 1.4, 0.8)
    assert float(gan_losses.lsgan_d_loss(zeros, zeros, zeros, zeros, w)) == pytest.approx(1.2)
    assert float(gan_losses.lsgan_d_loss(ones, ones, zeros, zeros, w)) == pytest.approx(1.3)
    assert float(gan_losses.lsgan_d_loss(ones, zeros, ones, zeros, w)) == pytest.approx(1.4)
    assert float(gan_losses.lsgan_d_loss(ones, zeros, zeros, ones, w)) == pytest.approx(0.8)
    assert float(gan_losses.lsgan_g_loss(zeros)) == 1.0


def test_style_loss_compares_texture_statistics_not_layout():
    torch.manual_seed(0)
    feat = torch.relu(torch.randn(2, 8, 10, 12))
    # Shuffling pixels keeps the Gram matrix: same texture statistics, no style loss.
    perm = torch.randperm(120)
    shuffled = feat.reshape(2, 8, 120)[..., perm].reshape(2, 8, 10, 12)
    assert float(gan_losses.style_loss(shuffled, feat)) < 1e-6
    g = gan_losses.gram(feat)
    assert torch.allclose(g[0], feat[0].reshape(8, -1) @ feat[0].reshape(8, -1).T / (8 * 120))
    other = torch.relu(torch.randn(2, 8, 10, 12)) * 2
    assert float(gan_losses.style_loss(other, feat)) > 0.01
    # Unequal batches: compared with the anime batch's mean Gram matrix.
    assert float(gan_losses.style_loss(feat[:1], torch.cat([feat[:1]] * 3))) < 1e-6
    mean_gram = (g[0] + g[1]) / 2
    expected = (g - mean_gram).abs().mean()
    loss = gan_losses.style_loss(feat, torch.cat([feat, feat, feat[:1], feat[1:]]))
    assert float(loss) == pytest.approx(float(expected))


def test_colour_losses():
    torch.manual_seed(0)
    img = torch.rand(2, 3, 40, 40) * 2 - 1
    assert float(gan_losses.colour_histogram_loss(img, img)) < 1e-6
    assert float(gan_losses.yuv_colour_loss(img, img)) == 0.0
    # The histogram distance grows with the colour shift and does not care where colours are.
    near = gan_losses.colour_histogram_loss((img + 0.1).clamp(-1, 1), img)
    far = gan_losses.colour_histogram_loss((img + 0.4).clamp(-1, 1), img)
    assert 0 < float(near) < float(far)
    flipped = img.flip(-1).flip(-2)
    assert float(gan_losses.colour_histogram_loss(flipped, img)) < 1e-5
    # Gradients reach the pixels.
    x = img.clone().requires_grad_(True)
    gan_losses.colour_histogram_loss(x, img.roll(1, dims=1)).backward()
    assert x.grad.abs().sum() > 0
    # YUV: white is Y = 1, grays carry no chroma.
    yuv = gan_losses.rgb_to_yuv(torch.tensor([1.0, 0.0, -1.0]).reshape(3, 1, 1, 1).expand(3, 3, 2, 2))
    assert torch.allclose(yuv[0, 0], torch.ones(2, 2))
    assert torch.allclose(yuv[:, 1:], torch.zeros(3, 2, 2, 2), atol=1e-6)


def test_total_variation():
    flat = torch.full((1, 3, 8, 8), 0.3)
    assert float(gan_losses.tv_loss(flat)) == 0.0
    checker = (torch.arange(8).reshape(8, 1) + torch.arange(8)) % 2 * 2.0 - 1.0
    assert float(gan_losses.tv_loss(checker.expand(1, 3, 8, 8))) == pytest.approx(4.0)  # 0.5 * (4 + 4)


def test_presets_carry_the_published_weights():
    seed = gan_losses.PRESETS["seed"]
    assert (seed.adversarial, seed.content, seed.style, seed.colour_hist, seed.face_content) == (1.0, 10, 1, 0.5, 15)
    assert seed.lr_g == 2e-4 and seed.halve_every == 10
    published = {k: gan_losses.PRESETS[k] for k in ("hayao", "shinkai", "paprika")}
    assert [p.content for p in published.values()] == [1.5, 1.2, 2.0]
    assert [p.style for p in published.values()] == [2.5, 2.0, 0.6]
    assert [p.colour_yuv for p in published.values()] == [15, 10, 50]
    assert all(p.adversarial == 300 and (p.lr_g, p.lr_d) == (2e-5, 4e-5) for p in published.values())


# ---------------------------------------------------------------- anime data prep


def test_anime_prep_gray_and_edge_smoothed_copies_cached_once(anime_dir, tmp_path):
    frames = anime_data.prepare(anime_dir, tmp_path, side=96)
    assert not frames.reused and len(frames) == 6
    smoothed_pixels = 0
    for i in range(len(frames)):
        colour, gray, smooth = (frames.image(k, i) for k in ("colour", "gray", "smooth"))
        assert min(colour.shape[:2]) == 96 and colour.shape == gray.shape == smooth.shape
        assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 0] == gray[..., 2]).all()
        assert np.array_equal(gray[..., 0], cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY))
        # Smoothing touches the dilated Canny edges and nothing else.
        edges = cv2.Canny(cv2.cvtColor(colour, cv2.COLOR_RGB2GRAY), 100, 200)
        band = cv2.dilate(edges, np.ones((5, 5), np.uint8)) > 0
        changed = (smooth != colour).any(-1)
        assert not changed[~band].any()
        assert changed[band].mean() > 0.3  # most edge pixels really were blurred
        smoothed_pixels += int(changed.sum())
    assert smoothed_pixels > 1000
    assert (tmp_path / frames.folder.name / "manifest.json").is_file()

    stamp = (frames.folder / "smooth" / frames.names[0]).stat().st_mtime_ns
    again = anime_data.prepare(anime_dir, tmp_path, side=96)
    assert again.reused and again.folder == frames.folder
    assert (frames.folder / "smooth" / frames.names[0]).stat().st_mtime_ns == stamp
    # Other settings or changed frames make a new preparation.
    assert anime_data.prepare(anime_dir, tmp_path, side=64).folder != frames.folder

    batch = frames.sample(3, 64, np.random.default_rng(0))
    assert {k: tuple(v.shape) for k, v in batch.items()} == {k: (3, 3, 64, 64) for k in batch}
    assert all(-1 <= float(v.min()) and float(v.max()) <= 1 for v in batch.values())
    assert torch.equal(batch["anime_gray"][:, 0], batch["anime_gray"][:, 2])
    assert not torch.equal(batch["anime"][:, 0], batch["anime"][:, 2])


def test_anime_prep_says_what_is_wrong(tmp_path):
    with pytest.raises(TrainingError, match="No images found"):
        anime_data.prepare(tmp_path, tmp_path / "cache")
    with pytest.raises(TrainingError, match="not a folder"):
        anime_data.prepare(tmp_path / "missing", tmp_path / "cache")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(TrainingError, match="broken.png"):
        anime_data.prepare(tmp_path, tmp_path / "cache")


# ---------------------------------------------------------------- schedule


def test_stage_plan_from_epochs_and_minutes():
    import argparse

    from animegan.train import gan

    parser = argparse.ArgumentParser()
    gan.add_arguments(parser)
    base = ["--photos", "p", "--anime", "a", "--out", "o"]
    plan = gan.Plan.make(parser.parse_args([*base, "--epochs", "101"]), epoch_steps=50)
    assert plan.end_steps == {"init": 500, "adversarial": 4800, "finetune": 5050}
    assert plan.end_seconds == dict.fromkeys(gan.STAGES)
    plan = gan.Plan.make(parser.parse_args([*base, "--minutes", "20"]), epoch_steps=50)
    assert plan.end_seconds == {"init": 180, "adversarial": 1080, "finetune": 1200}
    assert plan.stage_done("init", 10, 180.0) and plan.stage_done("init", 500, 1.0)
    assert not plan.stage_done("adversarial", 10**6, 1000.0)
    with pytest.raises(TrainingError, match="less than --init-epochs"):
        gan.Plan.make(parser.parse_args([*base, "--epochs", "12"]), epoch_steps=50)
    assert [gan.learning_rate(2e-4, e, 10) for e in (0, 9, 10, 25)] == [2e-4, 2e-4, 1e-4, 5e-5]
    assert gan.learning_rate(2e-5, 99, 0) == 2e-5


# ---------------------------------------------------------------- training runs


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    """One cache for all runs here: anime frames prepared and faces found once."""
    return tmp_path_factory.mktemp("gan-cache")


def train(out, anime_dir, cache, *extra: str) -> int:
    from animegan.cli import main

    return main([
        "train", "--photos", str(photo("astronaut.png").parent), "--anime", str(anime_dir), "--out", str(out),
        "--cache", str(cache), "--size", "32", "--batch", "2", "--epoch-steps", "2", "--d-width", "16",
        "--log-every", "1", "--sample-every", "2", "--quiet", *extra,
    ])


def tensors(folder) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


@pytest.mark.slow
def test_three_stages_resume_at_their_step_and_stage3_trains_only_attention_and_last_layer(
    vgg_weights, anime_dir, shared_cache, tmp_path
):
    from animegan import load_generator
    from animegan.models import LiteGenerator
    from animegan.train import gan
    from animegan.train.loop import RunFolder

    out = tmp_path / "run"
    lite = ["--arch", "lite", "--width", "8", "--res-blocks", "1", "--init-epochs", "1", "--epochs", "3",
            "--finetune-epochs", "1"]
    # 2 init steps, 2 adversarial, 2 fine-tune; stop in the middle of stage 2.
    assert train(out, anime_dir, shared_cache, *lite, "--steps", "3") == 0
    folder = RunFolder(out)
    state = torch.load(folder.checkpoint_path, weights_only=False)
    assert (state["step"], state["stage"]) == (3, "adversarial")
    assert state["optimizers"]["stage"] == "adversarial"
    assert [(m["step"], m["stage"]) for m in folder.read_metrics()] == [
        (1, "init"), (2, "init"), (3, "adversarial")]
    assert (out / "samples" / "step_000002.png").is_file()

    # Resume: the rest of stage 2, then stop as stage 3 begins (weights before fine-tuning).
    assert train(out, anime_dir, shared_cache, *lite, "--steps", "4") == 0
    state = torch.load(folder.checkpoint_path, weights_only=False)
    assert (state["step"], state["stage"]) == (4, "finetune")
    before = {k: v.clone() for k, v in tensors(out).items()}

    assert train(out, anime_dir, shared_cache, *lite) == 0
    metrics = folder.read_metrics()
    assert [(m["step"], m["stage"]) for m in metrics] == [
        (1, "init"), (2, "init"), (3, "adversarial"), (4, "adversarial"), (5, "finetune"), (6, "finetune")]
    for m in metrics[2:]:
        for key in ("adv", "content", "style", "colour_hist", "d_total", "d_real", "d_fake", "d_gray", "d_smooth"):
            assert np.isfinite(m[key]), (m["step"], key)
        assert m["lr_g"] == m["lr_d"] == 2e-4 and "colour_yuv" not in m  # seed preset
    assert metrics[0]["content"] > 0 and "adv" not in metrics[0]

    # Stage 3: every frozen tensor bit-identical, every trainable one moved.
    after = tensors(out)
    model = LiteGenerator(width=8, res_blocks=1)
    trainable = set(gan.finetune_names(model, "lite"))
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith(("attention.", "out_layer."))}
    assert "attention.gamma" in trainable and len(trainable) < len(after) / 2
    for name, value in after.items():
        if name in trainable:
            assert not torch.equal(value, before[name]), f"{name} should have trained"
        else:
            assert torch.equal(value, before[name]), f"{name} should be frozen"

    # The run folder is a model: it loads, and the command line stylizes with it.
    generator = load_generator(out)
    assert isinstance(generator, LiteGenerator) and generator.config["width"] == 8
    sheet = Image.open(out / "samples" / "latest.png")
    assert sheet.width == 2 * 32  # photo | output, each 32 px wide
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "animegan", str(photo("astronaut.png")), "--weights", str(out),
         "-o", str(tmp_path / "styled"), "--max-side", "96"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    styled = Image.open(tmp_path / "styled" / "astronaut_anime.png")
    assert styled.size == (96, 96)


@pytest.mark.slow
def test_published_network_with_a_published_preset(vgg_weights, anime_dir, shared_cache, tmp_path, capsys):
    from animegan.models import Generator
    from animegan.train import gan
    from animegan.train.loop import RunFolder

    out = tmp_path / "v2"
    v2 = ["--arch", "animeganv2", "--preset", "hayao", "--init-epochs", "0", "--epochs", "2",
          "--finetune-epochs", "1", "--epoch-steps", "1", "--precision", "fp32"]
    assert train(out, anime_dir, shared_cache, *v2, "--steps", "1") == 0
    before = tensors(out)
    assert train(out, anime_dir, shared_cache, *v2) == 0
    after = tensors(out)
    metrics = RunFolder(out).read_metrics()
    assert [(m["step"], m["stage"]) for m in metrics] == [(1, "adversarial"), (2, "finetune")]
    first = metrics[0]
    assert (first["lr_g"], first["lr_d"]) == (2e-5, 4e-5)
    assert all(np.isfinite(first[k]) for k in ("adv", "content", "style", "colour_yuv", "tv"))
    assert "colour_hist" not in first
    trainable = set(gan.finetune_names(Generator(), "animeganv2"))
    assert trainable and all(n.startswith(("block_e.", "out_layer.")) for n in trainable)
    changed = {n for n in after if not torch.equal(after[n], before[n])}
    assert changed == trainable & set(after)
    # Resuming with another network is refused, with the way out.
    assert train(out, anime_dir, shared_cache, *v2[2:], "--arch", "lite") == 1
    assert "holds a run with --arch animeganv2" in capsys.readouterr().err
    # --restart: a fresh run in the same folder, not a resume.
    assert train(out, anime_dir, shared_cache, *v2, "--restart", "--steps", "1") == 0
    assert [(m["step"], m["stage"]) for m in RunFolder(out).read_metrics()] == [(1, "adversarial")]


def test_training_says_what_is_wrong(vgg_weights, anime_dir, shared_cache, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    assert train(out, anime_dir, shared_cache) == 1
    assert "--minutes M, --epochs E" in capsys.readouterr().err
    assert train(out, tmp_path / "nothing", shared_cache, "--steps", "1") == 1
    assert "not a folder" in capsys.readouterr().err
    # Without the VGG16 weights: stop before training, saying where to put them.
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    assert train(out, anime_dir, shared_cache, "--steps", "1", "--width", "8") == 1
    err = capsys.readouterr().err
    assert "vgg16-397923af.pth" in err and "Traceback" not in err
    assert not (out / "model.safetensors").exists()
