"""One owner of process-wide state: nothing in the package but ``animegan.runtime`` writes
module globals, environment variables, thread counts or allocator settings.

The package is read as source (every module, every function): a module-level name that
is assigned, mutated (``NAME[...] = ``, ``NAME.update(...)``, ``NAME.append(...)``, ...)
or declared ``global`` anywhere but at its definition, a function cached for the whole
process (``functools.cache``), a write to ``os.environ``, or a call that sets
process-wide state (``torch.set_num_threads``, ``mallopt``) fails the test, naming the
place. There is no allow-list beyond constants (never written) and the runtime itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

from conftest import ROOT

PACKAGE = ROOT / "animegan"
OWNER = PACKAGE / "runtime.py"
MUTATORS = {"append", "extend", "insert", "pop", "popitem", "clear", "update", "setdefault", "add", "discard",
            "remove", "__setitem__", "__delitem__", "sort", "reverse"}
PROCESS_SETTERS = {"set_num_threads", "set_num_interop_threads", "mallopt", "malloc_trim", "putenv", "unsetenv",
                   "set_flush_denormal", "setrecursionlimit"}
PROCESS_CACHES = {"cache", "lru_cache"}


def _module_names(tree: ast.Module) -> set[str]:
    """Names bound by assignments at module level (not imports, functions or classes)."""
    names: set[str] = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AnnAssign, ast.AugAssign)) else []
        for target in targets:
            for sub in ast.walk(target):
                if isinstance(sub, ast.Name):
                    names.add(sub.id)
    return names


def _root(node: ast.AST) -> str | None:
    """The name at the start of ``a.b[c].d``."""
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _is_environ(node: ast.AST) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "environ" or (
        isinstance(node, ast.Name) and node.id == "environ")


def problems_in(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names = _module_names(tree)
    where = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name
    found = []

    def say(node: ast.AST, what: str) -> None:
        found.append(f"{where}:{node.lineno}: {what}")

    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]
    for func in functions:
        for node in ast.walk(func):
            if isinstance(node, ast.Global):
                say(node, f"writes module globals {', '.join(node.names)}")
            targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
                node, (ast.AugAssign, ast.AnnAssign)) else node.targets if isinstance(node, ast.Delete) else []
            for target in targets:
                if isinstance(target, (ast.Subscript, ast.Attribute)) and _root(target) in names:
                    say(node, f"writes into the module-level {_root(target)}")
                if isinstance(target, ast.Subscript) and _is_environ(target.value):
                    say(node, "writes os.environ")
                if isinstance(target, ast.Attribute) and _root(target) == "torch":
                    say(node, f"sets {ast.unparse(target)} for the whole process")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner, method = node.func.value, node.func.attr
            if method in MUTATORS and isinstance(owner, ast.Name) and owner.id in names:
                say(node, f"mutates the module-level {owner.id} ({method})")
            if method in MUTATORS | {"__setitem__"} and _is_environ(owner):
                say(node, f"changes os.environ ({method})")
            if method in PROCESS_SETTERS:
                say(node, f"sets process-wide state ({ast.unparse(node.func)})")
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node in tree.body:
            for deco in node.decorator_list:
                name = deco.func if isinstance(deco, ast.Call) else deco
                if isinstance(name, ast.Attribute) and name.attr in PROCESS_CACHES or (
                        isinstance(name, ast.Name) and name.id in PROCESS_CACHES):
                    say(node, f"{node.name} caches for the whole process ({ast.unparse(deco)})")
    return found


def test_only_the_runtime_holds_process_wide_state():
    modules = sorted(p for p in PACKAGE.rglob("*.py") if p != OWNER)
    assert len(modules) > 50
    problems = [line for path in modules for line in problems_in(path)]
    assert not problems, "process-wide state outside animegan/runtime.py:\n" + "\n".join(problems)


def test_the_check_finds_each_kind_of_write(tmp_path):
    """The checker itself: every kind of write is found (so the test above can fail)."""
    bad = tmp_path / "bad.py"
    bad.write_text("""
import functools, os, torch
CACHE = {}
COUNT = [0]
_CORE = None
TABLE = {"a": 1}  # a constant: read, never written

def a():
    global _CORE
    _CORE = 1

def b():
    CACHE["x"] = 1
    CACHE.update(y=2)
    COUNT[0] += 1
    os.environ["ANIMEGAN_THREADS"] = "1"
    os.environ.setdefault("X", "1")
    torch.set_num_threads(2)
    torch.backends.cudnn.benchmark = True
    return TABLE["a"]

@functools.cache
def c():
    return 1
""")
    found = problems_in(bad)
    lines = sorted(int(f.split(":")[1]) for f in found)
    assert lines == [9, 13, 14, 15, 16, 17, 18, 19, 23], found
    assert not any("TABLE" in f for f in found)
