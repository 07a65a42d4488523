"""The photo tab and the app's state: one Stylizer, which styles have weights, the
server-side checks of everything a visitor sends, and the `/stylize` endpoint."""

from __future__ import annotations

import base64
import logging
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image, ImageOps

from .. import images, policy
from ..errors import public, user_message
from ..settings import Settings
from ..styles import DEFAULT_STYLE, STYLES
from ..stylizer import Result, Stylizer
from ..weights import WEIGHTS_DIR_ENV, WeightsError
from .look import HOW_TO

log = logging.getLogger("animegan.app")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = ROOT / "examples"
EXAMPLE_PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "camera.png"]
RETRY_WEIGHTS_AFTER = 120.0  # seconds before a style whose weights failed is fetched again

FACE_MODES = {"off": "Off", "portrait": "Portrait crop", "paste": "Paste faces back"}


def to_gradio_error(exc: BaseException) -> gr.Error:
    """The one translation of the package's exceptions into what a visitor reads."""
    said = user_message(exc)
    if said is None:
        log.exception("stylizing failed", exc_info=exc)
        return gr.Error(f"Something went wrong while stylizing ({type(exc).__name__}). Please try again.",
                        print_exception=False)
    return gr.Error(public(said.text), title=said.title, print_exception=False)


def check_style(name: Any) -> str:
    if name in (None, ""):
        return DEFAULT_STYLE
    if not isinstance(name, str) or name not in STYLES:
        raise gr.Error(f"Unknown style {name!r}. Choose one of: {', '.join(STYLES)}.", print_exception=False)
    return name


def check_face_mode(mode: Any) -> str:
    try:
        return policy.parse_face_mode(mode)
    except ValueError as exc:
        raise to_gradio_error(exc) from None


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

    def __init__(self, stylizer: Stylizer | None = None, settings: Settings | None = None) -> None:
        self.settings = settings or getattr(stylizer, "settings", None) or Settings.from_env()
        self.stylizer = stylizer or Stylizer(DEFAULT_STYLE, settings=self.settings,
                                             max_side=self.settings.default_side)
        self.unavailable: dict[str, str] = {}  # style -> why its weights could not be had
        self._failed_at: dict[str, float] = {}  # style -> when fetching its weights last failed

    # -- weights at start -----------------------------------------------------------------
    def clamp_side(self, value: Any) -> int:
        """The output size policy, enforced on the server: a whole number in
        [SIDE_MIN, settings.max_side_limit]; the default side for anything unreadable."""
        return policy.clamp_side(value, policy.SIDE_MIN, self.settings.max_side_limit, self.settings.default_side)

    def check_weights(self, timeout: float | None = None) -> dict[str, str]:
        """Fetch (once) every style's weights in parallel, warm up the default style, and
        remember which styles are unavailable. Never raises: the app starts regardless."""
        timeout = self.settings.startup_timeout if timeout is None else timeout
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
                log.warning("at start, %s: %s", futures[future], exc)
                self.unavailable[futures[future]] = public(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
        default = DEFAULT_STYLE if DEFAULT_STYLE not in self.unavailable else next(
            (n for n in STYLES if n not in self.unavailable), None)
        if default is not None:
            try:  # load and run once, so the first person does not pay for it
                self.stylizer.backend(default)
                self.stylizer.run_array(default, Image.new("RGB", (64, 64), (200, 160, 170)))
            except Exception as exc:  # a broken file: say so on the page, keep starting
                log.warning("style %s: %s", default, exc)
                self.unavailable[default] = public(str(exc).splitlines()[0])
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
        side = self.clamp_side(side)
        report = (lambda fraction, text: progress(fraction, desc=text)) if progress is not None else None
        started = time.perf_counter()
        failed = self._failed_at.get(style)
        if style in self.unavailable and failed is not None and time.monotonic() - failed < RETRY_WEIGHTS_AFTER:
            raise self._unavailable_error(style)  # don't make everyone wait for the same timeout again
        try:
            result = self.stylizer.run(src, style, face_crop=mode, max_side=side, progress=report)
        except WeightsError as exc:
            log.warning("weights for %s: %s", style, exc)
            self.unavailable[style] = public(str(exc).splitlines()[0])
            self._failed_at[style] = time.monotonic()
            raise self._unavailable_error(style) from None
        except gr.Error:
            raise
        except Exception as exc:
            raise to_gradio_error(exc) from None
        self.unavailable.pop(style, None)
        log.info("%s (%.2f s in the handler)", result.summary(), time.perf_counter() - started)
        return result

    def stylize_api(self, image: Any, style: Any, face_crop: Any,
                    progress: gr.Progress = gr.Progress(track_tqdm=True)) -> Image.Image:  # noqa: B008
        """The `/stylize` endpoint: (image, style name, face crop) -> the anime image (PNG)."""
        return self._run(image, style, face_crop, self.settings.default_side, progress).image

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


def photo_tab(app: App) -> dict[str, Any]:
    """The photo page: input, style, faces, size, button, examples | result, slider, status."""
    limit, default = app.settings.max_side_limit, app.settings.default_side
    side_help = f"Longest side of the result, {policy.SIDE_MIN}–{limit} px. Larger is slower."
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
            c["side"] = gr.Slider(policy.SIDE_MIN, limit, value=default, step=64, label="Output size (px)",
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
