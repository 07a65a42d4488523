"""Decoding every kind of input into RGB (+ alpha), and refusing what is not an image."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import photo
from PIL import Image

from animegan import ImageError
from animegan.images import decode, fit_size, from_array, to_array


def _png(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG", **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def astro() -> Image.Image:
    return Image.open(photo("astronaut.png")).convert("RGB")


def test_every_kind_of_source(astro, tmp_path):
    path = tmp_path / "a.png"
    astro.save(path)
    for src in (path, str(path), path.read_bytes(), astro, np.asarray(astro)):
        d = decode(src)
        assert d.rgb.mode == "RGB" and d.alpha is None
        assert np.array_equal(np.asarray(d.rgb), np.asarray(astro))


def test_exif_orientation_is_applied(astro):
    upright = astro.crop((0, 0, 512, 300))  # 512 x 300, not square
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a camera held sideways stores it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=95, exif=exif)
    d = decode(buf.getvalue())
    assert d.rgb.size == (512, 300)
    diff = np.abs(np.asarray(d.rgb, float) - np.asarray(upright, float)).mean()
    assert diff < 3  # JPEG noise only


def test_grayscale_modes_become_rgb():
    gray = Image.open(photo("camera.png"))
    assert gray.mode == "L"
    rgb = decode(gray).rgb
    r, g, b = (np.asarray(c) for c in rgb.split())
    assert np.array_equal(r, np.asarray(gray)) and np.array_equal(r, g) and np.array_equal(g, b)
    assert decode(gray.convert("1")).rgb.getextrema() == ((0, 255),) * 3


def test_sixteen_bit_and_float_images():
    gray8 = np.asarray(Image.open(photo("camera.png")), dtype=np.uint16)
    png16 = Image.open(io.BytesIO(_png(Image.fromarray(gray8 * 257))))
    assert png16.mode.startswith("I")
    out = np.asarray(decode(png16).rgb)[:, :, 0]
    assert np.abs(out.astype(int) - gray8).max() <= 1
    floats = Image.fromarray(gray8.astype(np.float32) / 255.0, "F")
    assert np.abs(np.asarray(decode(floats).rgb)[:, :, 0].astype(int) - gray8).max() <= 1
    assert np.abs(np.asarray(decode(gray8.astype(np.float32) / 255).rgb)[:, :, 1].astype(int) - gray8).max() <= 1
    assert np.abs(np.asarray(decode(gray8 * 257).rgb)[:, :, 2].astype(int) - gray8).max() <= 1


def test_alpha_is_kept_aside(astro):
    rgba = astro.copy()
    alpha = Image.linear_gradient("L").resize(astro.size)
    rgba.putalpha(alpha)
    d = decode(_png(rgba))
    assert d.rgb.mode == "RGB" and np.array_equal(np.asarray(d.alpha), np.asarray(alpha))
    la = decode(_png(Image.open(photo("camera.png")).convert("LA")))
    assert la.alpha is None  # fully opaque alpha is dropped, nothing to restore


def test_palette_with_transparency(astro):
    pal = astro.quantize(64)
    pal.info["transparency"] = 0
    d = decode(_png(pal, transparency=0))
    assert d.alpha is not None
    idx = np.asarray(pal)
    assert np.array_equal(np.asarray(d.alpha) == 0, idx == 0)
    assert decode(_png(astro.quantize(64))).alpha is None


def test_cmyk_jpeg(astro):
    buf = io.BytesIO()
    astro.convert("CMYK").save(buf, "JPEG", quality=95)
    d = decode(buf.getvalue())
    assert d.rgb.mode == "RGB"
    assert np.abs(np.asarray(d.rgb, float) - np.asarray(astro, float)).mean() < 8


def test_not_an_image():
    with pytest.raises(ImageError, match="not an image"):
        decode(b"%PDF-1.4 this is not a picture")


def test_truncated_files(astro):
    for fmt in ("PNG", "JPEG"):
        buf = io.BytesIO()
        astro.save(buf, fmt)
        data = buf.getvalue()
        with pytest.raises(ImageError, match="truncated or damaged"):
            decode(data[: len(data) // 2])


def test_decompression_bomb_is_refused_before_decoding():
    bomb = _png(Image.new("1", (8000, 6000)))  # 48 MP in a few kB
    assert len(bomb) < 100_000
    with pytest.raises(ImageError, match=r"8000 x 6000 \(48 megapixels\), over the limit of 40"):
        decode(bomb)
    assert decode(bomb, max_pixels=50_000_000).rgb.size == (8000, 6000)
    with pytest.raises(ImageError, match="megapixels"):
        decode(np.zeros((7000, 7000, 3), np.uint8))


def test_bad_arrays_and_objects():
    with pytest.raises(ImageError, match="not an image"):
        decode(np.zeros((10, 10, 7), np.uint8))
    with pytest.raises(ImageError, match="Cannot read an image from a dict"):
        decode({"an": "image"})
    with pytest.raises(ImageError, match="No such file"):
        decode("/no/such/photo.jpg")


def test_size_policy():
    assert fit_size((4000, 3000), 1024) == (1024, 768)
    assert fit_size((300, 4000), 1024) == (77, 1024)
    assert fit_size((500, 400), 1024) == (500, 400)
    assert fit_size((5000, 5000), None) == (5000, 5000)
    with pytest.raises(ImageError, match="at least 16 px"):
        fit_size((10, 300), 1024)
    with pytest.raises(ImageError, match="at least 16 px"):
        fit_size((20000, 100), 1024)


def test_conversions_are_the_published_demos(astro):
    import torch
    from torchvision.transforms.functional import to_pil_image, to_tensor

    x = to_array(astro)
    assert x.shape == (1, 3, 512, 512) and x.dtype == np.float32
    demo_in = to_tensor(astro).unsqueeze(0) * 2 - 1
    assert np.array_equal(x, demo_in.numpy())
    y = np.tanh(x * 1.7).astype(np.float32)  # any output in [-1, 1]
    demo_out = to_pil_image((torch.from_numpy(y)[0] * 0.5 + 0.5).clip(0, 1))  # truncates, as the demo does
    assert np.array_equal(np.asarray(from_array(y)), np.asarray(demo_out))
    assert np.abs(np.asarray(from_array(x), int) - np.asarray(astro, int)).max() <= 1


# -- odd files are said, not guessed (issue 11, item 5) ------------------------------------
def _frames(fmt: str, **kw) -> bytes:
    first, second = Image.new("RGB", (48, 40), (200, 30, 30)), Image.new("RGB", (48, 40), (30, 30, 200))
    buf = io.BytesIO()
    first.save(buf, fmt, save_all=True, append_images=[second], **kw)
    return buf.getvalue()


@pytest.mark.parametrize("fmt,kind", [("GIF", "frames"), ("WEBP", "frames"), ("TIFF", "pages")])
def test_animated_and_multi_page_images_use_the_first_frame_and_say_so(fmt, kind):
    d = decode(_frames(fmt, **({"lossless": True} if fmt == "WEBP" else {})))
    r, g, b = np.asarray(d.rgb, float).reshape(-1, 3).mean(axis=0)
    assert r > 150 and b < 80  # the first (red) frame
    assert d.notes == [f"The file holds 2 {kind}; only the first was used."]
    assert decode(_png(Image.new("RGB", (48, 40)))).notes == []


def test_the_note_reaches_the_result(tmp_path):
    from animegan import Stylizer
    from animegan.settings import Settings

    stylizer = Stylizer(settings=Settings(backend="torch-fp32"), weights_file=_proxy())
    result = stylizer.run(_frames("GIF"))
    assert "The file holds 2 frames; only the first was used." in result.notes


def _proxy():
    from pathlib import Path

    return Path(__file__).parent / "data" / "proxy_toon.pt"


def test_a_float_tiff_holding_nan_is_refused():
    arr = np.full((40, 48), 0.5, dtype=np.float32)
    arr[3, 4] = np.nan
    buf = io.BytesIO()
    Image.fromarray(arr, "F").save(buf, "TIFF")
    with pytest.raises(ImageError, match="NaN"):
        decode(buf.getvalue())


def test_an_image_over_the_pixel_limit_is_refused_as_too_large_not_as_damaged():
    big = _png(Image.new("L", (8000, 5100)), compress_level=1)  # 40.8 MP of zeros: a few kB
    with pytest.raises(ImageError, match="over the limit of 40 megapixels") as info:
        decode(big)
    assert "damaged" not in str(info.value)


def test_a_gif_of_many_frames_is_counted_only_so_far():
    """Issue 19, item 5: the "first frame only" note walks at most FRAMES_COUNTED frames
    (10; Pillow's n_frames walks all of them: 4 million in a 95 MB GIF took 28 s)."""
    frames = [Image.new("P", (48, 40), i % 2) for i in range(3000)]
    for f in frames:
        f.putpalette([200, 30, 30, 30, 30, 200] + [0] * 762)
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], optimize=False, disposal=1)
    d = decode(buf.getvalue())
    assert d.notes == ["The file holds more than 10 frames; only the first was used."]
    r, g, b = np.asarray(d.rgb, float).reshape(-1, 3).mean(axis=0)
    assert r > 150 and b < 80  # the first (red) frame, decoded after the walk
    # a short animation is still counted exactly
    assert decode(_frames("GIF")).notes == ["The file holds 2 frames; only the first was used."]
