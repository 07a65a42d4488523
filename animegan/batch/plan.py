"""What a batch will do: list the inputs under SRC, give each one output under DST
(planned all at once, so no two inputs share an output and no input is overwritten),
and decide from the manifest what is already done.

SRC and DST are local folders or fsspec URLs (``s3://bucket/photos``, ``gs://...``,
``hf://datasets/...``); the file system comes from :func:`fsspec.core.url_to_fs`.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ..video import VIDEO_SUFFIXES

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
MANIFEST_NAME = "animegan-manifest.jsonl"
# What identifies one version of an input file, best first, as file systems report it.
_FINGERPRINT_KEYS = ("ETag", "etag", "md5Hash", "blob_id", "sha256", "mtime", "LastModified", "last_modified",
                     "updated")


class PlanError(ValueError):
    """SRC or DST cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class Options:
    """Everything that decides what an output looks like (and the worker needs)."""

    src: str
    dst: str
    style: str
    face_crop: str = "off"
    max_side: int = 1024
    format: str = "png"
    suffix: str = "_anime"
    video_max_side: int = 512
    max_seconds: float = 0.0
    trim: bool = False
    backend: str | None = None
    weights: str | None = None
    exact_statistics: bool = False
    lite: bool = False  # the style's fast variant (ANIMEGAN_WEIGHTS_DIR/<style>-lite/)

    def key(self) -> str:
        """A short hash of the options that change the pixels: a rerun with other
        options redoes the work instead of keeping outputs made another way."""
        shaping = asdict(self)
        for name in ("src", "dst", "backend"):  # where files live and how fast they are made
            shaping.pop(name)
        for name in ("exact_statistics", "lite"):  # off: the keys of manifests made before the option stay valid
            if not shaping[name]:
                shaping.pop(name)
        return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()[:12]


@dataclass
class Task:
    """One input file (photo or clip) and where its result goes."""

    input: str  # path relative to SRC, with "/" separators: the manifest's key
    output: str  # path relative to DST
    kind: str  # "photo" or "video"
    bytes: int
    fingerprint: str


@dataclass
class Plan:
    todo: list[Task]
    skipped_done: list[Task] = field(default_factory=list)
    skipped_failed: list[Task] = field(default_factory=list)  # failed before; not retried


def open_fs(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The file system and the root path inside it for a folder or URL."""
    try:
        fs, root = fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as exc:  # an unknown protocol, or its package is missing
        raise PlanError(f"Cannot open {url}: {exc}") from None
    return fs, root.rstrip("/") or "/"


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def join(root: str, rel: str) -> str:
    return posixpath.join(root, rel) if root != "/" else "/" + rel


def fingerprint(info: dict) -> str:
    """Size plus the first version marker the file system gives (ETag, mtime ...)."""
    for key in _FINGERPRINT_KEYS:
        if info.get(key) is not None:
            return f"{info.get('size')}:{info[key]}"
    return str(info.get("size"))


def list_inputs(src: str, dst: str, made: set[str] = frozenset()) -> list[tuple[str, dict]]:
    """(path relative to SRC, file info) for every photo and clip under SRC, sorted;
    DST is left out when it lies inside SRC, and so is every file in ``made`` (full
    paths of the outputs earlier runs wrote: with DST = SRC they sit among the inputs)."""
    fs, root = open_fs(src)
    if not fs.exists(root):
        raise PlanError(f"SRC {src} does not exist.")
    if fs.isfile(root):
        return [(posixpath.basename(root), fs.info(root))]
    dst_fs, dst_root = open_fs(dst)
    inside = type(dst_fs) is type(fs) and (dst_root + "/").startswith(root + "/") and dst_root != root
    found = []
    for path, info in fs.find(root, detail=True).items():
        rel = posixpath.relpath(path, root)
        name = posixpath.basename(rel)
        if name.startswith(".") or posixpath.splitext(name)[1].lower() not in IMAGE_SUFFIXES | VIDEO_SUFFIXES:
            continue
        if inside and (path + "/").startswith(dst_root + "/"):
            continue  # our own outputs, when DST is a folder inside SRC
        if path in made:
            continue  # an output of an earlier run, when DST and SRC share folders
        found.append((rel, info))
    return sorted(found)


SUFFIX_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.+")


def check_suffix(suffix: str) -> str:
    """A suffix for output names: letters, digits and ``_ - . +`` only (no folders, no ``..``)."""
    if not set(suffix) <= SUFFIX_CHARS or ".." in suffix:
        raise PlanError(f"--suffix {suffix!r} is not a plain name suffix: use letters, digits, '_', '-', "
                        "'.' or '+' (no '/', no '..'), e.g. _anime.")
    return suffix


def assign_outputs(inputs: list[str], suffix: str, fmt_of: Callable[[str], str], taken: set[str],
                   ) -> dict[str, str]:
    """input -> output (both relative paths with "/"), planned together: inputs that would
    share an output name (photo.jpg and photo.png) both keep their extension in it, and a
    name that still clashes, or that is in ``taken`` (lower case: the inputs as seen from
    the output folder), gets a number. ``fmt_of(input)`` is the output's extension."""
    check_suffix(suffix)

    def name(rel: str, with_ext: bool) -> str:
        folder, base = posixpath.split(rel)
        stem, ext = posixpath.splitext(base)
        stem = f"{stem}_{ext[1:].lower()}" if with_ext else stem
        return posixpath.join(folder, f"{stem}{suffix}.{fmt_of(rel)}")

    first = defaultdict(list)
    for rel in inputs:
        first[name(rel, False).lower()].append(rel)
    taken = set(taken)
    planned: dict[str, str] = {}
    for rel in inputs:
        out = name(rel, len(first[name(rel, False).lower()]) > 1)
        stem, ext = posixpath.splitext(out)
        n = 2
        while out.lower() in taken:
            out, n = f"{stem}_{n}{ext}", n + 1
        taken.add(out.lower())  # compared case-blind: DST may be on a case-insensitive file system
        planned[rel] = out
    return planned


def plan_outputs(inputs: list[str], options: Options) -> dict[str, str]:
    """input -> output (both relative), planned together (:func:`assign_outputs`); no
    output is an input or the manifest."""
    src_fs, src_root = open_fs(options.src)
    dst_fs, dst_root = open_fs(options.dst)
    same_fs = type(src_fs) is type(dst_fs)
    # Full paths of the inputs, as seen from DST: an output there must never be one of them.
    full = [src_root] if src_fs.isfile(src_root) else [join(src_root, rel) for rel in inputs]
    taken = {posixpath.relpath(path, dst_root).lower() for path in full} if same_fs else set()
    taken.add(MANIFEST_NAME.lower())
    return assign_outputs(inputs, options.suffix, lambda rel: output_format(rel, options.format), taken)

def output_format(rel: str, photo_format: str) -> str:
    """The output's extension: mp4 for a clip, else the chosen photo format."""
    return "mp4" if posixpath.splitext(rel)[1].lower() in VIDEO_SUFFIXES else photo_format


def made_outputs(options: Options, previous: dict[str, dict]) -> set[str]:
    """Full paths (in SRC's file system) of the outputs the manifest says earlier runs
    wrote: never inputs, even where DST and SRC share folders (``batch SRC SRC``)."""
    src_fs, _ = open_fs(options.src)
    dst_fs, dst_root = open_fs(options.dst)
    if type(src_fs) is not type(dst_fs):
        return set()
    return {join(dst_root, row["output"]) for row in previous.values()
            if row.get("status") == "done" and isinstance(row.get("output"), str)}


def make_plan(options: Options, previous: dict[str, dict], retry_failed: bool = False) -> Plan:
    """Every input's task, and which of them the manifest says are already settled: done
    with these options and this version of the input, with the output still there; or
    failed the same way before (retried only with ``retry_failed``)."""
    dst_fs, dst_root = open_fs(options.dst)
    listed = list_inputs(options.src, options.dst, made_outputs(options, previous))
    outputs = plan_outputs([rel for rel, _ in listed], options)
    existing = set()
    if dst_fs.exists(dst_root) and previous:
        existing = {posixpath.relpath(p, dst_root) for p in dst_fs.find(dst_root)}
    key = options.key()
    plan = Plan(todo=[])
    for rel, info in listed:
        kind = "video" if posixpath.splitext(rel)[1].lower() in VIDEO_SUFFIXES else "photo"
        task = Task(rel, outputs[rel], kind, int(info.get("size") or 0), fingerprint(info))
        row = previous.get(rel)
        same = (row is not None and row.get("fingerprint") == task.fingerprint and row.get("options") == key
                and row.get("output") == task.output)
        if same and row.get("status") == "done" and task.output in existing:
            plan.skipped_done.append(task)
        elif same and row.get("status") == "failed" and not retry_failed:
            plan.skipped_failed.append(task)
        else:
            plan.todo.append(task)
    # Clips first: the longest tasks start early and do not hold up the end of the batch.
    plan.todo.sort(key=lambda t: t.kind != "video")
    return plan
