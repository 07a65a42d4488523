"""The AnimeGANv2 patch discriminator, with spectral normalisation on every convolution.

Layers in the order the data meets them, as in the TensorFlow original (``ch=64,
n_dis=3``): a 3x3 conv at full resolution, then two stride-2 steps that each double
the width, a 3x3 conv and a 3x3 conv to one logit per patch. Its output is a map at
1/4 of the input size: each logit judges one ~30 px patch, which is what lets the
generator learn local texture (lines, flat shading) rather than whole-image layout.

Spectral normalisation (``torch.nn.utils.parametrizations.spectral_norm``) bounds each
layer's Lipschitz constant, which keeps LSGAN training stable; the original normalised
the same layers. The TF ``layer_norm`` becomes ``GroupNorm(1, C)`` (normalise over C, H
and W per sample), as in this project's generator.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def _conv(in_ch: int, out_ch: int, stride: int = 1) -> nn.Module:
    # Zero padding, as the original's "SAME" convolutions.
    return spectral_norm(nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=1))


class Discriminator(nn.Module):
    """N x 3 x H x W in [-1, 1] -> N x 1 x H/4 x W/4 logits (real anime high, everything else low)."""

    def __init__(self, width: int = 64, n_dis: int = 3) -> None:
        super().__init__()
        ch = width // 2
        layers: list[nn.Module] = [_conv(3, ch), nn.LeakyReLU(0.2, inplace=True)]
        in_ch = ch
        for _ in range(1, n_dis):
            layers += [
                _conv(in_ch, ch * 2, stride=2),
                nn.LeakyReLU(0.2, inplace=True),
                _conv(ch * 2, ch * 4),
                nn.GroupNorm(1, ch * 4),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            in_ch, ch = ch * 4, ch * 2
        layers += [
            _conv(in_ch, ch * 2),
            nn.GroupNorm(1, ch * 2),
            nn.LeakyReLU(0.2, inplace=True),
            _conv(ch * 2, 1),
        ]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)
