"""The AnimeGANv2 generator, exactly as the published PyTorch checkpoints expect it.

Layers are listed in the order the data meets them. Module names and indices are
part of the contract: they are the keys of the published state_dicts
(``block_a.0.1.weight`` ...), so ``load_state_dict(..., strict=True)`` works on the
files as published.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import HubMixin, register


class ConvNormLReLU(nn.Sequential):
    """Reflection pad -> conv -> GroupNorm(1) -> LeakyReLU(0.2), indexed .0 .. .3."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | tuple[int, int, int, int] = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__(
            nn.ReflectionPad2d(padding),
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding=0, groups=groups, bias=bias),
            # One group: normalise over C, H and W together (what the TF original did).
            nn.GroupNorm(num_groups=1, num_channels=out_ch, affine=True),
            nn.LeakyReLU(0.2, inplace=True),
        )


class InvertedResBlock(nn.Module):
    """MobileNetV2-style block: expand x2 (1x1), depthwise 3x3, project (1x1)."""

    def __init__(self, in_ch: int, out_ch: int, expansion: int = 2) -> None:
        super().__init__()
        hidden = in_ch * expansion
        self.use_residual = in_ch == out_ch
        self.layers = nn.Sequential(
            ConvNormLReLU(in_ch, hidden, kernel_size=1, padding=0),
            ConvNormLReLU(hidden, hidden, groups=hidden, bias=True),
            nn.Conv2d(hidden, out_ch, kernel_size=1, bias=False),
            nn.GroupNorm(num_groups=1, num_channels=out_ch, affine=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(x)
        return x + out if self.use_residual else out


# Stride-2 convs pad right and bottom only, as TensorFlow's "SAME" did.
_DOWN = (0, 1, 0, 1)


@register("animeganv2")
class Generator(nn.Module, HubMixin):
    """AnimeGANv2 generator: N x 3 x H x W in [-1, 1] (RGB) -> same shape in [-1, 1].

    The Hub mixin adds ``save_pretrained`` / ``from_pretrained`` (config.json +
    model.safetensors) and no modules: the state_dict keys stay the published ones.
    """


    def __init__(self) -> None:
        super().__init__()
        self.block_a = nn.Sequential(
            ConvNormLReLU(3, 32, kernel_size=7, padding=3),
            ConvNormLReLU(32, 64, stride=2, padding=_DOWN),
            ConvNormLReLU(64, 64),
        )
        self.block_b = nn.Sequential(
            ConvNormLReLU(64, 128, stride=2, padding=_DOWN),
            ConvNormLReLU(128, 128),
        )
        self.block_c = nn.Sequential(
            ConvNormLReLU(128, 128),
            InvertedResBlock(128, 256),
            InvertedResBlock(256, 256),
            InvertedResBlock(256, 256),
            InvertedResBlock(256, 256),
            ConvNormLReLU(256, 128),
        )
        self.block_d = nn.Sequential(
            ConvNormLReLU(128, 128),
            ConvNormLReLU(128, 128),
        )
        self.block_e = nn.Sequential(
            ConvNormLReLU(128, 64),
            ConvNormLReLU(64, 64),
            ConvNormLReLU(64, 32, kernel_size=7, padding=3),
        )
        self.out_layer = nn.Sequential(
            nn.Conv2d(32, 3, kernel_size=1, bias=False),
            nn.Tanh(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block_a(x)
        half_size = out.shape[-2:]  # exact sizes, so odd inputs come back at their size
        out = self.block_b(out)
        out = self.block_c(out)
        out = F.interpolate(out, size=half_size, mode="bilinear", align_corners=True)
        out = self.block_d(out)
        out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=True)
        out = self.block_e(out)
        return self.out_layer(out)
