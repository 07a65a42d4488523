"""The Gradio app: a photo tab, a live webcam tab and a video tab around one Stylizer.

``app.py`` is ``demo = build(Settings.from_env()); launch(demo)``. Everything a person
can send is checked on the server (style name, face mode, sizes, the file itself),
whatever the page or an API client sends.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import gradio as gr
from gradio.utils import get_upload_folder
from starlette.middleware import Middleware

from .. import runtime
from ..settings import Settings
from .files import UPLOAD_IDLE, AppFiles, Pins, Results
from .limits import BodyLimit, FairQueue, Lane, Visitors
from .live_tab import LIVE_CONCURRENCY, add_live_tab
from .look import CSS_FILE, FORCE_LIGHT_JS, HEADER, footer, theme
from .photo import SHOW_RESULT_JS, App, photo_tab
from .video_tab import add_video_tab

MAX_FILE_SIZE = "100mb"  # phone clips; video length is capped separately
MAX_UPLOAD_BYTES = 100 * 1000 * 1000  # the same, for the body limit in front of /upload
# Gradio keeps a copy of the page's settings per session (about 100 kB each here), every
# API call without a session being a new one, 10 000 of them by default: the app keeps no
# gr.State, so only the most recent sessions' copies are worth their memory
SESSIONS_KEPT = 256


def queue_lanes(settings: Settings) -> dict[str, Lane]:
    """Each concurrency id's own queue bound and each visitor's share of it: photos and
    clips never wait in (or fill) the same line, and one visitor cannot take a whole one.
    An address gets a few sessions' share (people behind one router)."""
    size = settings.queue_size
    return {
        "stylize": Lane(waiting=size, per_session=2, per_address=4),  # photos: the page and /stylize
        "video": Lane(waiting=max(2, size // 4), per_session=1, per_address=2),  # a clip may take minutes
        "live": Lane(waiting=size, per_session=2, per_address=4),  # webcam streams (2: a restart overlaps the end)
        # single frames: a burst is answered at once ("dropped (busy)"), so a session may send one
        "live_api": Lane(waiting=2 * size, per_session=3 * LIVE_CONCURRENCY, per_address=4 * LIVE_CONCURRENCY),
    }


def build(settings: Settings | None = None, app: App | None = None, *, check_weights: bool = True) -> gr.Blocks:
    """The Blocks app. ``check_weights`` fetches/loads weights now (the page says which failed);
    the default style's warm-up and the gallery's thumbnails follow once :func:`launch` serves."""
    if settings is not None and app is None:
        runtime.start(settings)  # the process's one owner of threads, the lock, the allocator ...
    app = app or App(settings=settings)
    settings = app.settings
    visitors = Visitors.from_settings(settings)
    if check_weights:
        app.check_weights(serve_first=True)
    # delete_cache: uploads, live frames, results and clips land in Gradio's cache; they are
    # deleted once older than cache_minutes (checked every minute) and all at shutdown
    age = max(60, round(settings.cache_minutes * 60))
    # pictures go to Gradio as files written once, whole (see files.Results), kept as long
    results = Results(Path(get_upload_folder()) / "animegan-results", max_age=age)
    with gr.Blocks(title="AnimeGAN · photo to anime", delete_cache=(min(60, age), age)) as demo:
        gr.HTML(HEADER)
        with gr.Tabs(elem_id="modes"):
            with gr.Tab("Photo", id="photo"):
                c = photo_tab(app)
            choices = dict(style_choices=app.style_choices(), default_style=app.picked())
            live = add_live_tab(app.stylizer, time_limit=settings.live_time_limit, window=settings.live_window,
                                visitors=visitors, results=results, **choices)
            clips = add_video_tab(app.stylizer, max_seconds=settings.video_max_seconds,
                                  max_job_seconds=settings.video_max_job_seconds,
                                  outputs_folder=Path(get_upload_folder()) / "animegan-clips", outputs_max_age=age,
                                  **choices)
        gr.Markdown(footer(age / 60), elem_id="footer")
        server = gr.Markdown(app.server_info(), elem_id="server-info")

        common = dict(concurrency_id="stylize", concurrency_limit=1, preprocess=False)
        c["run"].click(results.as_files(app.stylize_page, "png", "webp", None),
                       [c["photo"], c["style"], c["faces"], c["side"], c["face_style"], c["lite"]],
                       [c["result"], c["compare"], c["status"]],
                       api_visibility="private", show_progress_on=[c["result"]], js=SHOW_RESULT_JS, **common)
        # The public API: (image, style name, face crop) -> image. A hidden trigger keeps it
        # apart from the page's event, which has more inputs and outputs.
        api_trigger = gr.Button(visible=False, elem_id="api-trigger")
        api_trigger.click(results.as_files(app.stylize_api, "png"),
                          [c["photo"], c["style"], c["faces"], c["face_style"]], [c["result"]],
                          api_name="stylize",
                          api_description="Photo to anime: the image, a style name "
                          f"({', '.join(app.styles)}), a face crop mode (off, portrait, paste) and, optionally, "
                          "the style faces are redone in with paste (empty: the same style). "
                          f"The result's longest side is at most {settings.default_side} px.",
                          show_progress="hidden", **common)
        # the licence card follows the picker; the gallery picks a style; "Faces in" shows with paste
        c["style"].change(app.licence, c["style"], c["licence"], api_visibility="private", queue=False)
        c["gallery"].select(app.pick_from_gallery, None, [c["style"], c["licence"]], api_visibility="private",
                            queue=False)
        c["faces"].change(lambda mode: gr.Dropdown(visible=mode == "paste"), c["faces"], c["face_style"],
                          api_visibility="private", queue=False)
        demo.load(_page_state(app, results), None, [c["notice"], c["style"], c["face_style"], c["gallery"], server],
                  api_visibility="private", queue=False)
    demo.animegan_settings = settings  # launch() sizes the queue from them
    demo.animegan_app = app  # launch() starts preparing the fast backend once the app serves
    demo.animegan_visitors = visitors
    demo.animegan_live = live["engine"]  # launch() lets go of its finished sessions on a timer too
    demo.animegan_results = results
    demo.animegan_clips = clips["outputs"]
    return demo


def launch(demo: gr.Blocks, **kwargs: Any) -> Any:
    """Queue sized for 2 vCPU, a fair share of it per visitor, then serve (host/port from
    GRADIO_SERVER_NAME/PORT)."""
    settings = getattr(demo, "animegan_settings", None) or runtime.get().settings
    visitors = getattr(demo, "animegan_visitors", None) or Visitors.from_settings(settings)
    lanes = queue_lanes(settings)
    pins = Pins(demo)  # what queued jobs will read stays until they have run
    fair = FairQueue(demo, lanes, visitors, pins)
    demo.queue(max_size=fair.total_waiting, default_concurrency_limit=1)  # the lanes' bounds come first
    fair.install()
    limit = Middleware(BodyLimit, max_bytes=round(settings.max_request_mb * 1e6), upload_bytes=MAX_UPLOAD_BYTES,
                       upload_idle=UPLOAD_IDLE)
    # what Gradio's cache cleanup leaves in the upload folder (empty folders, partial uploads)
    files = AppFiles(get_upload_folder(), demo=demo)  # every minute, as Gradio's own cleanup
    files.pins = pins
    files.also.append(lambda final: pins.keep_only(set() if final else fair.files_in_line()))
    if getattr(demo, "animegan_live", None) is not None:
        files.also.append(lambda final: demo.animegan_live.prune())
    if getattr(demo, "animegan_results", None) is not None:
        files.also.append(demo.animegan_results.sweep)
    if getattr(demo, "animegan_clips", None) is not None:
        files.also.append(demo.animegan_clips.sweep)
    demo.animegan_files = files.start()
    blocking = not kwargs.pop("prevent_thread_lock", False)
    if blocking and threading.current_thread() is threading.main_thread():
        # a stop request (SIGTERM: a Space restarting, `kill`) ends the server as Ctrl-C does,
        # so Gradio's cleanup and then ours run, instead of the process just vanishing
        signal.signal(signal.SIGTERM, _interrupt)
    options: dict[str, Any] = dict(theme=theme(), css_paths=[CSS_FILE], js=FORCE_LIGHT_JS, show_error=True,
                                max_file_size=MAX_FILE_SIZE, app_kwargs={"middleware": [limit]},
                                state_session_capacity=SESSIONS_KEPT)
    options.update(kwargs)
    result = demo.launch(prevent_thread_lock=True, **options)  # the port is open from here on
    app = getattr(demo, "animegan_app", None)
    if app is not None:
        app.after_start()  # the default style's first pass and the gallery, in the background
        if hasattr(app.stylizer, "start_fast"):
            app.stylizer.start_fast()  # prepare the fast backend now, beside serving (never before it)
    if blocking:
        demo.block_thread()
    return result


def _page_state(app: App, results: Results):
    """On each page load, as ``App.page_state``, with the gallery's thumbnails handed over as
    files written once (a gr.Gallery made with pictures writes them again for every page,
    in place, and keeps each distinct set in Gradio's cache for the app's life)."""

    def page_state() -> tuple[Any, ...]:
        text = app.notice()
        thumbnails = [(results.save(img, "webp", "style"), caption) for img, caption in app.gallery()]
        return (gr.Markdown(text, visible=bool(text)), gr.Radio(choices=app.style_choices()),
                gr.Dropdown(choices=app.face_style_choices()), gr.update(value=thumbnails),
                gr.Markdown(app.server_info()))

    return page_state


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
