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
"""

from __future__ import annotations

import argparse
import math
import time
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
from .data import Batch, CropSampler, load_photos
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
from .perceptual import VGGFeatures, weighted_l1

EXAMPLES = """\
examples:
  python -m animegan distill --teacher paprika --photos my_photos/ --out lite_paprika --minutes 30
      a LiteGenerator that imitates the paprika style on your photos, trained for 30 minutes
  python -m animegan distill --teacher face_paint_512_v2 --teacher-weights face_paint_512_v2.pt \\
      --photos portraits/ --out lite_face --steps 2000 --batch 16 --size 192
      the teacher's weights from a local file (offline), a fixed number of steps
  python -m animegan distill ... --out lite_face --steps 4000
      run again with the same --out to resume from the last checkpoint (budgets are totals)
  python -m animegan lite_face_photo.jpg --weights lite_face
      use the result: --weights takes the run folder (config.json + model.safetensors)

The run folder holds config.json + model.safetensors (animegan.load_generator(OUT)),
checkpoints/last.pt (resume), metrics.jsonl (one line per --log-every steps) and
samples/step_*.png (photo | teacher | student on fixed photos, every --sample-every steps).
The perceptual loss needs torchvision's VGG16 ImageNet weights (downloaded once into
$TORCH_HOME/hub/checkpoints/vgg16-397923af.pth); --perceptual 0 trains without them.
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = ("Distil a style into a small, fast LiteGenerator: the student learns the teacher's\n"
                     "output on your photos (L1 + VGG16 perceptual + optional adversarial loss,\n"
                     "face-priority crops).")
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
    budget.add_argument("--minutes", type=float, metavar="M", help="train for M minutes in total (across resumes)")
    budget.add_argument("--steps", type=int, metavar="N", help="train for N steps in total (across resumes)")
    p.add_argument("--size", type=int, default=256, metavar="PX", help="crop size (default: %(default)s)")
    p.add_argument("--batch", type=int, default=8, help="crops per step (default: %(default)s)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto: CUDA + AMP on a GPU, else the CPU (bf16 autocast where it is native)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32"],
                   help="fp32: no autocast (default: %(default)s)")
    m = p.add_argument_group("student")
    m.add_argument("--width", type=int, default=32, help="first layer's channels (default: %(default)s)")
    m.add_argument("--res-blocks", type=int, default=2, help="residual blocks at 1/4 size (default: %(default)s)")
    m.add_argument("--window", type=int, default=8, help="attention window at 1/4 size (default: %(default)s)")
    loss = p.add_argument_group("losses and optimisation")
    loss.add_argument("--l1", type=float, default=1.0, help="L1 weight (default: %(default)s)")
    loss.add_argument("--perceptual", type=float, default=0.1,
                      help="VGG16 relu3_3 feature L1 weight; 0 = off (default: %(default)s)")
    loss.add_argument("--adversarial", type=float, default=0.0,
                      help="adversarial (LSGAN) weight; 0 = off (default: %(default)s)")
    loss.add_argument("--face-weight", type=float, default=1.5, help="loss weight inside faces (default: %(default)s)")
    loss.add_argument("--face-fraction", type=float, default=0.3,
                      help="least share of face crops per batch when faces exist (default: %(default)s)")
    loss.add_argument("--lr", type=float, default=2e-3,
                      help="Adam learning rate, cosine-decayed (default: %(default)s)")
    d = p.add_argument_group("data")
    d.add_argument("--pool", type=int, default=256,
                   help="crops with precomputed teacher outputs (default: %(default)s)")
    d.add_argument("--refresh", type=float, default=1.0,
                   help="pool crops replaced by new ones per step, e.g. 0.5 = one every other step "
                        "(default: %(default)s)")
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


# -- the teacher's outputs, computed once per crop --------------------------------------
class Pool:
    """``size`` crops with their teacher outputs and weight maps; ``refresh(n)`` replaces
    the n oldest by fresh crops of the same kind (face or not), so the share of face
    crops stays what the sampler made it."""

    def __init__(self, sampler: CropSampler, teacher: nn.Module, device: Device, size: int, chunk: int = 8) -> None:
        self.sampler, self.teacher, self.device, self.chunk = sampler, teacher, device, chunk
        s = sampler.size
        self.photos = torch.empty(size, 3, s, s, dtype=torch.uint8)
        self.targets = torch.empty(size, 3, s, s, dtype=torch.float16)
        self.weights = torch.empty(size, 1, s, s, dtype=torch.float16)
        self.is_face = torch.zeros(size, dtype=torch.bool)
        self.next = 0  # the oldest slot
        self.teacher_seconds = 0.0
        batch = sampler.batch(size)  # face_count(size) of them around faces
        self._fill(range(size), batch)

    def __len__(self) -> int:
        return len(self.is_face)

    @torch.no_grad()
    def _teach(self, x: torch.Tensor) -> torch.Tensor:
        start = time.perf_counter()
        outs = []
        for part in x.split(self.chunk):
            with self.device.autocast():
                outs.append(self.teacher(part.to(self.device.device)).float().cpu())
        self.teacher_seconds += time.perf_counter() - start
        return torch.cat(outs)

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
        raise TrainingError(str(exc)) from None


# -- the run -----------------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> int:
    folder = RunFolder(Path(args.out))
    resume = folder.has_checkpoint() and not args.restart
    budget = Budget(steps=args.steps, minutes=args.minutes)
    device = pick_device(args.device, args.precision)
    teacher, teacher_name = load_teacher(args.teacher, args.teacher_weights)
    teacher = teacher.to(device.device)

    state: dict[str, Any] | None = folder.load_checkpoint() if resume else None
    settings = dict(vars(args)) if state is None else {**state["settings"], "steps": args.steps,
                                                         "minutes": args.minutes}
    if state is not None:
        student = LiteGenerator(**{k: v for k, v in state["config"].items() if k != "architecture"})
    else:
        student = LiteGenerator(width=args.width, res_blocks=args.res_blocks, window=args.window)
    student = student.to(device.device).train()
    perceptual = VGGFeatures().to(device.device) if settings["perceptual"] > 0 else None
    photos = load_photos(args.photos, photo_side=settings["photo_side"], cache_file=folder.root / "faces.json")
    folder.prepare({**settings, "teacher_name": teacher_name}, resume=resume or args.restart)
    if args.restart:
        folder.metrics_path.unlink(missing_ok=True)

    size = settings["size"]
    sampler = CropSampler(photos, size, face_fraction=settings["face_fraction"],
                          face_weight=settings["face_weight"], seed=settings["seed"])
    disc = discriminator().to(device.device).train() if settings["adversarial"] > 0 else None
    fused = device.type == "cpu" or device.type == "cuda"  # one fused kernel per step, not one per tensor
    opt = torch.optim.Adam(student.parameters(), lr=settings["lr"], betas=(0.9, 0.99), fused=fused)
    opt_d = torch.optim.Adam(disc.parameters(), lr=settings["lr"] / 4, betas=(0.5, 0.99)) if disc else None
    scaler = device.scaler()
    draw_rng = torch.Generator().manual_seed(settings["seed"])
    step, elapsed_before = 0, 0.0
    if state is not None:
        student.load_state_dict(state["student"])
        opt.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        sampler.load_state_dict(state["sampler"])
        draw_rng.set_state(state["draw_rng"])
        if disc is not None and "discriminator" in state:
            disc.load_state_dict(state["discriminator"])
            opt_d.load_state_dict(state["optimizer_d"])
        step, elapsed_before = state["step"], state["elapsed"]

    complexity = count(student, 512)
    header = (f"distill {teacher_name} -> {describe(student)} ({complexity.summary()}); {len(photos)} photos, "
              f"{sum(len(p.faces) for p in photos)} faces; {device.describe()}"
              + (f"; resuming at step {step}" if state else ""))
    if budget.done(step, elapsed_before):
        print(header)
        print(f"{folder.root}: the budget is already spent (step {step}, {elapsed_before / 60:.1f} min); "
              "raise --steps or --minutes to train on.")
        folder.save_model(student)
        return 0

    # Fixed photos for the sample sheets, with their teacher outputs (once).
    fixed = fixed_photos(photos, size)
    with torch.no_grad(), device.autocast():
        fixed_teacher = [teacher(x.to(device.device)).float().cpu() for x in fixed]

    def sheet(at_step: int) -> float:
        student.eval()
        rows, scores = [], []
        with torch.no_grad(), device.autocast():
            for x, t in zip(fixed, fixed_teacher, strict=True):
                s = student(x.to(device.device)).float().cpu()
                scores.append(psnr(s, t))
                rows.append([to_image(x), to_image(t), to_image(s)])
        student.train()
        mean = sum(scores) / len(scores)
        folder.save_sheet(sample_sheet(rows, ["photo", "teacher", "student"],
                                       f"step {at_step}: student vs teacher {mean:.1f} dB"), at_step)
        return mean

    clock = Clock(elapsed_before)  # the teacher's work on the pool counts as training time
    pool = Pool(sampler, teacher, device, max(settings["pool"], settings["batch"]))
    fill_seconds = pool.teacher_seconds
    progress = Progress(budget, step, clock.elapsed, desc="distill", disable=True if args.quiet else None)
    progress.write(header)
    progress.write(f"pool of {len(pool)} crops ({int(pool.is_face.sum())} around faces) with teacher outputs "
                   f"in {fill_seconds:.0f} s")

    def checkpoint() -> None:
        folder.save_model(student)
        extra = {"discriminator": disc.state_dict(), "optimizer_d": opt_d.state_dict()} if disc else {}
        folder.save_checkpoint({
            "step": steps.step, "elapsed": clock.elapsed, "config": student.config, "settings": settings,
            "student": student.state_dict(), "optimizer": opt.state_dict(), "scaler": scaler.state_dict(),
            "sampler": sampler.state_dict(), "draw_rng": draw_rng.get_state(), **extra,
        })

    sums: dict[str, float] = {}  # the values since the last metrics line, summed
    seen = [0]  # crops trained on
    batch_n, refresh, owed = settings["batch"], settings["refresh"], [0.0]

    def one() -> dict:
        lr = settings["lr"] * _lr_factor(budget.fraction(steps.step, clock.elapsed))
        for group in opt.param_groups:
            group["lr"] = lr
        x, y, w = pool.draw(batch_n, settings["face_fraction"], draw_rng)
        x, y, w = (t.to(device.device, non_blocking=True) for t in (x, y, w))
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
        if disc is not None:  # teacher outputs are "real", the student's "fake"
            with device.autocast():
                d_loss = ((disc(y).float() - 1) ** 2).mean() + (disc(out.detach()).float() ** 2).mean()
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            losses["discriminator"] = d_loss
        owed[0] += refresh
        pool.refresh(int(owed[0]))
        owed[0] -= int(owed[0])
        seen[0] += batch_n
        for k, v in {"loss": loss, **losses}.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach() if isinstance(v, torch.Tensor) else v)
        sums["psnr"] = sums.get("psnr", 0.0) + psnr(out, y)
        sums["n"] = sums.get("n", 0.0) + 1
        return {"loss": float(loss.detach()), "lr": lr}

    def log(at: int, values: dict) -> None:
        n = sums.pop("n")
        folder.log(step=at, elapsed=round(clock.elapsed, 1), lr=values["lr"], crops=seen[0],
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
    final = sheet(step)
    folder.log(step=step, elapsed=round(clock.elapsed, 1), sample_psnr=round(final, 2), final=True)
    folder.close()
    print(f"{'stopped' if steps.stopped else 'done'} at step {step} ({clock.elapsed / 60:.1f} min); student vs "
          f"teacher on the sample photos: {final:.1f} dB.\nModel: {folder.root}/ (config.json + model.safetensors); "
          f"use it with: animegan PHOTO --weights {folder.root}")
    return 130 if steps.stopped else 0
