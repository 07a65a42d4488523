#!/usr/bin/env python3
"""Write the exact tree the Hugging Face Space receives: ``python scripts/build_space.py OUT``.

The tree holds, and nothing else:

- ``app.py`` and the ``animegan`` package: every file git knows under ``animegan/``
  (tracked, or new and not ignored), so new modules and data files (calibration photos,
  a style sheet) travel without being listed here;
- ``examples/`` (the same rule);
- ``README.md`` with the Space's front matter, completed with ``models:`` and
  ``preload_from_hub:`` generated from the style registry (``animegan/styles.py``), so the
  weights baked into the image are exactly the ones the app asks the Hub for;
- every file the README links to or shows (its picture, the ``docs/`` pages), and what those
  pages link to in turn (the benchmark results they cite), so the Space's landing page has
  no broken link or picture;
- ``LICENSE``;
- ``requirements.txt`` for the Space: PyTorch's CPU wheel index first, then the
  repository's own pins for what the app imports, torch and torchvision as their CPU
  builds (``==<version>+cpu``). Local installs and CI keep using the repository's
  ``requirements.txt``; only the Space reads this one.

It needs only the standard library and git (the sync workflow runs it before installing
anything), and refuses an OUT folder that is not empty.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import re
import shutil
import subprocess
import sys
import types
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "animegan"
ENTRY = "app.py"
COPIED = (ENTRY, PACKAGE, "examples", "LICENSE")  # as they are; README and requirements are written
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# Taken from PyTorch's CPU index as "<version>+cpu" (what its Linux wheels are called).
# torchvision is not imported by the app itself but by facenet-pytorch; pinned here, or pip
# would pull the default (CUDA) build from PyPI to satisfy that dependency.
CPU_BUILDS = ("torch", "torchvision", "torchaudio")
# import name -> distribution, where the two differ by more than "-" / "_" / case
IMPORT_TO_DIST = {"PIL": "pillow", "cv2": "opencv-python-headless", "yaml": "pyyaml"}
GENERATED_KEYS = ("models", "preload_from_hub")
_COMMIT = re.compile(r"[0-9a-f]{40}")


def canonical(name: str) -> str:
    """A distribution name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


# -- which files ------------------------------------------------------------------------------
def project_files(top: str, root: Path = ROOT) -> list[Path]:
    """Files under ``top`` as git sees them: tracked or new-and-not-ignored, still on disk.

    Without git (a source archive), every file under ``top`` but caches and compiled files.
    """
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z", "--", top],
            cwd=root, capture_output=True, check=True,
        ).stdout.decode().split("\0")
        files = [root / p for p in listed if p]
    except (OSError, subprocess.CalledProcessError):
        files = [p for p in (root / top).rglob("*") if "__pycache__" not in p.parts and p.suffix != ".pyc"]
    return sorted({p for p in files if p.is_file()})


# -- what the README links to --------------------------------------------------------------------
_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.S)
_LINKS = (
    re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)"),  # [text](target)
    re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?([^\s>]+)>?", re.M),  # [label]: target
    re.compile(r"""<(?:img|a|source)\b[^>]*?\b(?:src|href)\s*=\s*["']([^"']+)["']""", re.I),  # HTML
)
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def local_links(markdown: str) -> list[str]:
    """The relative targets of a Markdown text's links and pictures, as written (``#anchor``
    included): code spans and fenced blocks are left out, and so are URLs, ``mailto:``,
    site paths (``/...``) and anchors within the same page."""
    text = _CODE.sub("", markdown)
    found = []
    for pattern in _LINKS:
        for match in pattern.finditer(text):
            target = match.group(1)
            if not (_SCHEME.match(target) or target.startswith(("/", "#"))):
                found.append(target)
    return found


def link_path(page: Path, target: str) -> Path:
    """The file a relative link in ``page`` points at (its ``#anchor`` and ``?query`` cut)."""
    return Path(os.path.normpath(page.parent / urllib.parse.unquote(target.split("#")[0].split("?")[0])))


def linked_files(root: Path = ROOT, start: str = "README.md") -> list[Path]:
    """Files git knows that ``start`` links to or shows, following the links of every Markdown
    page reached: what the Space needs besides the app for its landing page to work."""
    known = set(project_files(".", root))
    seen: set[Path] = set()
    pages = [root / start]
    while pages:
        page = pages.pop()
        for target in local_links(page.read_text(encoding="utf-8")):
            path = link_path(page, target)
            if path in seen or path not in known:
                continue  # outside the repository, or missing: tests/test_docs.py reports those
            seen.add(path)
            if path.suffix.lower() == ".md":
                pages.append(path)
    return sorted(seen)


# -- the style registry -------------------------------------------------------------------------
def load_styles(root: Path = ROOT) -> dict:
    """``animegan.styles.STYLES`` without running ``animegan/__init__.py`` (which imports
    torch): the package is stood in for by an empty module while styles.py is imported."""
    saved = {k: v for k, v in sys.modules.items() if k == PACKAGE or k.startswith(PACKAGE + ".")}
    for k in saved:
        del sys.modules[k]
    stub = types.ModuleType(PACKAGE)
    stub.__path__ = [str(root / PACKAGE)]
    sys.modules[PACKAGE] = stub
    try:
        return dict(importlib.import_module(f"{PACKAGE}.styles").STYLES)
    finally:
        for k in [k for k in sys.modules if k == PACKAGE or k.startswith(PACKAGE + ".")]:
            del sys.modules[k]
        sys.modules.update(saved)


def hub_preloads(styles: dict) -> list[tuple[str, list[str], str]]:
    """(repo_id, filenames, revision) for every style whose weights live on the Hub."""
    groups: dict[tuple[str, str], list[str]] = {}
    unpinned = []
    for style in styles.values():
        if not (style.repo_id and style.filename):
            continue
        if not getattr(style, "preload", True):  # the registry says why: no commit could be pinned
            print(f"build_space: not preloading {style.name} ({style.repo_id}/{style.filename}): the registry "
                  "marks it preload=False (no pinned commit); the Space downloads it on first use.", file=sys.stderr)
            continue
        if not (style.revision and _COMMIT.fullmatch(style.revision)):
            unpinned.append(f"{style.name} ({style.repo_id}, revision={style.revision!r})")
            continue
        files = groups.setdefault((style.repo_id, style.revision), [])
        if style.filename not in files:
            files.append(style.filename)
    if unpinned:
        raise SystemExit(
            "Every style on the Hub must name the commit it uses (a 40-hex revision= in "
            f"{PACKAGE}/styles.py), so the Space preloads exactly what the app asks for. "
            "Not pinned: " + ", ".join(unpinned)
        )
    return [(repo, files, rev) for (repo, rev), files in groups.items()]


def space_readme(readme: str, styles: dict) -> str:
    """The README with ``models:`` and ``preload_from_hub:`` added to its front matter."""
    lines = readme.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---" or "---\n" not in lines[1:]:
        raise SystemExit("README.md has no front matter (a block between two '---' lines) for the Space.")
    end = lines.index("---\n", 1)
    for line in lines[1:end]:
        key = line.split(":", 1)[0].strip()
        if key in GENERATED_KEYS:
            raise SystemExit(f"README.md's front matter sets {key!r}; build_space.py writes it from the registry.")
    head = [line for line in lines[1:end] if not line.lstrip().startswith("#")]  # notes for this repo
    preloads = hub_preloads(styles)
    models = sorted({s.repo_id for s in styles.values() if s.repo_id})
    added = ["models:\n", *[f"  - {m}\n" for m in models], "preload_from_hub:\n"]
    added += [f"  - {repo} {','.join(files)} {rev}\n" for repo, files, rev in preloads]
    return "".join(lines[:1] + head + added + lines[end:])


# -- what the app imports -----------------------------------------------------------------------
def _import_nodes(node: ast.AST):
    """Every import statement in a module, at any depth, except under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
            for sub in child.orelse:
                yield from _import_nodes(ast.Module(body=[sub], type_ignores=[]))
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        yield from _import_nodes(child)


def _module_file(root: Path, dotted: str) -> Path | None:
    base = root.joinpath(*dotted.split("."))
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def app_modules(root: Path = ROOT, entry: str = ENTRY) -> tuple[set[str], set[str]]:
    """(package modules app.py reaches, top-level third-party modules they import).

    Follows every import, including those inside functions (lazy imports run too, later),
    through the package; the standard library is left out.
    """
    reached: dict[str, Path] = {}
    third: set[str] = set()
    queue: list[tuple[str, Path]] = [("__main__", root / entry)]
    while queue:
        name, path = queue.pop()
        if name in reached:
            continue
        reached[name] = path
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                if node.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                targets = [base] + [f"{base}.{a.name}" for a in node.names]
            for target in targets:
                top = target.split(".")[0]
                if top == PACKAGE:
                    parts = target.split(".")
                    for i in range(1, len(parts) + 1):  # a submodule runs its parents' __init__ first
                        dotted = ".".join(parts[:i])
                        found = _module_file(root, dotted)
                        if found is not None and dotted not in reached:
                            queue.append((dotted, found))
                elif top and top != "__future__" and top not in sys.stdlib_module_names:
                    third.add(top)
    reached.pop("__main__")
    return set(reached), third


def import_dist(module: str) -> str:
    return canonical(IMPORT_TO_DIST.get(module, module))


# -- requirements ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Requirement:
    line: str  # as written, without its comment
    name: str
    spec: str  # e.g. "==2.14.1", ">=10", ""
    comment: str

    @property
    def key(self) -> str:
        return canonical(self.name)

    @property
    def pinned(self) -> str | None:
        m = re.fullmatch(r"==\s*([^\s,;]+)", self.spec)
        return m.group(1) if m else None


def parse_requirements(text: str) -> list[Requirement]:
    out = []
    for raw in text.splitlines():
        body, _, comment = raw.partition(" #")
        body = body.strip()
        if not body or body.startswith(("#", "-")):
            continue
        m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?\s*(.*)", body)
        if m is None:
            raise SystemExit(f"requirements.txt: cannot read {raw!r}")
        out.append(Requirement(body, m.group(1), m.group(3).strip(), comment.strip()))
    return out


def space_requirements(repo_text: str, imported: set[str]) -> tuple[str, list[str], list[str]]:
    """(the Space's requirements.txt, repository requirements left out, imports nothing provides)."""
    kept, dropped = [], []
    for req in parse_requirements(repo_text):
        if req.key in CPU_BUILDS:
            if req.pinned is None or "+" in req.pinned:
                raise SystemExit(f"requirements.txt must pin {req.name} to a plain version (==X.Y.Z), not {req.spec!r}")
            kept.append(f"{req.name}=={req.pinned}+cpu")
        elif req.key in {import_dist(m) for m in imported}:
            kept.append(req.line + (f"  # {req.comment}" if req.comment else ""))
        else:
            dropped.append(req.name)
    provided = {canonical(r.name) for r in parse_requirements("\n".join(kept))}
    unprovided = sorted(m for m in imported if import_dist(m) not in provided)
    text = "\n".join([
        f"--extra-index-url {CPU_INDEX}",
        "# Written by scripts/build_space.py from the repository's requirements.txt: the same",
        "# pins, only what the app imports, PyTorch as its CPU-only builds from the index above.",
        *kept,
    ]) + "\n"
    return text, dropped, unprovided


# -- the tree -----------------------------------------------------------------------------------------
def build(out: Path, root: Path = ROOT) -> dict:
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SystemExit(f"{out} exists and is not an empty folder; choose a new one.")
    styles = load_styles(root)
    readme = space_readme((root / "README.md").read_text(encoding="utf-8"), styles)
    _, imported = app_modules(root)
    requirements, dropped, unprovided = space_requirements(
        (root / "requirements.txt").read_text(encoding="utf-8"), imported)

    out.mkdir(parents=True, exist_ok=True)
    for top in COPIED:
        files = [root / top] if (root / top).is_file() else project_files(top, root)
        if not files:
            raise SystemExit(f"Nothing to copy for {top!r} (is it in the repository?)")
        for src in files:
            dst = out / src.relative_to(root)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    written = {"README.md", "requirements.txt"}
    for src in linked_files(root):  # the README's pictures and pages, and what those pages link to
        rel = src.relative_to(root)
        if rel.as_posix() in written or rel.parts[0] in COPIED:
            continue  # written below, or already copied
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, out / rel)
    (out / "README.md").write_text(readme, encoding="utf-8")
    (out / "requirements.txt").write_text(requirements, encoding="utf-8")
    files = sorted(p for p in out.rglob("*") if p.is_file())
    return {
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
        "dropped": dropped,
        "unprovided": unprovided,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="an empty (or new) folder for the Space's tree")
    args = parser.parse_args(argv)
    summary = build(args.out)
    print(f"Space tree in {args.out}: {summary['files']} files, {summary['bytes'] / 1e6:.2f} MB")
    if summary["dropped"]:
        print("not installed on the Space (the app does not import them): " + ", ".join(summary["dropped"]))
    if summary["unprovided"]:
        print("warning: the app imports modules no requirement provides: " + ", ".join(summary["unprovided"]),
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
