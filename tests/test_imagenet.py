"""The ImageNet data set: torchvision's reader on a small layout in its real format, the
Continuous DEQ preprocessing of Table 4 and the placement instructions when it is missing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from deqode import data
from deqode.errors import DatasetMissingError

WNIDS = ("n01440764", "n01443537", "n01484850")  # three real wnids, sorted


def write_imagenet(folder: Path, per_class: int = 2, sizes=((40, 30), (27, 50))) -> None:
    """The layout ``torchvision.datasets.ImageNet`` reads without its archives: ``meta.bin``
    (``torch.save`` of ``(wnid_to_classes, val_wnids)``) and ``{train,val}/<wnid>/*.JPEG``,
    JPEGs of differing sizes whose pixels encode their class."""
    folder.mkdir(parents=True)
    classes = {w: (f"class {i}",) for i, w in enumerate(WNIDS)}
    val_wnids = [w for w in WNIDS for _ in range(per_class)]
    torch.save((classes, val_wnids), folder / "meta.bin")
    for split in ("train", "val"):
        for label, wnid in enumerate(WNIDS):
            (folder / split / wnid).mkdir(parents=True)
            for k in range(per_class):
                w, h = sizes[k % len(sizes)]
                pixels = np.full((h, w, 3), 40 + 80 * label, dtype=np.uint8)
                pixels[:, : w // 2, 0] = 255  # left half red: a flip is visible
                Image.fromarray(pixels).save(folder / split / wnid / f"{split}_{label}_{k}.JPEG")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_imagenet(root / "imagenet")
    return root


def test_imagenet_reads_the_torchvision_layout_with_the_papers_preprocessing(root):
    test = data.load_dataset("imagenet", root=root, split="test", recipe="cdeq")
    assert len(test) == 6 and not test.augment and test.preprocessing.recipe == "cdeq"
    labels = [int(test[i][1]) for i in range(len(test))]
    assert labels == [0, 0, 1, 1, 2, 2]  # the val set, labels = sorted wnids
    x, _ = test[2]
    assert x.shape == (3, 224, 224) and x.dtype == torch.float32  # resized, no centre crop
    # ImageNet statistics: the grey channel value 120/255 normalised
    expected = (120 / 255 - 0.456) / 0.224
    assert float(x[1].mean()) == pytest.approx(expected, abs=0.03)
    train = data.load_dataset("imagenet", root=root, split="train", recipe="cdeq")
    assert train.augment and len(train) == 6
    assert {tuple(train[i][0].shape) for i in range(len(train))} == {(3, 224, 224)}
    # the train augmentation flips half the time: the red half moves across
    torch.manual_seed(0)
    sides = {bool(train[0][0][0, :, :112].mean() > train[0][0][0, :, 112:].mean())
             for _ in range(12)}
    assert sides == {True, False}
    prep = data.preprocessing("imagenet", "cdeq")
    assert (prep.resize, prep.crop, prep.eval_resize, prep.flip_p) == (256, 224, 224, 0.5)


def test_imagenet_plain_recipe_resizes_only(root):
    x, _ = data.load_dataset("imagenet", root=root, split="test")[0]
    assert x.shape == (3, 224, 224) and 0.0 <= float(x.min()) and float(x.max()) <= 1.0
    assert data.dataset_info("imagenet").num_classes == 1000


def test_missing_imagenet_says_which_files_go_where(tmp_path):
    with pytest.raises(DatasetMissingError) as err:
        data.load_dataset("imagenet", root=tmp_path, split="test")
    message = str(err.value)
    folder = str(tmp_path / "imagenet")
    for part in ("meta.bin", "train/", "val/", "ILSVRC2012_devkit_t12.tar.gz",
                 "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", folder,
                 "d.ImageNet("):
        assert part in message, part
    with pytest.raises(DatasetMissingError, match="cannot be downloaded automatically"):
        data.download_dataset("imagenet", root=tmp_path)


def test_table4_paper_runs_read_imagenet_in_batches_of_the_model_input(root):
    """Table 4's paper configuration loads this layout through the training loop's loader path
    (the run itself is GPU-days; the model's real-size costs are timed in 09_cdeq_timing)."""
    from torch.utils.data import DataLoader

    from deqode.chapters import continuous_deq as cd

    config = cd.train_config(cd.Row("T4", "skip_reg", "continuous"), "paper")
    train = data.load_dataset(config.dataset, root=root, split="train", **config.dataset_kwargs)
    x, y = next(iter(DataLoader(train, batch_size=4, num_workers=0)))
    assert x.shape == (4, 3, 224, 224) and y.tolist() == [0, 0, 1, 1]
    assert cd.table_dataset("T4", "paper", "test", str(root))[5][1] == 2
