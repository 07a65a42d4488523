"""Registry of known styles: one table of named pretrained variants and their metadata."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

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

    @property
    def source(self) -> str:
        if self.path is not None:
            return str(self.path)
        if self.repo_id:
            return f"hf://{self.repo_id}/{self.filename}"
        return self.url or "(no source)"


DEFAULT_STYLE = "face_paint_512_v2"

STYLES: dict[str, Style] = {
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
            sha256=_UNPINNED,
        ),
        Style(
            name="face_paint_512_v1",
            title="Face Paint v1",
            description="The first face model: stronger, more 'beautified' anime faces.",
            size=512,
            credit=_CREDIT,
            url=_GITHUB + "face_paint_512_v1.pt",
            sha256=_UNPINNED,
        ),
        Style(
            name="celeba_distill",
            title="Webtoon",
            description="Bright webtoon-style faces, distilled from a 256 px face model.",
            size=256,
            credit=_CREDIT,
            url=_GITHUB + "celeba_distill.pt",
            sha256=_UNPINNED,
        ),
        Style(
            name="paprika",
            title="Paprika",
            description="Painterly scenes in the colours of Satoshi Kon's Paprika.",
            size=512,
            credit="AnimeGANv2 'Paprika' by Xin Chen et al., converted to PyTorch by bryandlee (MIT).",
            url=_GITHUB + "paprika.pt",
            sha256=_UNPINNED,
            is_face_model=False,
        ),
    )
}


def get_style(name: str) -> Style:
    try:
        return STYLES[name]
    except KeyError:
        known = ", ".join(STYLES)
        raise ValueError(f"Unknown style {name!r}. Known styles: {known}.") from None


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
    sha256: str | None = None,
) -> Style:
    """Add (or replace) a style: a Hub repo id + filename, a URL, or a local file."""
    if not (path or url or (repo_id and filename)):
        raise ValueError("A style needs a local path, a URL, or a Hub repo_id and filename.")
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
        sha256=sha256.lower() if sha256 else None,
    )
    STYLES[name] = style
    return style
