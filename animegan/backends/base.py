"""The interface every backend meets."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Backend(Protocol):
    """A callable: 1 x 3 x H x W float32 in [-1, 1] -> the same shape.

    ``name`` says what runs (``openvino-int8``, ``torch-fp32`` ...); ``family`` which engine
    runs it (``torch``, ``openvino``, ``onnxruntime``: what the runtime sets the allocator
    for, and which tile engine matches it) and ``precision`` in what (``f32``, ``bf16``,
    ``int8``); ``upgrading`` is True while a faster backend is being prepared (only
    ``auto`` does that).
    """

    name: str
    family: str
    precision: str
    upgrading: bool

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


class BackendUnavailable(RuntimeError):
    """This backend cannot run here (missing package, CPU without the instructions)."""


class Cancelled(RuntimeError):
    """A background build stopped because its owner was closed (or the process exits)."""
