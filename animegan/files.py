"""Files written whole or not at all, and file hashes: the one way the package does each.

- :func:`atomic_write`: ``write(path)`` into a new temporary file beside the target, then
  renamed onto it. A reader never sees half a file; a crash leaves no partial file under
  the target's name (the temporary one is removed); a symlink at the target is replaced
  by the file, never followed.
- :func:`install_folder`: the same for a finished folder (a built model).
- :func:`sha256_file`: a file's sha256, read in blocks.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

BLOCK = 1 << 20


def sha256_file(path: str | os.PathLike, digest=None) -> str:
    """The sha256 (hex) of a file's bytes; with ``digest``, the file's bytes are added to it
    (then its hex digest is returned, to which the caller may add more)."""
    digest = digest if digest is not None else hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(BLOCK), b""):
            digest.update(block)
    return digest.hexdigest()


def partial_name(target: Path) -> Path:
    """A new, hidden name beside ``target`` for the file that becomes it."""
    return target.with_name(f".{target.name}.{os.urandom(4).hex()}.part")


def atomic_write(target: str | os.PathLike, write: Callable[[Path], object]) -> Path:
    """Call ``write(path)`` to write a temporary file beside ``target``, then rename it onto
    ``target`` (see the module's docstring). Returns ``target`` as a Path."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_dir() and not target.is_symlink():
        raise IsADirectoryError(f"{target} is a folder")
    partial = partial_name(target)
    try:
        write(partial)
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def atomic_write_bytes(target: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(target, lambda path: path.write_bytes(data))


def atomic_write_text(target: str | os.PathLike, text: str) -> Path:
    return atomic_write(target, lambda path: path.write_text(text, encoding="utf-8"))


def new_folder_beside(target: Path) -> Path:
    """A new empty hidden folder beside ``target``, to build it in before :func:`install_folder`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))


def install_folder(tmp: Path, target: Path) -> None:
    """Put the finished folder ``tmp`` at ``target`` atomically, replacing what is there
    (a damaged copy). If another process installed the same folder first, theirs stays."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=".old-", dir=target.parent))
        target.rename(old / "folder")  # a rename onto an existing folder fails, so move it aside
    try:
        tmp.rename(target)
    except OSError:
        if not target.exists():  # not another process finishing first: a real failure
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
