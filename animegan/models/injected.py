"""The generator with its normalisation statistics as an input: the network behind
full-resolution tiles and steadier video.

Every normalisation layer of the generators here is a GroupNorm with one group: it
subtracts the mean and divides by the standard deviation of the *whole* feature map.
:class:`InjectedNet` runs the same layers (sharing the generator's weights) with two
extra inputs per pass:

- ``stats`` (L x 2: mean and variance per normalisation layer, in the order the data
  meets them). In ``tiles`` mode each layer normalises with them (a tile of a bigger
  picture); in ``frames`` mode with ``alpha * stats + (1 - alpha) * its own``
  (``alpha = 0``: the plain generator; between: statistics carried across video frames).
- ``tiles`` mode: ``masks`` (one per resolution level: full, 1/2, 1/4) saying which
  pixels a layer's *own* statistics are measured over (a tile's core, not its margins).

It returns the image and, per layer, the mean and variance it measured (under the
statistics it was given), so a caller can combine tiles' measurements into the whole
picture's, or carry them to the next frame.

The AnimeGANv2 generator upsamples bilinearly with ``align_corners=True``: the sampling
positions depend on the whole picture's size, so its two upsamplings read positions
given as inputs too (``grids``: index and weight arrays from
:func:`animegan.tiles.layout.sampling_grids`). The LiteGenerator upsamples by pixel
shuffle and needs none.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .animeganv2 import Generator
from .lite import LiteGenerator

LEVELS = 3  # full, 1/2, 1/4 resolution


class UnsupportedGenerator(ValueError):
    """The generator has a normalisation or layer the injected network cannot take."""


class StopPass(Exception):
    """Raised once the layer a truncated statistics pass measures has been seen."""


class _Pass:
    """What the normalisation layers of one pass read and write (shared, not a Module)."""

    stop: int | None = None
    measure_all: bool = True  # False: tiles mode measures only the ``stop`` layer
    stats: torch.Tensor
    alpha: torch.Tensor | None = None
    masks: tuple[torch.Tensor, ...] = ()
    measured: list[torch.Tensor]


def _moments(x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance of ``x`` over every channel and the mask's pixels (all without one)."""
    if mask is None:  # per-channel pooling keeps OpenVINO's blocked layout (a plain mean reorders)
        mean = F.adaptive_avg_pool2d(x, 1).mean()
        return mean, F.adaptive_avg_pool2d(x * x, 1).mean() - mean * mean
    count = torch.clamp(mask.sum() * x.shape[1], min=1.0)
    mean = (x * mask).sum() / count
    return mean, (((x - mean) * mask) ** 2).sum() / count


class InjectedNorm(nn.Module):
    """GroupNorm(1) with given statistics (``tiles``) or ``alpha * given + (1 - alpha) *
    own`` (``frames``); it records its own, measured over the level's mask (``tiles``) or
    the whole frame (``frames``)."""

    def __init__(self, norm: nn.GroupNorm, index: int, level: int, state: _Pass) -> None:
        super().__init__()
        self.weight, self.bias, self.eps = norm.weight, norm.bias, norm.eps
        self.index, self.level = index, level
        self._state = [state]  # in a list: not registered as a submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self._state[0]
        given = s.stats[self.index]
        # Own statistics are measured on x normalised by the given ones and converted
        # back (the same numbers): read straight after a quantized convolution, the
        # measurement breaks OpenVINO's int8 transformations (10 dB, measured).
        r = torch.rsqrt(given[1] + self.eps)
        if s.alpha is None and not (s.measure_all or s.stop == self.index):
            s.measured.append(given)  # tiles in PyTorch: only the layer asked for is measured
            return self._with_given(x, given[0], r)
        if s.alpha is not None and s.alpha.ndim == 0 and not torch.jit.is_tracing() and float(s.alpha) == 0.0:
            # eager, a picture with its own statistics (the fast statistics' passes): PyTorch's own
            # norm, which returns the mean and 1 / std it used (the steps below took 1.6x a plain pass)
            n, c = x.shape[:2]
            out, mean, rstd = torch.native_group_norm(x, self.weight, self.bias, n, c, x[0, 0].numel(), 1, self.eps)
            s.measured.append(torch.stack([mean.reshape(()), rstd.reshape(()).pow(-2) - self.eps]))
            if s.stop == self.index:
                raise StopPass
            return out
        zc = (x - given[0]) * r
        mz, vz = _moments(zc, s.masks[self.level] if s.alpha is None else None)
        mean, var = given[0] + mz / r, vz / (r * r)
        s.measured.append(torch.stack([mean, var]))
        if s.stop == self.index:
            raise StopPass
        if s.alpha is None:  # tiles: normalise with the given statistics, then the layer's scale and shift
            # (on zc, not folded into one multiply-add on x: in the graph OpenVINO converts, the folded form's
            # per-channel tensors made 0.59 s a 640 px int8 tile into 0.97 s, reorders around every norm)
            return zc * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)
        # frames: with the blend of the given and its own
        used_mean = s.alpha * given[0] + (1 - s.alpha) * mean
        ru = torch.rsqrt(s.alpha * given[1] + (1 - s.alpha) * var + self.eps)
        # one per-channel scale and shift on zc: as few full-size operations as a plain norm
        a, b = ru / r, (given[0] - used_mean) * ru
        return zc * (a * self.weight).reshape(1, -1, 1, 1) + (b * self.weight + self.bias).reshape(1, -1, 1, 1)

    def _with_given(self, x: torch.Tensor, mean: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """(x - mean) * r, then the layer's scale and shift, folded into one per-channel
        multiply-add over x: one full-size step where the unfolded form takes four (PyTorch
        eager only; see the tiles branch of :meth:`forward` for OpenVINO)."""
        scale = r * self.weight
        return torch.addcmul((self.bias - mean * scale).reshape(1, -1, 1, 1), x, scale.reshape(1, -1, 1, 1))


def _clone_tree(module: nn.Module) -> nn.Module:
    """A copy of the module tree sharing every parameter (the generator stays as it was)."""
    clone = copy.copy(module)
    clone._modules = {name: _clone_tree(child) for name, child in module._modules.items()}
    return clone


def _levels(generator: nn.Module, norms: list[str]) -> list[int]:
    """The resolution level of each normalisation layer, found by a probe pass."""
    side, seen, hooks = 64, {}, []
    for name in norms:
        module = generator.get_submodule(name)

        def record(module, args, out, name=name) -> None:
            seen[name] = args[0].shape[-1]

        hooks.append(module.register_forward_hook(record))
    try:
        with torch.no_grad():
            generator(torch.zeros(1, 3, side, side))
    finally:
        for h in hooks:
            h.remove()
    levels = [{side: 0, side // 2: 1, side // 4: 2}.get(seen[name]) for name in norms]
    if None in levels:
        raise UnsupportedGenerator("a normalisation layer runs below 1/4 resolution")
    return levels


class InjectedNet(nn.Module):
    """An AnimeGANv2 generator or a LiteGenerator with given statistics.

    ``mode="tiles"``: ``forward(x, stats, mask_full, mask_half, mask_quarter, *grids)``;
    ``mode="frames"``: ``forward(x, stats, alpha, *grids)``. Both return ``(image, L x 2
    measured statistics)``. ``grids`` are needed by AnimeGANv2 only.
    """

    def __init__(self, generator: nn.Module, mode: str = "tiles") -> None:
        super().__init__()
        if not isinstance(generator, (Generator, LiteGenerator)):
            raise UnsupportedGenerator(f"{type(generator).__name__} is not a generator whose statistics "
                                       "can be given (AnimeGANv2 or LiteGenerator)")
        if mode not in ("tiles", "frames"):
            raise ValueError(f"mode is tiles or frames, not {mode!r}")
        generator = generator.eval()
        self.mode = mode
        self.kind = generator.architecture
        self.multiple = getattr(generator, "multiple", 4)  # tiles start on multiples of this
        norms = [name for name, m in generator.named_modules() if isinstance(m, nn.GroupNorm)]
        if any(generator.get_submodule(n).num_groups != 1 for n in norms):
            raise UnsupportedGenerator("only GroupNorm with one group can take given statistics")
        levels = _levels(generator, norms)
        self.state = _Pass()
        self.net = _clone_tree(generator)
        for index, (name, level) in enumerate(zip(norms, levels, strict=True)):
            parent_name, _, child = name.rpartition(".")
            parent = self.net.get_submodule(parent_name) if parent_name else self.net
            setattr(parent, child, InjectedNorm(getattr(parent, child), index, level, self.state))
        self.layers = len(norms)
        self.levels = levels
        self.stop: int | None = None  # PyTorch only: end the pass at this layer (raises StopPass)
        self.measure_all = True  # PyTorch only: False skips the measurements nobody reads

    def forward(self, x: torch.Tensor, stats: torch.Tensor, *rest: torch.Tensor):
        s = self.state
        if self.mode == "tiles":
            s.alpha, s.masks, grids = None, tuple(rest[:3]), rest[3:]
        else:
            s.alpha, s.masks, grids = rest[0], (), rest[1:]
        s.stats, s.measured, s.stop, s.measure_all = stats, [], self.stop, self.measure_all
        y = self._animeganv2(x, grids) if self.kind == "animeganv2" else self.net(x)
        return y, torch.stack(s.measured)

    def _animeganv2(self, x: torch.Tensor, grids) -> torch.Tensor:
        g = self.net
        out = g.block_a(x)
        out = g.block_b(out)
        out = g.block_c(out)
        out = _upsample(out, grids[:6])
        out = g.block_d(out)
        out = _upsample(out, grids[6:])
        out = g.block_e(out)
        return g.out_layer(out)


def _upsample(x: torch.Tensor, grid) -> torch.Tensor:
    """Bilinear upsampling at given positions: rows (i0, i1, w), then columns.

    Traced (the graph OpenVINO converts, int8 ranges mapped onto it), as gathers and
    lerps. Eager, as one ``grid_sample`` at the same positions (i0 + w; i1 is i0 + 1, or
    i0 at the last row, where the border padding gives the same): 5x faster on a CPU (36
    vs 191 ms for a 640 px tile's first upsampling, 2 threads), the same values within
    6e-5 (float32 rounding of the positions; 8-bit output steps are 8e-3)."""
    ri0, ri1, rw, ci0, ci1, cw = grid
    if torch.jit.is_tracing():
        x = torch.lerp(x.index_select(2, ri0), x.index_select(2, ri1), rw.reshape(1, 1, -1, 1))
        return torch.lerp(x.index_select(3, ci0), x.index_select(3, ci1), cw.reshape(1, 1, 1, -1))
    h, w = x.shape[-2:]
    ys = (ri0.to(rw.dtype) + rw) * (2.0 / max(h - 1, 1)) - 1
    xs = (ci0.to(cw.dtype) + cw) * (2.0 / max(w - 1, 1)) - 1
    where = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)[None].expand(x.shape[0], -1, -1, -1)
    return F.grid_sample(x, where.to(x.dtype), mode="bilinear", padding_mode="border", align_corners=True)
