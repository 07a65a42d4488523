"""The automatic choice: serve from the best backend ready now, upgrade in the background.

If the int8 model for this generator is already cached on disk, it is loaded at once
(about a second). Otherwise requests start on float32 (exact, nothing to build) while a
background thread checks bf16 on a calibration photo (a second) and switches to it,
then builds the int8 model once (tens of seconds, then cached) and switches to it when
its output stays >= 38 dB against float32. Requests never wait for the build as a
whole: it takes the inference lock one photo at a time and lets waiting requests go
first. The thread belongs to the AutoBackend: ``close()`` (also run at exit) stops it
at its next step; a half-built artefact is simply not saved.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import weakref
from pathlib import Path

import numpy as np
from torch import nn

from .. import host
from ..models.onnx import OnnxGenerator
from . import fidelity
from .base import Backend, BackendUnavailable, Cancelled
from .torch_eager import TorchBackend, TorchBF16Backend

log = logging.getLogger("animegan")


class AutoBackend:
    """Serves from the best backend ready now and upgrades itself in the background."""

    def __init__(self, model: nn.Module | OnnxGenerator, *, hub_cache: Path, calibration_side: int = 512,
                 no_bf16: bool = False, malloc: bool = True, background: bool = True) -> None:
        self._model = model
        self._hub_cache = hub_cache
        self._side = calibration_side
        self._no_bf16 = no_bf16
        self._malloc = malloc
        self.notes: list[str] = []
        self._current: Backend = self._float32()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self.ready = threading.Event()  # set when no further switch will happen
        if self._current.name == "onnxruntime":  # OpenVINO cannot run this graph: nothing to upgrade to
            self.ready.set()
            return
        cached = self._cached_int8()
        if cached is not None and self._accept_int8(cached):
            self.ready.set()
        elif background:
            self._thread = threading.Thread(target=self._upgrade, name="animegan-backend", daemon=True)
            atexit.register(_close_ref(self))
            self._thread.start()
        else:
            self._upgrade()

    def _float32(self) -> Backend:
        """The exact start: PyTorch float32 for a module; OpenVINO f32 for an ONNX file, or
        ONNX Runtime where OpenVINO cannot read it."""
        if isinstance(self._model, nn.Module):
            return TorchBackend(self._model)
        try:
            from . import openvino

            return openvino.float_backend(self._model, "f32")
        except Exception as exc:  # not installed, or an operator its reader lacks
            from .onnxruntime import OnnxRuntimeBackend

            self.notes.append(f"openvino cannot run this graph ({str(exc).splitlines()[0][:200]}); using onnxruntime")
            log.warning("animegan: %s", self.notes[-1])
            return OnnxRuntimeBackend(self._model)

    @property
    def name(self) -> str:
        return self._current.name

    @property
    def upgrading(self) -> bool:
        return not self.ready.is_set()

    @property
    def current(self) -> Backend:
        return self._current

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._current(x)

    def close(self, timeout: float = 60.0) -> None:
        """Stop the background upgrade at its next step and wait for it."""
        self._closed.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _pause(self) -> None:
        """Between steps of the build: stop if closed, and let waiting requests go first."""
        if self._closed.is_set():
            raise Cancelled("the backend was closed")
        time.sleep(0.02)

    def _upgrade(self) -> None:
        try:
            if host.native_bf16(self._no_bf16):
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
        if isinstance(self._model, nn.Module):
            bf16 = TorchBF16Backend(self._model, no_bf16=self._no_bf16)
        else:
            from . import openvino

            bf16 = openvino.float_backend(self._model, "bf16", no_bf16=self._no_bf16)
        x = fidelity.calibration_photos(256)[0]
        self._pause()
        with host.INFERENCE_LOCK:
            ref, out = self._current(x), bf16(x)
        quality = fidelity.psnr(out, ref)
        self.notes.append(f"{bf16.name}: {quality:.1f} dB on a calibration photo")
        if quality >= fidelity.MIN_PSNR:
            self._current = bf16

    def _try_int8(self) -> None:
        self._pause()
        try:
            from . import openvino
        except ImportError as exc:
            self.notes.append(f"openvino-int8 unavailable: the openvino package is not installed ({exc})")
            return
        int8 = openvino.load_or_build_int8(self._model, self._hub_cache, side=self._side, no_bf16=self._no_bf16,
                                           pause=self._pause)
        self._accept_int8(int8)

    def _accept_int8(self, int8) -> bool:
        ok = int8.min_psnr >= fidelity.MIN_PSNR
        self.notes.append(f"openvino-int8: {int8.min_psnr:.1f} dB worst on the calibration photos"
                          + ("" if ok else f", under {fidelity.MIN_PSNR:.0f} dB: not used"))
        if ok:
            with host.INFERENCE_LOCK:
                self._current = int8
                if self._malloc:
                    host.tune_allocator(keep_big_blocks=False)
        return ok

    def _cached_int8(self):
        """The int8 backend if its artefact is already on disk (cheap), else None."""
        try:
            from . import openvino
        except ImportError:
            return None
        try:
            return openvino.load_cached_int8(self._model, self._hub_cache, no_bf16=self._no_bf16)
        except Exception as exc:  # a damaged cache: rebuild in the background
            log.warning("animegan: cached int8 model unusable (%s); rebuilding", exc)
            return None


def _close_ref(backend: AutoBackend):
    """An exit hook that does not keep the backend alive."""
    ref = weakref.ref(backend)

    def close() -> None:
        obj = ref()
        if obj is not None:
            obj.close()

    return close


__all__ = ["AutoBackend", "BackendUnavailable"]
