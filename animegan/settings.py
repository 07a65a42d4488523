"""Every setting the package reads from the environment, read once into one frozen object.

``app.py`` and the command line call :meth:`Settings.from_env` once and pass the result
down; a library user may build one by hand (``Settings(backend="torch-fp32")``) or let
:class:`animegan.Stylizer` read the environment when it is created. Nothing else in the
package reads ``ANIMEGAN_*`` variables.

Each field's description sits next to it (``metadata={"doc": ...}``); the table of every
variable in ``docs/settings.md`` is generated from them by ``scripts/settings_table.py``
(``tests/test_docs.py`` fails when it is not current). A field is read from
``ANIMEGAN_<FIELD NAME IN CAPITALS>`` unless its metadata names another variable (``"env"``).

The Hugging Face cache is huggingface_hub's own (``HF_HOME`` / ``HF_HUB_CACHE``); it is
read here too, so that a Settings made after those variables change uses the new folder,
and so are ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` (the Hub options every download uses)
and the ISA caps ``ONEDNN_MAX_CPU_ISA`` / ``OV_CPU_MAX_ISA`` (a machine limited to AVX2 is
profiled as one; set both before the process starts, as oneDNN and OpenVINO read them then).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any


def _flag(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


def _setting(default: object, doc: str, env: bool | str = True) -> Any:
    """A field with its description next to it. ``docs/settings.md``'s table is generated from
    these (``scripts/settings_table.py``). ``env``: True for ``ANIMEGAN_<NAME>``, the variable's
    name when another one sets the field (listed under that name), False to leave it out."""
    return field(default=default, metadata={"doc": doc, "env": env})


@dataclass(frozen=True)
class Settings:
    """One read of the environment. Every field has the default a fresh process would get."""

    weights_dir: Path | None = _setting(
        None, "a folder of `<style>.pt` / `.safetensors` / `.onnx` files (or `<style>/` model folders) used "
        "before any download")
    backend: str = _setting(
        "auto", "force a backend: `openvino-int8`, `openvino-bf16`, `openvino-f32`, `onnxruntime`, `torch-bf16`, "
        "`torch-fp32`, `torch-exact` (`auto`: the fastest that stays >= 38 dB from float32)")
    malloc: bool = _setting(True, "`0` leaves glibc's allocator settings alone")
    no_bf16: bool = _setting(False, "`1` treats the CPU as having no native bf16")
    threads: int = _setting(
        0, "threads per inference (0: every CPU this process may use; a batch worker gets its share)")
    calibration_side: int = _setting(512, "long side of the calibration photos for the int8 build")
    max_side_limit: int = _setting(1024, "app: the largest output side a visitor may ask for")
    default_side: int = _setting(512, "app: the output side of `/stylize` and the size slider's start")
    queue_size: int = _setting(16, "app: waiting jobs beyond this are told the app is busy and to try again")
    live_time_limit: float = _setting(
        60.0, "app: seconds of live webcam per start, and per session (an address 4x) per `ANIMEGAN_LIVE_WINDOW`")
    video_max_seconds: float = _setting(
        30.0, "app: the longest clip accepted (and its frame budget: this x 60 frames)")
    video_max_job_seconds: float = _setting(300.0, "app: wall-clock seconds one clip may take before it is stopped")
    live_window: float = _setting(
        600.0, "app: live seconds are counted per session and per address over this window, whatever they restart")
    max_request_mb: float = _setting(
        16.0, "app: the largest request body in MB (JSON, e.g. an image sent as a `data:` URL); file uploads "
        "may be 100 MB")
    cache_minutes: float = _setting(
        10.0, "app: uploads and results are deleted this long after they were made (checked every few minutes)")
    startup_timeout: float = _setting(60.0, "app: seconds to look for weights at start")
    hide_noncommercial: bool = _setting(
        False, "`1` hides the styles whose weights are for non-commercial use only (the app, its API and the "
        "command line)")
    hub_cache: Path | None = _setting(
        None, "huggingface_hub's cache folder, from its own variables (`HF_HUB_CACHE`, `HF_HOME`); from_env "
        "always sets it", env=False)
    memory_budget: int = _setting(
        0, "the most memory one process may use for a picture (`2G`, `1500M`; 0: a quarter of the machine's "
        "memory); a picture whose one pass would not fit goes in tiles that do")
    hf_endpoint: str | None = _setting(
        None, "huggingface_hub's endpoint: another Hub (a mirror, a local server) for every download",
        env="HF_ENDPOINT")
    hf_offline: bool = _setting(False, "`1`: download nothing, use only what is cached", env="HF_HUB_OFFLINE")
    isa_cap: str | None = _setting(
        None, "limit the CPU's instruction sets, e.g. `AVX2` on an AVX-512 machine (oneDNN's and OpenVINO's "
        "own variables, set before the process starts; `OV_CPU_MAX_ISA` too); the machine is profiled as "
        "limited", env="ONEDNN_MAX_CPU_ISA")
    trusted_proxies: int = _setting(
        -1, "app: proxies in front of the app whose `X-Forwarded-For` entries are believed, counted from the "
        "right (-1: one on a Hugging Face Space, where `SPACE_ID` is set; none elsewhere)")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Read every ``ANIMEGAN_*`` variable (the table in docs/settings.md). A value that does
        not parse raises ValueError naming the variable and what it expects."""
        env = os.environ if env is None else env
        defaults = cls()
        values: dict[str, object] = {}
        for f in fields(cls):
            if f.metadata.get("env") is not True:  # set from huggingface_hub's, oneDNN's ... variables below
                continue
            name = f"ANIMEGAN_{f.name.upper()}"
            raw = env.get(name, "").strip()
            if not raw:
                continue
            default = getattr(defaults, f.name)
            try:
                if f.name == "weights_dir":
                    values[f.name] = Path(raw).expanduser()
                elif f.name == "memory_budget":
                    values[f.name] = parse_size(raw)
                elif isinstance(default, bool):
                    values[f.name] = _flag(raw)
                elif isinstance(default, int):
                    values[f.name] = int(raw)
                elif isinstance(default, float):
                    values[f.name] = float(raw)
                else:
                    values[f.name] = raw
            except ValueError:
                if f.name == "memory_budget":
                    raise ValueError(f"{name}={raw!r} is not a size; unset it or give e.g. 2G or 1500M.") from None
                kind = "a whole number" if isinstance(default, int) else "a number"
                raise ValueError(f"{name}={raw!r} is not {kind}; unset it or give e.g. {default!r}.") from None
        values["hub_cache"] = _hub_cache(env)
        values["hf_endpoint"] = env.get("HF_ENDPOINT", "").strip() or None
        values["hf_offline"] = _flag(env.get("HF_HUB_OFFLINE", ""))
        values["isa_cap"] = (env.get("ONEDNN_MAX_CPU_ISA") or env.get("OV_CPU_MAX_ISA") or "").strip() or None
        return cls(**values).checked()

    def checked(self) -> Settings:
        """The same settings with the app's limits made consistent (never an error)."""
        from .policy import SIDE_MIN

        limit = max(SIDE_MIN, self.max_side_limit)
        return _replace(self, max_side_limit=limit, default_side=min(limit, max(SIDE_MIN, self.default_side)),
                        queue_size=max(1, self.queue_size))


# What a process started elsewhere (a Ray worker) needs of this one's environment to read the same
# Settings: the package's variables, huggingface_hub's, and the ISA caps.
FORWARDED_PREFIXES = ("ANIMEGAN_", "HF_", "ONEDNN_MAX_CPU_ISA", "OV_CPU_MAX_ISA")


def forwarded_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The variables of this process's environment a worker process needs to read the same Settings."""
    env = os.environ if env is None else env
    return {k: v for k, v in env.items() if k.startswith(FORWARDED_PREFIXES)}


_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


def parse_size(text: str) -> int:
    """``2G``, ``1500M``, ``2GB``, ``1.5GiB`` or plain bytes -> bytes (binary units); ValueError otherwise."""
    t = text.strip().upper().replace(" ", "")
    for suffix in ("IB", "B"):
        if t.endswith(suffix) and len(t) > len(suffix):
            t = t[: -len(suffix)]
            break
    unit = t[-1] if t[-1:] in ("K", "M", "G", "T") else ""
    number = float(t[:-1] if unit else t)
    if not number >= 0:
        raise ValueError(text)
    return int(number * _UNITS[unit])


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
