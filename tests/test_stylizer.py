"""The whole path of a photo with the proxy weights: size, orientation, colour, alpha."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import PROXY_WEIGHTS, ROOT, photo
from PIL import Image, ImageFilter

import animegan
from animegan import Stylizer


def structure(out: Image.Image, src: Image.Image) -> float:
    """Correlation of luminance with a softened copy of the input: ~0.7-0.9 for the proxy
    style, near 0 or below when the picture is flipped or rotated."""
    ref = src.convert("RGB").resize(out.size, Image.Resampling.LANCZOS).filter(ImageFilter.GaussianBlur(2))
    a = np.asarray(out.convert("L"), float).ravel()
    b = np.asarray(ref.convert("L"), float).ravel()
    return float(np.corrcoef(a, b)[0, 1])


# Measured with the proxy weights at 256 px (astronaut 0.77, camera 0.87, chelsea 0.73,
# coffee 0.68; flipped copies score -0.48 to 0.16); bounds leave a margin.
BOUNDS = {"astronaut.png": 0.7, "camera.png": 0.8, "chelsea.png": 0.65, "coffee.png": 0.6}


@pytest.mark.parametrize("name", list(BOUNDS))
def test_real_photos_come_out_as_softened_copies(stylizer, name):
    src = Image.open(photo(name))
    result = stylizer.run(photo(name), max_side=256)
    assert result.image.mode == "RGB"
    assert max(result.image.size) == 256
    assert result.image.size[0] / result.image.size[1] == pytest.approx(src.size[0] / src.size[1], abs=0.01)
    assert structure(result.image, src) > BOUNDS[name]
    assert structure(result.image, src.transpose(Image.Transpose.FLIP_TOP_BOTTOM)) < 0.3


def test_channel_order_shows_in_the_tint(stylizer):
    """The proxy style tints orange: a grey photo must come back with red above blue."""
    out = np.asarray(stylizer(photo("camera.png"), max_side=256), float)
    r, g, b = out.reshape(-1, 3).mean(0)
    assert r - b > 10 and r > g > b


def test_exif_rotated_jpeg(stylizer):
    upright = Image.open(photo("coffee.png")).convert("RGB")  # 600 x 400
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 270 CW to display"
    buf = io.BytesIO()
    upright.transpose(Image.Transpose.ROTATE_270).save(buf, "JPEG", quality=95, exif=exif)
    out = stylizer(buf.getvalue(), max_side=300)
    assert out.size == (300, 200)
    assert structure(out, upright) > BOUNDS["coffee.png"] - 0.05


def test_rgba_and_palette_keep_their_transparency(stylizer):
    rgba = Image.open(photo("chelsea.png")).convert("RGBA")
    mask = Image.new("L", rgba.size, 0)
    mask.paste(255, (50, 50, 350, 250))
    rgba.putalpha(mask)
    out = stylizer(rgba, max_side=None)
    assert out.mode == "RGBA" and out.size == rgba.size
    assert np.array_equal(np.asarray(out.getchannel("A")), np.asarray(mask))
    pal = Image.open(photo("coffee.png")).convert("RGB").quantize(32)
    buf = io.BytesIO()
    pal.save(buf, "PNG", transparency=3)
    out = stylizer(buf.getvalue(), max_side=200)
    assert out.mode == "RGBA" and out.size == (200, 133)
    assert 0 in np.asarray(out.getchannel("A"))


def test_grayscale_cmyk_and_16_bit(stylizer):
    cam = Image.open(photo("camera.png"))
    buf = io.BytesIO()
    Image.open(photo("astronaut.png")).convert("CMYK").save(buf, "JPEG")
    cmyk = stylizer(buf.getvalue(), max_side=128)
    assert cmyk.mode == "RGB" and cmyk.size == (128, 128)
    png16 = io.BytesIO()
    Image.fromarray(np.asarray(cam, np.uint16) * 257).save(png16, "PNG")
    a = np.asarray(stylizer(png16.getvalue(), max_side=128), int)
    b = np.asarray(stylizer(cam, max_side=128), int)
    assert np.abs(a - b).max() <= 2  # same picture, whatever its bit depth


def test_keep_size_and_side_by_side(stylizer):
    src = Image.open(photo("rocket.jpg"))
    assert stylizer(src, max_side=200, keep_size=True).size == src.size
    pair = stylizer(src, max_side=200, side_by_side=True)
    assert pair.size == (400, 133)


def test_identical_pixels_to_the_published_demo():
    """The exact backend gives what bryandlee's face2paint gives, pixel for pixel."""
    from torchvision.transforms.functional import to_pil_image, to_tensor

    model = animegan.Generator().eval()
    model.load_state_dict(torch.load(PROXY_WEIGHTS, weights_only=True))
    img = Image.open(photo("chelsea.png")).convert("RGB")
    with torch.no_grad():
        demo = to_pil_image((model(to_tensor(img).unsqueeze(0) * 2 - 1)[0] * 0.5 + 0.5).clip(0, 1))
    ours = Stylizer(backend="torch-exact", weights_file=PROXY_WEIGHTS, max_side=None)(img)
    assert np.array_equal(np.asarray(ours), np.asarray(demo))


def test_result_cache(stylizer):
    img = Image.open(photo("astronaut.png")).resize((96, 96))
    first = stylizer.run(img, max_side=None)
    second = stylizer.run(img.copy(), max_side=None)
    assert not first.cached and second.cached
    assert np.array_equal(np.asarray(first.image), np.asarray(second.image))
    assert second.seconds < first.seconds
    assert "from cache" in second.summary()
    other = stylizer.run(img, max_side=64)  # other options, other entry
    assert not other.cached and other.image.size == (64, 64)


def test_cache_is_bounded():
    s = Stylizer(weights_file=PROXY_WEIGHTS, cache_size=2)
    for v in range(4):
        s.run(Image.new("RGB", (32, 32), (v * 40, 0, 0)))
    assert len(s._cache) == 2


def test_stylize_function_and_errors(offline_weights):
    # a fresh process, as a library user has: the settings (the weights folder) are read once per process
    code = ("import animegan, sys; out = animegan.stylize(sys.argv[1], max_side=128); "
            "print(type(out).__name__, out.size)")
    run = subprocess.run([sys.executable, "-c", code, str(photo("chelsea.png"))], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT), ANIMEGAN_BACKEND="torch-fp32"), timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "Image (128, 85)"
    with pytest.raises(ValueError, match="Unknown style 'nope'. Choose one of: face_paint_512_v2"):
        animegan.stylize(photo("chelsea.png"), style="nope")
    with pytest.raises(animegan.ImageError):
        animegan.stylize(b"not an image")
    with pytest.raises(ValueError, match="face_crop must be"):
        animegan.stylize(photo("chelsea.png"), face_crop="sideways")


def test_summary_says_when_a_faster_backend_is_coming():
    from animegan.stylizer import Result

    img = Image.new("RGB", (8, 8))
    assert "being prepared" in Result(img, "paprika", (8, 8), 1.0, "torch-fp32", upgrading=True).summary()
    assert "being prepared" not in Result(img, "paprika", (8, 8), 1.0, "openvino-int8").summary()


def test_result_keeps_what_the_network_saw(stylizer):
    """The app's before/after slider shows ``Result.source``: the resized photo, or for a
    portrait the framed face (not the whole photo letterboxed)."""
    plain = stylizer.run(photo("coffee.png"), max_side=300)
    assert plain.source.size == (300, 200) == plain.image.size
    portrait = stylizer.run(photo("astronaut.png"), face_crop="portrait")
    assert portrait.source.size == portrait.image.size == (512, 512)
    whole = Image.open(photo("astronaut.png")).convert("RGB")
    assert not np.array_equal(np.asarray(portrait.source), np.asarray(whole))  # a crop, zoomed in
    assert stylizer.run(photo("coffee.png"), max_side=300).source.size == (300, 200)  # from the cache too
