"""Registry of known styles: one table of named pretrained variants and their metadata,
the styles registered at run time (kept by the process's runtime), and the one check of a
style name that every way in uses (:func:`choose`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from . import runtime

_GITHUB = "https://github.com/bryandlee/animegan2-pytorch/raw/main/weights/"
# The sha256 of bryandlee's GitHub files could not be read or found from here (GitHub is
# unreachable and no verifiable published value was found), so the URL fallbacks below
# say sha256=None: "not pinned", and every use logs a warning. Pin them with the real
# values (sha256sum of the downloaded files) as soon as they can be checked.
_UNPINNED = None
_CREDIT = (
    "AnimeGANv2 by Xin Chen, Gang Liu and Gang Chen; PyTorch port and face_paint/celeba "
    "weights by bryandlee (animegan2-pytorch, MIT licence)."
)
_TF_TERMS = ("non-commercial use only, by the author's terms for the AnimeGANv2/v3 weights; "
             "commercial use needs the author's permission")
_UNSTATED = ("not stated: animegan2-pytorch is MIT for its code but grants no licence of its "
             "own for these weights, and its Hub copy states none")


@dataclass(frozen=True)
class Licence:
    """Who trained a style's weights, where they came from, and their terms as the authors state them."""

    trained_by: str
    origin: str
    terms: str
    commercial: bool | None = None  # True: allowed; False: non-commercial only; None: not stated

    @property
    def noncommercial(self) -> bool:
        return self.commercial is False

    @property
    def verdict(self) -> str:
        return {True: "commercial use allowed", False: "non-commercial use only",
                None: "terms not stated"}[self.commercial]


UNKNOWN_LICENCE = Licence("unknown", "provided by the user", "not stated (user-provided weights)")


@dataclass(frozen=True)
class Style:
    """A named set of generator weights and where to get them.

    Exactly one source is used, in this order: ``path`` (a local file), ``repo_id`` +
    ``filename`` (the Hugging Face Hub, the preferred home), then ``url`` (a plain HTTP
    file, for weights that have no Hub home).
    """

    name: str
    title: str
    description: str
    size: int  # the input size the weights were trained on (square)
    credit: str
    repo_id: str | None = None
    filename: str | None = None
    revision: str | None = None
    url: str | None = None
    path: Path | None = None
    is_face_model: bool = True
    # sha256 of the file at ``url``, checked after every download and on the cached copy;
    # None means "not pinned": the file is used and a warning says it was not checked.
    sha256: str | None = None
    licence: Licence = UNKNOWN_LICENCE
    # ONNX files: the value range the graph wants ([-1, 1] for the AnimeGAN exports), the
    # multiple its height and width must be (edge-padded up to it, cropped back after) and
    # its layout (None: read from the graph's input). PyTorch weights ignore them.
    value_range: tuple[float, float] = (-1.0, 1.0)
    multiple: int = 1
    layout: str | None = None
    # False: the Space does not bake these weights into its image (no commit could be
    # pinned); they are downloaded on first use, and scripts/build_space.py says so.
    preload: bool = True
    # The style this one is the fast variant of (a student distilled from it): not listed
    # as a style of its own, offered as that style's "fast" choice (:func:`lite_variant`).
    lite_of: str | None = None

    @property
    def is_onnx(self) -> bool:
        name = str(self.path or self.filename or self.url or "")
        return name.lower().endswith(".onnx")

    @property
    def source(self) -> str:
        if self.path is not None:
            return str(self.path)
        if self.repo_id:
            return f"hf://{self.repo_id}" + (f"/{self.filename}" if self.filename else "")
        return self.url or "(no source)"


DEFAULT_STYLE = "face_paint_512_v2"

_BRYANDLEE = Licence(
    trained_by="bryandlee (animegan2-pytorch)",
    origin="github.com/bryandlee/animegan2-pytorch",
    terms=_UNSTATED,
)


def _tf_licence(release: str, copy: str) -> Licence:
    return Licence(
        trained_by=f"Xin Chen (TachibanaYoshino), {release} (TensorFlow)",
        origin=copy,
        terms=_TF_TERMS,
        commercial=False,
    )


def _onnx_copy(repo_id: str, filename: str, release: str) -> str:
    return f"the ONNX export of the {release} release, community copy on the Hugging Face Hub: {repo_id}/{filename}"


BUILTIN_STYLES: Mapping[str, Style] = MappingProxyType({
    s.name: s
    for s in (
        Style(
            name="face_paint_512_v2",
            title="Face Paint v2",
            description="Soft anime portrait; robust, keeps the person recognisable.",
            size=512,
            credit=_CREDIT,
            repo_id="akhaliq/AnimeGANv2-pytorch",
            filename="face_paint_512_v2.pt",
            # refs/pr/8: main's head (5f2c6e4) plus an empty README.md, so the same weights file;
            # the only full commit id of this repo holding the file that could be verified offline
            revision="66a001cd89dc6545837c86757c776543c21f91b4",
            url=_GITHUB + "face_paint_512_v2.pt",
            licence=Licence(_BRYANDLEE.trained_by, "github.com/bryandlee/animegan2-pytorch; Hub copy "
                            "akhaliq/AnimeGANv2-pytorch", _UNSTATED),
            sha256=_UNPINNED,
        ),
        Style(
            name="face_paint_512_v1",
            title="Face Paint v1",
            description="The first face model: stronger, more 'beautified' anime faces.",
            size=512,
            credit=_CREDIT,
            url=_GITHUB + "face_paint_512_v1.pt",
            licence=_BRYANDLEE,
            sha256=_UNPINNED,
        ),
        Style(
            name="celeba_distill",
            title="Webtoon",
            description="Bright webtoon-style faces, distilled from a 256 px face model.",
            size=256,
            credit=_CREDIT,
            url=_GITHUB + "celeba_distill.pt",
            licence=Licence("bryandlee (animegan2-pytorch), distilled from a webtoon face model",
                            _BRYANDLEE.origin, _UNSTATED),
            sha256=_UNPINNED,
        ),
        Style(
            name="paprika",
            title="Paprika",
            description="Painterly scenes in the colours of Satoshi Kon's Paprika.",
            size=512,
            credit="AnimeGANv2 'Paprika' by Xin Chen et al., converted to PyTorch by bryandlee "
                   "(the port's code is MIT; the weights are for non-commercial use only).",
            url=_GITHUB + "paprika.pt",
            sha256=_UNPINNED,
            is_face_model=False,
            licence=_tf_licence("AnimeGANv2", "converted to PyTorch by bryandlee (github.com/bryandlee/"
                                "animegan2-pytorch)"),
        ),
        # The ONNX exports of the TensorFlow releases (NHWC, RGB in [-1, 1]; the authors'
        # ONNX scripts take multiples of 32 for v2 and of 8 for v3). No commit of these
        # repos could be verified offline, so they are not pinned and the Space does not
        # preload them (preload=False): they download on first use; absent files make the
        # style "unavailable" on the page.
        Style(
            name="shinkai",
            title="Shinkai",
            description="Scenes with bright skies and crisp light, after Makoto Shinkai's films.",
            size=256,
            credit="AnimeGANv2 'Shinkai' by Xin Chen et al. (TensorFlow); ONNX copy by vumichien.",
            repo_id="vumichien/AnimeGANv2_Shinkai",
            filename="AnimeGANv2_Shinkai.onnx",
            multiple=32,
            is_face_model=False,
            preload=False,
            licence=_tf_licence("AnimeGANv2", _onnx_copy("vumichien/AnimeGANv2_Shinkai",
                                                         "AnimeGANv2_Shinkai.onnx", "AnimeGANv2")),
        ),
        Style(
            name="hayao",
            title="Hayao",
            description="Soft, painted scenes after Hayao Miyazaki's films.",
            size=256,
            credit="AnimeGANv2 'Hayao' by Xin Chen et al. (TensorFlow); ONNX copy by vumichien.",
            repo_id="vumichien/AnimeGANv2_Hayao",
            filename="AnimeGANv2_Hayao.onnx",  # reported, not seen
            multiple=32,
            is_face_model=False,
            preload=False,
            licence=_tf_licence("AnimeGANv2", _onnx_copy("vumichien/AnimeGANv2_Hayao",
                                                         "AnimeGANv2_Hayao.onnx", "AnimeGANv2")),
        ),
        Style(
            name="paprika_onnx",
            title="Paprika (TF export)",
            description="The Paprika weights as the original TensorFlow release exported them.",
            size=256,
            credit="AnimeGANv2 'Paprika' by Xin Chen et al. (TensorFlow); ONNX copy by vumichien.",
            repo_id="vumichien/AnimeGANv2_Paprika",
            filename="AnimeGANv2_Paprika.onnx",  # reported, not seen
            multiple=32,
            is_face_model=False,
            preload=False,
            licence=_tf_licence("AnimeGANv2", _onnx_copy("vumichien/AnimeGANv2_Paprika",
                                                         "AnimeGANv2_Paprika.onnx", "AnimeGANv2")),
        ),
        Style(
            name="portrait_sketch",
            title="Portrait Sketch",
            description="Pencil-sketch portraits (AnimeGANv3); best on a framed face (Portrait).",
            size=512,
            credit="AnimeGANv3 'PortraitSketch' by Xin Chen (TensorFlow); ONNX copy by vumichien.",
            repo_id="vumichien/AnimeGANv3_PortraitSketch",
            filename="AnimeGANv3_PortraitSketch.onnx",
            multiple=8,
            preload=False,
            licence=_tf_licence("AnimeGANv3", _onnx_copy("vumichien/AnimeGANv3_PortraitSketch",
                                                         "AnimeGANv3_PortraitSketch.onnx", "AnimeGANv3")),
        ),
    )
})


class _Registry(Mapping[str, Style]):
    """Every style: the built-in ones, then those registered in this process (a registered
    style of the same name replaces a built-in one). It holds nothing itself: the styles
    registered at run time are kept by the process's runtime."""

    def __getitem__(self, name: str) -> Style:
        registered = runtime.registered_styles()
        if isinstance(name, str) and name in registered:
            return registered[name]
        return BUILTIN_STYLES[name]

    def __iter__(self) -> Iterator[str]:
        registered = runtime.registered_styles()
        yield from BUILTIN_STYLES
        yield from (name for name in list(registered) if name not in BUILTIN_STYLES)

    def __len__(self) -> int:
        return len(set(BUILTIN_STYLES) | set(runtime.registered_styles()))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in BUILTIN_STYLES or name in runtime.registered_styles())

    def pop(self, name: str, default: Any = None) -> Style | None:
        """Forget a style registered at run time (built-in styles stay)."""
        return runtime.registered_styles().pop(name, default)


STYLES: Mapping[str, Style] = _Registry()
MAX_NAME_SHOWN = 40  # characters of an unknown style's name repeated in a message


class StyleError(ValueError):
    """A style name that cannot be used here; the message says which ones can."""


def get_style(name: str) -> Style:
    """The style called ``name`` (any registered one; :func:`choose` also applies the policy)."""
    return choose(name)


def visible_styles(hide_noncommercial: bool = False) -> dict[str, Style]:
    """The registry as a deployer shows it: without non-commercial styles when asked
    (``Settings.hide_noncommercial``, ANIMEGAN_HIDE_NONCOMMERCIAL), and without the fast
    variants (each is offered as its style's choice, not as a style)."""
    return {n: s for n, s in STYLES.items()
            if not (hide_noncommercial and s.licence.noncommercial) and s.lite_of is None}


LITE_SUFFIX = "-lite"  # ANIMEGAN_WEIGHTS_DIR/<style>-lite/ holds a style's distilled student


def lite_variant(style: str | Style, weights_dir: Path | None = None) -> Style | None:
    """The fast variant of ``style`` (a student distilled from it), or None when there is none:
    the last one registered with ``lite_of=<style>``, else a model folder
    ``<weights_dir>/<style>-lite/`` (config.json + model.safetensors, as ``distill`` writes
    it), registered here on first sight so that every way in finds it by name."""
    s = get_style(style) if isinstance(style, str) else style
    if s.lite_of is not None:
        return s
    registered = runtime.registered_styles()
    for found in reversed(list(registered.values())):
        if found.lite_of == s.name:
            return found
    folder = Path(weights_dir) / f"{s.name}{LITE_SUFFIX}" if weights_dir else None
    if folder is not None and (folder / "config.json").is_file():
        return register_style(f"{s.name}{LITE_SUFFIX}", path=folder, lite_of=s.name)
    return None


def shown_name(name: Any) -> str:
    """A name as a message may repeat it: quoted, and cut to MAX_NAME_SHOWN characters."""
    text = name if isinstance(name, str) else str(name)
    return repr(text if len(text) <= MAX_NAME_SHOWN else text[:MAX_NAME_SHOWN] + "...")


def choose(name: Any, *, hide_noncommercial: bool = False) -> Style:
    """The one check of a style name, made where it comes in (the Stylizer, for every way
    in): a name (text) of a style offered here. Anything else is a :class:`StyleError`
    that names the styles that *are* offered (never the hidden ones) and repeats at most
    MAX_NAME_SHOWN characters of what was sent."""
    offered = visible_styles(hide_noncommercial)
    choices = ", ".join(offered)
    if not isinstance(name, str):
        raise StyleError(f"A style is a name, such as {next(iter(offered), 'face_paint_512_v2')!r}, "
                         f"not a {type(name).__name__}. Choose one of: {choices}.")
    if name in offered:
        return offered[name]
    variant = STYLES.get(name)
    if variant is not None and variant.lite_of in offered and not (
            hide_noncommercial and variant.licence.noncommercial):
        return variant  # a fast variant of an offered style
    if name in STYLES:  # hidden by the deployer's policy
        raise StyleError(f"The style {shown_name(name)} is not offered here: its weights are for non-commercial "
                         f"use only (ANIMEGAN_HIDE_NONCOMMERCIAL). Choose one of: {choices}.")
    raise StyleError(f"Unknown style {shown_name(name)}. Choose one of: {choices}.")


def licence_card(style: str | Style) -> str:
    """The style's licence card as plain text (the command line, notes, logs)."""
    s = get_style(style) if isinstance(style, str) else style
    lic = s.licence
    return (f"{s.title} ({s.name}): {lic.verdict}.\n"
            f"  trained by: {lic.trained_by}\n"
            f"  weights from: {lic.origin}\n"
            f"  terms: {lic.terms}")


def licence_line(style: str | Style) -> str:
    """One line for a result's notes."""
    s = get_style(style) if isinstance(style, str) else style
    return f"{LICENCE_NOTE}{s.title} weights by {s.licence.trained_by}: {s.licence.verdict}."


def licence_markdown(style: str | Style) -> str:
    """The licence card for the page (Markdown)."""
    s = get_style(style) if isinstance(style, str) else style
    lic = s.licence
    mark = {True: "✅", False: "⚠️", None: "ℹ️"}[lic.commercial]
    return (f"{mark} **{s.title}: {lic.verdict}.** Trained by {lic.trained_by}; weights from {lic.origin}. "
            f"Terms: {lic.terms}.")


def model_card(style: str | Style) -> str:
    """A model card (Markdown) for anything exported from a style: what it is, who made
    it, where it came from and the weights' terms."""
    s = get_style(style) if isinstance(style, str) else style
    lic = s.licence
    kind = "scenes" if not s.is_face_model else "faces"
    return "\n".join([
        f"# {s.title} (`{s.name}`)",
        "",
        s.description,
        "",
        f"- made for: {kind}; trained at {s.size} px" + (f"; ONNX, H and W padded to multiples of {s.multiple}"
                                                         if s.is_onnx and s.multiple > 1 else ""),
        f"- source: {s.source}" + (f" @ {s.revision}" if s.revision else ""),
        f"- credit: {s.credit}",
        "",
        "## Licence of the weights",
        "",
        f"- trained by: {lic.trained_by}",
        f"- weights from: {lic.origin}",
        f"- terms: {lic.terms}",
        f"- commercial use: {lic.verdict}",
        "",
    ])


LICENCE_NOTE = "Licence: "  # the prefix of the licence line in a Result's notes


def register_style(
    name: str,
    *,
    repo_id: str | None = None,
    filename: str | None = None,
    revision: str | None = None,
    url: str | None = None,
    path: str | Path | None = None,
    title: str | None = None,
    description: str = "A style added by the user.",
    size: int = 512,
    credit: str = "User-provided weights.",
    is_face_model: bool = True,
    licence: Licence = UNKNOWN_LICENCE,
    value_range: tuple[float, float] = (-1.0, 1.0),
    multiple: int = 1,
    layout: str | None = None,
    sha256: str | None = None,
    lite_of: str | None = None,
) -> Style:
    """Add (or replace) a style: a Hub repo id + filename (a weights file), a Hub repo id
    alone (a model repo: config.json + model.safetensors, as ``save_pretrained`` and
    ``animegan distill`` write them), a URL, or a local path (a weights file or a model
    folder). A file ending in ``.onnx`` is an ONNX generator: give its ``value_range`` and
    the ``multiple`` its height and width must be (the layout is read from the graph unless given).

    ``lite_of="<style>"``: these weights are that style's fast variant (a student distilled
    from it): offered as its "fast" choice, not listed as a style. Unless given, its title,
    credit, licence and size are its teacher's (a student of non-commercial weights is
    non-commercial)."""
    if not (path or url or repo_id):
        raise ValueError("A style needs a local path, a URL, or a Hub repo_id (and filename for a weights file).")
    if lite_of is not None:
        teacher = STYLES.get(lite_of)
        if teacher is None:
            raise ValueError(f"lite_of={lite_of!r} names no style; register the style first.")
        title = title or f"{teacher.title} (fast)"
        if description == "A style added by the user.":
            description = f"A small, fast student distilled from {teacher.title}: {teacher.description}"
        if credit == "User-provided weights.":
            credit = f"A LiteGenerator distilled (animegan distill) from {teacher.title}. Teacher: {teacher.credit}"
        if licence is UNKNOWN_LICENCE:
            licence = student_licence(teacher)
        size, is_face_model = teacher.size, teacher.is_face_model
    style = Style(
        name=name,
        title=title or name,
        description=description,
        size=size,
        credit=credit,
        repo_id=repo_id,
        filename=filename,
        revision=revision,
        url=url,
        path=Path(path) if path else None,
        is_face_model=is_face_model,
        licence=licence,
        value_range=value_range,
        multiple=multiple,
        layout=layout,
        sha256=sha256.lower() if sha256 else None,
        lite_of=lite_of,
    )
    runtime.registered_styles()[name] = style
    return style


def student_licence(teacher: Style) -> Licence:
    """The licence card of a student distilled from ``teacher``: the teacher's terms, which
    its outputs (the student's training targets) carry over."""
    lic = teacher.licence
    return Licence(
        trained_by=f"a student distilled (animegan distill) from {teacher.title} ({teacher.name}), "
                   f"whose weights were trained by {lic.trained_by}",
        origin=f"learned from the outputs of {teacher.name} ({lic.origin})",
        terms=f"the teacher's terms apply: {lic.terms}",
        commercial=lic.commercial,
    )
