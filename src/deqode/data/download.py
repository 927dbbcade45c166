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

#: ImageNet (ILSVRC 2012) for Continuous DEQ Table 4: read by ``torchvision.datasets.ImageNet``
#: from ``<root>/imagenet/``; licensed, so always placed by hand. Either the three archives
#: (torchvision unpacks them on first use) or the prepared layout torchvision leaves behind.
IMAGENET = "imagenet"
IMAGENET_ARCHIVES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar",
                     "ILSVRC2012_devkit_t12.tar.gz")
IMAGENET_PREPARED = ("train/", "val/", "meta.bin")
IMAGENET_URL = "https://image-net.org/download-images.php"


def imagenet_howto(folder: Path) -> str:
    """Where the ImageNet files go, as ``torchvision.datasets.ImageNet(folder)`` reads them."""
    return (
        f"ImageNet (ILSVRC 2012) is licensed and cannot be downloaded automatically: sign in at "
        f"{IMAGENET_URL}, download {', '.join(IMAGENET_ARCHIVES)} (the 2012 training and "
        f"validation images and the development kit, task 1 & 2) and put the three files, "
        f"unopened, in {folder}/; torchvision.datasets.ImageNet unpacks them there on first "
        f"use. A folder already prepared by torchvision works as it is: {folder}/train/<wnid>/"
        f"*.JPEG, {folder}/val/<wnid>/*.JPEG and {folder}/meta.bin"
    )


def _imagenet_present(folder: Path) -> bool:
    archives = all((folder / f).is_file() for f in IMAGENET_ARCHIVES)
    prepared = all((folder / f).is_dir() if f.endswith("/") else (folder / f).is_file()
                   for f in IMAGENET_PREPARED)
    return archives or prepared


def _hand_placed_imagenet(name: str) -> bool:
    """``imagenet`` while no dataset of that name is registered (its reader lives elsewhere)."""
    return name == IMAGENET and IMAGENET not in DATASETS


def known_names() -> list[str]:
    """The names ``download`` accepts as datasets: every registered set, and ``imagenet``."""
    names = DATASETS.names()
    return names if IMAGENET in names else [*names, IMAGENET]


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
    if _hand_placed_imagenet(name):
        return resolve(root) / IMAGENET
    entry = DATASETS[name]
    folder = resolve(root) / entry.folder
    return entry.locate(folder) if entry.locate is not None else folder


def _present(name: str, root: str | os.PathLike) -> bool:
    if _hand_placed_imagenet(name):
        return _imagenet_present(_where(name, root))
    try:
        check_available([name], root)
    except DatasetMissingError:
        return False
    return True


def fetch(name: str, root: str | os.PathLike = "data") -> Outcome:
    """Get set ``name`` into the data ``root`` if it is not there (network needed), or say how."""
    if not _hand_placed_imagenet(name) and DATASETS[name].folder is None:
        return Outcome(name, "generated", "generated or bundled: nothing to fetch")
    if _present(name, root):
        return Outcome(name, "present", f"already in place under {_where(name, root)}")
    folder = resolve(root) / (IMAGENET if _hand_placed_imagenet(name) else DATASETS[name].folder)
    if _hand_placed_imagenet(name):
        return Outcome(name, "by-hand", imagenet_howto(folder))
    entry = DATASETS[name]
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
    if not _hand_placed_imagenet(name) and DATASETS[name].folder is None:
        return []  # generated or bundled: no files
    folder = _where(name, root)
    if _hand_placed_imagenet(name):
        if all((folder / f).is_file() for f in IMAGENET_ARCHIVES) or not _imagenet_present(folder):
            return [integrity.check_file(name, folder / f, None) for f in IMAGENET_ARCHIVES]
        return [_presence(folder, f) for f in IMAGENET_PREPARED]
    checks = integrity.verify(name, folder)
    if checks:
        return checks
    return [_presence(folder, rel) for rel in DATASETS[name].required_files]


def _presence(folder: Path, rel: str) -> integrity.FileCheck:
    path = folder / rel
    if (path.is_dir() if rel.endswith("/") else path.is_file()):
        return integrity.FileCheck(path, "ok", "present (no checksum known)")
    return integrity.FileCheck(path, "missing", "not on disk")


__all__ = ["IMAGENET", "Outcome", "fetch", "imagenet_howto", "known_names", "verify_set"]
