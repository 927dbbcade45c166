"""Image classification sets on disk (MNIST, SVHN, CIFAR-10/100, Tiny-ImageNet, ImageNet,
MNIST-8k).

Every file-backed set lives in ``<root>/<name>/`` in the layout its reader expects:

- ``mnist``: ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (torchvision);
- ``cifar10``: ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` (torchvision);
- ``cifar100``: ``cifar-100-python/{train,test,meta}`` (torchvision);
- ``svhn``: ``{train,test}_32x32.mat`` (torchvision);
- ``tiny-imagenet``: ``wnids.txt``, ``train/<wnid>/images/*.JPEG``, ``val/images/*.JPEG``,
  ``val/val_annotations.txt`` (Kaggle; read by :class:`TinyImageNet`);
- ``imagenet``: ``meta.bin``, ``train/<wnid>/*.JPEG``, ``val/<wnid>/*.JPEG``, the layout
  ``torchvision.datasets.ImageNet`` makes from the ILSVRC2012 archives (:func:`load_imagenet`);
- ``mnist-8k``: ``{images-idx3,labels-idx1}-ubyte.gz``, versioned in the repository (read by
  :class:`Mnist8k`, md5-checked).

Integrity: torchvision's CIFAR and SVHN classes check the md5 of every file at load time. We load
through thin subclasses (:mod:`deqode.data.tv_readers`) that only check that the files are
present (a truncated pickle or .mat still fails to parse, loudly); ``download=True`` goes through
the stock classes, which verify the archive and file checksums as they download. This keeps the
real parsers (torchvision's) and lets the tests feed them small files in the real formats.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from deqode.data.recipes import Preprocessing
from deqode.errors import DatasetDamagedError

TORCHVISION_SETS = ("mnist", "cifar10", "cifar100", "svhn")
KAGGLE_TINY_URL = "https://www.kaggle.com/competitions/tiny-imagenet/data"

# Files (relative to <root>/<name>/) that must exist before a set can be read (both splits);
# the names are those torchvision's readers open. A trailing "/" marks a folder.
_CIFAR10_DIR = "cifar-10-batches-py"
_CIFAR100_DIR = "cifar-100-python"
REQUIRED_FILES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(
        f"MNIST/raw/{prefix}-{kind}"
        for prefix in ("train", "t10k")
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")
    ),
    "cifar10": tuple(
        f"{_CIFAR10_DIR}/{f}"
        for f in (*(f"data_batch_{i}" for i in range(1, 6)), "test_batch", "batches.meta")
    ),
    "cifar100": tuple(f"{_CIFAR100_DIR}/{f}" for f in ("train", "test", "meta")),
    "svhn": ("train_32x32.mat", "test_32x32.mat"),
    "tiny-imagenet": ("wnids.txt", "train/", "val/images/", "val/val_annotations.txt"),
    "imagenet": ("meta.bin", "train/", "val/"),
    "mnist-8k": ("images-idx3-ubyte.gz", "labels-idx1-ubyte.gz"),
}


def tiny_imagenet_dir(folder: Path) -> Path:
    """``folder`` itself, or ``folder/tiny-imagenet-200`` when the zip was unpacked inside it."""
    nested = folder / "tiny-imagenet-200"
    if not (folder / "wnids.txt").exists() and (nested / "wnids.txt").exists():
        return nested
    return folder


def torchvision_howto(name: str, folder: Path) -> str:
    """How to get a torchvision set into ``folder``: our one-liner, torchvision's, the URLs."""
    from torchvision import datasets as tvd

    f = str(folder)
    if name == "mnist":
        tv = f"d.MNIST({f!r}, train=True, download=True)"
        urls = ", ".join(m + r[0] for m in tvd.MNIST.mirrors[:1] for r in tvd.MNIST.resources)
        manual = f"or unpack {urls} into {f}/MNIST/raw/"
    elif name in ("cifar10", "cifar100"):
        cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
        tv = f"d.{cls.__name__}({f!r}, train=True, download=True)"
        manual = f"or unpack {cls.url} into {f}/"
    else:
        tv = "; ".join(f"d.SVHN({f!r}, split={s!r}, download=True)" for s in ("train", "test"))
        urls = ", ".join(v[0] for k, v in tvd.SVHN.split_list.items() if k != "extra")
        manual = f"or save {urls} into {f}/"
    root = str(folder.parent)
    return (
        f"download it (network needed) with "
        f'python -c "from deqode.data import download_dataset; download_dataset({name!r}, '
        f'root={root!r})", or load_dataset(..., download=True), or with torchvision: '
        f'python -c "import torchvision.datasets as d; {tv}"; {manual}'
    )


def tiny_imagenet_howto(folder: Path) -> str:
    """How to get Tiny-ImageNet from Kaggle into ``folder``."""
    return (
        f"Tiny-ImageNet is not in torchvision: download it from Kaggle (account required) at "
        f"{KAGGLE_TINY_URL} (e.g. `kaggle competitions download -c tiny-imagenet`), unzip it and "
        f"place it so that {folder}/wnids.txt, {folder}/train/<wnid>/images/*.JPEG, "
        f"{folder}/val/images/*.JPEG and {folder}/val/val_annotations.txt exist (an unpacked "
        f"tiny-imagenet-200/ folder inside {folder}/ is read as well)"
    )


#: The ILSVRC2012 archives (image-net.org, account required) torchvision's ImageNet unpacks.
IMAGENET_ARCHIVES = ("ILSVRC2012_devkit_t12.tar.gz", "ILSVRC2012_img_train.tar",
                     "ILSVRC2012_img_val.tar")
IMAGENET_URL = "https://image-net.org/challenges/LSVRC/2012/2012-downloads.php"


def imagenet_howto(folder: Path) -> str:
    """How to place ImageNet (ILSVRC2012) in ``folder`` by hand."""
    f = str(folder)
    return (
        f"ImageNet cannot be downloaded automatically: log in at {IMAGENET_URL}, download "
        f"{', '.join(IMAGENET_ARCHIVES)} (about 150 GB) into {f}/ and unpack them once with "
        f'python -c "import torchvision.datasets as d; d.ImageNet({f!r}, split=\'train\'); '
        f"d.ImageNet({f!r}, split='val')\" (hours; torchvision checks their md5s and writes "
        f"{f}/meta.bin, {f}/train/<wnid>/*.JPEG and {f}/val/<wnid>/*.JPEG, the layout read "
        f"here; the archives may be deleted afterwards)"
    )


def load_imagenet(folder: Path, split: str, prep: Preprocessing, augment: bool) -> Dataset:
    """ImageNet through ``torchvision.datasets.ImageNet`` from the unpacked layout (``meta.bin``,
    ``train/``, ``val/``): the test split is the official val set; labels are the indices of
    the sorted wnids; items are ``(image tensor, int label)`` with the recipe's transform."""
    from torchvision import datasets as tvd

    return tvd.ImageNet(str(folder), split="train" if split == "train" else "val",
                        transform=prep.image_transform(augment))


def download_torchvision(name: str, folder: Path) -> None:
    """Download both splits of a torchvision set into ``folder`` (stock classes: md5-checked)."""
    from torchvision import datasets as tvd

    f = str(folder)
    if name == "mnist":
        tvd.MNIST(f, train=True, download=True)
    elif name == "cifar10":
        tvd.CIFAR10(f, train=True, download=True)
    elif name == "cifar100":
        tvd.CIFAR100(f, train=True, download=True)
    elif name == "svhn":
        for split in ("train", "test"):
            tvd.SVHN(f, split=split, download=True)
    else:  # pragma: no cover - guarded by the registry
        raise ValueError(f"{name!r} is not a torchvision set")


def load_torchvision(
    name: str, folder: Path, split: str, prep: Preprocessing, augment: bool
) -> Dataset:
    """A torchvision dataset yielding ``(image tensor, int label)`` with the recipe's transform."""
    from deqode.data.tv_readers import READERS

    reader = READERS[name]
    transform = prep.image_transform(augment)
    if name == "svhn":
        return reader(str(folder), split=split, transform=transform)
    return reader(str(folder), train=split == "train", transform=transform)


class TinyImageNet(Dataset):
    """Tiny-ImageNet-200 from its folder layout, as HomoODE's ``tiny_imagenet.py`` reads it.

    Labels are the indices of the wnids sorted alphabetically (``wnids.txt``); train images are
    ``train/<wnid>/images/*.JPEG``, the test split is the official **val** set with labels from
    ``val/val_annotations.txt`` (tab separated: file, wnid, box). Images are converted to RGB
    (a few Tiny-ImageNet JPEGs are grayscale). Items are ``(transform(image), label)``.
    """

    IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")

    def __init__(self, folder: Path, split: str = "train", transform=None) -> None:
        self.folder = tiny_imagenet_dir(Path(folder))
        self.split = split
        self.transform = transform
        wnids = (self.folder / "wnids.txt").read_text().split()
        self.classes: list[str] = sorted(set(wnids))
        self.class_to_idx = {w: i for i, w in enumerate(self.classes)}
        self.samples = self._train_samples() if split == "train" else self._val_samples()

    def _train_samples(self) -> list[tuple[Path, int]]:
        samples = []
        for wnid in self.classes:
            images = self.folder / "train" / wnid / "images"
            if not images.is_dir():
                raise FileNotFoundError(f"Tiny-ImageNet: class folder {images} is missing")
            files = sorted(p for p in images.iterdir() if p.suffix.lower() in self.IMAGE_SUFFIXES)
            samples.extend((p, self.class_to_idx[wnid]) for p in files)
        return samples

    def _val_samples(self) -> list[tuple[Path, int]]:
        samples = []
        annotations = self.folder / "val" / "val_annotations.txt"
        for line_no, line in enumerate(annotations.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            fields = line.split("\t") if "\t" in line else line.split()
            filename, wnid = fields[0], fields[1]
            if wnid not in self.class_to_idx:
                raise ValueError(
                    f"{annotations}:{line_no}: wnid {wnid!r} is not listed in wnids.txt"
                )
            path = self.folder / "val" / "images" / filename
            if not path.is_file():
                raise FileNotFoundError(
                    f"Tiny-ImageNet: {path} (listed in {annotations}) is missing"
                )
            samples.append((path, self.class_to_idx[wnid]))
        return samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, label = self.samples[index]
        with Image.open(path) as img:
            image = img.convert("RGB")
        if self.transform is not None:
            image = self.transform(image)
        return image, label


# ---------------------------------------------------------------------------------------------
# MNIST-8k: the first 8,000 digits of the MNIST test set, versioned in data/mnist-8k/

MNIST8K_FILES = {
    "images-idx3-ubyte.gz": "bae42a57a80ed0ec5c4d57fb5ae3073f",
    "labels-idx1-ubyte.gz": "8cbcac77e05ab5476f467943afcfa71d",
}
MNIST8K_SIZE = 8000
#: Our split: image i (file order) is a test image when i % 4 == 3 (every fourth, from index 3).
MNIST8K_TEST_EVERY = 4
MNIST8K_LABEL = "MNIST-8k (first 8,000 of the MNIST test set; our split)"
_IDX_MAGIC = {"images-idx3-ubyte.gz": 2051, "labels-idx1-ubyte.gz": 2049}


def _md5(path: Path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()


def read_idx_gz(path: Path) -> tuple[np.ndarray, int]:
    """Parse a gzip-compressed IDX file (MNIST's format): the uint8 array and the magic number."""
    import gzip

    raw = gzip.decompress(path.read_bytes())
    magic = int.from_bytes(raw[:4], "big")
    if magic >> 8 != 0x08:  # the third byte is the type code: 0x08 = unsigned byte
        raise DatasetDamagedError(f"{path}: not an unsigned-byte IDX file (magic {magic})")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim)]
    payload = raw[4 + 4 * ndim:]
    if len(payload) != int(np.prod(dims)):
        raise DatasetDamagedError(
            f"{path}: header says {dims} ({int(np.prod(dims))} bytes), payload has {len(payload)}"
        )
    return np.frombuffer(payload, dtype=np.uint8).reshape(dims), magic


@lru_cache(maxsize=4)
def _mnist8k_arrays(folder: str, check_md5: bool) -> tuple[np.ndarray, np.ndarray]:
    arrays = []
    for name, md5 in MNIST8K_FILES.items():
        path = Path(folder) / name
        if check_md5 and (got := _md5(path)) != md5:
            raise DatasetDamagedError(
                f"dataset 'mnist-8k': {path} is damaged (md5 {got}, expected {md5}); restore it "
                f"with `git checkout -- data/mnist-8k/` or copy it again from the README's source"
            )
        try:
            array, magic = read_idx_gz(path)
        except (OSError, EOFError) as err:  # gzip errors: truncated or not gzip at all
            raise DatasetDamagedError(f"dataset 'mnist-8k': cannot read {path}: {err}") from err
        if magic != _IDX_MAGIC[name]:
            raise DatasetDamagedError(f"{path}: magic {magic}, expected {_IDX_MAGIC[name]}")
        arrays.append(array)
    images, labels = arrays
    if images.shape[1:] != (28, 28) or len(images) != len(labels):
        raise DatasetDamagedError(
            f"dataset 'mnist-8k' in {folder}: images {images.shape}, labels {labels.shape}"
        )
    return images, labels


def mnist8k_split_indices(n: int, split: str) -> np.ndarray:
    """Indices of ``split`` under our fixed rule (test: every fourth image, from index 3)."""
    index = np.arange(n)
    is_test = index % MNIST8K_TEST_EVERY == MNIST8K_TEST_EVERY - 1
    return index[is_test] if split == "test" else index[~is_test]


def mnist8k_howto(folder: Path) -> str:
    """How to restore MNIST-8k (versioned in the repository) into ``folder``."""
    return (f"it is versioned in the repository: restore it with `git checkout -- "
            f"data/mnist-8k/`, or copy the two files of data/mnist-8k/README.md into {folder}/")


class Mnist8k(Dataset):
    """MNIST-8k as ``(1, 28, 28)`` float32 tensors (pixels / 255, then the recipe) and int labels.

    Reads the two gzip-compressed IDX files of ``folder`` (md5-checked unless
    ``check_md5=False``, which tests use for small files in the same format) and keeps the split
    of :func:`mnist8k_split_indices`: 6,000 train and 2,000 test images from the 8,000.
    Augmentation (the ``nag`` recipe's random crop) runs on tensors, per item.
    """

    def __init__(self, folder: Path, split: str, prep: Preprocessing, augment: bool = False,
                 check_md5: bool = True) -> None:
        images, labels = _mnist8k_arrays(str(folder), check_md5)
        keep = mnist8k_split_indices(len(labels), split)
        pixels = torch.from_numpy(images[keep].astype(np.float32) / 255.0)[:, None]
        self.preprocessing = prep
        self.augment = augment
        self._transform = prep.tensor_augmentation() if augment else None
        self.images = pixels if self._transform is not None else prep.normalise(pixels)
        self.targets = torch.from_numpy(labels[keep].astype(np.int64))

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = self.images[index]
        if self._transform is not None:
            image = self.preprocessing.normalise(self._transform(image)[None])[0]
        return image, int(self.targets[index])
