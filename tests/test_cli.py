"""The command line, run as a user runs it: a real subprocess."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest
from conftest import PROXY_WEIGHTS, ROOT, photo
from PIL import Image


def run_cli(*args, weights_dir=None, cwd=None, env_extra=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    env.pop("ANIMEGAN_WEIGHTS_DIR", None)
    if weights_dir:
        env["ANIMEGAN_WEIGHTS_DIR"] = str(weights_dir)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "animegan", *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=300)


def test_batch_with_a_bad_file(tmp_path, weights_dir):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    Image.open(photo("chelsea.png")).save(src / "cat.png")
    Image.open(photo("coffee.png")).save(src / "sub" / "coffee.jpg")
    (src / "sub" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 a jpeg cut short")
    (src / "notes.png").write_text("a text file with an image's name")
    out = tmp_path / "out"
    proc = run_cli(src, "-o", out, "--max-side", "128", weights_dir=weights_dir)
    assert proc.returncode == 1, proc.stderr
    assert (out / "cat_anime.png").is_file()
    assert Image.open(out / "sub" / "coffee_anime.png").size == (128, 85)  # subfolders mirrored
    assert not (out / "sub" / "broken_anime.png").exists()
    assert "skipped" in proc.stderr and "broken.jpg is truncated or damaged" in proc.stderr
    assert "notes.png is not an image" in proc.stderr
    assert "2 of 4 photo(s) written" in proc.stderr and "2 failed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_formats_suffix_globs_and_side_by_side(tmp_path, weights_dir):
    for name in ("chelsea.png", "coffee.png"):
        shutil.copy(photo(name), tmp_path / name)
    proc = run_cli(str(tmp_path / "*.png"), "-o", tmp_path / "o", "--format", "jpg", "--suffix", "_x",
                   "--max-side", "100", "--side-by-side", "-v", weights_dir=weights_dir)
    assert proc.returncode == 0, proc.stderr
    img = Image.open(tmp_path / "o" / "chelsea_x.jpg")
    assert img.format == "JPEG" and img.size == (200, 67)
    assert "backend torch-" in proc.stderr and "2 of 2" in proc.stderr


def test_never_overwrites_an_input(tmp_path, weights_dir):
    shutil.copy(photo("chelsea.png"), tmp_path / "cat.png")
    before = (tmp_path / "cat.png").read_bytes()
    proc = run_cli("cat.png", "-o", ".", "--suffix", "", "--max-side", "64", weights_dir=weights_dir, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "cat.png").read_bytes() == before
    assert Image.open(tmp_path / "cat_2.png").size == (64, 43)
    assert "cat_2.png (its usual name is an input" in proc.stderr


def test_weights_file_option(tmp_path):
    proc = run_cli(photo("chelsea.png"), "-o", tmp_path, "--weights", PROXY_WEIGHTS, "--max-side", "64")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "chelsea_anime.png").is_file()


def test_missing_weights_and_missing_files(tmp_path):
    proc = run_cli(photo("chelsea.png"), "-o", tmp_path, env_extra={"HF_HOME": str(tmp_path / "hf")})
    assert proc.returncode == 1
    assert "ANIMEGAN_WEIGHTS_DIR" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli(tmp_path / "nothing_here.jpg", "-o", tmp_path, weights_dir=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr


def test_help_and_list_styles():
    proc = run_cli("--help")
    assert proc.returncode == 0 and "examples:" in proc.stdout and "ANIMEGAN_WEIGHTS_DIR" in proc.stdout
    proc = run_cli("--list-styles")
    assert proc.returncode == 0
    for name in ("face_paint_512_v2", "face_paint_512_v1", "celeba_distill", "paprika"):
        assert name in proc.stdout
    proc = run_cli()
    assert proc.returncode == 2 and "give at least one photo" in proc.stderr


@pytest.mark.slow  # two fresh processes and an int8 build: the whole suite's tier
def test_the_first_run_prepares_the_fast_backend_once_and_the_second_uses_it(tmp_path, weights_dir):
    """A short process reaches the fast path: on a fresh cache the first run says it prepares
    the fastest backend for this machine (in the foreground: a background build would die
    with the process) and uses it; the second run starts on it, names it, and prepares nothing."""
    env = {"ANIMEGAN_BACKEND": "auto", "HF_HOME": str(tmp_path / "hf"), "ANIMEGAN_CALIBRATION_SIDE": "128"}
    first = run_cli(photo("chelsea.png"), "-o", tmp_path / "a", "--max-side", "64", weights_dir=weights_dir,
                    env_extra=env)
    assert first.returncode == 0, first.stderr
    assert "preparing the fastest backend for this machine (done once per machine" in first.stderr
    chosen = first.stderr.split("animegan: using ")[1].split(":")[0]
    assert chosen in {"openvino-int8", "openvino-f32", "torch-fp32", "torch-bf16", "openvino-bf16"}
    assert f"written to {tmp_path / 'a'}/ ({chosen}," in first.stderr
    second = run_cli(photo("chelsea.png"), "-o", tmp_path / "b", "--max-side", "64", weights_dir=weights_dir,
                     env_extra=env)
    assert second.returncode == 0, second.stderr
    assert "preparing" not in second.stderr and f"({chosen}, " in second.stderr
    assert (tmp_path / "b" / "chelsea_anime.png").is_file()
    assert "Warning" not in first.stderr + second.stderr  # no developer warnings (torch.jit.trace ...)


# -- the command line never destroys a file (issue 11, item 4) -------------------------------
def _small(path, color=(200, 120, 90)):
    Image.new("RGB", (40, 32), color).save(path)
    return path.read_bytes()


def test_an_input_named_like_another_inputs_output_is_neither_overwritten_nor_restylized(tmp_path, weights_dir):
    a = _small(tmp_path / "a.png")
    a_anime = _small(tmp_path / "a_anime.png", (20, 40, 200))
    proc = run_cli(tmp_path, "-o", tmp_path, weights_dir=weights_dir)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "a.png").read_bytes() == a and (tmp_path / "a_anime.png").read_bytes() == a_anime
    assert (tmp_path / "a_anime_2.png").is_file() and (tmp_path / "a_anime_anime.png").is_file()
    assert "a_anime_2.png (its usual name is an input" in proc.stderr
    assert "2 of 2 photo(s) written" in proc.stderr


def test_a_symlink_at_the_output_name_is_replaced_not_followed(tmp_path, weights_dir):
    _small(tmp_path / "cat.png")
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / "cat_anime.png").symlink_to(precious)
    proc = run_cli(tmp_path / "cat.png", "-o", out, weights_dir=weights_dir)
    assert proc.returncode == 0, proc.stderr
    assert precious.read_text() == "keep me"
    assert not (out / "cat_anime.png").is_symlink() and Image.open(out / "cat_anime.png").size == (40, 32)
    assert [p.name for p in out.iterdir()] == ["cat_anime.png"]  # no temporary file left


def test_a_suffix_that_is_a_path_is_refused(tmp_path, weights_dir):
    _small(tmp_path / "cat.png")
    proc = run_cli(tmp_path / "cat.png", "-o", tmp_path / "out" / "deep", "--suffix", "/../../escaped",
                   weights_dir=weights_dir)
    assert proc.returncode == 2 and "not a plain name suffix" in proc.stderr
    assert not list(tmp_path.rglob("*escaped*"))


def test_inputs_sharing_a_name_get_one_output_each(tmp_path, weights_dir):
    for folder, name in (("a", "x.jpg"), ("a", "x.png"), ("b", "x.png")):
        (tmp_path / folder).mkdir(exist_ok=True)
        _small(tmp_path / folder / name)
    out = tmp_path / "out"
    proc = run_cli(tmp_path / "a" / "x.jpg", tmp_path / "a" / "x.png", tmp_path / "b" / "x.png", "-o", out,
                   weights_dir=weights_dir)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["x_2_anime.png", "x_jpg_anime.png", "x_png_anime.png"]
    assert "3 of 3 photo(s) written" in proc.stderr


def test_a_failure_while_saving_is_reported_and_the_batch_goes_on(tmp_path, weights_dir):
    Image.new("RGB", (16400, 16), (90, 90, 90)).save(tmp_path / "wide.png")  # wider than WebP allows
    _small(tmp_path / "small.png")
    out = tmp_path / "out"
    proc = run_cli(tmp_path / "wide.png", tmp_path / "small.png", "-o", out, "--format", "webp",
                   "--max-side", "0", weights_dir=weights_dir)
    assert proc.returncode == 1, proc.stderr
    assert "skipped" in proc.stderr and "16383" in proc.stderr and "Traceback" not in proc.stderr
    assert (out / "small_anime.webp").is_file() and not (out / "wide_anime.webp").exists()
    assert "1 of 2 photo(s) written" in proc.stderr and not [p for p in out.iterdir() if ".part" in p.name]


def test_a_bad_onnx_weights_file_is_a_message_not_a_traceback(tmp_path, weights_dir):
    """Issue 19, item 8: an ONNX file that no runtime can run (an unknown op; a custom op
    OpenVINO cannot convert), given with --weights, to the photo command and to batch."""
    from onnx import TensorProto, helper

    def graph(op: str, domain: str = "") -> bytes:
        g = helper.make_graph([helper.make_node(op, ["x"], ["y"], domain=domain)], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, "h", "w"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, "h", "w"])])
        opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
        model = helper.make_model(g, opset_imports=opsets)
        model.ir_version = 8
        return model.SerializeToString()

    (tmp_path / "unknown_op.onnx").write_bytes(graph("NoSuchOp"))
    (tmp_path / "custom_op.onnx").write_bytes(graph("Foo", "com.example"))
    Image.open(photo("chelsea.png")).resize((64, 48)).save(tmp_path / "cat.png")
    said = {"unknown_op.onnx": "unknown_op.onnx is not a valid ONNX model (No Op registered for NoSuchOp",
            "custom_op.onnx": "custom_op.onnx: OpenVINO cannot convert this ONNX graph (No conversion rule found "
                              "for operations: com.example.Foo)"}
    for name, message in said.items():
        for args in ([tmp_path / "cat.png", "-o", tmp_path / "out"], ["batch", tmp_path / "cat.png", tmp_path / "b"]):
            proc = run_cli(*args, "--weights", tmp_path / name, env_extra={"ANIMEGAN_BACKEND": "torch-fp32"})
            assert proc.returncode != 0, proc.stderr
            assert "Traceback" not in proc.stderr, proc.stderr
            assert message in proc.stderr, proc.stderr
