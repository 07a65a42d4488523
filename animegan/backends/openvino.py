"""OpenVINO backends for any generator: the graph is converted from the ``nn.Module``
(``openvino.convert_model``) or read from an ONNX file, then the project's int8 pass
runs on the converted graph, and the result is checked against float32.

The int8 pass (measured faster and more faithful here than NNCF's default
post-training quantization on these generators, whose activations sit behind
GroupNorm and reflection padding; see benchmarks/bench_speed.py):

- GroupNorm with one group becomes one MVN over (C, H, W) plus a per-channel scale and
  shift: no reshapes, so convolutions keep their blocked memory layout.
- Every convolution but the first and the last reads its input through a u8
  fake-quantize (range chosen to minimise the squared error over histograms of real
  photos) and uses s8 weights per output channel. Where a reflection pad feeds the
  convolution, the fake-quantize goes *before* the pad: it fuses into the
  normalisation, and the pad then copies 1-byte values.
- Where the worst calibration photo misses the bound, the most sensitive layers (the
  first quantized convolutions, then the last one) stay in higher precision, step by
  step, and the graph is checked again.

The built model is cached next to the Hugging Face cache, keyed by the generator's
hash, so a restart only reads it back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import openvino as ov
import openvino.opset13 as ops
import torch
from torch import nn

from ..files import install_folder, new_folder_beside, sha256_file
from ..models.onnx import OnnxGenerator, OnnxModelError
from ..runtime import Runtime
from .artefacts import source_hash
from .base import BackendUnavailable
from .fidelity import MIN_PSNR, calibration_photos, psnr

log = logging.getLogger("animegan")

# Bump when the graph or the calibration changes: old artefacts are then rebuilt.
ARTEFACT_FORMAT = 4  # 4: meta.json holds the files' sha256 and a one-photo check
CHECK_SIDE = 192  # long side of the photo the artefact is checked on at every load
CHECK_TOLERANCE = 2.0  # dB the load-time check may fall below the build's own (bf16 vs f32 CPUs)
ARTEFACT_FILES = ("model.xml", "model.bin")
BUILD_EVENT = "openvino-int8 build"  # counted by the runtime: how many times this process built one
# a generator: a module, an ONNX file adapted to the package's convention, or an ONNX / IR file
Source = nn.Module | OnnxGenerator | str | Path

_CONVS = ("Convolution", "GroupConvolution")


def _no_pause() -> None:
    return None


ProgressFn = Callable[[float, str], None]


def _no_progress(fraction: float, text: str) -> None:
    return None


# -- conversion --------------------------------------------------------------------------
@contextlib.contextmanager
def _tracing() -> Iterator[None]:
    """openvino.convert_model traces a module with torch.jit.trace, which PyTorch now
    marks deprecated (a FutureWarning on every conversion), and the trace notes each
    Python-level branch it records as a constant (a TracerWarning: GroupNorm's size check).
    The conversion is OpenVINO's documented path for an nn.Module, the graph takes any
    size, and its result is checked against PyTorch (tests/test_backends.py), so these
    notices, meant for the authors of the tracing call, are kept from users, at the call."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace", category=FutureWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        yield


def convert(module: nn.Module, example: tuple, inputs: list) -> ov.Model:
    """``openvino.convert_model`` of a module (no gradients, the tracing notice kept quiet)."""
    with torch.no_grad(), _tracing():
        return ov.convert_model(module, example_input=example, input=inputs)


def to_openvino(source: Source, rt: Runtime) -> ov.Model:
    """The generator as a float ov.Model with a dynamic height and width."""
    if isinstance(source, OnnxGenerator):  # the adapted graph: 1x3xHxW in [-1, 1], any size
        try:
            return rt.openvino().read_model(source.adapted_bytes(), ov.Tensor(np.empty(0, dtype=np.uint8)))
        except RuntimeError as exc:  # a valid graph OpenVINO cannot convert: a message, not a traceback
            lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip() and "http" not in ln]
            said = [ln.strip("- ") for ln in lines if ln.startswith("--")] or lines[2:3]  # the summary's items
            raise OnnxModelError(f"{source.path.name}: OpenVINO cannot convert this ONNX graph"
                                 + (f" ({'; '.join(said)[:200]})." if said else ".")) from None
    if isinstance(source, (str, Path)):
        return rt.openvino().read_model(str(source))
    return convert(source.eval(), torch.zeros(1, 3, 64, 64), [(1, 3, -1, -1)])


def _rewrite_group_norms(model: ov.Model) -> None:
    """GroupNormalization(num_groups=1) -> MVN over (C, H, W), scale, shift (same maths)."""
    for node in model.get_ordered_ops():
        if node.get_type_name() != "GroupNormalization" or node.get_attributes().get("num_groups") != 1:
            continue
        eps = float(node.get_attributes()["epsilon"])
        data, scale, bias = (node.input(i).get_source_output() for i in range(3))
        shape = ops.constant(np.array([1, -1, 1, 1], dtype=np.int64))
        out = ops.mvn(data, ops.constant(np.array([1, 2, 3], dtype=np.int64)), True, eps, "inside_sqrt")
        out = ops.add(ops.multiply(out, ops.reshape(scale, shape, False)), ops.reshape(bias, shape, False))
        for target in list(node.output(0).get_target_inputs()):
            target.replace_source_output(out.output(0))


def _conv_nodes(model: ov.Model) -> list:
    return [n for n in model.get_ordered_ops() if n.get_type_name() in _CONVS]


def quant_points(model: ov.Model) -> dict[str, ov.Output]:
    """Convolution name -> the tensor its input is quantized at (before a reflection pad
    that feeds it), for every convolution but the first and the last, in data order."""
    points = {}
    for conv in _conv_nodes(model)[1:-1]:
        src = conv.input(0).get_source_output()
        if src.get_node().get_type_name() == "Pad":
            src = src.get_node().input(0).get_source_output()
        points[conv.get_friendly_name()] = src
    return points


def _quantize_weights(conv) -> None:
    """The convolution's weights as s8 per output channel times a float scale."""
    const = conv.input(1).get_source_output().get_node()
    if const.get_type_name() != "Constant":
        return
    w = const.get_data().astype(np.float32)
    axes = tuple(range(2, w.ndim)) if conv.get_type_name() == "GroupConvolution" else tuple(range(1, w.ndim))
    scale = np.maximum(np.abs(w).max(axis=axes, keepdims=True), 1e-12) / 127.0
    q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
    weight = ops.multiply(ops.convert(ops.constant(q), np.float32), ops.constant(scale.astype(np.float32)))
    conv.input(1).replace_source_output(weight.output(0))


def build_graph(base: ov.Model, ranges: dict[str, tuple[float, float]] | None = None) -> ov.Model:
    """A copy of the converted graph ``base``, GroupNorms rewritten; with ``ranges``
    (convolution name -> (low, high) of its input) those convolutions run int8."""
    model = base.clone()
    _rewrite_group_norms(model)
    if not ranges:
        return model
    convs = {c.get_friendly_name(): c for c in _conv_nodes(model)}
    inserted: dict[tuple[str, int], ov.Output] = {}
    for name, src in quant_points(model).items():
        if name not in ranges:
            continue
        key = (src.get_node().get_friendly_name(), src.get_index())
        if key not in inserted:
            lo, hi = (np.array(v, dtype=np.float32) for v in ranges[name])
            inserted[key] = ops.fake_quantize(src, lo, hi, lo, hi, 256).output(0)
        conv = convs[name]
        feed = conv.input(0).get_source_output().get_node()
        reader = feed.input(0) if feed.get_type_name() == "Pad" else conv.input(0)
        reader.replace_source_output(inserted[key])
        _quantize_weights(conv)
    model.validate_nodes_and_infer_types()
    return model


# -- calibration ------------------------------------------------------------------------
def collect(base: ov.Model, inputs: list[np.ndarray], rt: Runtime, bins: int = 2048,
            pause: Callable[[], None] = _no_pause, step: Callable[[], None] = lambda: None,
            ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Run the float graph on ``inputs`` and record a histogram of the values at each
    quantization point, over every pixel (the rare large values decide the range, so a
    random sample is not enough): convolution name -> (bin centres, counts)."""
    model = build_graph(base)
    points = quant_points(model)
    names = list(points)
    model.add_outputs(list(points.values()))
    compiled = rt.openvino().compile_model(model, "CPU", rt.openvino_config("f32"))
    request = compiled.create_infer_request()
    seen: dict[str, list] = {name: [] for name in names}
    for x in inputs:
        pause()
        step()
        with rt.background():  # requests get the cores first, between photos
            request.infer({0: x})
            values = [request.get_output_tensor(1 + i).data for i in range(len(names))]
            for name, v in zip(names, values, strict=True):
                lo, hi = float(v.min()), float(v.max())
                counts, edges = np.histogram(v, bins=bins, range=(lo, hi if hi > lo else lo + 1e-6))
                seen[name].append(((edges[:-1] + edges[1:]) / 2, counts))
    return {name: (np.concatenate([c for c, _ in parts]), np.concatenate([n for _, n in parts]))
            for name, parts in seen.items()}


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


def fallbacks(names: list[str]) -> list[tuple[str, ...]]:
    """Convolutions kept out of int8, tried in turn until the fidelity check passes:
    none; the first two quantized ones (early, full-detail layers carry most of the
    error); those and the last one."""
    first, last = tuple(names[:2]), tuple(names[-1:])
    return [(), first, first + tuple(n for n in last if n not in first)]


# -- the backend and its artefact cache ------------------------------------------------------
class OpenVINOBackend:
    """A compiled OpenVINO model; layers without int8 run bf16 where the CPU has it."""

    family = "openvino"
    upgrading = False
    ranges: dict | None = None  # int8: convolution name -> (low, high) of its quantized input

    def __init__(self, model: ov.Model | str | Path, name: str, rt: Runtime, min_psnr: float = float("inf"),
                 *, hint: str | None = None) -> None:
        self.name = name
        self.precision = name.rsplit("-", 1)[-1]  # f32, bf16 or int8
        self.min_psnr = min_psnr  # worst PSNR against float32 on the calibration photos
        # the precision of what is not int8: bf16 where the CPU has it natively
        self.hint = hint or ("bf16" if rt.native_bf16 else "f32")
        self._compiled = rt.openvino().compile_model(model if isinstance(model, ov.Model) else str(model), "CPU",
                                                     rt.openvino_config(self.hint))
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            self._request.infer({0: np.ascontiguousarray(x, dtype=np.float32)})
            return self._request.get_output_tensor(0).data.copy()


def float_backend(source: Source, precision: str, rt: Runtime) -> OpenVINOBackend:
    """The converted graph run as it is, in float32 (``f32``: the reference for a file) or
    bf16 (``bf16``, only where the CPU has native bf16)."""
    if precision == "bf16" and not rt.native_bf16:
        raise BackendUnavailable("openvino-bf16 needs a CPU with native bf16 (AVX512-BF16 or AMX).")
    return OpenVINOBackend(to_openvino(source, rt), f"openvino-{precision}", rt, hint=precision)


def artefact_dir(source: Source, rt: Runtime, kind: str = "openvino-int8") -> Path:
    """Where the artefact for this generator lives: in the runtime's artefact folder (next
    to the weights' cache), keyed by the generator's hash, the artefact format and the
    OpenVINO version."""
    version = ov.__version__.split("-")[0]
    return rt.artefacts / source_hash(source) / f"{kind}-v{ARTEFACT_FORMAT}-ov{version}"


def _references(source: Source, base: ov.Model, photos: list[np.ndarray], rt: Runtime,
                pause: Callable[[], None], step: Callable[[], None] = lambda: None) -> list[np.ndarray]:
    """Float32 outputs on the calibration photos: PyTorch's for a module, else OpenVINO's f32."""
    if isinstance(source, nn.Module):
        run = lambda x: source(torch.from_numpy(x)).contiguous().numpy()  # noqa: E731
    else:
        request = rt.openvino().compile_model(base.clone(), "CPU", rt.openvino_config("f32")).create_infer_request()
        run = lambda x: request.infer({0: x})[0].copy()  # noqa: E731
    out = []
    for x in photos:
        pause()
        step()
        with rt.background(), torch.inference_mode():
            out.append(run(x))
    return out


class DamagedArtefact(RuntimeError):
    """A cached artefact failed its checks (files, metadata or the one-photo check)."""


def _file_hashes(folder: Path) -> dict[str, str]:
    return {name: sha256_file(folder / name) for name in ARTEFACT_FILES}


def _check_photo_psnr(source: Source, backend: OpenVINOBackend, rt: Runtime, base: ov.Model | None = None) -> float:
    """PSNR of ``backend`` against float32 on one calibration photo at CHECK_SIDE."""
    x = calibration_photos(CHECK_SIDE)[0]
    if base is None and not isinstance(source, nn.Module):
        base = to_openvino(source, rt)
    (ref,) = _references(source, base, [x], rt, _no_pause)
    with rt.background():
        return psnr(backend(x), ref)


def build_int8(source: Source, target: Path, rt: Runtime, side: int | None = None, min_psnr: float = MIN_PSNR,
               *, pause: Callable[[], None] = _no_pause, progress: ProgressFn = _no_progress) -> dict:
    """Calibrate on the shipped photos, build the int8 graph, check it against float32
    (keeping the most sensitive layers in higher precision if it misses ``min_psnr``),
    and save model.xml/.bin + meta.json into ``target`` (atomically). ``side``: the
    calibration photos' long side (default: the settings'). ``progress(fraction, text)``
    hears of every step."""
    start = time.perf_counter()
    photos = calibration_photos(side or rt.settings.calibration_side)
    steps = 3 * len(photos) + 2  # references, statistics, the check (once, unless a layer falls back)
    done = [0]

    def step(text: str) -> Callable[[], None]:
        def tell() -> None:
            progress(min(0.99, done[0] / steps), text)
            done[0] += 1
        return tell

    step("converting the network")()
    base = to_openvino(source, rt)
    refs = _references(source, base, photos, rt, pause, step("float32 results of the calibration photos"))
    stats = collect(base, photos, rt, pause=pause, step=step("measuring each layer's range"))
    all_ranges = {name: choose_range(*s) for name, s in stats.items()}
    for kept in fallbacks(list(all_ranges)):
        ranges = {k: v for k, v in all_ranges.items() if k not in kept}
        graph = build_graph(base, ranges)
        check = OpenVINOBackend(graph, "openvino-int8", rt)
        scores = []
        for x, ref in zip(photos, refs, strict=True):
            pause()
            step("checking int8 against float32")()
            with rt.background():
                scores.append(psnr(check(x), ref))
        if min(scores) >= min_psnr:
            break
    pause()
    step("saving")()
    check_psnr = _check_photo_psnr(source, check, rt, base)
    meta = {
        "format": ARTEFACT_FORMAT,
        "openvino": ov.__version__,
        "calibration_side": side,
        "psnr": [round(p, 2) for p in scores],
        "min_psnr": round(min(scores), 2),
        "not_int8": list(kept),
        "ranges": ranges,
        "check": {"side": CHECK_SIDE, "psnr": round(check_psnr, 3)},
        "build_seconds": round(time.perf_counter() - start, 1),
    }
    pause()
    tmp = new_folder_beside(target)
    try:
        ov.save_model(graph, str(tmp / "model.xml"), compress_to_fp16=False)
        meta["files"] = _file_hashes(tmp)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    install_folder(tmp, target)
    rt.count(BUILD_EVENT, 1)
    progress(1.0, "done")
    return meta


def load_cached_int8(source: Source, rt: Runtime) -> OpenVINOBackend | None:
    """The int8 backend from the disk cache; None when it has not been built yet.

    Raises :class:`DamagedArtefact` when the folder is there but anything is wrong: a
    missing or unreadable ``meta.json``, a file whose sha256 is not the one recorded, a
    model OpenVINO cannot read, or a one-photo check against float32 more than
    CHECK_TOLERANCE dB under the build's own."""
    target = artefact_dir(source, rt)
    if not target.exists():
        return None
    try:
        meta = json.loads((target / "meta.json").read_text())
        recorded, check = meta["files"], meta["check"]
        if meta.get("format") != ARTEFACT_FORMAT or check.get("side") != CHECK_SIDE:
            raise ValueError("written by another version")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DamagedArtefact(f"meta.json missing or unreadable ({exc})") from None
    try:
        found = _file_hashes(target)
    except OSError as exc:
        raise DamagedArtefact(f"a file is missing ({exc.strerror}: {Path(exc.filename or '').name})") from None
    changed = [name for name in ARTEFACT_FILES if recorded.get(name) != found[name]]
    if changed:
        raise DamagedArtefact(f"{', '.join(changed)} changed since it was built (sha256 differs)")
    try:
        backend = OpenVINOBackend(target / "model.xml", "openvino-int8", rt, meta["min_psnr"])
    except Exception as exc:  # openvino raises RuntimeError subclasses for unreadable models
        raise DamagedArtefact(f"OpenVINO cannot read it ({str(exc).splitlines()[0][:200]})") from None
    backend.ranges = meta.get("ranges") or {}
    quality = _check_photo_psnr(source, backend, rt)
    if quality < float(check["psnr"]) - CHECK_TOLERANCE:
        raise DamagedArtefact(f"its output is {quality:.1f} dB from float32 on the check photo, "
                              f"{float(check['psnr']):.1f} dB when built")
    return backend


def load_or_build_int8(source: Source, rt: Runtime, *, pause: Callable[[], None] = _no_pause,
                       progress: ProgressFn = _no_progress) -> OpenVINOBackend:
    """The int8 backend for this generator: from the disk cache, or built once. A damaged
    cached artefact is removed and rebuilt (the new one replaces it atomically)."""
    with rt.build_lock:
        try:
            backend = load_cached_int8(source, rt)
        except DamagedArtefact as exc:
            log.warning("animegan: the cached int8 model is damaged (%s); rebuilding it", exc)
            backend = None
        if backend is None:
            build_int8(source, artefact_dir(source, rt), rt, pause=pause, progress=progress)
            backend = load_cached_int8(source, rt)
    return backend
