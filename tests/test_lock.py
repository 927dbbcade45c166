"""The locked environment: requirements/*.txt match pyproject.toml (a pin or range changed
without `make lock` fails here), every pin is hashed, the book's lock has no test tools, and
environment.yml is the one written from the lock."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from deqode import lock

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def checkout(tmp_path):
    """A copy of the files the locks are checked against."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copy(ROOT / "environment.yml", tmp_path)
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    return tmp_path


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_locks_are_those_of_this_pyproject():
    assert lock.check(ROOT) == []


def test_a_changed_pin_fails(checkout):
    edit(checkout / "pyproject.toml", '"torch==2.14.1"', '"torch==2.14.0"')
    problems = lock.check(checkout)
    assert any("dev.txt was not generated from this pyproject.toml" in p for p in problems)
    assert any("torch==2.14.1 does not satisfy 'torch==2.14.0'" in p for p in problems)


def test_a_range_changed_within_the_locked_version_still_fails(checkout):
    """numpy>=1.27 is still met by the locked numpy: the digest catches it."""
    edit(checkout / "pyproject.toml", '"numpy>=1.26"', '"numpy>=1.27"')
    problems = lock.check(checkout)
    assert len(problems) == len(lock.LOCKS)
    assert all("run `make lock`" in p for p in problems)


def test_a_new_requirement_is_not_locked(checkout):
    edit(checkout / "pyproject.toml", '"ruff>=0.6",', '"ruff>=0.6",\n    "playwright>=1.40",')
    problems = lock.check(checkout)
    assert any("playwright (playwright>=1.40) is not locked" in p for p in problems)
    assert not any("book.txt: playwright" in p for p in problems)  # a dev tool only


def test_an_edited_environment_yml_or_a_drifted_book_lock_fails(checkout):
    edit(checkout / "environment.yml", "name: deqode", "name: deqode2")
    book = checkout / "requirements" / "book.txt"
    edit(book, "\npillow==", "\npillow==10.0.0\n#")
    problems = lock.check(checkout)
    assert any("environment.yml is not the one written from" in p for p in problems)
    assert any("book lock has pillow==10.0.0" in p for p in problems)
    assert any("pillow==10.0.0 does not satisfy 'pillow>=10.1'" in p for p in problems)


def lock_entries(path: Path) -> dict[str, str]:
    """name -> the block of a lock's entry (the pin, its hashes and its annotation)."""
    blocks = re.split(r"\n(?=[A-Za-z0-9])", path.read_text())
    return {block.split("==")[0]: block for block in blocks if not block.startswith("#")}


@pytest.mark.parametrize("name", sorted(lock.LOCKS))
def test_every_pin_is_exact_and_hashed_and_the_platform_named(name):
    path = ROOT / "requirements" / f"{name}.txt"
    entries = lock_entries(path)
    assert len(entries) > 100
    for package, block in entries.items():
        assert re.match(rf"{re.escape(package)}==\S+ \\", block), block[:80]
        assert "--hash=sha256:" in block, f"{package} has no hash in {path}"
    assert lock.PLATFORM in path.read_text()
    assert "file://" not in path.read_text() and "/opt/" not in path.read_text()


def test_the_book_installs_no_test_tools_but_the_benchmarks_reference():
    book = lock.locked_versions(ROOT / "requirements" / "book.txt")
    dev = lock.locked_versions(ROOT / "requirements" / "dev.txt")
    assert {"pytest", "ruff", "nbval", "pytest-xdist", "optuna"} <= set(dev) - set(book)
    for package in ("torch", "torchvision", "torchdeq", "jupyter-book", "papermill", "pillow",
                    "setuptools"):
        assert book[package] == dev[package]
    assert dev["torch"] == "2.14.1" and dev["torchvision"] == "0.29.1"


def test_pillow_is_declared_from_the_release_with_sized_default_fonts():
    reqs = [Requirement(r) for r in lock.requirements_of(ROOT / "pyproject.toml", ())]
    pillow = next(r for r in reqs if r.name.lower() == "pillow")
    assert "10.1" in pillow.specifier and "10.0.1" not in pillow.specifier


def test_requirements_of_an_unknown_extra_names_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown extra 'docs'; valid extras: \['bench', "):
        lock.requirements_of(ROOT / "pyproject.toml", ("docs",))


def test_setup_installs_the_hashed_lock_then_deqode_without_its_dependencies(tmp_path):
    venv = tmp_path / "venv"  # `make -n` prints only; a venv of its own all the same
    for target, name in (("setup", "dev"), ("install-book-lock", "book")):
        out = subprocess.run(["make", "-n", "-B", target, f"VENV={venv}"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
        assert f"--require-hashes -r requirements/{name}.txt" in out
        assert "--no-deps --no-build-isolation -e ." in out
    assert not venv.exists()


def test_the_install_section_reads_the_measurement(tmp_path):
    assert "has not been measured" in lock.install_section(tmp_path)
    (tmp_path / "requirements").mkdir()
    record = {"target": "setup-book", "seconds": 150.0, "venv_bytes": 3 * 2**30, "packages": 140,
              "commit": "abc", "measured_on": "2026-12-03", "machine": "Linux x86_64, 2 CPU cores",
              "python": "3.11.7", "command": "make measure-install (make setup-book in a clone)"}
    (tmp_path / lock.MEASUREMENT).write_text(json.dumps(record))
    text = lock.install_section(tmp_path)
    assert "**2.5 min**" in text and "**3.0 GiB**" in text and "(140 packages)" in text
    assert "`make measure-install`" in text and "2026-12-03" in text
    assert "load average" not in text  # not recorded by the first measurement
    record["load_average"] = 7.5
    (tmp_path / lock.MEASUREMENT).write_text(json.dumps(record))
    assert "2 CPU cores, load average 7.5 at the start" in lock.install_section(tmp_path)


def test_the_reproducibility_page_shows_the_measured_install():
    from deqode.book import build

    page = (ROOT / "book" / "reproducibility.md").read_text()
    assert build.INSTALL_MARKER in page and "make lock" in page
    assert (ROOT / lock.MEASUREMENT).is_file(), "run `make measure-install`"
    assert "has not been measured" not in lock.install_section(ROOT)
