"""The video tab: a clip in, its anime version with the original sound out.

Endpoint: ``/stylize_video`` (clip, style, max side, trim) -> (clip, status); one clip at
a time (concurrency id "video"): its frames take turns with photos anyway.
"""

from __future__ import annotations

import atexit
import math
import shutil
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import gradio as gr

from .. import policy, video
from ..errors import public, user_message
from .photo import to_gradio_error

VIDEO_CONCURRENCY = 1


class _Outputs:
    """Result clips are written to temporary folders in ``folder`` (Gradio then copies them
    into its own cache, which it cleans): keep the last few, each for at most ``max_age``
    seconds after its job ended (checked by :meth:`sweep`, which the app runs every minute,
    and when a new clip starts), and delete all of them when the process exits."""

    def __init__(self, keep: int = 8, max_age: float = 600.0, folder: str | Path | None = None) -> None:
        self.folders: deque[tuple[float, Path]] = deque()
        self.keep = keep
        self.max_age = max_age
        self.folder = folder
        self.lock = threading.Lock()
        atexit.register(self.clear)

    def new(self, source: Path) -> Path:
        with self.lock:
            if self.folder is not None:
                Path(self.folder).mkdir(parents=True, exist_ok=True)
            folder = Path(tempfile.mkdtemp(prefix="animegan-video-", dir=self.folder))
            self.folders.append((math.inf, folder))  # in use: its age starts when its job ends
        self.sweep()
        return folder / f"{source.stem}_anime.mp4"

    def done(self, path: Path) -> None:
        """The job writing ``path`` ended (done or failed): its folder's age starts now."""
        with self.lock:
            self.folders = deque((time.monotonic() if f == path.parent else t, f) for t, f in self.folders)

    def sweep(self, final: bool = False) -> None:
        now = time.monotonic()
        with self.lock:
            finished = [(t, f) for t, f in self.folders if t != math.inf]
            old = {f for _, f in self.folders} if final else {f for t, f in finished if t < now - self.max_age}
            old |= {f for _, f in sorted(finished)[:max(0, len(finished) - self.keep)]}
            self.folders = deque((t, f) for t, f in self.folders if f not in old)
            for folder in old:
                shutil.rmtree(folder, ignore_errors=True)
            if self.folder is not None and not self.folders:
                try:
                    Path(self.folder).rmdir()  # no clip kept: no folder either (new() makes it again)
                except OSError:
                    pass

    def clear(self) -> None:
        self.sweep(final=True)


def add_video_tab(
    stylizer,
    *,
    max_seconds: float,
    style_choices: list[tuple[str, str]],
    default_style: str | None,
    max_side: int = policy.VIDEO_SIDE,
    max_job_seconds: float | None = None,
    concurrency_limit: int = VIDEO_CONCURRENCY,
    label: str = "Video",
    outputs_folder: str | Path | None = None,
    outputs_max_age: float = 600.0,
) -> dict:
    """A tab that takes a clip and gives back its anime version with the original sound.

    Endpoint: ``/stylize_video`` (clip, style, max side, trim) -> (clip, status). Result
    clips are kept in ``outputs_folder`` (the system's temporary folder by default) for
    ``outputs_max_age`` seconds after their job ends; the returned ``"outputs"`` sweeps them.
    """
    outputs = _Outputs(max_age=outputs_max_age, folder=outputs_folder)

    def on_video(clip, style, side, trim, progress=gr.Progress()):  # noqa: B008 (how Gradio asks for it)
        if not clip:
            raise gr.Error("Upload a video clip first (MP4, MOV, WebM, MKV or AVI).", print_exception=False)
        source = Path(clip)
        side = policy.clamp_side(side or max_side, policy.VIDEO_SIDE_MIN, policy.VIDEO_SIDE_MAX, max_side)
        progress(0, desc="Reading the clip")

        def report(done: int, total: int | None, eta: float | None) -> None:
            left = f" · about {eta:.0f} s left" if eta is not None else ""
            if total:
                progress((min(done, total), total), desc=f"Frame {done} of {total}{left}", unit="frames")
            else:
                progress(None, desc=f"Frame {done}", unit="frames")

        target = outputs.new(source)
        try:
            result = video.stylize_video(stylizer, source, target, style=style or None,
                                         max_side=side, max_seconds=max_seconds, trim=bool(trim), progress=report,
                                         max_job_seconds=max_job_seconds)
        except Exception as exc:
            raise to_gradio_error(exc) from None
        finally:
            outputs.done(target)
        return str(result.path), " ".join([result.summary(), *result.notes])

    def admit(clip, style, side, trim):
        """Gradio's validator: run when the job asks to join the queue, before it waits. A
        clip the job would refuse (unreadable, too long, too many frames, over 4K) or a
        style it may not use is answered now, at its input, and never takes a place in the
        clips' line (they used to wait their turn only to be refused)."""
        ok = gr.validate(True, "")
        answers = [ok, ok, ok, ok]
        try:
            if style:
                stylizer.check_style(style)
        except ValueError as exc:
            answers[1] = gr.validate(False, public(user_message(exc).text))
        if not clip:
            answers[0] = gr.validate(False, "Upload a video clip first (MP4, MOV, WebM, MKV or AVI).")
            return answers
        try:
            video.admit(Path(clip), max_seconds, bool(trim))
        except video.VideoError as exc:
            answers[0] = gr.validate(False, public(user_message(exc).text))
        return answers

    with gr.Tab(label, id="video"):
        gr.Markdown(
            f"Upload a short clip (MP4, MOV, WebM, MKV or AVI, up to {max_seconds:g} s). Every frame is "
            "stylized; the sound and the frame rate are kept."
        )
        with gr.Row():
            with gr.Column():
                clip = gr.Video(label="Clip", sources=["upload"], format=None, elem_id="video-input")
                with gr.Row():
                    # min_width: on a phone the two stack, and the style's name has room beside its arrow
                    # allow_custom_value: a name sent through the API is judged by the core's policy (the
                    # validator's message names only the offered styles), not by Gradio's list of choices
                    style = gr.Dropdown(style_choices, value=default_style, label="Style", min_width=200,
                                        elem_id="video-style", allow_custom_value=True)
                    side = gr.Slider(policy.VIDEO_SIDE_MIN, policy.VIDEO_SIDE_MAX, value=max_side, step=32,
                                     label="Frame size (long side, px)", min_width=200)
                trim = gr.Checkbox(False, label=f"Cut longer clips to {max_seconds:g} s")
                button = gr.Button("Stylize the clip", variant="primary")
            with gr.Column():
                out = gr.Video(label="Anime clip", format=None, interactive=False, elem_id="video-output")
                status = gr.Textbox(label="Result", interactive=False, elem_id="video-status")
        button.click(on_video, [clip, style, side, trim], [out, status], api_name="stylize_video",
                     concurrency_limit=concurrency_limit, concurrency_id="video", show_progress_on=out,
                     validator=admit)
    return {"input": clip, "output": out, "status": status, "style": style, "side": side, "trim": trim,
            "outputs": outputs}
