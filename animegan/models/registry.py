"""The generator classes by name, and their config.json.

Every generator class is a ``huggingface_hub.PyTorchModelHubMixin`` model: it saves as
``config.json`` (its architecture name and constructor arguments) + ``model.safetensors``.
``animegan.weights.load_generator`` brings back an eval-mode module of the right class
from a model folder, a Hub repo id or a published checkpoint file.

A generator is registered where it is defined, with ``@register("name")`` (as timm's
``@register_model``): this module imports no model, and a new architecture is one file.
The registry holds nothing itself: :func:`architectures` finds the registered classes
among the HubMixin's subclasses (``animegan.models`` imports the package's own).
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from huggingface_hub import PyTorchModelHubMixin
from torch import nn

CONFIG = "config.json"
WEIGHTS = "model.safetensors"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


T = TypeVar("T", bound=type)


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


def register(name: str) -> Callable[[T], T]:
    """Class decorator: the generator is known as ``name`` in config.json files."""
    def decorate(cls: T) -> T:
        if not (isinstance(cls, type) and issubclass(cls, HubMixin) and issubclass(cls, nn.Module)):
            raise TypeError(f"{cls!r}: a registered generator is an nn.Module and an animegan HubMixin")
        cls.architecture = name
        cls._registered = name
        return cls
    return decorate


def architectures() -> dict[str, type[nn.Module]]:
    """Architecture name (as in config.json) -> class, for every registered generator."""
    found: dict[str, type[nn.Module]] = {}
    todo = list(HubMixin.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if cls.__dict__.get("_registered"):
            found[cls.__dict__["_registered"]] = cls
    return dict(sorted(found.items()))


class ConfigError(ValueError):
    """A model folder's config.json cannot be used (animegan.weights turns it into a WeightsError)."""


def _error(message: str) -> Exception:
    return ConfigError(message)


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


def describe(model: nn.Module) -> str:
    """A short name of the architecture with its settings, e.g. ``lite(width=32, res_blocks=2, ...)``."""
    config = dict(getattr(model, "config", {}) or {})
    name = config.pop("architecture", type(model).__name__)
    args = ", ".join(f"{k}={v}" for k, v in sorted(config.items()))
    return f"{name}({args})" if args else name
