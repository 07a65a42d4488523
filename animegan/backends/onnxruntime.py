"""ONNX Runtime for ONNX generators, where OpenVINO cannot run them (not installed, or an
operator its reader does not know). It runs the same adapted graph as OpenVINO
(:meth:`animegan.models.onnx.OnnxGenerator.adapted`), in float32."""

from __future__ import annotations

import threading

import numpy as np

from ..models.onnx import OnnxGenerator
from .base import BackendUnavailable


class OnnxRuntimeBackend:
    """An ONNX Runtime CPU session on the adapted graph (1 x 3 x H x W in [-1, 1]), its
    own options holding the runtime's thread count (nothing set process-wide)."""

    name = "onnxruntime"
    family = "onnxruntime"
    precision = "f32"
    upgrading = False

    def __init__(self, generator: OnnxGenerator, threads: int) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(f"the onnxruntime package is not installed ({exc})") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(generator.adapted_bytes(), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._lock = threading.Lock()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self._lock:
            return self._session.run(None, {self._input: np.ascontiguousarray(x, dtype=np.float32)})[0]
