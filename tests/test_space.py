"""The Hugging Face Space's tree: built by scripts/build_space.py, run on its own.

The tree is built into a temporary folder and its own ``app.py`` is started from inside
it, with PYTHONPATH not pointing at the repository, so a module, data file or example the
build left out makes these tests fail, and an interpreter audit hook proves that every
``animegan`` file the server loaded came from the tree, not from the repository (which is
installed in editable mode here).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from app_helpers import AppServer, app_env
from conftest import PROXY_WEIGHTS, ROOT, photo
from PIL import Image

BUILD_SCRIPT = ROOT / "scripts" / "build_space.py"
TREE_TOP = {"app.py", "animegan", "examples", "README.md", "LICENSE", "requirements.txt"}
CPU_INDEX_LINE = "--extra-index-url https://download.pytorch.org/whl/cpu"


def _load_build_module():
    spec = importlib.util.spec_from_file_location("build_space", BUILD_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["build_space"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


build_space = _load_build_module()


@pytest.fixture(scope="module")
def space(tmp_path_factory) -> Path:
    """The Space's tree, built by the script as the sync workflow runs it (from another folder)."""
    work = tmp_path_factory.mktemp("space-build")
    out = work / "space"
    done = subprocess.run([sys.executable, str(BUILD_SCRIPT), str(out)], cwd=work,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "warning" not in done.stderr, done.stderr
    return out


def _front_matter(readme: str) -> tuple[dict, str]:
    import yaml

    assert readme.startswith("---\n")
    head, body = readme[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def _repo_requirements() -> dict:
    from packaging.requirements import Requirement

    lines = [ln.split(" #")[0].strip() for ln in (ROOT / "requirements.txt").read_text().splitlines()]
    reqs = [Requirement(ln) for ln in lines if ln and not ln.startswith(("#", "-"))]
    return {build_space.canonical(r.name): r for r in reqs}


def _package_files(folder: Path) -> set[str]:
    return {
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


# -- the tree -------------------------------------------------------------------------------------
def test_the_tree_holds_what_the_space_runs_and_nothing_else(space):
    linked = {p.relative_to(ROOT).parts[0] for p in build_space.linked_files(ROOT)}  # docs/, results
    assert {p.name for p in space.iterdir()} == TREE_TOP | linked
    assert not [p for p in space.rglob("*") if p.name == "__pycache__" or p.suffix == ".pyc"]
    # every file of the package (modules, calibration photos, style sheets, ...) and every example
    for top in ("animegan", "examples"):
        want = _package_files(ROOT / top)
        have = _package_files(space / top)
        assert want <= have, f"missing from the Space's {top}/: {sorted(want - have)}"
        for rel in want:
            assert (space / top / rel).read_bytes() == (ROOT / top / rel).read_bytes(), rel
    assert list((space / "animegan" / "backends" / "calibration").glob("*.jpg"))
    assert (space / "animegan" / "app" / "style.css").is_file()
    assert (space / "app.py").read_bytes() == (ROOT / "app.py").read_bytes()
    licence = (space / "LICENSE").read_text()
    assert licence == (ROOT / "LICENSE").read_text() and licence.startswith("MIT License")


def test_the_landing_page_links_and_pictures_resolve_inside_the_tree(space):
    """The README is the Space's landing page: its picture, the docs pages it links to and what
    those link to travel with the tree, so nothing on it is broken on the Space."""
    pages, seen, broken = [space / "README.md"], set(), []
    while pages:
        page = pages.pop()
        for target in build_space.local_links(page.read_text(encoding="utf-8")):
            path = build_space.link_path(page, target)
            if not (path.is_relative_to(space) and path.is_file()):
                broken.append(f"{page.relative_to(space)}: {target}")
            elif path.suffix == ".md" and path not in seen:
                seen.add(path)
                pages.append(path)
    assert not broken, broken
    pictures = [t for t in build_space.local_links((space / "README.md").read_text())
                if Path(t).suffix.lower() in {".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg"}]
    assert pictures and all((space / t).read_bytes() == (ROOT / t).read_bytes() for t in pictures)
    assert space / "docs" / "settings.md" in seen


def test_the_build_refuses_a_folder_that_is_not_empty(tmp_path):
    (tmp_path / "old.txt").write_text("left over")
    done = subprocess.run([sys.executable, str(BUILD_SCRIPT), str(tmp_path)], capture_output=True, text=True)
    assert done.returncode != 0 and "not an empty folder" in done.stderr


def test_front_matter_is_generated_from_the_style_registry(space):
    from animegan.styles import DEFAULT_STYLE, STYLES

    meta, body = _front_matter((space / "README.md").read_text())
    repo_meta, repo_body = _front_matter((ROOT / "README.md").read_text())
    assert body == repo_body
    assert {k: v for k, v in meta.items() if k not in ("models", "preload_from_hub")} == repo_meta
    assert meta["sdk"] == "gradio" and meta["app_file"] == "app.py" and meta["license"] == "mit"
    assert meta["suggested_hardware"] == "cpu-basic"
    assert meta["tags"]
    # the Space's Gradio is the one the requirements pin
    assert f"=={meta['sdk_version']}" == str(_repo_requirements()["gradio"].specifier)

    hub_styles = [s for s in STYLES.values() if s.repo_id]
    assert meta["models"] == sorted({s.repo_id for s in hub_styles})
    preloads = [entry.split(" ") for entry in meta["preload_from_hub"]]
    assert all(len(parts) == 3 for parts in preloads)  # repo, files, commit
    wanted = {(s.repo_id, s.filename, s.revision) for s in hub_styles if s.preload}
    have = {(repo, name, rev) for repo, files, rev in preloads for name in files.split(",")}
    assert have == wanted
    assert STYLES[DEFAULT_STYLE].repo_id  # the default style is preloaded
    assert all(re.fullmatch(r"[0-9a-f]{40}", rev) for _, _, rev in preloads)


def test_a_hub_style_without_a_pinned_commit_stops_the_build():
    from animegan.styles import Style

    unpinned = Style(name="x", title="X", description="", size=512, credit="", repo_id="someone/x",
                     filename="x.pt", revision="main")
    with pytest.raises(SystemExit, match="must name the commit"):
        build_space.hub_preloads({"x": unpinned})


def test_a_style_marked_preload_false_is_skipped_out_loud(capsys):
    """A Hub style whose commit could not be pinned is left out of preload_from_hub, and
    the build says so; without the mark, the same style stops the build."""
    from dataclasses import replace

    from animegan.styles import Style

    pinned = Style(name="a", title="A", description="", size=512, credit="", repo_id="someone/a",
                   filename="a.pt", revision="0" * 40)
    unpinned = Style(name="x", title="X", description="", size=512, credit="", repo_id="someone/x",
                     filename="x.onnx", revision=None, preload=False)
    assert build_space.hub_preloads({"a": pinned, "x": unpinned}) == [("someone/a", ["a.pt"], "0" * 40)]
    assert "not preloading x (someone/x/x.onnx)" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="must name the commit"):
        build_space.hub_preloads({"x": replace(unpinned, preload=True)})


def test_preloaded_weights_are_found_in_the_hub_cache_without_the_network(space, tmp_path, monkeypatch):
    """preload_from_hub puts the files in huggingface_hub's default cache (~/.cache/huggingface/hub)
    at build time; the app's usual Hub path must find them there and ask the network nothing."""
    from animegan import weights
    from animegan.styles import STYLES

    meta, _ = _front_matter((space / "README.md").read_text())
    home = tmp_path / "home"
    for var in ("HF_HOME", "HF_HUB_CACHE", "XDG_CACHE_HOME", "HF_HUB_OFFLINE", "ANIMEGAN_WEIGHTS_DIR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens: any request would fail
    data = PROXY_WEIGHTS.read_bytes()
    placed = {}
    for entry in meta["preload_from_hub"]:  # lay the files out as huggingface_hub's cache does
        repo, files, rev = entry.split(" ")
        folder = home / ".cache" / "huggingface" / "hub" / ("models--" + repo.replace("/", "--"))
        blob = folder / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        for name in files.split(","):
            link = folder / "snapshots" / rev / name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(blob, link.parent))
            placed[(repo, name)] = link
    assert placed
    from animegan import runtime
    from animegan.settings import Settings

    rt = runtime.get(Settings.from_env())  # the environment as set here (a process reads its own once)
    for style in STYLES.values():
        if style.repo_id and style.preload:  # preload=False styles download on first use instead
            start = time.monotonic()
            path = weights.resolve(style, rt)
            assert path == placed[(style.repo_id, style.filename)]
            assert time.monotonic() - start < 2  # no retries against the dead endpoint
            weights.load_generator(path)


# -- requirements ---------------------------------------------------------------------------------
def test_scan_follows_every_import_the_app_can_run(tmp_path):
    pkg = tmp_path / "animegan"
    (pkg / "sub").mkdir(parents=True)
    (tmp_path / "app.py").write_text("import json\nfrom animegan import ui\n")
    (pkg / "__init__.py").write_text("from .core import thing\n")
    (pkg / "core.py").write_text("import numpy as np\nthing = 1\n")
    (pkg / "ui.py").write_text(textwrap.dedent("""\
        from typing import TYPE_CHECKING
        from . import sub
        if TYPE_CHECKING:
            import never_at_run_time
        def later():
            import av
            from .sub.deep import x
    """))
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "deep.py").write_text("from PIL import Image\nx = 1\n")
    (pkg / "unused.py").write_text("import tqdm\n")
    modules, third = build_space.app_modules(tmp_path)
    assert modules == {"animegan", "animegan.core", "animegan.ui", "animegan.sub", "animegan.sub.deep"}
    assert third == {"numpy", "av", "PIL"}


def test_space_requirements_pin_the_same_versions_cpu_only_and_only_what_the_app_imports(space):
    from packaging.requirements import Requirement

    lines = (space / "requirements.txt").read_text().splitlines()
    assert lines[0] == CPU_INDEX_LINE
    reqs = [Requirement(ln.split(" #")[0].strip()) for ln in lines[1:] if ln.strip() and not ln.startswith("#")]
    space_reqs = {build_space.canonical(r.name): r for r in reqs}
    assert len(space_reqs) == len(reqs)
    repo = _repo_requirements()

    for key, req in space_reqs.items():
        assert key in repo, f"{req.name} is not in the repository's requirements.txt"
        if key in ("torch", "torchvision"):
            (spec,) = repo[key].specifier
            assert str(req.specifier) == f"=={spec.version}+cpu"  # the CPU build of the same version
        else:
            assert req.specifier == repo[key].specifier, req.name
    assert {"torch", "torchvision"} <= set(space_reqs)

    # what the tree's app.py reaches imports, mapped to the distributions installed here
    _, imported = build_space.app_modules(space)
    owners = importlib.metadata.packages_distributions()
    imported_dists = {build_space.canonical(owners[m][0]) for m in imported}
    assert imported_dists <= set(repo), f"imported but not required: {sorted(imported_dists - set(repo))}"
    assert imported_dists <= set(space_reqs), sorted(imported_dists - set(space_reqs))
    for key in set(space_reqs) - imported_dists:
        # only a CPU build that something the app imports depends on (torchvision, for facenet-pytorch)
        needed_by = [
            d for d in imported_dists
            if any(build_space.canonical(Requirement(r).name) == key
                   for r in importlib.metadata.requires(d) or [] if "extra ==" not in r)
        ]
        assert key in ("torch", "torchvision") and needed_by, f"{key} is required but the app does not import it"


# -- the tree's app, run from the tree ------------------------------------------------------------
_AUDIT_HOOK = '''
import os, sys
_log = open(os.environ["ANIMEGAN_IMPORT_LOG"], "a", buffering=1)
def _hook(event, args):
    if event == "open" and args and isinstance(args[0], (str, os.PathLike)):
        path = os.fspath(args[0])
        if path.endswith((".py", ".pyc")) and (os.sep + "animegan" + os.sep) in path:
            _log.write(os.path.abspath(path) + "\\n")
sys.addaudithook(_hook)
'''


@pytest.fixture(scope="module")
def space_server(space, weights_dir, tmp_path_factory):
    home = tmp_path_factory.mktemp("space-app")
    hooks = home / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(_AUDIT_HOOK)
    log = home / "imports.log"
    env = app_env(weights_dir, home, PYTHONPATH=str(hooks), PYTHONDONTWRITEBYTECODE="1",
                  ANIMEGAN_IMPORT_LOG=str(log))
    assert str(ROOT) not in env["PYTHONPATH"]
    server = AppServer(env, home / "app.log", cwd=space).start()
    server.import_log = log
    yield server
    server.stop()


@pytest.mark.slow
def test_the_trees_app_serves_stylize_from_the_trees_package(space, space_server):
    from gradio_client import Client, handle_file

    client = Client(space_server.url, verbose=False, download_files=True)
    for face_crop in ("off", "portrait"):  # portrait loads the face module lazily, from the tree too
        out = client.predict(handle_file(str(photo("astronaut.png"))), "face_paint_512_v2", face_crop,
                             api_name="/stylize")
        with Image.open(out) as img:
            img.load()
        assert img.format == "PNG" and img.mode == "RGB" and img.size == (512, 512)
        arr = np.asarray(img, dtype=np.float32)
        assert arr.std() > 10  # a picture, not a blank
        with Image.open(photo("astronaut.png")) as src:
            assert np.abs(arr - np.asarray(src.convert("RGB"), dtype=np.float32)).mean() > 5  # and not the photo

    loaded = [Path(p) for p in space_server.import_log.read_text().split()]
    assert loaded, "the audit hook saw no animegan file being read"
    outside = sorted({str(p) for p in loaded if not p.is_relative_to(space)})
    assert not outside, f"the server loaded animegan files from outside the Space's tree: {outside[:5]}"
    names = {p.relative_to(space).as_posix() for p in loaded}
    assert {"animegan/__init__.py", "animegan/app/photo.py", "animegan/faces.py"} <= names

    # the examples are found next to the tree's package (the page drops missing ones silently)
    with urllib.request.urlopen(space_server.url + "/config", timeout=10) as r:
        config = json.dumps(json.load(r))
    for example in (space / "examples").glob("*.*"):
        if example.suffix in (".png", ".jpg"):
            assert example.name in config, f"example {example.name} is not on the page"
    assert space_server.alive()
