"""The real app (``python app.py``) in a subprocess on 127.0.0.1, for the live and video tests."""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path

from app_helpers import AppServer, app_env


@contextlib.contextmanager
def live_app(weights_dir: Path, log: Path, **env_extra: str):
    """Yield the base URL of a running app.py (its limits set through ``env_extra``)."""
    with tempfile.TemporaryDirectory(prefix="animegan-app-") as home:
        server = AppServer(app_env(weights_dir, Path(home), **env_extra), log).start()
        try:
            yield server.url
        finally:
            server.stop()
