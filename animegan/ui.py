"""The Gradio app: Blocks, theme and text. A thin shell around one shared Stylizer.

Everything a person can send is checked here on the server (style name, face mode,
output size, the image itself), whatever the page or an API client sends.
"""

from __future__ import annotations

import base64
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image, ImageOps

from . import images, live, video
from .styles import DEFAULT_STYLE, STYLES
from .stylizer import Result, Stylizer
from .ui_live import add_live_tab, add_video_tab
from .weights import WEIGHTS_DIR_ENV, WeightsError

log = logging.getLogger("animegan.app")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = ROOT / "examples"
EXAMPLE_PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "camera.png"]


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


# -- limits sized for a free Space (2 vCPU, 16 GB) ------------------------------------
SIDE_MIN = 256  # the smallest output size the slider offers
SIDE_LIMIT = max(SIDE_MIN, _env_int("ANIMEGAN_MAX_SIDE_LIMIT", 1024))  # hard cap, applied on the server
DEFAULT_SIDE = min(SIDE_LIMIT, max(SIDE_MIN, _env_int("ANIMEGAN_DEFAULT_SIDE", 512)))
QUEUE_SIZE = max(1, _env_int("ANIMEGAN_QUEUE_SIZE", 16))  # waiting jobs beyond this get "busy, try again"
MAX_FILE_SIZE = "100mb"  # phone clips; video length is capped separately
LIVE_TIME_LIMIT = _env_float("ANIMEGAN_LIVE_TIME_LIMIT", live.DEFAULT_TIME_LIMIT)  # seconds per webcam start
VIDEO_MAX_SECONDS = _env_float("ANIMEGAN_VIDEO_MAX_SECONDS", video.DEFAULT_MAX_SECONDS)  # longest clip accepted
RETRY_WEIGHTS_AFTER = 120.0  # seconds before a style whose weights failed is fetched again
STARTUP_TIMEOUT = float(_env_int("ANIMEGAN_STARTUP_TIMEOUT", 60))  # seconds to look for weights at start

FACE_MODES = {"off": "Off", "portrait": "Portrait crop", "paste": "Paste faces back"}


def clamp_side(value: Any) -> int:
    """The output size policy, enforced on the server: a whole number in [SIDE_MIN, SIDE_LIMIT]."""
    try:
        side = int(round(float(value)))
    except (TypeError, ValueError, OverflowError):
        return DEFAULT_SIDE
    return min(SIDE_LIMIT, max(SIDE_MIN, side))


def check_style(name: Any) -> str:
    if name in (None, ""):
        return DEFAULT_STYLE
    if not isinstance(name, str) or name not in STYLES:
        raise gr.Error(f"Unknown style {name!r}. Choose one of: {', '.join(STYLES)}.", print_exception=False)
    return name


def check_face_mode(mode: Any) -> str:
    if mode in (None, "", False):
        return "off"
    if mode not in FACE_MODES:
        raise gr.Error(f"Face crop must be one of: {', '.join(FACE_MODES)} (not {mode!r}).", print_exception=False)
    return mode


def image_source(payload: Any) -> str | bytes:
    """The uploaded file's path (already checked by Gradio to be one of its uploads) or,
    for an inline data URL, its bytes. The events run with preprocess=False so that the
    Stylizer decodes the file and a bad file gets a readable message, not a traceback."""
    if payload is None:
        raise gr.Error("Add a photo first: upload one, paste one, or take a webcam snapshot.", print_exception=False)
    if hasattr(payload, "model_dump"):
        payload = payload.model_dump()
    if isinstance(payload, dict):
        if payload.get("path"):
            return str(payload["path"])
        url = payload.get("url") or ""
        if url.startswith("data:") and "," in url:
            try:
                return base64.b64decode(url.split(",", 1)[1], validate=False)
            except ValueError:
                raise gr.Error("The image data sent by the page could not be read.", print_exception=False) from None
    raise gr.Error("That is not an image upload. Send a JPEG, PNG or WebP file.", print_exception=False)


class App:
    """What the page's events call: one Stylizer, which styles have weights, and the text."""

    def __init__(self, stylizer: Stylizer | None = None) -> None:
        self.stylizer = stylizer or Stylizer(DEFAULT_STYLE, max_side=DEFAULT_SIDE)  # images.DEFAULT_MAX_PIXELS
        self.unavailable: dict[str, str] = {}  # style -> why its weights could not be had
        self._failed_at: dict[str, float] = {}  # style -> when fetching its weights last failed

    # -- weights at start -----------------------------------------------------------------
    def check_weights(self, timeout: float = STARTUP_TIMEOUT) -> dict[str, str]:
        """Fetch (once) every style's weights in parallel, warm up the default style, and
        remember which styles are unavailable. Never raises: the app starts regardless."""
        def fetch(name: str) -> None:
            self.stylizer.weights_path(name)

        pool = ThreadPoolExecutor(max_workers=len(STYLES), thread_name_prefix="weights")
        futures = {pool.submit(fetch, name): name for name in STYLES}
        done, pending = wait(futures, timeout=timeout)
        pool.shutdown(wait=False, cancel_futures=True)
        for future in pending:
            self.unavailable[futures[future]] = f"no answer from the weights' source within {timeout:.0f} s"
        for future in done:
            exc = future.exception()
            if exc is not None:
                self.unavailable[futures[future]] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        default = DEFAULT_STYLE if DEFAULT_STYLE not in self.unavailable else next(
            (n for n in STYLES if n not in self.unavailable), None)
        if default is not None:
            try:  # load and run once, so the first person does not pay for it
                self.stylizer.backend(default)
                self.stylizer.run_array(default, Image.new("RGB", (64, 64), (200, 160, 170)))
            except Exception as exc:  # a broken file: say so on the page, keep starting
                self.unavailable[default] = str(exc).splitlines()[0]
        for name, why in self.unavailable.items():
            self._failed_at[name] = time.monotonic()
            log.warning("style %s is unavailable: %s", name, why)
        return dict(self.unavailable)

    def available(self, name: str) -> bool:
        return name not in self.unavailable or self.stylizer.is_loaded(name)

    def notice(self) -> str:
        missing = [n for n in STYLES if not self.available(n)]
        if not missing:
            return ""
        names = ", ".join(f"**{STYLES[n].title}** (`{n}`)" for n in missing)
        return (
            f"⚠️ Weights could not be fetched for: {names}. These styles are unavailable for now "
            "(the Hugging Face Hub may be unreachable). To provide weights, put `<style>.pt` "
            f"(or `.safetensors`) files in a folder and set `{WEIGHTS_DIR_ENV}` to that folder, "
            "then restart the app."
        )

    def style_choices(self, describe: bool = True) -> list[tuple[str, str]]:
        """(label, name) for each style; ``describe=False`` for the compact dropdowns."""
        choices = []
        for name, style in STYLES.items():
            label = f"{style.title} — {style.description}" if describe else style.title
            if not self.available(name):
                label += " (unavailable)"
            choices.append((label, name))
        return choices

    def default_style(self) -> str:
        return next((n for n in STYLES if n == DEFAULT_STYLE and self.available(n)),
                    next((n for n in STYLES if self.available(n)), DEFAULT_STYLE))

    def page_state(self) -> tuple[Any, Any]:
        """On each page load: the current notice and style labels (weights may have arrived since)."""
        text = self.notice()
        return gr.Markdown(text, visible=bool(text)), gr.Radio(choices=self.style_choices())

    def _unavailable_error(self, style: str) -> gr.Error:
        return gr.Error(
            f"The {STYLES[style].title} style is unavailable. {self.unavailable[style]} To provide its weights, "
            f"put {style}.pt (or .safetensors) in a folder and set {WEIGHTS_DIR_ENV} to that folder.",
            title="Weights unavailable", print_exception=False)

    # -- one photo ----------------------------------------------------------------------
    def _run(self, payload: Any, style: Any, face_crop: Any, side: Any, progress: gr.Progress | None) -> Result:
        src = image_source(payload)
        style = check_style(style)
        mode = check_face_mode(face_crop)
        side = clamp_side(side)
        report = (lambda fraction, text: progress(fraction, desc=text)) if progress is not None else None
        started = time.perf_counter()
        failed = self._failed_at.get(style)
        if style in self.unavailable and failed is not None and time.monotonic() - failed < RETRY_WEIGHTS_AFTER:
            raise self._unavailable_error(style)  # don't make everyone wait for the same timeout again
        try:
            result = self.stylizer.run(src, style, face_crop=None if mode == "off" else mode,
                                       max_side=side, progress=report)
        except images.ImageError as exc:
            raise gr.Error(str(exc), title="Not a usable image", print_exception=False) from None
        except WeightsError as exc:
            log.warning("weights for %s: %s", style, exc)
            self.unavailable[style] = str(exc).splitlines()[0]
            self._failed_at[style] = time.monotonic()
            raise self._unavailable_error(style) from None
        except gr.Error:
            raise
        except Exception as exc:
            log.exception("stylizing failed")
            raise gr.Error(f"Something went wrong while stylizing: {type(exc).__name__}: {exc}") from None
        self.unavailable.pop(style, None)
        log.info("%s (%.2f s in the handler)", result.summary(), time.perf_counter() - started)
        return result

    def stylize_api(self, image: Any, style: Any, face_crop: Any,
                    progress: gr.Progress = gr.Progress(track_tqdm=True)) -> Image.Image:  # noqa: B008
        """The `/stylize` endpoint: (image, style name, face crop) -> the anime image (PNG)."""
        return self._run(image, style, face_crop, DEFAULT_SIDE, progress).image

    def stylize_page(self, image: Any, style: Any, face_crop: Any, side: Any,
                     progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:  # noqa: B008
        """The button: the image, a before/after pair and the status line."""
        result = self._run(image, style, face_crop, side, progress)
        for note in result.notes:
            gr.Info(note)
        return result.image, (_before(result), result.image), f"✅ {result.summary()}"


def _before(result: Result) -> Image.Image:
    """What the network saw (the photo, or a portrait's framed face) at the result's size,
    for the before/after slider; no second decode of the upload."""
    rgb, size = result.source, result.image.size
    if abs(rgb.width / rgb.height - size[0] / size[1]) < 0.02:
        return images.resize(rgb, size)
    return ImageOps.pad(rgb, size, color=(255, 250, 243))


# -- look -------------------------------------------------------------------------------
SAKURA = gr.themes.Color(
    name="sakura",
    c50="#fff5f8", c100="#ffe8f0", c200="#fcd3e1", c300="#f8b7cd", c400="#f093b3",
    c500="#e2709a", c600="#c94f7c", c700="#a83a64", c800="#862e50", c900="#6b2641", c950="#4a1a2d",
)
CREAM = gr.themes.Color(
    name="cream",
    c50="#fffaf3", c100="#fbf3e8", c200="#f1e4d6", c300="#e2cfbf", c400="#bfa69a",
    c500="#8f7780", c600="#6b5a60", c700="#54444a", c800="#3b2a30", c900="#2c1f24", c950="#1d1418",
)


def theme() -> gr.themes.Base:
    return gr.themes.Soft(primary_hue=SAKURA, secondary_hue=SAKURA, neutral_hue=CREAM, radius_size="lg").set(
        body_background_fill="#fffaf3",
        body_text_color="#3b2a30",
        body_text_color_subdued="#6b5a60",
        background_fill_primary="#ffffff",
        background_fill_secondary="#fff5f8",
        block_background_fill="#ffffff",
        block_border_color="#f6d5e0",
        block_label_background_fill="#fff0f5",
        block_label_text_color="#862e50",
        block_title_text_color="#862e50",
        button_primary_background_fill="#a83a64",  # 6:1 against the white text
        button_primary_background_fill_hover="#862e50",
        button_primary_text_color="#ffffff",
        button_primary_border_color="#a83a64",
        link_text_color="#a83a64",
        link_text_color_hover="#862e50",
        slider_color="#c94f7c",
        checkbox_label_background_fill_selected="#fde7ee",
        checkbox_label_text_color_selected="#6b2641",
        checkbox_background_color_selected="#a83a64",
        checkbox_border_color_selected="#a83a64",
        checkbox_border_color="#b48a9b",  # unselected radio circles must stay visible
        input_border_color="#e7c3d0",
    )


CSS = """
.gradio-container { max-width: 1120px !important; margin: 0 auto !important; }
#header { text-align: center; padding: 0; }
#header h1 { color: #862e50; font-size: 2rem; margin: 0; letter-spacing: .01em; }
#header p { color: #6b5a60; margin: 4px 0 0; }
#notice { background: #fff3cd; border: 1px solid #e8c77a; border-radius: 12px; padding: 4px 14px; color: #4a3500; }
#status { min-height: 1.6em; color: #54444a; }
#status p { margin: 4px 2px; }
#run-button { font-size: 1.1rem; }
#footer { text-align: center; font-size: .85rem; color: #6b5a60; border-top: 1px solid #f6d5e0; padding-top: 8px; }
#footer p { margin: 2px 0; }
#style-picker label { width: 100%; }
@media (min-width: 1024px) { #style-picker label { width: calc(50% - 6px); } }
button[role="tab"][aria-selected="true"] { color: #a83a64 !important; font-weight: 600; }
@media (max-width: 480px) {
  .gradio-container { padding: 0 6px !important; }
  #header h1 { font-size: 1.6rem; }
}
"""

HEADER = """
<div id="header">
  <h1>🌸 AnimeGAN</h1>
  <p>Turn a photo into an anime picture with AnimeGANv2, on a plain CPU.</p>
</div>
"""

HOW_TO = (
    "Upload, paste or snap a photo, pick a style, press the button. Faces look best in the "
    "Face Paint styles; scenes in Paprika. **Faces**: *Portrait crop* makes a square portrait of "
    "the largest face; *Paste faces back* stylizes each face and blends it into the photo. When "
    "many people are here at once you may be asked to try again in a moment."
)


# The palette is a light one: keep it even when the visitor's system prefers dark mode.
FORCE_LIGHT_JS = """
() => {
  document.body.classList.remove('dark');
  document.documentElement.style.colorScheme = 'light';
}
"""


def footer() -> str:
    return (
        "Model: **AnimeGANv2** by Xin Chen, Gang Liu and Gang Chen · PyTorch port and weights by "
        "[bryandlee/animegan2-pytorch](https://github.com/bryandlee/animegan2-pytorch) (MIT licence) · "
        "Weights via the [Hugging Face Hub](https://huggingface.co/akhaliq/AnimeGANv2-pytorch).\n\n"
        "Example photos: scikit-image sample data, public domain / CC0 (NASA, SpaceX, Lav Varshney, "
        "Stefan van der Walt, Rachel Michetti). Your photos are processed on this server and not stored."
    )


# -- the page -----------------------------------------------------------------------------
def _photo_tab(app: App) -> dict[str, Any]:
    """The photo page: input, style, faces, size, button, examples | result, slider, status."""
    side_help = f"Longest side of the result, {SIDE_MIN}–{SIDE_LIMIT} px. Larger is slower."
    c: dict[str, Any] = {}
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            c["photo"] = gr.Image(
                label="Your photo",
                sources=["upload", "clipboard", "webcam"],
                type="filepath",
                image_mode=None,
                webcam_options=gr.WebcamOptions(mirror=True),
                height=300,
                elem_id="input-image",
            )
            c["style"] = gr.Radio(app.style_choices(), value=app.default_style(), label="Style",
                                  elem_id="style-picker")
            c["faces"] = gr.Radio([(label, key) for key, label in FACE_MODES.items()], value="off",
                                  label="Faces", elem_id="face-mode")
            c["side"] = gr.Slider(SIDE_MIN, SIDE_LIMIT, value=DEFAULT_SIDE, step=64, label="Output size (px)",
                                  info=side_help, elem_id="output-size")
            c["run"] = gr.Button("Turn into anime ✨", variant="primary", elem_id="run-button")
            gr.Examples(
                [[str(EXAMPLES_DIR / name)] for name in EXAMPLE_PHOTOS if (EXAMPLES_DIR / name).is_file()],
                inputs=[c["photo"]],
                label="Examples (public-domain photos, credits below): click one, then press the button",
                examples_per_page=len(EXAMPLE_PHOTOS),
            )
        with gr.Column(scale=1, min_width=320):
            with gr.Tabs():
                with gr.Tab("Anime", id="anime"):
                    c["result"] = gr.Image(label="Anime (PNG)", type="pil", format="png", interactive=False,
                                           buttons=["download", "fullscreen"], height=420, elem_id="result-image")
                with gr.Tab("Before / after", id="compare"):
                    c["compare"] = gr.ImageSlider(label="Before / after", type="pil", interactive=False,
                                                  max_height=420, elem_id="compare-slider")
            c["status"] = gr.Markdown("", elem_id="status")
            gr.Markdown(HOW_TO, elem_id="how-to")
    return c


def build(app: App | None = None, *, check_weights: bool = True) -> gr.Blocks:
    """The Blocks app. ``check_weights`` fetches/loads weights now (the page says which failed)."""
    app = app or App()
    if check_weights:
        app.check_weights()
    # delete_cache: live frames and clips leave files in Gradio's cache; drop them after an hour
    with gr.Blocks(title="AnimeGAN · photo to anime", delete_cache=(3600, 3600)) as demo:
        gr.HTML(HEADER)
        notice_text = app.notice()
        notice = gr.Markdown(notice_text, visible=bool(notice_text), elem_id="notice")
        with gr.Tabs(elem_id="modes"):
            with gr.Tab("Photo", id="photo"):
                c = _photo_tab(app)
            choices = dict(style_choices=app.style_choices(describe=False), default_style=app.default_style())
            add_live_tab(app.stylizer, time_limit=LIVE_TIME_LIMIT, **choices)
            add_video_tab(app.stylizer, max_seconds=VIDEO_MAX_SECONDS, **choices)
        gr.Markdown(footer(), elem_id="footer")

        common = dict(concurrency_id="stylize", concurrency_limit=1, preprocess=False)
        c["run"].click(app.stylize_page, [c["photo"], c["style"], c["faces"], c["side"]],
                       [c["result"], c["compare"], c["status"]],
                       api_visibility="private", show_progress_on=[c["result"]], scroll_to_output=True, **common)
        # The public API: (image, style name, face crop) -> image. A hidden trigger keeps it
        # apart from the page's event, which has more inputs and outputs.
        api_trigger = gr.Button(visible=False, elem_id="api-trigger")
        api_trigger.click(app.stylize_api, [c["photo"], c["style"], c["faces"]], [c["result"]], api_name="stylize",
                          api_description="Photo to anime: the image, a style name "
                          f"({', '.join(STYLES)}) and a face crop mode (off, portrait, paste). "
                          f"The result's longest side is at most {DEFAULT_SIDE} px.",
                          show_progress="hidden", **common)
        demo.load(app.page_state, None, [notice, c["style"]], api_visibility="private", queue=False)
    return demo


def launch(demo: gr.Blocks, **kwargs: Any) -> Any:
    """Queue sized for 2 vCPU, then serve (host/port from GRADIO_SERVER_NAME/PORT)."""
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
    options: dict[str, Any] = dict(theme=theme(), css=CSS, js=FORCE_LIGHT_JS, show_error=True,
                                max_file_size=MAX_FILE_SIZE)
    options.update(kwargs)
    return demo.launch(**options)
