"""One mapping from the package's exceptions to what a person reads (app and command line)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class UserMessage:
    """A failure a person can act on: a short title and the message itself."""

    title: str
    text: str


def user_message(exc: BaseException) -> UserMessage | None:
    """The readable form of an expected failure (bad input, missing weights, a bad
    option); ``None`` for anything else, which is a bug to log, not a message to show."""
    from .images import ImageError
    from .video import VideoError
    from .weights import WeightsError

    first = str(exc).strip() or type(exc).__name__
    if isinstance(exc, ImageError):
        return UserMessage("Not a usable image", first)
    if isinstance(exc, WeightsError):
        return UserMessage("Weights unavailable", first)
    if isinstance(exc, VideoError):
        return UserMessage("This clip cannot be used", first)
    if isinstance(exc, ValueError):
        return UserMessage("Not a valid choice", first)
    return None

