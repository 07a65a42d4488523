"""The photo tab and the app's state: one Stylizer, which styles have weights, the
server-side checks of everything a visitor sends, and the `/stylize` endpoint."""

from __future__ import annotations

import base64
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import gradio as gr
from PIL import Image, ImageOps

from .. import images, info, policy, runtime
from ..errors import public, user_message
from ..settings import Settings
from ..styles import DEFAULT_STYLE, LICENCE_NOTE, Style, visible_styles
from ..stylizer import Result, Stylizer
from ..weights import WEIGHTS_DIR_ENV, NotDownloaded, WeightsError, offline_file
from .gallery import Thumbnails
from .look import HOW_TO

log = logging.getLogger("animegan.app")

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_DIR = ROOT / "examples"
EXAMPLE_PHOTOS = ["astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "camera.png"]
RETRY_WEIGHTS_AFTER = 120.0  # seconds before a style whose weights failed is fetched again

FACE_LABELS = {"off": "Off", "portrait": "Portrait crop", "paste": "Paste faces back"}  # for policy.FACE_MODES
THUMBNAIL_PHOTO = "astronaut.png"  # a face and a background: what the gallery shows each style on
SAME_STYLE = ""  # the "Faces in" picker's value for "the photo's style"


def to_gradio_error(exc: BaseException) -> gr.Error:
    """The one translation of the package's exceptions into what a visitor reads."""
    said = user_message(exc)
    if said is None:
        log.exception("stylizing failed", exc_info=exc)
        return gr.Error(f"Something went wrong while stylizing ({type(exc).__name__}). Please try again.",
                        print_exception=False)
    return gr.Error(public(said.text), title=said.title, print_exception=False)


def check_style(stylizer: Stylizer, name: Any, default: str | None) -> str | None:
    """A style name from a visitor: ``default`` for none, else the core's check (the
    Stylizer's policy, as on every way in) with its message shown to the visitor."""
    if name in (None, ""):
        return default
    try:
        return stylizer.check_style(name).name
    except ValueError as exc:
        raise to_gradio_error(exc) from None


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
        self.settings = settings or getattr(stylizer, "settings", None) or runtime.get().settings
        # serves on float32 at once; the fast backend is prepared once the app serves (launch)
        self.stylizer = stylizer or Stylizer(DEFAULT_STYLE, settings=self.settings,
                                             max_side=self.settings.default_side, defer_fast=True)
        self.unavailable: dict[str, str] = {}  # style -> why its weights could not be had
        self._failed_at: dict[str, float] = {}  # style -> when fetching its weights last failed
        self._default: str | None = None  # the style check_weights loaded, for after_start's warm-up
        # the styles this app offers: the Stylizer's policy (without the non-commercial ones when hidden)
        self.styles: dict[str, Style] = visible_styles(self.settings.hide_noncommercial)
        self.thumbnails = Thumbnails(EXAMPLES_DIR / THUMBNAIL_PHOTO, self.stylizer)

    # -- weights at start -----------------------------------------------------------------
    def clamp_side(self, value: Any) -> int:
        """The output size policy, enforced on the server: a whole number in
        [SIDE_MIN, settings.max_side_limit]; the default side for anything unreadable."""
        return policy.clamp_side(value, policy.SIDE_MIN, self.settings.max_side_limit, self.settings.default_side)

    def check_weights(self, timeout: float | None = None, *, serve_first: bool = False) -> dict[str, str]:
        """Fetch (once) every style's weights in parallel, load the default style (a broken
        file shows here), warm it up, start the gallery's thumbnails, and remember which
        styles are unavailable. Never raises: the app starts regardless.

        ``serve_first`` (the app's build): the warm-up pass and the thumbnails wait for
        :meth:`after_start`, which :func:`animegan.app.launch` calls once the port is open,
        so that they do not hold up (or compete with) the start."""
        timeout = self.settings.startup_timeout if timeout is None else timeout
        def fetch(name: str) -> None:
            self.stylizer.weights_path(name)

        pool = ThreadPoolExecutor(max_workers=len(self.styles), thread_name_prefix="weights")
        futures = {pool.submit(fetch, name): name for name in self.styles}
        done, pending = wait(futures, timeout=timeout)
        pool.shutdown(wait=False, cancel_futures=True)
        not_downloaded = []  # offline and nothing cached: said once for all of them, below
        for future in pending:
            self.unavailable[futures[future]] = f"no answer from the weights' source within {timeout:.0f} s"
            log.warning("style %s is unavailable: %s", futures[future], self.unavailable[futures[future]])
        for future in done:
            exc = future.exception()
            if exc is not None:
                name = futures[future]
                self.unavailable[name] = public(str(exc).splitlines()[0]) if str(exc) else type(exc).__name__
                if isinstance(exc, NotDownloaded):
                    not_downloaded.append(name)
                else:  # a real failure (404, a broken file ...): its whole story, once
                    log.warning("style %s is unavailable: %s", name, exc)
        if not_downloaded:
            offline = self.stylizer.runtime.hub.offline
            log.warning(
                "%d of %d styles have no weights here and are not offered (%s; nothing is cached). To add one, "
                "put its file in a folder, set %s to that folder and restart: %s",
                len(not_downloaded), len(self.styles),
                "HF_HUB_OFFLINE is set" if offline else "the download hosts did not answer; asked once",
                WEIGHTS_DIR_ENV, ", ".join(offline_file(self.styles[n]).split(" ")[0] for n in self.styles
                                           if n in not_downloaded))
        default = self.default_style() if self.default_style() not in self.unavailable else next(
            (n for n in self.styles if n not in self.unavailable), None)
        if default is not None:
            try:  # load (and run once, so the first person does not pay for it)
                self.stylizer.backend(default)
                if not serve_first:
                    self._warm_up(default)
            except Exception as exc:  # a broken file: say so on the page, keep starting
                log.warning("style %s is unavailable: %s", default, exc)
                self.unavailable[default] = public(str(exc).splitlines()[0])
        for name in self.unavailable:
            self._failed_at[name] = time.monotonic()
        self._default = default
        if not serve_first:
            self._start_thumbnails()
        return dict(self.unavailable)

    def _warm_up(self, name: str) -> None:
        self.stylizer.run_array(name, Image.new("RGB", (64, 64), (200, 160, 170)), background=True)

    def _start_thumbnails(self) -> None:
        if self.thumbnails.photo.is_file():  # the gallery: made in the background, cached on disk
            jobs = {n: self.stylizer.weights_path(n) for n in self.styles if n not in self.unavailable}
            self.thumbnails.start(jobs)

    def after_start(self) -> None:
        """Once the app serves (after ``check_weights(serve_first=True)``): in the background,
        the default style's first pass, so the first visitor does not pay for it, then the
        gallery's thumbnails."""
        def work() -> None:
            default = self._default
            try:
                if default is not None:
                    self._warm_up(default)
            except Exception as exc:  # loaded but cannot run: say so, as at start
                log.warning("style %s is unavailable: %s", default, exc)
                self.unavailable[default] = public(str(exc).splitlines()[0])
                self._failed_at[default] = time.monotonic()
            self._start_thumbnails()

        threading.Thread(target=work, name="animegan-after-start", daemon=True).start()

    def available(self, name: str) -> bool:
        return name not in self.unavailable or self.stylizer.is_loaded(name)

    def offered(self) -> list[str]:
        """The styles a visitor can pick: those whose weights are here."""
        return [n for n in self.styles if self.available(n)]

    def notice(self) -> str:
        """One short line under the style picker when styles have no weights here; which
        file each one needs is folded away (Markdown, empty when every style is here)."""
        missing = [n for n in self.styles if not self.available(n)]
        if not missing:
            return ""
        files = ", ".join(f"{self.styles[n].title} `{offline_file(self.styles[n]).split(' ')[0]}`" for n in missing)
        head = ("No style has its weights on this server yet" if len(missing) == len(self.styles)
                else f"{len(missing)} more {'style needs its' if len(missing) == 1 else 'styles need their'} "
                "weights on this server")
        return (f"<details><summary>{head}</summary>\n\n"
                f"Put the files in a folder, set `{WEIGHTS_DIR_ENV}` to it and restart the app: {files}. "
                "PyTorch styles may also be `.safetensors`.</details>")

    def style_choices(self) -> list[tuple[str, str]]:
        """(title, name) for each style that can be picked here (its weights are here)."""
        return [(self.styles[n].title, n) for n in self.offered()]

    def picked(self) -> str | None:
        """What the pickers start on: the default style, or none when no style can be picked."""
        return self.default_style() if self.offered() else None

    def default_style(self) -> str:
        return next((n for n in self.styles if n == DEFAULT_STYLE and self.available(n)),
                    next((n for n in self.styles if self.available(n)), next(iter(self.styles), DEFAULT_STYLE)))

    def face_style_choices(self) -> list[tuple[str, str]]:
        """The "Faces in" picker: the photo's own style, or one of the face styles here."""
        return [("Same as the style", SAME_STYLE)] + [
            (self.styles[n].title, n) for n in self.offered() if self.styles[n].is_face_model]

    def licence(self, style: Any) -> str:
        """The card under the picker (Markdown): what the style does, and its weights' terms
        in one line, their details folded away."""
        name = style if isinstance(style, str) and style in self.styles else self.default_style()
        if name not in self.styles:
            return ""
        s = self.styles[name]
        lic = s.licence
        mark = {True: "✅", False: "⚠️", None: "ℹ️"}[lic.commercial]
        return (f"{s.description}\n\n<details><summary>{mark} {s.title}: {lic.verdict}</summary>\n\n"
                f"Trained by {lic.trained_by}; weights from {lic.origin}. Terms: {lic.terms}.</details>")

    def gallery(self) -> list[tuple[Image.Image, str]]:
        """(image, caption) per style that can be picked, in the picker's order: its own
        thumbnail, or the plain photo captioned "preparing" while it is being made (a style
        whose thumbnail failed is left out). Images, not paths: Gradio only serves files from
        its own folders, and the cache may be elsewhere."""
        try:
            plain = self.thumbnails.image(self.thumbnails.plain())
        except Exception as exc:  # no example photo: no gallery
            log.warning("no style gallery: %s", exc)
            return []
        out = []
        for name in self.offered():
            made, title = self.thumbnails.made.get(name), self.styles[name].title
            if made is not None:
                out.append((self.thumbnails.image(made), title))
            elif not self.thumbnails.done.is_set():  # being made, or about to be (after_start)
                out.append((plain, f"{title} (preparing)"))
        return out

    def pick_from_gallery(self, evt: gr.SelectData) -> tuple[Any, str]:
        """A click on a thumbnail selects that style (found by its caption: the gallery
        holds the styles that had a thumbnail when the page was loaded)."""
        caption = (evt.value or {}).get("caption") if isinstance(evt.value, dict) else None
        titles = {s.title: n for n, s in self.styles.items()}
        name = titles.get(str(caption or "").removesuffix(" (preparing)"))
        if name is None or not self.available(name):
            name = self.default_style()
        return gr.Radio(value=name), self.licence(name)

    def server_info(self) -> str:
        """The settings footer: this machine in short (``animegan info`` has it in full)."""
        loaded = self.stylizer.loaded_backend(self.default_style())
        serving = None if loaded is None else loaded.name + (" (a faster one is being prepared)"
                                                              if loaded.upgrading else "")
        return f"<small>**This server:** {info.footer(self.stylizer.runtime, serving)}.</small>"

    def _unavailable_error(self, style: str) -> gr.Error:
        return gr.Error(
            f"The {self.styles[style].title} style is unavailable. {self.unavailable[style]} To provide its weights, "
            f"put {offline_file(self.styles[style])} in a folder and set {WEIGHTS_DIR_ENV} to that folder.",
            title="Weights unavailable", print_exception=False)

    # -- one photo ----------------------------------------------------------------------
    def has_lite(self) -> bool:
        """Whether any offered style has a fast variant (a distilled student) here."""
        return any(self.stylizer.lite_style(name) for name in self.styles)

    def _run(self, payload: Any, style: Any, face_crop: Any, side: Any, progress: gr.Progress | None,
             face_style: Any = None, lite: Any = False) -> Result:
        src = image_source(payload)
        style = self.stylizer.variant(check_style(self.stylizer, style, self.default_style()), lite is True,
                                      required=False)
        mode = check_face_mode(face_crop)
        faces_in = check_style(self.stylizer, face_style, None) if mode == "paste" else None
        side = self.clamp_side(side)
        report = (lambda fraction, text: progress(fraction, desc=text)) if progress is not None else None
        started = time.perf_counter()
        used = list(dict.fromkeys(n for n in (style, faces_in) if n))
        for name in used:
            failed = self._failed_at.get(name)
            if name in self.unavailable and failed is not None and time.monotonic() - failed < RETRY_WEIGHTS_AFTER:
                raise self._unavailable_error(name)  # don't make everyone wait for the same timeout again
        try:
            result = self.stylizer.run(src, style, face_crop=mode, face_style=faces_in, max_side=side,
                                       progress=report)
        except WeightsError as exc:
            name = next((n for n in used if not self.stylizer.is_loaded(n)), style)
            log.warning("weights for %s: %s", name, exc)
            self.unavailable[name] = public(str(exc).splitlines()[0])
            self._failed_at[name] = time.monotonic()
            raise self._unavailable_error(name) from None
        except gr.Error:
            raise
        except Exception as exc:
            raise to_gradio_error(exc) from None
        for name in used:
            self.unavailable.pop(name, None)
        log.info("%s (%.2f s in the handler)", result.summary(), time.perf_counter() - started)
        return result

    def stylize_api(self, image: Any, style: Any, face_crop: Any, face_style: Any = SAME_STYLE,
                    progress: gr.Progress = gr.Progress(track_tqdm=True)) -> Image.Image:  # noqa: B008
        """The `/stylize` endpoint: (image, style name, face crop[, faces' style]) -> the anime
        image (PNG). The fourth argument is optional: three-argument calls work as before."""
        return self._run(image, style, face_crop, self.settings.default_side, progress, face_style).image

    def stylize_page(self, image: Any, style: Any, face_crop: Any, side: Any, face_style: Any = SAME_STYLE,
                     lite: Any = False, progress: gr.Progress = gr.Progress(track_tqdm=True)) -> tuple:  # noqa: B008
        """The button: the image, a before/after pair and the status line (with the weights' terms)."""
        result = self._run(image, style, face_crop, side, progress, face_style, lite)
        terms = [n.removeprefix(LICENCE_NOTE) for n in result.notes if n.startswith(LICENCE_NOTE)]
        for note in result.notes:
            if not note.startswith(LICENCE_NOTE):
                gr.Info(note)
        status = f"✅ {result.summary()}" + "".join(f"\n\n<small>{t}</small>" for t in terms)
        return result.image, (_before(result), result.image), status


def _before(result: Result) -> Image.Image:
    """What the network saw (the photo, or a portrait's framed face) at the result's size,
    for the before/after slider; no second decode of the upload."""
    rgb, size = result.source, result.image.size
    if abs(rgb.width / rgb.height - size[0] / size[1]) < 0.02:
        return images.resize(rgb, size)
    return ImageOps.pad(rgb, size, color=(255, 250, 243))


def photo_tab(app: App) -> dict[str, Any]:
    """The photo page: input, style (picker, pictures, terms), faces, size, button, examples |
    result, slider, status. On a wide screen the result column stays in view while the left
    one scrolls (style.css); on a narrow one the button scrolls the result into view
    (``SHOW_RESULT_JS``), so the result is on screen when it arrives."""
    limit, default = app.settings.max_side_limit, app.settings.default_side
    side_help = f"Longest side of the result, {policy.SIDE_MIN}–{limit} px. Larger is slower."
    c: dict[str, Any] = {}
    with gr.Row(equal_height=False, elem_id="photo-row"):
        with gr.Column(scale=1, min_width=320, elem_id="photo-inputs"):
            c["photo"] = gr.Image(
                label="Your photo",
                sources=["upload", "clipboard", "webcam"],
                type="filepath",
                image_mode=None,
                webcam_options=gr.WebcamOptions(mirror=True),
                height=260,
                elem_id="input-image",
            )
            c["style"] = gr.Radio(app.style_choices(), value=app.picked(), label="Style",
                                  info="Pick a name or a picture below.", elem_id="style-picker")
            notice = app.notice()
            c["notice"] = gr.Markdown(notice, visible=bool(notice), elem_id="notice")
            c["gallery"] = gr.Gallery(app.gallery(), label="What each style does (click one to pick it)",
                                      show_label=False, columns=4, height="auto", object_fit="cover",
                                      allow_preview=False, buttons=[], interactive=False, elem_id="style-gallery")
            c["licence"] = gr.Markdown(app.licence(app.default_style()), elem_id="licence-card")
            c["faces"] = gr.Radio([(FACE_LABELS[mode], mode) for mode in policy.FACE_MODES], value="off",
                                  label="Faces", elem_id="face-mode")
            c["face_style"] = gr.Dropdown(app.face_style_choices(), value=SAME_STYLE, label="Faces in",
                                          info="The photo stays in the style above; each face is redone in this one.",
                                          visible=False, elem_id="face-style")
            c["side"] = gr.Slider(policy.SIDE_MIN, limit, value=default, step=64, label="Output size (px)",
                                  info=side_help, elem_id="output-size")
            c["lite"] = gr.Checkbox(False, label="Fast model (a small student distilled from the style)",
                                    visible=app.has_lite(), elem_id="lite")
            c["run"] = gr.Button("Turn into anime ✨", variant="primary", elem_id="run-button")
            gr.Examples(
                [[str(EXAMPLES_DIR / name)] for name in EXAMPLE_PHOTOS if (EXAMPLES_DIR / name).is_file()],
                inputs=[c["photo"]],
                label="Examples (public-domain photos, credits below): click one, then press the button",
                examples_per_page=len(EXAMPLE_PHOTOS),
            )
        with gr.Column(scale=1, min_width=320, elem_id="photo-outputs"):
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


# The button's first step, in the browser: where the result column is below or above the
# screen (a phone, where the columns stack), bring it into view, so its progress and then the
# result are what the visitor sees. The inputs pass through unchanged.
SHOW_RESULT_JS = """(...inputs) => {
  const box = document.querySelector('#photo-outputs');
  if (box) {
    const r = box.getBoundingClientRect();
    if (r.top < 0 || r.bottom > window.innerHeight) box.scrollIntoView({block: 'start', behavior: 'smooth'});
  }
  return inputs;
}"""
