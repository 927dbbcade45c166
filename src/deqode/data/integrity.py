"""Is a dataset file whole? Known checksums, IDX header sizes, and messages that say how to fix it.

- :func:`known_files`: per file-backed set, its files (relative to the folder the reader opens)
  with the md5 torchvision (or ``data/mnist-8k/README.md``) knows; None where no md5 is known
  (MNIST's unpacked IDX files: torchvision knows only the archives' md5s, kept beside them in
  ``MNIST/raw/``; their IDX header gives the exact expected size instead).
- :func:`check_idx`: a raw IDX file's size against the size its header announces.
- :func:`verify`: every known file of a set, each ``ok``, ``damaged`` or ``missing``.
- :func:`damaged_message`: one paragraph naming the file, what was expected and how to re-fetch.
- :func:`torchvision_folder`: where a set's files are, our ``<root>/<name>/`` layout or an
  existing torchvision data folder (``<root>/MNIST/raw``, ``<root>/cifar-10-batches-py``, ...),
  read where it is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from deqode.data.vision import MNIST8K_FILES, REQUIRED_FILES, TORCHVISION_SETS
from deqode.errors import DatasetDamagedError

SOURCES = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/ (unpack the .gz files)",
    "cifar10": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    "cifar100": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    "svhn": "http://ufldl.stanford.edu/housenumbers/",
}
_IDX_ITEM_BYTES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


def known_files(name: str) -> tuple[dict[str, str | None], set[str]]:
    """The files of set ``name`` (relative to the folder its reader opens) with their known md5
    (None: unknown), and which of them are archives, checked only when present. The md5s are
    torchvision's (``MNIST.resources``, ``CIFAR10.train_list``, ..., ``SVHN.split_list``) and
    data/mnist-8k/README.md's; an empty mapping for a set without known files."""
    if name == "mnist-8k":
        return dict(MNIST8K_FILES), set()
    if name not in TORCHVISION_SETS:
        return {}, set()
    from torchvision import datasets as tvd

    if name == "mnist":
        files: dict[str, str | None] = dict.fromkeys(REQUIRED_FILES["mnist"])
        archives = {f"MNIST/raw/{f}": md5 for f, md5 in tvd.MNIST.resources}
    elif name == "svhn":
        files = {f: md5 for key, (_, f, md5) in tvd.SVHN.split_list.items() if key != "extra"}
        archives = {}
    else:
        cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        files = {f"{cls.base_folder}/{f}": md5 for f, md5 in [*cls.train_list, *cls.test_list]}
        files[f"{cls.base_folder}/{cls.meta['filename']}"] = cls.meta["md5"]
        archives = {cls.filename: cls.tgz_md5}
    return {**files, **archives}, set(archives)


def md5_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def refetch_hint(name: str, path: Path, root: Path | None = None) -> str:
    """How to get a good copy of ``path`` (a file of set ``name``) back."""
    if name == "mnist-8k":
        return ("restore it with `git checkout -- data/mnist-8k/` (it is versioned in the "
                "repository)")
    where = f" --root {root}" if root is not None else " [--root DATA_ROOT]"
    source = f", or copy it again from {SOURCES[name]}" if name in SOURCES else ""
    return (f"delete it and re-fetch with `python -m deqode download {name}{where}` (network "
            f"needed; torchvision checks the md5s as it downloads){source}")


def damaged_message(name: str, path: Path, problem: str, root: Path | None = None) -> str:
    """One paragraph: which file of which set, what is wrong with it, how to get it back."""
    return (f"dataset {name!r}: the file {path} is damaged: {problem}. To fix it, "
            f"{refetch_hint(name, path, root)}. `python -m deqode download {name} --verify` "
            f"checks every file of the set.")


def idx_problem(path: Path) -> str | None:
    """What is wrong with the raw (uncompressed) IDX file ``path``, or None when its size is the
    one its header announces (magic: two zero bytes, type code, number of dimensions; then one
    big-endian uint32 per dimension; then the items)."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(4)
        if len(head) < 4 or head[:2] != b"\0\0" or head[2] not in _IDX_ITEM_BYTES:
            return f"not an IDX file (first bytes {head.hex() or 'none'}; {size} bytes)"
        ndim = head[3]
        dims_raw = handle.read(4 * ndim)
    if len(dims_raw) < 4 * ndim:
        return f"its IDX header is cut short ({size} bytes)"
    dims = [int.from_bytes(dims_raw[4 * k: 4 * k + 4], "big") for k in range(ndim)]
    expected = 4 + 4 * ndim + _IDX_ITEM_BYTES[head[2]] * _product(dims)
    if size != expected:
        shape = " x ".join(map(str, dims))
        return (f"its IDX header announces an array of shape {shape}, {expected:,} bytes with "
                f"the header, but the file has {size:,} bytes (truncated or overwritten)")
    return None


def _product(values: list[int]) -> int:
    out = 1
    for v in values:
        out *= v
    return out


def check_idx(name: str, path: Path, root: Path | None = None) -> None:
    """Raise :class:`DatasetDamagedError` if the raw IDX file ``path`` is not whole."""
    if (problem := idx_problem(path)) is not None:
        raise DatasetDamagedError(damaged_message(name, path, problem, root))


@dataclass(frozen=True)
class FileCheck:
    """One file's verdict: ``status`` is ``ok``, ``damaged`` or ``missing``; ``detail`` why."""

    path: Path
    status: str
    detail: str


def check_file(name: str, path: Path, md5: str | None) -> FileCheck:
    """The verdict on one file of set ``name`` (``md5``: the known checksum, None if unknown)."""
    if not path.is_file():
        return FileCheck(path, "missing", "not on disk")
    if md5 is not None:
        got = md5_of(path)
        if got != md5:
            return FileCheck(path, "damaged", f"md5 {got}, expected {md5}")
        return FileCheck(path, "ok", f"md5 {md5}")
    if "idx" in path.name:
        problem = idx_problem(path)
        if problem is not None:
            return FileCheck(path, "damaged", problem)
        return FileCheck(path, "ok", "size matches its IDX header (no md5 known for the "
                                     "unpacked file; the archive's is checked when present)")
    return FileCheck(path, "ok", "present (no checksum known)")


def verify(name: str, folder: Path) -> list[FileCheck]:
    """Every known file of set ``name`` under ``folder`` (where its reader looks). Archives are
    checked only when present."""
    checks = []
    files, archives = known_files(name)
    for rel, md5 in files.items():
        path = folder / rel
        if rel in archives and not path.is_file():
            continue
        checks.append(check_file(name, path, md5))
    return checks


def torchvision_folder(name: str, folder: Path) -> Path:
    """Where the reader of set ``name`` should look: ``folder`` (``<root>/<name>/``) when its
    files are there, else the data root itself when a torchvision data folder is there
    (``<root>/MNIST/raw/``, ``<root>/cifar-10-batches-py/``, ``<root>/cifar-100-python/``,
    ``<root>/{train,test}_32x32.mat``), so that such a folder works as it is."""
    required = REQUIRED_FILES[name]
    if not all((folder / rel).is_file() for rel in required) and all(
            (folder.parent / rel).is_file() for rel in required):
        return folder.parent
    return folder


__all__ = ["SOURCES", "FileCheck", "check_file", "check_idx", "damaged_message",
           "idx_problem", "known_files", "md5_of", "refetch_hint", "torchvision_folder", "verify"]
