"""Command line: ``animegan PHOTOS... -o OUTDIR`` (also ``python -m animegan``)."""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import sys
import uuid
from pathlib import Path

from tqdm import tqdm

from . import policy, video
from .batch.plan import PlanError, assign_outputs, check_suffix, output_format
from .errors import user_message
from .settings import Settings
from .styles import DEFAULT_STYLE, LICENCE_NOTE, STYLES, licence_card, visible_styles
from .stylizer import Stylizer

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
FORMATS = {"png": "PNG", "jpg": "JPEG", "webp": "WEBP"}

EXAMPLES = """\
examples:
  animegan photo.jpg                      writes anime/photo_anime.png
  animegan holiday/ -o anime --format jpg  every photo under holiday/, subfolders mirrored
  animegan "shots/*.png" --style paprika   quote globs so animegan expands them
  animegan me.jpg --face-crop portrait     a 512 x 512 portrait of the largest face
  animegan group.jpg --face-crop paste     every face redone with the face model, blended back
  animegan trip.jpg -s shinkai --face-crop paste --face-style face_paint_512_v2
                                           a Shinkai scene with Face Paint faces
  animegan me.jpg --side-by-side           the photo and its anime version together
  animegan --list-styles                   what --style accepts, with each style's licence card
  animegan clip.mp4 --trim                 a video (mp4 mov webm mkv avi): anime/clip_anime.mp4,
                                           sound kept, cut to --max-seconds if longer
  animegan batch photos/ anime/            thousands of files, resumable, on all CPUs or a Ray
                                           cluster (see: animegan batch --help)

Weights are downloaded once from the Hugging Face Hub and cached (HF_HOME). Offline,
put <style>.pt files in a folder and set ANIMEGAN_WEIGHTS_DIR, or pass --weights FILE.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="animegan",
        description="Turn photos into anime pictures with AnimeGANv2, on the CPU.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="*",
                   help="image or video files, folders (searched recursively) or glob patterns")
    p.add_argument("-o", "--output", default="anime", help="output folder (default: %(default)s)")
    p.add_argument("-s", "--style", default=DEFAULT_STYLE, choices=sorted(STYLES), metavar="STYLE",
                   help="style to apply (default: %(default)s; see --list-styles)")
    p.add_argument("--list-styles", action="store_true", help="list the styles and exit")
    p.add_argument("--weights", metavar="SRC", help="use these weights for the chosen style: a .pt/.safetensors "
                   "file, a model folder (config.json + model.safetensors, e.g. from distill) or a Hub repo id")
    p.add_argument("--max-side", type=int, default=policy.DEFAULT_MAX_SIDE, metavar="PX",
                   help="shrink photos so the long side is at most PX before stylizing; 0 = never: full "
                        "resolution, photos over 4 MP go in tiles with the whole photo's statistics, in "
                        "bounded memory (a 12 MP photo: minutes on 2 cores) (default: %(default)s)")
    p.add_argument("--keep-size", action="store_true", help="scale the result back to the photo's own size")
    p.add_argument("--face-crop", choices=["off", "portrait", "paste"], default="off",
                   help="portrait: a square crop of the largest face; paste: stylize each face "
                        "with the face model and blend it back into the whole picture")
    p.add_argument("--face-style", metavar="STYLE", choices=sorted(STYLES), default=None,
                   help="with --face-crop paste: redo each face in this style (the photo stays in --style)")
    p.add_argument("--side-by-side", action="store_true", help="save the photo and the result side by side")
    p.add_argument("--format", choices=sorted(FORMATS), default="png", help="output format (default: %(default)s)")
    p.add_argument("--suffix", default="_anime", help="added to output file names (default: %(default)s)")
    v = p.add_argument_group("video clips (.mp4 .mov .webm .mkv .avi .m4v; written as .mp4)")
    v.add_argument("--video-max-side", type=int, default=policy.VIDEO_SIDE, metavar="PX",
                   help="shrink video frames so the long side is at most PX; 0 = never (default: %(default)s)")
    v.add_argument("--max-seconds", type=float, default=video.DEFAULT_MAX_SECONDS, metavar="S",
                   help="refuse clips longer than S seconds; 0 = no limit (default: %(default)s)")
    v.add_argument("--trim", action="store_true", help="cut longer clips to --max-seconds instead of refusing them")
    v.add_argument("--no-stabilize", dest="stabilize", action="store_false",
                   help="stylize each frame on its own; by default the previous result is blended in along "
                        "the optical flow where it is trustworthy (less flicker, a few ms a frame)")
    v.add_argument("--carry-statistics", action="store_true",
                   help="also carry each layer's statistics from frame to frame (steadier colours when things "
                        "enter the frame; about 1.7x the time on the int8 backend)")
    p.add_argument("--backend", default=None, metavar="NAME",
                   help="force an inference backend: openvino-int8, torch-bf16, torch-fp32 or torch-exact "
                        "(the published demo's pixels); default: "
                        "auto, the fastest one that stays within 38 dB of float32 (also $ANIMEGAN_BACKEND)")
    p.add_argument("-v", "--verbose", action="store_true", help="say which backend runs and how long each photo took")
    return p


def collect(inputs: list[str]) -> list[tuple[Path, Path]]:
    """(file, path relative to its input root) for every image the inputs name."""
    found: list[tuple[Path, Path]] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            for f in sorted(path.rglob("*")):
                if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES | video.VIDEO_SUFFIXES:
                    found.append((f, f.relative_to(path)))
        elif path.exists():
            found.append((path, Path(path.name)))
        else:
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                found.append((path, Path(path.name)))  # reported as missing later
            found.extend((Path(m), Path(Path(m).name)) for m in matches if Path(m).is_file())
    return found


def plan(files: list[tuple[Path, Path]], out_dir: Path, suffix: str, fmt: str) -> dict[Path, Path]:
    """Every input's output, planned before anything is written (the batch planner's
    rules): two inputs never share an output (same names keep their extension, then a
    number), and an output is never one of the inputs."""
    out_root = out_dir.resolve()
    taken = set()
    for source, _ in files:
        try:
            taken.add(source.resolve().relative_to(out_root).as_posix().lower())
        except ValueError:
            pass  # not under the output folder: it cannot be overwritten
    # the same relative name from two roots (a/x.png, b/x.png): a distinct key for each
    unique: list[str] = []
    seen: set[str] = set()
    for _, rel in files:
        key, n = rel.as_posix(), 2
        while key.lower() in seen:
            key, n = _nth(rel.as_posix(), n), n + 1
        seen.add(key.lower())
        unique.append(key)
    planned = assign_outputs(unique, suffix, lambda rel: output_format(rel, fmt), taken)
    return {source: out_dir / planned[key] for (source, _), key in zip(files, unique, strict=True)}


def _nth(rel: str, n: int) -> str:
    """The name the n-th input with the same relative path is planned under."""
    stem, ext = os.path.splitext(rel)
    return f"{stem}_{n}{ext}"


def default_name(rel: Path, suffix: str, fmt: str) -> str:
    return f"{rel.stem}{suffix}.{fmt}"


def write_atomically(target: Path, write) -> None:
    """``write(path)`` into a temporary file beside ``target``, then rename it onto
    ``target``: a reader never sees half a file, and a symlink at ``target`` is replaced
    by the file, never followed."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir() and not target.is_symlink():
        raise IsADirectoryError(f"{target} is a folder")
    partial = target.with_name(f".{target.stem}.{uuid.uuid4().hex[:8]}.part{target.suffix}")
    try:
        write(partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def save(img, target: Path, fmt: str) -> None:
    if FORMATS[fmt] == "JPEG" and img.mode != "RGB":
        img = img.convert("RGB")  # JPEG has no alpha
    options = {"quality": 95} if fmt != "png" else {}
    write_atomically(target, lambda path: img.save(path, FORMATS[fmt], **options))


def _reason(exc: BaseException) -> str:
    """What to print for a file that failed: the readable message, or the error itself."""
    if user_message(exc) is not None:
        return str(exc)
    if isinstance(exc, OSError):
        return f"{exc.strerror or exc} ({type(exc).__name__})"
    if isinstance(exc, ValueError) and "WEBP" in str(exc).upper():
        return f"{exc}; WebP holds at most 16383 px a side: use --format png or a smaller --max-side"
    return f"{type(exc).__name__}: {exc}"


TRAINING_COMMANDS = ("distill", "train", "export")  # handed over to animegan.train.cli when it knows them


def style_cost(name: str) -> str:
    """Architecture, params and multiply-adds at 512 x 512 (counted from the layers; no weights needed)."""
    from .models.complexity import count
    from .models.registry import describe
    from .weights import style_architecture

    try:
        model = style_architecture(name)
    except Exception as exc:  # a Hub model repo whose config.json cannot be fetched
        return f"architecture unknown ({str(exc).splitlines()[0][:120]})"
    return f"{describe(model)}: {count(model, 512).summary()}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["batch"]:  # `animegan batch SRC DST ...`: many files, resumable, local or on Ray
        from . import batch

        return batch.main(argv[1:])
    if argv and argv[0] in TRAINING_COMMANDS and not Path(argv[0]).exists():
        from .train.cli import SUBCOMMANDS
        from .train.cli import main as train_main

        if argv[0] in SUBCOMMANDS:
            return train_main(argv)
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_env()
    except ValueError as exc:
        print(f"animegan: {exc}", file=sys.stderr)
        return 1
    shown = visible_styles(settings.hide_noncommercial)
    if args.list_styles:
        for s in shown.values():
            kind = "ONNX" if s.is_onnx else "PyTorch"
            print(f"{s.name:20} {s.title} ({'faces' if s.is_face_model else 'scenes'}, {s.size} px, {kind}): "
                  f"{s.description}")
            print("  " + licence_card(s).replace("\n", "\n  "))
            if args.verbose:
                print(f"  {style_cost(s.name)}")
        if len(shown) < len(STYLES):
            print(f"({len(STYLES) - len(shown)} non-commercial style(s) hidden by ANIMEGAN_HIDE_NONCOMMERCIAL)")
        return 0
    hidden = [n for n in (args.style, args.face_style) if n and n not in shown]
    if hidden:
        print(f"animegan: style {hidden[0]!r} is for non-commercial use only and hidden here "
              f"(ANIMEGAN_HIDE_NONCOMMERCIAL is set). Choose one of: {', '.join(shown)}.", file=sys.stderr)
        return 2
    if not args.inputs:
        build_parser().print_usage(sys.stderr)
        print("animegan: error: give at least one photo, folder or glob (see --help)", file=sys.stderr)
        return 2

    files = collect(args.inputs)
    out_dir = Path(args.output)
    try:
        check_suffix(args.suffix)
    except PlanError as exc:
        print(f"animegan: error: {exc}", file=sys.stderr)
        return 2
    targets = plan(files, out_dir, args.suffix, args.format)
    for source, rel in files:
        fmt = output_format(rel.as_posix(), args.format)
        if targets[source] != out_dir / rel.parent / default_name(rel, args.suffix, fmt):
            print(f"note: {source} -> {targets[source]} (its usual name is an input or another input's output)",
                  file=sys.stderr)
    try:
        stylizer = Stylizer(args.style, settings=settings, backend=args.backend,
                            max_side=args.max_side or None, weights_file=args.weights)
        backend = stylizer.backend()
    except Exception as exc:
        if user_message(exc) is None:
            raise
        print(f"animegan: {exc}", file=sys.stderr)
        return 1
    if args.verbose:
        print(f"style {args.style}, backend {backend.name}"
              + (" (building a faster one in the background)" if backend.upgrading else "")
              + f", {len(files)} file(s)", file=sys.stderr)

    for name in dict.fromkeys(n for n in (args.style, args.face_style if args.face_crop == "paste" else None) if n):
        print("weights' terms: " + licence_card(name).replace("\n", "\n  "), file=sys.stderr)

    clips = [source for source, _ in files if video.is_video_path(source)]
    photos = [source for source, _ in files if not video.is_video_path(source)]
    failed = sum(run_video(stylizer, source, targets[source], args) for source in clips)
    bar = tqdm(photos, unit="photo", disable=len(photos) < 2)
    for source in bar:
        bar.set_postfix_str(source.name)
        target = targets[source]
        try:
            with _tile_bar(source) as progress:
                result = stylizer.run(source, face_crop=args.face_crop, face_style=args.face_style,
                                      keep_size=args.keep_size, side_by_side=args.side_by_side, progress=progress)
            save(result.image, target, args.format)
        except Exception as exc:  # one file never stops the others
            failed += 1
            tqdm.write(f"skipped {source}: {_reason(exc)}", file=sys.stderr)
            continue
        for note in result.notes:
            if not note.startswith(LICENCE_NOTE):  # the terms were printed once above
                tqdm.write(f"{source}: {note}", file=sys.stderr)
        if args.verbose:
            tqdm.write(f"{source} -> {target} ({result.summary()})", file=sys.stderr)
    total = len(photos) + len(clips)
    noun = "clip(s)" if not photos else "file(s)" if clips else "photo(s)"
    print(f"{total - failed} of {total} {noun} written to {out_dir}/" + (f"; {failed} failed" if failed else ""),
          file=sys.stderr)
    return 1 if failed else 0


@contextlib.contextmanager
def _tile_bar(source: Path):
    """A progress callback that shows a bar while a big photo goes through its tiles."""
    bar = None

    def progress(fraction: float, text: str) -> None:
        nonlocal bar
        if "in tiles" not in text:
            return
        if bar is None:
            bar = tqdm(total=100, desc=source.name, unit="%", leave=False, mininterval=2,
                       bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")
        bar.update(round(fraction * 100) - bar.n)
        bar.set_postfix_str(text.split(": ", 1)[-1])

    try:
        yield progress
    finally:
        if bar is not None:
            bar.close()


def run_video(stylizer: Stylizer, source: Path, target: Path, args) -> int:
    """One clip, with a bar counting frames; 1 if it failed (the reason is printed), else 0."""
    bar = tqdm(unit="frame", desc=source.name, leave=False)

    def progress(done: int, total: int | None, eta: float | None) -> None:
        if total and bar.total != max(total, done):
            bar.total = max(total, done)
        bar.update(done - bar.n)

    try:
        result = video.stylize_video(stylizer, source, target, max_side=args.video_max_side or None,
                                     max_seconds=args.max_seconds or None, trim=args.trim, progress=progress,
                                     stabilize=args.stabilize, carry_statistics=args.carry_statistics)
    except Exception as exc:  # one clip never stops the others
        tqdm.write(f"skipped {source}: {_reason(exc)}", file=sys.stderr)
        return 1
    finally:
        bar.close()
    for note in result.notes:
        tqdm.write(f"{source}: {note}", file=sys.stderr)
    tqdm.write(f"{source} -> {target} ({result.summary()})", file=sys.stderr)
    return 0
