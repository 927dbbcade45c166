"""Stand-in data sets: small files of random pixels in each data set's real on-disk format.

The paper profile reads the papers' data sets from disk. To rehearse it without them (CI, a
laptop), :func:`write_standins` writes files that the real readers parse, in the layouts they
expect under ``<root>/<folder>/`` (see :mod:`deqode.data.vision`), with the real class counts and
a few images per split (random pixels, fixed seed; labels cycle through the classes):

- ``mnist``: ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (IDX, uncompressed);
- ``cifar10``: ``cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}`` (pickles);
- ``cifar100``: ``cifar-100-python/{train,test,meta}`` (pickles, fine and coarse labels);
- ``svhn``: ``{train,test}_32x32.mat`` (MATLAB, ``X`` (32, 32, 3, N), ``y`` in 1..10);
- ``tiny-imagenet``: the unpacked ``tiny-imagenet-200/`` tree (``wnids.txt``, ``words.txt``,
  ``train/<wnid>/images/*.JPEG`` with ``<wnid>_boxes.txt``, ``val/images/*.JPEG`` and
  ``val/val_annotations.txt``);
- ``imagenet``: what ``torchvision.datasets.ImageNet`` reads once its archives are parsed:
  ``meta.bin`` (``torch.save`` of ``(wnid -> class names, val wnids)``) and
  ``{train,val}/<wnid>/*.JPEG``, 1000 synthetic wnids;
- ``tancik-natural`` / ``tancik-text``: ``data_div2k.npz`` / ``data_2d_text.npz`` with
  ``train_data`` and ``test_data`` arrays of 16 RGB images, 512 x 512, uint8.

They are not data: nothing trained on them means anything. ``python -m deqode.data.standins
--root DIR [NAMES]`` writes them.
"""

from __future__ import annotations

import argparse
import pickle
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from deqode.choices import check_choice

#: Images per split of the 10- and 100-class sets: two batches of the largest batch (128).
IMAGES_PER_SPLIT = 256
TINY_CLASSES = 200
IMAGENET_CLASSES = 1000
IMAGENET_SIDE = (40, 32)  # (width, height) of the ImageNet stand-in JPEGs; the recipe resizes
TANCIK_IMAGES, TANCIK_SIDE = 16, 512
SEED = 0


def _labels(rng: np.random.Generator, n: int, classes: int) -> np.ndarray:
    """``n`` labels covering every class as evenly as possible, in random order."""
    return rng.permutation(np.arange(n) % classes)


def _pixels(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _pickle(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        pickle.dump(obj, f, protocol=2)


def _jpeg(path: Path, rng: np.random.Generator, width: int, height: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(_pixels(rng, height, width, 3)).save(path, format="JPEG", quality=75)


# ---- MNIST: IDX files --------------------------------------------------------------------------
def _idx(path: Path, array: np.ndarray) -> None:
    """An IDX file (unsigned bytes): magic 0x0000 08 <ndim>, the dims big-endian, the payload."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_mnist(folder: Path, rng: np.random.Generator) -> None:
    raw = folder / "MNIST" / "raw"
    for prefix in ("train", "t10k"):
        _idx(raw / f"{prefix}-images-idx3-ubyte", _pixels(rng, IMAGES_PER_SPLIT, 28, 28))
        _idx(raw / f"{prefix}-labels-idx1-ubyte", _labels(rng, IMAGES_PER_SPLIT, 10))


# ---- CIFAR: python pickles ---------------------------------------------------------------------
def write_cifar10(folder: Path, rng: np.random.Generator) -> None:
    base = folder / "cifar-10-batches-py"
    parts = np.array_split(np.arange(IMAGES_PER_SPLIT), 5)
    for k, part in enumerate(parts, start=1):
        _pickle(base / f"data_batch_{k}", {
            "batch_label": f"training batch {k} of 5 (stand-in)",
            "labels": _labels(rng, len(part), 10).tolist(),
            "data": _pixels(rng, len(part), 3 * 32 * 32),
            "filenames": [f"standin_{k}_{i}.png" for i in range(len(part))],
        })
    _pickle(base / "test_batch", {
        "batch_label": "testing batch 1 of 1 (stand-in)",
        "labels": _labels(rng, IMAGES_PER_SPLIT, 10).tolist(),
        "data": _pixels(rng, IMAGES_PER_SPLIT, 3 * 32 * 32),
        "filenames": [f"standin_test_{i}.png" for i in range(IMAGES_PER_SPLIT)],
    })
    _pickle(base / "batches.meta", {
        "label_names": [f"class{c}" for c in range(10)],
        "num_cases_per_batch": len(parts[0]), "num_vis": 3072,
    })


def write_cifar100(folder: Path, rng: np.random.Generator) -> None:
    base = folder / "cifar-100-python"
    for split in ("train", "test"):
        fine = _labels(rng, IMAGES_PER_SPLIT, 100)
        _pickle(base / split, {
            "batch_label": f"{split} (stand-in)",
            "fine_labels": fine.tolist(), "coarse_labels": (fine // 5).tolist(),
            "data": _pixels(rng, IMAGES_PER_SPLIT, 3 * 32 * 32),
            "filenames": [f"standin_{split}_{i}.png" for i in range(IMAGES_PER_SPLIT)],
        })
    _pickle(base / "meta", {
        "fine_label_names": [f"fine{c}" for c in range(100)],
        "coarse_label_names": [f"coarse{c}" for c in range(20)],
    })


# ---- SVHN: MATLAB files ------------------------------------------------------------------------
def write_svhn(folder: Path, rng: np.random.Generator) -> None:
    from scipy.io import savemat

    folder.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        digits = _labels(rng, IMAGES_PER_SPLIT, 10)
        savemat(folder / f"{split}_32x32.mat", {
            "X": _pixels(rng, 32, 32, 3, IMAGES_PER_SPLIT),
            "y": np.where(digits == 0, 10, digits).astype(np.uint8)[:, None],  # SVHN: 0 is 10
        })


# ---- Tiny-ImageNet: the unpacked Kaggle tree ---------------------------------------------------
def _wnids(count: int) -> list[str]:
    """Synthetic WordNet-style ids (``n`` and eight digits), sorted."""
    return [f"n{90_000_000 + k:08d}" for k in range(count)]


def write_tiny_imagenet(folder: Path, rng: np.random.Generator) -> None:
    base = folder / "tiny-imagenet-200"
    wnids = _wnids(TINY_CLASSES)
    base.mkdir(parents=True, exist_ok=True)
    (base / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (base / "words.txt").write_text("".join(f"{w}\tstand-in class {w}\n" for w in wnids))
    for wnid in wnids:
        name = f"{wnid}_0.JPEG"
        _jpeg(base / "train" / wnid / "images" / name, rng, 64, 64)
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text(f"{name}\t0\t0\t63\t63\n")
    lines = []
    for k, label in enumerate(_labels(rng, TINY_CLASSES, TINY_CLASSES)):
        name = f"val_{k}.JPEG"
        _jpeg(base / "val" / "images" / name, rng, 64, 64)
        lines.append(f"{name}\t{wnids[label]}\t0\t0\t63\t63\n")
    (base / "val" / "val_annotations.txt").write_text("".join(lines))


# ---- ImageNet: torchvision.datasets.ImageNet's parsed layout -----------------------------------
def write_imagenet(folder: Path, rng: np.random.Generator) -> None:
    import torch

    wnids = _wnids(IMAGENET_CLASSES)
    folder.mkdir(parents=True, exist_ok=True)
    val_labels = _labels(rng, IMAGENET_CLASSES, IMAGENET_CLASSES)
    width, height = IMAGENET_SIDE
    for wnid in wnids:
        _jpeg(folder / "train" / wnid / f"{wnid}_0.JPEG", rng, width, height)
    for k, label in enumerate(val_labels, start=1):
        _jpeg(folder / "val" / wnids[label] / f"ILSVRC2012_val_{k:08d}.JPEG", rng, width, height)
    wnid_to_classes = {w: (f"stand-in {w}",) for w in wnids}
    torch.save((wnid_to_classes, [wnids[i] for i in val_labels]), folder / "meta.bin")


# ---- the SIM images: Tancik et al.'s npz files -------------------------------------------------
def _write_tancik(file: str, folder: Path, rng: np.random.Generator) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shape = (TANCIK_IMAGES, TANCIK_SIDE, TANCIK_SIDE, 3)
    np.savez(folder / file, train_data=_pixels(rng, *shape), test_data=_pixels(rng, *shape))


def _tancik_writer(name: str) -> Callable[[Path, np.random.Generator], None]:
    from deqode.data.images import TANCIK_FILES

    return lambda folder, rng: _write_tancik(TANCIK_FILES[name], folder, rng)


WRITERS: dict[str, Callable[[Path, np.random.Generator], None]] = {
    "mnist": write_mnist,
    "cifar10": write_cifar10,
    "cifar100": write_cifar100,
    "svhn": write_svhn,
    "tiny-imagenet": write_tiny_imagenet,
    "imagenet": write_imagenet,
    "tancik-natural": _tancik_writer("tancik-natural"),
    "tancik-text": _tancik_writer("tancik-text"),
}
STANDIN_NAMES = tuple(WRITERS)


def folder_of(name: str) -> str:
    """The folder under the data root where ``name``'s reader looks (the registry's entry;
    ``imagenet`` while no entry is registered)."""
    from deqode.data.registry import DATASETS

    if name in DATASETS:
        folder = DATASETS[name].folder
        if folder is not None:
            return folder
    return name


def write_standins(root: str | Path, names: Sequence[str] | None = None,
                   seed: int = SEED) -> dict[str, Path]:
    """Write the stand-ins of ``names`` (default: all of :data:`STANDIN_NAMES`) under ``root``.

    Returns each name's folder. Existing files are overwritten; the same seed writes the same
    pixels (every set draws from its own generator, so a subset writes what the full run does).
    """
    chosen = list(STANDIN_NAMES if names is None else names)
    for name in chosen:
        check_choice("stand-in dataset", name, STANDIN_NAMES)
    written = {}
    for name in chosen:
        folder = Path(root) / folder_of(name)
        WRITERS[name](folder, np.random.default_rng([seed, STANDIN_NAMES.index(name)]))
        written[name] = folder
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m deqode.data.standins",
        description="Write stand-in data sets (random pixels in the real on-disk formats) for "
                    "rehearsing the paper profile. Not data: nothing trained on them means "
                    "anything.")
    parser.add_argument("--root", required=True, help="data root to write into")
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"data sets (default: all): {', '.join(STANDIN_NAMES)}")
    parser.add_argument("--seed", type=int, default=SEED, help="default: %(default)s")
    args = parser.parse_args(argv)
    try:
        written = write_standins(args.root, args.names or None, args.seed)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for name, folder in written.items():
        print(f"stand-in {name}: {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
