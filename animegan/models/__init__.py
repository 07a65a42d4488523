"""Generators: the published AnimeGANv2 network and the small LiteGenerator, both
saving and loading as config.json + model.safetensors (huggingface_hub's mixin)."""

from .animeganv2 import Generator
from .lite import LiteGenerator
from .registry import build

__all__ = ["Generator", "LiteGenerator", "build"]
