"""A distilled student used as its style's fast variant (issue 23): found in
ANIMEGAN_WEIGHTS_DIR/<style>-lite/ or registered with ``lite_of``, used by the live frame
loop by default, offered by the photo tab, taken by the CLI and batch with --lite, and
exported with its teacher's terms. Without a student nothing changes.

The student is distilled from the proxy weights here, on the real code path (a few
steps, tiny sizes): its pictures are not good, only real."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import PROXY_WEIGHTS, ROOT, photo
from PIL import Image

from animegan import LiteGenerator, Stylizer, load_generator
from animegan.cli import main as cli_main
from animegan.live import LiveStylizer
from animegan.settings import Settings
from animegan.styles import STYLES, StyleError, register_style, visible_styles

STYLE = "face_paint_512_v2"
NONCOMMERCIAL = "paprika"  # the TF release's terms: non-commercial use only


@pytest.fixture
def lite_dir(tmp_path, student, monkeypatch):
    """A weights folder with the proxy as the style's weights and the student as its fast variant."""
    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(PROXY_WEIGHTS, folder / f"{STYLE}.pt")
    shutil.copytree(student, folder / f"{STYLE}-lite", ignore=shutil.ignore_patterns("checkpoints", "samples"))
    monkeypatch.setenv("ANIMEGAN_WEIGHTS_DIR", str(folder))
    yield folder
    STYLES.pop(f"{STYLE}-lite", None)  # found here, registered on first sight: forget it


def test_the_distilled_student_is_a_small_unshuffle_lite_generator(student):
    model = load_generator(student)
    assert type(model) is LiteGenerator and model.config["stem"] == "unshuffle" and model.config["width"] == 8
    assert model.config["half_convs"] == 2 and len(model.decoder) == 3  # distill's layout: two half-size convs
    run = json.loads((student / "run.json").read_text())
    assert run["teacher_name"].startswith("teacher") and "teacher_licence" not in run  # weights given as a file


def test_without_a_student_nothing_changes(offline_weights):
    stylizer = Stylizer(STYLE, settings=Settings.from_env())
    assert stylizer.lite_style(STYLE) is None
    with pytest.raises(StyleError, match=r"no fast variant.*distill --teacher face_paint_512_v2.*without --lite"):
        Stylizer(STYLE, settings=Settings.from_env(), lite=True)
    engine = LiveStylizer(stylizer, side=64, time_limit=None)
    _, result = engine.process(None, Image.open(photo("astronaut.png")), STYLE, 64)
    assert result.processed and "model" not in result.status  # no fast/full choice to speak of
    assert all(s.lite_of is None for s in visible_styles().values())


def test_a_student_folder_is_the_styles_fast_variant(lite_dir):
    stylizer = Stylizer(STYLE, settings=Settings.from_env())
    name = stylizer.lite_style(STYLE)
    assert name == f"{STYLE}-lite"
    spec = stylizer.check_style(name)
    assert spec.lite_of == STYLE and spec.title == "Face Paint v2 (fast)"
    assert name not in visible_styles()  # offered as the style's choice, not as a style
    assert type(stylizer.model(name)) is LiteGenerator and type(stylizer.model(STYLE)) is not LiteGenerator
    fast = Stylizer(STYLE, settings=Settings.from_env(), lite=True)
    assert fast.style == name
    result = fast.run(photo("astronaut.png"), max_side=64)
    assert result.style == name and result.image.size == (64, 64) and "(fast)" in result.summary()


def test_live_frames_use_the_student_by_default_and_the_full_model_on_request(lite_dir):
    stylizer = Stylizer(STYLE, settings=Settings.from_env())
    engine = LiveStylizer(stylizer, side=64, time_limit=None)
    frame = Image.open(photo("astronaut.png"))
    used = []
    run_array = stylizer.run_array

    def spy(style, *args, **kwargs):
        used.append(style)
        return run_array(style, *args, **kwargs)

    stylizer.run_array = spy
    _, fast = engine.process(None, frame, STYLE, 64)
    _, full = engine.process(None, frame, STYLE, 64, lite=False)
    assert fast.processed and full.processed
    assert used == [f"{STYLE}-lite", STYLE]
    assert not np.array_equal(np.asarray(fast.image), np.asarray(full.image))
    assert "fast model" in fast.status and "full model" in full.status  # the status says which ran


def test_register_style_lite_of_carries_the_teachers_licence(student, tmp_path):
    try:
        spec = register_style("paprika-student", path=student, lite_of=NONCOMMERCIAL)
        assert spec.licence.noncommercial and "teacher's terms" in spec.licence.terms
        assert NONCOMMERCIAL in spec.licence.trained_by
        assert spec.title == "Paprika (fast)" and spec.size == STYLES[NONCOMMERCIAL].size
        shown = Stylizer(settings=Settings.from_env())
        assert shown.lite_style(NONCOMMERCIAL) == "paprika-student"
        with pytest.raises(ValueError, match="names no style"):
            register_style("x-lite", path=student, lite_of="no_such_style")
    finally:
        STYLES.pop("paprika-student", None)


def test_a_student_on_the_hub_is_the_styles_fast_variant(student, monkeypatch):
    """A student published as a Hub model repo (config.json + model.safetensors, served by
    the local Hub stand-in) and registered with lite_of: the style's fast variant, run as
    the same network as the folder it came from."""
    from hub_server import FakeHub

    with FakeHub() as hub:
        for name in ("config.json", "model.safetensors"):
            hub.add_hub_file("someone/face-paint-lite", name, (student / name).read_bytes())
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        try:
            spec = register_style("hub-student", repo_id="someone/face-paint-lite", lite_of=STYLE)
            assert spec.source == "hf://someone/face-paint-lite" and "teacher's terms" in spec.licence.terms
            stylizer = Stylizer(settings=Settings.from_env(), backend="torch-fp32")
            assert stylizer.lite_style(STYLE) == "hub-student"
            from_hub = stylizer.run(photo("coffee.png"), style="hub-student", max_side=64).image
            local = Stylizer(settings=Settings.from_env(), backend="torch-fp32", weights_file=str(student))
            assert np.array_equal(np.asarray(from_hub), np.asarray(local.run(photo("coffee.png"), max_side=64).image))
        finally:
            STYLES.pop("hub-student", None)


def test_a_hidden_styles_student_is_hidden_too(student, monkeypatch):
    monkeypatch.setenv("ANIMEGAN_HIDE_NONCOMMERCIAL", "1")
    try:
        register_style("paprika-student", path=student, lite_of=NONCOMMERCIAL)
        stylizer = Stylizer(settings=Settings.from_env())
        with pytest.raises(StyleError, match="not offered here"):
            stylizer.check_style("paprika-student")
    finally:
        STYLES.pop("paprika-student", None)


def test_export_card_names_the_teacher_and_carries_its_terms(student, tmp_path, monkeypatch):
    """A run folder whose teacher was a registered style: the card carries that style's licence card."""
    run = tmp_path / "run"
    shutil.copytree(student, run, ignore=shutil.ignore_patterns("checkpoints"))
    settings = json.loads((run / "run.json").read_text())
    from animegan.train.distill import teacher_card

    settings.update(teacher=NONCOMMERCIAL, teacher_weights=None, teacher_name=NONCOMMERCIAL,
                    **teacher_card(NONCOMMERCIAL, None))
    (run / "run.json").write_text(json.dumps(settings))
    out = tmp_path / "export"
    assert cli_main(["export", str(run), "--to", "safetensors", "--out", str(out), "--no-timing"]) == 0
    card = (out / "README.md").read_text()
    assert "distilled" in card and f"**{NONCOMMERCIAL}**" in card and "non-commercial use only" in card
    assert "Weights made with animegan" not in card
    # a teacher given as a file: its owner's terms, said so
    out2 = tmp_path / "export2"
    assert cli_main(["export", str(student), "--to", "safetensors", "--out", str(out2), "--no-timing"]) == 0
    assert "supplied by the user" in (out2 / "README.md").read_text()


def test_cli_and_batch_take_lite(lite_dir, tmp_path):
    import os

    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", ANIMEGAN_WEIGHTS_DIR=str(lite_dir))
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(photo("chelsea.png"), src / "cat.png")

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "animegan", *map(str, args)], capture_output=True, text=True,
                              env=env, timeout=300)

    proc = cli(src / "cat.png", "-o", tmp_path / "fast", "--max-side", "64", "--lite", "--backend", "torch-fp32",
               "-v")
    assert proc.returncode == 0, proc.stderr
    assert f"style {STYLE}-lite" in proc.stderr and "teacher's terms" in proc.stderr
    fast = np.asarray(Image.open(tmp_path / "fast" / "cat_anime.png"))
    proc = cli(src / "cat.png", "-o", tmp_path / "full", "--max-side", "64", "--backend", "torch-fp32")
    assert proc.returncode == 0, proc.stderr
    assert not np.array_equal(fast, np.asarray(Image.open(tmp_path / "full" / "cat_anime.png")))
    proc = cli("batch", src, tmp_path / "batch", "--max-side", "64", "--lite", "--backend", "torch-fp32",
               "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(fast, np.asarray(Image.open(tmp_path / "batch" / "cat_anime.png")))
    # no student for this style: a message that says the way around, no traceback
    proc = cli(src / "cat.png", "-o", tmp_path / "x", "--lite", "-s", "face_paint_512_v1")
    assert proc.returncode == 1 and "no fast variant" in proc.stderr and "without --lite" in proc.stderr
    assert "Traceback" not in proc.stderr
    # --list-styles says which styles have a fast variant
    proc = cli("--list-styles")
    blocks, name = {}, None
    for line in proc.stdout.splitlines():
        if line and not line.startswith(" "):
            name = line.split()[0]
        blocks[name] = blocks.get(name, "") + line + "\n"
    assert f"fast variant (--lite; the app's live default): {STYLE}-lite" in blocks[STYLE], proc.stdout
    assert "fast variant" not in blocks["face_paint_512_v1"]


def test_the_photo_tab_offers_the_student_only_where_there_is_one(lite_dir, monkeypatch):
    from animegan.app.photo import App

    app = App(Stylizer(STYLE, settings=Settings.from_env()))
    assert app.has_lite()
    upload = {"path": str(photo("astronaut.png"))}  # as the page sends it
    fast = app._run(upload, STYLE, "off", 64, None, lite=True)
    full = app._run(upload, STYLE, "off", 64, None)
    assert fast.style == f"{STYLE}-lite" and full.style == STYLE
    monkeypatch.setenv("ANIMEGAN_WEIGHTS_DIR", str(lite_dir.parent))  # no student there
    STYLES.pop(f"{STYLE}-lite", None)
    assert not App(Stylizer(STYLE, settings=Settings.from_env())).has_lite()


def test_student_weights_match_what_the_run_saved(student):
    """The saved model is the moving average (EMA) of the weights, recorded in the checkpoint."""
    state = torch.load(student / "checkpoints" / "last.pt", weights_only=False)
    saved = load_generator(student).state_dict()
    assert all(torch.equal(saved[k], v.float()) for k, v in state["ema"]["model"].items())
    assert state["ema"]["updates"] == 6


def test_the_unshuffle_student_runs_nothing_at_full_size_and_tiles():
    """No layer of the distilled layout works at the picture's own size (what made the seed's
    student slow on OpenVINO), any size comes back at its size, and it tiles as the seed's did."""
    from animegan.models.complexity import count
    from animegan.tiles import engines
    from animegan.tiles.run import stylize_tiled

    torch.manual_seed(0)
    g = LiteGenerator(width=8, stem="unshuffle", res_blocks=1, half_convs=2).eval()  # what distill trains
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.05 * torch.randn_like(p))
    seen = []
    hooks = [m.register_forward_hook(lambda m, a, o: seen.append(a[0].shape[-1]))
             for m in g.modules() if isinstance(m, torch.nn.Conv2d | torch.nn.GroupNorm)]
    with torch.no_grad():
        for shape in ((1, 3, 64, 64), (1, 3, 37, 71)):
            assert g(torch.rand(*shape) * 2 - 1).shape == shape
    for h in hooks:
        h.remove()
    assert max(seen) <= 64 // 2 + 16  # half size at most (64 px, padded to a multiple of 32, halved)
    assert count(LiteGenerator(stem="unshuffle"), 512).macs < count(LiteGenerator(), 512).macs
    distilled = LiteGenerator(stem="unshuffle", res_blocks=1, half_convs=2)
    assert count(distilled, 512).macs < count(LiteGenerator(stem="unshuffle"), 512).macs
    img = Image.open(photo("coffee.png")).convert("RGB").crop((0, 0, 597, 389))
    out = stylize_tiled(engines.TorchEngine(g), img, tile=256, margin=64, exact=True)
    fast = stylize_tiled(engines.TorchEngine(g), img, tile=256, margin=64)  # the default statistics
    with torch.no_grad():
        from animegan import images

        whole = images.from_array(g(torch.from_numpy(images.to_array(img))).numpy())
    from animegan.backends.fidelity import psnr_8bit

    assert out.size == img.size and psnr_8bit(out, whole) >= 60
    assert fast.size == img.size and psnr_8bit(fast, whole) >= 40
