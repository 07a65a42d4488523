"""The AnimeGANv2 losses in PyTorch, and the presets that weigh them.

Every image tensor here is N x 3 x H x W RGB in [-1, 1] (the generators' convention);
feature maps are whatever the perceptual network returns (VGG16 relu3_3 here).

- adversarial (LSGAN): D pushes real anime frames to 1 and generated frames, grayscale
  anime frames and edge-smoothed anime frames to 0; G pushes its frames to 1. The gray
  and smoothed "fakes" teach D that anime means colour and crisp lines.
- content: L1 between the features of the photo and of its stylized version, weighted per
  pixel (faces count more): :func:`animegan.train.perceptual.weighted_l1`, shared with distillation.
- style: L1 between Gram matrices of the output's features and those of *grayscale*
  anime frames: texture and line statistics without the film's colours.
- colour: AnimeGANv2's YUV loss (output vs photo: L1 on Y, Huber on U and V) keeps the
  photo's colours; the histogram loss pulls the output's colour distribution towards the
  anime frames' (per channel, 1-D Wasserstein distance between soft histograms).
- total variation: mean squared difference of neighbouring pixels, against speckle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------- adversarial (LSGAN)


def lsgan_d_loss(
    real: torch.Tensor,
    fake: torch.Tensor,
    gray: torch.Tensor,
    smooth: torch.Tensor,
    weights: tuple[float, float, float, float] = (1.2, 1.2, 1.2, 0.8),
) -> torch.Tensor:
    """Discriminator loss on the logits of real anime, generated, gray anime and smoothed anime frames.

    ``weights`` are (real, fake, gray, smooth), as AnimeGANv2's code weighs them (Hayao's by default).
    """
    w_real, w_fake, w_gray, w_smooth = weights
    return (
        w_real * torch.mean((real.float() - 1.0) ** 2)
        + w_fake * torch.mean(fake.float() ** 2)
        + w_gray * torch.mean(gray.float() ** 2)
        + w_smooth * torch.mean(smooth.float() ** 2)
    )


def lsgan_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """Generator loss on the discriminator's logits for generated frames: look real (1)."""
    return torch.mean((fake.float() - 1.0) ** 2)


# ---------------------------------------------------------------- perceptual


def gram(features: torch.Tensor) -> torch.Tensor:
    """N x C x C Gram matrices, divided by C * H * W as AnimeGANv2 does."""
    n, c, h, w = features.shape
    f = features.float().reshape(n, c, h * w)
    return f @ f.transpose(1, 2) / (c * h * w)


def style_loss(fake_feat: torch.Tensor, anime_gray_feat: torch.Tensor) -> torch.Tensor:
    """L1 between the Gram matrices of the output's features and the grayscale anime frames'.

    Frames are paired one to one when the batches match; otherwise every output is compared
    with the anime batch's mean Gram matrix.
    """
    g_fake = gram(fake_feat)
    g_anime = gram(anime_gray_feat)
    if g_anime.shape[0] != g_fake.shape[0]:
        g_anime = g_anime.mean(0, keepdim=True).expand_as(g_fake)
    return F.l1_loss(g_fake, g_anime)


# ---------------------------------------------------------------- colour

# BT.601 RGB -> YUV, the matrix tf.image.rgb_to_yuv uses.
_YUV = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [-0.14714119, -0.28886916, 0.43601035],
        [0.61497538, -0.51496512, -0.10001026],
    ]
)


def rgb_to_yuv(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] RGB -> YUV of the [0, 1] image (Y in [0, 1], U and V around 0)."""
    rgb = (x.float() + 1.0) / 2.0
    return torch.einsum("ij,njhw->nihw", _YUV.to(rgb.device), rgb)


def yuv_colour_loss(photo: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """AnimeGANv2's colour loss: L1 on luma, Huber on the two chroma channels (output vs photo)."""
    p, f = rgb_to_yuv(photo), rgb_to_yuv(fake)
    return F.l1_loss(f[:, 0], p[:, 0]) + F.huber_loss(f[:, 1], p[:, 1]) + F.huber_loss(f[:, 2], p[:, 2])


def soft_histogram(x: torch.Tensor, bins: int = 32, max_side: int = 64) -> torch.Tensor:
    """N x 3 x bins differentiable colour histograms of [-1, 1] images (each sums to 1).

    Each pixel spreads over the bins with a triangular kernel one bin wide (linear
    interpolation between the two nearest bin centres), so gradients reach every pixel.
    Images are first area-averaged to at most ``max_side`` px: colour statistics need no
    more, and the memory stays N x 3 x 4096 x bins.
    """
    x = x.float()
    if max(x.shape[-2:]) > max_side:
        scale = max_side / max(x.shape[-2:])
        x = F.interpolate(x, scale_factor=scale, mode="area")
    n, c = x.shape[:2]
    pos = ((x.reshape(n, c, -1).clamp(-1, 1) + 1.0) / 2.0) * (bins - 1)  # 0 .. bins-1
    centres = torch.arange(bins, device=x.device, dtype=x.dtype)
    weights = (1.0 - (pos.unsqueeze(-1) - centres).abs()).clamp(min=0.0)  # n, c, pixels, bins
    hist = weights.sum(2)
    return hist / hist.sum(-1, keepdim=True)


def colour_histogram_loss(fake: torch.Tensor, anime: torch.Tensor, bins: int = 32) -> torch.Tensor:
    """Distance between the output's per-channel colour histograms and the anime batch's.

    The 1-D Wasserstein distance (L1 between cumulative histograms, in bins / bins), so a
    colour that is off by a little costs a little rather than as much as one far away.
    """
    h_fake = soft_histogram(fake, bins).mean(0)
    h_anime = soft_histogram(anime, bins).mean(0)
    return (h_fake.cumsum(-1) - h_anime.cumsum(-1)).abs().sum(-1).mean() / bins


# ---------------------------------------------------------------- smoothness


def tv_loss(x: torch.Tensor) -> torch.Tensor:
    """Total variation as AnimeGANv2: half the mean squared neighbour difference, rows plus columns."""
    x = x.float()
    dh = x[..., 1:, :] - x[..., :-1, :]
    dw = x[..., :, 1:] - x[..., :, :-1]
    return 0.5 * (dh.pow(2).mean() + dw.pow(2).mean())


# ---------------------------------------------------------------- presets


@dataclass(frozen=True)
class Preset:
    """How the losses are weighed and how fast each network learns.

    ``face_content`` replaces ``content`` inside face regions (so 15 vs 10 means faces count
    1.5x). Learning rates: ``lr_init`` for stage 1; ``lr_g`` / ``lr_d`` from stage 2 on,
    halved every ``halve_every`` epochs (0: constant).
    """

    name: str
    adversarial: float
    content: float
    face_content: float
    style: float
    colour_yuv: float
    colour_hist: float
    tv: float
    d_terms: tuple[float, float, float, float]  # real, fake, gray, smooth
    lr_init: float
    lr_g: float
    lr_d: float
    halve_every: int

    def as_dict(self) -> dict:
        return asdict(self)


# seed: this project's recipe (its design notes). The published ones: AnimeGANv2's
# released hyper-parameters per film, with its constant learning rates after the init phase
# (2e-5 for G, 4e-5 for D) and its per-film discriminator term weights.
PRESETS: dict[str, Preset] = {
    "seed": Preset(
        "seed", adversarial=1.0, content=10.0, face_content=15.0, style=1.0, colour_yuv=0.0,
        colour_hist=0.5, tv=0.0, d_terms=(1.2, 1.2, 1.2, 0.8),
        lr_init=2e-4, lr_g=2e-4, lr_d=2e-4, halve_every=10,
    ),
    "hayao": Preset(
        "hayao", adversarial=300.0, content=1.5, face_content=1.5, style=2.5, colour_yuv=15.0,
        colour_hist=0.0, tv=1.0, d_terms=(1.2, 1.2, 1.2, 0.8),
        lr_init=2e-4, lr_g=2e-5, lr_d=4e-5, halve_every=0,
    ),
    "shinkai": Preset(
        "shinkai", adversarial=300.0, content=1.2, face_content=1.2, style=2.0, colour_yuv=10.0,
        colour_hist=0.0, tv=1.0, d_terms=(1.7, 1.7, 1.7, 1.0),
        lr_init=2e-4, lr_g=2e-5, lr_d=4e-5, halve_every=0,
    ),
    "paprika": Preset(
        "paprika", adversarial=300.0, content=2.0, face_content=2.0, style=0.6, colour_yuv=50.0,
        colour_hist=0.0, tv=0.1, d_terms=(1.0, 1.0, 1.0, 0.005),
        lr_init=2e-4, lr_g=2e-5, lr_d=4e-5, halve_every=0,
    ),
}
