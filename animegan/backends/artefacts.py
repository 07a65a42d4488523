"""What identifies a generator's built artefacts, and the automatic backend's choice for
this machine, kept beside them.

Artefacts live in the runtime's artefact folder under the generator's hash (its class and
weights, or its file's bytes): ``<artefacts>/<hash>/``. The choice made by ``auto`` (which
backend is fastest here within the fidelity bound) is measured once per machine and kept
there as ``choice-<machine key>.json``, so a short-lived process (the command line) starts
on the right backend without measuring again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..files import atomic_write_text, sha256_file
from ..models.onnx import OnnxGenerator
from ..runtime import Runtime

CHOICE_FORMAT = 1


def source_hash(source: Any) -> str:
    """sha256 of what defines the generator: for a module its class and weights (names,
    shapes and float32 values); for an adapted ONNX file its bytes and how it is fed; for
    a file its bytes."""
    if isinstance(source, OnnxGenerator):
        return source.fingerprint()
    if isinstance(source, (str, Path)):
        return sha256_file(source)
    digest = hashlib.sha256()
    digest.update(f"{type(source).__module__}.{type(source).__qualname__}".encode())
    state = source.state_dict()
    for key in sorted(state):
        t = state[key].detach().float().contiguous()
        digest.update(f"{key}{tuple(t.shape)}".encode())
        digest.update(t.numpy().tobytes())
    return digest.hexdigest()


def machine_key(rt: Runtime) -> str:
    """What the ranking of the backends depends on: the CPU, its instruction sets (after
    any cap) and the versions of PyTorch and OpenVINO. Not the thread count: the ranking
    holds from one thread to all (so batch workers on one thread each use the choice
    their driver measured on all)."""
    import torch

    try:
        from openvino import __version__ as ov_version
    except ImportError:
        ov_version = "none"
    m = rt.machine
    return f"{m.cpu} | {m.isa} | torch {torch.__version__} | openvino {ov_version}"


def choice_path(source: Any, rt: Runtime) -> Path:
    key = hashlib.sha256(machine_key(rt).encode()).hexdigest()[:16]
    return rt.artefacts / source_hash(source) / f"choice-{key}.json"


def read_choice(source: Any, rt: Runtime) -> dict | None:
    """The choice measured before on this machine for this generator, or None."""
    path = choice_path(source, rt)
    try:
        choice = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(choice, dict) or choice.get("format") != CHOICE_FORMAT or choice.get("machine") != \
            machine_key(rt) or not isinstance(choice.get("backend"), str):
        return None
    return choice


def write_choice(source: Any, rt: Runtime, backend: str, measured: dict[str, dict]) -> dict:
    choice = {"format": CHOICE_FORMAT, "machine": machine_key(rt), "backend": backend, "measured": measured}
    atomic_write_text(choice_path(source, rt), json.dumps(choice, indent=1))
    return choice
