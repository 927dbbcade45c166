"""torchvision's MNIST, CIFAR and SVHN readers with a presence check instead of per-file md5 checks,
and a clear error for a damaged file.

Imported lazily by :mod:`deqode.data.vision` (torchvision takes seconds to import). The classes
live at module level so that datasets pickle by reference (DataLoader workers under ``spawn``).
``check_integrity(path, None)`` only tests that a file exists; all parsing is torchvision's.
A file that is present but damaged raises :class:`~deqode.errors.DatasetDamagedError` naming it,
what was expected (the IDX header's size, the known md5) and how to re-fetch it
(:mod:`deqode.data.integrity`), instead of the parser's own error.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import ClassVar

from torchvision import datasets as tvd

from deqode.data import integrity
from deqode.errors import DatasetDamagedError

# What torchvision's parsers raise on a truncated or overwritten file.
_PARSE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, KeyError, TypeError, OSError,
                 RuntimeError, IndexError)


def _no_md5(entries: list[list[str]]) -> list[list[str | None]]:
    return [[name, None] for name, _ in entries]


def _unparsable(name: str, folder: Path, files: list[str], err: Exception) -> DatasetDamagedError:
    """The error for a set whose files did not parse: the first file that fails to unpickle (or,
    if each does, the first with a wrong md5) is named with its expected md5."""
    known, _ = integrity.known_files(name)
    culprit, problem = None, None
    for rel in files:
        try:
            with open(folder / rel, "rb") as handle:
                pickle.load(handle, encoding="latin1")
        except Exception as file_err:  # any failure marks this file
            culprit, problem = rel, f"it cannot be read ({type(file_err).__name__}: {file_err})"
            break
    if culprit is None:
        culprit = files[0]
        problem = f"its content does not parse ({type(err).__name__}: {err})"
    md5 = known.get(culprit)
    if md5 is not None:
        problem += f"; its md5 should be {md5}, it is {integrity.md5_of(folder / culprit)}"
    return DatasetDamagedError(integrity.damaged_message(name, folder / culprit, problem))


class MNISTChecked(tvd.MNIST):
    """MNIST from ``<root>/MNIST/raw/`` (torchvision's folder); each IDX file's size is checked
    against its header before torchvision parses it."""

    @property
    def raw_folder(self) -> str:
        return os.path.join(self.root, "MNIST", "raw")

    def _load_data(self):
        split = "train" if self.train else "t10k"
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            integrity.check_idx("mnist", Path(self.raw_folder) / f"{split}-{kind}")
        return super()._load_data()


class _ParseChecked:
    """Mixin: a parse failure of the set's files becomes a :class:`DatasetDamagedError`."""

    dataset_name: ClassVar[str]

    def __init__(self, root: str, *args, **kwargs) -> None:
        try:
            super().__init__(root, *args, **kwargs)
        except _PARSE_ERRORS as err:
            if isinstance(err, DatasetDamagedError):
                raise
            raise self._damaged(Path(root), err) from err

    def _damaged(self, root: Path, err: Exception) -> DatasetDamagedError:
        known, archives = integrity.known_files(self.dataset_name)
        return _unparsable(self.dataset_name, root, [f for f in known if f not in archives], err)


class CIFAR10Present(_ParseChecked, tvd.CIFAR10):
    """CIFAR-10 from ``cifar-10-batches-py/`` without the per-file md5 check."""

    dataset_name = "cifar10"
    train_list: ClassVar = _no_md5(tvd.CIFAR10.train_list)
    test_list: ClassVar = _no_md5(tvd.CIFAR10.test_list)
    meta: ClassVar = {**tvd.CIFAR10.meta, "md5": None}


class CIFAR100Present(_ParseChecked, tvd.CIFAR100):
    """CIFAR-100 (fine labels) from ``cifar-100-python/`` without the per-file md5 check."""

    dataset_name = "cifar100"
    train_list: ClassVar = _no_md5(tvd.CIFAR100.train_list)
    test_list: ClassVar = _no_md5(tvd.CIFAR100.test_list)
    meta: ClassVar = {**tvd.CIFAR100.meta, "md5": None}


class SVHNPresent(_ParseChecked, tvd.SVHN):
    """SVHN from ``{train,test}_32x32.mat`` without the md5 check (label 10 -> 0 as torchvision)."""

    dataset_name = "svhn"
    split_list: ClassVar = {k: [url, f, None] for k, (url, f, _) in tvd.SVHN.split_list.items()}

    def _damaged(self, root: Path, err: Exception) -> DatasetDamagedError:
        filename = getattr(self, "filename", self.split_list[self.split][1])
        path = root / filename
        problem = f"it cannot be read as a MATLAB file ({type(err).__name__}: {err})"
        md5 = integrity.known_files("svhn")[0].get(filename)
        if md5 is not None:
            problem += f"; its md5 should be {md5}, it is {integrity.md5_of(path)}"
        return DatasetDamagedError(integrity.damaged_message("svhn", path, problem))


READERS: dict[str, type] = {
    "mnist": MNISTChecked,
    "cifar10": CIFAR10Present,
    "cifar100": CIFAR100Present,
    "svhn": SVHNPresent,
}
