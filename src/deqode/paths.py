"""Where things live: the repository root, results and data folders."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The checkout root (the folder with pyproject.toml) for an editable install, else the cwd.

    ``DEQODE_ROOT`` overrides both.
    """
    env = os.environ.get("DEQODE_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve().parents[2]
    if (here / "pyproject.toml").is_file() and (here / "src" / "deqode").is_dir():
        return here
    return Path.cwd().resolve()


def resolve(path: str | os.PathLike) -> Path:
    """An absolute path; relative paths are taken relative to the repository root."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else repo_root() / p


def results_dir(profile: str, *parts: str, root: str | os.PathLike = "results") -> Path:
    """``results/<profile>/<parts...>``, created if missing."""
    out = resolve(root).joinpath(profile, *parts)
    out.mkdir(parents=True, exist_ok=True)
    return out


def reference_dir() -> Path:
    """``data/reference``: the papers' published numbers as CSV."""
    return repo_root() / "data" / "reference"
