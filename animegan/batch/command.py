"""``animegan batch SRC DST``: the command line of the batch mode."""

from __future__ import annotations

import argparse
import os
import sys
import time

from tqdm import tqdm

from .. import options as shared
from .. import runtime
from ..runtime import Runtime
from ..settings import Settings
from ..weights import WeightsError
from .engines import EngineError, import_ray, run_local, run_ray
from .manifest import Manifest
from .plan import MANIFEST_NAME, Options, PlanError, make_plan

EXAMPLES = f"""\
examples:
  animegan batch photos/ anime/                       every photo and clip under photos/, on all CPUs here
  animegan batch photos/ anime/ --workers 2           two models, the CPUs split between them
  animegan batch s3://bucket/in s3://bucket/out       any fsspec URL (s3://, gs://, hf://; needs s3fs, gcsfs ...)
  animegan batch photos/ anime/ --engine ray          Ray Data: the running cluster (ray start --head) or a local one
  animegan batch photos/ anime/ --engine ray --address 10.0.0.5:6379   a multi-node Ray cluster

A manifest, DST/{MANIFEST_NAME}, records every input: run the same command again
and it skips what is done, redoes what changed or whose output is gone, and retries
what failed with --retry-failed. Ray is optional: pip install "animegan[ray]".
Every worker finds the weights as the command line does (the Hugging Face cache on its
node, or ANIMEGAN_WEIGHTS_DIR); the driver's ANIMEGAN_* and HF_* variables reach Ray's workers.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC", help="folder (searched recursively), file or fsspec URL of photos and clips")
    p.add_argument("dst", metavar="DST", help="folder or fsspec URL for the results (subfolders mirrored) "
                                              "and the manifest")
    shared.add_style(p)
    shared.add_photo(p, "shrink photos so the long side is at most PX; 0 = never (default: %(default)s)")
    e = p.add_argument_group("engine")
    e.add_argument("--engine", choices=["local", "ray"], default="local",
                   help="local: processes on this machine; ray: Ray Data on a Ray cluster (default: %(default)s)")
    e.add_argument("--address", metavar="ADDR",
                   help="Ray cluster to join (host:port, ray://host:10001 or auto); default: the cluster "
                        "started here with `ray start --head`, else a new one on this machine")
    e.add_argument("--workers", type=int, metavar="N",
                   help="models running at once (processes or Ray actors); default: one per CPU")
    e.add_argument("--threads", type=int, metavar="T",
                   help="inference threads (Ray: CPUs) per worker; default: the CPUs divided by --workers, else 1")
    e.add_argument("--retry-failed", action="store_true", help="try again the files that failed in earlier runs")
    shared.add_model(e)
    shared.add_video(p, "video clips (one clip per task, written as .mp4)", 0.0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="animegan batch",
                                description="Stylize a whole folder or bucket, resumably, on this machine or a "
                                            "Ray cluster.",
                                epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def _say(text: str) -> None:
    print(f"animegan batch: {text}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Plan, run what is left on the chosen engine, keep the manifest, summarise. 0 when
    every input is done, 1 when any failed (now or before), 2 for unusable arguments."""
    for name in ("workers", "threads"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            _say(f"--{name} must be at least 1.")
            return 2
    options = Options(src=args.src, dst=args.dst, style=args.style, face_crop=args.face_crop,
                      max_side=args.max_side, format=args.format, suffix=args.suffix,
                      video_max_side=args.video_max_side, max_seconds=args.max_seconds, trim=args.trim,
                      backend=args.backend, weights=os.path.abspath(args.weights) if args.weights else None,
                      exact_statistics=args.exact_statistics, lite=args.lite)
    try:
        rt = runtime.start(Settings.from_env())
    except ValueError as exc:
        _say(str(exc))
        return 2
    refused = _check_style(options, rt)
    if refused:
        _say(refused)
        return 2
    try:
        if args.engine == "ray":
            import_ray()  # say how to install it before doing anything else
        manifest = Manifest(args.dst)
        plan = make_plan(options, manifest.read(), retry_failed=args.retry_failed)
    except (EngineError, PlanError) as exc:
        _say(str(exc))
        return 1 if isinstance(exc, EngineError) else 2
    todo = plan.todo
    found = len(todo) + len(plan.skipped_done) + len(plan.skipped_failed)
    _say(f"{found} file(s) under {args.src}: {len(todo)} to do, {len(plan.skipped_done)} already done"
         + (f", {len(plan.skipped_failed)} failed before" if plan.skipped_failed else ""))
    if todo and args.engine == "local":
        error = _prepare_local(options, rt)
        if error:
            _say(error)
            return 1

    unit = "photo" if all(t.kind == "photo" for t in todo) else "file"
    done = failed = 0
    stopped = None
    start = time.perf_counter()
    bar = tqdm(total=len(todo), unit=unit, disable=not todo, smoothing=0.1, dynamic_ncols=True)
    rows = iter(())
    try:
        if not todo:
            pass
        elif args.engine == "ray":
            rows = run_ray(options, todo, args.workers, args.threads, args.address)
        else:
            rows = run_local(options, todo, args.workers, args.threads)
        for row in rows:
            manifest.add(row)
            if row["status"] == "done":
                done += 1
            else:
                failed += 1
                tqdm.write(f"failed {row['input']}: {row['error']}", file=sys.stderr)
            bar.update(1)
    except EngineError as exc:
        stopped = str(exc)
    except KeyboardInterrupt:
        stopped = "interrupted"
    finally:
        if hasattr(rows, "close"):
            rows.close()  # stop the engine now: its pool or Ray connection
        bar.close()
        manifest.close()
    seconds = time.perf_counter() - start

    rate = f"; {done / seconds:.2f} {unit}s/s over {seconds:.1f} s" if done else ""
    before = ""
    if plan.skipped_failed:
        before = f" ({len(plan.skipped_failed)} failed in an earlier run: add --retry-failed to try them again)"
    _say(f"done {done}, skipped {len(plan.skipped_done)}, failed {failed + len(plan.skipped_failed)}{before}"
         f"{rate}; manifest {manifest.path}")
    if stopped:
        left = len(todo) - done - failed
        _say(f"stopped: {stopped}")
        _say(f"{left} file(s) not done; run the same command again to resume.")
        return 130 if stopped == "interrupted" else 1
    return 1 if failed or plan.skipped_failed else 0


def _prepare_local(options: Options, rt: Runtime) -> str | None:
    """Before starting workers: the weights resolve (downloaded once, not once per
    worker), and the automatic backend's choice is made and its int8 model built once
    here, in the foreground with a progress line, then cached: every worker loads it."""
    from ..stylizer import Stylizer

    line = shared.PrepareLine("animegan batch")
    try:
        Stylizer(options.style, runtime=rt, backend=options.backend, weights_file=options.weights,
                 wait_for_fast=True, progress=line, lite=options.lite).backend()
    except (WeightsError, ValueError, OSError) as exc:
        return str(exc)
    finally:
        line.close()
    return None


def _check_style(options: Options, rt: Runtime) -> str | None:
    """The style is checked by the core's policy before anything is planned (hidden styles too)."""
    from ..stylizer import Stylizer

    try:
        Stylizer(options.style, runtime=rt, weights_file=options.weights, lite=options.lite)
    except ValueError as exc:
        return str(exc)
    return None
