"""The generator as an OpenVINO graph, built straight from the state_dict, with optional
int8 quantization (activations u8 per tensor, weights s8 per output channel).

Building the graph op by op (instead of tracing the PyTorch model) takes well under a
second and gives full control over the details that decide the speed on a CPU:

- GroupNorm(1) is one MVN over (C, H, W) plus a per-channel scale and shift: no
  reshapes, so convolutions keep their blocked memory layout and no reorders appear.
- The activation fake-quantize sits *before* the reflection padding, right after the
  LeakyReLU that precedes it: it fuses into the normalisation, and the padding then
  copies 1-byte values.
- The first 7 x 7 convolution (3 input channels: ~1 % of the work) and the last 1 x 1
  convolution stay in higher precision; everything else may run int8 on VNNI.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import torch

from . import weights
from .runtime import INFERENCE_LOCK, available_cpus, background_pause, calibration_photos, native_bf16, psnr

# Bump when the graph or the calibration changes: old artefacts are then rebuilt.
ARTEFACT_FORMAT = 2
CALIBRATION_SIDE_ENV = "ANIMEGAN_CALIBRATION_SIDE"
BUILDS = {"openvino-int8": 0}  # how many times this process built an artefact (tests read it)

# Quantization points: the input of every convolution except the first and the last,
# named after the module whose input it is (a ConvNormLReLU, or a bare 1 x 1 conv).
_DOWN = (0, 1, 0, 1)  # left, right, top, bottom


def quant_points() -> list[str]:
    """Names of the modules whose input is quantized, in the order the data meets them."""
    names = ["block_a.1", "block_a.2", "block_b.0", "block_b.1", "block_c.0"]
    for i in range(1, 5):
        names += [f"block_c.{i}.layers.0", f"block_c.{i}.layers.1", f"block_c.{i}.layers.2"]
    names += ["block_c.5", "block_d.0", "block_d.1", "block_e.0", "block_e.1", "block_e.2"]
    return names


def build(
    state: dict[str, torch.Tensor],
    ranges: dict[str, tuple[float, float]] | None = None,
) -> ov.Model:
    """The generator as an ov.Model. With ``ranges`` (quantization point -> (low, high)),
    those convolutions run int8; without, it is the float graph."""
    sd = {k: v.detach().float().numpy() for k, v in state.items()}
    ranges = ranges or {}

    def fq(node, name):
        if name not in ranges:
            return node
        lo, hi = (np.array(v, dtype=np.float32) for v in ranges[name])
        return ops.fake_quantize(node, lo, hi, lo, hi, 256)

    def channel(v):  # (C,) -> (1, C, 1, 1) constant
        return ops.constant(v.reshape(1, -1, 1, 1).astype(np.float32))

    def conv(node, name, stride=1, groups=1, quantized=False):
        w = sd[f"{name}.weight"]
        if quantized:  # symmetric per output channel, 255 levels
            scale = np.maximum(np.abs(w).max(axis=(1, 2, 3)), 1e-12) / 127.0
            q = np.clip(np.round(w / scale[:, None, None, None]), -127, 127).astype(np.int8)
            weight = ops.multiply(ops.convert(ops.constant(q), np.float32),
                                  ops.constant(scale.reshape(-1, 1, 1, 1).astype(np.float32)))
        else:
            weight = ops.constant(w)
        if groups > 1:
            out_ch = w.shape[0]
            weight = ops.reshape(weight, ops.constant(np.array([groups, out_ch // groups, *w.shape[1:]],
                                                                dtype=np.int64)), special_zero=False)
            out = ops.group_convolution(node, weight, [stride, stride], [0, 0], [0, 0], [1, 1])
        else:
            out = ops.convolution(node, weight, [stride, stride], [0, 0], [0, 0], [1, 1])
        if f"{name}.bias" in sd:
            out = ops.add(out, channel(sd[f"{name}.bias"]))
        return out

    def group_norm(node, name):
        node = ops.mvn(node, ops.constant(np.array([1, 2, 3], dtype=np.int64)), True, 1e-5, "inside_sqrt")
        return ops.add(ops.multiply(node, channel(sd[f"{name}.weight"])), channel(sd[f"{name}.bias"]))

    def cnl(node, name, k=3, stride=1, pad=1, groups=1):
        node = fq(node, name)
        left, right, top, bottom = (pad,) * 4 if isinstance(pad, int) else pad
        if left or right or top or bottom:
            node = ops.pad(node, [0, 0, top, left], [0, 0, bottom, right], "reflect")
        node = conv(node, f"{name}.1", stride, groups, quantized=name in ranges)
        node = group_norm(node, f"{name}.2")
        return ops.prelu(node, ops.constant(np.array([0.2], dtype=np.float32)))

    def irb(node, name, residual):
        out = cnl(node, f"{name}.layers.0", k=1, pad=0)
        hidden = sd[f"{name}.layers.1.1.weight"].shape[0]
        out = cnl(out, f"{name}.layers.1", groups=hidden)
        out = conv(fq(out, f"{name}.layers.2"), f"{name}.layers.2", quantized=f"{name}.layers.2" in ranges)
        out = group_norm(out, f"{name}.layers.3")
        return ops.add(node, out) if residual else out

    def resize_like(node, like):
        size = ops.gather(ops.shape_of(like), ops.constant(np.array([2, 3], dtype=np.int64)),
                          ops.constant(np.int64(0)))
        return ops.interpolate(node, size, "linear", "sizes", coordinate_transformation_mode="align_corners",
                               axes=ops.constant(np.array([2, 3], dtype=np.int64)))

    x = ops.parameter([1, 3, -1, -1], np.float32, name="x")
    out = cnl(x, "block_a.0", k=7, pad=3)
    out = cnl(out, "block_a.1", stride=2, pad=_DOWN)
    half = cnl(out, "block_a.2")
    out = cnl(half, "block_b.0", stride=2, pad=_DOWN)
    out = cnl(out, "block_b.1")
    out = cnl(out, "block_c.0")
    out = irb(out, "block_c.1", residual=False)
    for i in (2, 3, 4):
        out = irb(out, f"block_c.{i}", residual=True)
    out = cnl(out, "block_c.5")
    out = resize_like(out, half)
    out = cnl(out, "block_d.0")
    out = cnl(out, "block_d.1")
    out = resize_like(out, x)
    out = cnl(out, "block_e.0")
    out = cnl(out, "block_e.1")
    out = cnl(out, "block_e.2", k=7, pad=3)
    out = ops.tanh(conv(out, "out_layer.0"))
    result = ops.result(out, name="y")
    return ov.Model([result], [x], "animeganv2")


def collect(model: torch.nn.Module, inputs: list[np.ndarray], bins: int = 2048
            ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], list[np.ndarray]]:
    """Run the float model on ``inputs`` and record a histogram of the values at each
    quantization point, over every pixel (the rare large values decide the range, so
    a random sample is not enough): (bin centres, counts). Also returns the float
    outputs (the reference for the fidelity check)."""
    modules = dict(model.named_modules())
    seen: dict[str, list] = {name: [] for name in quant_points()}

    def hook(name):
        def record(module, args):
            v = args[0].detach().float()
            lo, hi = v.min().item(), v.max().item()
            hist = torch.histc(v, bins=bins, min=lo, max=hi).numpy()
            edges = np.linspace(lo, hi, bins + 1)
            seen[name].append(((edges[:-1] + edges[1:]) / 2, hist))
        return record

    handles = [modules[name].register_forward_pre_hook(hook(name)) for name in seen]
    outputs = []
    try:
        for x in inputs:
            background_pause()
            with INFERENCE_LOCK, torch.inference_mode():  # requests get the cores between photos
                outputs.append(model(torch.from_numpy(x)).contiguous().numpy())
    finally:
        for h in handles:
            h.remove()
    merged = {
        name: (np.concatenate([c for c, _ in parts]), np.concatenate([n for _, n in parts]))
        for name, parts in seen.items()
    }
    return merged, outputs


def choose_range(centres: np.ndarray, counts: np.ndarray, steps: int = 16) -> tuple[float, float]:
    """The u8 range (low, high) that minimises the mean squared quantization error over
    the histogram, searched between the exact min/max and 40 % of them."""
    keep = counts > 0
    v, n = centres[keep], counts[keep]
    lo, hi = min(float(v.min()), 0.0), max(float(v.max()), 0.0)
    best, best_err = (lo, hi), np.inf
    fractions = np.linspace(1.0, 0.4, steps)
    for a in fractions:
        for b in fractions:
            qlo, qhi = lo * a, hi * b
            scale = (qhi - qlo) / 255.0
            if scale <= 0:
                continue
            q = np.clip(np.round((v - qlo) / scale), 0, 255) * scale + qlo
            err = float(np.sum(n * (q - v) ** 2))
            if err < best_err:
                best, best_err = (float(qlo), float(qhi)), err
    return best


# -- the backend and its artefact cache ------------------------------------------------------
_CORE: ov.Core | None = None


def core() -> ov.Core:
    global _CORE
    if _CORE is None:
        _CORE = ov.Core()
    return _CORE


class OpenVINOBackend:
    """A compiled OpenVINO model; layers without int8 run bf16 where the CPU has it."""

    def __init__(self, model: ov.Model | str | Path, name: str, min_psnr: float = float("inf")) -> None:
        self.name = name
        self.min_psnr = min_psnr  # worst PSNR against float32 on the calibration photos
        self.precision = "bf16" if native_bf16() else "f32"
        config = {
            "INFERENCE_PRECISION_HINT": self.precision,
            "INFERENCE_NUM_THREADS": available_cpus(),
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        self._compiled = core().compile_model(model if isinstance(model, ov.Model) else str(model), "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            self._request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
            return self._request.get_output_tensor(0).data.copy()


def state_hash(state: dict[str, torch.Tensor]) -> str:
    """sha256 of the weights themselves (names, shapes and float32 values)."""
    digest = hashlib.sha256()
    for key in sorted(state):
        t = state[key].detach().float().contiguous()
        digest.update(f"{key}{tuple(t.shape)}".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def artefact_dir(state: dict[str, torch.Tensor], kind: str = "openvino-int8") -> Path:
    """Where the artefact for these weights lives: next to the weights' cache, keyed by
    the weights' hash, the artefact format and the OpenVINO version."""
    version = ov.__version__.split("-")[0]
    return weights.cache_dir() / "animegan-artefacts" / state_hash(state) / f"{kind}-v{ARTEFACT_FORMAT}-ov{version}"


# Layers kept out of int8, tried in turn until the fidelity check passes. Measured on
# the proxy weights: the early half-resolution convolutions (3.6 % of the work) carry
# most of the quantization error (+2 dB without them, ~15 % slower); then the last 7x7.
FALLBACKS: tuple[tuple[str, ...], ...] = ((), ("block_a.1", "block_a.2"), ("block_a.1", "block_a.2", "block_e.2"))


def build_int8(model: torch.nn.Module, target: Path, side: int | None = None,
               min_psnr: float | None = None) -> dict:
    """Calibrate on the shipped photos, build the int8 graph, check it against float32
    (keeping the most sensitive layers in higher precision if it misses ``min_psnr``),
    and save model.xml/.bin + meta.json into ``target`` (atomically)."""
    from . import runtime

    side = side or int(os.environ.get(CALIBRATION_SIDE_ENV, "512"))
    min_psnr = runtime.MIN_PSNR if min_psnr is None else min_psnr
    start = time.perf_counter()
    photos = calibration_photos(side)
    stats, refs = collect(model, photos)
    all_ranges = {name: choose_range(*s) for name, s in stats.items()}
    for kept in FALLBACKS:
        ranges = {k: v for k, v in all_ranges.items() if k not in kept}
        graph = build(model.state_dict(), ranges)
        check = OpenVINOBackend(graph, "openvino-int8")
        scores = []
        for x, ref in zip(photos, refs, strict=True):
            background_pause()
            with INFERENCE_LOCK:
                scores.append(psnr(check(x), ref))
        if min(scores) >= min_psnr:
            break
    meta = {
        "format": ARTEFACT_FORMAT,
        "openvino": ov.__version__,
        "calibration_side": side,
        "psnr": [round(p, 2) for p in scores],
        "min_psnr": round(min(scores), 2),
        "not_int8": list(kept),
        "ranges": ranges,
        "build_seconds": round(time.perf_counter() - start, 1),
    }
    background_pause()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=target.parent))
    try:
        ov.save_model(graph, str(tmp / "model.xml"), compress_to_fp16=False)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            tmp.rename(target)
        except OSError:  # another process finished first: use theirs
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    BUILDS["openvino-int8"] += 1
    return meta


_BUILD_LOCK = threading.Lock()


def load_cached_int8(model: torch.nn.Module) -> OpenVINOBackend | None:
    """The int8 backend from the disk cache, or None when it has not been built yet."""
    target = artefact_dir(model.state_dict())
    if not (target / "meta.json").is_file():
        return None
    meta = json.loads((target / "meta.json").read_text())
    return OpenVINOBackend(target / "model.xml", "openvino-int8", meta["min_psnr"])


def load_or_build_int8(model: torch.nn.Module) -> OpenVINOBackend:
    """The int8 backend for these weights: from the disk cache, or built once."""
    with _BUILD_LOCK:
        backend = load_cached_int8(model)
        if backend is None:
            build_int8(model, artefact_dir(model.state_dict()))
            backend = load_cached_int8(model)
    return backend
