"""The three layers of the package: core never imports book tooling or chapters, and book tooling
never imports a chapter. Every import is read, including those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "deqode"
# the application: may import anything
ENTRY_POINTS = {"deqode", "deqode.__main__", "deqode.cli", "deqode.rehearse"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer(module: str) -> str:
    if module in ENTRY_POINTS:
        return "entry"
    if module == "deqode.book" or module.startswith("deqode.book."):
        return "book"
    if module == "deqode.chapters" or module.startswith("deqode.chapters."):
        return "chapters"
    return "core"


def imported_modules(path: Path) -> set[str]:
    """Every ``deqode`` module that ``path`` imports (``from deqode import x`` counts as
    ``deqode.x``; relative imports are resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path).split(".")
    if path.name != "__init__.py":
        here = here[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "deqode")
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] != "deqode":
                continue
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


ALLOWED = {"core": {"core"}, "book": {"core", "book"}, "chapters": {"core", "book", "chapters"},
           "entry": {"core", "book", "chapters", "entry"}}


def violations() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        src = module_name(path)
        for target in sorted(imported_modules(path)):
            if layer(target) not in ALLOWED[layer(src)] and target != "deqode":
                out.append(f"{src} ({layer(src)}) imports {target} ({layer(target)})")
    return out


def test_layers_are_respected():
    assert violations() == []


def test_layer_rule_catches_a_violation(tmp_path, monkeypatch):
    """The walker must see an import hidden inside a function."""
    fake = tmp_path / "deqode"
    (fake / "solvers").mkdir(parents=True)
    (fake / "solvers" / "bad.py").write_text(
        "def f():\n    from deqode.chapters import homoode\n    return homoode\n"
    )
    monkeypatch.setattr(__import__(__name__), "PACKAGE", fake)
    assert violations() == ["deqode.solvers.bad (core) imports deqode.chapters (chapters)",
                            "deqode.solvers.bad (core) imports deqode.chapters.homoode (chapters)"]


@pytest.mark.parametrize("module, expected", [
    ("deqode.train", "core"), ("deqode.book.notebook", "book"),
    ("deqode.chapters.sim.koopman", "chapters"), ("deqode.cli", "entry"),
])
def test_layer_of(module, expected):
    assert layer(module) == expected
