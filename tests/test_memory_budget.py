"""No picture of any size on any backend goes over the memory budget: the decision to tile
is made from the predicted peak of an untiled pass (measured per pixel, per backend, per CPU
kind: animegan.backends.memory) against the runtime's budget, and the tiles are as big as
the budget allows. Each case runs in a fresh process, with the real-size network (the
proxy weights) and --max-side 0, and reads the whole process's peak (VmHWM, import torch
included)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import PROXY_WEIGHTS, ROOT, photo
from PIL import Image

from animegan import runtime
from animegan.backends import memory
from animegan.settings import Settings, parse_size

BUDGET = "2G"

CHILD = r"""
import json, sys
from PIL import Image
from animegan import Stylizer, host
stylizer = Stylizer(weights_file=sys.argv[1], max_side=None)
img = Image.open(sys.argv[2]).convert("RGB")
untiled = stylizer.fits_in_one_pass(stylizer.style, img.size)
out = stylizer.run(img).image
print(json.dumps({"peak": host.peak_rss(), "size": out.size, "untiled": untiled,
                  "backend": stylizer.backend().name, "budget": stylizer.runtime.memory_budget}))
"""


def run_under_budget(path, backend: str, tmp_path) -> dict:
    """The picture in a fresh process, after another one has built the backend's cached
    model (the int8 build is done once per machine, before any photo: `animegan prepare`,
    or the first run; its own peak is not a photo's)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), ANIMEGAN_MEMORY_BUDGET=BUDGET, ANIMEGAN_BACKEND=backend,
               HF_HOME=str(tmp_path / "hf"))
    for picture in (photo("coffee.png"), path):
        out = subprocess.run([sys.executable, "-c", CHILD, str(PROXY_WEIGHTS), str(picture)], capture_output=True,
                             text=True, env=env, timeout=3000)
        assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def photo_of(size: tuple[int, int], path) -> str:
    """A photo with detail at ``size``: real photos side by side at their own resolution."""
    canvas = Image.new("RGB", size)
    x = y = 0
    names = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg", "camera.png"]
    i = 0
    while y < size[1]:
        tile = Image.open(photo(names[i % len(names)])).convert("RGB")
        canvas.paste(tile, (x, y))
        x += tile.width
        if x >= size[0]:
            x, y = 0, y + 512
        i += 1
    canvas.save(path, quality=95)
    return path


@pytest.mark.slow
@pytest.mark.timeout(1200)  # a 12 MP picture in tiles on a slow, busy 2-core machine
@pytest.mark.parametrize(("backend", "size"), [("torch-fp32", (2048, 1536)), ("openvino-int8", (4032, 3024))])
def test_a_picture_stays_within_the_memory_budget(backend, size, tmp_path):
    src = photo_of(size, tmp_path / "big.jpg")
    result = run_under_budget(src, backend, tmp_path)
    assert result["backend"] == backend and tuple(result["size"]) == size
    assert result["budget"] == parse_size(BUDGET)
    assert not result["untiled"]  # one pass would not fit: it went in tiles
    assert result["peak"] <= parse_size(BUDGET), f"{result['peak'] / 2**20:.0f} MB peak"


def test_the_tiling_decision_follows_the_budget_and_the_cpu_kind(stylizer):
    """A 2048 x 1536 picture fits one pass under a big budget and not with 1 GB to spare; the
    per-pixel cost is the CPU kind's, or the largest known where the kind has none."""
    rt = stylizer.runtime
    from dataclasses import replace

    from animegan import Stylizer, host

    big = replace(stylizer.settings, memory_budget=64 << 30, backend="torch-fp32")
    small = replace(stylizer.settings, memory_budget=host.rss() + (1 << 30), backend="torch-fp32")  # 1 GB free

    assert Stylizer(settings=big).fits_in_one_pass("face_paint_512_v2", (2048, 1536))
    assert not Stylizer(settings=small).fits_in_one_pass("face_paint_512_v2", (2048, 1536))
    assert Stylizer(settings=small).fits_in_one_pass("face_paint_512_v2", (512, 512))
    model = stylizer.model("face_paint_512_v2")
    m = rt.machine
    avx2 = type(m)(m.cpu, frozenset(f for f in m.flags if not f.startswith("avx512")), m.cpus, m.memory_total,
                   m.memory_available)
    assert memory.cpu_kind(avx2) == "avx2"
    family_max = max(max(r.values()) for k, r in memory.PASS_BYTES.items() if k[1].startswith("openvino"))
    row = memory.PASS_BYTES[("animeganv2", "openvino-int8")]
    assert memory.pass_bytes(model, "openvino-int8", avx2, 1) == row.get("avx2", family_max)
    assert memory.pass_bytes(model, "openvino-int8", m, 1) == row.get(memory.cpu_kind(m), family_max)
    assert memory.pass_bytes(model, "openvino-somethingnew", m, 1) == family_max  # unknown: the largest known
    side = memory.tile_side(model, "openvino", m, 4032 * 3024, 1 << 30)
    assert memory.TILE_MIN <= side <= memory.TILE_MAX and side % memory.TILE_STEP == 0
    assert memory.tile_side(model, "openvino", m, 4032 * 3024, 8 << 30) > side


def test_the_default_budget_is_a_share_of_the_machine():
    rt = runtime.get(Settings())
    assert rt.memory_budget == max(runtime.MIN_BUDGET, int(rt.machine.memory_total * runtime.DEFAULT_BUDGET_SHARE))
    assert runtime.get(Settings(memory_budget=3 << 30)).memory_budget == 3 << 30
    for text, value in (("2G", 2 << 30), ("1500M", 1500 << 20), ("2GB", 2 << 30), ("1.5GiB", 3 << 29)):
        assert parse_size(text) == value
    with pytest.raises(ValueError, match="ANIMEGAN_MEMORY_BUDGET='lots' is not a size"):
        Settings.from_env({"ANIMEGAN_MEMORY_BUDGET": "lots"})
