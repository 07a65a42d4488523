"""Generators: the published AnimeGANv2 network (and, later, our own small ones)."""

from .animeganv2 import Generator

__all__ = ["Generator"]
