"""Face mode with the real MTCNN on the real photos: detection, framing, portrait,
paste-back, the no-face fallback, EXIF orientation and the command line."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, photo
from PIL import Image

from animegan import images
from animegan.faces import (
    MARGIN,
    Square,
    crop_square,
    detect_faces,
    face_square,
    frame_face,
)
from animegan.stylizer import NO_FACE_NOTE

# Measured by eye on the photos (drawn over them and viewed): the head, hair to chin and
# ear to ear, and points the face box must cover (eyes, mouth).
HEAD = {
    "astronaut.png": (168, 40, 282, 190),
    "camera.png": (186, 100, 268, 205),
}
POINTS = {
    "astronaut.png": [(205, 102), (247, 104), (224, 140)],  # left eye, right eye, mouth
    "camera.png": [(235, 147), (237, 181)],  # eye, mouth (a profile)
}
FACE_PHOTOS = list(HEAD)
NO_FACE_PHOTOS = ["chelsea.png", "coffee.png"]


def rgb(name: str) -> Image.Image:
    return images.decode(photo(name)).rgb


def inside(box, region, tol: float = 0.0) -> bool:
    return (box[0] >= region[0] - tol and box[1] >= region[1] - tol
            and box[2] <= region[2] + tol and box[3] <= region[3] + tol)


def covers(box, point) -> bool:
    return box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3]


def scaled(box, s: float, dx: float = 0, dy: float = 0):
    return (box[0] * s + dx, box[1] * s + dy, box[2] * s + dx, box[3] * s + dy)


def thumb_corr(a: Image.Image, b: Image.Image) -> float:
    """Correlation of two images' 64 x 64 grey thumbnails: do they show the same thing?"""
    x, y = (np.asarray(i.convert("L").resize((64, 64)), dtype=np.float64).ravel() for i in (a, b))
    return float(np.corrcoef(x, y)[0, 1])


@pytest.fixture(scope="module")
def composite() -> Image.Image:
    """astronaut.png and camera.png side by side, each 256 x 256: two faces of two sizes."""
    canvas = Image.new("RGB", (512, 256))
    canvas.paste(rgb("astronaut.png").resize((256, 256), Image.Resampling.LANCZOS), (0, 0))
    canvas.paste(rgb("camera.png").resize((256, 256), Image.Resampling.LANCZOS), (256, 0))
    return canvas


# -- detection ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", FACE_PHOTOS)
def test_exactly_one_face_where_it_is(name):
    faces = detect_faces(rgb(name))
    assert len(faces) == 1
    face = faces[0]
    assert inside(face.box, HEAD[name]), face.box
    for point in POINTS[name]:
        assert covers(face.box, point), (face.box, point)
    assert face.prob >= 0.95


@pytest.mark.parametrize("name", NO_FACE_PHOTOS)
def test_no_human_face_in_cat_or_coffee(name):
    assert detect_faces(rgb(name)) == []


def test_grayscale_and_rgba_inputs_are_detected():
    gray = Image.open(photo("camera.png"))
    assert gray.mode == "L"
    [face] = detect_faces(gray)
    assert inside(face.box, HEAD["camera.png"])
    rgba = rgb("astronaut.png").convert("RGBA")
    [face] = detect_faces(rgba)
    assert inside(face.box, HEAD["astronaut.png"])


def test_big_photo_is_detected_on_a_small_copy_and_boxes_map_back():
    # 4000 x 3000: the astronaut scaled to 3000 x 3000, 500 px from the left edge
    big = Image.new("RGB", (4000, 3000), (128, 128, 128))
    s = 3000 / 512
    big.paste(rgb("astronaut.png").resize((3000, 3000), Image.Resampling.BILINEAR), (500, 0))
    [face] = detect_faces(big)
    assert inside(face.box, scaled(HEAD["astronaut.png"], s, dx=500))
    for point in POINTS["astronaut.png"]:
        assert covers(face.box, (point[0] * s + 500, point[1] * s))


def test_threshold_and_min_size_drop_faces():
    img = rgb("astronaut.png")
    assert detect_faces(img, threshold=1.01) == []
    assert detect_faces(img, min_face=0.5) == []  # the face is ~110 px of 512
    assert len(detect_faces(img, min_face=0.1)) == 1


@pytest.mark.parametrize("size", [(600, 16), (16, 16), (3000, 40)])
def test_thin_or_tiny_images_have_no_face(size):
    assert detect_faces(Image.new("RGB", size, (200, 150, 120))) == []


def test_one_detector_shared_by_threads():
    from animegan import faces as faces_module

    img = rgb("astronaut.png")
    expected = detect_faces(img)
    results: list = [None] * 3

    def work(i: int) -> None:
        results[i] = detect_faces(img)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [expected] * 3
    assert faces_module.detector() is faces_module.detector()  # one MTCNN per process, kept by the runtime


# -- framing -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", FACE_PHOTOS)
def test_crop_contains_box_and_margin(name):
    img = rgb(name)
    [face] = detect_faces(img)
    square = face_square(face, img.size)
    assert square.side == round(MARGIN * max(face.width, face.height))
    # the box with its margin (the square before it is slid into the photo), as far as the
    # photo has it, is inside the crop
    centred = face_square(face)
    x0, y0, x1, y1 = centred.box
    wanted = (max(x0, 0), max(y0, 0), min(x1, img.width), min(y1, img.height))
    assert inside(wanted, square.box)
    assert inside(face.box, square.box)
    # ... and the crop really shows those pixels, unscaled
    crop = crop_square(img, square)
    assert crop.size == (square.side, square.side)
    bx0, by0, bx1, by1 = (round(v) for v in wanted)
    here = crop.crop((bx0 - square.left, by0 - square.top, bx1 - square.left, by1 - square.top))
    assert np.array_equal(np.asarray(here), np.asarray(img.crop((bx0, by0, bx1, by1))))
    framed, same = frame_face(img, face, 512)
    assert framed.size == (512, 512) and same == square


def test_square_slides_inside_the_photo_when_it_fits():
    img = rgb("astronaut.png").crop((150, 40, 512, 400))  # the face near the top-left corner
    [face] = detect_faces(img)
    square = face_square(face, img.size)
    assert face_square(face).left < 0  # centred, it would leave the photo
    assert inside(square.box, (0, 0, *img.size))
    assert inside(face.box, square.box)


def test_square_larger_than_photo_is_padded_from_the_edge_not_black():
    img = rgb("astronaut.png").crop((160, 30, 290, 200))  # 130 x 170, the face fills it
    [face] = detect_faces(img)
    square = face_square(face, img.size)
    assert square.side > img.width and square.left < 0
    arr = np.asarray(img)
    left_pad = -square.left
    crop = np.asarray(crop_square(img, square))
    top = max(0, -square.top)
    rows = slice(top, top + min(img.height, square.side - top))
    # every padded column repeats the photo's first column
    for col in (0, left_pad // 2, left_pad - 1):
        assert np.array_equal(crop[rows, col], arr[: rows.stop - rows.start, 0])
    assert crop.min(axis=2).max(axis=0).min() > 0  # no all-black column


def test_square_around_box():
    from animegan.faces import Face

    face = Face((100.0, 100.0, 180.0, 200.0), 0.99)
    sq = face_square(face, margin=2.0, lift=0.0)
    assert sq == Square(40, 50, 200)
    lifted = face_square(face, margin=2.0, lift=0.1)
    assert lifted.top == 30 and lifted.side == 200


# -- the modes through Stylizer.run --------------------------------------------------------
@pytest.mark.parametrize("name", FACE_PHOTOS)
def test_portrait_is_the_512_stylized_face(stylizer, name):
    src = rgb(name)
    result = stylizer.run(photo(name), "face_paint_512_v2", face_crop="portrait")
    assert result.image.size == (512, 512)
    assert result.faces == 1 and _face_notes(result) == []
    # it shows the framed face, not the whole photo squeezed into a square
    [face] = detect_faces(src)
    framed, _ = frame_face(src, face, 512)
    assert thumb_corr(result.image, framed) > 0.6
    assert thumb_corr(result.image, framed) > thumb_corr(result.image, src.resize((512, 512))) + 0.2


def test_portrait_at_the_style_size(stylizer):
    result = stylizer.run(photo("astronaut.png"), "celeba_distill", face_crop="portrait")
    assert result.image.size == (256, 256)


@pytest.mark.parametrize("name", NO_FACE_PHOTOS)
@pytest.mark.parametrize("mode", ["portrait", "paste"])
def test_no_face_stylizes_the_whole_photo_and_says_so(stylizer, name, mode):
    result = stylizer.run(photo(name), "celeba_distill", face_crop=mode, max_side=160)
    plain = stylizer.run(photo(name), "celeba_distill", max_side=160)
    assert result.faces == 0
    assert _face_notes(result) == [NO_FACE_NOTE]
    assert result.image.size == plain.image.size == images.fit_size(Image.open(photo(name)).size, 160)
    assert np.array_equal(np.asarray(result.image), np.asarray(plain.image))


def test_paste_back_two_faces(stylizer, composite):
    faces = detect_faces(composite)
    assert len(faces) == 2
    assert faces[0].center[0] < 256 < faces[1].center[0]  # the astronaut's face is larger
    result = stylizer.run(composite, "celeba_distill", face_crop="paste")
    plain = stylizer.run(composite, "celeba_distill").image
    assert result.faces == 2 and _face_notes(result) == []
    assert result.image.size == composite.size == plain.size
    out, base = np.asarray(result.image, dtype=np.int16), np.asarray(plain, dtype=np.int16)
    away = np.ones(base.shape[:2], bool)
    for face in faces:
        x0, y0, x1, y1 = face_square(face, composite.size).box
        away[max(y0, 0):y1, max(x0, 0):x1] = False
    assert away.mean() > 0.6
    assert np.array_equal(out[away], base[away])  # away from the faces: the plain stylization
    for face in faces:  # on the faces: the face model's own crop, visibly different
        x0, y0, x1, y1 = (round(v) for v in face.box)
        assert np.abs(out[y0:y1, x0:x1] - base[y0:y1, x0:x1]).mean() > 3


def test_paste_back_keeps_transparency(stylizer, composite):
    rgba = composite.convert("RGBA")
    alpha = np.full((256, 512), 255, np.uint8)
    alpha[:, :16] = 0
    rgba.putalpha(Image.fromarray(alpha))
    result = stylizer.run(rgba, "celeba_distill", face_crop="paste")
    assert result.faces == 2
    assert result.image.mode == "RGBA" and result.image.size == (512, 256)
    assert np.array_equal(np.asarray(result.image.getchannel("A")), alpha)


# EXIF Orientation -> the transpose Pillow applies to show the photo upright. The test
# stores the inverse, so only a reader that honours the tag sees the face upright.
INVERSE = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,  # shown with ROTATE_270
    8: Image.Transpose.ROTATE_270,  # shown with ROTATE_90
}


@pytest.mark.parametrize("orientation", sorted(INVERSE))
def test_exif_rotated_jpeg_face_found_where_it_appears(stylizer, orientation):
    upright = rgb("astronaut.png")
    stored = upright.transpose(INVERSE[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    data = buf.getvalue()

    shown = images.decode(data).rgb
    assert shown.size == upright.size
    [face] = detect_faces(shown)
    assert inside(face.box, HEAD["astronaut.png"], tol=4)  # JPEG moves the box a little
    # the raw pixels have no upright face there: orientation really was applied first
    raw = detect_faces(Image.open(io.BytesIO(data)))
    assert not any(inside(f.box, HEAD["astronaut.png"], tol=4) for f in raw)
    result = stylizer.run(data, "celeba_distill", face_crop="portrait")
    assert result.faces == 1 and result.image.size == (256, 256)


# -- command line ------------------------------------------------------------------------
def run_cli(args: list[str], weights_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANIMEGAN_WEIGHTS_DIR=str(weights_dir), PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "animegan", *args], env=env, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow  # the command line in a subprocess, with MTCNN (the faces are checked in-process above)
def test_cli_face_crop_portrait(weights_dir, tmp_path):
    out = tmp_path / "out"
    proc = run_cli([str(photo("astronaut.png")), "--face-crop", "portrait", "-o", str(out)], weights_dir)
    assert proc.returncode == 0, proc.stderr
    with Image.open(out / "astronaut_anime.png") as img:
        assert img.size == (512, 512)


@pytest.mark.slow  # the command line in a subprocess, with MTCNN (the faces are checked in-process above)
def test_cli_face_crop_paste_and_no_face_line(weights_dir, tmp_path):
    out = tmp_path / "out"
    proc = run_cli([str(photo("astronaut.png")), str(photo("chelsea.png")), "--face-crop", "paste",
                    "--style", "celeba_distill", "--max-side", "200", "-o", str(out)], weights_dir)
    assert proc.returncode == 0, proc.stderr
    with Image.open(out / "astronaut_anime.png") as img:
        assert img.size == (200, 200)
    with Image.open(out / "chelsea_anime.png") as img:
        assert img.size == images.fit_size((451, 300), 200)
    assert f"chelsea.png: {NO_FACE_NOTE}" in proc.stderr
    assert "astronaut.png: No face" not in proc.stderr


def test_portrait_side_by_side_shows_the_framed_face(stylizer):
    """Side by side, a portrait sits next to the face it was made from, not a squeezed photo."""
    from animegan.faces import detect_faces, frame_face

    src = Image.open(photo("coffee.png")).convert("RGB")
    astro = Image.open(photo("astronaut.png")).convert("RGB").resize((300, 300))
    src.paste(astro, (0, 0))  # a 600 x 400 photo with a face in one corner
    pair = stylizer(src, max_side=None, face_crop="portrait", side_by_side=True)
    assert pair.size == (1024, 512)
    crop, _ = frame_face(src, detect_faces(src)[0], 512)
    assert np.array_equal(np.asarray(pair.crop((0, 0, 512, 512))), np.asarray(crop))


def _face_notes(result) -> list[str]:
    """The notes but the weights' licence line, which every result carries."""
    from animegan.styles import LICENCE_NOTE

    return [n for n in result.notes if not n.startswith(LICENCE_NOTE)]
