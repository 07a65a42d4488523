"""The automatic choice: the backend that is fastest *on this machine* among those within
38 dB of float32, measured once and remembered.

A generator starts on float32 (exact, nothing to build): PyTorch for a module, OpenVINO
f32 for an ONNX file (ONNX Runtime where OpenVINO cannot read it). If this machine has
measured it before (``choice-<machine>.json`` beside the artefacts), the chosen backend is
made at once (the int8 model is read back from its cache, about a second). Otherwise
every backend this CPU runs is tried in turn, cheapest to make first: each must stay
within the bound on the calibration photos, then is timed on one of them; requests are
served meanwhile from the fastest one found so far, and the choice is saved.

``background=True`` (the library, the app) does this in a thread that takes the cores
one step at a time and lets requests go first; ``close()`` (also run at exit) stops it at
its next step and a half-built artefact is not saved. ``background=False`` (the command
line, ``animegan prepare``, ``Stylizer(wait_for_fast=True)``) does it before returning,
telling ``progress`` what it does.
"""

from __future__ import annotations

import atexit
import logging
import statistics
import threading
import time
import weakref
from collections.abc import Callable

import numpy as np
from torch import nn

from ..models.onnx import OnnxGenerator
from ..runtime import Runtime
from . import artefacts, fidelity
from .base import Backend, BackendUnavailable, Cancelled

log = logging.getLogger("animegan")

TIME_SIDE = 384  # long side of the calibration photo the candidates are timed on
TIME_RUNS = 3  # timed passes per candidate (after one warm-up); the median counts

ProgressFn = Callable[[float, str], None]


class AutoBackend:
    """Serves from the fastest backend measured here within the bound (see the module)."""

    def __init__(self, model: nn.Module | OnnxGenerator, rt: Runtime, *, background: bool = True,
                 progress: ProgressFn | None = None, start: bool = True) -> None:
        from . import float32

        self._model = model
        self._rt = rt
        self._progress = progress or (lambda fraction, text: None)
        self.notes: list[str] = []
        self._current, note = float32(model, rt)
        if note:
            self.notes.append(note)
        self.measured: dict[str, dict] = {}  # backend name -> {"seconds": ..., "psnr": ...}
        self._slice = (0.0, 1.0)  # the part of the progress the step under way stands for
        self.chosen_from_cache = False
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()  # set when no further switch will happen
        if self._current.name == "onnxruntime":  # OpenVINO cannot run this graph: nothing else to try
            self.ready.set()
            return
        if self._from_cache():
            self.ready.set()
        elif background:
            self._thread = threading.Thread(target=self._choose, name="animegan-backend", daemon=True)
            atexit.register(_close_ref(self))
            if start:
                self._thread.start()
        else:
            self._choose()

    def start(self) -> None:
        """Start the background choice made with ``start=False`` (the app: once it serves)."""
        if self._thread is not None and not self._thread.is_alive() and not self.ready.is_set():
            self._thread.start()

    # -- what serves now ---------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._current.name

    @property
    def family(self) -> str:
        return self._current.family

    @property
    def precision(self) -> str:
        return self._current.precision

    @property
    def upgrading(self) -> bool:
        return not self.ready.is_set()

    @property
    def current(self) -> Backend:
        return self._current

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._current(x)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the choice is made (``Stylizer(wait_for_fast=True)`` does)."""
        return self.ready.wait(timeout)

    def close(self, timeout: float = 60.0) -> None:
        """Stop the background choice at its next step and wait for it."""
        self._closed.set()
        thread = self._thread
        # a deferred choice that was never started (the process ends before it serves) has nothing to wait for
        if thread is not None and thread.ident is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _pause(self) -> None:
        """Between steps: stop if closed."""
        if self._closed.is_set():
            raise Cancelled("the backend was closed")

    # -- the choice ----------------------------------------------------------------------------
    def _candidates(self) -> list[tuple[str, Callable[[], Backend]]]:
        """Backends this CPU runs, other than the float32 start, cheapest to make first."""
        from . import BACKENDS

        rt, model = self._rt, self._model
        names = []
        if rt.native_bf16:
            names += ["torch-bf16"] if isinstance(model, nn.Module) else []
            names += ["openvino-bf16"]
        names += ["openvino-f32"] if self._current.name != "openvino-f32" else ["onnxruntime"]
        names += ["openvino-int8"]

        def maker(name: str) -> Callable[[], Backend]:
            if name == "openvino-int8":
                from . import openvino

                return lambda: openvino.load_or_build_int8(model, rt, pause=self._pause, progress=self._build_progress)
            return lambda: BACKENDS[name](model, rt)

        return [(name, maker(name)) for name in names]

    def _build_progress(self, fraction: float, text: str) -> None:
        lo, hi = self._slice
        self._progress(lo + (hi - lo) * fraction, f"building the int8 model: {text}")

    def _from_cache(self) -> bool:
        """Make the backend this machine chose before; False when there is no usable choice."""
        choice = artefacts.read_choice(self._model, self._rt)
        if choice is None:
            return False
        name = choice["backend"]
        if name == self._current.name:
            self.chosen_from_cache = True
            return True
        try:
            if name == "openvino-int8":
                from . import openvino

                backend = openvino.load_cached_int8(self._model, self._rt)
                if backend is None:
                    return False
            else:
                backend = dict(self._candidates())[name]()
        except Exception as exc:  # not installed any more, a damaged artefact: choose again
            log.warning("animegan: the backend chosen before (%s) cannot be made (%s); choosing again", name,
                        str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
            return False
        self.measured = choice.get("measured") or {}
        self.notes.append(f"{name}: chosen before on this machine")
        self._switch(backend)
        self.chosen_from_cache = True
        return True

    def _choose(self) -> None:
        began = time.perf_counter()
        try:
            log.info("animegan: choosing the fastest backend for this machine (once; serving on %s meanwhile)",
                     self._current.name)
            self._progress(0.0, f"timing {self._current.name}")
            reference = fidelity.calibration_photos(TIME_SIDE)[0]
            self.measured[self._current.name] = {"seconds": self._time(self._current, reference), "psnr": None}
            best = self.measured[self._current.name]["seconds"]
            candidates = self._candidates()
            # the int8 build (the last candidate) is most of the work
            weights = [6.0 if name == "openvino-int8" else 1.0 for name, _ in candidates]
            edges = [0.05 + 0.95 * sum(weights[:i]) / sum(weights) for i in range(len(weights) + 1)]
            for i, (name, make) in enumerate(candidates):
                self._pause()
                self._slice = (edges[i], edges[i + 1])
                self._progress(edges[i], f"trying {name}")
                try:
                    backend = make()
                except BackendUnavailable as exc:
                    self.notes.append(f"{name}: cannot run here ({exc})")
                    continue
                quality = self._quality(backend)
                seconds = self._time(backend, reference)
                self.measured[name] = {"seconds": seconds, "psnr": round(float(quality), 2)}
                ok = quality >= fidelity.MIN_PSNR
                self.notes.append(f"{name}: {quality:.1f} dB worst against float32, {seconds:.3f} s at {TIME_SIDE} px"
                                  + ("" if ok else f", under {fidelity.MIN_PSNR:.0f} dB: not used"))
                if ok and seconds < best:
                    best = seconds
                    self._switch(backend)
            artefacts.write_choice(self._model, self._rt, self._current.name, self.measured)
            self._progress(1.0, f"{self._current.name} is the fastest here")
            log.info("animegan: %s is the fastest here (chosen in %.0f s; %s)", self._current.name,
                     time.perf_counter() - began, "; ".join(self.notes[-3:]))
        except Cancelled:
            pass
        except Exception as exc:  # never let an optimisation break the service
            self.notes.append(f"backend choice stopped: {exc}")
            log.warning("animegan: choosing the fastest backend stopped: %s", exc)
        finally:
            self.ready.set()

    def _quality(self, backend: Backend) -> float:
        """The worst PSNR against float32: recorded at build time for int8 (every calibration
        photo), measured on one calibration photo for a float backend."""
        recorded = getattr(backend, "min_psnr", float("inf"))
        if recorded != float("inf"):
            return float(recorded)
        x = fidelity.calibration_photos(256)[0]
        self._pause()
        with self._rt.background():
            ref, out = self._current(x), backend(x)
        return fidelity.psnr(out, ref)

    def _time(self, backend: Backend, x: np.ndarray) -> float:
        """Median seconds of TIME_RUNS passes after a warm-up, each holding the cores."""
        times = []
        for i in range(TIME_RUNS + 1):
            self._pause()
            with self._rt.background():
                start = time.perf_counter()
                backend(x)
                if i:
                    times.append(time.perf_counter() - start)
        return round(statistics.median(times), 4)

    def _switch(self, backend: Backend) -> None:
        with self._rt.lock:  # not in the middle of a pass
            self._current = backend


def _close_ref(backend: AutoBackend):
    """An exit hook that does not keep the backend alive."""
    ref = weakref.ref(backend)

    def close() -> None:
        obj = ref()
        if obj is not None:
            obj.close()

    return close


__all__ = ["AutoBackend", "BackendUnavailable"]
