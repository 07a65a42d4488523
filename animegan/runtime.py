"""The one owner of everything process-wide: a library that runs inside other people's
processes (a Space, a notebook, a Ray worker, a test run) changes process state only here.

A :class:`Runtime` is made from :class:`~animegan.settings.Settings` (``get()``; the
entry points call ``start(settings)`` once) and handed to whatever needs it: the
Stylizer, the backends, the tiles, the gallery, the batch workers. It owns

- the **machine profile** (:class:`animegan.host.Machine`: CPU model and instruction
  sets, usable CPUs from affinity and cgroup quota, memory from cgroup and /proc/meminfo);
- **threads**: PyTorch's intra-op threads, set once, and the thread count OpenVINO and
  ONNX Runtime are configured with;
- the **inference lock**: one model pass at a time per process (each pass already uses
  every core; two at once only make both slower). Foreground work takes it with
  :meth:`Runtime.inference`; background builds with :meth:`Runtime.background`, which
  lets foreground work go first;
- the **allocator policy** (glibc malloc): decided pass by pass by what runs, so nothing
  else ever calls mallopt;
- the **OpenVINO Core** and its configuration;
- the **artefact folder** (int8 models, thumbnails, backend choices) and the **Hub options**
  (cache, endpoint, offline mode) every download uses;
- the **memory budget** big pictures are tiled to fit;
- the styles registered at run time and any other process-wide object
  (:meth:`Runtime.shared`: the MTCNN detector, the Stylizer behind ``animegan.stylize``).

Every Runtime of a process shares the same process-wide part (one lock, one allocator
owner, one OpenVINO Core, one thread setting); ``get(settings)`` with other settings
gives a Runtime for those settings over the same process (its own artefact folder, Hub
options and budget). Nothing here acts at import; threads and the allocator's arena are
set when the first model is made (:meth:`Runtime.engage`).
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from .host import Machine
from .settings import Settings

T = TypeVar("T")

DEFAULT_BUDGET_SHARE = 0.25  # of the machine's memory, when ANIMEGAN_MEMORY_BUDGET is not set
MIN_BUDGET = 1 << 30
BACKGROUND_GAP = 0.3  # s: a background step waits for the cores to be free of foreground work this long...
BACKGROUND_PATIENCE = 1.5  # s: ...but never longer than this, so that a busy process still finishes its build
PROBE_TIMEOUT = 3.0  # s to open a connection to a download host before it counts as unreachable
REACHABLE_FOR, UNREACHABLE_FOR = 600.0, 60.0  # s an answer about a host is trusted


class Busy(RuntimeError):
    """The process is stylizing something else and the caller chose not to wait."""


@dataclass(frozen=True)
class HubOptions:
    """How every Hugging Face Hub download is made: the cache, the endpoint, offline or not."""

    cache: Path
    endpoint: str | None = None
    offline: bool = False

    def download(self) -> dict[str, Any]:
        """The keyword arguments of ``hf_hub_download`` for these options."""
        return {"cache_dir": self.cache, "endpoint": self.endpoint, "local_files_only": self.offline}


# -- glibc malloc ---------------------------------------------------------------------------------
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD, _M_ARENA_MAX = -1, -3, -8
_GLIBC_DEFAULT = 128 * 1024  # glibc's initial mmap and trim thresholds
KEEP, RELEASE = "keep", "release"


class _Allocator:
    """glibc malloc's settings, changed only here and only when what runs changes.

    PyTorch eager allocates and frees activations of tens to hundreds of MB per layer.
    glibc serves blocks that big with mmap and returns them at once, so every layer
    page-faults its memory in again, which makes normalisation and padding about twice
    as slow (a pass at 512 x 512: 2.1 s -> 1.2 s). So while PyTorch passes run, big
    blocks are kept in the heap (``KEEP``): one arena (threads other than the main one,
    Gradio's workers, would otherwise get 64 MB arenas that cannot hold such blocks),
    blocks up to 1 GB from the heap, freed memory kept for the next pass. OpenVINO plans
    its own memory once per shape, and tiles come in many shapes (a heap that keeps them
    grew to 8.3 GB at 12 MP, measured): for those, big blocks go back to the system
    (``RELEASE``, glibc's defaults, and the heap trimmed once).
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.mode: str | None = None  # what is set now; None: glibc's own settings, untouched
        self._libc = _libc() if enabled else None

    def engage(self) -> bool:
        """One arena for every thread (before the threads that serve requests allocate)."""
        return self._libc is not None and self._libc.mallopt(_M_ARENA_MAX, 1) == 1

    def use(self, mode: str | None) -> None:
        """Set ``KEEP`` or ``RELEASE`` if it is not set already (``None``: leave it)."""
        if mode is None or mode == self.mode or self._libc is None:
            return
        keep = mode == KEEP
        ok = self._libc.mallopt(_M_MMAP_THRESHOLD, (1 << 30) if keep else _GLIBC_DEFAULT) == 1
        ok &= self._libc.mallopt(_M_TRIM_THRESHOLD, (1 << 31) if keep else _GLIBC_DEFAULT) == 1
        if not keep:
            self._libc.malloc_trim(0)
        if ok:
            self.mode = mode


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") else None  # glibc only (not musl)


# What each kind of pass wants from the allocator (see _Allocator).
ALLOCATOR_MODE = {"torch": KEEP, "tiles": RELEASE, "openvino": RELEASE, "onnxruntime": RELEASE}


# -- the process-wide part -----------------------------------------------------------------------
class _Process:
    """What every Runtime of this process shares. Made once, on first use, with no side
    effects; the machine, threads and allocator come from the first Runtime's settings."""

    machine: Machine
    threads: int
    allocator: _Allocator

    def __init__(self) -> None:
        self.configured = False
        self.lock = threading.Lock()  # the inference lock
        self.guard = threading.Lock()  # for the fields below and the shared objects
        self.engaged = False
        self.waiting = 0  # foreground callers waiting for the inference lock
        self.foreground_at = 0.0  # when foreground work last left the cores
        self.openvino = None
        self.styles: dict[str, Any] = {}  # styles registered at run time (animegan.styles.register_style)
        self.objects: dict[str, Any] = {}  # Runtime.shared
        self.build_lock = threading.Lock()  # one artefact build at a time
        self.counts: dict[str, int] = {}  # Runtime.count
        self.hosts: dict[tuple[str, int], tuple[bool, float]] = {}  # Runtime.reachable: (answer, when)
        self.probe_lock = threading.Lock()

    def configure(self, settings: Settings) -> None:
        if self.configured:
            return
        self.machine = Machine.read(settings.isa_cap)
        cpus = self.machine.cpus
        self.threads = min(settings.threads, cpus) if settings.threads > 0 else cpus
        self.allocator = _Allocator(settings.malloc)
        self.configured = True


class Runtime:
    """Settings plus the process's shared resources (see the module's docstring)."""

    def __init__(self, settings: Settings, process: _Process) -> None:
        self.settings = settings
        self._p = process

    # -- facts -----------------------------------------------------------------------------
    @property
    def machine(self) -> Machine:
        return self._p.machine

    @property
    def threads(self) -> int:
        """Threads one model pass uses (PyTorch's, OpenVINO's and ONNX Runtime's alike)."""
        return self._p.threads

    @property
    def native_bf16(self) -> bool:
        """bf16 is a speed-up here: the CPU has it in hardware and it is not turned off (ANIMEGAN_NO_BF16)."""
        return self.machine.bf16 and not self.settings.no_bf16

    @property
    def artefacts(self) -> Path:
        """Where built models, thumbnails and backend choices live: beside the Hub cache."""
        return self.hub.cache / "animegan-artefacts"

    @property
    def hub(self) -> HubOptions:
        s = self.settings
        cache = s.hub_cache
        if cache is None:
            from huggingface_hub import constants

            cache = Path(constants.HF_HUB_CACHE)
        return HubOptions(Path(cache), s.hf_endpoint, s.hf_offline)

    @property
    def memory_budget(self) -> int:
        """Bytes one process may use for a picture (ANIMEGAN_MEMORY_BUDGET, or a quarter of the machine's)."""
        if self.settings.memory_budget > 0:
            return self.settings.memory_budget
        return max(MIN_BUDGET, int(self.machine.memory_total * DEFAULT_BUDGET_SHARE))

    def with_settings(self, settings: Settings) -> Runtime:
        """A Runtime for ``settings`` over this process's shared resources."""
        return self if settings == self.settings else Runtime(settings, self._p)

    # -- threads and the allocator ---------------------------------------------------------------
    def engage(self) -> int:
        """Set PyTorch's threads and the allocator's arena, once per process (when the first
        model is made, not at import). Returns the thread count."""
        p = self._p
        with p.guard:
            if not p.engaged:
                import torch

                if torch.get_num_threads() != p.threads:
                    torch.set_num_threads(p.threads)
                p.allocator.engage()
                p.engaged = True
        return p.threads

    def tune_cuda(self) -> None:
        """Training on a GPU: let cuDNN pick the fastest convolution for the (fixed) crop size."""
        import torch

        torch.backends.cudnn.benchmark = True

    @property
    def allocator_mode(self) -> str | None:
        return self._p.allocator.mode

    # -- the inference lock ------------------------------------------------------------------------
    @contextlib.contextmanager
    def inference(self, kind: str | None = None, *, wait: bool = True) -> Iterator[None]:
        """Hold the inference lock for one pass of ``kind`` (``torch``, ``tiles``, ``openvino``,
        ``onnxruntime``; None for other work, e.g. face detection), with the allocator set for
        it. ``wait=False`` raises :class:`Busy` at once when the lock is taken (live frames)."""
        p = self._p
        if wait:
            with p.guard:
                p.waiting += 1
            try:
                p.lock.acquire()
            finally:
                with p.guard:
                    p.waiting -= 1
        elif not p.lock.acquire(blocking=False):
            p.foreground_at = time.monotonic()  # a request turned away is demand: background work waits for it
            raise Busy("another picture is being stylized")
        try:
            p.allocator.use(ALLOCATOR_MODE.get(kind or ""))
            yield
        finally:
            p.foreground_at = time.monotonic()
            p.lock.release()

    @contextlib.contextmanager
    def background(self, kind: str | None = None) -> Iterator[None]:
        """Hold the inference lock for one step of background work (an int8 build, a
        thumbnail). Foreground work goes first: the step waits until no request is waiting
        and none has used (or been turned away from) the cores for BACKGROUND_GAP s, or
        BACKGROUND_PATIENCE s at most, so a stream of live frames gets the cores between steps."""
        p = self._p
        start = time.monotonic()
        while time.monotonic() - start < BACKGROUND_PATIENCE:
            if not p.waiting and not p.lock.locked() and time.monotonic() - p.foreground_at >= BACKGROUND_GAP:
                break
            time.sleep(0.02)
        with p.lock:
            p.allocator.use(ALLOCATOR_MODE.get(kind or ""))
            yield

    @property
    def lock(self) -> threading.Lock:
        """The inference lock itself (prefer :meth:`inference` and :meth:`background`)."""
        return self._p.lock

    # -- OpenVINO --------------------------------------------------------------------------------
    def openvino(self):
        """The process's OpenVINO Core (OpenVINO is imported here, on first use)."""
        p = self._p
        with p.guard:
            if p.openvino is None:
                import openvino as ov

                p.openvino = ov.Core()
            return p.openvino

    def openvino_config(self, precision: str) -> dict[str, Any]:
        """compile_model's configuration: ``precision`` (f32 / bf16 / f16) on this runtime's threads,
        for the latency of one picture."""
        return {"INFERENCE_PRECISION_HINT": precision, "INFERENCE_NUM_THREADS": self.threads,
                "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1}

    # -- shared objects ----------------------------------------------------------------------------
    def shared(self, key: str, make: Callable[[], T]) -> T:
        """The process's one ``key`` object, made by ``make()`` on first use."""
        p = self._p
        with p.guard:
            found = p.objects.get(key)
        if found is not None:
            return found
        made = make()
        with p.guard:
            return p.objects.setdefault(key, made)

    @property
    def styles(self) -> dict[str, Any]:
        """The styles registered at run time (name -> animegan.styles.Style); the registry's to change."""
        return self._p.styles

    @property
    def build_lock(self) -> threading.Lock:
        """Held while an artefact is built: one build at a time per process."""
        return self._p.build_lock

    def reachable(self, url: str) -> bool:
        """Whether ``url``'s host takes a connection, asked once per host and remembered
        (REACHABLE_FOR s when it does, UNREACHABLE_FOR s when not): an offline machine finds
        out once, in about a second, instead of retrying every download with backoff."""
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if not parts.hostname:
            return True
        key = (parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))
        p = self._p
        with p.probe_lock:  # one probe per host at a time; the others wait for its answer
            known = p.hosts.get(key)
            now = time.monotonic()
            if known is not None and now - known[1] < (REACHABLE_FOR if known[0] else UNREACHABLE_FOR):
                return known[0]
            import socket

            try:
                socket.create_connection(key, timeout=PROBE_TIMEOUT).close()
                answer = True
            except OSError:
                answer = False
            p.hosts[key] = (answer, time.monotonic())
            return answer

    def count(self, event: str, add: int = 0) -> int:
        """How many times ``event`` happened in this process (e.g. int8 builds); ``add`` to count one."""
        p = self._p
        with p.guard:
            p.counts[event] = p.counts.get(event, 0) + add
            return p.counts[event]


# -- the process's runtime ------------------------------------------------------------------------------
_STATE: dict[str, Any] = {}  # "process": the _Process, "runtime": the first Runtime (the process's own)
_STATE_LOCK = threading.Lock()


def get(settings: Settings | None = None) -> Runtime:
    """The process's Runtime (made on first use from ``settings`` or the environment); with
    ``settings``, a Runtime for them over the same process-wide resources."""
    with _STATE_LOCK:
        first = _STATE.get("runtime")
        if first is None:
            settings = settings if settings is not None else Settings.from_env()
            process = _process()
            process.configure(settings)
            first = _STATE["runtime"] = Runtime(settings, process)
    return first if settings is None else first.with_settings(settings)


def start(settings: Settings) -> Runtime:
    """The entry points' call (app, command line, batch worker): the process's Runtime from
    ``settings``, its threads and allocator engaged."""
    rt = get(settings)
    rt.engage()
    return rt


def _process() -> _Process:
    process = _STATE.get("process")
    if process is None:
        process = _STATE["process"] = _Process()
    return process


def registered_styles() -> dict[str, Any]:
    """The styles registered at run time in this process (reached without Settings)."""
    with _STATE_LOCK:
        return _process().styles
