"""One mapping from the package's exceptions to what a person reads (app and command line)."""

from __future__ import annotations

import re
from dataclasses import dataclass

# An absolute path on the server (two or more parts), not part of a URL: kept as its last part.
_SERVER_PATH = re.compile(r"(?<![\w:/.~-])/(?:[^\s'\"()\[\],:;/]+/)+([^\s'\"()\[\],:;/]+)")


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



def public(text: str) -> str:
    """``text`` without the server's folders: every absolute path becomes its file name
    (URLs are left alone), for messages shown to visitors of the app."""
    return _SERVER_PATH.sub(r"\1", text)
