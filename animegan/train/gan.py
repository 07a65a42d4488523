"""``python -m animegan train``: the AnimeGANv2 recipe in PyTorch, in three stages.

1. init: the generator alone learns to reproduce the photo (content loss only), so the
   adversarial stage starts from a network that already keeps the picture;
2. adversarial: generator and discriminator alternately (LSGAN); the generator's loss is
   adversarial + content + gray-Gram style + colour + total variation, the discriminator
   learns real anime frames against generated, grayscale and edge-smoothed ones;
3. fine-tune: the same losses with most of the generator frozen: for the lite generator
   the attention block and the last layer train (the recipe), for the published network
   its last full-resolution block and the 1x1 output layer (it has no attention block).

Epochs are AnimeGANv2's: max(photos, anime frames) // batch steps (``--epoch-steps`` to
override). ``--epochs E`` counts all stages (E = init + adversarial + fine-tune, as the
original's ``--epoch 101 --init_epoch 10``); ``--minutes M`` gives stage 1 at most 15% of
the time and stage 3 the last 10%. Everything the run writes is described in
:mod:`animegan.train.loop` (model folder, checkpoints/last.pt, metrics.jsonl, samples/).
A run resumes where it stopped, stage and step, when its folder holds a checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import TrainingError
from .gan_losses import PRESETS, Preset

STAGES = ("init", "adversarial", "finetune")
# Stage 3: parameters whose names start with these prefixes keep training; the rest is frozen.
FINETUNE_TRAINABLE = {
    "lite": ("attention.", "out_layer."),
    "animeganv2": ("block_e.", "out_layer."),
}
INIT_SHARE, FINETUNE_SHARE = 0.15, 0.10  # of --minutes
BETAS = (0.5, 0.999)  # AnimeGANv2's Adam settings


# ---------------------------------------------------------------- command line


EXAMPLES = """\
examples:
  python -m animegan train --photos photos/ --anime frames/ --out my_style --minutes 60
      a small generator in the seed recipe, 60 minutes across the three stages
  python -m animegan train --photos photos/ --anime hayao/ --out hayao --arch animeganv2 --preset hayao --epochs 101
      AnimeGANv2 as published (a GPU job)
  python -m animegan my.jpg --weights my_style
      stylize with the result (the run folder is a model folder)

Run the same command again to resume where it stopped (stage and step).
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The ``train`` subcommand's arguments."""
    p.description = "Train a generator on photos and anime frames with the AnimeGANv2 recipe (three stages)."
    p.epilog = EXAMPLES
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("--photos", required=True, metavar="DIR", help="folder of photos (searched recursively)")
    p.add_argument("--anime", required=True, metavar="DIR",
                   help="folder of anime frames of one style (e.g. stills of one film), searched recursively")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="run folder: the model (config.json + model.safetensors), checkpoints, metrics, samples; "
                        "a folder holding a checkpoint is resumed")
    p.add_argument("--arch", choices=sorted(FINETUNE_TRAINABLE), default="lite",
                   help="generator: lite (small, fast) or animeganv2 (the published network) (default: %(default)s)")
    p.add_argument("--width", type=int, default=32, help="lite: first layer's channels (default: %(default)s)")
    p.add_argument("--res-blocks", type=int, default=2, help="lite: residual blocks (default: %(default)s)")
    p.add_argument("--d-width", type=int, default=64,
                   help="discriminator width (AnimeGANv2's ch; default: %(default)s)")
    p.add_argument("--init-from", metavar="DIR",
                   help="start the generator from these weights (a model folder, e.g. a distilled student, "
                        "or a .pt file of the published network)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="seed",
                   help="loss weights and learning rates: seed (this project's recipe) or AnimeGANv2's "
                        "published hayao / shinkai / paprika settings (default: %(default)s)")
    b = p.add_argument_group("length (give --minutes, --epochs or both; training stops at the first reached)")
    b.add_argument("--minutes", type=float, help="training time, all stages together (resumes included)")
    b.add_argument("--epochs", type=int, help="epochs, all stages together (AnimeGANv2: 101)")
    b.add_argument("--init-epochs", type=int, default=10, help="stage 1 epochs (default: %(default)s)")
    b.add_argument("--finetune-epochs", type=int, default=5, help="stage 3 epochs (default: %(default)s)")
    b.add_argument("--epoch-steps", type=int,
                   help="steps per epoch (default: max(photos, anime frames) // batch, at least 1)")
    b.add_argument("--steps", type=int, help="stop after this many steps in all (a short try; resumable)")
    p.add_argument("--size", type=int, default=256, help="crop size in px (default: %(default)s)")
    p.add_argument("--batch", type=int, default=8, help="batch size (default: %(default)s; AnimeGANv2: 12)")
    p.add_argument("--anime-side", type=int,
                   help="anime frames are scaled to this shorter side before cropping (default: --size)")
    p.add_argument("--cache", metavar="DIR",
                   help="where prepared anime frames are kept (default: OUT/cache); share it between runs")
    p.add_argument("--face-fraction", type=float, default=0.3,
                   help="share of each batch cropped around faces when the photos hold faces (default: %(default)s)")
    p.add_argument("--no-faces", action="store_true", help="do not look for faces (no face priority)")
    p.add_argument("--sample-every", type=int, default=200, metavar="N",
                   help="write a sample sheet (photo | output) every N steps (default: %(default)s)")
    p.add_argument("--checkpoint-every", type=int, default=200, metavar="N",
                   help="save a checkpoint and the model every N steps, and every 5 minutes (default: %(default)s)")
    p.add_argument("--log-every", type=int, default=10, metavar="N",
                   help="append the losses to metrics.jsonl every N steps (default: %(default)s)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")
    p.add_argument("--precision", choices=["auto", "fp32"], default="auto",
                   help="auto: bf16 autocast on CPUs that have it, AMP on CUDA (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--restart", action="store_true",
                   help="start afresh even if --out holds a checkpoint (it and the metrics are replaced)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Run (or resume) a training run; returns the exit status."""
    trainer = GanTrainer(args)
    try:
        return trainer.train()
    finally:
        trainer.close()


# ---------------------------------------------------------------- schedule


@dataclass
class Plan:
    """Where each stage ends (steps and seconds; None = no limit of that kind)."""

    epoch_steps: int
    end_steps: dict[str, int | None]
    end_seconds: dict[str, float | None]

    @classmethod
    def make(cls, args: argparse.Namespace, epoch_steps: int) -> Plan:
        init, fine = args.init_epochs, args.finetune_epochs
        if init < 0 or fine < 0:
            raise TrainingError("--init-epochs and --finetune-epochs cannot be negative.")
        ends: dict[str, int | None] = {"init": init * epoch_steps}
        if args.epochs is not None:
            if args.epochs < init + fine:
                raise TrainingError(f"--epochs {args.epochs} is less than --init-epochs ({init}) + --finetune-epochs "
                                    f"({fine}); give more epochs or fewer to those stages.")
            ends["adversarial"] = (args.epochs - fine) * epoch_steps
            ends["finetune"] = args.epochs * epoch_steps
        else:
            ends["adversarial"] = ends["finetune"] = None
        seconds: dict[str, float | None] = dict.fromkeys(STAGES)
        if args.minutes is not None:
            total = args.minutes * 60
            seconds = {"init": INIT_SHARE * total, "adversarial": (1 - FINETUNE_SHARE) * total, "finetune": total}
        return cls(epoch_steps, ends, seconds)

    def stage_done(self, stage: str, step: int, elapsed: float) -> bool:
        end_step, end_time = self.end_steps[stage], self.end_seconds[stage]
        return (end_step is not None and step >= end_step) or (end_time is not None and elapsed >= end_time)

    @property
    def total_steps(self) -> int | None:
        return self.end_steps["finetune"]


def learning_rate(base: float, epoch: int, halve_every: int) -> float:
    """``base`` halved every ``halve_every`` epochs (constant when 0)."""
    return base * 0.5 ** (epoch // halve_every) if halve_every > 0 else base


def finetune_names(model: nn.Module, arch: str) -> list[str]:
    """Names of the parameters that stage 3 trains (the rest is frozen)."""
    prefixes = FINETUNE_TRAINABLE[arch]
    return [name for name, _ in model.named_parameters() if name.startswith(prefixes)]


def set_trainable(model: nn.Module, names: list[str] | None) -> list[nn.Parameter]:
    """Freeze every parameter not in ``names`` (None: train all); the trainable ones."""
    keep = None if names is None else set(names)
    out = []
    for name, param in model.named_parameters():
        param.requires_grad_(keep is None or name in keep)
        if param.requires_grad:
            out.append(param)
    return out


# ---------------------------------------------------------------- the trainer


class GanTrainer:
    """Owns the models, optimisers, data and run folder of one GAN training run."""

    def __init__(self, args: argparse.Namespace) -> None:
        from . import anime_data, data, loop, perceptual

        if args.minutes is None and args.epochs is None and args.steps is None:
            raise TrainingError("Give a length: --minutes M, --epochs E (or --steps N for a short try).")
        if args.batch < 1 or args.size < 32:
            raise TrainingError("--batch must be at least 1 and --size at least 32 px.")
        Plan.make(args, 1)  # the epoch arithmetic is checked before any slow preparation
        self.args = args
        self.preset: Preset = PRESETS[args.preset]
        self.folder = loop.RunFolder(Path(args.out))
        resume = self.folder.has_checkpoint() and not args.restart
        checkpoint = self.folder.load_checkpoint() if resume else None
        if checkpoint is not None:
            old = checkpoint["settings"]
            for key in ("arch", "preset", "size"):
                if old[key] != getattr(args, key):
                    raise TrainingError(f"{args.out} holds a run with --{key} {old[key]}, not {getattr(args, key)}: "
                                        "resume it with the same setting or choose another --out.")
        self.device = loop.pick_device(args.device, args.precision)
        loop.seed_everything(args.seed)

        self.vgg = perceptual.VGGFeatures().to(self.device.device)  # stops here without the weights
        cache = Path(args.cache) if args.cache else Path(args.out) / "cache"
        self.anime = anime_data.prepare(args.anime, cache, side=args.anime_side or args.size, progress=not args.quiet)
        photos = data.load_photos(args.photos, photo_side=max(512, args.size), detect=not args.no_faces,
                                  cache_file=cache / "faces.json")
        face_weight = self.preset.face_content / self.preset.content
        self.sampler = data.CropSampler(photos, args.size, face_fraction=args.face_fraction,
                                        face_weight=face_weight, seed=args.seed)
        self.anime_rng = np.random.default_rng(args.seed + 1)
        self.fixed = loop.fixed_photos(photos, min(args.size, 256))
        epoch_steps = args.epoch_steps or max(1, max(len(photos), len(self.anime)) // args.batch)
        self.plan = Plan.make(args, epoch_steps)

        self.generator = self._generator(checkpoint).to(self.device.device)
        self.discriminator = self._discriminator(checkpoint).to(self.device.device)

        self.settings = {
            "command": "train", "arch": args.arch, "preset": args.preset, "size": args.size, "batch": args.batch,
            "photos": str(args.photos), "anime": str(args.anime), "anime_frames": len(self.anime),
            "anime_cache": str(self.anime.folder), "photo_count": len(photos),
            "face_photos": sum(1 for p in photos if p.faces), "epoch_steps": epoch_steps,
            "init_epochs": args.init_epochs, "finetune_epochs": args.finetune_epochs, "epochs": args.epochs,
            "minutes": args.minutes, "steps": args.steps, "generator": self.generator.config,
            "d_width": self.d_width,
            "loss_weights": self.preset.as_dict(), "device": self.device.describe(), "seed": args.seed,
        }
        self.folder.prepare(self.settings, resume=resume or args.restart)
        if args.restart:
            self.folder.metrics_path.unlink(missing_ok=True)
            self.folder.checkpoint_path.unlink(missing_ok=True)
        self.step, self.elapsed_before, self.stage = 0, 0.0, STAGES[0]
        self.stage_state: dict[str, Any] | None = None
        self._optimiser_stage: str | None = None
        if checkpoint is not None:
            self.generator.load_state_dict(checkpoint["generator"])
            self.discriminator.load_state_dict(checkpoint["discriminator"])
            self.sampler.load_state_dict(checkpoint["sampler"])
            self.anime_rng.bit_generator.state = checkpoint["anime_rng"]
            self.step, self.elapsed_before, self.stage = checkpoint["step"], checkpoint["elapsed"], checkpoint["stage"]
            self.stage_state = checkpoint.get("optimizers")
        self.resumed = checkpoint is not None

    # -- models -------------------------------------------------------------------------
    def _generator(self, checkpoint: dict | None) -> nn.Module:
        from ..models import Generator, LiteGenerator, build
        from ..weights import load_generator

        if checkpoint is not None:
            return build(checkpoint["settings"]["generator"])
        if self.args.init_from:
            model = load_generator(self.args.init_from)
            if model.config.get("architecture") != self.args.arch:
                raise TrainingError(f"--init-from {self.args.init_from} holds a {model.config.get('architecture')} "
                                    f"generator; pass --arch {model.config.get('architecture')} to train it.")
            return model.train().requires_grad_(True)
        if self.args.arch == "lite":
            return LiteGenerator(width=self.args.width, res_blocks=self.args.res_blocks)
        return Generator()

    def _discriminator(self, checkpoint: dict | None) -> nn.Module:
        from ..models.discriminator import Discriminator

        self.d_width = checkpoint["settings"]["d_width"] if checkpoint is not None else self.args.d_width
        return Discriminator(width=self.d_width)

    # -- optimisers per stage -----------------------------------------------------------
    def _optimisers(self, stage: str) -> None:
        p = self.preset
        if stage == "finetune":
            params = set_trainable(self.generator, finetune_names(self.generator, self.args.arch))
        else:
            params = set_trainable(self.generator, None)
        self.base_lr_g = p.lr_init if stage == "init" else p.lr_g
        fused = self.device.type in ("cpu", "cuda")  # one kernel per step, not one per tensor
        self.opt_g = torch.optim.Adam(params, lr=self.base_lr_g, betas=BETAS, fused=fused)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=p.lr_d, betas=BETAS, fused=fused)
        self.scaler_g, self.scaler_d = self.device.scaler(), self.device.scaler()
        if self.stage_state is not None and self.stage_state.get("stage") == stage:
            self.opt_g.load_state_dict(self.stage_state["opt_g"])
            self.opt_d.load_state_dict(self.stage_state["opt_d"])
            self.scaler_g.load_state_dict(self.stage_state["scaler_g"])
            self.scaler_d.load_state_dict(self.stage_state["scaler_d"])
        self.stage_state = None
        self._optimiser_stage = stage

    def _set_lr(self) -> tuple[float, float]:
        epoch = self.step // self.plan.epoch_steps
        lr_g = learning_rate(self.base_lr_g, epoch, self.preset.halve_every)
        lr_d = learning_rate(self.preset.lr_d, epoch, self.preset.halve_every)
        for group in self.opt_g.param_groups:
            group["lr"] = lr_g
        for group in self.opt_d.param_groups:
            group["lr"] = lr_d
        return lr_g, lr_d

    # -- one step of each kind ----------------------------------------------------------
    def _photos(self) -> tuple[torch.Tensor, torch.Tensor]:
        batch = self.sampler.batch(self.args.batch)
        dev = self.device.device
        return batch.images.to(dev, non_blocking=True), batch.weights.to(dev, non_blocking=True)

    def init_step(self) -> dict[str, float]:
        from .perceptual import weighted_l1

        x, weight = self._photos()
        with self.device.autocast():
            fake = self.generator(x)
            with torch.no_grad():
                target = self.vgg(x)
            content = weighted_l1(target, self.vgg(fake), weight, normalize=False)
        loss = self.preset.content * content
        self._backward(loss, self.opt_g, self.scaler_g)
        return {"g_total": loss.item(), "content": content.item()}

    def adversarial_step(self) -> dict[str, float]:
        from .gan_losses import (
            colour_histogram_loss,
            lsgan_d_loss,
            lsgan_g_loss,
            style_loss,
            tv_loss,
            yuv_colour_loss,
        )
        from .perceptual import weighted_l1

        p, dev = self.preset, self.device.device
        x, weight = self._photos()
        anime = {k: v.to(dev, non_blocking=True) for k, v in self.anime.sample(self.args.batch, self.args.size,
                                                                                self.anime_rng).items()}
        # Discriminator: real anime -> 1; generated, gray and edge-smoothed frames -> 0.
        self.discriminator.requires_grad_(True)
        with self.device.autocast():
            fake = self.generator(x)
            d_real = self.discriminator(anime["anime"])
            d_fake = self.discriminator(fake.detach())
            d_gray = self.discriminator(anime["anime_gray"])
            d_smooth = self.discriminator(anime["smooth_gray"])
        d_loss = p.adversarial * lsgan_d_loss(d_real, d_fake, d_gray, d_smooth, p.d_terms)
        self._backward(d_loss, self.opt_d, self.scaler_d)

        # Generator: look real to the updated discriminator, keep the photo, take the style.
        self.discriminator.requires_grad_(False)
        terms: dict[str, torch.Tensor] = {}
        with self.device.autocast():
            terms["adv"] = lsgan_g_loss(self.discriminator(fake))
            fake_feat = self.vgg(fake)
            with torch.no_grad():
                photo_feat = self.vgg(x)
                gray_feat = self.vgg(anime["anime_gray"])
            terms["content"] = weighted_l1(photo_feat, fake_feat, weight, normalize=False)
            terms["style"] = style_loss(fake_feat, gray_feat)
        if p.colour_yuv:
            terms["colour_yuv"] = yuv_colour_loss(x, fake)
        if p.colour_hist:
            terms["colour_hist"] = colour_histogram_loss(fake, anime["anime"])
        if p.tv:
            terms["tv"] = tv_loss(fake)
        weights = {"adv": p.adversarial, "content": p.content, "style": p.style, "colour_yuv": p.colour_yuv,
                   "colour_hist": p.colour_hist, "tv": p.tv}
        g_loss = sum(weights[k] * v for k, v in terms.items())
        self._backward(g_loss, self.opt_g, self.scaler_g)
        out = {"g_total": g_loss.item(), "d_total": d_loss.item()}
        out.update({k: v.item() for k, v in terms.items()})
        # The discriminator's mean logit per kind of input: real near 1, the rest near 0 when it wins.
        logits = {"d_real": d_real, "d_fake": d_fake, "d_gray": d_gray, "d_smooth": d_smooth}
        out.update({k: v.detach().float().mean().item() for k, v in logits.items()})
        return out

    @staticmethod
    def _backward(loss: torch.Tensor, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler) -> None:
        if not torch.isfinite(loss):
            raise TrainingError(f"The loss became {float(loss)}; lower the learning rate (another --preset) "
                                "or resume from the last checkpoint with --precision fp32.")
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    # -- the run ------------------------------------------------------------------------
    def train(self) -> int:
        """Run the remaining stages; 0 when finished or paused by --steps, 130 when stopped."""
        from . import loop

        total = self.plan.total_steps
        if self.args.steps is not None:
            total = self.args.steps if total is None else min(total, self.args.steps)
        budget = loop.Budget(steps=total, minutes=self.args.minutes)
        clock = loop.Clock(self.elapsed_before)
        progress = loop.Progress(budget, self.step, clock.elapsed, desc=self.stage,
                                 disable=True if self.args.quiet else None)
        start = f"resuming at step {self.step} ({self.stage})" if self.resumed else "starting"
        progress.write(f"train: {self.settings['photo_count']} photos ({self.settings['face_photos']} with faces), "
                       f"{len(self.anime)} anime frames ({'prepared earlier' if self.anime.reused else 'prepared'}), "
                       f"{self.plan.epoch_steps} steps per epoch, {self.device.describe()}; {start}")
        self.generator.train()
        self.discriminator.train()
        outcome = "finished"
        every = loop.Every(self.args.log_every, self.args.sample_every, self.args.checkpoint_every)
        steps = loop.Steps(self.step, every, progress, log=self._log, sample=lambda at: self.sample(),
                           checkpoint=lambda: self.save(clock.elapsed),
                           show=lambda v: {k: v[k] for k in ("g_total", "d_total") if k in v})
        self._clock = clock
        paused = self.args.steps is not None and (lambda at: at >= self.args.steps)

        def more(at: int) -> bool:
            return not self.plan.stage_done(self.stage, at, clock.elapsed) and not (paused and paused(at))

        try:
            with steps:
                while True:
                    self._optimisers(self.stage)
                    progress.bar.set_description(self.stage)
                    self.step = steps.run(more, self._one_step, lambda: clock.elapsed)
                    if steps.stopped:
                        outcome = "stopped"
                    elif not self.plan.stage_done(self.stage, self.step, clock.elapsed):
                        outcome = "paused (--steps)"  # the stage is not over: --steps was reached
                    if outcome != "finished" or self.stage == STAGES[-1]:
                        break
                    # The next stage starts from a checkpoint, so a resume never repeats or skips one.
                    self.stage = STAGES[STAGES.index(self.stage) + 1]
                    steps.checkpoint()
            if steps.stopped:
                outcome = "stopped"
        finally:
            progress.close()
        self.step = steps.step
        self.save(clock.elapsed)
        self.sample()
        again = "; run the same command to resume" if outcome != "finished" else ""
        print(f"train {outcome} at step {self.step} ({self.stage}) after {clock.elapsed / 60:.1f} min of training"
              f"{again}.\nModel: {self.folder.root}/ (config.json + model.safetensors); use it with: "
              f"animegan PHOTO --weights {self.folder.root}", file=sys.stderr)
        return 130 if outcome == "stopped" else 0

    def _one_step(self) -> dict:
        self._lr = self._set_lr()
        values = self.init_step() if self.stage == "init" else self.adversarial_step()
        self.step += 1  # the stage's step count, read by the learning-rate schedule and save()
        return values

    def _log(self, at: int, values: dict) -> None:
        lr_g, lr_d = self._lr
        self.folder.log(step=at, stage=self.stage, epoch=at // self.plan.epoch_steps,
                        elapsed=round(self._clock.elapsed, 2), lr_g=lr_g, lr_d=None if self.stage == "init" else lr_d,
                        **values)

    def save(self, elapsed: float) -> None:
        """Checkpoint (resume point: stage and step) and the model folder."""
        optimisers = None
        if self._optimiser_stage == self.stage:  # at a stage change the next stage makes its own
            optimisers = {
                "stage": self.stage, "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
                "scaler_g": self.scaler_g.state_dict(), "scaler_d": self.scaler_d.state_dict(),
            }
        self.folder.save_checkpoint({
            "step": self.step, "stage": self.stage, "elapsed": elapsed, "settings": self.settings,
            "generator": self.generator.state_dict(), "discriminator": self.discriminator.state_dict(),
            "optimizers": optimisers, "sampler": self.sampler.state_dict(),
            "anime_rng": self.anime_rng.bit_generator.state,
        })
        self.folder.save_model(self.generator)

    def sample(self) -> None:
        from . import loop

        self.generator.eval()
        rows = []
        with torch.no_grad():
            for x in self.fixed:
                out = self.generator(x.to(self.device.device))
                rows.append([loop.to_image(x[0]), loop.to_image(out[0])])
        self.generator.train()
        title = f"step {self.step}, {self.stage}"  # short: a 64 px sheet is 128 px wide
        self.folder.save_sheet(loop.sample_sheet(rows, ["photo", "output"], title), self.step)

    def close(self) -> None:
        self.folder.close()
