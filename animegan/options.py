"""The command-line options that ``animegan`` and ``animegan batch`` share, declared once,
the output formats both write, and the "preparing the fast model" progress line both show."""

from __future__ import annotations

import argparse
import sys

from tqdm import tqdm

from . import policy
from .styles import DEFAULT_STYLE

FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}


def encode_options(fmt: str) -> tuple[str, dict]:
    """Pillow's format name and save options for an output format (``png``, ``jpg``, ``webp``)."""
    return FORMATS[fmt], ({"quality": 95} if fmt != "png" else {})


def add_style(p: argparse.ArgumentParser, *, face_style: bool = False) -> None:
    """--style (checked by the core, so hidden styles are refused on every way in) [and --face-style]."""
    p.add_argument("-s", "--style", default=DEFAULT_STYLE, metavar="STYLE",
                   help="style to apply (default: %(default)s; animegan --list-styles shows them)")
    if face_style:
        p.add_argument("--face-style", metavar="STYLE", default=None,
                       help="with --face-crop paste: redo each face in this style (the photo stays in --style)")


def add_photo(p: argparse.ArgumentParser, max_side_help: str) -> None:
    """--face-crop, --max-side, --exact-statistics, --format, --suffix."""
    p.add_argument("--face-crop", choices=policy.FACE_MODES, default="off",
                   help="portrait: a square crop of the largest face; paste: stylize each face "
                        "with the face model and blend it back into the whole picture")
    p.add_argument("--max-side", type=int, default=policy.DEFAULT_MAX_SIDE, metavar="PX", help=max_side_help)
    p.add_argument("--exact-statistics", action="store_true",
                   help="a picture too big for one pass goes in tiles with the whole picture's statistics, "
                        "estimated in about one extra pass (>= 40 dB from one untiled pass); this measures them "
                        "layer by layer instead: the untiled result to float rounding, about 8x slower")
    p.add_argument("--format", choices=sorted(FORMATS), default="png", help="output format (default: %(default)s)")
    p.add_argument("--suffix", default="_anime", help="added to output file names (default: %(default)s)")


def add_model(p: argparse.ArgumentParser) -> None:
    """--backend, --weights and --lite."""
    p.add_argument("--backend", default=None, metavar="NAME",
                   help="force an inference backend: openvino-int8, openvino-f32, torch-bf16, torch-fp32 or "
                        "torch-exact (the published demo's pixels); default: auto, the fastest on this machine "
                        "that stays within 38 dB of float32 (also $ANIMEGAN_BACKEND; animegan info shows it)")
    p.add_argument("--weights", metavar="SRC", help="use these weights for the chosen style: a .pt/.safetensors "
                   "file, a model folder (config.json + model.safetensors, e.g. from distill) or a Hub repo id")
    p.add_argument("--lite", action="store_true",
                   help="use the style's fast variant, a small student distilled from it "
                        "($ANIMEGAN_WEIGHTS_DIR/<style>-lite/, made by animegan distill)")


def add_video(p: argparse.ArgumentParser, title: str, max_seconds: float) -> argparse._ArgumentGroup:
    """The clip options: --video-max-side, --max-seconds, --trim."""
    v = p.add_argument_group(title)
    v.add_argument("--video-max-side", type=int, default=policy.VIDEO_SIDE, metavar="PX",
                   help="shrink video frames so the long side is at most PX; 0 = never (default: %(default)s)")
    v.add_argument("--max-seconds", type=float, default=max_seconds, metavar="S",
                   help="refuse clips longer than S seconds; 0 = no limit (default: %(default)s)")
    v.add_argument("--trim", action="store_true", help="cut longer clips to --max-seconds instead of refusing them")
    return v


class PrepareLine:
    """The progress line of the one-time preparation of the fast model (``auto``'s choice
    and int8 build): what it does, how long it has left, and that it happens once per
    machine. Shown on stderr only when something is being prepared."""

    def __init__(self, prog: str, file=None) -> None:
        self.prog = prog
        self.file = file or sys.stderr
        self.bar: tqdm | None = None

    def __call__(self, fraction: float, text: str) -> None:
        if self.bar is None:
            print(f"{self.prog}: preparing the fastest backend for this machine (done once per machine, then "
                  "cached; about half a minute)", file=self.file)
            self.bar = tqdm(total=100, unit="%", file=self.file, dynamic_ncols=True, leave=False,
                            bar_format="{percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")
        self.bar.update(max(0, round(fraction * 100) - self.bar.n))
        self.bar.set_postfix_str(text, refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
