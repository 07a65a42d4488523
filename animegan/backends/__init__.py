"""Inference backends behind one small interface, and their automatic choice.

A backend is made from **any** generator ``nn.Module`` (N x 3 x H x W in [-1, 1] -> the
same): PyTorch eager float32 or bf16, or OpenVINO (the module converted with
``openvino.convert_model``: float32, bf16, or the project's int8 pass, gated at 38 dB).

==================  ===========================================  ====================
name                what                                         fidelity vs float32
==================  ===========================================  ====================
``openvino-int8``   OpenVINO, int8 convolutions calibrated on    >= 38 dB (checked
                    real photos, the rest bf16 (or f32)          at build time)
``openvino-bf16``   OpenVINO, bf16 (only with native bf16)       checked by ``auto``
``openvino-f32``    OpenVINO, float32                            ~float32
``torch-bf16``      PyTorch eager, bf16 autocast, channels_last  ~55 dB
                    (only where the CPU has native bf16)
``torch-fp32``      PyTorch eager float32, channels_last         exact (same maths)
``torch-exact``     PyTorch eager float32, NCHW: the published   bit for bit
                    demo's computation
``onnxruntime``     ONNX Runtime, float32 (ONNX styles only)     ~float32
==================  ===========================================  ====================

``auto`` (the default) is :class:`~animegan.backends.auto.AutoBackend`: the fastest of
these *on this machine* within the bound, measured once and remembered. Which one that
is depends on the CPU (AVX-512 with VNNI, AVX2 only ...): ``python -m animegan info``
says. Nothing here imports OpenVINO until an OpenVINO backend is asked for.

An ONNX style is an :class:`~animegan.models.onnx.OnnxGenerator` (its graph adapted, once,
to the same convention) and has no PyTorch module. Asked for a ``torch-*`` backend, it
gets the OpenVINO float backend of the same precision (``torch-fp32``/``torch-exact``
-> ``openvino-f32``, ``torch-bf16`` -> ``openvino-bf16``), so one setting serves every style.

Every backend is made with the process's :class:`~animegan.runtime.Runtime` (threads,
OpenVINO Core, artefact folder); passes hold its inference lock, taken by the caller.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..models.onnx import OnnxGenerator
from ..runtime import Runtime, get
from ..settings import Settings
from .base import Backend, BackendUnavailable, Cancelled
from .fidelity import MIN_PSNR, calibration_photos, psnr
from .torch_eager import ExactBackend, TorchBackend, TorchBF16Backend

Generator = nn.Module | OnnxGenerator  # what a backend is made from
ProgressFn = Callable[[float, str], None]


def as_runtime(where: Runtime | Settings | None) -> Runtime:
    """The Runtime for ``where``: itself, the process's for those Settings, or the process's."""
    if isinstance(where, Runtime):
        return where
    return get(where)


def _openvino_module():
    try:
        from . import openvino
    except ImportError as exc:
        raise BackendUnavailable(f"the openvino package is not installed ({exc})") from None
    return openvino


def _openvino(model: Generator, precision: str, rt: Runtime) -> Backend:
    return _openvino_module().float_backend(model, precision, rt)


def _onnxruntime(model: Generator, rt: Runtime) -> Backend:
    if not isinstance(model, OnnxGenerator):
        raise BackendUnavailable("onnxruntime runs ONNX styles only; this style is a PyTorch generator")
    from .onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(model, rt.threads)


def _torch(kind: type) -> Callable[[Generator, Runtime], Backend]:
    def make(model: Generator, rt: Runtime) -> Backend:
        if isinstance(model, OnnxGenerator):  # no module to run: the OpenVINO float backend of that precision
            return _openvino(model, "bf16" if kind is TorchBF16Backend else "f32", rt)
        return kind(model, native_bf16=rt.native_bf16) if kind is TorchBF16Backend else kind(model)
    return make


def _openvino_int8(model: Generator, rt: Runtime) -> Backend:
    return _openvino_module().load_or_build_int8(model, rt)


BACKENDS: dict[str, Callable[[Generator, Runtime], Backend]] = {
    "openvino-int8": _openvino_int8,
    "torch-bf16": _torch(TorchBF16Backend),
    "torch-fp32": _torch(TorchBackend),
    "torch-exact": _torch(ExactBackend),
    "openvino-bf16": lambda model, rt: _openvino(model, "bf16", rt),
    "openvino-f32": lambda model, rt: _openvino(model, "f32", rt),
    "onnxruntime": _onnxruntime,
}


def float32(model: Generator, rt: Runtime) -> tuple[Backend, str | None]:
    """The exact start and reference of a generator: PyTorch float32 for a module; OpenVINO
    f32 for an ONNX file, or ONNX Runtime where OpenVINO cannot read it (then a note says why)."""
    if isinstance(model, nn.Module):
        return TorchBackend(model), None
    try:
        return _openvino(model, "f32", rt), None
    except Exception as exc:  # not installed, or an operator its reader lacks
        note = f"openvino cannot run this graph ({str(exc).splitlines()[0][:200]}); using onnxruntime"
        return _onnxruntime(model, rt), note


def make_backend(model: Generator, name: str | None = None, runtime: Runtime | Settings | None = None, *,
                 background: bool = True, progress: ProgressFn | None = None, start: bool = True) -> Backend:
    """The named backend for ``model``, or ``auto`` (the settings' ``backend``, default
    ``auto``); ``float32`` names the exact start (:func:`float32`). ``background=False``
    makes ``auto`` choose before returning, telling ``progress(fraction, text)``;
    ``start=False`` makes it wait for ``.start()`` before choosing in the background."""
    rt = as_runtime(runtime)
    rt.engage()
    name = name or rt.settings.backend or "auto"
    if name == "auto":
        from .auto import AutoBackend

        return AutoBackend(model, rt, background=background, progress=progress, start=start)
    if name == "float32":
        return float32(model, rt)[0]
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ValueError(f"Unknown backend {name!r}; choose one of: auto, {', '.join(BACKENDS)}.") from None
    try:
        return factory(model, rt)
    except BackendUnavailable as exc:
        raise ValueError(f"Backend {name!r} cannot run here: {exc}") from None


__all__ = [
    "BACKENDS",
    "MIN_PSNR",
    "Backend",
    "BackendUnavailable",
    "Cancelled",
    "ExactBackend",
    "Generator",
    "TorchBF16Backend",
    "TorchBackend",
    "as_runtime",
    "calibration_photos",
    "float32",
    "make_backend",
    "psnr",
]
