"""Inference backends behind one small interface, and thread settings.

A backend is a callable: 1 x 3 x H x W float32 array in [-1, 1] -> the same shape.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .generator import Generator

# One inference at a time per process: each pass already uses every core, so two at
# once would only oversubscribe them and make both slower.
INFERENCE_LOCK = threading.Lock()


class Backend(Protocol):
    name: str

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


def available_cpus() -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def configure_threads(threads: int | None = None) -> int:
    n = threads or available_cpus()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


class TorchBackend:
    """PyTorch eager float32; channels_last memory layout (faster convs, same maths, but
    the summation order differs, so a few pixels may differ by one 8-bit level)."""

    name = "torch-fp32"
    memory_format = torch.channels_last

    def __init__(self, model: Generator) -> None:
        self.model = model.to(memory_format=self.memory_format)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            t = torch.from_numpy(x).contiguous(memory_format=self.memory_format)
            return self.model(t).contiguous().numpy()


class ExactBackend(TorchBackend):
    """PyTorch eager float32 NCHW: the published demo's computation, pixel for pixel."""

    name = "torch-exact"
    memory_format = torch.contiguous_format


BACKENDS = {"torch-fp32": TorchBackend, "torch-exact": ExactBackend}
BACKEND_ENV = "ANIMEGAN_BACKEND"


def make_backend(model: Generator, name: str | None = None) -> Backend:
    """The named backend, or the default (``auto`` / ``$ANIMEGAN_BACKEND``)."""
    name = name or os.environ.get(BACKEND_ENV) or "auto"
    configure_threads()
    if name == "auto":
        name = "torch-fp32"
    try:
        return BACKENDS[name](model)
    except KeyError:
        raise ValueError(f"Unknown backend {name!r}; choose one of: auto, {', '.join(BACKENDS)}.") from None
