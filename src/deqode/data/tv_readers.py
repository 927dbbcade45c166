"""torchvision's CIFAR and SVHN readers with a presence check instead of per-file md5 checks.

Imported lazily by :mod:`deqode.data.vision` (torchvision takes seconds to import). The classes
live at module level so that datasets pickle by reference (DataLoader workers under ``spawn``).
``check_integrity(path, None)`` only tests that a file exists; all parsing is torchvision's.
"""

from __future__ import annotations

from typing import ClassVar

from torchvision import datasets as tvd


def _no_md5(entries: list[list[str]]) -> list[list[str | None]]:
    return [[name, None] for name, _ in entries]


class CIFAR10Present(tvd.CIFAR10):
    """CIFAR-10 from ``cifar-10-batches-py/`` without the per-file md5 check."""

    train_list: ClassVar = _no_md5(tvd.CIFAR10.train_list)
    test_list: ClassVar = _no_md5(tvd.CIFAR10.test_list)
    meta: ClassVar = {**tvd.CIFAR10.meta, "md5": None}


class CIFAR100Present(tvd.CIFAR100):
    """CIFAR-100 (fine labels) from ``cifar-100-python/`` without the per-file md5 check."""

    train_list: ClassVar = _no_md5(tvd.CIFAR100.train_list)
    test_list: ClassVar = _no_md5(tvd.CIFAR100.test_list)
    meta: ClassVar = {**tvd.CIFAR100.meta, "md5": None}


class SVHNPresent(tvd.SVHN):
    """SVHN from ``{train,test}_32x32.mat`` without the md5 check (label 10 -> 0 as torchvision)."""

    split_list: ClassVar = {k: [url, f, None] for k, (url, f, _) in tvd.SVHN.split_list.items()}


# MNIST reads <root>/MNIST/raw/ (named after the class) and checks presence only: stock class.
READERS: dict[str, type] = {
    "mnist": tvd.MNIST,
    "cifar10": CIFAR10Present,
    "cifar100": CIFAR100Present,
    "svhn": SVHNPresent,
}
