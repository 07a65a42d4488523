"""``animegan batch`` on the local engine, run in this process (the fast lane's check of
animegan.batch): the real command, planner, manifest and a spawned worker process, on a
few small photos, a short clip and a damaged file, then run again to resume.

Ray, two workers, --retry-failed and comparing engines are in test_batch.py (slow tier).
"""

from __future__ import annotations

import json

from clips import photo_frames, read_clip, write_clip
from conftest import photo
from PIL import Image

from animegan.batch.command import main
from animegan.batch.plan import MANIFEST_NAME

ARGS = ("--workers", "1", "--threads", "1", "--max-side", "64", "--video-max-side", "64", "--backend", "torch-fp32")


def test_local_engine_writes_each_input_once_and_resumes(tmp_path, weights_dir, monkeypatch, capsys):
    monkeypatch.setenv("ANIMEGAN_WEIGHTS_DIR", str(weights_dir))  # the spawned worker inherits it
    src, dst = tmp_path / "in", tmp_path / "out"
    (src / "sub").mkdir(parents=True)
    for name, rel, side in (("camera.png", "camera.png", 48), ("chelsea.png", "sub/cat.jpg", 96)):
        img = Image.open(photo(name)).convert("RGB")
        img.thumbnail((side, side))
        img.save(src / rel)
    write_clip(src / "clip.mp4", photo_frames((80, 60), 4, 10), 10)
    (src / "sub" / "broken.png").write_bytes(photo("coffee.png").read_bytes()[:3000])

    assert main([str(src), str(dst), *ARGS]) == 1  # one input failed
    err = capsys.readouterr().err
    assert "4 file(s)" in err and "done 3, skipped 0, failed 1" in err and "Traceback" not in err
    assert "failed sub/broken.png: " in err
    assert Image.open(dst / "camera_anime.png").size == (48, 48)  # under --max-side: kept
    assert Image.open(dst / "sub" / "cat_anime.png").size == (64, 43)
    clip = read_clip(dst / "clip_anime.mp4")
    assert clip["size"] == (64, 48) and len(clip["frames"]) == 4
    rows = {r["input"]: r for r in map(json.loads, (dst / MANIFEST_NAME).read_text().splitlines())}
    assert {k: r["status"] for k, r in rows.items()} == {
        "camera.png": "done", "sub/cat.jpg": "done", "clip.mp4": "done", "sub/broken.png": "failed"}
    assert all(r["backend"] == "torch-fp32" for r in rows.values() if r["status"] == "done")

    # the same command again: nothing redone, nothing rewritten
    stamps = {p: p.stat().st_mtime_ns for p in dst.rglob("*") if p.is_file()}
    assert main([str(src), str(dst), *ARGS]) == 1  # the damaged file failed before
    err = capsys.readouterr().err
    assert "0 to do, 3 already done, 1 failed before" in err and "add --retry-failed" in err
    assert {p: p.stat().st_mtime_ns for p in dst.rglob("*") if p.is_file()} == stamps
