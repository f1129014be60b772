"""The docs stay true: links and paths exist, make targets and python -m modules are real, presets load."""

import importlib.util
import re

import pytest

from guitar_distill.common.config import PROJECT_ROOT, load_preset, preset_names

DOCS = [PROJECT_ROOT / "README.md", PROJECT_ROOT / "CHANGELOG.md", *sorted((PROJECT_ROOT / "docs").glob("*.md"))]
# Committed paths the docs name in backticks: anything under these folders must exist.
COMMITTED = re.compile(r"^(?:docs|reports|models|guitar_distill|tests)/[\w./-]+$")


def code_of(text: str) -> list[str]:
    """Inline code spans and indented code-block lines: where commands and paths are written."""
    spans = re.findall(r"`([^`\n]+)`", text)
    blocks = [line.strip() for line in text.splitlines() if line.startswith("    ") and line.strip()]
    return spans + blocks


def make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (PROJECT_ROOT / "Makefile").read_text(), flags=re.M))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_links_and_paths_exist(doc):
    text = doc.read_text()
    missing = []
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not re.match(r"^[a-z]+:", target) and not (doc.parent / target).exists():
            missing.append(target)
    for code in code_of(text):
        for token in code.split():
            token = token.rstrip(".,;:)")
            if COMMITTED.match(token) and not (PROJECT_ROOT / token).exists():
                missing.append(token)
    assert not missing, f"{doc.name} names files that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_make_targets_and_modules_exist(doc):
    code = code_of(doc.read_text())
    targets = {t for c in code for t in re.findall(r"(?:^|\s)make ([a-z][\w-]*)", c)}
    assert targets <= make_targets(), f"{doc.name}: make targets not in the Makefile: {targets - make_targets()}"
    modules = {m for c in code for m in re.findall(r"python3? -m ([\w.]+)", c)}
    import sys

    sys.path.insert(0, str(PROJECT_ROOT))  # the checkout's shims: python -m teacher runs from here
    try:
        unknown = {m for m in modules if importlib.util.find_spec(m) is None}
    finally:
        sys.path.remove(str(PROJECT_ROOT))
    assert not unknown, f"{doc.name}: python -m modules that do not exist: {unknown}"


def test_the_checker_catches_what_it_should(tmp_path):
    doc = "see [the report](nowhere.md) and `reports/missing.md`; run `make no-such-target`"
    assert re.findall(r"\]\(([^)#\s]+)", doc) == ["nowhere.md"]
    assert [t for c in code_of(doc) for t in c.split() if COMMITTED.match(t)] == ["reports/missing.md"]
    assert "no-such-target" not in make_targets()


@pytest.mark.parametrize("name", preset_names())
def test_every_preset_loads_and_says_what_it_is_for(name):
    """Loading types and checks every field (a typo or a wrong type is an error); the first lines say why."""
    assert load_preset(name).name == name
    first = (PROJECT_ROOT / "guitar_distill" / "presets" / f"{name}.toml").read_text().splitlines()[0]
    assert first.startswith("# "), f"presets/{name}.toml: its first line should say what it is for"
