"""PyTorch eager backends: float32 (channels_last or the demo's NCHW) and bf16 autocast.

Each takes any generator ``nn.Module`` with the package's I/O convention
(N x 3 x H x W float32 in [-1, 1] -> the same shape).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .base import BackendUnavailable


class TorchBackend:
    """PyTorch eager float32; channels_last memory layout (faster convs, same maths, but
    the summation order differs, so a few pixels may differ by one 8-bit level)."""

    name = "torch-fp32"
    family = "torch"
    precision = "f32"
    upgrading = False
    memory_format = torch.channels_last

    def __init__(self, model: nn.Module) -> None:
        self.model = model.to(memory_format=self.memory_format)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            t = torch.from_numpy(x).contiguous(memory_format=self.memory_format)
            return self.model(t).contiguous().numpy()


class ExactBackend(TorchBackend):
    """PyTorch eager float32 NCHW: the published demo's computation, pixel for pixel
    (channels_last sums in another order, so a few pixels may differ by one level)."""

    name = "torch-exact"
    memory_format = torch.contiguous_format


class TorchBF16Backend(TorchBackend):
    """PyTorch eager with bf16 autocast, channels_last (only where the CPU has native bf16)."""

    name = "torch-bf16"
    precision = "bf16"

    def __init__(self, model: nn.Module, *, native_bf16: bool) -> None:
        if not native_bf16:
            raise BackendUnavailable("torch-bf16 needs a CPU with native bf16 (AVX512-BF16 or AMX).")
        super().__init__(model)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            return self.model(t).float().contiguous().numpy()
