"""Full resolution in tiles (animegan.tiles): the real generator (proxy weights) on the
real photos, tiled with small tiles so that even these photos need many, against one
untiled pass; a 12 MP photo through the command line."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import PROXY_WEIGHTS, ROOT, photo
from PIL import Image

from animegan import images, runtime, weights
from animegan.backends import make_backend
from animegan.backends.fidelity import psnr_8bit as psnr8
from animegan.models import LiteGenerator
from animegan.tiles import engines, layout
from animegan.tiles.run import REDUCED_PIXELS, fast_statistics, stylize_tiled

TILE, MARGIN = 256, 64  # small tiles: a 640 x 427 photo needs 12 of them


@pytest.fixture(scope="module")
def generator():
    return weights.load_generator(PROXY_WEIGHTS)


def untiled(generator, img: Image.Image) -> np.ndarray:
    with torch.inference_mode():
        return np.asarray(images.from_array(generator(torch.from_numpy(images.to_array(img))).numpy()))




def with_statistics(engine, img: Image.Image, stats: np.ndarray) -> np.ndarray:
    """One untiled pass normalised with ``stats`` (frames mode, alpha 1)."""
    x = images.to_array(img)
    y, _ = engine.frame(x, stats, 1.0, layout.sampling_grids((img.height, img.width)))
    return np.asarray(images.from_array(y))


def boundary_rows(tiles: list[layout.Tile]) -> tuple[set[int], set[int]]:
    """Rows and columns where one tile's core meets the next."""
    return ({t.core[0] for t in tiles if t.core[0] > 0}, {t.core[2] for t in tiles if t.core[2] > 0})


def assert_no_seams(tiled: np.ndarray, reference: np.ndarray, tiles: list[layout.Tile]) -> None:
    """Across every tile boundary the step between neighbouring rows (columns) is the
    untiled picture's step, within one level."""
    rows, cols = boundary_rows(tiles)
    assert rows or cols
    t, r = tiled.astype(np.int32), reference.astype(np.int32)
    for y in rows:
        assert np.abs((t[y] - t[y - 1]) - (r[y] - r[y - 1])).max() <= 2, f"seam at row {y}"
    for x in cols:
        assert np.abs((t[:, x] - t[:, x - 1]) - (r[:, x] - r[:, x - 1])).max() <= 2, f"seam at column {x}"


def assert_fast_tiles(engine, img: Image.Image, reference: np.ndarray) -> None:
    """The fast statistics: >= 40 dB from one untiled pass, and the tiles agree with each
    other exactly: the tiled picture is one untiled pass given the same statistics, seamless."""
    fast = stylize_tiled(engine, img, tile=TILE, margin=MARGIN)  # the default
    assert fast.size == img.size and psnr8(fast, reference) >= 40
    same = with_statistics(engine, img, fast_statistics(engine, np.asarray(img), lambda *a: None,
                                                        pixels=min(REDUCED_PIXELS, TILE * TILE), crop_side=TILE))
    assert psnr8(fast, same) >= 60
    assert_no_seams(np.asarray(fast), same, layout.tile_layout(img.size, TILE, MARGIN))


@pytest.mark.slow  # a full-size photo in 12 small tiles, 25 passes each: minutes on 2 busy CPUs
@pytest.mark.timeout(1200)
def test_exact_tiles_are_the_untiled_picture(generator):
    img = Image.open(photo("rocket.jpg")).convert("RGB")
    tiles = layout.tile_layout(img.size, TILE, MARGIN)
    reference = untiled(generator, img)
    out = stylize_tiled(engines.TorchEngine(generator), img, tile=TILE, margin=MARGIN, exact=True)
    assert len(tiles) >= 4 and out.size == img.size
    assert psnr8(out, reference) >= 60  # the exact statistics: float rounding only
    assert_no_seams(np.asarray(out), reference, tiles)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("name", ["rocket.jpg", "coffee.png", "astronaut.png"])
def test_fast_tiles_are_close_to_the_untiled_picture_and_seamless(generator, name):
    img = Image.open(photo(name)).convert("RGB")
    assert len(layout.tile_layout(img.size, TILE, MARGIN)) >= 4
    assert_fast_tiles(engines.TorchEngine(generator), img, untiled(generator, img))


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("size", [(517, 389), (1000, 125), (125, 1000)])  # odd sizes, 1:8 both ways
def test_odd_sizes_and_extreme_aspect_ratios(generator, size):
    img = Image.open(photo("chelsea.png")).convert("RGB").resize(size, Image.LANCZOS)
    assert_fast_tiles(engines.TorchEngine(generator), img, untiled(generator, img))


@pytest.mark.slow  # full-size photos in many small tiles: a minute or more each on 2 CPUs
@pytest.mark.timeout(900)
def test_int8_tiles_match_the_untiled_int8_picture(generator, tmp_path):
    """On the int8 backend the tiles run int8 with its ranges, statistics included."""
    import dataclasses

    from animegan.settings import Settings

    settings = dataclasses.replace(Settings.from_env(), hub_cache=tmp_path)
    backend = make_backend(generator, "openvino-int8", settings)
    engine = engines.engine_for(generator, backend, runtime.get(settings))
    assert engine.name == "openvino-int8"
    img = Image.open(photo("rocket.jpg")).convert("RGB")
    steps = []
    out = stylize_tiled(engine, img, tile=TILE, margin=MARGIN, progress=lambda d, t, text: steps.append((d, t, text)))
    reference = np.asarray(images.from_array(backend(images.to_array(img))))
    assert out.size == img.size and psnr8(out, reference) >= 38  # fast statistics, on int8 activations
    assert psnr8(out, untiled(generator, img)) >= 36  # and against float32 (untiled int8 itself: ~39 dB)
    tiles = len(layout.tile_layout(img.size, TILE, MARGIN))
    done = [d for d, _, _ in steps]
    assert done == sorted(done) and steps[-1][0] == steps[-1][1]  # one bar, up to its end
    assert sum("tile " in text for *_, text in steps) == tiles and "statistics" in steps[0][2]
    exact, corner = [], img.crop((0, 0, 384, 384))
    stylize_tiled(engine, corner, tile=TILE, margin=MARGIN, exact=True,
                  progress=lambda d, t, text: exact.append((d, t)))
    tiles = len(layout.tile_layout(corner.size, TILE, MARGIN))
    assert exact[-1] == (tiles * 25, tiles * 25)  # 24 statistics passes and the image pass, per tile


def test_the_lite_generator_tiles_too():
    torch.manual_seed(0)
    g = LiteGenerator(width=8).eval()
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.05 * torch.randn_like(p))
    img = Image.open(photo("coffee.png")).convert("RGB").crop((0, 0, 597, 389))  # not a multiple of 32
    engine = engines.TorchEngine(g)
    reference = untiled(g, img)
    out = stylize_tiled(engine, img, tile=TILE, margin=MARGIN, exact=True)
    assert out.size == img.size and psnr8(out, reference) >= 60
    steps = []
    fast = stylize_tiled(engine, img, tile=TILE, margin=MARGIN, progress=lambda d, t, text: steps.append((d, t)))
    assert fast.size == img.size and psnr8(fast, reference) >= 40
    assert [d for d, _ in steps] == sorted(d for d, _ in steps) and steps[-1][0] == steps[-1][1]  # one bar, to its end


def test_a_generator_without_group_norms_is_refused_clearly():
    with pytest.raises(engines.UnsupportedGenerator, match="AnimeGANv2 or LiteGenerator"):
        engines.TorchEngine(torch.nn.Conv2d(3, 3, 1))


@pytest.mark.slow
@pytest.mark.timeout(960)  # over the subprocess's own 900 s, which says more when it fires
def test_a_12_megapixel_photo_through_the_command_line(tmp_path):
    """4000 x 3000 (a real photo upscaled) with --max-side 0: full size out, in tiles
    (a small LiteGenerator saved as a model folder keeps it quick)."""
    torch.manual_seed(0)
    model = LiteGenerator(width=8).eval()
    model.save_pretrained(tmp_path / "lite")
    src = tmp_path / "in"
    src.mkdir()
    Image.open(photo("rocket.jpg")).convert("RGB").resize((4000, 3000), Image.BICUBIC).save(src / "big.jpg",
                                                                                           quality=90)
    out = subprocess.run([sys.executable, "-m", "animegan", str(src / "big.jpg"), "-o", str(tmp_path / "out"),
                          "--weights", str(tmp_path / "lite"), "--max-side", "0", "--backend", "torch-fp32"],
                         capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    result = Image.open(tmp_path / "out" / "big_anime.png")
    assert result.size == (4000, 3000)
    assert "statistics" in out.stderr and "tile 1 of" in out.stderr  # the tile bar was shown
