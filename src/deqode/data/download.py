"""``python -m deqode download``: fetch what torchvision can fetch, say where the rest goes, and
verify what is on disk.

:func:`fetch` gets one set into ``<root>/<folder>/`` (torchvision's stock classes, which check the
md5s as they download; the Tancik files from their source) or, for a set placed by hand
(Tiny-ImageNet, ImageNet), returns the exact placement instructions. :func:`verify_set` checks
every file of a set against its known md5 (:mod:`deqode.data.integrity`). An existing torchvision
data folder (``<root>/MNIST/raw``, ``<root>/cifar-10-batches-py``, ...) counts as present where
it is: nothing is moved or fetched again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from deqode.data import integrity
from deqode.data.registry import DATASETS, check_available, download_dataset
from deqode.errors import DatasetMissingError
from deqode.paths import resolve


def known_names() -> list[str]:
    """The names ``download`` accepts as datasets: every registered set."""
    return DATASETS.names()


@dataclass(frozen=True)
class Outcome:
    """What :func:`fetch` did for one set: ``status`` is ``present``, ``fetched``,
    ``generated`` (nothing to fetch), ``by-hand`` (placement instructions in ``message``) or
    ``failed`` (the reason and the manual way in ``message``)."""

    name: str
    status: str
    message: str

    @property
    def in_place(self) -> bool:
        return self.status in ("present", "fetched", "generated")


def _where(name: str, root: str | os.PathLike) -> Path:
    """The folder the reader of ``name`` opens (an existing torchvision folder where it is)."""
    entry = DATASETS[name]
    folder = resolve(root) / entry.folder
    return entry.locate(folder) if entry.locate is not None else folder


def _present(name: str, root: str | os.PathLike) -> bool:
    try:
        check_available([name], root)
    except DatasetMissingError:
        return False
    return True


def fetch(name: str, root: str | os.PathLike = "data") -> Outcome:
    """Get set ``name`` into the data ``root`` if it is not there (network needed), or say how."""
    if DATASETS[name].folder is None:
        return Outcome(name, "generated", "generated or bundled: nothing to fetch")
    if _present(name, root):
        return Outcome(name, "present", f"already in place under {_where(name, root)}")
    entry = DATASETS[name]
    folder = resolve(root) / entry.folder
    if entry.download is None:
        return Outcome(name, "by-hand", entry.howto(folder))
    try:
        download_dataset(name, root)
    except DatasetMissingError as err:
        return Outcome(name, "failed", str(err))
    return Outcome(name, "fetched", f"downloaded into {_where(name, root)}")


def verify_set(name: str, root: str | os.PathLike = "data") -> list[integrity.FileCheck]:
    """Every file of set ``name``: ``ok``, ``damaged`` or ``missing``. Files with a known md5 are
    checksummed; MNIST's unpacked IDX files are checked against their headers; the files of a
    set without known checksums (Tiny-ImageNet, ImageNet, Tancik) only for presence."""
    if DATASETS[name].folder is None:
        return []  # generated or bundled: no files
    folder = _where(name, root)
    checks = integrity.verify(name, folder)
    if checks:
        return checks
    return [_presence(folder, rel) for rel in DATASETS[name].required_files]


def _presence(folder: Path, rel: str) -> integrity.FileCheck:
    path = folder / rel
    if (path.is_dir() if rel.endswith("/") else path.is_file()):
        return integrity.FileCheck(path, "ok", "present (no checksum known)")
    return integrity.FileCheck(path, "missing", "not on disk")


__all__ = ["Outcome", "fetch", "known_names", "verify_set"]
