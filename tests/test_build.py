"""Checks on a built book: run by `make test` after `make book` (skipped in a bare `pytest`).

`make pipeline-test` sets DEQODE_BUILT_PROFILE; without it these tests are skipped, because they
need the executed notebooks and the rendered site.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from deqode.book import build as book
from deqode.paths import repo_root

ROOT = repo_root()
PROFILE = os.environ.get("DEQODE_BUILT_PROFILE")
pytestmark = pytest.mark.skipif(not PROFILE, reason="needs a built book (make pipeline-test)")
NOTEBOOKS = sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb"))


def make_dry_run(*args: str) -> str:
    proc = subprocess.run(
        ["make", "-C", str(ROOT), "-n", f"PROFILE={PROFILE}", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return proc.stdout


def executed_targets() -> list[str]:
    """The executed-notebook files, named as make targets (make does not pass -W to sub-makes)."""
    return [f"_build/executed/{PROFILE}/{name}.ipynb" for name in NOTEBOOKS]


def executed(dry_run: str) -> set[str]:
    return set(re.findall(r"deqode\.book execute notebooks/(\S+)\.ipynb", dry_run))


def html_dir() -> Path:
    return (
        ROOT / "_build" / "html"
        if PROFILE == "cpu"
        else ROOT / "_build" / PROFILE / "_build" / "html"
    )


def test_nothing_to_do_when_nothing_changed():
    stamp = (html_dir() / ".deqode-built").relative_to(ROOT)
    proc = subprocess.run(["make", "-C", str(ROOT), "-q", str(stamp), f"PROFILE={PROFILE}"])
    assert proc.returncode == 0, "a second `make book` would redo work"


def test_editing_the_library_reexecutes_every_notebook():
    dry_run = make_dry_run("-W", "src/deqode/paths.py", *executed_targets())
    assert executed(dry_run) == set(NOTEBOOKS)


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_editing_one_notebook_reexecutes_only_it(name):
    edited = f"notebooks/{name}.ipynb"
    assert executed(make_dry_run("-W", edited, *executed_targets())) == {name}


def test_site_holds_every_page():
    html = html_dir()
    pages = [
        "index.html",
        "book/reproducibility.html",
        "book/bibliography.html",
        "book/developer_notes.html",
        "book/claims.html",
    ] + [f"notebooks/{n}.html" for n in NOTEBOOKS]
    for page in pages:
        assert (html / page).is_file(), f"{page} missing from {html}"
    bib = (html / "book" / "bibliography.html").read_text(encoding="utf-8")
    assert "two sides of the same coin" in bib.lower()
    repro = (html / "book" / "reproducibility.html").read_text(encoding="utf-8")
    for name in book.toc_notebooks(ROOT / "book" / "_toc.yml"):
        assert name in repro


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_saved_figure_is_in_the_chapter(name):
    """Each PNG a notebook saved under results/ also appears as an image in its HTML page."""
    figures = sorted((ROOT / "results" / PROFILE / name).glob("*.png"))
    page = (html_dir() / "notebooks" / f"{name}.html").read_text(encoding="utf-8")
    assert page.count("<img") >= len(figures)


def test_claims_ledger_has_a_verdict_for_every_claim():
    """Every catalogue claim has evidence from this build, and the page says which profile."""
    from deqode.book import claims

    page = (html_dir() / "book" / "claims.html").read_text(encoding="utf-8")
    assert f"Claims ledger ({PROFILE} profile)" in page
    assert claims.NOT_RUN not in page
    for claim_id in claims.load_catalogue():
        assert claim_id in page
