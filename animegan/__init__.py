"""animegan: photos to anime portraits with AnimeGANv2, fast on a CPU."""

from .images import ImageError
from .models import Generator, LiteGenerator
from .styles import DEFAULT_STYLE, STYLES, Licence, Style, get_style, licence_card, model_card, register_style
from .stylizer import Result, Stylizer, stylize
from .weights import WeightsError, load_generator

__all__ = [
    "DEFAULT_STYLE",
    "STYLES",
    "Generator",
    "LiteGenerator",
    "ImageError",
    "Licence",
    "Result",
    "Style",
    "Stylizer",
    "WeightsError",
    "get_style",
    "licence_card",
    "model_card",
    "load_generator",
    "register_style",
    "stylize",
]
__version__ = "0.1.0"
