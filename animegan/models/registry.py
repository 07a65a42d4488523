"""One way to get a ready generator from wherever it lives.

Every generator class here is a ``huggingface_hub.PyTorchModelHubMixin`` model: it saves as
``config.json`` (its architecture name and constructor arguments) + ``model.safetensors``,
and ``load_generator`` brings back an eval-mode module of the right class from:

- a folder written by ``save_pretrained`` (a training run's folder, an export);
- a Hub repo id holding such a folder (downloaded once into huggingface_hub's cache);
- a published AnimeGANv2 checkpoint file (``.pt`` / ``.pth`` / ``.safetensors`` state_dict).
"""

from __future__ import annotations

import contextlib
import inspect
import io
import json
import os
import re
from pathlib import Path
from typing import Any, ClassVar

from huggingface_hub import PyTorchModelHubMixin
from torch import nn

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class HubMixin(
    PyTorchModelHubMixin,
    library_name="animegan",
    tags=["animegan", "image-to-image"],
    repo_url="https://github.com/bryandlee/animegan2-pytorch",
):
    """Adds ``architecture`` to config.json so a folder says which class to build."""

    architecture: ClassVar[str]

    def save_pretrained(self, save_directory: str | Path, *, config: dict | None = None, **kwargs: Any):
        config = {**(config or getattr(self, "_hub_mixin_config", None) or {}), "architecture": self.architecture}
        return super().save_pretrained(save_directory, config=config, **kwargs)

    @property
    def config(self) -> dict[str, Any]:
        """The architecture and constructor arguments, as config.json records them."""
        return {**(getattr(self, "_hub_mixin_config", None) or {}), "architecture": self.architecture}


def architectures() -> dict[str, type[nn.Module]]:
    """Architecture name (as in config.json) -> class."""
    from .animeganv2 import Generator
    from .lite import LiteGenerator

    return {cls.architecture: cls for cls in (Generator, LiteGenerator)}


def _error(message: str) -> Exception:
    from ..weights import WeightsError  # one error type for every "could not load weights"

    return WeightsError(message)


def build(config: dict[str, Any]) -> nn.Module:
    """An untrained module from a config dict (``architecture`` + constructor arguments)."""
    known = architectures()
    name = config.get("architecture", "animeganv2")
    if name not in known:
        raise _error(f"Unknown generator architecture {name!r} in config.json; known: {', '.join(known)}.")
    cls = known[name]
    params = set(inspect.signature(cls.__init__).parameters) - {"self"}
    return cls(**{k: v for k, v in config.items() if k in params})


def is_model_folder(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / CONFIG).is_file()


def read_config(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / CONFIG
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise _error(f"{path} is not a readable config.json ({exc}).") from None
    if not isinstance(config, dict):
        raise _error(f"{path} does not hold a JSON object.")
    return config


def _from_folder(folder: Path) -> nn.Module:
    config = read_config(folder)
    if not (folder / WEIGHTS).is_file():
        raise _error(f"{folder} has a config.json but no {WEIGHTS}.")
    known = architectures()
    name = config.get("architecture", "animeganv2")
    if name not in known:
        raise _error(f"Unknown generator architecture {name!r} in {folder}/{CONFIG}; known: {', '.join(known)}.")
    cls = known[name]
    # The mixin's own loader, strict: every tensor must be there with its shape. It prints a
    # line for local folders; keep the command line's output clean.
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model = cls.from_pretrained(str(folder), strict=True)
    except RuntimeError as exc:  # missing/unexpected keys, wrong shapes
        raise _error(f"{folder}/{WEIGHTS} does not match its config.json: {str(exc).splitlines()[0][:300]}") from None
    return model


def _download_folder(repo_id: str, revision: str | None = None) -> Path:
    """config.json + model.safetensors of a Hub repo, in huggingface_hub's cache; the
    snapshot folder holding both. The endpoint is read at call time (HF_ENDPOINT), as for
    the published styles' weights."""
    from huggingface_hub import hf_hub_download

    from ..weights import _env_flag, cache_dir

    options = dict(revision=revision, cache_dir=cache_dir(), endpoint=os.environ.get("HF_ENDPOINT") or None,
                   local_files_only=_env_flag("HF_HUB_OFFLINE"))
    config = Path(hf_hub_download(repo_id, CONFIG, **options))
    weights = Path(hf_hub_download(repo_id, WEIGHTS, **options))
    if weights.parent != config.parent:  # different revisions in between: keep them together
        raise _error(f"{repo_id}: config.json and {WEIGHTS} came from different revisions; try again.")
    return config.parent


def load_generator(source: str | Path, revision: str | None = None) -> nn.Module:
    """A ready (eval mode, no gradients) generator from a model folder, a Hub repo id, or a
    published AnimeGANv2 state_dict file."""
    from .. import weights

    path = Path(source)
    if path.is_file() and path.name == WEIGHTS and is_model_folder(path.parent):
        path = path.parent  # model.safetensors inside a model folder: use its config
    if path.is_dir():
        if not is_model_folder(path):
            raise _error(f"{path} is a folder without a {CONFIG}: not a saved model "
                         "(expected config.json + model.safetensors, as save_pretrained writes them).")
        model = _from_folder(path)
    elif path.is_file():
        model = weights.load_generator(path)
    elif isinstance(source, str) and _REPO_ID.match(source) and not source.startswith((".", "/")):
        try:
            folder = _download_folder(source, revision)
        except Exception as exc:
            if type(exc).__name__ == "WeightsError":
                raise
            raise _error(f"Could not get the model {source!r} from the Hugging Face Hub: "
                         f"{weights._describe(exc)}") from None
        model = _from_folder(folder)
    else:
        raise _error(f"Weights not found: {source} (a model folder, a Hub repo id or a .pt/.safetensors file).")
    return model.eval().requires_grad_(False)


def describe(model: nn.Module) -> str:
    """A short name of the architecture with its settings, e.g. ``lite(width=32, res_blocks=2, ...)``."""
    config = dict(getattr(model, "config", {}) or {})
    name = config.pop("architecture", type(model).__name__)
    args = ", ".join(f"{k}={v}" for k, v in sorted(config.items()))
    return f"{name}({args})" if args else name


def style_architecture(name: str) -> nn.Module:
    """An untrained module with a style's architecture, found without its weights where
    possible: the config.json of its model folder (ANIMEGAN_WEIGHTS_DIR/<name>/ or its
    local path) or of its Hub model repo (cached or fetched: a few hundred bytes);
    a plain weights file means the published AnimeGANv2 network."""
    from ..styles import get_style
    from ..weights import _from_weights_dir

    style = get_style(name)
    for folder in (_from_weights_dir(style.name), style.path):
        if folder is not None and is_model_folder(folder):
            return build(read_config(folder))
    if style.repo_id and not style.filename:
        from huggingface_hub import hf_hub_download

        from ..weights import _env_flag, cache_dir

        config = hf_hub_download(style.repo_id, CONFIG, revision=style.revision, cache_dir=cache_dir(),
                                 endpoint=os.environ.get("HF_ENDPOINT") or None,
                                 local_files_only=_env_flag("HF_HUB_OFFLINE"))
        return build(read_config(Path(config).parent))
    return build({"architecture": "animeganv2"})
