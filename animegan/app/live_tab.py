"""The live webcam tab: the camera streamed through the style at a reduced size.

Endpoints: ``/live`` (the stream event, used by the browser) and ``/stylize_frame``
(one frame per call, for API clients). Concurrency id "live"/"live_api" (4 each: a
dropped frame costs nothing); every model pass still holds the inference lock, and live
frames never wait for it (they are dropped instead).
"""

from __future__ import annotations

import gradio as gr

from .. import live, policy
from .files import Results
from .limits import Visitors
from .photo import image_source, to_gradio_error

LIVE_STREAM_EVERY = 0.1  # seconds between webcam frames sent by the browser
LIVE_CONCURRENCY = 4  # visitors streaming at once (frames still run one at a time)


def add_live_tab(
    stylizer,
    *,
    time_limit: float,
    style_choices: list[tuple[str, str]],
    default_style: str | None,
    side: int = policy.LIVE_SIDE,
    stream_every: float = LIVE_STREAM_EVERY,
    concurrency_limit: int = LIVE_CONCURRENCY,
    label: str = "Live webcam",
    window: float = live.DEFAULT_WINDOW,
    visitors: Visitors | None = None,
    results: Results | None = None,
) -> dict:
    """A tab that streams the webcam through the style and back at a reduced size.

    ``style_choices`` ((label, name) pairs) and ``default_style`` let the app offer the
    same styles as its photo tab (for example only those whose weights are available).
    ``visitors`` says who is asking (the address behind a trusted proxy); by default the
    connection's address, whatever X-Forwarded-For says. ``results``: pictures go to Gradio
    as files written once, whole (:class:`~animegan.app.files.Results`); without it, as images.

    Endpoints: ``/live`` (the stream event, used by the browser) and ``/stylize_frame``
    (one frame per call, for API clients: (image, style, size, face crop) -> (image, status);
    a frame that arrives while another is being stylized gets no image and a status that
    starts with "dropped (busy)"). Returns the components.
    """
    engine = live.LiveStylizer(stylizer, side=side, time_limit=time_limit, window=window)
    visitors = visitors or Visitors()

    def run(frame, style, size, face, steady, full, request):
        # preprocess=False: the frame arrives as an upload (path) or data URL, and the engine
        # reads its size from the header before decoding it (no decoding by Gradio first).
        # The engine keeps each session's state (counters, Steady's last frames) by the
        # Gradio session and lets it go a few seconds after its last frame; a gr.State
        # would be kept by Gradio for an hour after the page is closed.
        frame = image_source(frame) if frame is not None else None
        key = getattr(request, "session_hash", None)
        try:
            _, result = engine.process(None, frame, style, size, face_crop=face, clients=visitors.keys(request),
                                       steady=bool(steady), key=key, lite=not full)
        except live.LiveLimitReached as exc:
            raise gr.Error(str(exc), title="Time is up", print_exception=False) from None
        except Exception as exc:
            raise to_gradio_error(exc) from None
        return result

    def picture(result: live.FrameResult):
        return results.save(result.image, "jpeg", "live") if results is not None else result.image

    def on_stream(frame, style, size, face, steady, full=False, request: gr.Request = None):
        result = run(frame, style, size, face, steady, full, request)
        if not result.processed:  # dropped: leave the picture as it is, send nothing
            return gr.skip(), gr.skip()
        return picture(result), result.status

    def on_frame(frame, style, size, face, steady, full=False, request: gr.Request = None):
        if frame is None:
            raise gr.Error("No frame received; send an image.", print_exception=False)
        result = run(frame, style, size, face, steady, full, request)
        if not result.processed:  # no new picture: say so rather than send the last one again
            return None, "dropped (busy) · " + result.status
        return picture(result), result.status

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
                    # min_width: on a phone the two stack, and the style's name has room beside its arrow
                    style = gr.Dropdown(style_choices, value=default_style, label="Style", min_width=200,
                                        elem_id="live-style")
                    size = gr.Slider(policy.LIVE_SIDE_MIN, policy.LIVE_SIDE_MAX, value=side, step=32,
                                     label="Size (long side, px)", min_width=200)
                with gr.Row():
                    face = gr.Checkbox(False, label="Face crop (portrait framing that follows the face)")
                    steady = gr.Checkbox(False, label="Steady (less flicker: follows the motion between frames)",
                                         elem_id="live-steady")
                # only where a style has a fast variant (a distilled student), which is then the default
                full = [gr.Checkbox(False, label="Full model (slower than the fast one)", elem_id="live-full")
                        ] if any(stylizer.lite_style(name) for _, name in style_choices) else []
            with gr.Column():
                out = gr.Image(label="Anime, live", format="jpeg", interactive=False, elem_id="live-output")
                status = gr.Textbox(label="Frame rate and delay", interactive=False, elem_id="live-status")
        cam.stream(on_stream, [cam, style, size, face, steady, *full], [out, status], api_name="live",
                   stream_every=stream_every, time_limit=int(time_limit) + 5,
                   concurrency_limit=concurrency_limit, concurrency_id="live", show_progress="hidden",
                   preprocess=False)
        api_button = gr.Button("Stylize one frame", visible=False)
        api_button.click(on_frame, [cam, style, size, face, steady, *full], [out, status],
                         api_name="stylize_frame",
                         concurrency_limit=concurrency_limit, concurrency_id="live_api", show_progress="hidden",
                         preprocess=False)
    return {"webcam": cam, "output": out, "status": status, "style": style, "size": size, "face": face,
            "steady": steady, "engine": engine}
