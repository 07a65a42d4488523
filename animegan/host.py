"""What this process runs on: CPUs, thread counts, native bf16, the allocator setting,
and the one lock that lets a single inference use every core at a time.

Nothing here acts at import; the allocator is tuned when the first PyTorch backend is
made (``backends.make_backend``) and relaxed when OpenVINO takes over.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from pathlib import Path

# One inference at a time per process: each pass already uses every core, so two at
# once would only oversubscribe them and make both slower. The Stylizer takes it around
# every model pass and face detection; background builds take it one photo at a time.
INFERENCE_LOCK = threading.Lock()


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
    return max(1, cpus)


def configure_threads(threads: int | None = None) -> int:
    """PyTorch's intra-op threads = the CPUs this process may use (or ``threads``)."""
    import torch

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


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), for reports; "this CPU" where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "this CPU"


def native_bf16(disabled: bool = False) -> bool:
    """True when the CPU computes bf16 in hardware (AVX512-BF16 or AMX), so bf16 is a
    speed-up rather than a slow emulation. Detected at run time, never assumed;
    ``disabled`` (``Settings.no_bf16``) answers False."""
    import torch

    if disabled:
        return False
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"}) and torch.backends.mkldnn.is_available()


# -- allocator ------------------------------------------------------------------------
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
_GLIBC_DEFAULT = 128 * 1024  # glibc's initial mmap and trim thresholds


def _libc():
    if not sys.platform.startswith("linux"):
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
    Callers skip this when ``Settings.malloc`` is off (ANIMEGAN_MALLOC=0).
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
