"""Every setting the package reads from the environment, read once into one frozen object.

``app.py`` and the command line call :meth:`Settings.from_env` once and pass the result
down; a library user may build one by hand (``Settings(backend="torch-fp32")``) or let
:class:`animegan.Stylizer` read the environment when it is created. Nothing else in the
package reads ``ANIMEGAN_*`` variables.

=============================  ==========  ===================================================
variable                       default     what it sets
=============================  ==========  ===================================================
``ANIMEGAN_WEIGHTS_DIR``       (none)      a folder of ``<style>.pt`` / ``.safetensors`` files
                                           (or ``<style>/`` model folders) used before any
                                           download
``ANIMEGAN_BACKEND``           ``auto``    force a backend (``openvino-int8``, ``torch-bf16``,
                                           ``torch-fp32``, ``torch-exact``)
``ANIMEGAN_MALLOC``            ``1``       ``0`` leaves glibc's allocator settings alone
``ANIMEGAN_NO_BF16``           ``0``       ``1`` treats the CPU as having no native bf16
``ANIMEGAN_THREADS``           ``0``       threads per inference (0: every CPU this process
                                           may use; a batch worker gets its share)
``ANIMEGAN_CALIBRATION_SIDE``  ``512``     long side of the calibration photos for int8
``ANIMEGAN_MAX_SIDE_LIMIT``    ``1024``    app: the largest output side a visitor may ask for
``ANIMEGAN_DEFAULT_SIDE``      ``512``     app: the output side used when none is asked for
``ANIMEGAN_QUEUE_SIZE``        ``16``      app: waiting jobs beyond this are told to retry
``ANIMEGAN_LIVE_TIME_LIMIT``   ``60``      app: seconds per start of the live webcam
``ANIMEGAN_VIDEO_MAX_SECONDS`` ``30``      app: the longest clip accepted (and its frame budget:
                                           this x 60 frames)
``ANIMEGAN_VIDEO_MAX_JOB_SECONDS`` ``300`` app: wall-clock seconds one clip may take
``ANIMEGAN_LIVE_WINDOW``       ``600``     app: live seconds per visitor are counted over this
                                           window (session and address), whatever they restart
``ANIMEGAN_MAX_REQUEST_MB``    ``16``      app: largest request body (JSON, a ``data:`` URL) in MB;
                                           file uploads have their own 100 MB limit
``ANIMEGAN_CACHE_MINUTES``     ``10``      app: uploads and results are deleted this long after
                                           they were made (checked every few minutes)
``ANIMEGAN_STARTUP_TIMEOUT``   ``60``      app: seconds to look for weights at start
``ANIMEGAN_HIDE_NONCOMMERCIAL`` ``0``      ``1`` hides styles whose weights are for
                                           non-commercial use only (app and command line)
=============================  ==========  ===================================================

The Hugging Face cache is huggingface_hub's own (``HF_HOME`` / ``HF_HUB_CACHE``); it is
read here too, so that a Settings made after those variables change uses the new folder.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path


def _flag(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    """One read of the environment. Every field has the default a fresh process would get."""

    weights_dir: Path | None = None
    backend: str = "auto"
    malloc: bool = True
    no_bf16: bool = False
    threads: int = 0
    calibration_side: int = 512
    max_side_limit: int = 1024
    default_side: int = 512
    queue_size: int = 16
    live_time_limit: float = 60.0
    video_max_seconds: float = 30.0
    video_max_job_seconds: float = 300.0
    live_window: float = 600.0
    max_request_mb: float = 16.0
    cache_minutes: float = 10.0
    startup_timeout: float = 60.0
    hide_noncommercial: bool = False
    hub_cache: Path | None = None  # huggingface_hub's cache folder (from_env always sets it)
    # app: proxies in front of the app whose X-Forwarded-For entries are believed (from the
    # right); -1: one on a Hugging Face Space (SPACE_ID set), none elsewhere
    trusted_proxies: int = -1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every ``ANIMEGAN_*`` variable (see the module's table). A value that does
        not parse raises ValueError naming the variable and what it expects."""
        env = os.environ if env is None else env
        defaults = cls()
        values: dict[str, object] = {}
        for f in fields(cls):
            if f.name == "hub_cache":
                continue
            name = f"ANIMEGAN_{f.name.upper()}"
            raw = env.get(name, "").strip()
            if not raw:
                continue
            default = getattr(defaults, f.name)
            try:
                if f.name == "weights_dir":
                    values[f.name] = Path(raw).expanduser()
                elif isinstance(default, bool):
                    values[f.name] = _flag(raw)
                elif isinstance(default, int):
                    values[f.name] = int(raw)
                elif isinstance(default, float):
                    values[f.name] = float(raw)
                else:
                    values[f.name] = raw
            except ValueError:
                kind = "a whole number" if isinstance(default, int) else "a number"
                raise ValueError(f"{name}={raw!r} is not {kind}; unset it or give e.g. {default!r}.") from None
        values["hub_cache"] = _hub_cache(env)
        return cls(**values).checked()

    def checked(self) -> Settings:
        """The same settings with the app's limits made consistent (never an error)."""
        from .policy import SIDE_MIN

        limit = max(SIDE_MIN, self.max_side_limit)
        return _replace(self, max_side_limit=limit, default_side=min(limit, max(SIDE_MIN, self.default_side)),
                        queue_size=max(1, self.queue_size))


def _replace(settings: Settings, **changes: object) -> Settings:
    from dataclasses import replace

    return replace(settings, **changes)


def _hub_cache(env: Mapping[str, str]) -> Path:
    """huggingface_hub's cache folder as its documented variables set it (HF_HUB_CACHE,
    else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub),
    read now: huggingface_hub itself reads them once, when it is first imported."""
    if env.get("HF_HUB_CACHE"):
        return Path(env["HF_HUB_CACHE"]).expanduser()
    if env.get("HF_HOME"):
        return Path(env["HF_HOME"]).expanduser() / "hub"
    xdg = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"
