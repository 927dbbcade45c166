"""MNIST-8k: the versioned real digits, their reader, the fixed split and the error messages."""

from __future__ import annotations

import gzip
import hashlib

import numpy as np
import pytest
import torch

from deqode import data
from deqode.data import vision
from deqode.errors import DatasetDamagedError, DatasetMissingError
from deqode.paths import repo_root


def write_idx(folder, images: np.ndarray, labels: np.ndarray) -> None:
    """Write images/labels as gzip-compressed IDX files, the on-disk format of MNIST."""
    folder.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    header = (2051).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in (n, h, w))
    (folder / "images-idx3-ubyte.gz").write_bytes(gzip.compress(header + images.tobytes()))
    header = (2049).to_bytes(4, "big") + n.to_bytes(4, "big")
    (folder / "labels-idx1-ubyte.gz").write_bytes(gzip.compress(header + labels.tobytes()))


def small_set(tmp_path, n=12):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = (np.arange(n) % 10).astype(np.uint8)
    write_idx(tmp_path / "mnist-8k", images, labels)
    return images, labels


def test_the_versioned_files_are_the_documented_ones():
    folder = repo_root() / "data" / "mnist-8k"
    for name, md5 in vision.MNIST8K_FILES.items():
        assert hashlib.md5((folder / name).read_bytes()).hexdigest() == md5
        assert md5 in (folder / "README.md").read_text(encoding="utf-8")


def test_real_split_sizes_and_class_balance():
    train = data.load_dataset("mnist-8k", split="train")
    test = data.load_dataset("mnist-8k", split="test")
    assert (len(train), len(test)) == (6000, 2000)
    counts = torch.bincount(torch.cat([train.targets, test.targets]), minlength=10).tolist()
    # the README of ../shared/data/mnist-8k gives these class counts for the 8,000 digits
    assert counts == [773, 905, 834, 803, 788, 723, 756, 813, 787, 818]
    x, y = test[0]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and 0.0 <= float(x.min())
    assert float(x.max()) <= 1.0 and isinstance(y, int)
    assert data.dataset_info("mnist-8k", "cpu").sizes == {"train": 6000, "test": 2000}


def test_split_rule_is_every_fourth_image_from_index_three():
    assert vision.mnist8k_split_indices(8, "test").tolist() == [3, 7]
    assert vision.mnist8k_split_indices(8, "train").tolist() == [0, 1, 2, 4, 5, 6]


def test_reader_keeps_pixels_labels_and_split(tmp_path):
    images, labels = small_set(tmp_path)
    test = data.load_dataset("mnist-8k", root=tmp_path, split="test", check_md5=False)
    assert len(test) == 3
    x, y = test[1]
    assert y == int(labels[7])
    assert torch.equal(x[0], torch.from_numpy(images[7].astype(np.float32) / 255.0))


def test_recipes_normalise_and_augment(tmp_path):
    images, _ = small_set(tmp_path)
    sim = data.load_dataset("mnist-8k", root=tmp_path, split="test", recipe="sim",
                            check_md5=False)
    expected = (images[3].astype(np.float32) / 255.0 - 0.1307) / 0.3081
    assert torch.allclose(sim[0][0][0], torch.from_numpy(expected), atol=1e-6)
    nag = data.load_dataset("mnist-8k", root=tmp_path, split="train", recipe="nag",
                            check_md5=False)
    assert nag.augment
    torch.manual_seed(0)
    crops = {tuple(nag[0][0].flatten()[:50].tolist()) for _ in range(6)}
    assert len(crops) > 1, "the nag recipe's random crop should move the digit"


def test_missing_files_say_how_to_restore_them(tmp_path):
    with pytest.raises(DatasetMissingError, match="git checkout -- data/mnist-8k/"):
        data.load_dataset("mnist-8k", root=tmp_path)


def test_damaged_files_are_named(tmp_path):
    small_set(tmp_path)
    with pytest.raises(DatasetDamagedError, match=r"images-idx3-ubyte.gz is damaged \(md5"):
        data.load_dataset("mnist-8k", root=tmp_path)
    path = tmp_path / "mnist-8k" / "labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DatasetDamagedError, match=r"labels-idx1-ubyte\.gz"):
        data.load_dataset("mnist-8k", root=tmp_path, check_md5=False)


def test_truncated_payload_is_reported(tmp_path):
    folder = tmp_path / "mnist-8k"
    small_set(tmp_path)
    raw = gzip.decompress((folder / "images-idx3-ubyte.gz").read_bytes())
    (folder / "images-idx3-ubyte.gz").write_bytes(gzip.compress(raw[:-100]))
    with pytest.raises(DatasetDamagedError, match="header says"):
        data.load_dataset("mnist-8k", root=tmp_path, check_md5=False)
