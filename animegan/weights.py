"""Find, download (huggingface_hub), safely load and check generator weights."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import pickle
import re
import warnings
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

from .files import atomic_write, sha256_file
from .models import Generator
from .models.onnx import OnnxGenerator, OnnxModelError
from .models.registry import CONFIG, WEIGHTS, ConfigError, architectures, build, is_model_folder, read_config
from .runtime import HubOptions, Runtime, get
from .styles import Style, get_style

log = logging.getLogger("animegan")

WEIGHTS_DIR_ENV = "ANIMEGAN_WEIGHTS_DIR"  # named in messages; read by Settings.from_env
HUB = "https://huggingface.co"  # huggingface_hub's default endpoint
_SUFFIXES = (".safetensors", ".pt", ".pth", ".onnx")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class WeightsError(RuntimeError):
    """Weights could not be found, fetched or loaded; the message says what to do."""


class NotDownloaded(WeightsError):
    """Nothing is cached and nothing could be downloaded because the machine is offline
    (HF_HUB_OFFLINE, or the download host did not answer): the usual state of a machine
    without network, which the app reports once for all such styles."""


def offline_file(style: Style) -> str:
    """What to call a style's weights in a weights folder (ANIMEGAN_WEIGHTS_DIR): an ONNX
    style needs its ONNX graph, a PyTorch style a checkpoint."""
    return f"{style.name}.onnx" if style.is_onnx else f"{style.name}.pt (or .safetensors)"


def _from_weights_dir(name: str, folder: Path | None) -> Path | None:
    if not folder:
        return None
    for suffix in _SUFFIXES:
        candidate = Path(folder) / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    candidate = Path(folder) / name  # a model folder (config.json + model.safetensors)
    return candidate if (candidate / "config.json").is_file() else None


def _local_source(style: Style, rt: Runtime) -> Path | None:
    """What stands in for any download: the weights folder's file for the style, else the style's own path."""
    return _from_weights_dir(style.name, rt.settings.weights_dir) or style.path


def _from_hub(style: Style, hub: HubOptions) -> Path:
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(style.repo_id, style.filename, revision=style.revision, **hub.download()))


def reachable_hub(rt: Runtime, url: str | None = None) -> HubOptions:
    """The runtime's Hub options, made cache-only when the Hub (or ``url``'s host) does not
    answer: asked once per host (:meth:`Runtime.reachable`), not retried per file."""
    hub = rt.hub
    if not hub.offline and not rt.reachable(url or hub.endpoint or HUB):
        return replace(hub, offline=True)
    return hub


def _url_target(style: Style, hub: HubOptions) -> Path:
    """Where weights downloaded from a plain URL are kept: the Hub cache's animegan-urls/."""
    key = hashlib.sha256(style.url.encode()).hexdigest()[:16]
    return hub.cache / "animegan-urls" / key / Path(style.url).name


def _from_url(style: Style, hub: HubOptions) -> Path:
    """Weights with no Hub home: a plain HTTP download into the same cache folder."""
    from huggingface_hub.file_download import http_get

    target = _url_target(style, hub)
    if target.is_file():
        if _pinned_ok(style, target):
            return target
        target.unlink(missing_ok=True)  # a changed or damaged copy: fetch it again
    if hub.offline:
        raise FileNotFoundError(f"nothing is downloaded (offline, or the host did not answer) and {style.url} "
                                "is not cached")

    def download(partial: Path) -> None:
        with open(partial, "wb") as f:
            http_get(style.url, f, displayed_filename=target.name)
        if not _pinned_ok(style, partial):
            raise WeightsError(f"the file at {style.url} is not the pinned one (sha256 "
                               f"{sha256_file(partial)[:16]}..., expected {style.sha256[:16]}...); it was not used")

    return atomic_write(target, download)


def _pinned_ok(style: Style, path: Path) -> bool:
    """True when ``path`` matches the style's pinned sha256, or when nothing is pinned
    (:func:`resolve` then says, once per process, that the file was not checked)."""
    if style.sha256 is None:
        return True
    return sha256_file(path) == style.sha256


def _describe(exc: BaseException) -> str:
    """One line for a download failure: the error and, where it wraps one, the root cause."""
    def line(e: BaseException) -> str:
        text = str(e).strip().splitlines()
        return f"{type(e).__name__}: {text[0] if text else ''}"

    root = exc
    while root.__cause__ is not None or root.__context__ is not None:
        root = root.__cause__ or root.__context__
    said = line(exc) if root is exc else f"{line(exc)} (cause: {line(root)})"
    return said[:400]


def resolve(style: str | Style, rt: Runtime | None = None) -> Path:
    """The local file holding a style's weights, downloading it once if needed.

    Order: ``<settings.weights_dir>/<style>.safetensors|.pt`` (ANIMEGAN_WEIGHTS_DIR; or a
    model folder ``<style>/``), the style's local path (a file or a model folder), the
    Hugging Face Hub (cached by huggingface_hub in the runtime's Hub cache), then a plain
    URL. ``rt`` defaults to the process's runtime.
    """
    rt = rt or get()
    style = get_style(style) if isinstance(style, str) else style
    local = _local_source(style, rt)
    if local is not None:
        if not local.exists():
            raise WeightsError(f"Weights file for style {style.name!r} not found: {local}")
        return local

    tried: list[str] = []
    sources = []
    if style.repo_id and style.filename:
        sources.append((f"the Hugging Face Hub ({style.repo_id}/{style.filename})", _from_hub))
    if style.url:
        sources.append((style.url, _from_url))
    hub = rt.hub
    all_offline = True  # every source skipped for want of a network, none failed otherwise
    for where, fetch in sources:
        cache_only = reachable_hub(rt, None if fetch is _from_hub else style.url)
        try:
            path = fetch(style, cache_only)
            if fetch is _from_url and style.sha256 is None and rt.count(f"unpinned {style.name}", 1) == 1:
                log.warning("weights for %s from %s are not pinned (no sha256 in the style registry): not checked",
                            style.name, style.url)  # once per process, not on every use
            return path
        except Exception as exc:  # network, 404, 5xx, offline: try the next source
            not_asked = cache_only.offline and isinstance(exc, FileNotFoundError)  # not cached, not fetched
            all_offline &= not_asked
            if not_asked:  # not a failure of the source: it was not asked
                why = "HF_HUB_OFFLINE is set" if hub.offline else "its host did not answer; not retried"
                tried.append(f"  - {where}: not downloaded ({why})")
            else:
                tried.append(f"  - {where}: {_describe(exc)}")
    offline = " (HF_HUB_OFFLINE is set, so nothing was downloaded)" if hub.offline else ""
    error = NotDownloaded if all_offline and sources else WeightsError
    raise error(
        f"Could not get the weights for style {style.name!r}{offline}; nothing is cached.\n"
        + "\n".join(tried)
        + f"\nTo work offline, put the file in a folder as {offline_file(style)} "
        f"and set {WEIGHTS_DIR_ENV} to that folder, or pass --weights FILE."
    )


def local_weights(style: str | Style, rt: Runtime | None = None) -> Path | None:
    """Where a style's weights already are on this machine (the weights folder, its local
    path, the Hub cache or the URL cache), without downloading anything; None if nowhere."""
    from huggingface_hub import try_to_load_from_cache

    rt = rt or get()
    style = get_style(style) if isinstance(style, str) else style
    local = _local_source(style, rt)
    if local is not None:
        return local if local.exists() else None
    if style.repo_id:
        cached = try_to_load_from_cache(style.repo_id, style.filename or CONFIG, cache_dir=rt.hub.cache,
                                        revision=style.revision)
        if isinstance(cached, str):
            return Path(cached)
    if style.url:
        target = _url_target(style, rt.hub)
        return target if target.is_file() else None
    return None


def read_state_dict(path: str | Path) -> OrderedDict[str, torch.Tensor]:
    """Read a checkpoint without running code from it: safetensors, or a weights-only pickle."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"Weights file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(16)
    is_zip = head.startswith(b"PK")
    if path.suffix == ".safetensors" or (not is_zip and head[8:9] == b"{"):
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return OrderedDict(load_file(str(path)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise WeightsError(f"{path} is not a readable safetensors file ({exc}).") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's notes on odd pickle protocols
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise WeightsError(
            f"Refused to load {path}: it is not a plain tensor checkpoint. It holds Python "
            "objects that would run code when unpickled, and only weights are loaded "
            f"(torch.load weights_only=True). Detail: {str(exc).splitlines()[0][:200]}"
        ) from None
    except Exception as exc:  # random bytes make the unpickler fail in many ways (IndexError, KeyError, ...)
        raise WeightsError(
            f"{path} is not a PyTorch checkpoint (could not read it: {str(exc).splitlines()[0][:200]})."
        ) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{path} holds a {type(state).__name__}, not a state_dict of tensors.")
    return OrderedDict(state)


def check_state_dict(state: dict[str, torch.Tensor], origin: str = "the checkpoint") -> None:
    """Raise WeightsError naming missing/unexpected keys and wrong shapes."""
    expected = {k: tuple(v.shape) for k, v in Generator().state_dict().items()}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [
        f"{k}: {tuple(state[k].shape)} (expected {expected[k]})"
        for k in expected
        if k in state and tuple(state[k].shape) != expected[k]
    ]
    problems = []
    for label, items in (("missing keys", missing), ("unexpected keys", unexpected), ("wrong shapes", wrong)):
        if items:
            shown = ", ".join(items[:5]) + (f" and {len(items) - 5} more" if len(items) > 5 else "")
            problems.append(f"{len(items)} {label}: {shown}")
    if problems:
        raise WeightsError(
            f"{origin} is not an AnimeGANv2 generator checkpoint: " + "; ".join(problems) + "."
        )


def _load_state_file(path: str | Path) -> Generator:
    """A Generator in eval mode with the weights from ``path`` (checked, strict)."""
    state = read_state_dict(path)
    check_state_dict(state, origin=str(path))
    model = Generator()
    model.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return model.eval().requires_grad_(False)


# -- model folders (config.json + model.safetensors) and Hub model repos ---------------------
def _from_folder(folder: Path) -> nn.Module:
    config = read_config(folder)
    if not (folder / WEIGHTS).is_file():
        raise WeightsError(f"{folder} has a config.json but no {WEIGHTS}.")
    known = architectures()
    name = config.get("architecture", "animeganv2")
    if name not in known:
        raise WeightsError(f"Unknown generator architecture {name!r} in {folder}/{CONFIG}; known: {', '.join(known)}.")
    cls = known[name]
    # The mixin's own loader, strict: every tensor must be there with its shape. It prints a
    # line for local folders; keep the command line's output clean.
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            model = cls.from_pretrained(str(folder), strict=True)
    except RuntimeError as exc:  # missing/unexpected keys, wrong shapes
        raise WeightsError(f"{folder}/{WEIGHTS} does not match its config.json: "
                           f"{str(exc).splitlines()[0][:300]}") from None
    return model


def _download_folder(repo_id: str, hub: HubOptions, revision: str | None = None) -> Path:
    """config.json + model.safetensors of a Hub repo, in huggingface_hub's cache; the
    snapshot folder holding both."""
    from huggingface_hub import hf_hub_download

    config = Path(hf_hub_download(repo_id, CONFIG, revision=revision, **hub.download()))
    weights = Path(hf_hub_download(repo_id, WEIGHTS, revision=revision, **hub.download()))
    if weights.parent != config.parent:  # different revisions in between: keep them together
        raise WeightsError(f"{repo_id}: config.json and {WEIGHTS} came from different revisions; try again.")
    return config.parent


def load_generator(source: str | Path, revision: str | None = None, rt: Runtime | None = None) -> nn.Module:
    """A ready (eval mode, no gradients) generator from a model folder, a Hub repo id, or a
    published AnimeGANv2 state_dict file (a Hub repo with the runtime's Hub options)."""
    try:
        return _load_generator(source, revision, rt)
    except ConfigError as exc:
        raise WeightsError(str(exc)) from None


def _load_generator(source: str | Path, revision: str | None, rt: Runtime | None) -> nn.Module:
    path = Path(source)
    if path.is_file() and path.name == WEIGHTS and is_model_folder(path.parent):
        path = path.parent  # model.safetensors inside a model folder: use its config
    if path.is_dir():
        if not is_model_folder(path):
            raise WeightsError(f"{path} is a folder without a {CONFIG}: not a saved model "
                         "(expected config.json + model.safetensors, as save_pretrained writes them).")
        model = _from_folder(path)
    elif path.is_file():
        model = _load_state_file(path)
    elif isinstance(source, str) and _REPO_ID.match(source) and not source.startswith((".", "/")):
        try:
            folder = _download_folder(source, reachable_hub(rt or get()), revision)
        except Exception as exc:
            if type(exc).__name__ == "WeightsError":
                raise
            raise WeightsError(f"Could not get the model {source!r} from the Hugging Face Hub: "
                         f"{_describe(exc)}") from None
        model = _from_folder(folder)
    else:
        raise WeightsError(f"Weights not found: {source} (a model folder, a Hub repo id or a .pt/.safetensors file).")
    return model.eval().requires_grad_(False)


def style_architecture(name: str, rt: Runtime | None = None) -> nn.Module:
    """An untrained module with a style's architecture, found without its weights where
    possible: the config.json of its model folder (ANIMEGAN_WEIGHTS_DIR/<name>/ or its
    local path) or of its Hub model repo (cached or fetched: a few hundred bytes);
    a plain weights file means the published AnimeGANv2 network."""
    rt = rt or get()
    style = get_style(name)
    for folder in (_from_weights_dir(style.name, rt.settings.weights_dir), style.path):
        if folder is not None and is_model_folder(folder):
            return build(read_config(folder))
    if style.repo_id and not style.filename:
        from huggingface_hub import hf_hub_download

        config = hf_hub_download(style.repo_id, CONFIG, revision=style.revision, **reachable_hub(rt).download())
        return build(read_config(Path(config).parent))
    return build({"architecture": "animeganv2"})


def load_model(path: str | Path, style: str | Style, rt: Runtime | None = None) -> Generator | OnnxGenerator:
    """What a backend is made from: an ONNX file (``.onnx``) as an :class:`OnnxGenerator`
    fed as the style says (value range, size multiple, layout), else PyTorch weights."""
    style = get_style(style) if isinstance(style, str) else style
    if Path(path).suffix.lower() != ".onnx":
        return load_generator(path, rt=rt)
    try:
        return OnnxGenerator.load(path, value_range=style.value_range, multiple=style.multiple, layout=style.layout)
    except OnnxModelError as exc:
        raise WeightsError(f"Style {style.name!r}: {exc}") from None
