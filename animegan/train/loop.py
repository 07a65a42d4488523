"""What every training run shares: the device and precision, the run folder (model,
resumable checkpoints, metrics, sample sheets), the time/step budget and the progress bar.

A run folder ``OUT/`` holds:

- ``config.json`` + ``model.safetensors``: the generator (huggingface_hub's mixin), loadable
  with ``animegan.load_generator(OUT)`` and usable as ``animegan --weights OUT``;
- ``checkpoints/last.pt``: everything needed to resume (models, optimizers, grad scaler,
  step, elapsed time, RNG states, the run's settings); written atomically;
- ``metrics.jsonl``: one JSON object per logged step;
- ``samples/step_<step>.png`` (and ``samples/latest.png``): a sheet on fixed photos;
- ``run.json``: the settings the run was started with.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn
from tqdm import tqdm

from . import TrainingError

CHECKPOINT = "checkpoints/last.pt"


# -- device and precision -------------------------------------------------------------
@dataclass(frozen=True)
class Device:
    """Where training runs and in which precision.

    ``cuda``: autocast fp16 with a GradScaler (bf16 without one where the GPU has it);
    ``cpu``: bf16 autocast on CPUs with native bf16 (AVX512-BF16 / AMX), else float32.
    """

    device: torch.device
    amp_dtype: torch.dtype | None

    @property
    def type(self) -> str:
        return self.device.type

    def autocast(self) -> AbstractContextManager:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def scaler(self) -> torch.amp.GradScaler:
        """A GradScaler, enabled only for fp16 (bf16 and fp32 need none)."""
        return torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype == torch.float16)

    def describe(self) -> str:
        precision = {None: "float32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast + grad scaling"}
        name = torch.cuda.get_device_name(self.device) if self.type == "cuda" else "CPU"
        return f"{self.type} ({name}), {precision[self.amp_dtype]}"


def pick_device(name: str = "auto", precision: str = "auto") -> Device:
    """``auto``: CUDA when a GPU is there, else the CPU. ``precision``: auto | fp32."""
    from .. import runtime

    rt = runtime.get()
    if name not in {"auto", "cpu", "cuda"}:
        raise TrainingError(f"--device must be auto, cpu or cuda, not {name!r}.")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainingError("--device cuda: no CUDA GPU is visible to PyTorch (use --device cpu or auto).")
    use_cuda = name == "cuda" or (name == "auto" and torch.cuda.is_available())
    if use_cuda:
        dev = torch.device("cuda")
        rt.tune_cuda()
        amp = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        rt.engage()
        dev = torch.device("cpu")
        amp = torch.bfloat16 if rt.native_bf16 else None
    return Device(dev, None if precision == "fp32" else amp)


# -- budget and progress ------------------------------------------------------------------
@dataclass
class Budget:
    """Stop after ``steps`` steps or ``minutes`` of training time (across resumes)."""

    steps: int | None = None
    minutes: float | None = None

    def __post_init__(self) -> None:
        if self.steps is None and self.minutes is None:
            raise TrainingError("Give a budget: --minutes M or --steps N.")

    def done(self, step: int, elapsed: float) -> bool:
        if self.steps is not None and step >= self.steps:
            return True
        return self.minutes is not None and elapsed >= self.minutes * 60

    def fraction(self, step: int, elapsed: float) -> float:
        parts = []
        if self.steps:
            parts.append(step / self.steps)
        if self.minutes:
            parts.append(elapsed / (self.minutes * 60))
        return min(1.0, max(parts)) if parts else 0.0

    def seconds_left(self, step: int, elapsed: float, start_step: int, start_elapsed: float) -> float | None:
        left = []
        if self.minutes is not None:
            left.append(max(0.0, self.minutes * 60 - elapsed))
        if self.steps is not None and step > start_step:
            rate = (elapsed - start_elapsed) / (step - start_step)
            left.append(max(0, self.steps - step) * rate)
        return min(left) if left else None


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else \
        f"{seconds // 60:02d}:{seconds % 60:02d}"


class Progress:
    """A tqdm bar over the budget: steps (or minutes), the loss, the time left."""

    def __init__(self, budget: Budget, step: int, elapsed: float, desc: str = "training",
                 disable: bool | None = None) -> None:
        self.budget, self.start_step, self.start_elapsed = budget, step, elapsed
        total = budget.steps if budget.steps is not None else None
        self.bar = tqdm(total=total, initial=step, desc=desc, unit="step", dynamic_ncols=True, disable=disable,
                        bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]" if total else
                        "{desc}: {n_fmt} steps [{elapsed}{postfix}]")

    def update(self, step: int, elapsed: float, **values: float) -> None:
        left = self.budget.seconds_left(step, elapsed, self.start_step, self.start_elapsed)
        shown = {k: f"{v:.4f}" if isinstance(v, float) else v for k, v in values.items()}
        shown["left"] = _clock(left)
        self.bar.set_postfix(shown, refresh=False)
        self.bar.update(step - self.bar.n)

    def write(self, text: str) -> None:
        self.bar.write(text)

    def close(self) -> None:
        self.bar.close()


# -- RNG state --------------------------------------------------------------------------------
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


# -- the run folder ------------------------------------------------------------------------------
@dataclass
class RunFolder:
    """Paths and writers of one run's output folder (see the module's docstring)."""

    root: Path
    _metrics_file: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root)

    @property
    def checkpoint_path(self) -> Path:
        return self.root / CHECKPOINT

    @property
    def metrics_path(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def samples_dir(self) -> Path:
        return self.root / "samples"

    def has_checkpoint(self) -> bool:
        return self.checkpoint_path.is_file()

    def prepare(self, settings: dict[str, Any], resume: bool) -> None:
        """Create the folder; refuse to mix a new run into an old one's files."""
        if self.root.exists() and not self.root.is_dir():
            raise TrainingError(f"{self.root} exists and is not a folder.")
        if not resume and self.root.is_dir() and (self.metrics_path.exists() or self.has_checkpoint()):
            raise TrainingError(f"{self.root} already holds a run; resume it (the default when a checkpoint "
                                "is there) or choose another --out.")
        self.root.mkdir(parents=True, exist_ok=True)
        self.samples_dir.mkdir(exist_ok=True)
        (self.root / "run.json").write_text(json.dumps(settings, indent=2, sort_keys=True, default=str))

    # -- model and checkpoints -------------------------------------------------------------------
    def save_model(self, model: nn.Module) -> None:
        """config.json + model.safetensors in the run folder (huggingface_hub's mixin), on the CPU."""
        was_training = model.training
        state = {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}
        from ..models.registry import build

        cpu_model = build(model.config)
        cpu_model.load_state_dict(state, strict=True)
        tmp = self.root / ".model-tmp"
        cpu_model.save_pretrained(tmp)
        for name in ("model.safetensors", "config.json", "README.md"):
            if (tmp / name).exists():
                os.replace(tmp / name, self.root / name)
        tmp.rmdir()
        model.train(was_training)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        """Atomically write checkpoints/last.pt (RNG states are added here)."""
        path = self.checkpoint_path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({**state, "rng": rng_state()}, tmp)
        os.replace(tmp, path)

    def load_checkpoint(self) -> dict[str, Any]:
        try:
            # Our own file, written by save_checkpoint: it holds numpy RNG state and plain
            # Python values besides tensors, so it is not a weights-only pickle.
            state = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        except Exception as exc:
            raise TrainingError(f"Cannot read the checkpoint {self.checkpoint_path}: {exc}") from None
        set_rng_state(state["rng"])
        return state

    # -- metrics and samples ------------------------------------------------------------------------
    def log(self, **values: Any) -> None:
        if self._metrics_file is None:
            self._metrics_file = open(self.metrics_path, "a", encoding="utf-8")  # noqa: SIM115
        self._metrics_file.write(json.dumps(values) + "\n")
        self._metrics_file.flush()

    def read_metrics(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def save_sheet(self, sheet: Image.Image, step: int) -> Path:
        path = self.samples_dir / f"step_{step:06d}.png"
        sheet.save(path)
        sheet.save(self.samples_dir / "latest.png")
        return path

    def close(self) -> None:
        if self._metrics_file is not None:
            self._metrics_file.close()
            self._metrics_file = None


# -- sample sheets ----------------------------------------------------------------------------------
def to_image(t: torch.Tensor) -> Image.Image:
    """3 x H x W (or 1 x 3 x H x W) in [-1, 1] -> RGB image (the stylizer's conversion)."""
    from ..images import from_array

    return from_array(t.detach().float().cpu().numpy())


def sample_sheet(rows: Sequence[Sequence[Image.Image]], labels: Sequence[str], title: str = "") -> Image.Image:
    """A grid: one row per fixed photo, one column per label (e.g. photo | teacher | student)."""
    cell_w = max(img.width for row in rows for img in row)
    heights = [max(img.height for img in row) for row in rows]  # each row as tall as its pictures
    head = 18
    top = head * (2 if title else 1)
    sheet = Image.new("RGB", (cell_w * len(labels), top + sum(heights)), "white")
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((4, 3), title, fill="black")
    for c, label in enumerate(labels):
        draw.text((c * cell_w + 4, top - head + 3), label, fill="black")
    y = top
    for row, height in zip(rows, heights, strict=True):
        for c, img in enumerate(row):
            sheet.paste(img, (c * cell_w, y))
        y += height
    return sheet


def fixed_photos(photos: Sequence, size: int, count: int = 4) -> list[torch.Tensor]:
    """Up to ``count`` whole photos (the first ones, faces first) scaled to ``size`` on the
    long side, as 1 x 3 x h x w tensors in [-1, 1], for sample sheets."""
    from .. import images

    chosen = sorted(photos, key=lambda p: not p.faces)[:count]
    out = []
    for p in chosen:
        img = Image.fromarray(p.pixels)
        img = images.resize(img, images.fit_size(img.size, size))
        out.append(torch.from_numpy(images.to_array(img)))
    return out


class Clock:
    """Training time that survives resumes: ``elapsed`` = time before + time this session."""

    def __init__(self, before: float = 0.0) -> None:
        self.before = before
        self.start = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return self.before + time.perf_counter() - self.start


# -- the run loop ---------------------------------------------------------------------------------
SAVE_SECONDS = 300  # a checkpoint at least this often, whatever --checkpoint-every says


@dataclass(frozen=True)
class Every:
    """How often a run writes: a metrics line, a sample sheet, a checkpoint (in steps)."""

    log: int
    sample: int
    checkpoint: int


class Steps:
    """The one training loop, shared by ``distill`` and ``train``: steps until there is no
    more to do or the run is stopped, with the run folder's rhythm around them.

    ``run(more, one, elapsed)`` calls ``one()`` (a training step, returning its values) while
    ``more(step)`` holds, counting ``step``; after each step it moves the progress bar and
    calls ``log(step, values)`` every ``every.log`` steps (and at the last),
    ``sample(step)`` every ``every.sample`` and ``checkpoint()`` every ``every.checkpoint``
    steps and at least every SAVE_SECONDS. Ctrl-C or SIGTERM (a cluster's pre-emption, a Space's restart)
    stops it after the step under way: ``stopped`` is set and the caller saves and
    says how to resume. Use it as a context manager (the SIGTERM handler is the run's
    while it lasts, then given back).
    """

    def __init__(self, step: int, every: Every, progress: Progress, *, log: Callable[[int, dict], None],
                 sample: Callable[[int], None], checkpoint: Callable[[], None],
                 show: Callable[[dict], dict] = lambda values: {}) -> None:
        self.step = step  # steps done, resumed ones included
        self.every, self.progress = every, progress
        self._log, self._sample, self._checkpoint, self._show = log, sample, checkpoint, show
        self.stopped = False
        self._saved = time.perf_counter()
        self._old_handler = None

    def __enter__(self) -> Steps:
        import signal

        self._old_handler = signal.signal(signal.SIGTERM, lambda *_: self.stop())
        return self

    def __exit__(self, *exc) -> bool:
        import signal

        signal.signal(signal.SIGTERM, self._old_handler)
        if exc[0] is KeyboardInterrupt:
            self.progress.write("interrupted: saving a checkpoint (run the same command again to resume)")
            self.stopped = True
            return True  # the caller saves, as after a SIGTERM
        return False

    def stop(self) -> None:
        self.stopped = True

    def checkpoint(self) -> None:
        self._checkpoint()
        self._saved = time.perf_counter()

    def run(self, more: Callable[[int], bool], one: Callable[[], dict], elapsed: Callable[[], float]) -> int:
        """Train while ``more(step)`` and not stopped; the step reached."""
        while more(self.step) and not self.stopped:
            values = one()
            self.step += 1
            step = self.step
            self.progress.update(step, elapsed(), **self._show(values))
            if step % self.every.log == 0 or not more(step):
                self._log(step, values)
            if step % self.every.sample == 0:
                self._sample(step)
            if step % self.every.checkpoint == 0 or time.perf_counter() - self._saved > SAVE_SECONDS:
                self.checkpoint()
        return self.step
