"""Inference backends behind one small interface, and their automatic choice.

A backend is made from **any** generator ``nn.Module`` (N x 3 x H x W in [-1, 1] -> the
same): PyTorch eager float32 or bf16, or OpenVINO (the module converted with
``openvino.convert_model``, then the project's int8 pass, gated at 38 dB). Fastest
first on a CPU with VNNI and native bf16:

==================  ===========================================  ====================
name                what                                         fidelity vs float32
==================  ===========================================  ====================
``openvino-int8``   OpenVINO, int8 convolutions calibrated on    >= 38 dB (checked
                    real photos, the rest bf16 (or f32)          at build time)
``torch-bf16``      PyTorch eager, bf16 autocast, channels_last  ~55 dB
                    (only where the CPU has native bf16)
``torch-fp32``      PyTorch eager float32, channels_last         exact (same maths)
``torch-exact``     PyTorch eager float32, NCHW: the published   bit for bit
                    demo's computation
==================  ===========================================  ====================

``auto`` (the default) is :class:`~animegan.backends.auto.AutoBackend`. Nothing here
imports OpenVINO until an OpenVINO backend is asked for.

An ONNX style is an :class:`~animegan.models.onnx.OnnxGenerator` (its graph adapted, once,
to the same convention) and has no PyTorch module: it runs on ``openvino-f32`` (the
float32 reference for files), ``openvino-bf16``, ``openvino-int8`` (the same int8 pass and
gate), or ``onnxruntime`` where OpenVINO cannot read it. Asked for a ``torch-*`` backend,
it gets the OpenVINO float backend of the same precision (``torch-fp32``/``torch-exact``
-> ``openvino-f32``, ``torch-bf16`` -> ``openvino-bf16``), so one setting serves every style.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch import nn

from .. import host
from ..models.onnx import OnnxGenerator
from ..settings import Settings
from .base import Backend, BackendUnavailable, Cancelled
from .fidelity import MIN_PSNR, calibration_photos, psnr
from .torch_eager import ExactBackend, TorchBackend, TorchBF16Backend


def hub_cache(settings: Settings) -> Path:
    """huggingface_hub's cache folder (the int8 artefacts live beside the weights)."""
    if settings.hub_cache is not None:
        return settings.hub_cache
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


Generator = nn.Module | OnnxGenerator  # what a backend is made from


def _openvino(model: Generator, precision: str, settings: Settings) -> Backend:
    try:
        from . import openvino
    except ImportError as exc:
        raise BackendUnavailable(f"the openvino package is not installed ({exc})") from None
    return openvino.float_backend(model, precision, no_bf16=settings.no_bf16)


def _onnxruntime(model: Generator, settings: Settings) -> Backend:
    if not isinstance(model, OnnxGenerator):
        raise BackendUnavailable("onnxruntime runs ONNX styles only; this style is a PyTorch generator")
    from .onnxruntime import OnnxRuntimeBackend

    return OnnxRuntimeBackend(model)


def _torch(kind: type) -> Callable[..., Backend]:
    def make(model: Generator, settings: Settings) -> Backend:
        if isinstance(model, OnnxGenerator):  # no module to run: the OpenVINO float backend of that precision
            return _openvino(model, "bf16" if kind is TorchBF16Backend else "f32", settings)
        return kind(model, no_bf16=settings.no_bf16) if kind is TorchBF16Backend else kind(model)
    return make


def _openvino_int8(model: Generator, settings: Settings) -> Backend:
    try:
        from . import openvino
    except ImportError as exc:
        raise BackendUnavailable(f"the openvino package is not installed ({exc})") from None
    return openvino.load_or_build_int8(model, hub_cache(settings), side=settings.calibration_side,
                                       no_bf16=settings.no_bf16)


# Fastest first (benchmarks/results/speed.md).
BACKENDS: dict[str, Callable[[Generator, Settings], Backend]] = {
    "openvino-int8": _openvino_int8,
    "torch-bf16": _torch(TorchBF16Backend),
    "torch-fp32": _torch(TorchBackend),
    "torch-exact": _torch(ExactBackend),
    "openvino-bf16": lambda model, s: _openvino(model, "bf16", s),
    "openvino-f32": lambda model, s: _openvino(model, "f32", s),
    "onnxruntime": _onnxruntime,
}


def make_backend(model: Generator, name: str | None = None, settings: Settings | None = None,
                 background: bool = True) -> Backend:
    """The named backend for ``model``, or ``auto`` (``settings.backend``, default ``auto``).

    Sets PyTorch's (and so OpenVINO's) threads to the CPUs this process may use (or
    ``settings.threads``), and the allocator for the
    backend that runs (unless ``settings.malloc`` is off).
    """
    settings = settings or Settings.from_env()
    name = name or settings.backend or "auto"
    host.configure_threads(min(settings.threads, host.available_cpus()) if settings.threads > 0 else None)
    if name == "auto":
        from .auto import AutoBackend

        if settings.malloc:
            host.tune_allocator(keep_big_blocks=isinstance(model, nn.Module))  # PyTorch serves first
        return AutoBackend(model, hub_cache=hub_cache(settings), calibration_side=settings.calibration_side,
                           no_bf16=settings.no_bf16, malloc=settings.malloc, background=background)
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ValueError(f"Unknown backend {name!r}; choose one of: auto, {', '.join(BACKENDS)}.") from None
    try:
        backend = factory(model, settings)
    except BackendUnavailable as exc:
        raise ValueError(f"Backend {name!r} cannot run here: {exc}") from None
    if settings.malloc:
        host.tune_allocator(keep_big_blocks=backend.name.startswith("torch"))
    return backend


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
    "calibration_photos",
    "hub_cache",
    "make_backend",
    "psnr",
]
