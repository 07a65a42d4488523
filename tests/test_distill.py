"""Distillation and the shared training pieces, on the real code path at tiny sizes: the
proxy weights as teacher, the test photos, torchvision's VGG16 loading path (a stand-in
file in a temporary torch cache), MTCNN for the faces."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from conftest import PHOTOS, PROXY_WEIGHTS, photo
from PIL import Image

from animegan import LiteGenerator, load_generator
from animegan.cli import main as cli_main
from animegan.train import TrainingError
from animegan.train.data import Augment, CropSampler, load_photos
from animegan.train.loop import Budget, RunFolder
from animegan.train.perceptual import VGG16_URL, VGGFeatures, vgg16_cache_path, weighted_l1


@pytest.fixture(scope="module")
def photos(photo_dir, tmp_path_factory):
    """The test photos at 256 px with their MTCNN faces (found once for the module)."""
    cache = tmp_path_factory.mktemp("faces") / "faces.json"
    found = PhotoList(load_photos(photo_dir, photo_side=256, cache_file=cache))
    found.cache = cache
    return found


class PhotoList(list):
    cache = None


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for name in PHOTOS:
        shutil.copy(photo(name), folder / name)
    (folder / "notes.txt").write_text("not a photo")  # ignored: not an image type
    return folder


# --- perceptual features ------------------------------------------------------------------
def test_without_vgg_weights_training_stops_and_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for var in ("https_proxy", "HTTPS_PROXY"):  # no network here: fail at once, not after a DNS timeout
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    with pytest.raises(TrainingError) as info:
        VGGFeatures()
    message = str(info.value)
    assert VGG16_URL in message and str(tmp_path / "torch" / "hub" / "checkpoints" / "vgg16-397923af.pth") in message
    assert "random" in message


def test_vgg_features_load_through_torchvision_and_stay_frozen(vgg_weights):
    assert vgg16_cache_path() == vgg_weights / "hub" / "checkpoints" / "vgg16-397923af.pth"
    vgg = VGGFeatures()
    vgg.train()
    assert not vgg.training and not any(p.requires_grad for p in vgg.parameters())
    x = (torch.rand(2, 3, 32, 48) * 2 - 1).requires_grad_()
    features = vgg(x)
    assert features.shape == (2, 256, 8, 12)  # relu3_3: 256 channels at 1/4 size
    assert features.min() >= 0  # after a ReLU
    features.mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # gradients reach the image
    # the stand-in's first conv is what torchvision loaded from the file
    saved = torch.load(vgg16_cache_path(), weights_only=True)["features.0.weight"]
    assert torch.equal(vgg.features[0].weight, saved)


def test_weighted_l1_weighs_faces_relative_to_the_rest():
    a, b = torch.zeros(1, 1, 4, 4), torch.ones(1, 1, 4, 4)
    b[..., :2, :] = 3.0  # error 3 in the top half, 1 in the bottom half
    w = torch.ones(1, 1, 4, 4)
    w[..., :2, :] = 1.5
    assert weighted_l1(a, b) == pytest.approx(2.0)
    assert weighted_l1(a, b, w) == pytest.approx((3 * 1.5 + 1) / 2.5)
    assert weighted_l1(a, b, w, normalize=False) == pytest.approx((3 * 1.5 + 1) / 2)


# --- photos and face-priority crops ------------------------------------------------------
def test_face_priority_batches_and_weight_maps(photos, photo_dir, tmp_path):
    assert sorted(p.path.name for p in photos) == sorted(PHOTOS)
    with_faces = {p.path.name for p in photos if p.faces}
    assert with_faces == {"astronaut.png", "camera.png"}  # MTCNN on the real photos
    # faces are found once per photo: a second load reads them from the cache file
    cache = json.loads(photos.cache.read_text())
    assert len(cache) == len(PHOTOS)
    chelsea = next(k for k in cache if "chelsea.png" in k)
    cache[chelsea] = [[10.0, 10.0, 60.0, 60.0]]
    (tmp_path / "faces.json").write_text(json.dumps(cache))
    again = load_photos(photo_dir, photo_side=256, cache_file=tmp_path / "faces.json")
    assert [p.faces for p in again if p.path.name == "chelsea.png"] == [[(10.0, 10.0, 60.0, 60.0)]]
    sampler = CropSampler(photos, 64, face_fraction=0.3, face_weight=1.5, seed=1)
    for n in (4, 8, 10):
        batch = sampler.batch(n)
        assert batch.images.shape == (n, 3, 64, 64) and batch.weights.shape == (n, 1, 64, 64)
        assert -1 <= batch.images.min() and batch.images.max() <= 1
        assert sum(batch.is_face) >= math.ceil(0.3 * n)
        for is_face, w in zip(batch.is_face, batch.weights, strict=True):
            if is_face:  # the face box inside the crop is weighted 1.5x
                assert (w == 1.5).float().mean() > 0.02
            assert set(w.unique().tolist()) <= {1.0, 1.5}
    no_faces = CropSampler([p for p in photos if not p.faces], 64, seed=2).batch(8)
    assert not any(no_faces.is_face) and torch.all(no_faces.weights == 1)


def test_crops_jitter_scale_and_flip(photos):
    coffee = [p for p in photos if p.path.name == "coffee.png"]
    sampler = CropSampler(coffee, 32, scale=(0.5, 2.0), seed=3)
    crops = sampler.batch(16).images
    assert len({tuple(c.flatten()[:64].tolist()) for c in crops}) == 16  # all different
    state = sampler.state_dict()
    again = sampler.batch(4).images
    sampler.load_state_dict(state)
    assert torch.equal(sampler.batch(4).images, again)  # resumable: same crops after restoring


def test_unreadable_photos_are_skipped_and_an_empty_folder_is_an_error(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(TrainingError, match="No readable photos"):
        load_photos(tmp_path, detect=False)
    with pytest.raises(TrainingError, match="not found"):
        load_photos(tmp_path / "missing", detect=False)


def test_budget_and_run_folder_refuse_nonsense(tmp_path):
    with pytest.raises(TrainingError, match="--minutes M or --steps N"):
        Budget()
    RunFolder(tmp_path / "run").prepare({}, resume=False)
    RunFolder(tmp_path / "run").log(step=1)
    with pytest.raises(TrainingError, match="already holds a run"):
        RunFolder(tmp_path / "run").prepare({}, resume=False)


# --- distillation end to end ------------------------------------------------------------
def distill(out, steps, photo_dir, *extra) -> int:
    return cli_main(["distill", "--teacher-weights", str(PROXY_WEIGHTS), "--photos", str(photo_dir),
                     "--out", str(out), "--steps", str(steps), "--size", "32", "--batch", "4", "--pool", "12",
                     "--refresh", "1", "--perceptual", "0.1",
                     "--width", "16", "--res-blocks", "1", "--photo-side", "128", "--sample-every", "12",
                     "--log-every", "4", "--checkpoint-every", "12", "--device", "cpu", "--quiet", *extra])


@pytest.mark.slow
def test_distill_learns_the_teacher_saves_resumes_and_stylizes(vgg_weights, photo_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert distill(out, 24, photo_dir, "--lr", "3e-3") == 0
    for name in ("config.json", "model.safetensors", "metrics.jsonl", "run.json", "checkpoints/last.pt",
                 "samples/step_000012.png", "samples/latest.png"):
        assert (out / name).is_file(), name
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [m for m in metrics if "loss" in m]
    assert [m["step"] for m in losses] == list(range(4, 25, 4))
    assert all(m["perceptual"] > 0 for m in losses)  # the VGG term is on (stand-in weights)
    first, last = losses[0]["l1"], np.mean([m["l1"] for m in losses[-2:]])
    assert last < 0.8 * first, (first, last)

    # the sample sheet: photo | teacher | student rows, a real picture
    sheet = Image.open(out / "samples" / "latest.png")
    assert sheet.width == 3 * 32 and sheet.height > 2 * 32
    assert np.asarray(sheet.convert("L")).std() > 10

    student = load_generator(out)
    assert type(student) is LiteGenerator and student.config["width"] == 16
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=False)["step"] == 24

    # resume: the same command with a larger budget goes on from step 24
    assert distill(out, 32, photo_dir) == 0
    assert "resuming at step 24" in capsys.readouterr().out
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "loss" in m][-3:] == [24, 28, 32]
    assert torch.load(out / "checkpoints" / "last.pt", weights_only=False)["step"] == 32

    # the folder is a model for the command line
    assert cli_main([str(photo("astronaut.png")), "-o", str(tmp_path / "anime"), "--weights", str(out),
                     "--max-side", "64", "--backend", "torch-fp32"]) == 0
    result = Image.open(tmp_path / "anime" / "astronaut_anime.png")
    assert result.size == (64, 64) and np.asarray(result).std() > 5


def test_distill_bad_input_is_a_message_not_a_traceback(tmp_path, photo_dir, capsys):
    assert cli_main(["distill", "--teacher", "nope", "--photos", str(photo_dir), "--out", str(tmp_path / "o"),
                     "--steps", "1", "--perceptual", "0"]) == 1
    assert "Unknown style 'nope'" in capsys.readouterr().err
    assert cli_main(["distill", "--teacher-weights", str(PROXY_WEIGHTS), "--photos", str(tmp_path / "none"),
                     "--out", str(tmp_path / "o"), "--steps", "1", "--perceptual", "0"]) == 1
    assert "Photo folder not found" in capsys.readouterr().err


def test_distill_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        cli_main(["distill", "--help"])
    text = capsys.readouterr().out
    assert "examples:" in text and "--teacher-weights" in text and "--weights lite_face" in text


# --- issue 23 and 22: defaults that fit the device, varied crops, budgets kept --------------------
def test_varied_crops_stay_crops_of_the_photos_and_are_resumable(photos):
    plain = CropSampler(photos, 48, seed=5).batch(12).images
    sampler = CropSampler(photos, 48, scale=(0.3, 1.5), seed=5, augment=Augment(colour=1.0, rotate=1.0, blur=0.5,
                                                                                   noise=0.5, jpeg=0.5, mix=0.5))
    state = sampler.state_dict()
    varied = sampler.batch(12)
    assert varied.images.shape == plain.shape and -1 <= varied.images.min() and varied.images.max() <= 1
    assert not torch.equal(varied.images, plain)
    assert varied.images.std() > 0.1  # pictures, not blank squares
    sampler.load_state_dict(state)
    assert torch.equal(sampler.batch(12).images, varied.images)


def test_defaults_fit_the_device_and_the_budget_and_say_why(photos):
    from animegan.train.distill import LADDER, fit_to_device
    from animegan.train.loop import Device

    student = LiteGenerator(width=8, res_blocks=0, stem="unshuffle")
    cpu = Device(torch.device("cpu"), None)
    label = lambda x: x.clone()  # noqa: E731 - a teacher that costs nothing
    none = dict(size=None, batch=None, pool=None, refresh=None, perceptual=0.0)
    short = fit_to_device(none, student, cpu, label, Budget(minutes=0.5))
    long = fit_to_device(none, student, cpu, label, Budget(minutes=600))
    assert (short.size, short.batch) in LADDER and (long.size, long.batch) in LADDER
    assert long.size * long.size * long.batch >= short.size * short.size * short.batch
    assert short.pool >= 2 * short.batch and 0 < short.refresh <= short.batch
    assert any("measured here" in r for r in short.reasons) and any("crops" in r for r in short.reasons)
    given = fit_to_device(dict(size=40, batch=3, pool=9, refresh=0.5, perceptual=0.0), student, cpu, label,
                          Budget(steps=5))
    assert (given.size, given.batch, given.pool, given.refresh) == (40, 3, 9, 0.5)  # as given, nothing measured


def test_a_missing_vgg16_stops_before_any_work_and_names_perceptual_0(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    for var in ("https_proxy", "HTTPS_PROXY"):  # no network here: fail at once
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    out = tmp_path / "run"
    # the teacher does not even exist: the VGG16 check comes first, before any work
    assert cli_main(["distill", "--teacher", "nope", "--photos", str(tmp_path), "--out", str(out),
                     "--minutes", "1", "--perceptual", "0.1"]) == 1
    err = capsys.readouterr().err
    assert "--perceptual 0" in err and "VGG16" in err and "Unknown style" not in err
    assert not out.exists()


def test_a_budget_spent_before_the_first_step_saves_no_model(photo_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = cli_main(["distill", "--teacher-weights", str(PROXY_WEIGHTS), "--photos", str(photo_dir), "--out", str(out),
                     "--minutes", "0.0001", "--size", "32", "--batch", "2", "--pool", "8", "--refresh", "1",
                     "--perceptual", "0", "--width", "8", "--res-blocks", "0", "--photo-side", "96", "--quiet"])
    text = capsys.readouterr().out
    assert code == 1
    assert "no model was saved" in text and "--minutes" in text and "use it with" not in text
    assert not (out / "model.safetensors").exists()
