"""Short test clips made with PyAV from the real photos, with a sine-wave sound track."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
CLIP_PHOTOS = ["astronaut.png", "coffee.png", "chelsea.png", "rocket.jpg"]


def photo_frames(size: tuple[int, int], count: int, fps: float) -> list[np.ndarray]:
    """``count`` RGB frames of ``size`` (w, h): each photo in turn for a second, slowly
    zooming, so neighbouring frames differ a little, as in a real clip."""
    w, h = size
    frames = []
    for i in range(count):
        img = Image.open(EXAMPLES / CLIP_PHOTOS[int(i / fps) % len(CLIP_PHOTOS)]).convert("RGB")
        zoom = 1.0 + 0.01 * (i % max(1, round(fps)))
        cw, ch = img.width / zoom, img.height / zoom
        # cover the frame: crop the photo to the frame's aspect, centred
        aspect = w / h
        if cw / ch > aspect:
            cw = ch * aspect
        else:
            ch = cw / aspect
        left, top = (img.width - cw) / 2, (img.height - ch) / 2
        frames.append(np.asarray(img.resize((w, h), Image.Resampling.BILINEAR, box=(left, top, left + cw, top + ch))))
    return frames


def write_clip(
    path: Path,
    frames: list[np.ndarray],
    fps: float = 10,
    *,
    times: list[float] | None = None,
    audio_seconds: float | None = None,
    audio_codec: str = "aac",
    sample_rate: int = 44100,
    video_codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    rotation: int = 0,
    container: str | None = None,
) -> Path:
    """Encode ``frames`` (stored as they are) at ``fps`` or at the given ``times`` (seconds,
    for variable frame rate), with a 440 Hz sine of ``audio_seconds`` if given, and a
    display rotation (degrees counter-clockwise) if given."""
    import av

    h, w = frames[0].shape[:2]
    out = av.open(str(path), "w", format=container)
    v = out.add_stream(video_codec, rate=Fraction(fps).limit_denominator(1001))
    v.width, v.height, v.pix_fmt = w, h, pix_fmt
    tb = Fraction(1, 1000) if times is not None else Fraction(1, round(fps)) if fps == round(fps) else None
    if tb is not None:
        v.codec_context.time_base = tb
    if rotation:
        v.set_display_rotation(rotation)
    a = None
    if audio_seconds:
        a = out.add_stream(audio_codec, rate=sample_rate)
        a.layout = "mono"
    for i, arr in enumerate(frames):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr), format="rgb24")
        if times is not None:
            frame.pts, frame.time_base = round(times[i] * 1000), tb
        elif tb is not None:
            frame.pts, frame.time_base = i, tb
        for p in v.encode(frame):
            out.mux(p)
    for p in v.encode():
        out.mux(p)
    if a is not None:
        t = np.arange(round(audio_seconds * sample_rate)) / sample_rate
        samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        step = 1024
        for k in range(0, len(samples), step):
            chunk = av.AudioFrame.from_ndarray(samples[None, k:k + step], format="fltp", layout="mono")
            chunk.sample_rate, chunk.pts = sample_rate, k
            for p in a.encode(chunk):
                out.mux(p)
        for p in a.encode():
            out.mux(p)
    out.close()
    return path


def read_clip(path: Path) -> dict:
    """What a test wants to know about a clip, read back with PyAV: every video frame
    (RGB, rotation not applied), their times, the rate, the sound's codec and length."""
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        info = {
            "format": c.format.name,
            "codec": v.codec_context.name,
            "pix_fmt": v.codec_context.pix_fmt,
            "size": (v.codec_context.width, v.codec_context.height),
            "average_rate": v.average_rate,
            "video_duration": float(v.duration * v.time_base) if v.duration else None,
            "audio_codec": c.streams.audio[0].codec_context.name if c.streams.audio else None,
        }
        frames, times, rotations = [], [], set()
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="rgb24"))
            times.append(float(f.pts * f.time_base))
            rotations.add(f.rotation)
        info.update(frames=frames, times=times, rotations=rotations)
    if info["audio_codec"]:
        with av.open(str(path)) as c:
            samples = 0
            rate = c.streams.audio[0].codec_context.sample_rate
            first = None
            for f in c.decode(audio=0):
                samples += f.samples
                if first is None:
                    first = f.to_ndarray()
            info["audio_seconds"] = samples / rate
            info["audio_rate"] = rate
    return info


def frame_bomb(path: Path, count: int = 400, side: int = 32) -> Path:
    """``count`` tiny frames a hundred-thousandth of a second apart: a few kB, thousands of fps."""
    import av

    out = av.open(str(path), "w")
    v = out.add_stream("libx264", rate=Fraction(25))
    v.width = v.height = side
    v.pix_fmt, v.options = "yuv420p", {"preset": "ultrafast"}
    v.codec_context.time_base = Fraction(1, 100000)
    black = np.zeros((side, side, 3), np.uint8)
    for i in range(count):
        frame = av.VideoFrame.from_ndarray(black, format="rgb24")
        frame.pts, frame.time_base = i, Fraction(1, 100000)
        for p in v.encode(frame):
            out.mux(p)
    for p in v.encode():
        out.mux(p)
    out.close()
    return path


def long_sound_clip(path: Path, minutes: float, side: int = 64, rate: int = 48000, codec: str = "aac") -> Path:
    """One black video frame and ``minutes`` of silent sound in ``codec``, in an MP4 (the
    video stream's own duration is one frame's): the same silent packet muxed over and
    over, so an hour is written in about a second."""
    import av

    out = av.open(str(path), "w", format="mp4")
    v = out.add_stream("libx264", rate=25)
    v.width = v.height = side
    v.pix_fmt = "yuv420p"
    a = out.add_stream(codec, rate=rate)
    a.layout = "mono"
    frame = av.VideoFrame.from_ndarray(np.zeros((side, side, 3), np.uint8), format="rgb24")
    frame.pts = 0
    for p in [*v.encode(frame), *v.encode()]:
        out.mux(p)
    step = a.codec_context.frame_size or 1024
    silent = []
    for k in range(0, rate, step):
        chunk = av.AudioFrame(format=a.codec_context.format.name, layout="mono", samples=step)
        for plane in chunk.planes:
            plane.update(bytes(plane.buffer_size))
        chunk.sample_rate, chunk.pts = rate, k
        silent += list(a.encode(chunk))
    template = silent[len(silent) // 2]
    step, data, base = template.duration or step, bytes(template), template.time_base
    for i in range(int(minutes * 60 * rate / step)):
        packet = av.Packet(data)
        packet.pts = packet.dts = i * step
        packet.time_base, packet.duration, packet.stream = base, step, a
        out.mux(packet)
    out.close()
    return path


# -- a moving camera over a real photo (flicker tests and benchmark) --
MOVING_SIZE = (160, 120)


def camera(t: int, size=MOVING_SIZE) -> np.ndarray:
    """2 x 3 matrix: frame t's pixel -> the source photo's pixel (a pan right and down
    while zooming in 1.5 % a frame)."""
    w, h = size
    scale = 1.6 * 160 / w / 1.015**t  # source pixels per frame pixel (the same view at any size)
    cx, cy = 200 + 3.0 * t, 230 + 1.5 * t  # where the frame's centre looks in the photo
    return np.array([[scale, 0, cx - scale * w / 2], [0, scale, cy - scale * h / 2]], np.float64)


def moving_clip(count: int, name: str = "astronaut.png", seed: int = 0, size=MOVING_SIZE) -> list[np.ndarray]:
    """Frames of a moving camera over a real photo, with noise (sigma 4 levels) and a
    brightness ramp (+1 % a frame)."""
    src = np.asarray(Image.open(EXAMPLES / name).convert("RGB"))
    rng = np.random.default_rng(seed)
    frames = []
    for t in range(count):
        frame = cv2.warpAffine(src, camera(t, size), size, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                               borderMode=cv2.BORDER_REFLECT).astype(np.float32)
        frame = frame * (1 + 0.01 * t) + rng.normal(0, 4, frame.shape)
        frames.append(frame.clip(0, 255).astype(np.uint8))
    return frames


def previous_to_current(t: int, size=MOVING_SIZE) -> np.ndarray:
    """2 x 3 matrix: frame t's pixel -> where the same point is in frame t - 1."""
    a = np.vstack([camera(t, size), [0, 0, 1]])
    b = np.vstack([camera(t - 1, size), [0, 0, 1]])
    return (np.linalg.inv(b) @ a)[:2]


def warping_error(outputs: list[np.ndarray]) -> float:
    """Mean |previous output warped by the known motion - current output| (8-bit levels),
    inside a border of 12 px."""
    errors = []
    for t in range(1, len(outputs)):
        size = outputs[t].shape[1], outputs[t].shape[0]
        warped = cv2.warpAffine(outputs[t - 1], previous_to_current(t, size), size,
                                flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        diff = np.abs(warped.astype(np.float32) - outputs[t].astype(np.float32))
        errors.append(diff[12:-12, 12:-12].mean())
    return float(np.mean(errors))
