"""LiteGenerator: the small, fast generator this project trains and distils into.

Same contract as the published AnimeGANv2 generator: N x 3 x H x W RGB in [-1, 1] in,
the same shape in [-1, 1] out, any H, W >= 1. Layers in the order the data meets them:

    encoder   7x7 conv -> 32, 3x3 stride 2 -> 64, 3x3 stride 2 -> 128   (conv + norm + LeakyReLU)
    middle    residual attention at 1/4 resolution: 1x1 128 -> 16, self-attention in
              local windows on those 16 channels, 1x1 16 -> 128, added with gamma (starts at 0)
              optional residual conv blocks (``res_blocks`` x two 3x3 convs at ``width * 4``)
    decoder   conv -> PixelShuffle(2), twice (128 -> 64 -> 32), then a 7x7 conv to RGB and tanh

Normalisation is GroupNorm(1): an instance-norm over C, H and W together, as the
published network does (OpenVINO turns it into one MVN; ONNX exports it directly).
Inputs are padded (edge replication) to a multiple of 4 x the attention window and the
output is cropped back, so odd sizes come back at their own size.

Multiply-adds at 512 x 512 (counted by :mod:`animegan.models.complexity`): 14.6 G
without residual blocks, +4.8 G per residual block, against 105 G for the published one
(``stem="unshuffle"``: 9.6 G without residual blocks, +4.8 G per block, +2.4 G per
half-size conv; what distill trains, 16.8 G).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .registry import HubMixin, register


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=1, num_channels=ch, affine=True)


class ConvNormAct(nn.Sequential):
    """conv (zero padding, k // 2) -> GroupNorm(1) -> LeakyReLU(0.2)."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, padding=kernel_size // 2, bias=False),
            _norm(out_ch),
            nn.LeakyReLU(0.2, inplace=True),
        )


class WindowAttention(nn.Module):
    """Single-head self-attention inside non-overlapping ``window`` x ``window`` tiles.

    Plain reshapes, matmuls and a softmax: ONNX and OpenVINO take them as they are. The
    caller guarantees H and W are multiples of ``window``.
    """

    def __init__(self, dim: int, window: int) -> None:
        super().__init__()
        self.window = window
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=True)
        self.scale = dim**-0.5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        s = self.window
        qkv = self.qkv(x)  # n, 3c, h, w
        # n, 3c, h/s, s, w/s, s -> (n * h/s * w/s), s*s, 3c
        qkv = qkv.reshape(n, 3 * c, h // s, s, w // s, s).permute(0, 2, 4, 3, 5, 1).reshape(-1, s * s, 3 * c)
        q, k, v = qkv.split(c, dim=-1)
        attn = torch.softmax((q * self.scale) @ k.transpose(1, 2), dim=-1)
        out = attn @ v  # windows, s*s, c
        out = out.reshape(n, h // s, w // s, s, s, c).permute(0, 5, 1, 3, 2, 4)
        return out.reshape(n, c, h, w)


class ResidualAttention(nn.Module):
    """x + gamma * expand(attention(project(x))); gamma starts at 0, so the block starts as
    the identity and the network learns how much of it to use."""

    def __init__(self, ch: int, dim: int, window: int) -> None:
        super().__init__()
        self.project = nn.Conv2d(ch, dim, 1, bias=False)
        self.attention = WindowAttention(dim, window)
        self.expand = nn.Conv2d(dim, ch, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.gamma * self.expand(self.attention(self.project(x)))


class ResBlock(nn.Module):
    """x + norm(conv(act(norm(conv(x))))): two 3x3 convs at the bottleneck width."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            ConvNormAct(ch, ch),
            nn.Conv2d(ch, ch, 3, padding=1, bias=False),
            _norm(ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class UpShuffle(nn.Sequential):
    """Sub-pixel upsampling: 3x3 conv to 4 x out channels -> PixelShuffle(2) -> norm -> act.

    ICNR initialisation: the four sub-pixel filters of each output channel start equal, so
    the layer starts as a conv followed by nearest-neighbour upsampling, without the
    checkerboard pattern a random init gives (it would take training time to unlearn)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        conv = nn.Conv2d(in_ch, out_ch * 4, 3, padding=1, bias=False)
        with torch.no_grad():
            sub = torch.empty(out_ch, in_ch, 3, 3)
            nn.init.kaiming_uniform_(sub, a=5**0.5)  # Conv2d's own default, per sub-pixel filter
            conv.weight.copy_(sub.repeat_interleave(4, dim=0))
        super().__init__(conv, nn.PixelShuffle(2), _norm(out_ch), nn.LeakyReLU(0.2, inplace=True))


@register("lite")
class LiteGenerator(nn.Module, HubMixin):
    """The small generator: N x 3 x H x W in [-1, 1] (RGB) -> same shape in [-1, 1].

    ``width`` is the first layer's channel count (the encoder doubles it twice: 32, 64,
    128 by default); ``res_blocks`` residual conv blocks at ``4 * width`` channels follow the
    attention block (the depth setting); ``attn_dim`` and ``window`` shape the attention.
    ``stem`` chooses where the work at the picture's own resolution goes:

    - ``"conv"`` (the seed's layout, and what a config.json without ``stem`` means): a 7x7
      conv at full size in, two sub-pixel steps and a 7x7 conv to RGB at full size out.
    - ``"unshuffle"`` (what distill trains): no layer runs at full size. The photo is
      folded into 12 channels at half size (PixelUnshuffle, no information lost), encoded
      at 1/2 and 1/4, and the last layer, a 3x3 conv at half size that also sees the folded
      photo itself, writes 12 channels that PixelShuffle unfolds into the RGB picture;
      ``half_convs`` conv layers at half size come before it. On
      OpenVINO the full-size layers of ``"conv"`` (3-channel 7x7 convs, full-size norms and
      shuffles) were ~45 % of the time for ~10 % of the multiply-adds (profiled per layer,
      benchmarks/results/distill.md); here every layer is wide and at most half size.
      distill trains ``res_blocks=1, half_convs=2``: for the same training time one
      residual block at 1/4 size moved to a second conv at half size gave +0.5 dB on the
      held-out photos and is faster (docs/train.md).

    Every argument is recorded in config.json by ``save_pretrained``.
    """

    def __init__(self, width: int = 32, res_blocks: int = 2, attn_dim: int = 16, window: int = 8,
                 stem: str = "conv", half_convs: int = 1) -> None:
        super().__init__()
        if stem not in ("conv", "unshuffle"):
            raise ValueError(f"stem is conv or unshuffle, not {stem!r}")
        c1, c2, c3 = width, width * 2, width * 4
        self.stem = stem
        self.multiple = 4 * window  # two stride-2 steps, then whole attention windows
        if stem == "conv":
            self.encoder = nn.Sequential(
                ConvNormAct(3, c1, kernel_size=7),
                ConvNormAct(c1, c2, stride=2),
                ConvNormAct(c2, c3, stride=2),
            )
        else:  # half size from the start: 12 folded channels -> c2 -> (stride 2) c3
            self.encoder = nn.Sequential(
                nn.PixelUnshuffle(2),
                ConvNormAct(12, c2, kernel_size=3),
                ConvNormAct(c2, c3, stride=2),
            )
        self.attention = ResidualAttention(c3, attn_dim, window)
        self.blocks = nn.Sequential(*(ResBlock(c3) for _ in range(res_blocks)))
        if stem == "conv":
            self.decoder = nn.Sequential(UpShuffle(c3, c2), UpShuffle(c2, c1))
            self.out_layer = nn.Sequential(nn.Conv2d(c1, 3, 7, padding=3, bias=True), nn.Tanh())
        else:  # 1/4 -> 1/2, one conv at 1/2 (with the encoder's half-size features added), then out
            self.decoder = nn.Sequential(UpShuffle(c3, c2), *(ConvNormAct(c2, c2) for _ in range(half_convs)))
            self.out_layer = nn.Sequential(nn.Conv2d(c2 + 12, 12, 3, padding=1, bias=True), nn.PixelShuffle(2),
                                           nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = self.multiple
        pad_h, pad_w = (m - h % m) % m, (m - w % m) % m
        # Edge replication, split around the image, so any size works (reflection needs
        # the pad to be smaller than the image); the padding is cropped off at the end.
        top, left = pad_h // 2, pad_w // 2
        out = F.pad(x, (left, pad_w - left, top, pad_h - top), mode="replicate")
        if self.stem == "conv":
            out = self.encoder(out)
            out = self.attention(out)
            out = self.blocks(out)
            out = self.decoder(out)
            out = self.out_layer(out)
        else:
            folded = self.encoder[0](out)  # N x 12 x H/2 x W/2
            half = self.encoder[1](folded)
            out = self.encoder[2](half)
            out = self.attention(out)
            out = self.blocks(out)
            out = self.decoder[1:](self.decoder[0](out) + half)  # the half-size detail comes back
            out = self.out_layer(torch.cat([out, folded], dim=1))
        return out[..., top : top + h, left : left + w]
