"""The package's one vocabulary of options and limits: face modes and sizes.

Every way in (library, command line, app, live webcam, clips) parses a face mode and
clamps a size with the functions here, so they all accept and refuse the same things.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

FaceMode = Literal["off", "portrait", "paste"]
FACE_MODES: tuple[FaceMode, ...] = get_args(FaceMode)

# -- photos ------------------------------------------------------------------------------
DEFAULT_MAX_SIDE = 1024  # library and CLI: the long side photos are shrunk to (docs/speed.md: why 1024)
MIN_SIDE = 16  # below this the network has nothing to work with
DEFAULT_MAX_PIXELS = 40_000_000  # decoded images larger than this are refused
SIDE_MIN = 256  # app: the smallest output size its slider offers

# -- live webcam and clips ---------------------------------------------------------------
LIVE_SIDE, LIVE_SIDE_MIN, LIVE_SIDE_MAX = 256, 128, 512
VIDEO_SIDE, VIDEO_SIDE_MIN, VIDEO_SIDE_MAX = 512, 256, 768
VIDEO_MAX_FPS = 60  # frames per second; the frame budget of a clip is its length limit x this
VIDEO_MAX_INPUT_PIXELS = 4096 * 2304  # a 4K frame (either orientation); larger clips are refused
VIDEO_FFMPEG_THREADS = 2  # decoder and encoder threads: the model needs the cores
LIVE_MAX_PIXELS = 4096 * 4096  # a live frame larger than this is refused before decoding
LIVE_WORK_SIDE = 1024  # live frames are shrunk to this long side before faces are looked for


def parse_face_mode(value: Any) -> FaceMode:
    """``None``, ``False``, ``""``, ``"none"`` -> ``"off"``; ``True`` -> ``"portrait"``;
    the three names as they are; anything else is a ValueError that lists them."""
    if value in (None, False, "", "none"):
        return "off"
    if value is True:
        return "portrait"
    if isinstance(value, str) and value in FACE_MODES:
        return value  # type: ignore[return-value]
    raise ValueError(f"Face crop must be one of: {', '.join(FACE_MODES)} (not {value!r}). "
                     "In Python, face_crop must be one of these names, True or False.")


def clamp_side(value: Any, low: int, high: int, default: int) -> int:
    """A whole number of pixels in [low, high]; ``default`` for anything unreadable."""
    try:
        side = int(round(float(value)))
    except (TypeError, ValueError, OverflowError):
        return default
    return min(high, max(low, side))
