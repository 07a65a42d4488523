"""``animegan batch``: the command as a user runs it (a subprocess), on a real local Ray
cluster started here and on the local process pool, with real photos, a clip, bad
files and a subfolder; plus the planning rules and the fsspec path for remote storage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import fsspec
import numpy as np
import pytest
from clips import photo_frames, read_clip, write_clip
from conftest import PROXY_WEIGHTS, ROOT, photo
from PIL import Image

from animegan.batch.manifest import Manifest
from animegan.batch.plan import MANIFEST_NAME, Options, list_inputs, make_plan, plan_outputs
from animegan.images import fit_size

MAX_SIDE = 64
# input -> (source photo, long side of the copy): varied sizes, one under --max-side
PHOTOS = {
    "astronaut.png": ("astronaut.png", 96),
    "camera.png": ("camera.png", 48),
    "chelsea.jpg": ("chelsea.png", 120),
    "sub/coffee.png": ("coffee.png", 90),
    "sub/coffee.jpg": ("coffee.png", 80),  # same stem in the same folder: both keep their extension
    "sub/deeper/rocket.jpg": ("rocket.jpg", 100),
}
OUTPUTS = {
    "astronaut.png": "astronaut_anime.png",
    "camera.png": "camera_anime.png",
    "chelsea.jpg": "chelsea_anime.png",
    "sub/coffee.png": "sub/coffee_png_anime.png",
    "sub/coffee.jpg": "sub/coffee_jpg_anime.png",
    "sub/deeper/rocket.jpg": "sub/deeper/rocket_anime.png",
    "clip.mp4": "clip_anime.mp4",
}
BAD = {"sub/broken.jpg": "broken.jpg is truncated or damaged", "notes.png": "notes.png is not an image"}
CLIP_FRAMES = 6


def make_inputs(folder: Path) -> Path:
    for rel, (name, side) in PHOTOS.items():
        img = Image.open(photo(name)).convert("RGB")
        img.thumbnail((side, side))
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        img.save(folder / rel)
    write_clip(folder / "clip.mp4", photo_frames((80, 60), CLIP_FRAMES, 10), fps=10)
    data = photo("rocket.jpg").read_bytes()
    (folder / "sub" / "broken.jpg").write_bytes(data[: len(data) // 2])  # cut short
    (folder / "notes.png").write_text("a text file with an image's name")
    (folder / "readme.txt").write_text("not a photo: not listed")
    return folder


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    return make_inputs(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def ray_address():
    """A real Ray cluster on this machine (2 CPUs), for this module only.

    Its workers import this checkout (PYTHONPATH) but do not get ANIMEGAN_WEIGHTS_DIR
    from here: the batch command must send it (runtime_env), as it must to a real cluster.
    ray.init turns on token authentication (RAY_AUTH_MODE=token), which the commands
    given the explicit address inherit, as Ray requires.
    """
    import ray

    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must stay < 108 chars
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "ANIMEGAN_WEIGHTS_DIR", "RAY_AUTH_MODE")}
    os.environ["PYTHONPATH"] = str(ROOT)
    os.environ.pop("ANIMEGAN_WEIGHTS_DIR", None)
    try:
        ray.init(address="local", num_cpus=2, object_store_memory=128 * 1024**2, _temp_dir=temp,
                 include_dashboard=False, logging_level="WARNING")
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        shutil.rmtree(temp, ignore_errors=True)


def run_batch(*args, weights_dir) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1", ANIMEGAN_WEIGHTS_DIR=str(weights_dir),
               ANIMEGAN_BACKEND="torch-fp32")
    return subprocess.run([sys.executable, "-m", "animegan", "batch", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=300)


def manifest_lines(dst: Path) -> list[dict]:
    return [json.loads(line) for line in (dst / MANIFEST_NAME).read_text().splitlines()]


def files_under(dst: Path) -> dict[str, int]:
    """Every file in DST but the manifest (relative path -> mtime in ns)."""
    return {p.relative_to(dst).as_posix(): p.stat().st_mtime_ns for p in dst.rglob("*")
            if p.is_file() and p.name != MANIFEST_NAME}


def check_first_run(proc: subprocess.CompletedProcess, src: Path, dst: Path) -> None:
    assert proc.returncode == 1, proc.stderr  # two inputs failed
    assert "Traceback" not in proc.stderr
    assert "9 file(s)" in proc.stderr and "done 7, skipped 0, failed 2" in proc.stderr
    # every good input written exactly once, at the size policy's size, nothing else (no temp files)
    assert set(files_under(dst)) == set(OUTPUTS.values())
    for rel in PHOTOS:
        w, h = Image.open(src / rel).size
        assert Image.open(dst / OUTPUTS[rel]).size == fit_size((w, h), MAX_SIDE)
    assert max(Image.open(dst / OUTPUTS["chelsea.jpg"]).size) == MAX_SIDE
    assert Image.open(dst / OUTPUTS["camera.png"]).size == Image.open(src / "camera.png").size  # under the limit
    clip = read_clip(dst / OUTPUTS["clip.mp4"])
    assert len(clip["frames"]) == CLIP_FRAMES and clip["size"] == (80, 60)
    rows = manifest_lines(dst)
    assert sorted(r["input"] for r in rows) == sorted([*OUTPUTS, *BAD])  # one row per input
    by_input = {r["input"]: r for r in rows}
    for rel, message in BAD.items():
        assert by_input[rel]["status"] == "failed" and message in by_input[rel]["error"]
        assert f"failed {rel}: {message}" in proc.stderr
    for rel, out in OUTPUTS.items():
        row = by_input[rel]
        assert row["status"] == "done" and row["output"] == out and row["error"] is None
        assert row["backend"] == "torch-fp32" and row["seconds"] > 0 and row["threads"] == 1
        assert row["bytes"] == (src / rel).stat().st_size


def check_resume(src: Path, dst: Path, *args, weights_dir, retry_failed: bool = False) -> None:
    before, lines = files_under(dst), manifest_lines(dst)
    proc = run_batch(src, dst, *args, weights_dir=weights_dir)
    assert proc.returncode == 1, proc.stderr  # the bad files are still failed
    assert "0 to do, 7 already done, 2 failed before" in proc.stderr
    assert "add --retry-failed" in proc.stderr
    assert files_under(dst) == before and manifest_lines(dst) == lines  # nothing redone

    # two outputs deleted and one manifest row removed: only those three are redone
    (dst / OUTPUTS["astronaut.png"]).unlink()
    (dst / OUTPUTS["sub/deeper/rocket.jpg"]).unlink()
    kept = [line for line in (dst / MANIFEST_NAME).read_text().splitlines()
            if json.loads(line)["input"] != "chelsea.jpg"]
    (dst / MANIFEST_NAME).write_text("\n".join(kept) + "\n")
    proc = run_batch(src, dst, *args, *(["--retry-failed"] if retry_failed else []), weights_dir=weights_dir)
    assert proc.returncode == 1, proc.stderr
    redone = {"astronaut.png", "sub/deeper/rocket.jpg", "chelsea.jpg"}
    if retry_failed:  # the bad files are tried again (and fail again)
        assert "5 to do, 4 already done" in proc.stderr and "done 3, skipped 4, failed 2" in proc.stderr
        redone |= set(BAD)
    else:
        assert "3 to do, 4 already done, 2 failed before" in proc.stderr and "done 3, skipped 4" in proc.stderr
    assert sorted(r["input"] for r in manifest_lines(dst)[len(kept):]) == sorted(redone)
    after = files_under(dst)
    assert set(after) == set(OUTPUTS.values())
    untouched = {out for rel, out in OUTPUTS.items() if rel not in redone}
    assert {f: after[f] for f in untouched} == {f: before[f] for f in untouched}


@pytest.fixture(scope="module")
def ray_dst(ray_address, src, weights_dir, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    dst = tmp_path_factory.mktemp("ray_out")
    proc = run_batch(src, dst, "--engine", "ray", "--address", ray_address, "--workers", "2", "--threads", "1",
                     "--max-side", MAX_SIDE, weights_dir=weights_dir)
    return dst, proc


@pytest.mark.slow
def test_ray_engine_writes_every_photo_once_and_resumes(ray_dst, ray_address, src, weights_dir):
    dst, proc = ray_dst
    check_first_run(proc, src, dst)
    check_resume(src, dst, "--engine", "ray", "--address", ray_address, "--workers", "2", "--threads", "1",
                 "--max-side", MAX_SIDE, weights_dir=weights_dir)


@pytest.mark.slow
def test_local_engine_resumes_retries_and_matches_ray(ray_dst, src, weights_dir, tmp_path):
    dst = tmp_path / "local_out"
    args = ("--engine", "local", "--workers", "2", "--threads", "1", "--max-side", MAX_SIDE)  # as on Ray
    check_first_run(run_batch(src, dst, *args, weights_dir=weights_dir), src, dst)
    check_resume(src, dst, *args, weights_dir=weights_dir, retry_failed=True)

    # the same backend on both engines gives the same pixels
    for rel in PHOTOS:
        ours, theirs = Image.open(dst / OUTPUTS[rel]), Image.open(ray_dst[0] / OUTPUTS[rel])
        assert np.array_equal(np.asarray(ours), np.asarray(theirs)), rel


@pytest.mark.slow
def test_ray_workers_without_weights_stop_with_the_reason(ray_address, tmp_path, weights_dir):
    (tmp_path / "in").mkdir()
    shutil.copy(photo("chelsea.png"), tmp_path / "in")
    proc = run_batch(tmp_path / "in", tmp_path / "out", "--engine", "ray", "--address", ray_address,
                     weights_dir=tmp_path / "no-weights-here")
    assert proc.returncode == 1
    assert "a Ray worker on" in proc.stderr and "could not load the model" in proc.stderr
    assert "ANIMEGAN_WEIGHTS_DIR" in proc.stderr and "run the same command again to resume" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ray_not_installed_says_how_to_install(tmp_path, monkeypatch, capsys):
    from animegan.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # what `import ray` meets without the extra
    assert main(["batch", str(tmp_path), str(tmp_path / "out"), "--engine", "ray"]) == 1
    assert 'pip install "animegan[ray]"' in capsys.readouterr().err


def test_bad_arguments_are_explained(tmp_path, capsys):
    from animegan.cli import main

    assert main(["batch", str(tmp_path / "nowhere"), str(tmp_path / "out")]) == 2
    assert "SRC " in (err := capsys.readouterr().err) and "does not exist" in err
    assert main(["batch", str(tmp_path), str(tmp_path / "out"), "--workers", "0"]) == 2
    assert "--workers must be at least 1" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_workers_share_caps_its_threads(tmp_path):
    """A batch worker process gets its share of the CPUs through its runtime (never through
    os.environ): PyTorch's threads and OpenVINO's, never more than the machine has."""
    import json
    import subprocess
    import sys

    import pytest

    from animegan.settings import Settings

    code = ("import json, sys, torch; from animegan.batch.worker import start_runtime; "
            "from animegan import backends, load_generator; rt = start_runtime(int(sys.argv[1])); "
            "be = backends.make_backend(load_generator(sys.argv[2]), 'openvino-f32', rt); "
            "print(json.dumps([rt.threads, torch.get_num_threads(), "
            "be._compiled.get_property('INFERENCE_NUM_THREADS'), rt.machine.cpus]))")
    seen = {}
    for threads in (1, 99):
        out = subprocess.run([sys.executable, "-c", code, str(threads), str(PROXY_WEIGHTS)], capture_output=True,
                             text=True, check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
        seen[threads] = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen[1][:3] == [1, 1, 1]
    full = seen[99][3]
    assert seen[99][:3] == [full, full, full]  # capped at the CPUs this process may use
    with pytest.raises(ValueError, match="ANIMEGAN_THREADS='two' is not a whole number"):
        Settings.from_env({"ANIMEGAN_THREADS": "two"})


# -- planning ---------------------------------------------------------------------------------------
def test_plan_never_shares_an_output_or_overwrites_an_input(tmp_path):
    for name in ("a.jpg", "a.png", "b.png", "c_anime.png"):
        (tmp_path / name).write_bytes(b"x")
    # DST is SRC and the suffix is empty: b.png would be written over itself
    options = Options(src=str(tmp_path), dst=str(tmp_path), style="face_paint_512_v2", suffix="")
    planned = plan_outputs(["a.jpg", "a.png", "b.png", "c_anime.png"], options)
    assert planned["a.jpg"] == "a_jpg.png" and planned["a.png"] == "a_png.png"
    assert planned["b.png"] == "b_2.png" and planned["c_anime.png"] == "c_anime_2.png"
    assert len(set(planned.values())) == len(planned)
    # with the default suffix, an output name that is an input's gets a number too
    planned = plan_outputs(["c.png", "c_anime.png"], Options(src=str(tmp_path), dst=str(tmp_path),
                                                               style="face_paint_512_v2"))
    assert planned == {"c.png": "c_anime_2.png", "c_anime.png": "c_anime_anime.png"}


def test_dst_inside_src_is_not_an_input(tmp_path):
    (tmp_path / "out" / "x").mkdir(parents=True)
    (tmp_path / "p.png").write_bytes(b"x")
    (tmp_path / "out" / "x" / "p_anime.png").write_bytes(b"x")
    assert [rel for rel, _ in list_inputs(str(tmp_path), str(tmp_path / "out"))] == ["p.png"]


def test_a_batch_into_its_own_folder_never_restylizes_its_outputs(tmp_path, weights_dir):
    """``animegan batch SRC SRC`` (issue 19, item 8): the outputs land among the inputs; a
    rerun finds them done, not new (it made 6 -> 12 -> 25 files)."""
    for name in ("astronaut.png", "coffee.png", "chelsea.png"):
        img = Image.open(photo(name)).convert("RGB")
        img.thumbnail((48, 48))
        img.save(tmp_path / name)
    inputs = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    first = run_batch(tmp_path, tmp_path, "--max-side", MAX_SIDE, weights_dir=weights_dir)
    assert first.returncode == 0, first.stderr
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == sorted([*inputs, "astronaut_anime.png", "chelsea_anime.png", "coffee_anime.png", MANIFEST_NAME])
    for _ in range(2):
        again = run_batch(tmp_path, tmp_path, "--max-side", MAX_SIDE, weights_dir=weights_dir)
        assert again.returncode == 0, again.stderr
        assert "3 file(s) under" in again.stderr and "0 to do, 3 already done" in again.stderr
        assert sorted(p.name for p in tmp_path.iterdir()) == made
    assert all((tmp_path / name).read_bytes() == data for name, data in inputs.items())
    assert len(manifest_lines(tmp_path)) == 3


def test_remote_storage_through_fsspec(weights_dir, monkeypatch):
    """SRC and DST on a non-local fsspec file system (memory://, as s3:// or gs:// would
    be): photos and clips read and written through fsspec, the manifest rewritten whole."""
    import torch

    from animegan.batch.worker import Worker

    monkeypatch.setenv("ANIMEGAN_WEIGHTS_DIR", str(weights_dir))
    fs = fsspec.filesystem("memory")
    local = make_inputs(Path(tempfile.mkdtemp()))
    try:
        for path in local.rglob("*"):
            if path.is_file():
                fs.pipe_file(f"/batch-in/{path.relative_to(local).as_posix()}", path.read_bytes())
        options = Options(src="memory://batch-in", dst="memory://batch-out", style="face_paint_512_v2",
                          max_side=MAX_SIDE)
        manifest = Manifest(options.dst)
        plan = make_plan(options, manifest.read())
        assert len(plan.todo) == 9
        threads = torch.get_num_threads()
        monkeypatch.setenv("ANIMEGAN_THREADS", str(threads))  # the worker sets it; restored after the test
        worker = Worker(options, threads=threads)  # the test process keeps its thread count
        for task in plan.todo:
            manifest.add(worker(task))
        manifest.close()
        for rel, out in OUTPUTS.items():
            if rel.endswith(".mp4"):
                assert fs.size(f"/batch-out/{out}") > 1000
                continue
            img = Image.open(fs.open(f"/batch-out/{out}"))
            assert img.size == fit_size(Image.open(local / rel).size, MAX_SIDE)
        rows = {r["input"]: r for r in map(json.loads, fs.cat_file(f"/batch-out/{MANIFEST_NAME}").splitlines())}
        assert {r for r in rows if rows[r]["status"] == "done"} == set(OUTPUTS)
        assert "sub/broken.jpg" in rows["sub/broken.jpg"]["error"]  # the message names the input
        again = make_plan(options, Manifest(options.dst).read())
        assert not again.todo and len(again.skipped_done) == 7 and len(again.skipped_failed) == 2
    finally:
        fs.rm("/batch-in", recursive=True)
        fs.rm("/batch-out", recursive=True)
        shutil.rmtree(local, ignore_errors=True)
