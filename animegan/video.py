"""Video clips: decode with PyAV (FFmpeg ships inside its wheel), stylize every frame,
encode H.264 + AAC in an MP4 that browsers play, keeping the clip's timing and sound.

What a phone clip brings, and what happens to it:

- **Timing**: every frame keeps its own timestamp, so variable frame rate clips stay in
  sync with their sound; the output's nominal rate is the input's average rate.
- **Sound**: AAC is copied as it is; any other codec (Opus, MP3, PCM ...) is re-encoded
  to AAC. A clip without sound gives a clip without sound.
- **Rotation**: phones store portrait clips as landscape frames plus a display matrix;
  the frames are turned upright here and the output carries no rotation.
- **Size**: the long side is scaled down to ``max_side`` (512 by default) and both sides
  are made even, as H.264 in yuv420p needs (an odd row or column is cropped, not stretched).
- **Length**: clips longer than ``max_seconds`` are refused with a message that says so,
  or cut to that length with ``trim=True``. The length is the longest stream's: a clip of
  one picture and an hour of sound is an hour long. Every packet read, sound included,
  is checked against the length and the job's clock, so no stream is read past either.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image

from . import images, policy
from .styles import get_style

VIDEO_SUFFIXES = {".mp4", ".mov", ".webm", ".mkv", ".avi", ".m4v"}
DEFAULT_MAX_SECONDS = 30.0
SOUND_SLACK = 1.0  # seconds a sound track may run past the picture before it counts as the clip's length
READ_SLACK = 2.0  # packets are interleaved this loosely: one this far past the limit ends the reading
VIDEO_CRF = 20  # x264 quality: visually clean for flat anime colours, small files
VIDEO_PRESET = "veryfast"  # encoding is a few % of the work; the model is the cost

# (frames done, frames expected or None, seconds left or None)
VideoProgressFn = Callable[[int, "int | None", "float | None"], None]

# Demuxers that turn a single still picture into a one-frame "video".
_IMAGE_DEMUXERS = ("image2", "_pipe", "gif", "webp", "apng", "tiff")
# Raw elementary streams: no container, so no timestamps (FFmpeg guesses 25 fps).
_RAW_DEMUXERS = {"h264", "hevc", "h263", "mpegvideo", "m4v", "rawvideo", "vc1", "av1", "obu", "ivf"}


class VideoError(ValueError):
    """The input is not a usable clip; the message says what was wrong and what to do."""


@dataclass
class VideoInfo:
    """What a clip holds, as it will be shown (width and height after rotation)."""

    width: int
    height: int
    rotation: int  # degrees counter-clockwise the stored frames are turned for display
    fps: float
    frames: int | None  # expected number of frames (None when the file does not say)
    duration: float | None  # seconds (None when the file does not say, e.g. a live WebM)
    codec: str
    audio_codec: str | None
    container: str
    length: float | None = None  # seconds of the longest stream (the picture's, or a longer sound's)

    @property
    def has_audio(self) -> bool:
        return self.audio_codec is not None

    @property
    def span(self) -> float | None:
        """Seconds the clip lasts: the picture's, or the sound's when it runs on well past the picture."""
        if self.length and (self.duration is None or self.length > self.duration + SOUND_SLACK):
            return self.length
        return self.duration


@dataclass
class VideoResult:
    """A stylized clip on disk and what a person may want to know about it."""

    path: Path
    style: str
    frames: int
    fps: float
    size: tuple[int, int]
    duration: float
    has_audio: bool
    seconds: float
    backend: str
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        w, h = self.size
        sound = "with sound" if self.has_audio else "no sound"
        speed = self.frames / self.seconds if self.seconds > 0 else 0.0
        return (f"{get_style(self.style).title} · {w} x {h} · {self.frames} frames at {self.fps:.3g} fps · "
                f"{self.duration:.1f} s {sound} · {self.seconds:.1f} s on {self.backend} ({speed:.1f} frames/s)")


def is_video_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def _av():
    try:
        import av
    except ImportError:  # pragma: no cover - a dependency, listed in requirements.txt
        raise VideoError("Video needs PyAV: pip install av") from None
    return av


def _open(path: Path):
    av = _av()
    if not path.is_file():
        raise VideoError(f"No such file: {path}")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, OSError) as exc:
        raise VideoError(
            f"{path.name} is not a video FFmpeg can read ({getattr(exc, 'strerror', None) or _first_line(exc)}). "
            "Use an MP4, MOV, WebM, MKV or AVI clip."
        ) from None
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path.name} has no video track (is it a sound file?). Use a video clip.")
    if any(key in container.format.name for key in _IMAGE_DEMUXERS):
        container.close()
        raise VideoError(f"{path.name} is a still image, not a video. Use the photo tab (or command) for it.")
    if set(container.format.name.split(",")) & _RAW_DEMUXERS:
        container.close()
        raise VideoError(
            f"{path.name} is a raw video stream without a container, so its frames carry no timing. "
            "Put it in an MP4 first (for example: ffmpeg -i clip.h264 -c copy clip.mp4) and try again."
        )
    return container


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def _rotation(container) -> int:
    """The display matrix's rotation, read from the first decodable frame (0, 90, 180, -90)."""
    try:
        for frame in container.decode(video=0):
            return _quarter_turns(frame.rotation) * 90
    except Exception:  # undecodable: the main loop reports it properly
        return 0
    return 0


def _quarter_turns(degrees: float | None) -> int:
    """-180..180 degrees (counter-clockwise) to quarter turns in -1..2, nearest."""
    turns = round((degrees or 0) / 90) % 4
    return turns - 4 if turns == 3 else turns


def _duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        seconds = float(stream.duration * stream.time_base)
        if seconds > 0:
            return seconds
    if container.duration is not None and container.duration > 0:
        return container.duration / 1_000_000
    return None


def _length(container, video_duration: float | None) -> float | None:
    """The longest of the streams (and the container's own duration): what the clip costs to read."""
    found = [video_duration]
    if container.duration is not None and container.duration > 0:
        found.append(container.duration / 1_000_000)
    for stream in container.streams.audio:
        if stream.duration is not None and stream.time_base is not None:
            found.append(float(stream.duration * stream.time_base))
    found = [f for f in found if f]
    return max(found) if found else None


def _rate(stream) -> Fraction | None:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and 0 < float(rate) < 1000:
            return Fraction(rate)
    return None


def probe(path: str | os.PathLike) -> VideoInfo:
    """Read a clip's header (and its first frame, for the rotation); VideoError if unusable."""
    path = Path(path)
    container = _open(path)
    try:
        stream = container.streams.video[0]
        ctx = stream.codec_context
        rate = _rate(stream)
        duration = _duration(container, stream)
        frames = stream.frames or (round(duration * float(rate)) if duration and rate else None)
        w, h = _display_size(ctx.width, ctx.height, stream.sample_aspect_ratio)
        rotation = _rotation(container)
        if rotation in (90, -90):
            w, h = h, w
        audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
        return VideoInfo(w, h, rotation, float(rate) if rate else 0.0, frames or None, duration,
                         ctx.name, audio, container.format.name, _length(container, duration))
    finally:
        container.close()


def _display_size(width: int, height: int, sar) -> tuple[int, int]:
    """Stored size to shown size: anamorphic clips (sample aspect ratio != 1) are widened."""
    if sar and float(sar) > 0 and sar != 1:
        return max(1, round(width * float(sar))), height
    return width, height


def frame_size(display: tuple[int, int], max_side: int | None) -> tuple[int, int]:
    """The output size: the size policy, then both sides even (yuv420p needs that)."""
    w, h = images.fit_size(display, max_side)
    return max(2, w - w % 2), max(2, h - h % 2)


def _check_length(name: str, seconds: float, limit: float | None) -> None:
    if limit and seconds > limit + 1e-3:
        raise VideoError(
            f"{name} is {seconds:.1f} s long; the limit here is {limit:g} s. "
            f"Trim it to {limit:g} s or less and try again."
        )


def default_output(source: Path) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="animegan-video-"))
    return folder / f"{source.stem}_anime.mp4"


class _Frames:
    """Decoded frames -> upright RGB arrays at the output size, with their timestamps."""

    def __init__(self, stream, rotation: int, size: tuple[int, int]) -> None:
        self.turns = _quarter_turns(rotation)
        self.size = size  # (w, h) as shown, even
        disp = _display_size(stream.codec_context.width, stream.codec_context.height, stream.sample_aspect_ratio)
        if self.turns % 2:
            disp = disp[1], disp[0]
        self.target = _scaled_size(disp, size)  # FFmpeg scales (fast, area-averaging) to this

    def rgb(self, frame) -> np.ndarray:
        tw, th = self.target  # shown orientation
        sw, sh = (th, tw) if self.turns % 2 else (tw, th)  # stored orientation
        arr = frame.reformat(width=sw, height=sh, format="rgb24", interpolation="AREA").to_ndarray()
        if self.turns:
            arr = np.rot90(arr, k=self.turns)
        w, h = self.size
        return np.ascontiguousarray(arr[:h, :w])  # crop the odd row/column, if any


def _scaled_size(display: tuple[int, int], even: tuple[int, int]) -> tuple[int, int]:
    """What to scale the shown frame to before cropping to ``even``: the frame itself when
    no scaling is needed (then the crop removes at most one row and one column), else
    ``even`` directly (one resample, aspect within half a pixel)."""
    w, h = display
    if (w - w % 2, h - h % 2) == even:
        return display
    return even


def stylize_video(
    stylizer,
    source: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    style: str | None = None,
    max_side: int | None = policy.VIDEO_SIDE,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
    trim: bool = False,
    progress: VideoProgressFn | None = None,
    max_job_seconds: float | None = None,
    stabilize: bool = True,
    carry_statistics: bool = False,
) -> VideoResult:
    """Stylize every frame of ``source`` and write an MP4 (H.264 + AAC) to ``output``.

    ``max_seconds``: longer clips raise :class:`VideoError`, or are cut to that length when
    ``trim`` is set; it also sets the frame budget (``max_seconds`` x ``policy.VIDEO_MAX_FPS``
    frames), so a clip cannot pack thousands of frames into a moment. Frames larger than
    ``policy.VIDEO_MAX_INPUT_PIXELS`` and frame rates above ``policy.VIDEO_MAX_FPS`` are
    refused. ``max_job_seconds``: stop with :class:`VideoError` when the work takes longer.
    ``progress(done, total, eta_seconds)`` is called after every frame. ``stabilize``
    (the default) blends in the previous result along the optical flow where it is
    trustworthy (:mod:`animegan.steady`): less flicker; ``carry_statistics`` also carries
    each layer's statistics from frame to frame (slower).
    """
    av = _av()
    source = Path(source)
    style = stylizer.check_style(style or stylizer.style).name  # the core's policy, before any work
    start = time.perf_counter()
    info = admit(source, max_seconds, trim)
    notes: list[str] = []
    length = info.span
    if length is not None and max_seconds and length > max_seconds + 1e-3:
        notes.append(f"Cut to the first {max_seconds:g} s of {length:.1f} s.")
    size = frame_size((info.width, info.height), max_side)
    if (info.width, info.height) != size:
        notes.append(f"Frames {info.width} x {info.height} -> {size[0]} x {size[1]}.")
    if info.rotation:
        notes.append(f"Turned upright (rotation metadata {info.rotation} degrees).")
    limit = max_seconds if max_seconds else None
    budget = Budget(source.name, _frame_budget(max_seconds), trim, max_job_seconds)
    total = info.frames
    if limit and info.duration and info.duration > limit and info.fps:
        total = math.ceil(limit * info.fps)

    backend = stylizer.backend(style)  # load (or fail) before creating the output
    stylize = _frame_stylizer(stylizer, style, stabilize, carry_statistics, notes)
    output = Path(output) if output is not None else default_output(source)
    output.parent.mkdir(parents=True, exist_ok=True)
    # a new name of our own beside the output, renamed onto it at the end (a link there is replaced, not followed)
    partial = output.with_name(f".{output.stem}.{os.urandom(4).hex()}.part{output.suffix}")
    try:
        frames, duration, has_audio = _transcode(av, stylize, source, partial, info, size, limit, trim,
                                                 total, progress, notes, budget)
        partial.replace(output)
        if getattr(stylize, "cuts", None) is not None:
            notes.append("Steadied against flicker" + (f"; restarted at {stylize.cuts} scene cut(s)." if stylize.cuts
                                                       else "."))
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return VideoResult(output, style, frames, frames / duration if duration > 0 else info.fps, size, duration,
                       has_audio, time.perf_counter() - start, backend.name, notes)


def admit(source: str | os.PathLike, max_seconds: float | None = DEFAULT_MAX_SECONDS, trim: bool = False
          ) -> VideoInfo:
    """The clip's header, or VideoError when it must be refused before a frame is decoded:
    unreadable, frames over 4K, too many frames a second, longer than ``max_seconds``
    (picture or sound; unless ``trim``), more frames than the length limit allows. Cheap
    (the header and the first frame): the app runs it when a clip joins the queue, so a
    refused clip never waits in line, and :func:`stylize_video` runs it again."""
    source = Path(source)
    info = probe(source)
    check_limits(source.name, info)
    if not trim:
        if info.span is not None:
            _check_length(source.name, info.span, max_seconds)
        budget = _frame_budget(max_seconds)
        if budget and info.frames and info.frames > budget:
            _too_many_frames(source.name, info.frames, budget)
    return info


def _too_many_frames(name: str, count: int, limit: int) -> None:
    raise VideoError(f"{name} holds {count} frames or more; the limit here is {limit} "
                     f"({policy.VIDEO_MAX_FPS} per second of the length limit). Use a shorter clip.")


def _frame_budget(max_seconds: float | None) -> int | None:
    return math.ceil(max_seconds * policy.VIDEO_MAX_FPS) if max_seconds else None


def check_limits(name: str, info: VideoInfo) -> None:
    """Refuse what would tie the machine up before a frame is decoded: frames over 4K, a
    frame rate over the limit (also one the header implies: many frames in a moment)."""
    if info.width * info.height > policy.VIDEO_MAX_INPUT_PIXELS:
        raise VideoError(f"{name} has {info.width} x {info.height} frames; the largest accepted is 4K "
                         "(3840 x 2160 or 4096 x 2304). Scale the clip down and try again.")
    rate = info.fps
    if info.frames and info.duration:
        rate = max(rate, info.frames / info.duration)
    if rate > policy.VIDEO_MAX_FPS + 0.5:
        raise VideoError(f"{name} runs at {rate:.0f} frames per second; the limit is {policy.VIDEO_MAX_FPS}. "
                         f"Convert it to {policy.VIDEO_MAX_FPS} fps or less and try again.")


class Budget:
    """The frame and wall-clock budget of one job, checked on every frame."""

    def __init__(self, name: str, frames: int | None, trim: bool, seconds: float | None) -> None:
        self.name, self.frames, self.trim, self.seconds = name, frames, trim, seconds
        self.began = time.perf_counter()

    def check_clock(self, done: int, when: float | None = None) -> None:
        """VideoError when the job ran out of time; called for every packet read, sound
        included (``when``: where in the clip the reading is, in seconds)."""
        if self.seconds and time.perf_counter() - self.began > self.seconds:
            where = f", stopped at {when:.0f} s of the clip" if when is not None else ""
            raise VideoError(f"Stylizing {self.name} took longer than the {self.seconds:g} s allowed per clip "
                             f"here ({done} frames done{where}). Use a shorter clip or a smaller frame size.")

    def allows(self, done: int) -> bool:
        """False when the frame budget is spent and the clip is cut (trim); VideoError when
        it is spent without trim, or when the job ran out of time."""
        self.check_clock(done)
        if self.frames and done >= self.frames:
            if not self.trim:
                _too_many_frames(self.name, done + 1, self.frames)
            return False
        return True


def _frame_stylizer(stylizer, style: str, stabilize: bool, carry: bool, notes: list[str]
                    ) -> Callable[[np.ndarray], np.ndarray]:
    """What turns one RGB frame into its stylized frame: steadied, or frame by frame."""
    if stabilize:
        from .steady import Stabilizer

        steady = Stabilizer(stylizer, style, carry=carry)
        if steady.note:
            notes.append(f"Steadied by the optical flow only ({steady.note}).")
        return steady
    return lambda rgb: np.asarray(stylizer.run_array(style, Image.fromarray(rgb)))


def _transcode(av, stylize, source, output, info, size, limit, trim, total, progress, notes, budget):
    inp = _open(source)
    out = av.open(str(output), "w", format="mp4", options={"movflags": "+faststart"})
    try:
        vin = inp.streams.video[0]
        vin.thread_type = "AUTO"
        vin.codec_context.thread_count = policy.VIDEO_FFMPEG_THREADS
        ain = inp.streams.audio[0] if inp.streams.audio else None
        rate = _rate(vin) or Fraction(25)
        vtb = vin.time_base or Fraction(1, 90000)

        vout = out.add_stream("libx264", rate=rate)
        vout.width, vout.height = size
        vout.pix_fmt = "yuv420p"
        vout.codec_context.time_base = vtb  # keep every frame's own timestamp (VFR stays VFR)
        vout.options = {"crf": str(VIDEO_CRF), "preset": VIDEO_PRESET, "threads": str(policy.VIDEO_FFMPEG_THREADS)}

        audio = _AudioTrack(av, ain, out) if ain is not None else None
        frames_in = _Frames(vin, info.rotation, size)
        # The output starts at 0: shift every stream by the file's start time (as ffmpeg does).
        t0 = inp.start_time / 1_000_000 if inp.start_time else 0.0
        state = {"done": 0, "last_pts": None, "last_time": 0.0}
        began = time.perf_counter()

        def emit(frame) -> bool:
            """Stylize and encode one decoded frame; False once the length limit is reached."""
            if frame.pts is not None:
                when = float(frame.pts * vtb) - t0
            else:
                when = state["last_time"] + 1 / float(rate)
            if limit and when >= limit - 1e-6:
                if not trim:
                    _check_length(source.name, when + 1 / float(rate), limit)
                return False
            if not budget.allows(state["done"]):
                return False
            if state["done"] > when * policy.VIDEO_MAX_FPS * 1.1 + 30:  # frames denser than the rate limit
                raise VideoError(f"{source.name} packs {state['done'] + 1} frames into its first {when:.2f} s, "
                                 f"over {policy.VIDEO_MAX_FPS} frames per second. Convert it to "
                                 f"{policy.VIDEO_MAX_FPS} fps or less and try again.")
            pts = round(when / vtb)
            if state["last_pts"] is not None and pts <= state["last_pts"]:
                pts = state["last_pts"] + 1  # timestamps must grow: repair duplicates
                when = float(pts * vtb)
            state["last_pts"], state["last_time"] = pts, when
            styled = stylize(frames_in.rgb(frame))
            out_frame = av.VideoFrame.from_ndarray(styled, format="rgb24")
            out_frame.pts, out_frame.time_base = pts, vtb
            for p in vout.encode(out_frame):
                out.mux(p)
            state["done"] += 1
            if progress is not None:
                done = state["done"]
                progress(done, total, _eta(done, total, time.perf_counter() - began))
            return True

        video_open, errors = True, 0
        demux = inp.demux(*(s for s in (vin, ain) if s is not None))
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:  # a damaged container: keep what was read
                notes.append(f"Stopped reading at a damaged part of the file ({_first_line(exc)}).")
                break
            when = _packet_time(packet, t0)
            budget.check_clock(state["done"], when)  # every packet: an hour of sound is work too
            if limit and when is not None and when > limit + READ_SLACK:
                if not trim:  # the header said less: the clip is longer than the limit after all
                    _check_length(source.name, when, limit)
                break  # every stream is past the limit from here on
            if audio is not None and packet.stream is ain:
                audio.add(packet, t0, limit)
            elif video_open:
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError:
                    errors += 1  # a damaged packet: skip it, as players do
                    continue
                video_open = all(emit(frame) for frame in decoded)
            if not video_open and (audio is None or audio.past_limit):
                break
        if video_open:
            for frame in _flush_decoder(vin, av):  # frames the decoder held back
                if not emit(frame):
                    break
        if state["done"] == 0:
            raise VideoError(f"No frame of {source.name} could be decoded; the file is damaged or empty.")
        for p in vout.encode():
            out.mux(p)
        has_audio = audio.finish() if audio is not None else False
        if errors:
            notes.append(f"Skipped {errors} damaged packet(s).")
        if ain is None:
            notes.append("The clip has no sound track; the result has none either.")
        elif not has_audio:
            notes.append("The clip's sound track could not be read (damaged?); the result has no sound.")
        elif audio.errors:
            notes.append(f"Skipped {audio.errors} damaged sound packet(s); the sound has gaps there.")
        duration = state["last_time"] + 1 / float(rate)  # the last frame shows for one nominal frame
        return state["done"], duration, has_audio
    finally:
        out.close()
        inp.close()


def _packet_time(packet, t0: float) -> float | None:
    """Where a packet sits in the clip (seconds from its start); None for the end marker."""
    stamp = packet.pts if packet.pts is not None else packet.dts
    if stamp is None or packet.time_base is None:
        return None
    return float(stamp * packet.time_base) - t0


def _flush_decoder(stream, av) -> list:
    try:
        return list(stream.codec_context.decode(None))
    except av.error.FFmpegError:
        return []


def _eta(done: int, total: int | None, elapsed: float) -> float | None:
    if not total or done <= 0:
        return None
    return max(0.0, elapsed / done * (total - done))


class _AudioTrack:
    """The sound: AAC packets are copied as they are; anything else is re-encoded to AAC."""

    def __init__(self, av, stream, out) -> None:
        self.av = av
        self.src = stream
        self.copy = stream.codec_context.name == "aac"
        self.wrote = False
        if self.copy:
            self.dst = out.add_stream_from_template(stream)
        else:
            rate = stream.codec_context.sample_rate or 48000
            rate = rate if rate in (8000, 16000, 22050, 24000, 32000, 44100, 48000) else 48000
            self.dst = out.add_stream("aac", rate=rate)
            channels = stream.codec_context.channels or 2
            self.dst.layout = "mono" if channels == 1 else "stereo"
            self.resampler = av.AudioResampler(format="fltp", layout=self.dst.layout, rate=rate)
        self.out = out
        self.past_limit = False
        self.errors = 0  # sound packets that could not be decoded

    def add(self, packet, t0: float, limit: float | None) -> None:
        tb = self.src.time_base
        if self.copy:
            if packet.dts is None or packet.pts is None:
                return  # the demuxer's end-of-stream marker
            when = float(packet.pts * tb) - t0
            if limit and when >= limit:
                self.past_limit = True
                return
            shift = round(t0 / tb)
            packet.pts -= shift
            packet.dts -= shift
            packet.stream = self.dst
            self.out.mux(packet)
            self.wrote = True
            return
        try:
            frames = packet.decode()
        except self.av.error.FFmpegError:
            self.errors += 1
            return
        for frame in frames:
            when = float(frame.pts * tb) - t0 if frame.pts is not None else None
            if when is not None and limit and when >= limit:
                self.past_limit = True
                continue
            frame.pts = None  # the encoder numbers the resampled samples itself
            for chunk in self.resampler.resample(frame):
                for p in self.dst.encode(chunk):
                    self.out.mux(p)
                    self.wrote = True

    def finish(self) -> bool:
        if not self.copy:
            for chunk in self.resampler.resample(None):
                for p in self.dst.encode(chunk):
                    self.out.mux(p)
            for p in self.dst.encode(None):
                self.out.mux(p)
                self.wrote = True
        return self.wrote
