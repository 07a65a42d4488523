"""Gradio tabs for the live webcam and for video clips.

Call these inside an open ``gr.Blocks`` and ``gr.Tabs`` with the app's one Stylizer::

    with gr.Blocks() as demo:
        with gr.Tabs():
            with gr.Tab("Photo", id="photo"):
                ...                                   # the photo page
            add_live_tab(stylizer)                    # endpoints /live (stream) and /stylize_frame
            add_video_tab(stylizer)                   # endpoint /stylize_video

Concurrency ids: "live" and "live_api" (4 each: a dropped frame costs nothing) and
"video" (1). Every model pass still takes ``runtime.INFERENCE_LOCK``, so a clip's frames
take turns with photos; live frames never wait for it (they are dropped instead).
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections import deque
from pathlib import Path

import gradio as gr

from . import images, live, video
from .styles import STYLES
from .weights import WeightsError

LIVE_STREAM_EVERY = 0.1  # seconds between webcam frames sent by the browser
LIVE_CONCURRENCY = 4  # visitors streaming at once (frames still run one at a time)
VIDEO_CONCURRENCY = 1  # one clip at a time: its frames take turns with photos anyway
VIDEO_SIDES = (256, 768)


def _style_choices() -> list[tuple[str, str]]:
    return [(f"{s.title}", s.name) for s in STYLES.values()]


def add_live_tab(
    stylizer,
    *,
    side: int = live.DEFAULT_SIDE,
    time_limit: float = live.DEFAULT_TIME_LIMIT,
    stream_every: float = LIVE_STREAM_EVERY,
    concurrency_limit: int = LIVE_CONCURRENCY,
    label: str = "Live webcam",
    style_choices: list[tuple[str, str]] | None = None,
    default_style: str | None = None,
) -> dict:
    """A tab that streams the webcam through the style and back at a reduced size.

    ``style_choices`` ((label, name) pairs) and ``default_style`` let the app offer the
    same styles as its photo tab (for example only those whose weights are available).

    Endpoints: ``/live`` (the stream event, used by the browser) and ``/stylize_frame``
    (one frame per call, for API clients: (image, style, size, face crop) -> (image, status);
    a frame that arrives while another is being stylized gets no image and a status that
    starts with "dropped (busy)"). Returns the components.
    """
    engine = live.LiveStylizer(stylizer, side=side, time_limit=time_limit)

    def run(frame, session, style, size, face):
        try:
            session, result = engine.process(session, frame, style, size, face_crop=face)
        except live.LiveLimitReached as exc:
            raise gr.Error(str(exc), title="Time is up") from None
        except (images.ImageError, WeightsError, ValueError) as exc:
            raise gr.Error(str(exc)) from None
        return session, result

    def on_stream(frame, session, style, size, face):
        session, result = run(frame, session, style, size, face)
        if not result.processed:  # dropped: leave the picture as it is, send nothing
            return gr.skip(), gr.skip(), session
        return result.image, result.status, session

    def on_frame(frame, session, style, size, face):
        if frame is None:
            raise gr.Error("No frame received; send an image.")
        session, result = run(frame, session, style, size, face)
        if not result.processed:  # no new picture: say so rather than send the last one again
            return None, "dropped (busy) · " + result.status, session
        return result.image, result.status, session

    with gr.Tab(label, id="live"):
        gr.Markdown(
            "Start the webcam and the anime version follows along, small and fast. "
            "Frames that arrive while one is being drawn are skipped, so the picture "
            f"never lags behind. Each start lasts up to {time_limit:g} s."
        )
        with gr.Row():
            with gr.Column():
                cam = gr.Image(label="Webcam", sources=["webcam"], streaming=True, type="pil",
                               elem_id="live-webcam")
                with gr.Row():
                    style = gr.Dropdown(style_choices or _style_choices(), value=default_style or stylizer.style,
                                        label="Style")
                    size = gr.Slider(live.MIN_SIDE, live.MAX_SIDE, value=side, step=32,
                                     label="Size (long side, px)")
                face = gr.Checkbox(False, label="Face crop (portrait framing that follows the face)")
            with gr.Column():
                out = gr.Image(label="Anime, live", format="jpeg", interactive=False, elem_id="live-output")
                status = gr.Textbox(label="Frame rate and delay", interactive=False, elem_id="live-status")
        state = gr.State(None)
        cam.stream(on_stream, [cam, state, style, size, face], [out, status, state], api_name="live",
                   stream_every=stream_every, time_limit=int(time_limit) + 5,
                   concurrency_limit=concurrency_limit, concurrency_id="live", show_progress="hidden")
        api_button = gr.Button("Stylize one frame", visible=False)
        api_button.click(on_frame, [cam, state, style, size, face], [out, status, state], api_name="stylize_frame",
                         concurrency_limit=concurrency_limit, concurrency_id="live_api", show_progress="hidden")
    return {"webcam": cam, "output": out, "status": status, "style": style, "size": size, "face": face,
            "engine": engine}


class _Outputs:
    """Result clips live in temporary folders; keep the last few, delete older ones."""

    def __init__(self, keep: int = 8) -> None:
        self.folders: deque[Path] = deque()
        self.keep = keep
        self.lock = threading.Lock()

    def new(self, source: Path) -> Path:
        folder = Path(tempfile.mkdtemp(prefix="animegan-video-"))
        with self.lock:
            self.folders.append(folder)
            while len(self.folders) > self.keep:
                shutil.rmtree(self.folders.popleft(), ignore_errors=True)
        return folder / f"{source.stem}_anime.mp4"


def add_video_tab(
    stylizer,
    *,
    max_seconds: float = video.DEFAULT_MAX_SECONDS,
    max_side: int = video.DEFAULT_VIDEO_MAX_SIDE,
    concurrency_limit: int = VIDEO_CONCURRENCY,
    label: str = "Video",
    style_choices: list[tuple[str, str]] | None = None,
    default_style: str | None = None,
) -> dict:
    """A tab that takes a clip and gives back its anime version with the original sound.

    Endpoint: ``/stylize_video`` (clip, style, max side, trim) -> (clip, status).
    """
    outputs = _Outputs()

    def on_video(path, style, side, trim, progress=gr.Progress()):  # noqa: B008 (how Gradio asks for it)
        if not path:
            raise gr.Error("Upload a video clip first (MP4, MOV, WebM, MKV or AVI).")
        source = Path(path)
        side = int(min(VIDEO_SIDES[1], max(VIDEO_SIDES[0], side or max_side)))
        progress(0, desc="Reading the clip")

        def report(done: int, total: int | None, eta: float | None) -> None:
            left = f" · about {eta:.0f} s left" if eta is not None else ""
            if total:
                progress((min(done, total), total), desc=f"Frame {done} of {total}{left}", unit="frames")
            else:
                progress(None, desc=f"Frame {done}", unit="frames")

        try:
            result = video.stylize_video(stylizer, source, outputs.new(source), style=style or None,
                                         max_side=side, max_seconds=max_seconds, trim=bool(trim), progress=report)
        except (video.VideoError, images.ImageError, WeightsError, ValueError) as exc:
            raise gr.Error(str(exc), title="This clip cannot be used") from None
        return str(result.path), " ".join([result.summary(), *result.notes])

    with gr.Tab(label, id="video"):
        gr.Markdown(
            f"Upload a short clip (MP4, MOV, WebM, MKV or AVI, up to {max_seconds:g} s). Every frame is "
            "stylized; the sound and the frame rate are kept."
        )
        with gr.Row():
            with gr.Column():
                clip = gr.Video(label="Clip", sources=["upload"], format=None, elem_id="video-input")
                with gr.Row():
                    style = gr.Dropdown(style_choices or _style_choices(), value=default_style or stylizer.style,
                                        label="Style")
                    side = gr.Slider(VIDEO_SIDES[0], VIDEO_SIDES[1], value=max_side, step=32,
                                     label="Frame size (long side, px)")
                trim = gr.Checkbox(False, label=f"Cut longer clips to {max_seconds:g} s")
                button = gr.Button("Stylize the clip", variant="primary")
            with gr.Column():
                out = gr.Video(label="Anime clip", format=None, interactive=False, elem_id="video-output")
                status = gr.Textbox(label="Result", interactive=False, elem_id="video-status")
        button.click(on_video, [clip, style, side, trim], [out, status], api_name="stylize_video",
                     concurrency_limit=concurrency_limit, concurrency_id="video", show_progress_on=out)
    return {"input": clip, "output": out, "status": status, "style": style, "side": side, "trim": trim}
