"""Distillation: a small LiteGenerator learns to copy a big generator (the teacher) on
your photos. ``python -m animegan distill --help`` shows how.

Losses: L1 to the teacher's output + a perceptual term (L1 between VGG16 relu3_3 features,
the content layer of the AnimeGAN recipe) + an optional adversarial term (a small
spectral-norm patch discriminator that sees teacher outputs as real). Face regions count
``--face-weight`` times (1.5) in every term, and at least ``--face-fraction`` (30 %) of
each batch are crops around faces when the photos hold any.

The teacher is the expensive part (a teacher pass costs more than a student step), so
its outputs are computed once per crop: a pool of ``--pool`` random crops with their
teacher outputs is built at the start, and ``--refresh`` crops of it are replaced by
fresh ones every step, so the student keeps seeing new crops at a fraction of the cost.
On a CPU the teacher labels crops through OpenVINO in float32 (the same outputs as
PyTorch's, within 1e-5, at about twice the speed on 2 cores).

A few photos are made to look like many (:class:`animegan.train.data.Augment`: scale,
rotation, colour and lighting, blur, noise, JPEG, grayscale, patches of other photos,
whole photos scaled down); the teacher labels every varied crop, so each is a correct
example. The saved model is an exponential moving average of the weights (``--ema``).

Defaults fit the device (:func:`fit_to_device`): crop size, batch, pool, refresh and the
perceptual term are chosen from a few measured steps of this student and teacher on this
machine and the budget, and printed; an option given on the command line is kept as given.
"""

from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..backends.fidelity import psnr
from ..models import LiteGenerator
from ..models.complexity import count
from ..models.discriminator import Discriminator
from ..models.registry import describe
from ..weights import load_generator
from . import TrainingError
from .data import Augment, Batch, CropSampler, load_photos
from .loop import (
    Budget,
    Clock,
    Device,
    Every,
    Progress,
    RunFolder,
    Steps,
    fixed_photos,
    pick_device,
    sample_sheet,
    to_image,
)
from .perceptual import VGGFeatures, vgg16_cache_path, weighted_l1

EXAMPLES = """\
examples:
  python -m animegan distill --teacher paprika --photos my_photos/ --out lite_paprika --minutes 30
      a LiteGenerator that imitates the paprika style on your photos, trained for 30 minutes
      (crop size, batch, pool and losses fitted to this machine; the choice is printed)
  python -m animegan distill --teacher face_paint_512_v2 --teacher-weights face_paint_512_v2.pt \\
      --photos portraits/ --out lite_face --steps 2000 --batch 16 --size 192
      the teacher's weights from a local file (offline), a fixed number of steps
  python -m animegan distill ... --out lite_face --steps 4000
      run again with the same --out to resume from the last checkpoint (budgets are totals)
  python -m animegan lite_face_photo.jpg --weights lite_face
      use the result: --weights takes the run folder (config.json + model.safetensors)
  cp -r lite_face $ANIMEGAN_WEIGHTS_DIR/face_paint_512_v2-lite
      serve it as the style's fast variant (the app's live tab, --lite on the command line)

The run folder holds config.json + model.safetensors (animegan.load_generator(OUT)),
checkpoints/last.pt (resume), metrics.jsonl (one line per --log-every steps) and
samples/step_*.png (photo | teacher | student on fixed photos, every --sample-every steps).
The perceptual loss needs torchvision's VGG16 ImageNet weights (downloaded once into
$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth); by default it is used only where they are
there and the device can afford it; --perceptual 0 trains without them.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Distil a style into a small, fast LiteGenerator: the student learns the teacher's\n"
                     "output on your photos, varied as a camera and a light would vary them (L1, plus a\n"
                     "VGG16 perceptual term where it fits the device; face-priority crops).")
    p.epilog = EXAMPLES
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--teacher", default=None, metavar="STYLE",
                   help="the style to imitate (see animegan --list-styles); its weights are fetched like the "
                        "stylizer's (Hub cache, ANIMEGAN_WEIGHTS_DIR)")
    p.add_argument("--teacher-weights", metavar="SRC",
                   help="the teacher's weights instead: a .pt/.safetensors file, a model folder or a Hub repo id")
    p.add_argument("--photos", required=True, metavar="DIR", help="training photos (any image files, recursively)")
    p.add_argument("--out", required=True, metavar="DIR", help="run folder: model, checkpoints, metrics, samples")
    budget = p.add_mutually_exclusive_group(required=True)
    budget.add_argument("--minutes", type=float, metavar="M",
                        help="train for M minutes in total, the teacher's work included (across resumes)")
    budget.add_argument("--steps", type=int, metavar="N", help="train for N steps in total (across resumes)")
    p.add_argument("--size", type=int, default=None, metavar="PX", help="crop size (default: fitted to the device)")
    p.add_argument("--batch", type=int, default=None, help="crops per step (default: fitted to the device)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: CUDA + AMP on a GPU, else the CPU (bf16 autocast where it is native)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32"],
                   help="fp32: no autocast (default: %(default)s)")
    m = p.add_argument_group("student")
    m.add_argument("--width", type=int, default=32, help="channels at half size are 2 x this (default: %(default)s)")
    m.add_argument("--res-blocks", type=int, default=1, help="residual blocks at 1/4 size (default: %(default)s)")
    m.add_argument("--half-convs", type=int, default=2,
                   help="conv layers at half size before the output, with --stem unshuffle (default: %(default)s)")
    m.add_argument("--window", type=int, default=8, help="attention window at 1/4 size (default: %(default)s)")
    m.add_argument("--stem", default="unshuffle", choices=["unshuffle", "conv"],
                   help="unshuffle: no layer at full size, fast on OpenVINO; conv: the seed's layout "
                        "(default: %(default)s)")
    loss = p.add_argument_group("losses and optimisation")
    loss.add_argument("--l1", type=float, default=1.0, help="L1 weight (default: %(default)s)")
    loss.add_argument("--perceptual", type=float, default=None,
                      help="VGG16 relu3_3 feature L1 weight; 0 = off (default: 0.1 where the VGG16 weights are "
                           "there and the device affords it, else 0)")
    loss.add_argument("--adversarial", type=float, default=0.0,
                      help="adversarial (LSGAN) weight; 0 = off (default: %(default)s)")
    loss.add_argument("--face-weight", type=float, default=1.5, help="loss weight inside faces (default: %(default)s)")
    loss.add_argument("--face-fraction", type=float, default=0.3,
                      help="least share of face crops per batch when faces exist (default: %(default)s)")
    loss.add_argument("--lr", type=float, default=2e-3,
                      help="Adam learning rate, cosine-decayed (default: %(default)s)")
    loss.add_argument("--ema", type=float, default=0.998,
                      help="the saved model is this moving average of the weights; 0 = the last weights "
                           "(default: %(default)s)")
    d = p.add_argument_group("data")
    d.add_argument("--pool", type=int, default=None,
                   help="crops with precomputed teacher outputs (default: fitted to the device and budget)")
    d.add_argument("--refresh", type=float, default=None,
                   help="pool crops replaced by new ones per step, e.g. 0.5 = one every other step "
                        "(default: fitted to the device)")
    d.add_argument("--no-augment", dest="augment", action="store_false",
                   help="plain crops and flips only (default: varied crops, see animegan.train.data.Augment)")
    d.add_argument("--photo-side", type=int, default=512,
                   help="photos are scaled to this long side before cropping (default: %(default)s)")
    d.add_argument("--seed", type=int, default=0)
    r = p.add_argument_group("output")
    r.add_argument("--sample-every", type=int, default=100, metavar="N", help="sample sheet every N steps")
    r.add_argument("--checkpoint-every", type=int, default=200, metavar="N",
                   help="checkpoint every N steps (and every 5 minutes, and at the end)")
    r.add_argument("--log-every", type=int, default=10, metavar="N", help="metrics.jsonl line every N steps")
    r.add_argument("--restart", action="store_true",
                   help="start afresh even if --out holds a checkpoint (it is replaced)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")


SCALE = (0.3, 1.5)  # crop scale jitter: from a whole short side scaled down to 1.5 x zoomed in


# -- the teacher's outputs, computed once per crop --------------------------------------
def teacher_labeller(teacher: nn.Module, device: Device) -> tuple[Callable[[torch.Tensor], torch.Tensor], str]:
    """A function crops (N x 3 x S x S in [-1, 1]) -> the teacher's outputs (float32, CPU),
    and how it runs: on a GPU PyTorch under the device's autocast; on a CPU OpenVINO in
    float32 (PyTorch's numbers within 1e-5, about twice as fast on 2 cores), PyTorch where
    OpenVINO cannot take the network."""
    if device.type == "cpu":
        try:
            from .. import runtime
            from ..backends import openvino as ovb

            backend = ovb.float_backend(teacher, "f32", runtime.get())

            def label(x: torch.Tensor) -> torch.Tensor:
                return torch.cat([torch.from_numpy(backend(part.numpy())) for part in x.split(1)])

            return label, "OpenVINO float32"
        except Exception:  # noqa: BLE001 - any conversion failure: PyTorch labels as well, only slower
            pass

    @torch.no_grad()
    def label_torch(x: torch.Tensor) -> torch.Tensor:
        outs = []
        for part in x.split(8):
            with device.autocast():
                outs.append(teacher(part.to(device.device)).float().cpu())
        return torch.cat(outs)

    return label_torch, f"PyTorch on {device.type}"


class Pool:
    """``size`` crops with their teacher outputs and weight maps; ``refresh(n)`` replaces
    the n oldest by fresh crops of the same kind (face or not), so the share of face
    crops stays what the sampler made it. Filling it tells ``say`` how far it got (every
    few seconds) and counts in the run's time; past ``deadline`` seconds it stops (with at
    least ``least`` crops) and the pool is as large as it got: a busy machine prepares fewer."""

    def __init__(self, sampler: CropSampler, label: Callable[[torch.Tensor], torch.Tensor], size: int,
                 say: Callable[[str], None] = print, deadline: float | None = None, least: int = 1) -> None:
        self.sampler, self.label = sampler, label
        s = sampler.size
        self.photos = torch.empty(size, 3, s, s, dtype=torch.uint8)
        self.targets = torch.empty(size, 3, s, s, dtype=torch.float16)
        self.weights = torch.empty(size, 1, s, s, dtype=torch.float16)
        self.is_face = torch.zeros(size, dtype=torch.bool)
        self.next = 0  # the oldest slot
        self.teacher_seconds = 0.0
        batch = sampler.batch(size)  # face_count(size) of them around faces
        start = shown = time.perf_counter()
        filled = 0
        for i in range(0, size, 8):
            part = range(i, min(size, i + 8))
            self._fill(part, Batch(batch.images[i : part.stop], batch.weights[i : part.stop],
                                   batch.is_face[i : part.stop]))
            filled = part.stop
            if deadline is not None and filled >= least and time.perf_counter() - start > deadline:
                break
            if time.perf_counter() - shown > 10 and part.stop < size:
                shown = time.perf_counter()
                say(f"  teacher: {part.stop}/{size} crops labelled ({shown - start:.0f} s)")
        if filled < size:  # the time for it ran out: keep what is labelled
            say(f"  teacher: {filled} of {size} crops labelled in {deadline:.0f} s, the time set aside for them; "
                "the pool holds those")
            for name in ("photos", "targets", "weights", "is_face"):
                setattr(self, name, getattr(self, name)[:filled].clone())

    def __len__(self) -> int:
        return len(self.is_face)

    def _teach(self, x: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        out = self.label(x)
        self.teacher_seconds += time.perf_counter() - start
        return out

    def _fill(self, slots, batch: Batch) -> None:
        slots = torch.as_tensor(list(slots))
        self.targets[slots] = self._teach(batch.images).clamp(-1, 1).half()
        self.photos[slots] = ((batch.images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
        self.weights[slots] = batch.weights.half()
        self.is_face[slots] = torch.tensor(batch.is_face)

    def refresh(self, n: int) -> None:
        if n <= 0:
            return
        slots = [(self.next + i) % len(self) for i in range(n)]
        self.next = (self.next + n) % len(self)
        self._fill(slots, self.sampler.crops([bool(self.is_face[i]) for i in slots]))

    def draw(self, n: int, face_fraction: float, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
        """A batch: ceil(face_fraction * n) face crops (when the pool has any), the rest from all."""
        faces = torch.nonzero(self.is_face).flatten()
        k = min(n, math.ceil(face_fraction * n)) if len(faces) and face_fraction > 0 else 0
        idx = torch.cat([faces[torch.randint(len(faces), (k,), generator=generator)],
                         torch.randint(len(self), (n - k,), generator=generator)])
        x = self.photos[idx].float().div_(127.5).sub_(1.0)
        return x, self.targets[idx].float(), self.weights[idx].float()


# -- defaults that fit the device ------------------------------------------------------------
# (crop size, batch), largest first: the first whose measured step time fits is taken.
LADDER = ((256, 16), (192, 16), (160, 16), (128, 16), (128, 8), (96, 8), (64, 8))
# A run should make at least this many steps in its time budget: for the same number of
# steps 192 px crops were no better than 128 px ones on the held-out photos (400-step
# trials, benchmarks/results/distill-trials.md), so smaller crops and more steps win on a CPU.
TARGET_STEPS = 2000
STEP_SECONDS = 1.0  # with a step budget and no time budget: aim at about this long a step
TEACHER_SHARE = 0.3  # of each step's time spent labelling fresh crops
POOL_SHARE = 0.06  # of the time budget spent filling the pool at the start


@dataclass
class Fitted:
    """The settings a run uses, and why (one line each, printed at the start)."""

    size: int
    batch: int
    pool: int
    refresh: float
    perceptual: float
    reasons: list[str]
    adaptive: bool = False  # refresh follows the measured times as the run goes (it was not given)


def _time_steps(student: nn.Module, device: Device, size: int, batch: int, extra: nn.Module | None = None,
                repeats: int = 2) -> float:
    """Seconds per training step (forward, L1 backward, no optimizer) of ``student`` on
    random crops, measured after one warm-up; ``extra``: a perceptual network in the loss too."""
    x = torch.rand(batch, 3, size, size, device=device.device) * 2 - 1
    times = []
    for i in range(repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        with device.autocast():
            out = student(x)
            loss = (out - x).abs().mean()
            if extra is not None:
                loss = loss + (extra(out) - extra(x).detach()).abs().mean()
        loss.backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    student.zero_grad(set_to_none=True)
    return min(times)


def fit_to_device(settings: dict[str, Any], student: nn.Module, device: Device,
                  label: Callable[[torch.Tensor], torch.Tensor], budget: Budget) -> Fitted:
    """Crop size, batch, pool size, refresh rate and the perceptual weight for this run:
    what the command line gave, the rest chosen from measurements of this student and
    teacher on this device (a few seconds, counted in the budget).

    - size and batch: the largest (LADDER) whose step time, the teacher's share of fresh
      crops included, lets the time budget hold TARGET_STEPS steps (with a step budget:
      a step of about STEP_SECONDS);
    - refresh: fresh crops per step, so labelling takes about TEACHER_SHARE of a step;
    - pool: as many crops as POOL_SHARE of the time budget labels (at least 2 batches);
    - perceptual 0.1 where torchvision's VGG16 weights are on disk and the term adds at
      most half to a step, else 0.
    """
    reasons = []
    given = {k: settings.get(k) for k in ("size", "batch", "pool", "refresh", "perceptual")}
    if None not in given.values():
        return Fitted(given["size"], given["batch"], max(given["pool"], given["batch"]), given["refresh"],
                      given["perceptual"], ["as given"])
    probe = 96
    crop = torch.rand(1, 3, probe, probe) * 2 - 1
    label(crop)  # warm-up (OpenVINO compiles the shape on first use)
    students, teachers = [], []
    for _ in range(3):  # interleaved, medians: a shared machine's load moves both alike
        students.append(_time_steps(student, device, probe, 8, repeats=1) / (8 * probe * probe))
        start = time.perf_counter()
        label(crop)
        teachers.append((time.perf_counter() - start) / (probe * probe))
    per_px, teach_px = statistics.median(students), statistics.median(teachers)  # seconds per pixel
    seconds = budget.minutes * 60 if budget.minutes is not None else None
    step_max = (seconds * (1 - POOL_SHARE) / TARGET_STEPS) if seconds else STEP_SECONDS
    reasons.append(f"measured here: a student step {per_px * 1e6:.2f} us/px, the teacher {teach_px * 1e6:.2f} us/px")

    def step_time(size: int, batch: int) -> float:
        return batch * size * size * per_px / (1 - TEACHER_SHARE)

    if given["size"] is None or given["batch"] is None:
        ladder = [(s, b) for s, b in LADDER if given["size"] in (None, s) and given["batch"] in (None, b)]
        ladder = ladder or [(given["size"] or 128, given["batch"] or 8)]
        size, batch = next(((s, b) for s, b in ladder if step_time(s, b) <= step_max), ladder[-1])
        reasons.append(f"crops {size} px, batch {batch}: ~{step_time(size, batch):.2f} s a step "
                       + (f"(~{seconds * (1 - POOL_SHARE) / step_time(size, batch):.0f} steps in the budget)"
                          if seconds else f"(aiming at <= {STEP_SECONDS:.0f} s a step)"))
    else:
        size, batch = given["size"], given["batch"]
    refresh = given["refresh"]
    if refresh is None:
        teach_crop = teach_px * size * size
        refresh = round(min(batch / 2, max(0.1, TEACHER_SHARE * step_time(size, batch) / teach_crop)), 2)
        reasons.append(f"~{refresh} fresh teacher crops a step to start with ({teach_crop:.2f} s each; "
                       f"adjusted as it runs to keep the teacher at ~{TEACHER_SHARE:.0%} of the time)")
    pool = given["pool"]
    if pool is None:
        teach_crop = teach_px * size * size
        fill = POOL_SHARE * seconds if seconds else 60.0
        pool = int(min(1024, max(2 * batch, fill / teach_crop)))
        reasons.append(f"a pool of {pool} crops labelled at the start (~{pool * teach_crop:.0f} s)")
    perceptual = given["perceptual"]
    if perceptual is None:
        perceptual = 0.0
        if not vgg16_cache_path().is_file():
            reasons.append("no perceptual term: torchvision's VGG16 weights are not on disk "
                           f"({vgg16_cache_path()})")
        else:
            vgg = VGGFeatures().to(device.device)
            with_vgg = _time_steps(student, device, size, batch, extra=vgg, repeats=1)
            plain = step_time(size, batch) * (1 - TEACHER_SHARE)
            if with_vgg <= 1.5 * plain:
                perceptual = 0.1
                reasons.append(f"perceptual 0.1 (VGG16 adds {with_vgg / plain - 1:.0%} to a step)")
            else:
                reasons.append(f"no perceptual term: VGG16 would make each step {with_vgg / plain:.1f} x as long here")
    return Fitted(size, batch, max(pool, batch), refresh, perceptual, reasons, adaptive=given["refresh"] is None)


# -- the optional adversarial term ---------------------------------------------------------
def discriminator() -> nn.Module:
    """The optional adversarial term's judge: the project's one patch discriminator
    (spectral norm, LSGAN; :class:`animegan.models.discriminator.Discriminator`), small:
    half its width and one stride-2 step less than the GAN recipe's, as it only has to
    tell the student's texture from the teacher's."""
    return Discriminator(width=32, n_dis=2)


def _lr_factor(fraction: float, warmup: float = 0.02, floor: float = 0.05) -> float:
    """Linear warm-up over the first 2 % of the budget, then cosine decay to 5 %."""
    if fraction < warmup:
        return max(0.1, fraction / warmup)
    f = (fraction - warmup) / (1 - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, f)))


class EMA:
    """An exponential moving average of a model's weights (buffers copied): what is saved.
    The decay ramps up from 0 over the first steps ((1 + n) / (10 + n)), so early
    averages are not dominated by the random start."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        for avg, now in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True):
            if avg.dtype.is_floating_point:
                avg.lerp_(now.detach(), 1 - d)
            else:
                avg.copy_(now)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = state["updates"]


def load_teacher(style: str | None, weights_src: str | None) -> tuple[nn.Module, str]:
    """The teacher generator (eval, frozen) and a name for it."""
    if weights_src:
        return load_generator(weights_src), f"{style or 'teacher'} ({weights_src})"
    if not style:
        raise TrainingError("Give --teacher STYLE (see animegan --list-styles) or --teacher-weights SRC.")
    from ..styles import get_style
    from ..weights import WeightsError, resolve

    try:
        spec = get_style(style)
        source = spec.repo_id if (spec.repo_id and not spec.filename) else resolve(spec)
        return load_generator(source), style
    except (ValueError, WeightsError) as exc:
        raise TrainingError(f"{exc}\nOr give the teacher's weights yourself: --teacher-weights FILE "
                            "(a .pt/.safetensors file or a model folder).") from None


def teacher_card(style: str | None, weights_src: str | None) -> dict[str, str]:
    """What the run folder records of its teacher's terms (an export's model card carries
    them): the style's licence card when the teacher is a registered style's own weights."""
    if not style or weights_src:
        return {}
    from ..styles import StyleError, get_style, licence_markdown

    try:
        return {"teacher_licence": licence_markdown(get_style(style))}
    except StyleError:
        return {}


def _check_perceptual(weight: float | None) -> VGGFeatures | None:
    """Asked-for perceptual term: the VGG16 features, loaded before any other work, or a
    TrainingError that says where the weights go and how to train without them."""
    if not weight:
        return None
    try:
        return VGGFeatures()
    except TrainingError as exc:
        raise TrainingError(f"{exc}\nOr train without the perceptual term: --perceptual 0.") from None


# -- the run -----------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    folder = RunFolder(Path(args.out))
    resume = folder.has_checkpoint() and not args.restart
    budget = Budget(steps=args.steps, minutes=args.minutes)
    state: dict[str, Any] | None = folder.load_checkpoint() if resume else None
    settings = dict(vars(args)) if state is None else {**state["settings"], "steps": args.steps,
                                                         "minutes": args.minutes}
    perceptual = _check_perceptual(settings["perceptual"])  # before any work: it may be missing
    clock = Clock(state["elapsed"] if state else 0.0)  # everything from here counts in --minutes
    device = pick_device(args.device, args.precision)
    teacher, teacher_name = load_teacher(args.teacher, args.teacher_weights)
    teacher = teacher.to(device.device)

    if state is not None:
        student = LiteGenerator(**{k: v for k, v in state["config"].items() if k != "architecture"})
    else:
        student = LiteGenerator(width=args.width, res_blocks=args.res_blocks, window=args.window, stem=args.stem,
                                half_convs=args.half_convs)
    # channels-last: oneDNN's convolutions train ~15-40 % faster a step on a CPU (measured, 2 cores)
    layout = torch.channels_last if device.type == "cpu" else torch.contiguous_format
    student = student.to(device.device, memory_format=layout).train()
    photos = load_photos(args.photos, photo_side=settings["photo_side"], cache_file=folder.root / "faces.json")
    label, labeller = teacher_labeller(teacher, device)
    step = state["step"] if state else 0
    if state is not None and budget.done(step, clock.elapsed):
        print(f"{folder.root}: the budget is already spent (step {step}, {clock.elapsed / 60:.1f} min); "
              "raise --steps or --minutes to train on.")
        return 0

    if state is None:
        fitted = fit_to_device(settings, student, device, label, budget)
        settings.update(size=fitted.size, batch=fitted.batch, pool=fitted.pool, refresh=fitted.refresh,
                        perceptual=fitted.perceptual, adaptive_refresh=fitted.adaptive)
        if fitted.perceptual and perceptual is None:
            perceptual = VGGFeatures()
        chosen = fitted.reasons
    else:
        chosen = ["as the run began (resumed)"]
    perceptual = perceptual.to(device.device) if perceptual is not None and settings["perceptual"] > 0 else None
    folder.prepare({**settings, "teacher_name": teacher_name, **teacher_card(args.teacher, args.teacher_weights)},
                   resume=resume or args.restart)
    if args.restart:
        folder.metrics_path.unlink(missing_ok=True)

    size = settings["size"]
    sampler = CropSampler(photos, size, scale=SCALE if settings.get("augment", True) else (0.75, 1.5),
                          face_fraction=settings["face_fraction"], face_weight=settings["face_weight"],
                          seed=settings["seed"], augment=Augment() if settings.get("augment", True) else None)
    disc = discriminator().to(device.device).train() if settings["adversarial"] > 0 else None
    fused = device.type == "cpu" or device.type == "cuda"  # one fused kernel per step, not one per tensor
    opt = torch.optim.Adam(student.parameters(), lr=settings["lr"], betas=(0.9, 0.99), fused=fused)
    opt_d = torch.optim.Adam(disc.parameters(), lr=settings["lr"] / 4, betas=(0.5, 0.99)) if disc else None
    scaler = device.scaler()
    draw_rng = torch.Generator().manual_seed(settings["seed"])
    if state is not None:
        student.load_state_dict(state["student"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        sampler.load_state_dict(state["sampler"])
        draw_rng.set_state(state["draw_rng"])
        if disc is not None and "discriminator" in state:
            disc.load_state_dict(state["discriminator"])
            opt_d.load_state_dict(state["optimizer_d"])
    ema = EMA(student, settings.get("ema", 0.0)) if settings.get("ema", 0.0) > 0 else None  # from the loaded weights
    if ema is not None and state is not None and "ema" in state:
        ema.load_state_dict(state["ema"])
    saved = ema.model if ema is not None else student  # what is written as the model

    complexity = count(student, 512)
    header = (f"distill {teacher_name} -> {describe(student)} ({complexity.summary()}); {len(photos)} photos, "
              f"{sum(len(p.faces) for p in photos)} faces; {device.describe()}; teacher labels on {labeller}"
              + (f"; resuming at step {step}" if state else ""))
    print(header)
    print("settings: " + "; ".join(chosen))
    print(f"  -> --size {size} --batch {settings['batch']} --pool {settings['pool']} --refresh {settings['refresh']} "
          f"--perceptual {settings['perceptual']} --lr {settings['lr']} --ema {settings.get('ema', 0.0)}"
          + ("" if settings.get("augment", True) else " --no-augment"), flush=True)

    if budget.done(step, clock.elapsed):  # loading and measuring took the whole budget
        return _nothing_trained(clock.elapsed, args.minutes)

    # Fixed photos for the sample sheets, with their teacher outputs (once).
    fixed = fixed_photos(photos, size)
    fixed_teacher = [label(x) for x in fixed]

    def sheet(at_step: int) -> float:
        model = saved
        was = model.training
        model.eval()
        rows, scores = [], []
        with torch.no_grad(), device.autocast():
            for x, t in zip(fixed, fixed_teacher, strict=True):
                s = model(x.to(device.device)).float().cpu()
                scores.append(psnr(s, t))
                rows.append([to_image(x), to_image(t), to_image(s)])
        model.train(was)
        mean = sum(scores) / len(scores)
        folder.save_sheet(sample_sheet(rows, ["photo", "teacher", "student"],
                                       f"step {at_step}: student vs teacher {mean:.1f} dB"), at_step)
        return mean

    print(f"labelling a pool of {settings['pool']} crops with the teacher ...", flush=True)
    deadline = 2 * POOL_SHARE * budget.minutes * 60 if budget.minutes is not None else None
    pool = Pool(sampler, label, max(settings["pool"], settings["batch"]), say=lambda t: print(t, flush=True),
                deadline=deadline, least=2 * settings["batch"])
    fill_seconds = pool.teacher_seconds
    progress = Progress(budget, step, clock.elapsed, desc="distill", disable=True if args.quiet else None)
    progress.write(f"pool of {len(pool)} crops ({int(pool.is_face.sum())} around faces) labelled in "
                   f"{fill_seconds:.0f} s; {clock.elapsed:.0f} s of the budget spent before the first step")

    def checkpoint() -> None:
        if steps.step > 0:
            folder.save_model(saved)
        extra = {"discriminator": disc.state_dict(), "optimizer_d": opt_d.state_dict()} if disc else {}
        if ema is not None:
            extra["ema"] = ema.state_dict()
        folder.save_checkpoint({
            "step": steps.step, "elapsed": clock.elapsed, "config": student.config, "settings": settings,
            "student": student.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
            "sampler": sampler.state_dict(), "draw_rng": draw_rng.get_state(), **extra,
        })

    sums: dict[str, float] = {}  # the values since the last metrics line, summed
    seen = [0]  # crops trained on
    batch_n, owed = settings["batch"], [0.0]
    refresh = [settings["refresh"]]
    adaptive = settings.get("adaptive_refresh", False)
    spent = {"student": 0.0, "teacher": 0.0, "crops": 0.0, "steps": 0.0}  # since the last adjustment

    def one() -> dict:
        step_start = time.perf_counter()
        lr = settings["lr"] * _lr_factor(budget.fraction(steps.step, clock.elapsed))
        for group in opt.param_groups:
            group["lr"] = lr
        x, y, w = pool.draw(batch_n, settings["face_fraction"], draw_rng)
        x, y, w = (t.to(device.device, non_blocking=True, memory_format=layout) for t in (x, y, w))
        with device.autocast():
            out = student(x)
            losses = {"l1": weighted_l1(out, y, w)}
            if perceptual is not None:
                with torch.no_grad():
                    target_features = perceptual(y)
                losses["perceptual"] = weighted_l1(perceptual(out), target_features, w)
            if disc is not None:
                losses["adversarial"] = ((disc(out).float() - 1) ** 2).mean()
        loss = (settings["l1"] * losses["l1"] + settings["perceptual"] * losses.get("perceptual", 0.0)
                + settings["adversarial"] * losses.get("adversarial", 0.0))
        if not torch.isfinite(loss):
            raise TrainingError(f"the loss became {float(loss)} at step {steps.step}; lower --lr and resume.")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if ema is not None:
            ema.update(student)
        if disc is not None:  # teacher outputs are "real", the student's "fake"
            with device.autocast():
                d_loss = ((disc(y).float() - 1) ** 2).mean() + (disc(out.detach()).float() ** 2).mean()
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            losses["discriminator"] = d_loss
        started = time.perf_counter()
        owed[0] += refresh[0]
        pool.refresh(int(owed[0]))
        spent["crops"] += int(owed[0])
        owed[0] -= int(owed[0])
        spent["teacher"] += time.perf_counter() - started
        spent["student"] += started - step_start
        spent["steps"] += 1
        if adaptive and spent["crops"] >= 8:  # the teacher's share held at TEACHER_SHARE as the load changes
            per_crop = spent["teacher"] / spent["crops"]
            per_step = spent["student"] / spent["steps"]
            wanted = TEACHER_SHARE / (1 - TEACHER_SHARE) * per_step / per_crop
            refresh[0] = min(batch_n / 2, max(0.1, 0.5 * refresh[0] + 0.5 * wanted))
            spent.update(student=0.0, teacher=0.0, crops=0.0, steps=0.0)
        seen[0] += batch_n
        for k, v in {"loss": loss, **losses}.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach() if isinstance(v, torch.Tensor) else v)
        sums["psnr"] = sums.get("psnr", 0.0) + psnr(out, y)
        sums["n"] = sums.get("n", 0.0) + 1
        return {"loss": float(loss.detach()), "lr": lr, "refresh": refresh[0]}

    def log(at: int, values: dict) -> None:
        n = sums.pop("n")
        folder.log(step=at, elapsed=round(clock.elapsed, 1), lr=values["lr"], crops=seen[0],
                   refresh=round(values["refresh"], 2),
                   teacher_seconds=round(pool.teacher_seconds, 1), **{k: round(v / n, 5) for k, v in sums.items()})
        sums.clear()

    def sample(at: int) -> None:
        folder.log(step=at, elapsed=round(clock.elapsed, 1), sample_psnr=round(sheet(at), 2))

    every = Every(settings["log_every"], settings["sample_every"], settings["checkpoint_every"])
    steps = Steps(step, every, progress, log=log, sample=sample, checkpoint=checkpoint,
                  show=lambda v: {"loss": v["loss"], "lr": f"{v['lr']:.1e}"})
    try:
        with steps:
            steps.run(lambda at: not budget.done(at, clock.elapsed), one, lambda: clock.elapsed)
    finally:
        progress.close()
    step = steps.step
    checkpoint()
    if step == 0:
        folder.close()
        return 130 if steps.stopped else _nothing_trained(clock.elapsed, args.minutes)
    final = sheet(step)
    folder.log(step=step, elapsed=round(clock.elapsed, 1), sample_psnr=round(final, 2), final=True)
    folder.close()
    print(f"{'stopped' if steps.stopped else 'done'} at step {step} ({clock.elapsed / 60:.1f} min); student vs "
          f"teacher on the sample photos: {final:.1f} dB.")
    if final < USABLE_DB:
        print(f"Model: {folder.root}/ is saved but not usable yet (under {USABLE_DB:.0f} dB from its teacher): "
              "train on with the same command and a larger --minutes or --steps.")
    else:
        print(f"Model: {folder.root}/ (config.json + model.safetensors); use it with: "
              f"animegan PHOTO --weights {folder.root}\n"
              f"or serve it as a style's fast variant: copy it to $ANIMEGAN_WEIGHTS_DIR/<style>-lite/ "
              "and use --lite (the app's live tab picks it up by itself).")
    return 130 if steps.stopped else 0


def _nothing_trained(elapsed: float, minutes: float | None) -> int:
    print(f"No training step fitted in the budget ({elapsed / 60:.1f} min went to loading the teacher and the photos "
          f"and labelling crops): no model was saved. Give more time (e.g. --minutes {max(5, 2 * (minutes or 0)):g}) "
          "or fewer crops to label first (--pool 32); the same command goes on from there.")
    return 1


USABLE_DB = 20.0  # under this the student's pictures are visibly not the teacher's
