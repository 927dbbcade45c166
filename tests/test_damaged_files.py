"""Damaged files end in one clear paragraph, and no work is lost.

A truncated ``checkpoint.pt`` falls back to ``checkpoint.previous.pt`` (and training continues
from it exactly) or stops, saying how to start afresh; a truncated MNIST IDX file, CIFAR pickle
or SVHN .mat names the file, the expected size or md5 and how to re-fetch it. Both through the
command line, in process and as a subprocess (no traceback, exit code 2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_data import _write_idx, root  # noqa: F401  (the real-format fixture)
from test_train import config, deterministic, run

from deqode import chapters as experiments
from deqode import cli, data
from deqode.errors import CheckpointDamagedError, DatasetDamagedError

REPO = Path(__file__).resolve().parents[1]


def truncate(path: Path, keep: float = 0.5) -> bytes:
    """Cut ``path`` to a fraction of its bytes (a disk filled up, a copy killed); returns them."""
    cut = path.read_bytes()[: int(path.stat().st_size * keep)]
    path.write_bytes(cut)
    return cut


def one_paragraph(text: str) -> bool:
    return "Traceback" not in text and "\n\n" not in text.strip() and len(text.strip()) > 0


def epoch_of(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


# ------------------------------------------------------------------------------------------------
# checkpoints


def test_save_keeps_the_previous_checkpoint(tmp_path):
    out = run(tmp_path, config(epochs=3)).out_dir
    assert epoch_of(out / "checkpoint.pt") == 3 and epoch_of(out / "checkpoint.previous.pt") == 2
    assert not list(out.glob(".*.tmp"))


def test_cli_resume_falls_back_to_the_previous_checkpoint_and_continues(tmp_path, monkeypatch,
                                                                      capsys):
    cfg = config(epochs=3, model_kwargs={"dropout": 0.2})
    straight = run(tmp_path / "straight", cfg)
    monkeypatch.setattr(experiments, "get", lambda name, profile: cfg)
    argv = ["train", "tiny", "--device", "cpu", "--results-dir", str(tmp_path / "cli"),
            "--quiet", "--no-progress"]
    assert cli.main([*argv, "--max-epochs", "2"]) == 0
    out = tmp_path / "cli" / "smoke" / "tiny"
    truncate(out / "checkpoint.pt")
    assert cli.main([*argv, "--resume"]) == 0
    err = capsys.readouterr().err
    assert f"{out / 'checkpoint.pt'} is damaged" in err
    assert "resuming from checkpoint.previous.pt (epoch 1) instead" in err
    record = json.loads((out / "metrics.json").read_text())
    assert record["summary"]["state"] == "completed"
    # epoch 2 is trained again from the epoch-1 state: the same numbers as a straight run
    assert [deterministic(h) for h in record["history"]] == [
        deterministic(h) for h in straight.history]
    assert epoch_of(out / "checkpoint.pt") == 3 and epoch_of(out / "checkpoint.previous.pt") == 2


def test_a_damaged_checkpoint_never_replaces_the_good_previous_one(tmp_path):
    cfg = config(epochs=3)
    out = run(tmp_path, cfg, max_epochs=2).out_dir
    truncate(out / "checkpoint.pt")
    good = (out / "checkpoint.previous.pt").read_bytes()
    result = run(tmp_path, cfg, resume=True, max_epochs=2)  # epoch 2 again, from epoch 1
    assert result.state == "stopped" and epoch_of(out / "checkpoint.pt") == 2
    assert (out / "checkpoint.previous.pt").read_bytes() == good  # not the damaged file
    truncate(out / "checkpoint.pt")
    fresh = run(tmp_path, cfg, max_epochs=1)  # a fresh start leaves the good one in place too
    assert fresh.state == "stopped" and (out / "checkpoint.previous.pt").read_bytes() == good
    assert epoch_of(out / "checkpoint.pt") == 1


@pytest.mark.parametrize(("previous", "reason"), [
    ("absent", "there is no checkpoint.previous.pt beside it"),
    ("damaged", "checkpoint.previous.pt is damaged too"),
    ("other config", "checkpoint.previous.pt was saved with another configuration"),
])
def test_cli_resume_without_a_good_previous_stops_saying_how_to_start_afresh(
        tmp_path, monkeypatch, capsys, previous, reason):
    cfg = config(epochs=3)
    out = run(tmp_path, cfg, max_epochs=2).out_dir
    if previous == "absent":
        (out / "checkpoint.previous.pt").unlink()
    elif previous == "damaged":
        truncate(out / "checkpoint.previous.pt")
    else:
        other = run(tmp_path / "other", config(epochs=3, lr=0.5), max_epochs=1).out_dir
        (other / "checkpoint.pt").replace(out / "checkpoint.previous.pt")
    damaged = truncate(out / "checkpoint.pt")
    status = (out / "status.json").read_text()
    monkeypatch.setattr(experiments, "get", lambda name, profile: cfg)
    argv = ["train", "tiny", "--device", "cpu", "--results-dir", str(tmp_path), "--resume"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert one_paragraph(err) and err.startswith("deqode: error: cannot resume 'tiny'")
    assert f"its checkpoint {out / 'checkpoint.pt'} is damaged" in err and reason in err
    assert "not a complete zip archive: truncated" in err and "run without --resume" in err
    assert (out / "checkpoint.pt").read_bytes() == damaged  # nothing overwritten
    assert (out / "status.json").read_text() == status
    with pytest.raises(CheckpointDamagedError):
        run(tmp_path, cfg, resume=True)


def test_a_fresh_start_sets_another_runs_checkpoint_aside_not_lost(tmp_path):
    finished = run(tmp_path, config(epochs=2)).out_dir
    assert epoch_of(finished / "checkpoint.pt") == 2
    run(tmp_path, config(epochs=3, lr=0.5))  # same name, fresh start: three saves
    shelved = torch.load(finished / "checkpoint.shelved.pt", weights_only=True)
    assert shelved["config"]["lr"] == 0.02 and shelved["epoch"] == 2
    assert epoch_of(finished / "checkpoint.previous.pt") == 2


def test_subprocess_damaged_checkpoint_exits_2_without_traceback(tmp_path, monkeypatch):
    results = tmp_path / "results"
    out = results / "smoke" / "homoode-digits"
    common = [sys.executable, "-m", "deqode", "train", "homoode-digits", "--device", "cpu",
              "--results-dir", str(results), "--no-progress", "--quiet", "--epochs", "2"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "DEQODE_REHEARSAL_STEPS": "2"}
    monkeypatch.setenv("DEQODE_REHEARSAL_STEPS", "2")
    assert cli.main([*common[3:], "--max-epochs", "1"]) == 0  # the run itself in process
    truncate(out / "checkpoint.pt", keep=0.3)
    proc = subprocess.run([*common, "--resume"], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 2 and one_paragraph(proc.stderr), proc.stderr
    assert str(out / "checkpoint.pt") in proc.stderr and "without --resume" in proc.stderr


# ------------------------------------------------------------------------------------------------
# dataset files


def _copy_set(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_truncated_mnist_idx_names_the_file_the_expected_size_and_the_fix(tmp_path, root):  # noqa: F811
    copy = _copy_set(root / "mnist", tmp_path / "mnist")
    images = copy / "MNIST" / "raw" / "train-images-idx3-ubyte"
    expected = images.stat().st_size
    truncate(images)
    with pytest.raises(DatasetDamagedError) as info:
        data.load_dataset("mnist", root=tmp_path, split="train")
    text = str(info.value)
    assert str(images) in text and f"{expected:,} bytes" in text and "6 x 28 x 28" in text
    assert "python -m deqode download mnist" in text and "--verify" in text
    assert data.load_dataset("mnist", root=tmp_path, split="test").data.shape == (4, 28, 28)


@pytest.mark.parametrize(("name", "damaged_file", "kwargs"), [
    ("cifar10", "cifar-10-batches-py/data_batch_3", {}),
    ("cifar100", "cifar-100-python/train", {}),
    ("svhn", "train_32x32.mat", {}),
])
def test_damaged_cifar_and_svhn_name_the_file_and_its_md5(tmp_path, root, name,  # noqa: F811
                                                          damaged_file, kwargs):
    from deqode.data import integrity

    _copy_set(root / name, tmp_path / name)
    path = tmp_path / name / damaged_file
    truncate(path, keep=0.4)
    with pytest.raises(DatasetDamagedError) as info:
        data.load_dataset(name, root=tmp_path, split="train", **kwargs)
    text = str(info.value)
    md5 = integrity.known_files(name)[0][damaged_file]
    assert str(path) in text and f"md5 should be {md5}" in text
    assert f"python -m deqode download {name}" in text and "\n" not in text


def test_cli_train_on_a_truncated_mnist_exits_2_with_one_paragraph(tmp_path, root, capsys):  # noqa: F811
    _copy_set(root / "mnist", tmp_path / "mnist")
    truncate(tmp_path / "mnist" / "MNIST" / "raw" / "train-labels-idx1-ubyte", keep=0.9)
    argv = ["train", "nag-cls-rk4-K12-seed0", "--profile", "paper", "--device", "cpu",
            "--data-root", str(tmp_path), "--results-dir", str(tmp_path / "results")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert one_paragraph(err) and err.startswith("deqode: error: dataset 'mnist': the file ")
    assert "train-labels-idx1-ubyte is damaged" in err and "14 bytes with the header" in err
    assert "python -m deqode download mnist" in err
    assert not (tmp_path / "results").exists()


def test_subprocess_truncated_mnist_exits_2_without_traceback(tmp_path, root):  # noqa: F811
    _copy_set(root / "mnist", tmp_path / "data" / "mnist")
    images = tmp_path / "data" / "mnist" / "MNIST" / "raw" / "train-images-idx3-ubyte"
    truncate(images)
    proc = subprocess.run(
        [sys.executable, "-m", "deqode", "train", "nag-cls-rk4-K12-seed0", "--profile", "paper",
         "--device", "cpu", "--data-root", str(tmp_path / "data"), "--results-dir",
         str(tmp_path / "results")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    assert proc.returncode == 2 and one_paragraph(proc.stderr), proc.stderr
    assert str(images) in proc.stderr and "4,720 bytes" in proc.stderr
    assert "is invalid for input of size" not in proc.stderr
