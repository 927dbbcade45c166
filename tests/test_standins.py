"""The stand-in data sets are read by the real readers (torchvision's and ours) in their layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deqode import data
from deqode.data import standins
from deqode.errors import DatasetMissingError

SMALL = ("mnist", "cifar10", "cifar100", "svhn", "tiny-imagenet")


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    folder = tmp_path_factory.mktemp("standins")
    standins.write_standins(folder, [n for n in standins.STANDIN_NAMES if n != "imagenet"])
    return folder


@pytest.mark.parametrize("name", SMALL)
def test_the_registered_readers_load_both_splits(root, name):
    data.check_available([name], root=root)
    info = data.dataset_info(name, "paper")
    for split in ("train", "test"):
        dataset = data.load_dataset(name, root=root, split=split, profile="paper")
        image, _ = dataset[0]
        assert tuple(image.shape) == info.input_shape
        labels = {int(dataset[i][1]) for i in range(len(dataset))}
        assert labels <= set(range(info.num_classes))
        # every class appears: the stand-ins keep the real class counts
        assert len(labels) == info.num_classes, (name, split, len(labels))


def test_cifar_and_mnist_hold_the_images_written(root):
    cifar = data.load_dataset("cifar10", root=root, split="train", profile="paper")
    assert len(cifar) == standins.IMAGES_PER_SPLIT
    mnist = data.load_dataset("mnist", root=root, split="test", profile="paper")
    assert len(mnist) == standins.IMAGES_PER_SPLIT
    tiny = data.load_dataset("tiny-imagenet", root=root, split="test", profile="paper")
    assert len(tiny) == standins.TINY_CLASSES


def test_svhn_keeps_the_label_ten_for_digit_zero(root):
    from scipy.io import loadmat

    mat = loadmat(root / "svhn" / "train_32x32.mat")
    assert mat["X"].shape == (32, 32, 3, standins.IMAGES_PER_SPLIT)
    assert set(np.unique(mat["y"])) == set(range(1, 11))


@pytest.mark.parametrize("name", ["tancik-natural", "tancik-text"])
def test_the_sim_images_load_at_the_paper_size(root, name):
    dataset = data.load_dataset(name, root=root, split="train", profile="paper", image=3)
    coords, rgb = dataset[0]
    assert coords.shape == (2,) and rgb.shape == (3,)
    assert len(dataset) == (standins.TANCIK_SIDE // 2) ** 2


def test_torchvision_imagenet_reads_the_imagenet_layout(tmp_path):
    from torchvision.datasets import ImageNet

    folder = standins.write_standins(tmp_path, ["imagenet"])["imagenet"]
    for split in ("train", "val"):
        dataset = ImageNet(str(folder), split=split)
        assert len(dataset.wnids) == standins.IMAGENET_CLASSES
        assert len(dataset) == standins.IMAGENET_CLASSES
        image, label = dataset[0]
        assert image.size == standins.IMAGENET_SIDE and 0 <= label < standins.IMAGENET_CLASSES
    wnid_to_classes, val_wnids = torch.load(folder / "meta.bin", weights_only=True)
    assert len(wnid_to_classes) == standins.IMAGENET_CLASSES and len(val_wnids) == len(dataset)
    if "imagenet" in data.dataset_names():  # deqode's own reader, once registered
        data.check_available(["imagenet"], root=tmp_path)


def test_same_seed_same_files_and_a_subset_writes_only_its_sets(tmp_path):
    first = standins.write_standins(tmp_path / "a", ["cifar100"], seed=3)["cifar100"]
    second = standins.write_standins(tmp_path / "b", ["cifar100"], seed=3)["cifar100"]
    for f in ("train", "test", "meta"):
        a = (first / "cifar-100-python" / f).read_bytes()
        assert a == (second / "cifar-100-python" / f).read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["cifar100"]
    with pytest.raises(DatasetMissingError, match="cifar10"):
        data.check_available(["cifar10"], root=tmp_path / "a")


def test_an_unknown_name_lists_the_stand_ins(tmp_path, capsys):
    with pytest.raises(ValueError, match="tiny-imagenet"):
        standins.write_standins(tmp_path, ["imagenet21k"])
    assert standins.main(["--root", str(tmp_path), "nope"]) == 2
    assert "valid choices" in capsys.readouterr().err
