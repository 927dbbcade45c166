"""deqode.data: real on-disk formats through the real readers, recipes, generators, errors.

The fixtures write tiny files in each set's true format (MNIST IDX, CIFAR pickle batches, SVHN
.mat, Tiny-ImageNet JPEG folders, Tancik npz) under a temporary root and load them with
``load_dataset`` exactly as a user's downloaded files would be loaded.
"""

from __future__ import annotations

import pickle
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from deqode import data
from deqode.choices import UnknownChoiceError
from deqode.data import recipes, synthetic
from deqode.errors import DatasetMissingError

FILE_BACKED = ("mnist", "svhn", "cifar10", "cifar100", "tiny-imagenet", "tancik-natural")


# ------------------------------------------------------------------------------------------------
# writers of the real formats


def _write_idx(path: Path, array: np.ndarray) -> None:
    """IDX: magic (0, 0, 0x08 = ubyte, ndim), big-endian uint32 dims, then the raw bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(
        f">{array.ndim}I", *array.shape
    )
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def _images(n: int, shape: tuple[int, ...], offset: int) -> np.ndarray:
    """Distinct, position-dependent uint8 images (no symmetry, so flips/crops are visible)."""
    size = int(np.prod(shape))
    base = (np.arange(size) * 7 % 251).reshape(shape)
    return np.stack([(base + 13 * (k + offset)) % 256 for k in range(n)]).astype(np.uint8)


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    # MNIST: <root>/mnist/MNIST/raw/*-ubyte (uncompressed, as torchvision leaves them)
    raw = root / "mnist" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n, offset in (("train", 6, 0), ("t10k", 4, 50)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", _images(n, (28, 28), offset))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", (np.arange(n) + offset) % 10)
    # CIFAR-10: five train batches of 2, a test batch of 3, batches.meta
    c10 = root / "cifar10" / "cifar-10-batches-py"
    c10.mkdir(parents=True)
    for i in range(1, 6):
        imgs = _images(2, (3, 32, 32), 2 * i).reshape(2, -1)
        _pickle(c10 / f"data_batch_{i}", {"data": imgs, "labels": [(2 * i) % 10, (2 * i + 1) % 10]})
    _pickle(
        c10 / "test_batch",
        {"data": _images(3, (3, 32, 32), 90).reshape(3, -1), "labels": [0, 9, 4]},
    )
    _pickle(c10 / "batches.meta", {"label_names": [f"class{k}" for k in range(10)]})
    # CIFAR-100: train, test, meta (fine and coarse labels)
    c100 = root / "cifar100" / "cifar-100-python"
    c100.mkdir(parents=True)
    for name, n, fine in (("train", 4, [0, 37, 99, 5]), ("test", 2, [99, 1])):
        _pickle(
            c100 / name,
            {
                "data": _images(n, (3, 32, 32), len(name)).reshape(n, -1),
                "fine_labels": fine,
                "coarse_labels": [f // 5 for f in fine],
            },
        )
    _pickle(
        c100 / "meta",
        {
            "fine_label_names": [f"f{k}" for k in range(100)],
            "coarse_label_names": [f"c{k}" for k in range(20)],
        },
    )
    # SVHN: X (32, 32, 3, N) uint8, y (N, 1) with 10 meaning digit 0
    svhn = root / "svhn"
    svhn.mkdir()
    for split, labels in (("train", [10, 3, 7]), ("test", [1, 10])):
        x = np.moveaxis(_images(len(labels), (32, 32, 3), len(split)), 0, -1)
        scipy.io.savemat(
            svhn / f"{split}_32x32.mat", {"X": x, "y": np.array(labels, dtype=np.uint8)[:, None]}
        )
    _write_tiny(root / "tiny-imagenet")
    # Tancik npz: key test_data, (N, H, W, 3) uint8
    (root / "tancik").mkdir()
    np.savez(
        root / "tancik" / "data_div2k.npz",
        train_data=_images(1, (8, 8, 3), 0),
        test_data=_images(2, (8, 8, 3), 3),
    )
    return root


TINY_WNIDS = ("n09999999", "n01443537", "n02000000")  # deliberately unsorted in wnids.txt
TINY_COLOURS = {"n01443537": (200, 40, 40), "n02000000": (40, 200, 40), "n09999999": (40, 40, 200)}


def _write_tiny(folder: Path) -> None:
    folder.mkdir(parents=True)
    (folder / "wnids.txt").write_text("\n".join(TINY_WNIDS) + "\n")
    for wnid in TINY_WNIDS:
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        for k in range(2):
            Image.new("RGB", (64, 64), TINY_COLOURS[wnid]).save(
                images / f"{wnid}_{k}.JPEG", quality=95
            )
    (folder / "val" / "images").mkdir(parents=True)
    Image.new("RGB", (64, 64), TINY_COLOURS["n02000000"]).save(
        folder / "val" / "images" / "val_0.JPEG", quality=95
    )
    Image.new("L", (64, 64), 128).save(folder / "val" / "images" / "val_1.JPEG", quality=95)
    (folder / "val" / "val_annotations.txt").write_text(
        "val_0.JPEG\tn02000000\t0\t0\t63\t63\nval_1.JPEG\tn09999999\t1\t2\t60\t61\n"
    )


def _transform_steps(dataset) -> list:
    return list(dataset.transform.transforms)


# ------------------------------------------------------------------------------------------------
# image classification from the real formats


def test_mnist_idx_plain_sim_and_nag(root):
    train = data.load_dataset("mnist", root=root, split="train")
    test = data.load_dataset("mnist", root=root, split="test")
    assert (len(train), len(test)) == (6, 4)
    x, y = test[2]
    assert x.shape == (1, 28, 28) and x.dtype == torch.float32 and y == 2  # (2 + 50) % 10
    expected = torch.from_numpy(_images(4, (28, 28), 50)[2]).float() / 255
    torch.testing.assert_close(x[0], expected)  # plain: ToTensor only, same orientation
    sim = data.load_dataset("mnist", root=root, split="test", recipe="sim")
    torch.testing.assert_close(sim[2][0], (x - 0.1307) / 0.3081)
    nag = data.load_dataset("mnist", root=root, split="train", recipe="nag")
    assert nag.augment and nag.preprocessing.crop == 28 and nag.preprocessing.crop_padding == 4
    torch.manual_seed(0)
    crops = [nag[0][0] for _ in range(8)]
    assert all(c.shape == (1, 28, 28) for c in crops)
    assert any(not torch.equal(c, train[0][0]) for c in crops)  # random crops move the digit


def test_cifar10_pickles_homoode_quirks(root):
    train = data.load_dataset("cifar10", root=root, split="train")
    test = data.load_dataset("cifar10", root=root, split="test")
    assert (len(train), len(test)) == (10, 3)
    assert train.classes[3] == "class3"
    assert sorted(int(train[i][1]) for i in range(10)) == list(range(10))
    # default recipe = homoode; test split deterministic, ImageNet statistics (the quirk)
    assert test.preprocessing.recipe == "homoode" and not test.augment
    x, y = test[1]
    assert y == 9 and x.shape == (3, 32, 32)
    raw = torch.from_numpy(_images(3, (3, 32, 32), 90)[1]).float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    torch.testing.assert_close(x, (raw - mean) / std)
    torch.testing.assert_close(data.load_dataset("cifar10", root=root, split="test")[1][0], x)
    torch.testing.assert_close(pickle.loads(pickle.dumps(test))[1][0], x)  # spawn workers
    # train augmentation: flip with p = 0.2 (the quirk), crop 32 with padding 4
    steps = _transform_steps(train)
    assert [type(s).__name__ for s in steps] == [
        "RandomHorizontalFlip",
        "RandomCrop",
        "ToTensor",
        "Normalize",
    ]
    assert steps[0].p == 0.2 and steps[1].size == (32, 32) and steps[1].padding == 4
    off = data.load_dataset("cifar10", root=root, split="train", augment=False)
    assert [type(s).__name__ for s in _transform_steps(off)] == ["ToTensor", "Normalize"]
    assert data.load_dataset("cifar10", root=root, split="test", augment=True).augment


def test_cifar10_other_recipes(root):
    sim = data.load_dataset("cifar10", root=root, split="test", recipe="sim")
    assert _transform_steps(sim)[-1].std == (0.2470, 0.2435, 0.2616)
    large = data.load_dataset("cifar10", root=root, split="train", recipe="cdeq-large")
    names = [type(s).__name__ for s in _transform_steps(large)]
    assert names == ["RandomHorizontalFlip", "Resize", "RandomCrop", "ToTensor", "Normalize"]
    assert large[0][0].shape == (3, 32, 32)
    small = data.load_dataset("cifar10", root=root, split="train", recipe="cdeq")
    assert not small.augment and _transform_steps(small)[-1].std == (0.2023, 0.1994, 0.2010)


def test_cifar100_fine_labels(root):
    train = data.load_dataset("cifar100", root=root, split="train")
    test = data.load_dataset("cifar100", root=root, split="test")
    assert [train[i][1] for i in range(4)] == [0, 37, 99, 5] and test[0][1] == 99
    steps = _transform_steps(train)
    assert steps[0].p == 0.5 and steps[1].padding == 4
    assert steps[-1].mean == (0.485, 0.456, 0.406)  # ImageNet statistics, as in the script


def test_svhn_mat_label_10_is_zero_and_layout(root):
    train = data.load_dataset("svhn", root=root, split="train")
    assert [train[i][1] for i in range(3)] == [0, 3, 7]
    x, _ = train[1]
    raw = _images(3, (32, 32, 3), 5)[1]  # X[h, w, c, n] -> tensor[c, h, w]
    torch.testing.assert_close(x, torch.from_numpy(raw).permute(2, 0, 1).float() / 255)
    test = data.load_dataset("svhn", root=root, split="test", recipe="sim")
    assert len(test) == 2 and test[1][1] == 0
    assert _transform_steps(test)[-1].mean == (0.4377, 0.4438, 0.4728)


def test_tiny_imagenet_folders(root):
    train = data.load_dataset("tiny-imagenet", root=root, split="train")
    assert train.classes == sorted(TINY_WNIDS) and len(train) == 6
    assert sorted(label for _, label in train.samples) == [0, 0, 1, 1, 2, 2]
    steps = _transform_steps(train)
    assert steps[0].p == 0.5 and steps[1].size == (64, 64) and steps[1].padding == 8
    assert steps[-1].mean == (0.4914, 0.4822, 0.4465)  # CIFAR statistics (the quirk)
    test = data.load_dataset("tiny-imagenet", root=root, split="test", recipe="plain")
    assert len(test) == 2
    (x0, y0), (x1, y1) = test[0], test[1]
    assert (y0, y1) == (1, 2)  # labels from val_annotations.txt, indices of sorted wnids
    assert x1.shape == (3, 64, 64)  # the grayscale JPEG is converted to RGB
    colour = torch.tensor(TINY_COLOURS["n02000000"], dtype=torch.float32) / 255
    assert torch.allclose(x0.mean(dim=(1, 2)), colour, atol=3 / 255)  # JPEG: a few levels off
    homo = data.load_dataset("tiny-imagenet", root=root, split="test")
    mean = torch.tensor((0.4914, 0.4822, 0.4465)).view(3, 1, 1)
    std = torch.tensor((0.2023, 0.1994, 0.2010)).view(3, 1, 1)
    torch.testing.assert_close(homo[0][0], (x0 - mean) / std)


def test_tiny_imagenet_nested_folder_and_bad_annotation(tmp_path):
    _write_tiny(tmp_path / "tiny-imagenet" / "tiny-imagenet-200")
    assert len(data.load_dataset("tiny-imagenet", root=tmp_path, split="test")) == 2
    ann = tmp_path / "tiny-imagenet" / "tiny-imagenet-200" / "val" / "val_annotations.txt"
    ann.write_text("val_0.JPEG\tn00000001\t0\t0\t1\t1\n")
    with pytest.raises(ValueError, match="n00000001"):
        data.load_dataset("tiny-imagenet", root=tmp_path, split="test")


# ------------------------------------------------------------------------------------------------
# missing data, downloads, bad input


@pytest.mark.parametrize("name", FILE_BACKED)
def test_missing_dataset_names_folder_and_howto(tmp_path, name):
    with pytest.raises(DatasetMissingError) as err:
        data.load_dataset(name, root=tmp_path)
    msg = str(err.value)
    folder = tmp_path / data.dataset_info(name).folder
    assert repr(name) in msg and f"{folder}/" in msg
    assert isinstance(err.value, FileNotFoundError)
    howto = {
        "tiny-imagenet": "https://www.kaggle.com/competitions/tiny-imagenet/data",
        "tancik-natural": "1TtwlEDArhOMoH18aUyjIMSZ3WODFmUab",
    }.get(name, "download=True")
    assert howto in msg
    if name == "tiny-imagenet":
        assert "wnids.txt" in msg and "val_annotations.txt" in msg


def test_check_available_lists_every_missing_set(tmp_path, root):
    with pytest.raises(DatasetMissingError) as err:
        data.check_available(["digits", "cifar10", "mnist", "spirals"], root=tmp_path)
    msg = str(err.value)
    assert msg.startswith("2 dataset(s) missing") and "'cifar10'" in msg and "'mnist'" in msg
    assert "python -c" in msg and "torchvision.datasets" in msg
    data.check_available(["mnist", "cifar10", "tiny-imagenet", "digits", "circles"], root=root)


def test_partially_missing_names_the_missing_file(tmp_path, root):
    import shutil

    shutil.copytree(root / "cifar10", tmp_path / "cifar10")
    (tmp_path / "cifar10" / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DatasetMissingError, match=r"these are missing: cifar-10-batches-py/data_"):
        data.load_dataset("cifar10", root=tmp_path)


def test_relative_root_resolves_against_repo_root(monkeypatch, root):
    monkeypatch.setenv("DEQODE_ROOT", str(root.parent))
    assert len(data.load_dataset("mnist", root=root.name, split="test")) == 4


def test_failed_download_is_a_dataset_missing_error(tmp_path, monkeypatch):
    import torchvision.datasets.cifar as tv_cifar

    def offline(*args, **kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(tv_cifar, "download_and_extract_archive", offline)
    with pytest.raises(DatasetMissingError, match=r"downloading dataset 'cifar10'.*failed"):
        data.load_dataset("cifar10", root=tmp_path, download=True)
    with pytest.raises(DatasetMissingError, match="kaggle"):
        data.load_dataset("tiny-imagenet", root=tmp_path, download=True)


def test_bad_names_and_arguments(root):
    with pytest.raises(UnknownChoiceError, match=r"'cifar10'.*'digits'"):
        data.load_dataset("cifar-10")
    with pytest.raises(UnknownChoiceError, match="'spirals'"):
        data.dataset_info("spiral")
    with pytest.raises(UnknownChoiceError, match="'train', 'test'"):
        data.load_dataset("digits", split="val")
    with pytest.raises(UnknownChoiceError, match="profile"):
        data.load_dataset("digits", profile="full")
    with pytest.raises(UnknownChoiceError, match="'plain', 'nag', 'sim', 'cdeq'"):
        data.load_dataset("mnist", root=root, recipe="homoode")
    with pytest.raises(UnknownChoiceError, match=r"recipe.*'cdeq-large'"):
        data.load_dataset("digits", recipe="imagenet")
    with pytest.raises(UnknownChoiceError, match="'n_samples', 'seed'"):
        data.load_dataset("circles", n_points=10)
    with pytest.raises(UnknownChoiceError, match="recipe"):
        data.load_dataset("spirals", recipe="homoode")
    with pytest.raises(ValueError, match="no augmentation"):
        data.load_dataset("digits", augment=True)
    with pytest.raises(ValueError, match="no augmentation"):
        data.load_dataset("circles", augment=True)
    with pytest.raises(UnknownChoiceError):
        data.check_available(["digits", "imagenet-21k"])


# ------------------------------------------------------------------------------------------------
# recipes table


def test_recipe_table_keeps_the_papers_numbers():
    c10 = data.preprocessing("cifar10", "homoode")
    assert (c10.flip_p, c10.crop, c10.crop_padding) == (0.2, 32, 4)
    assert c10.mean == recipes.IMAGENET_MEAN and c10.std == recipes.IMAGENET_STD
    tiny = data.preprocessing("tiny-imagenet")
    assert (tiny.flip_p, tiny.crop, tiny.crop_padding) == (0.5, 64, 8)
    assert tiny.mean == (0.4914, 0.4822, 0.4465) and tiny.std == (0.2023, 0.1994, 0.2010)
    assert data.preprocessing("cifar100").flip_p == 0.5
    assert data.default_recipe("mnist") == "plain" and data.default_recipe("cifar10") == "homoode"
    assert data.default_recipe("spirals") is None
    table = data.preprocessing_table()
    assert len(table) == sum(len(data.dataset_recipes(n)) for n in data.dataset_names())
    assert all(p.source for p in table)


# ------------------------------------------------------------------------------------------------
# digits


def test_digits_split_sizes_range_and_determinism():
    train, test = data.load_dataset("digits"), data.load_dataset("digits", split="test")
    assert (len(train), len(test)) == (1437, 360)
    x, y = train[0]
    assert x.shape == (1, 8, 8) and x.dtype == torch.float32 and 0 <= y <= 9
    assert float(train.images.min()) == 0.0 and float(train.images.max()) == 1.0
    counts = torch.bincount(test.targets, minlength=10)
    assert int(counts.min()) >= 35 and int(counts.max()) <= 37  # stratified: 20 % of ~180
    again = data.load_dataset("digits", split="test")
    assert torch.equal(again.images, test.images) and torch.equal(again.targets, test.targets)
    other = data.load_dataset("digits", split="test", seed=1)
    assert not torch.equal(other.images, test.images)
    sim = data.load_dataset("digits", recipe="sim").images.double()
    assert abs(float(sim.mean())) < 1e-5 and abs(float(sim.std(unbiased=False)) - 1) < 1e-5
    assert data.dataset_info("digits").sizes == {"train": 1437, "test": 360}


# ------------------------------------------------------------------------------------------------
# generated sets


@pytest.mark.parametrize("name", synthetic.DENSITY_NAMES)
def test_densities_shapes_range_determinism(name):
    train = data.load_dataset(name)
    assert len(train) == 2048 and train.inputs.shape == (2048, 2)
    assert train.inputs.dtype == torch.float32 and train.targets.dtype == torch.int64
    assert float(train.inputs.abs().max()) < 2.0
    assert torch.equal(data.load_dataset(name).inputs, train.inputs)
    assert not torch.equal(data.load_dataset(name, seed=1).inputs, train.inputs)
    test = data.load_dataset(name, split="test", n_samples=100)
    assert len(test) == 100 and not torch.equal(test.inputs, train.inputs[:100])
    points, comp = data.sample_2d_density(name, 7, rng=3)
    assert points.shape == (7, 2) and comp.shape == (7,)


def test_density_geometry():
    pts, comp = data.sample_2d_density("circles", 4000, rng=0)
    radius = pts.double().norm(dim=1)
    assert abs(float(radius[comp == 0].mean()) - 1.0) < 0.02
    assert abs(float(radius[comp == 1].mean()) - 0.5) < 0.02
    pts, comp = data.sample_2d_density("8gaussians", 4000, rng=0)
    angle = comp.double() * torch.pi / 4
    centres = torch.stack([angle.cos(), angle.sin()], 1)
    assert abs(float((pts.double() - centres).std()) - 0.1) < 0.01
    pts, comp = data.sample_2d_density("checkerboard", 4000, rng=0)
    cells = torch.floor((pts.double() + 1.5) / 0.75)
    assert torch.all((cells.sum(dim=1) % 2) == 0) and set(comp.tolist()) == set(range(8))


_TOL = {"rtol": 1e-5, "atol": 1e-5}


def test_spirals_geometry_noise_and_determinism():
    ds = data.load_dataset("spirals")
    assert len(ds) == 64 and ds[0][0].shape == (20, 2) and ds.times.shape == (20,)
    torch.testing.assert_close(ds.full_times, torch.linspace(0, 6 * np.pi, 200))
    torch.testing.assert_close(ds.times, ds.full_times[:20])
    assert int(ds.start_index.min()) >= 20 and int(ds.start_index.max()) < 180
    assert 0 < int(ds.clockwise.sum()) < 64
    t = ds.full_times.double()
    for i in range(len(ds)):
        start = int(ds.start_index[i])
        torch.testing.assert_close(ds.clean[i], ds.trajectory(i)[start : start + 20])
    ccw, cw = ds.base.double()
    torch.testing.assert_close((ccw - torch.tensor([5.0, 0.0])).norm(dim=1), 0.3 * t, **_TOL)
    expected_cw = 50 * 0.3 / (6 * np.pi + 1 - t)
    torch.testing.assert_close((cw - torch.tensor([-5.0, 0.0])).norm(dim=1), expected_cw, **_TOL)
    noise = (ds.observed - ds.clean).double()
    assert abs(float(noise.std()) - 0.3) < 0.03
    assert torch.equal(data.load_dataset("spirals").observed, ds.observed)
    assert not torch.equal(data.load_dataset("spirals", split="test").observed, ds.observed)
    with pytest.raises(ValueError, match="n_total > 2"):
        data.load_dataset("spirals", n_total=40, n_sample=20)
    assert data.dataset_info("spirals", "paper").input_shape == (100, 2)


def test_copy_memory_structure_and_sim_seeds():
    ds = data.load_dataset("copy-memory", split="train")
    T = 10
    assert len(ds) == 200 and ds.inputs.shape == (200, 1, T + 20)
    assert ds.targets.shape == (200, T + 20) and ds.targets.dtype == torch.int64
    x, y = ds.inputs[:, 0], ds.targets
    digits = x[:, :10]
    assert float(digits.min()) >= 1 and float(digits.max()) <= 8
    assert torch.all(x[:, 10 : T + 9] == 0) and torch.all(x[:, T + 9 :] == 9)
    assert torch.all(y[:, : T + 10] == 0) and torch.equal(y[:, T + 10 :], digits.long())
    expected = np.random.RandomState(1111 + T + 100).randint(1, 9, size=(200, 10))
    assert np.array_equal(digits.numpy(), expected)
    test = data.load_dataset("copy-memory", split="test", T=5, n_samples=3, seed=0)
    assert test.inputs.shape == (3, 1, 25)
    expected = np.random.RandomState(200).randint(1, 9, size=(3, 10))
    assert np.array_equal(test.inputs[:, 0, :10].numpy(), expected)
    info = data.dataset_info("copy-memory", profile="paper")
    assert info.input_shape == (1, 520) and info.sizes == {"train": 5000, "test": 500}


def test_image_regression_grids_and_splits(root):
    side = 16
    train = data.load_dataset("sample-china", size=side)
    test = data.load_dataset("sample-china", split="test", size=side)
    val = data.load_dataset("sample-china", split="val", size=side)
    assert len(train) == len(test) == len(val) == (side // 2) ** 2 and train.grid_shape == (8, 8)
    image = train.image
    assert image.shape == (side, side, 3) and 0 <= float(image.min()) and float(image.max()) <= 1
    k = 11  # split-grid row 1, column 3
    i, j = 2 * (k // 8), 2 * (k % 8)
    torch.testing.assert_close(train[k][0], torch.tensor([j / side, i / side]))
    torch.testing.assert_close(train[k][1], image[i, j])
    torch.testing.assert_close(test[k][0], torch.tensor([(j + 1) / side, (i + 1) / side]))
    torch.testing.assert_close(val[k][1], image[i, j + 1])
    text = data.load_dataset("rendered-text", size=side)
    assert 0.05 < float((text.image < 0.9).float().mean()) < 0.6  # some ink, mostly white
    assert torch.equal(data.load_dataset("rendered-text", size=side).image, text.image)
    flower = data.load_dataset("sample-flower")  # smoke default size 64
    assert len(flower) == 32 * 32


def test_tancik_npz(root):
    ds = data.load_dataset("tancik-natural", root=root, split="test", image=1)
    expected = torch.from_numpy(_images(2, (8, 8, 3), 3)[1]).float() / 255
    torch.testing.assert_close(ds.image, expected)
    torch.testing.assert_close(ds[0][1], expected[1, 1])
    with pytest.raises(ValueError, match=r"0\.\.1"):
        data.load_dataset("tancik-natural", root=root, image=5)


def test_dataset_info_fields():
    for name in data.dataset_names():
        info = data.dataset_info(name)
        assert info.name == name and info.task in (
            "classification",
            "density",
            "time-series",
            "sequence",
            "regression",
        )
        assert info.source
    tiny = data.dataset_info("tiny-imagenet")
    assert (tiny.input_shape, tiny.num_classes, tiny.folder) == ((3, 64, 64), 200, "tiny-imagenet")
    assert data.dataset_info("cifar10").mean == (0.485, 0.456, 0.406)
    assert data.dataset_info("mnist").mean is None
