"""Parameters and multiply-adds of a generator, counted in code.

One forward pass at the given size with a hook on every convolution, linear layer and
attention block; each hook counts the multiply-adds from the shapes it sees:

- Conv2d: output elements x (input channels / groups) x kernel height x kernel width;
- Linear: output elements x input features;
- WindowAttention: its 1x1 qkv conv (counted as a conv) plus the two matmuls
  (q @ k^T and attn @ v): 2 x windows x tokens^2 x channels.

Normalisation, activations, padding and resizing are not counted (they are not
multiply-adds, though they do cost memory traffic). The pass runs on PyTorch's "meta"
device, so no arithmetic is done and no weights are needed: the architecture alone is
enough (a published style's weights may be unavailable offline).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Complexity:
    params: int
    macs: int  # multiply-adds for one image
    size: tuple[int, int]  # (height, width)

    def summary(self) -> str:
        h, w = self.size
        return f"{self.params / 1e6:.2f} M params, {self.macs / 1e9:.1f} G multiply-adds at {w} x {h}"


def count(model: nn.Module, size: int | tuple[int, int] = 512) -> Complexity:
    """Params and multiply-adds of one ``model`` pass on a 1 x 3 x H x W image."""
    from .lite import WindowAttention

    h, w = (size, size) if isinstance(size, int) else size
    params = sum(p.numel() for p in model.parameters())
    probe = copy.deepcopy(model).to("meta")
    total = 0

    def conv_hook(module: nn.Conv2d, inputs, output) -> None:
        nonlocal total
        kh, kw = module.kernel_size
        total += output.numel() * (module.in_channels // module.groups) * kh * kw

    def linear_hook(module: nn.Linear, inputs, output) -> None:
        nonlocal total
        total += output.numel() * module.in_features

    def attention_hook(module: WindowAttention, inputs, output) -> None:
        nonlocal total
        n, c, hh, ww = inputs[0].shape
        tokens = module.window**2
        windows = n * (hh // module.window) * (ww // module.window)
        total += 2 * windows * tokens * tokens * c

    hooks = []
    for module in probe.modules():
        if isinstance(module, nn.Conv2d):
            hooks.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            hooks.append(module.register_forward_hook(linear_hook))
        elif isinstance(module, WindowAttention):
            hooks.append(module.register_forward_hook(attention_hook))
    with torch.no_grad():
        probe(torch.empty(1, 3, h, w, device="meta"))
    for hook in hooks:
        hook.remove()
    return Complexity(params=params, macs=total, size=(h, w))
