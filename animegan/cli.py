"""Command line: ``animegan PHOTOS... -o OUTDIR`` (also ``python -m animegan``), and its
subcommands (``batch``, ``prepare``, ``info``, ``distill``, ``train``, ``export``)."""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import sys
from pathlib import Path

from tqdm import tqdm

from . import options, runtime, video
from .batch.plan import PlanError, assign_outputs, check_suffix, output_format
from .errors import user_message
from .files import atomic_write
from .settings import Settings
from .styles import DEFAULT_STYLE, LICENCE_NOTE, STYLES, licence_card, lite_variant, visible_styles
from .stylizer import Stylizer

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
FORMATS = options.FORMATS

# Every subcommand, with the line --help shows for it.
SUBCOMMANDS = {
    "batch": "thousands of photos and clips, resumable, on all CPUs or a Ray cluster",
    "prepare": "choose and build the fastest backend for this machine now (done once, then cached)",
    "info": "this machine, the backends that run here, the cached models and the memory budget",
    "distill": "train a small, fast LiteGenerator that imitates a style on your photos",
    "train": "train a style from photos and anime frames (the AnimeGANv2 recipe)",
    "export": "a style or a trained model as ONNX, OpenVINO (float or int8) or safetensors, with a model card",
}

EXAMPLES = """\
subcommands (animegan SUBCOMMAND --help for each):
""" + "".join(f"  {name:9} {line}\n" for name, line in SUBCOMMANDS.items()) + """
examples:
  animegan photo.jpg                      writes anime/photo_anime.png
  animegan holiday/ -o anime --format jpg  every photo under holiday/, subfolders mirrored
  animegan "shots/*.png" --style paprika   quote globs so animegan expands them
  animegan me.jpg --face-crop portrait     a 512 x 512 portrait of the largest face
  animegan group.jpg --face-crop paste     every face redone with the face model, blended back
  animegan trip.jpg -s shinkai --face-crop paste --face-style face_paint_512_v2
                                           a Shinkai scene with Face Paint faces
  animegan me.jpg --side-by-side           the photo and its anime version together
  animegan phone.jpg --max-side 0          full resolution (in tiles that fit the memory budget)
  animegan --list-styles                   what --style accepts, with each style's licence card
  animegan clip.mp4 --trim                 a video (mp4 mov webm mkv avi): anime/clip_anime.mp4,
                                           sound kept, cut to --max-seconds if longer

The first run on a machine chooses the fastest backend and builds its int8 model (about
half a minute, once; `animegan prepare` does it ahead of time); later runs load it.
Weights are downloaded once from the Hugging Face Hub and cached (HF_HOME). Offline,
put <style>.pt files in a folder and set ANIMEGAN_WEIGHTS_DIR, or pass --weights FILE.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="animegan",
        usage="animegan [options] PHOTO|CLIP|FOLDER ...\n       animegan {" + ",".join(SUBCOMMANDS) + "} ...",
        description="Turn photos and clips into anime pictures with AnimeGANv2, on the CPU.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="*",
                   help="image or video files, folders (searched recursively) or glob patterns")
    p.add_argument("-o", "--output", default="anime", help="output folder (default: %(default)s)")
    options.add_style(p, face_style=True)
    p.add_argument("--list-styles", action="store_true",
                   help="list the styles (which have weights here) with their licence cards, and exit")
    options.add_photo(p, "shrink photos so the long side is at most PX before stylizing; 0 = never: full "
                         "resolution, in tiles that fit the memory budget where one pass would not "
                         "(ANIMEGAN_MEMORY_BUDGET) (default: %(default)s)")
    p.add_argument("--keep-size", action="store_true", help="scale the result back to the photo's own size")
    p.add_argument("--side-by-side", action="store_true", help="save the photo and the result side by side")
    v = options.add_video(p, "video clips (.mp4 .mov .webm .mkv .avi .m4v; written as .mp4)",
                          video.DEFAULT_MAX_SECONDS)
    v.add_argument("--no-stabilize", dest="stabilize", action="store_false",
                   help="stylize each frame on its own; by default the previous result is blended in along "
                        "the optical flow where it is trustworthy (less flicker, a few ms a frame)")
    v.add_argument("--carry-statistics", action="store_true",
                   help="also carry each layer's statistics from frame to frame (steadier colours when things "
                        "enter the frame; about 1.7x the time on the int8 backend)")
    options.add_model(p)
    p.add_argument("-v", "--verbose", action="store_true", help="say how long each photo took")
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


def save(img, target: Path, fmt: str) -> None:
    """The picture written whole or not at all (:func:`animegan.files.atomic_write`)."""
    kind, extra = options.encode_options(fmt)
    if kind == "JPEG" and img.mode != "RGB":
        img = img.convert("RGB")  # JPEG has no alpha
    atomic_write(target, lambda path: img.save(path, kind, **extra))


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


def _say(text: str) -> None:
    print(f"animegan: {text}", file=sys.stderr)


def _settings() -> Settings | None:
    try:
        return Settings.from_env()
    except ValueError as exc:
        _say(str(exc))
        return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    first = argv[0] if argv else ""
    if first in SUBCOMMANDS and not Path(first).exists():
        if first == "batch":  # `animegan batch SRC DST ...`: many files, resumable, local or on Ray
            from . import batch

            return batch.main(argv[1:])
        if first in ("prepare", "info"):
            return {"prepare": prepare_main, "info": info_main}[first](argv[1:])
        from .train.cli import main as train_main

        return train_main(argv)
    args = build_parser().parse_args(argv)
    settings = _settings()
    if settings is None:
        return 1
    rt = runtime.start(settings)
    shown = visible_styles(settings.hide_noncommercial)
    if args.list_styles:
        return list_styles(shown, rt, args.verbose)
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
    # A short process reaches the fast path: the first run on a machine prepares it here, in
    # the foreground (a background build would die with the process); later runs load it.
    made = prepared("animegan", args.style, rt, backend=args.backend, max_side=args.max_side or None,
                    weights_file=args.weights, face_style=args.face_style, exact_statistics=args.exact_statistics,
                    lite=args.lite)
    if made is None:
        return 1
    stylizer, backend = made
    face_style = stylizer.check_style(args.face_style).name if args.face_style else None
    if preparing_done(backend):
        _say(f"using {backend.name}: {chosen_because(backend)}")
    if args.verbose:
        _say(f"style {stylizer.style}, backend {backend.name}, {len(files)} file(s)")

    for name in dict.fromkeys(n for n in (stylizer.style, face_style if args.face_crop == "paste" else None) if n):
        print("weights' terms: " + licence_card(name).replace("\n", "\n  "), file=sys.stderr)

    clips = [source for source, _ in files if video.is_video_path(source)]
    photos = [source for source, _ in files if not video.is_video_path(source)]
    failed = sum(run_video(stylizer, source, targets[source], args) for source in clips)
    seconds = []
    bar = tqdm(photos, unit="photo", disable=len(photos) < 2)
    for source in bar:
        bar.set_postfix_str(source.name)
        target = targets[source]
        try:
            with _tile_bar(source) as progress:
                result = stylizer.run(source, face_crop=args.face_crop, face_style=face_style,
                                      keep_size=args.keep_size, side_by_side=args.side_by_side, progress=progress)
            save(result.image, target, args.format)
        except Exception as exc:  # one file never stops the others
            failed += 1
            tqdm.write(f"skipped {source}: {_reason(exc)}", file=sys.stderr)
            continue
        seconds.append(result.seconds)
        for note in result.notes:
            if not note.startswith(LICENCE_NOTE):  # the terms were printed once above
                tqdm.write(f"{source}: {note}", file=sys.stderr)
        if args.verbose:
            tqdm.write(f"{source} -> {target} ({result.summary()})", file=sys.stderr)
    total = len(photos) + len(clips)
    noun = "clip(s)" if not photos else "file(s)" if clips else "photo(s)"
    speed = f" ({stylizer.backend().name}, {sorted(seconds)[len(seconds) // 2]:.2f} s a photo)" if seconds else ""
    print(f"{total - failed} of {total} {noun} written to {out_dir}/{speed}"
          + (f"; {failed} failed" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


def prepared(prog: str, style: str, rt, *, face_style: str | None = None, **options_) -> tuple | None:
    """A Stylizer for ``style`` and its backend, the fast one prepared first if this machine
    has none yet (a progress line meanwhile); None when it cannot be had (the reason printed)."""
    line = options.PrepareLine(prog)
    try:
        stylizer = Stylizer(style, runtime=rt, wait_for_fast=True, progress=line, **options_)
        if face_style:
            stylizer.check_style(face_style)
        return stylizer, stylizer.backend()
    except Exception as exc:
        if user_message(exc) is None:
            raise
        _say(str(exc))
        return None
    finally:
        line.close()


def preparing_done(backend) -> bool:
    """True when ``auto`` chose just now (not from what this machine measured before)."""
    return bool(getattr(backend, "measured", None)) and not getattr(backend, "chosen_from_cache", True)


def chosen_because(backend) -> str:
    """Why ``auto`` chose its backend: the measured times, fastest first."""
    measured = getattr(backend, "measured", {}) or {}
    times = sorted((m["seconds"], name) for name, m in measured.items() if m.get("seconds"))
    if not times:
        return "chosen before on this machine"
    from .backends.auto import TIME_SIDE

    shown = ", ".join(f"{name} {t:.2f} s" for t, name in times)
    return f"the fastest here within 38 dB of float32 ({shown} at {TIME_SIDE} px); kept for later runs"


def list_styles(shown: dict, rt, verbose: bool) -> int:
    """``--list-styles``: every offered style with its licence card, and whether its weights are here."""
    from .weights import local_weights

    for s in shown.values():
        kind = "ONNX" if s.is_onnx else "PyTorch"
        here = local_weights(s, rt)
        mark = "ready here" if here else "not downloaded yet" + ("" if not rt.hub.offline else " (offline)")
        print(f"{s.name:20} {s.title} ({'faces' if s.is_face_model else 'scenes'}, {s.size} px, {kind}) "
              f"[{mark}]: {s.description}")
        print("  " + licence_card(s).replace("\n", "\n  "))
        fast = lite_variant(s, rt.settings.weights_dir)
        if fast is not None:
            print(f"  fast variant (--lite; the app's live default): {fast.name}, a student distilled from it")
        if verbose:
            print(f"  {style_cost(s.name)}")
    if len(shown) < len(STYLES):
        print(f"({len(STYLES) - len(shown)} non-commercial style(s) hidden by ANIMEGAN_HIDE_NONCOMMERCIAL)")
    return 0


def prepare_main(argv: list[str]) -> int:
    """``animegan prepare [STYLE ...]``: choose and build the fastest backend now."""
    p = argparse.ArgumentParser(prog="animegan prepare", description=SUBCOMMANDS["prepare"] + ". Short commands "
                                "(the command line, batch) then start on it at once; the app starts on it "
                                "instead of building it in the background.")
    p.add_argument("styles", nargs="*", metavar="STYLE", help="styles to prepare (default: the default style)")
    p.add_argument("--weights", metavar="SRC", help="the weights of the one style named (as animegan --weights)")
    args = p.parse_args(argv)
    settings = _settings()
    if settings is None:
        return 1
    rt = runtime.start(settings)
    names = args.styles or [None]
    if args.weights and len(names) != 1:
        _say("--weights goes with one style.")
        return 2
    failed = 0
    for name in names:
        made = prepared("animegan prepare", name or DEFAULT_STYLE, rt, backend="auto", weights_file=args.weights)
        if made is None:
            failed += 1
            continue
        stylizer, backend = made
        print(f"{stylizer.style}: {backend.name} ({chosen_because(backend)})")
    return 1 if failed else 0


def info_main(argv: list[str]) -> int:
    """``animegan info``: the machine, the backends, the cached models, the memory budget."""
    p = argparse.ArgumentParser(prog="animegan info", description=SUBCOMMANDS["info"] + ".")
    p.parse_args(argv)
    settings = _settings()
    if settings is None:
        return 1
    from .info import describe

    print(describe(runtime.get(settings)))
    return 0


@contextlib.contextmanager
def _tile_bar(source: Path):
    """A progress callback that shows a bar while a big photo goes through its tiles."""
    bar = None

    def progress(fraction: float, text: str) -> None:
        nonlocal bar
        if "in tiles" not in text:
            return
        if bar is None:  # the rate (and so the time left) counts from here: tiles' passes cost alike
            bar = tqdm(total=100, initial=round(fraction * 100), desc=source.name, unit="%", leave=False,
                       mininterval=2, bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}")
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
