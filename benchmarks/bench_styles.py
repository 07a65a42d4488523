#!/usr/bin/env python3
"""512 x 512 time per style kind on each backend, with PSNR against that kind's float32.

Kinds (the same AnimeGANv2 network, so only the route differs):

- ``pytorch``: published-format weights (tests/data/proxy_toon.pt stands in for the Hub's);
  float32 reference = torch-fp32.
- ``onnx-nhwc``: the same weights exported to ONNX the way the TensorFlow releases come
  (NHWC, [-1, 1], size rule: multiples of 32), run through the adapted graph
  (animegan.models.onnx); float32 reference = openvino-f32.

Each backend runs ``--runs`` times after a warm-up; the median is printed beside the
reference's, measured in the same run. The int8 models are built into a temporary cache.

    PYTHONPATH=. python benchmarks/bench_styles.py [--runs 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from animegan import images  # noqa: E402
from animegan.backends import make_backend  # noqa: E402
from animegan.backends.fidelity import psnr  # noqa: E402
from animegan.models.onnx import OnnxGenerator  # noqa: E402
from animegan.settings import Settings  # noqa: E402
from animegan.weights import load_generator  # noqa: E402

PROXY = ROOT / "tests" / "data" / "proxy_toon.pt"
PHOTO = ROOT / "examples" / "astronaut.png"  # 512 x 512


class NHWC(torch.nn.Module):
    """The generator behind a TensorFlow-style interface: 1 x H x W x 3 in, the same out."""

    def __init__(self, g: torch.nn.Module) -> None:
        super().__init__()
        self.g = g

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.g(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


def export_nhwc(target: Path) -> Path:
    torch.onnx.export(NHWC(load_generator(PROXY)), torch.zeros(1, 64, 64, 3), str(target), dynamo=False,
                      opset_version=17, input_names=["input"], output_names=["generator_output"],
                      dynamic_axes={"input": {1: "h", 2: "w"}, "generator_output": {1: "h", 2: "w"}})
    return target


def timed(backend, x, runs: int) -> tuple[float, object]:
    out = backend(x)  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        out = backend(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="animegan-bench-styles-"))
    settings = Settings(hub_cache=tmp, threads=args.threads, malloc=True)
    x = images.to_array(images.decode(PHOTO).rgb)
    kinds = {
        "pytorch": (load_generator(PROXY), ["torch-fp32", "torch-bf16", "openvino-f32", "openvino-bf16",
                                            "openvino-int8"]),
        "onnx-nhwc": (OnnxGenerator.load(export_nhwc(tmp / "proxy_nhwc.onnx"), multiple=32),
                      ["openvino-f32", "onnxruntime", "openvino-bf16", "openvino-int8"]),
    }
    print(f"512 x 512, median of {args.runs}, threads={torch.get_num_threads() if not args.threads else args.threads}")
    print("| kind | backend | s | x its float32 | PSNR vs float32 |")
    print("|---|---|---|---|---|")
    for kind, (model, names) in kinds.items():
        ref_s, ref_out = None, None
        for name in names:
            try:
                backend = make_backend(model, name, settings)
            except ValueError as exc:
                print(f"| {kind} | {name} | — | — | not here: {exc} |")
                continue
            seconds, out = timed(backend, x, args.runs)
            if ref_s is None:
                ref_s, ref_out = seconds, out
            quality = psnr(out, ref_out)
            shown = "ref" if out is ref_out else ("exact" if quality == float("inf") else f"{quality:.1f} dB")
            print(f"| {kind} | {backend.name} | {seconds:.3f} | {ref_s / seconds:.2f}x | {shown} |", flush=True)


if __name__ == "__main__":
    main()
