"""Shared test fixtures: the real photos, the proxy weights and a weights folder."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
EXAMPLES = ROOT / "examples"
PROXY_WEIGHTS = DATA / "proxy_toon.pt"  # test data with the published layout, never a style
PHOTOS = ["astronaut.png", "camera.png", "chelsea.png", "coffee.png", "rocket.jpg"]


def photo(name: str) -> Path:
    """A real photo from examples/ (public domain / CC0, see examples/CREDITS.md)."""
    return EXAMPLES / name


@pytest.fixture(scope="session", autouse=True)
def isolated_environment():
    """The process state every test runs in, set here (never at import) and undone at the end.

    - A fresh Hugging Face cache (downloads, int8 artefacts) instead of the user's, inherited
      by the app and CLI subprocesses too. huggingface_hub reads HF_HOME once, when it is
      first imported, and test modules import it (through gradio_client) while they are
      collected, before this runs: its cache constants are pointed here as well.
    - Results must not change half-way through a test because the automatic backend
      upgraded itself in the background: tests run on exact float32 unless they choose
      (tests/test_backends.py covers the automatic choice; one CLI test runs it end to end).
    """
    home = tempfile.mkdtemp(prefix="animegan-test-hf-")
    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("HF_HOME", home)
        mp.delenv("HF_HUB_CACHE", raising=False)
        if "ANIMEGAN_BACKEND" not in os.environ:
            mp.setenv("ANIMEGAN_BACKEND", "torch-fp32")
        constants = sys.modules.get("huggingface_hub.constants")
        if constants is not None:
            old = constants.HF_HOME
            for name, value in list(vars(constants).items()):
                if name.isupper() and isinstance(value, str) and value.startswith(old + os.sep):
                    mp.setattr(constants, name, home + value[len(old):])
            mp.setattr(constants, "HF_HOME", home)
            for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
                mp.setattr(constants, name, os.path.join(home, "hub"))
        yield home
    finally:
        mp.undo()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory) -> Path:
    """A folder for ANIMEGAN_WEIGHTS_DIR holding the proxy weights under every style's name."""
    from animegan.styles import STYLES

    folder = tmp_path_factory.mktemp("weights")
    for name in STYLES:
        shutil.copy(PROXY_WEIGHTS, folder / f"{name}.pt")
    return folder


@pytest.fixture
def offline_weights(weights_dir, monkeypatch) -> Path:
    """Point ANIMEGAN_WEIGHTS_DIR at the proxy weights for this test."""
    monkeypatch.setenv("ANIMEGAN_WEIGHTS_DIR", str(weights_dir))
    return weights_dir


@pytest.fixture(scope="session")
def stylizer(weights_dir):
    """One Stylizer for the session, with the proxy weights for every style."""
    import os

    from animegan import Stylizer
    from animegan.settings import Settings

    old = os.environ.get("ANIMEGAN_WEIGHTS_DIR")
    os.environ["ANIMEGAN_WEIGHTS_DIR"] = str(weights_dir)
    try:
        s = Stylizer(settings=Settings.from_env())
        s.backend()  # load while the variable is set
        yield s
    finally:
        if old is None:
            os.environ.pop("ANIMEGAN_WEIGHTS_DIR", None)
        else:
            os.environ["ANIMEGAN_WEIGHTS_DIR"] = old


@pytest.fixture(scope="session")
def app_server(weights_dir, tmp_path_factory):
    """``python app.py`` with the proxy weights, started once and shared by every test that
    only calls it (API, limits, live, video and browser tests). Clips are capped at 3 s,
    which test_video.py's limit tests need and nothing else minds."""
    from app_helpers import shared_server

    server, owner = shared_server(weights_dir, tmp_path_factory.mktemp("app"), ANIMEGAN_VIDEO_MAX_SECONDS="3")
    yield server
    if owner:
        server.stop()


@pytest.fixture(scope="session")
def vgg_stand_in(tmp_path_factory) -> Path:
    """A TORCH_HOME whose hub cache holds a stand-in for torchvision's VGG16 ImageNet
    weights: the real file name and every key and shape, randomly initialised features
    (so the perceptual loss still responds to images) and a classifier of zero-strided
    zeros (a few bytes on disk). Loading it goes through torchvision's real code path."""
    import torch
    from torchvision.models import vgg

    home = tmp_path_factory.mktemp("torch-home")
    target = home / "hub" / "checkpoints" / "vgg16-397923af.pth"
    target.parent.mkdir(parents=True)
    torch.manual_seed(0)
    features = vgg.make_layers(vgg.cfgs["D"])
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in vgg.vgg16().state_dict().items()}
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state.update({k: torch.zeros(1).expand(s) for k, s in shapes.items() if k not in state})
    assert state.keys() == shapes.keys()
    torch.save(state, target)
    return home


@pytest.fixture
def vgg_weights(vgg_stand_in, monkeypatch) -> Path:
    """Point TORCH_HOME at the VGG16 stand-in for this test (training tests use it)."""
    monkeypatch.setenv("TORCH_HOME", str(vgg_stand_in))
    return vgg_stand_in


@pytest.fixture(scope="session")
def student(tmp_path_factory):
    """A tiny student distilled from the proxy weights by the distill command (6 steps): the
    real code path, so its pictures are not good, only real (test_lite, the browser tests)."""
    from animegan.cli import main as cli_main

    photos = tmp_path_factory.mktemp("photos")
    for name in PHOTOS[:3]:
        shutil.copy(photo(name), photos / name)
    out = tmp_path_factory.mktemp("runs") / "student"
    code = cli_main(["distill", "--teacher-weights", str(PROXY_WEIGHTS), "--photos", str(photos), "--out", str(out),
                     "--steps", "6", "--size", "32", "--batch", "2", "--pool", "4", "--refresh", "1",
                     "--perceptual", "0", "--width", "8", "--res-blocks", "0", "--photo-side", "96",
                     "--sample-every", "100", "--device", "cpu", "--quiet"])
    assert code == 0
    return out
