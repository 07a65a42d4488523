"""Fine-tune a finished distill run on other data and score it: does the data, not the
step count, hold the student back? (the trials in benchmarks/results/distill-trials.md)

    python benchmarks/bench_distill_finetune.py --start benchmarks/runs/distill --size 128 --batch 16 \
        --pool 512 --refresh 3                    # control: more of the same crops
    ... --size 256 --batch 4 --pool 128 --refresh 0.75   # larger crops (more of the teacher's context)
    ... --synth 0.25                              # a quarter of the crops "dead leaves" shapes
    python benchmarks/bench_distill_finetune.py --context    # the teacher on crops vs on whole photos

The run's saved model (its weight average) trains --steps more steps with L1 at a low,
cosine-decayed learning rate on a fresh pool of teacher-labelled crops of the 5 training
photos; then the PSNR against the teacher (512 px, full photos) on the validation and
unseen photos is printed as JSON, like bench_distill's figures.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_distill import ROOT, TEACHER, TRAIN, WEIGHTS, fidelity  # noqa: E402  (it puts the repo on the path)

from animegan.train.data import Augment, CropSampler, load_photos  # noqa: E402
from animegan.train.distill import EMA, Pool, teacher_labeller  # noqa: E402
from animegan.train.loop import pick_device  # noqa: E402
from animegan.train.perceptual import weighted_l1  # noqa: E402
from animegan.weights import load_generator  # noqa: E402


def dead_leaves(size: int, rng: np.random.Generator, photos: list) -> np.ndarray:
    """Overlapping discs and rectangles (radii ~ 1/r^3), colours drawn from a photo's pixels."""
    px = photos[int(rng.integers(len(photos)))].pixels

    def colour() -> tuple[int, ...]:
        return tuple(int(v) for v in px[rng.integers(px.shape[0]), rng.integers(px.shape[1])])

    img = Image.new("RGB", (size, size), colour())
    draw = ImageDraw.Draw(img)
    rmin, rmax = 2, size / 2
    for _ in range(int(rng.integers(60, 200))):
        r = (rmin**-2 + rng.random() * (rmax**-2 - rmin**-2)) ** -0.5
        cx, cy = rng.uniform(-r, size + r, 2)
        box = [cx - r, cy - r * rng.uniform(0.5, 1.5), cx + r, cy + r * rng.uniform(0.5, 1.5)]
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)(box, fill=colour())
    if rng.random() < 0.7:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    arr = np.asarray(img, dtype=np.float32) + rng.normal(0, rng.uniform(0, 6), (size, size, 1))
    return np.clip(arr, 0, 255).astype(np.uint8)


class SynthSampler(CropSampler):
    """CropSampler whose random crops are dead-leaves pictures ``share`` of the time."""

    share = 0.0

    def random_crop(self) -> tuple[np.ndarray, np.ndarray, bool]:
        if self.rng.random() < self.share:
            return dead_leaves(self.size, self.rng, self.photos), np.ones((self.size, self.size), np.float32), False
        return super().random_crop()


def score(teacher: torch.nn.Module, model: torch.nn.Module) -> dict:
    """bench_distill's figure (PSNR against the teacher, 512 px) on the validation and unseen photos."""
    rows, _ = fidelity(teacher, model.eval(), ["validation", "unseen"])
    out = {}
    for name in ("validation", "unseen"):
        vals = [db for set_name, _, _, db in rows if set_name == name]
        out[name] = {"median": round(statistics.median(vals), 2), "mean": round(statistics.mean(vals), 2),
                     "photos": [round(v, 2) for v in vals]}
    return out


def context(teacher: torch.nn.Module, model: torch.nn.Module) -> None:
    """How much the teacher's output depends on the rest of the picture: per unseen photo,
    the teacher on a crop against the teacher on the whole photo (same pixels; all of the
    crop, and its centre half), and the student against the teacher, both on the crop;
    means over 4 crops (corners and centre)."""
    from bench_distill import HELD_OUT, photos, run_torch

    from animegan import images
    from animegan.backends import psnr

    print("photo | size | teacher crop vs whole: all, centre half | student vs teacher on the crop")
    for name, img in photos(HELD_OUT / "unseen").items():
        x = images.to_array(img)
        whole = run_torch(teacher, x)
        h, w = x.shape[-2:]
        for cs in (128, 256):
            m = cs // 4
            rows = []
            for i, j in ((0, 0), (h - cs, w - cs), ((h - cs) // 2, (w - cs) // 2), (0, w - cs)):
                crop = x[..., i : i + cs, j : j + cs]
                t, s, ref = run_torch(teacher, crop), run_torch(model, crop), whole[..., i : i + cs, j : j + cs]
                rows.append((psnr(t, ref), psnr(t[..., m:-m, m:-m], ref[..., m:-m, m:-m]), psnr(s, t)))
            means = np.mean(rows, axis=0)
            print(f"{name} | {cs} px | {means[0]:.2f}, {means[1]:.2f} dB | {means[2]:.2f} dB")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--start", type=Path, default=ROOT / "benchmarks" / "runs" / "distill", help="a distill run folder")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--pool", type=int, default=512)
    p.add_argument("--refresh", type=float, default=3.0)
    p.add_argument("--lr", type=float, default=4e-4)
    p.add_argument("--scale", default="0.3,1.5", help="crop scale range (distill's is 0.3,1.5)")
    p.add_argument("--synth", type=float, default=0.0, help="share of random crops that are dead-leaves pictures")
    p.add_argument("--evaluate-only", action="store_true")
    p.add_argument("--context", action="store_true", help="the teacher's crop-vs-whole-photo figures, then stop")
    a = p.parse_args()
    torch.manual_seed(0)
    teacher = load_generator(TEACHER).eval()
    student = load_generator(a.start)
    if a.context:
        context(teacher, student)
        return
    if a.evaluate_only:
        print(json.dumps(score(teacher, student)))
        return
    label, _ = teacher_labeller(teacher, pick_device("cpu", "fp32"))
    photos = load_photos(TRAIN, photo_side=512)
    lo, hi = map(float, a.scale.split(","))
    SynthSampler.share = a.synth
    sampler = SynthSampler(photos, a.size, scale=(lo, hi), seed=1, augment=Augment())
    start = time.perf_counter()
    pool = Pool(sampler, label, a.pool, say=lambda _: None)
    label_s = time.perf_counter() - start
    student = student.to(memory_format=torch.channels_last).train().requires_grad_(True)
    ema = EMA(student, 0.99)
    opt = torch.optim.Adam(student.parameters(), lr=a.lr, betas=(0.9, 0.99))
    draw = torch.Generator().manual_seed(0)
    owed, start = 0.0, time.perf_counter()
    for step in range(a.steps):
        for group in opt.param_groups:
            group["lr"] = a.lr * 0.5 * (1 + math.cos(math.pi * step / a.steps))
        x, y, w = (t.contiguous(memory_format=torch.channels_last) for t in pool.draw(a.batch, 0.3, draw))
        loss = weighted_l1(student(x), y, w)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update(student)
        owed += a.refresh
        pool.refresh(int(owed))
        owed -= int(owed)
    print(json.dumps({"settings": {k: str(v) for k, v in vars(a).items()}, "label_s": round(label_s, 1),
                      "train_s": round(time.perf_counter() - start, 1), **score(teacher, ema.model)}))


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(WEIGHTS, ignore_errors=True)  # bench_distill's weights folder, made on import
