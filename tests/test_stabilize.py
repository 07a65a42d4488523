"""Less flicker: a clip made here by panning and zooming over a real photo, with sensor
noise and a brightness ramp, stylized frame by frame and steadied (animegan.steady), on
the real generator (proxy weights)."""

from __future__ import annotations

import numpy as np
import pytest
from clips import MOVING_SIZE, moving_clip, photo_frames, read_clip, warping_error, write_clip
from PIL import Image

from animegan.backends.fidelity import psnr_8bit as psnr8
from animegan.steady import Stabilizer

STYLE = "face_paint_512_v2"




@pytest.fixture(scope="module")
def own(stylizer):
    """A frame stylized on its own."""
    return lambda frame: np.asarray(stylizer.run_array(STYLE, Image.fromarray(frame)))


@pytest.mark.slow  # flicker measured over a moving clip
def test_carried_statistics_and_flow_flicker_less_and_keep_the_style(stylizer, own):
    frames = moving_clip(12)
    plain = [own(f) for f in frames]
    steady = Stabilizer(stylizer, STYLE, carry=True)
    assert steady.engine is not None
    out = [steady(f) for f in frames]
    assert all(o.shape == (MOVING_SIZE[1], MOVING_SIZE[0], 3) and o.dtype == np.uint8 for o in out)
    assert steady.cuts == 0  # a moving camera is not a scene cut
    before, after = warping_error(plain), warping_error(out)
    assert after < 0.7 * before, (before, after)
    # the style is kept: every frame stays close to its frame-by-frame version
    assert min(psnr8(s, p) for s, p in zip(out, plain, strict=True)) >= 28


@pytest.mark.slow  # flicker measured over a moving clip
def test_a_scene_cut_starts_afresh(stylizer, own):
    first, second = moving_clip(5), moving_clip(3, "coffee.png", seed=1)
    steady = Stabilizer(stylizer, STYLE, carry=True)
    outs = [steady(f) for f in first]
    # mid-scene the result is not the frame on its own: statistics and flow carried over
    assert psnr8(outs[-1], own(first[-1])) < 50
    cut = steady(second[0])
    assert steady.cuts == 1
    # after the cut nothing is carried over: the frame stylized on its own (float rounding)
    assert psnr8(cut, own(second[0])) >= 50
    steady(second[1])
    assert steady.cuts == 1


@pytest.mark.slow  # three clips through the stabilizer (test_the_live_steady_option is the fast lane's)
def test_clips_are_steadied_by_default_and_not_with_no_stabilize(stylizer, tmp_path):
    from animegan.video import stylize_video

    clip = write_clip(tmp_path / "c.mp4", photo_frames((96, 64), 6, 10), 10)
    steady = stylize_video(stylizer, clip, tmp_path / "a.mp4", style=STYLE)
    plain = stylize_video(stylizer, clip, tmp_path / "b.mp4", style=STYLE, stabilize=False)
    carried = stylize_video(stylizer, clip, tmp_path / "d.mp4", style=STYLE, carry_statistics=True)
    assert carried.frames == 6
    assert any(n.startswith("Steadied against flicker") for n in steady.notes)
    assert not any(n.startswith("Steadied") for n in plain.notes)
    assert steady.frames == plain.frames == 6
    a, b = read_clip(tmp_path / "a.mp4")["frames"], read_clip(tmp_path / "b.mp4")["frames"]
    assert len(a) == len(b) == 6
    assert psnr8(a[0], b[0]) > 40  # the first frame has nothing to carry
    assert any(psnr8(x, y) < 45 for x, y in zip(a[1:], b[1:], strict=True))  # later ones do


def test_the_live_steady_option(stylizer):
    from animegan.live import LiveStylizer

    live = LiveStylizer(stylizer, side=128, time_limit=None)
    frames = moving_clip(3)
    session = None
    for f in frames:
        session, result = live.process(session, Image.fromarray(f), STYLE, steady=True)
        assert result.processed and result.image.size == (128, 96)
    assert session.steady is not None and session.steady.frames == 3
    session, result = live.process(session, Image.fromarray(frames[0]), STYLE)
    assert result.processed and session.steady is None  # switched off: frame by frame again


@pytest.mark.slow  # flicker measured over a moving clip
def test_by_default_flow_blending_runs_on_the_style_backend(stylizer, own):
    """The default (and all a style without GroupNorms gets): the backend's own frames,
    blended along the optical flow."""
    frames = moving_clip(8)
    steady = Stabilizer(stylizer, STYLE)
    assert steady.engine is None
    out = [steady(f) for f in frames]
    plain = [own(f) for f in frames]
    np.testing.assert_array_equal(out[0], plain[0])  # nothing to blend yet: the frame itself
    assert warping_error(out) < 0.7 * warping_error(plain)
    assert min(psnr8(s, p) for s, p in zip(out, plain, strict=True)) >= 28
