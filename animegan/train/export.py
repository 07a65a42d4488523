"""``python -m animegan export SRC --to KIND --out DIR``: a generator as a file others run.

SRC is a style name, a weights file (``.pt`` / ``.safetensors``), a model folder
(``config.json`` + ``model.safetensors``, e.g. from ``distill``) or a Hub repo id. KIND:

- ``onnx``: ``model.onnx`` with free height and width, checked with ONNX Runtime
  against PyTorch on a real photo at an odd size (max difference printed; over 1e-4 fails);
- ``openvino``: the float OpenVINO IR (``model.xml`` + ``model.bin``);
- ``openvino-int8``: the int8 model built by the project's int8 pass, gated at 38 dB
  against float32 on the calibration photos (``meta.json`` records the PSNRs);
- ``safetensors``: ``config.json`` + ``model.safetensors`` (loads with ``load_generator``).

Every export writes a model card (``README.md``): architecture, parameters,
multiply-adds at 512 x 512, the 512 x 512 time measured on this CPU, the int8 PSNR where
there is one, and the weights' credit and licence. ``--push-to-hub REPO`` uploads the
folder with huggingface_hub.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import runtime
from . import TrainingError

KINDS = ("onnx", "openvino", "openvino-int8", "safetensors")
ONNX_TOLERANCE = 1e-4

EXAMPLES = """\
examples:
  python -m animegan export face_paint_512_v2 --to openvino-int8 --out exports/fp2-int8
  python -m animegan export runs/lite --to onnx --out exports/lite-onnx
  python -m animegan export runs/lite --to safetensors --out exports/lite --push-to-hub me/anime-lite
"""


@dataclass
class Source:
    """What is being exported: the module, where it came from, and its credit line."""

    model: nn.Module
    origin: str
    credit: str = "Weights made with animegan (distill/train) or supplied by the user; terms as their owner states."
    notes: list[str] = field(default_factory=list)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = "Export a style or a trained generator to ONNX, OpenVINO (float or int8) or safetensors."
    p.epilog = EXAMPLES
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("source", metavar="SRC",
                   help="a style name, a .pt/.safetensors file, a model folder or a Hub repo id")
    p.add_argument("--to", required=True, choices=KINDS, help="what to write")
    p.add_argument("--out", required=True, metavar="DIR", help="the folder to write (created; must be empty)")
    p.add_argument("--push-to-hub", metavar="REPO", help="upload the folder to this Hub model repo (needs a token)")
    p.add_argument("--no-timing", action="store_true", help="skip the 512 x 512 timing in the model card")


def load_source(src: str, rt: runtime.Runtime | None = None) -> Source:
    """The generator SRC names: a registered style (its weights resolved as the app does,
    and refused where the policy hides it), or anything :func:`animegan.weights.load_generator` takes."""
    from ..styles import STYLES, licence_markdown
    from ..stylizer import Stylizer
    from ..weights import load_generator

    if src in STYLES:
        stylizer = Stylizer(src, runtime=rt)  # the core's policy: a hidden style is refused here as on every way in
        style = stylizer.check_style(src)
        model = stylizer.model(src)
        if not isinstance(model, nn.Module):
            raise TrainingError(f"Style {src!r} is an ONNX file already; export works on PyTorch generators.")
        return Source(model, f"style {src} ({style.source})", licence_markdown(style))
    return Source(load_generator(src, rt=rt), src, **_student_credit(Path(src)))


def _student_credit(folder: Path) -> dict:
    """A distill run folder's credit: whose weights the student learned from, with that
    style's licence card (a student of non-commercial weights is non-commercial); nothing
    for other sources."""
    try:
        run = json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    if "teacher_name" not in run:
        return {}
    card = run.get("teacher_licence")
    said = ("A student (LiteGenerator) distilled with `animegan distill` from the outputs of "
            f"**{run['teacher_name']}**: the teacher's terms apply to it. ")
    if card:
        return {"credit": said + "The teacher's licence card: " + card}
    return {"credit": said + "The teacher's weights were supplied by the user (not a registered style): "
                             "their terms, as their owner states them, apply."}


def _photo(side: int) -> np.ndarray:
    from ..backends.fidelity import calibration_photos

    return calibration_photos(side)[0]


def export_onnx(model: nn.Module, out: Path, rt: runtime.Runtime) -> dict:
    """model.onnx with free batch, height and width, checked with ONNX Runtime."""
    import onnxruntime as ort

    path = out / "model.onnx"
    axes = {0: "batch", 2: "height", 3: "width"}
    # The TorchScript exporter (dynamo=False): it gives free height and width for these
    # generators in one call, checked below against PyTorch with ONNX Runtime. PyTorch now
    # marks it legacy (a DeprecationWarning, a FutureWarning about tracing, TracerWarnings);
    # those notices are for its maintainers, not for the person exporting, so not shown.
    with torch.no_grad(), warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning, torch.jit.TracerWarning):
            warnings.simplefilter("ignore", category)
        warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
        torch.onnx.export(model, (torch.zeros(1, 3, 64, 64),), str(path), input_names=["image"],
                          output_names=["anime"], dynamic_axes={"image": axes, "anime": axes}, dynamo=False,
                          opset_version=17)
    x = _photo(101)  # odd height and width
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diff = float(np.abs(session.run(None, {"image": x})[0] - ref).max())
    if diff > ONNX_TOLERANCE:
        raise TrainingError(f"The ONNX model differs from PyTorch by {diff:.2e} (over {ONNX_TOLERANCE:g}).")
    return {"onnxruntime_max_abs_diff": diff, "checked_on": list(x.shape)}


def export_openvino(model: nn.Module, out: Path, rt: runtime.Runtime) -> dict:
    import openvino as ov

    from ..backends import openvino as ovb

    graph = ovb.build_graph(ovb.to_openvino(model, rt))
    ov.save_model(graph, str(out / "model.xml"), compress_to_fp16=False)
    return {}


def export_int8(model: nn.Module, out: Path, rt: runtime.Runtime) -> dict:
    from ..backends import openvino as ovb

    target = out / "int8"
    meta = ovb.build_int8(model, target, rt)
    for f in target.iterdir():
        shutil.move(str(f), out / f.name)
    target.rmdir()
    if meta["min_psnr"] < ovb.MIN_PSNR:
        raise TrainingError(f"The int8 model reaches only {meta['min_psnr']:.1f} dB against float32 on the worst "
                            f"calibration photo (the gate is {ovb.MIN_PSNR:.0f} dB); export --to openvino instead.")
    return {"int8_psnr_db": meta["psnr"], "int8_min_psnr_db": meta["min_psnr"], "not_int8": meta["not_int8"]}


def export_safetensors(model: nn.Module, out: Path, rt: runtime.Runtime) -> dict:
    model.save_pretrained(out)
    return {}


EXPORTERS = {"onnx": export_onnx, "openvino": export_openvino, "openvino-int8": export_int8,
             "safetensors": export_safetensors}


def time_512(kind: str, model: nn.Module, out: Path, rt: runtime.Runtime, runs: int = 3) -> float:
    """Median seconds for one 512 x 512 image with what was exported (on this CPU)."""
    rt.engage()
    x = _photo(512)
    if kind == "onnx":
        import onnxruntime as ort

        session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
        run = lambda: session.run(None, {"image": x})  # noqa: E731
    elif kind.startswith("openvino"):
        from ..backends.openvino import OpenVINOBackend

        backend = OpenVINOBackend(out / "model.xml", kind, rt)
        run = lambda: backend(x)  # noqa: E731
    else:
        def run() -> None:
            with torch.inference_mode():
                model(torch.from_numpy(x))
    run()  # warm-up (first-call compilation, allocations)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def model_card(source: Source, kind: str, facts: dict) -> str:
    from ..models.complexity import count
    from ..models.registry import describe

    cost = count(source.model, 512)
    rows = [
        ("format", kind),
        ("architecture", describe(source.model)),
        ("parameters", f"{cost.params / 1e6:.2f} M"),
        ("multiply-adds at 512 x 512", f"{cost.macs / 1e9:.1f} G"),
    ]
    if "seconds_512" in facts:
        rows.append(("512 x 512 time (this CPU, median)", f"{facts['seconds_512']:.3f} s on {facts['cpu']}"))
    if "int8_min_psnr_db" in facts:
        rows.append(("int8 vs float32 (worst calibration photo)", f"{facts['int8_min_psnr_db']:.1f} dB"))
    if "onnxruntime_max_abs_diff" in facts:
        rows.append(("ONNX Runtime vs PyTorch (max abs)", f"{facts['onnxruntime_max_abs_diff']:.1e}"))
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"""---
library_name: animegan
tags: [animegan, image-to-image, anime, {kind}]
---

# {Path(source.origin).name or source.origin} ({kind})

A photo-to-anime generator exported with `python -m animegan export` from {source.origin}.
Input: 1 x 3 x H x W float32 RGB in [-1, 1] (NCHW, any height and width); output: the same.

| | |
|---|---|
{table}

## Credit and licence of the weights

{source.credit}

The animegan code is MIT-licensed; the weights' terms are their owners' (above).
"""


def export(src: str, kind: str, out: str | Path, *, timing: bool = True,
           rt: runtime.Runtime | None = None) -> tuple[Path, dict]:
    """Write the export into ``out`` (an empty or new folder); returns it and the facts."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise TrainingError(f"{out} is not empty; give a new folder so nothing is overwritten.")
    rt = rt or runtime.get()
    source = load_source(src, rt)
    model = source.model.eval()
    out.mkdir(parents=True, exist_ok=True)
    facts = EXPORTERS[kind](model, out, rt)
    if timing:
        from ..host import cpu_name

        facts["seconds_512"], facts["cpu"] = time_512(kind, model, out, rt), cpu_name()
    (out / "README.md").write_text(model_card(source, kind, facts))
    (out / "export.json").write_text(json.dumps({"source": source.origin, "kind": kind, **facts}, indent=1))
    return out, facts


def push(out: Path, repo: str) -> str:
    """Upload the folder to a Hub model repo (created if needed); the repo's URL."""
    from huggingface_hub import HfApi

    api = HfApi(endpoint=runtime.get().hub.endpoint)
    api.create_repo(repo, exist_ok=True)
    api.upload_folder(repo_id=repo, folder_path=str(out), commit_message="animegan export")
    return f"{api.endpoint}/{repo}"


def run(args: argparse.Namespace) -> int:
    from ..settings import Settings

    try:
        rt = runtime.start(Settings.from_env())
        out, facts = export(args.source, args.to, args.out, timing=not args.no_timing, rt=rt)
    except TrainingError:
        raise
    except Exception as exc:
        from ..errors import user_message

        said = user_message(exc)
        if said is None:
            raise
        raise TrainingError(said.text) from None
    for f in sorted(out.iterdir()):
        print(f"{f.stat().st_size / 1e6:9.2f} MB  {f}")
    if "seconds_512" in facts:
        print(f"512 x 512: {facts['seconds_512']:.3f} s on {facts['cpu']}")
    if "int8_min_psnr_db" in facts:
        print(f"int8 vs float32: {facts['int8_min_psnr_db']:.1f} dB on the worst calibration photo")
    if args.push_to_hub:
        try:
            print(f"uploaded to {push(out, args.push_to_hub)}")
        except Exception as exc:  # no token, no network, no rights: say so, keep the files
            print(f"animegan export: the upload to {args.push_to_hub} failed ({str(exc).splitlines()[0][:300]}); "
                  f"the files are in {out}. Log in with `hf auth login` and run again.", file=sys.stderr)
            return 1
    return 0
