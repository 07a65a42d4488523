"""Frozen VGG16 features (relu3_3, the content layer of the AnimeGAN recipe) for
perceptual losses.

The weights are torchvision's ImageNet ones, fetched through torch's own cache: the
first use downloads ``vgg16-397923af.pth`` into ``$TORCH_HOME/hub/checkpoints/``. When
they cannot be had (offline and not cached) training stops with a TrainingError saying
where to put the file; it never goes on with a randomly initialised network, whose
"features" would make the loss meaningless.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from . import TrainingError

VGG16_URL = "https://download.pytorch.org/models/vgg16-397923af.pth"
VGG16_FILE = "vgg16-397923af.pth"
RELU3_3 = 16  # torchvision's vgg16().features[:16] ends with relu3_3
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def vgg16_cache_path() -> Path:
    """Where torch's hub cache keeps the VGG16 weights ($TORCH_HOME/hub/checkpoints/...)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG16_FILE


def _missing_message(cause: BaseException | None) -> str:
    path = vgg16_cache_path()
    why = f" ({type(cause).__name__}: {str(cause).splitlines()[0][:200]})" if cause else ""
    return (
        f"The VGG16 ImageNet weights for the perceptual loss are not available{why}.\n"
        f"Download {VGG16_URL}\n"
        f"and save it as {path}\n"
        f"(that is $TORCH_HOME/hub/checkpoints/{VGG16_FILE}; TORCH_HOME defaults to ~/.cache/torch), "
        "e.g.:\n"
        f"  mkdir -p {path.parent} && curl -L -o {path} {VGG16_URL}\n"
        "Training does not run with a random perceptual network."
    )


def load_vgg16_features(layer: int = RELU3_3) -> nn.Sequential:
    """``vgg16(weights=IMAGENET1K_V1).features[:layer]``, frozen and in eval mode.

    What ``vgg16(weights=...)`` does, without first filling 138 M parameters with random
    numbers only to overwrite them: torchvision's weights enum fetches the file through
    torch's hub cache, and the state_dict is loaded strictly into a network built on the
    meta device (``assign=True`` takes the loaded tensors as they are)."""
    from torchvision.models import VGG16_Weights, vgg16

    try:
        state = VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=True, check_hash=True)
        with torch.device("meta"):
            model = vgg16()
        model.load_state_dict(state, strict=True, assign=True)
    except Exception as exc:  # offline, proxy, partial file, unreadable file, wrong keys
        raise TrainingError(_missing_message(exc)) from None
    features = model.features[:layer]
    del model, state
    return features.float().eval().requires_grad_(False)


class VGGFeatures(nn.Module):
    """Images in [-1, 1] (N x 3 x H x W, RGB) -> VGG16 relu3_3 features (N x 256 x H/4 x W/4).

    The ImageNet normalisation happens inside; the network is frozen (no gradients for
    its weights, though gradients flow through it to the input) and stays in eval mode.
    """

    def __init__(self, layer: int = RELU3_3) -> None:
        super().__init__()
        self.features = load_vgg16_features(layer)
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> VGGFeatures:
        return super().train(False)  # always eval: no dropout/batch statistics to update

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = ((x + 1) * 0.5 - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        return self.features(x)


def weighted_l1(
    a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor | None = None, normalize: bool = True
) -> torch.Tensor:
    """Mean |a - b|, each pixel weighted by ``weight`` (N x 1 x h x w, area-averaged to a's
    size if needed; e.g. 1.5 inside faces, 1 elsewhere). With ``normalize`` the weights are
    scaled to mean 1 per batch, so the loss scale does not depend on how much face a batch
    holds (only the ratio face : elsewhere counts)."""
    diff = (a.float() - b.float()).abs()
    if weight is None:
        return diff.mean()
    if weight.shape[-2:] != diff.shape[-2:]:
        weight = F.adaptive_avg_pool2d(weight, diff.shape[-2:])
    weight = weight.to(diff.dtype)
    loss = (diff * weight).mean()
    return loss / weight.mean() if normalize else loss
