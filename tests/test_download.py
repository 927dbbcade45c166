"""``python -m deqode download DATASET|CHAPTER [--verify]`` with no network.

The fetch path runs torchvision's own MNIST class with its ``download`` replaced by a writer of
the real IDX format; placement instructions, verification and an existing torchvision data
folder are tested on files written in the real formats (IDX, CIFAR pickles).
"""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import numpy as np
import pytest
from test_data import _images, _pickle, _write_idx
from torchvision import datasets as tvd

from deqode import cli, data
from deqode.chapters import needs
from deqode.paths import resolve


def write_mnist_raw(raw: Path, archives: bool = False) -> None:
    """Unpacked MNIST IDX files (6 train, 4 test digits), optionally with their .gz archives."""
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", 6), ("t10k", 4)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", _images(n, (28, 28), n))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
        if archives:
            for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
                name = f"{prefix}-{kind}"
                (raw / f"{name}.gz").write_bytes(gzip.compress((raw / name).read_bytes()))


def write_cifar10(folder: Path) -> None:
    folder.mkdir(parents=True)
    for i in range(1, 6):
        _pickle(folder / f"data_batch_{i}",
                {"data": _images(2, (3, 32, 32), i).reshape(2, -1), "labels": [i, 9 - i]})
    _pickle(folder / "test_batch", {"data": _images(3, (3, 32, 32), 7).reshape(3, -1),
                                     "labels": [0, 1, 2]})
    _pickle(folder / "batches.meta", {"label_names": [f"c{k}" for k in range(10)]})


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def offline_mnist(monkeypatch):
    """torchvision's MNIST.download writes stand-in files instead of fetching; counts calls."""
    calls = []

    def download(self):
        calls.append(self.root)
        write_mnist_raw(Path(self.raw_folder), archives=True)

    monkeypatch.setattr(tvd.MNIST, "download", download)
    return calls


def no_network(*args, **kwargs):
    raise AssertionError("nothing may be downloaded here")


def test_download_fetches_with_torchvision_then_finds_it_present(tmp_path, offline_mnist,
                                                                 capsys):
    assert cli.main(["download", "mnist", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    assert f"mnist: fetched: downloaded into {tmp_path / 'mnist'}" in out
    assert offline_mnist == [str(tmp_path / "mnist")]
    assert len(data.load_dataset("mnist", root=tmp_path, split="train")) == 6
    assert cli.main(["download", "mnist", "--root", str(tmp_path)]) == 0
    assert "mnist: present" in capsys.readouterr().out and len(offline_mnist) == 1
    # the archives torchvision keeps beside the files are checked against torchvision's md5s
    assert cli.main(["download", "mnist", "--root", str(tmp_path), "--verify"]) == 1
    lines = capsys.readouterr().out.splitlines()
    wanted = dict(tvd.MNIST.resources)["train-images-idx3-ubyte.gz"]
    assert any(line.startswith(f"  DAMAGED {raw / 'train-images-idx3-ubyte.gz'}") and
               f"expected {wanted}" in line for line in lines)
    assert any(line.startswith(f"  OK      {raw / 'train-images-idx3-ubyte'}") for line in lines)


def test_download_of_a_chapter_fetches_what_it_can_and_says_where_the_rest_goes(
        tmp_path, offline_mnist, monkeypatch, capsys):
    assert needs.chapter_datasets("nag", "paper") == ["mnist"]
    assert "tiny-imagenet" in needs.chapter_datasets("homoode", "paper")
    assert needs.chapter_datasets("continuous-deq", "paper") == needs.chapter_datasets(
        "continuous_deq", "paper")
    assert cli.main(["download", "nag", "--root", str(tmp_path)]) == 0
    assert "mnist: fetched" in capsys.readouterr().out
    write_cifar10(tmp_path / "cifar10" / "cifar-10-batches-py")
    (tmp_path / "cifar100").mkdir()
    monkeypatch.setattr(tvd.CIFAR100, "download", no_network)
    monkeypatch.setattr(tvd.CIFAR100, "_check_integrity", lambda self: False)
    assert cli.main(["download", "homoode", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"cifar10: present: already in place under {tmp_path / 'cifar10'}" in out
    assert "cifar100: failed: downloading dataset 'cifar100'" in out
    tiny = tmp_path / "tiny-imagenet"
    assert "tiny-imagenet: by-hand: Tiny-ImageNet is not in torchvision" in out
    assert f"{tiny}/wnids.txt" in out and f"{tiny}/val/val_annotations.txt" in out


def test_imagenet_gets_exact_placement_instructions(tmp_path, capsys):
    folder = tmp_path / "imagenet"
    assert cli.main(["download", "imagenet", "--root", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("imagenet: by-hand: ImageNet cannot be downloaded automatically")
    for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar",
                 "ILSVRC2012_devkit_t12.tar.gz"):
        assert name in out
    assert f"into {folder}/ and unpack them" in out and f"{folder}/meta.bin" in out
    assert cli.main(["download", "imagenet", "--root", str(tmp_path), "--verify"]) == 1
    assert capsys.readouterr().out.count("  MISSING ") == 3
    (folder / "train" / "n01440764").mkdir(parents=True)
    (folder / "val" / "n01440764").mkdir(parents=True)
    (folder / "meta.bin").write_bytes(b"stand-in")
    assert cli.main(["download", "imagenet", "--root", str(tmp_path)]) == 0
    assert "imagenet: present" in capsys.readouterr().out
    assert cli.main(["download", "imagenet", "--root", str(tmp_path), "--verify"]) == 0


def test_an_existing_torchvision_folder_works_where_it_is(tmp_path, monkeypatch, capsys):
    write_mnist_raw(tmp_path / "MNIST" / "raw")
    write_cifar10(tmp_path / "cifar-10-batches-py")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    monkeypatch.setattr(tvd.MNIST, "download", no_network)
    monkeypatch.setattr(tvd.CIFAR10, "download", no_network)
    data.check_available(["mnist", "cifar10"], root=tmp_path)
    mnist = data.load_dataset("mnist", root=tmp_path, split="test", recipe="plain")
    assert len(mnist) == 4 and mnist.root == str(tmp_path)
    cifar = data.load_dataset("cifar10", root=tmp_path, split="train", download=True)
    assert len(cifar) == 10 and cifar.targets[:2] == [1, 8]
    assert cli.main(["download", "mnist", "cifar10", "--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"mnist: present: already in place under {tmp_path}\n" in out
    assert f"cifar10: present: already in place under {tmp_path}\n" in out
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # not moved


def test_verify_checks_torchvisions_md5s(tmp_path, monkeypatch, capsys):
    folder = tmp_path / "cifar10" / "cifar-10-batches-py"
    write_cifar10(folder)
    argv = ["download", "cifar10", "--root", str(tmp_path), "--verify"]
    assert cli.main(argv) == 1  # stand-ins are not the real files: every md5 differs
    out = capsys.readouterr().out
    assert out.count("  DAMAGED ") == 7 and "expected c99cafc152244af753f735de768cd75f" in out
    # with torchvision's md5 lists set to these files, they pass ... until one is cut short
    files = sorted(p.name for p in folder.iterdir())
    sums = {name: md5(folder / name) for name in files}
    monkeypatch.setattr(tvd.CIFAR10, "train_list", [[f"data_batch_{i}", sums[f"data_batch_{i}"]]
                                                    for i in range(1, 6)])
    monkeypatch.setattr(tvd.CIFAR10, "test_list", [["test_batch", sums["test_batch"]]])
    monkeypatch.setattr(tvd.CIFAR10, "meta", {**tvd.CIFAR10.meta, "md5": sums["batches.meta"]})
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.count("  OK      ") == 7
    batch = folder / "data_batch_2"
    batch.write_bytes(batch.read_bytes()[:-10])
    (folder / "test_batch").unlink()
    assert cli.main(argv) == 1
    out = capsys.readouterr().out
    assert f"  DAMAGED {batch}  (md5 {md5(batch)}, expected {sums['data_batch_2']})" in out
    assert f"  MISSING {folder / 'test_batch'}  (not on disk)" in out
    assert out.count("  OK      ") == 5


def test_verify_mnist_idx_sizes_and_the_repositorys_mnist8k(tmp_path, capsys):
    raw = tmp_path / "mnist" / "MNIST" / "raw"
    write_mnist_raw(raw)
    labels = raw / "t10k-labels-idx1-ubyte"
    labels.write_bytes(labels.read_bytes()[:-1])
    assert cli.main(["download", "mnist", "--root", str(tmp_path), "--verify"]) == 1
    out = capsys.readouterr().out
    assert out.count("  OK      ") == 3 and f"  DAMAGED {labels}" in out
    assert "shape 4, 12 bytes with the header, but the file has 11 bytes" in out
    # the versioned MNIST-8k files against the md5s of data/mnist-8k/README.md
    readme = (resolve("data") / "mnist-8k" / "README.md").read_text()
    assert cli.main(["download", "mnist-8k", "digits", "--verify"]) == 0
    out = capsys.readouterr().out
    assert out.count("  OK      ") == 2 and "digits: generated or bundled" in out
    for line in out.splitlines()[1:3]:
        assert line.split("(md5 ")[1].rstrip(")") in readme


def test_unknown_names_exit_2_listing_datasets_and_chapters(capsys):
    assert cli.main(["download", "imagenet-21k"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset or chapter 'imagenet-21k'" in err
    for name in ("'mnist'", "'tiny-imagenet'", "'imagenet'", "'homoode'", "'sim'"):
        assert name in err
