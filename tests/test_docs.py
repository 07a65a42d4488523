"""The README and docs/: the generated settings table is current, and every link resolves.

Fast (no server, no model): the README is also the Space's landing page and the first thing a
visitor reads, so a stale table or a broken link there is a bug like any other.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import fields
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 200  # a front page (issue 20); the rest goes under docs/


def _load_script(name: str):
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


settings_table = _load_script("settings_table")
build_space = _load_script("build_space")


def _pages() -> list[Path]:
    """Every Markdown page a reader can reach from the front page: the README, docs/ and the
    benchmark results the docs cite (the Space copies these too)."""
    return [README, *sorted((ROOT / "docs").rglob("*.md")), *sorted((ROOT / "benchmarks" / "results").glob("*.md"))]


# -- the settings table ---------------------------------------------------------------------------
def test_the_settings_table_is_generated_and_current():
    page = settings_table.PAGE.read_text(encoding="utf-8")
    assert settings_table.render(page, settings_table.table()) == page, (
        "docs/settings.md's table is not what animegan/settings.py says: run python scripts/settings_table.py")


def test_every_variable_is_in_the_table_with_its_default():
    from animegan.settings import Settings

    table = settings_table.table(Settings)
    defaults = Settings()
    for f in fields(Settings):
        env = f.metadata.get("env", True)
        name = env if isinstance(env, str) else f"ANIMEGAN_{f.name.upper()}"
        if env is False:
            assert name not in table
            continue
        assert f.metadata.get("doc"), f"Settings.{f.name} has no description"
        (row,) = [line for line in table.splitlines() if line.startswith(f"| `{name}` |")]
        assert row.split(" | ")[1] == settings_table._default(getattr(defaults, f.name))


def test_a_field_without_a_description_stops_the_table():
    from dataclasses import dataclass, field

    @dataclass(frozen=True)
    class Two:
        documented: int = field(default=1, metadata={"doc": "has one"})
        elsewhere: str = field(default="x", metadata={"doc": "another project's", "env": "HF_SOMETHING"})
        internal: int = field(default=0, metadata={"doc": "no variable", "env": False})
        forgotten: int = 2

    with pytest.raises(SystemExit, match="forgotten"):
        settings_table.table(Two)

    @dataclass(frozen=True)
    class One(Two):
        forgotten: int = field(default=2, metadata={"doc": "now said"})

    rows = settings_table.table(One).splitlines()[2:]
    assert [r.split("`")[1] for r in rows] == ["ANIMEGAN_DOCUMENTED", "HF_SOMETHING", "ANIMEGAN_FORGOTTEN"]


def test_the_backend_setting_names_every_backend():
    from animegan.backends import BACKENDS
    from animegan.settings import Settings

    (backend,) = [f for f in fields(Settings) if f.name == "backend"]
    missing = [name for name in BACKENDS if f"`{name}`" not in backend.metadata["doc"]]
    assert not missing, f"ANIMEGAN_BACKEND's description does not name {missing}"


def test_the_settings_docstring_keeps_no_table_of_its_own():
    import animegan.settings

    assert "ANIMEGAN_WEIGHTS_DIR" not in (animegan.settings.__doc__ or "")


# -- the front page ------------------------------------------------------------------------------
def test_the_readme_is_a_front_page():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move detail to docs/"
    text = "\n".join(lines)
    assert "bash scripts/test.sh" in text and "pip install -r requirements.txt && python app.py" in text
    # that one install gives the `animegan` command the README shows, and the README shows no other way in
    assert "-e ." in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    assert "\n    animegan photo.jpg" in text and "python -m animegan" not in text
    for target in build_space.local_links(text):
        if target.endswith(".md") and target.startswith("docs/"):
            break
    else:
        pytest.fail("the README links no page under docs/")


# -- links ---------------------------------------------------------------------------------------
def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: its text, lower case, punctuation dropped, spaces -> '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text only
    text = re.sub(r"[^\w\- ]", "", text.strip().lower().replace("`", "").replace("*", ""))
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    seen: dict[str, int] = {}
    anchors = set()
    for match in re.finditer(r"^ {0,3}#{1,6}\s+(.+?)\s*#*\s*$", text, re.M):
        slug = _slug(match.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _problems(page: Path, root: Path) -> list[str]:
    text = page.read_text(encoding="utf-8")
    targets = build_space.local_links(text)
    targets += re.findall(r"\]\((#[^)\s]+)\)", build_space._CODE.sub("", text))  # anchors in this page
    problems = []
    for target in targets:
        path = page if target.startswith("#") else build_space.link_path(page, target)
        where = f"{page.relative_to(root)}: {target}"
        if not path.is_relative_to(root):
            problems.append(f"{where} leaves the repository")
        elif not path.exists():
            problems.append(f"{where} points at nothing")
        elif not path.is_file():
            problems.append(f"{where} is a folder (it would not travel to the Space): link a file")
        elif "#" in target and path.suffix == ".md":
            anchor = target.split("#", 1)[1]
            if anchor not in _anchors(path):
                problems.append(f"{where}: no heading gives #{anchor}")
    return problems


def test_every_relative_link_and_picture_resolves():
    problems = [p for page in _pages() for p in _problems(page, ROOT)]
    assert not problems, "\n".join(problems)


def test_the_link_check_sees_links_pictures_and_anchors(tmp_path):
    """The checker itself: each kind of link is read, and each kind of breakage is caught."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## Two words\n")
    (tmp_path / "pic.png").write_bytes(b"")
    good = tmp_path / "README.md"
    good.write_text("![p](pic.png) [a](docs/page.md#two-words) [b](#top)\n"
                    "<img src=\"pic.png\"> [web](https://example.org/x.md) `[code](nowhere.md)`\n\n"
                    "# Top\n\n[c]: docs/page.md\n")
    assert {"pic.png", "docs/page.md#two-words", "docs/page.md"} <= set(build_space.local_links(good.read_text()))
    assert _problems(good, tmp_path) == []
    bad = tmp_path / "bad.md"
    bad.write_text("![p](missing.png) [a](docs/page.md#nothing) [b](docs) [c](#gone) [d](../outside.md)\n")
    found = "\n".join(_problems(bad, tmp_path))
    for expected in ("missing.png points at nothing", "#nothing", "docs is a folder", "#gone", "leaves the repository"):
        assert expected in found, found


def test_pictures_made_with_the_test_weights_say_so():
    """Every picture on the front page is captioned as made with the test weights (the proxy is
    never presented as a published style)."""
    text = README.read_text(encoding="utf-8")
    pictures = re.findall(r"!\[([^\]]*)\]\(([^)]+)\)", text)
    assert pictures, "the front page shows no picture"
    for alt, _ in pictures:
        assert "test weights" in alt, alt
    assert "test weights" in text.split(pictures[0][1], 1)[1].split("\n\n", 2)[1]  # the caption under it
