"""Inference backends behind one small interface, their automatic choice, thread
settings and the allocator setting that makes PyTorch fast on big images.

A backend is a callable: 1 x 3 x H x W float32 array in [-1, 1] -> the same shape,
with a ``name``. The backends, fastest first on a CPU with VNNI and native bf16:

==================  ===========================================  ====================
name                what                                         fidelity vs float32
==================  ===========================================  ====================
``openvino-int8``   OpenVINO, int8 convolutions calibrated on    >= 38 dB (checked
                    real photos, the rest bf16 (or f32)          at build time)
``torch-bf16``      PyTorch eager, bf16 autocast, channels_last  ~55 dB
                    (only where the CPU has native bf16)
``torch-fp32``      PyTorch eager float32, channels_last         exact (same maths)
==================  ===========================================  ====================

``auto`` (the default) loads the int8 model at once when it is cached on disk for these
weights; otherwise it serves from PyTorch straight away while a background thread
builds the int8 model (once, then cached), and switches to it when its output on the
calibration photos stays >= 38 dB against float32.
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from .models import Generator

log = logging.getLogger("animegan")

BACKEND_ENV = "ANIMEGAN_BACKEND"
MIN_PSNR = 38.0  # dB against float32: below this a person may tell the outputs apart

# One inference at a time per process: each pass already uses every core, so two at
# once would only oversubscribe them and make both slower.
INFERENCE_LOCK = threading.Lock()

# Background builds stop at their next step when the process exits (a half-built
# artefact is simply not saved), instead of being killed inside native code.
SHUTDOWN = threading.Event()
_BACKGROUND: list[threading.Thread] = []


class Cancelled(RuntimeError):
    """A background build stopped because the process is exiting."""


def background_pause() -> None:
    """Between steps of a background build: stop if the process exits, and give any
    request waiting for INFERENCE_LOCK the next turn (requests go first)."""
    if SHUTDOWN.is_set():
        raise Cancelled("the process is exiting")
    time.sleep(0.02)


@atexit.register
def _stop_background() -> None:
    SHUTDOWN.set()
    for thread in _BACKGROUND:
        thread.join(timeout=60)


# -- allocator ------------------------------------------------------------------------
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
_GLIBC_DEFAULT = 128 * 1024  # glibc's initial mmap and trim thresholds


def _libc():
    if os.environ.get("ANIMEGAN_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") else None  # glibc only (not musl)


def tune_allocator(keep_big_blocks: bool = True) -> bool:
    """Keep big blocks in glibc malloc's heap instead of mmap-ing them afresh.

    PyTorch eager allocates and frees activations of tens to hundreds of MB per layer.
    glibc serves blocks that big with mmap and returns them at once, so every layer
    page-faults its memory in again, which makes normalisation and padding about twice
    as slow (a pass at 512 x 512: 2.1 s -> 1.2 s here). Done in the process itself, it
    holds wherever the package runs (a Space included), not only in one shell:
    - one arena: threads other than the main one (Gradio's workers) would otherwise get
      their own 64 MB arenas, which cannot hold such blocks and fall back to mmap;
    - blocks up to 1 GB come from the heap, and freed memory is kept for the next pass.
    OpenVINO plans its own memory once per shape and does not need this; keeping freed
    blocks would only raise its peak RSS, so ``keep_big_blocks=False`` (used when an
    OpenVINO backend takes over) gives big blocks back to mmap.
    Set ANIMEGAN_MALLOC=0 to leave the allocator alone.
    """
    libc = _libc()
    if libc is None:
        return False
    ok = libc.mallopt(_M_ARENA_MAX, 1) == 1
    threshold = (1 << 30) if keep_big_blocks else _GLIBC_DEFAULT
    ok &= libc.mallopt(_M_MMAP_THRESHOLD, threshold) == 1
    ok &= libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) if keep_big_blocks else _GLIBC_DEFAULT) == 1
    if not keep_big_blocks:
        libc.malloc_trim(0)
    return bool(ok)


ALLOCATOR_TUNED = tune_allocator()


# -- CPU and threads -------------------------------------------------------------------
def available_cpus() -> int:
    """CPUs this process may really use: its affinity mask, capped by a cgroup quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, int(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    cap = os.environ.get("ANIMEGAN_THREADS", "")  # a share of the machine: a batch worker's, say
    if cap.isdigit() and int(cap) > 0:
        cpus = min(cpus, int(cap))
    return max(1, cpus)


def configure_threads(threads: int | None = None) -> int:
    n = threads or available_cpus()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


def cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo); empty where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16() -> bool:
    """True when the CPU computes bf16 in hardware (AVX512-BF16 or AMX), so bf16 is a
    speed-up rather than a slow emulation. Detected at run time, never assumed."""
    if os.environ.get("ANIMEGAN_NO_BF16") == "1":
        return False
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"}) and torch.backends.mkldnn.is_available()


# -- the interface and the PyTorch backends --------------------------------------------------
class Backend(Protocol):
    name: str

    def __call__(self, x: np.ndarray) -> np.ndarray: ...


class BackendUnavailable(RuntimeError):
    """This backend cannot run here (missing package, CPU without the instructions)."""


class TorchBackend:
    """PyTorch eager float32; channels_last memory layout (faster convs, same maths, but
    the summation order differs, so a few pixels may differ by one 8-bit level)."""

    name = "torch-fp32"
    memory_format = torch.channels_last

    def __init__(self, model: Generator) -> None:
        self.model = model.to(memory_format=self.memory_format)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            t = torch.from_numpy(x).contiguous(memory_format=self.memory_format)
            return self.model(t).contiguous().numpy()


class ExactBackend(TorchBackend):
    """PyTorch eager float32 NCHW: the published demo's computation, pixel for pixel
    (channels_last sums in another order, so a few pixels may differ by one level)."""

    name = "torch-exact"
    memory_format = torch.contiguous_format


class TorchBF16Backend(TorchBackend):
    """PyTorch eager with bf16 autocast, channels_last."""

    name = "torch-bf16"

    def __init__(self, model: Generator) -> None:
        if not native_bf16():
            raise BackendUnavailable("torch-bf16 needs a CPU with native bf16 (AVX512-BF16 or AMX).")
        super().__init__(model)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            t = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            return self.model(t).float().contiguous().numpy()


def _openvino_int8(model: Generator) -> Backend:
    try:
        from .ovgraph import load_or_build_int8
    except ImportError as exc:
        raise BackendUnavailable(f"the openvino package is not installed ({exc})") from None
    return load_or_build_int8(model)


# Fastest first: the order ``auto`` tries them in (benchmarks/results/speed.md).
BACKENDS: dict[str, Callable[[Generator], Backend]] = {
    "openvino-int8": _openvino_int8,
    "torch-bf16": TorchBF16Backend,
    "torch-fp32": TorchBackend,
    "torch-exact": ExactBackend,
}


# -- fidelity ----------------------------------------------------------------------------
def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB between two generator outputs, compared as the 8-bit images a person sees."""
    from .images import from_array

    x = np.asarray(from_array(a), dtype=np.float64)
    y = np.asarray(from_array(b), dtype=np.float64)
    mse = float(np.mean((x - y) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def calibration_photos(max_side: int = 512) -> list[np.ndarray]:
    """The real photos shipped for calibration (public domain / CC0), as network inputs."""
    from . import images

    folder = Path(__file__).parent / "calibration"
    out = []
    for path in sorted(folder.glob("*.jpg")):
        img = images.decode(path).rgb
        out.append(images.to_array(images.resize(img, images.fit_size(img.size, max_side))))
    return out


# -- automatic choice ------------------------------------------------------------------------
class AutoBackend:
    """Serves from the best backend ready now and upgrades itself in the background.

    If the int8 model for these weights is already cached on disk, it is loaded at once
    (about a second). Otherwise requests start on float32 (exact, nothing to build)
    while a background thread checks bf16 on a calibration photo (a second) and
    switches to it, then builds the int8 model once (tens of seconds, then cached) and
    switches to it when its output stays >= 38 dB against float32. Requests never wait
    for the build as a whole: it takes the inference lock one photo at a time and lets
    waiting requests go first.
    """

    def __init__(self, model: Generator, background: bool = True) -> None:
        self._model = model
        self._current: Backend = TorchBackend(model)
        self.ready = threading.Event()  # set when no further switch will happen
        self.notes: list[str] = []
        cached = _cached_int8(model)
        if cached is not None and self._accept_int8(cached):
            self.ready.set()
        elif background:
            thread = threading.Thread(target=self._upgrade, name="animegan-backend", daemon=True)
            _BACKGROUND.append(thread)
            thread.start()
        else:
            self._upgrade()

    @property
    def name(self) -> str:
        return self._current.name

    @property
    def current(self) -> Backend:
        return self._current

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._current(x)

    def _upgrade(self) -> None:
        try:
            if native_bf16():
                self._try_bf16()
            self._try_int8()
        except Cancelled:
            pass
        except Exception as exc:  # never let an optimisation break the service
            self.notes.append(f"backend upgrade stopped: {exc}")
            log.warning("animegan: backend upgrade stopped: %s", exc)
        finally:
            self.ready.set()

    def _try_bf16(self) -> None:
        bf16 = TorchBF16Backend(self._model)
        x = calibration_photos(256)[0]
        background_pause()
        with INFERENCE_LOCK:
            ref, out = self._current(x), bf16(x)
        quality = psnr(out, ref)
        self.notes.append(f"torch-bf16: {quality:.1f} dB on a calibration photo")
        if quality >= MIN_PSNR:
            self._current = bf16

    def _try_int8(self) -> None:
        background_pause()
        try:
            int8 = _openvino_int8(self._model)
        except BackendUnavailable as exc:
            self.notes.append(f"openvino-int8 unavailable: {exc}")
            return
        self._accept_int8(int8)

    def _accept_int8(self, int8) -> bool:
        ok = int8.min_psnr >= MIN_PSNR
        self.notes.append(f"openvino-int8: {int8.min_psnr:.1f} dB worst on the calibration photos"
                          + ("" if ok else f", under {MIN_PSNR:.0f} dB: not used"))
        if ok:
            with INFERENCE_LOCK:
                self._current = int8
                tune_allocator(keep_big_blocks=False)
        return ok


def _cached_int8(model: Generator) -> Backend | None:
    """The int8 backend if its artefact is already on disk (cheap), else None."""
    try:
        from .ovgraph import load_cached_int8
    except ImportError:
        return None
    try:
        return load_cached_int8(model)
    except Exception as exc:  # a damaged cache: rebuild in the background
        log.warning("animegan: cached int8 model unusable (%s); rebuilding", exc)
        return None


def make_backend(model: Generator, name: str | None = None, background: bool = True) -> Backend:
    """The named backend, or ``auto`` (the default; also ``$ANIMEGAN_BACKEND``)."""
    name = name or os.environ.get(BACKEND_ENV) or "auto"
    configure_threads()
    if name == "auto":
        return AutoBackend(model, background=background)
    try:
        factory = BACKENDS[name]
    except KeyError:
        raise ValueError(f"Unknown backend {name!r}; choose one of: auto, {', '.join(BACKENDS)}.") from None
    try:
        backend = factory(model)
    except BackendUnavailable as exc:
        raise ValueError(f"Backend {name!r} cannot run here: {exc}") from None
    tune_allocator(keep_big_blocks=name.startswith("torch"))
    return backend
