"""The command line and the experiment registry: help, listing, bad input, exit codes, configs."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest
import torch

from deqode import chapters as experiments
from deqode import cli, models
from deqode.chapters import homoode as homoode_experiments
from deqode.choices import UnknownChoiceError


def train_parser() -> argparse.ArgumentParser:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["train"]


def test_help_documents_every_option(capsys):
    parser = train_parser()
    for action in parser._actions:
        assert action.help and action.help != argparse.SUPPRESS, action.dest
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for action in parser._actions:
        for option in action.option_strings:
            assert option in text
    assert "torchrun --nproc_per_node" in text and "global batch" in text


def test_list_shows_experiments_models_and_datasets(capsys):
    assert cli.main(["list"]) == 0
    text = capsys.readouterr().out
    for name in ("homoode-digits", "deq-digits", "homoode-cifar10", "node-tiny", "anode-cifar100"):
        assert name in text
    assert "tiny-imagenet" in text and "digits" in text


@pytest.mark.parametrize(("argv", "message"), [
    (["train", "nope"], "unknown experiment 'nope' for profile 'smoke'; valid choices: "
     "'anode-digits', "),
    (["train", "nope"], "'homoode-digits', "),
    (["train", "homoode-cifar10"], "exists in profile 'paper'"),
    (["train", "homoode-digits", "--profile", "full"], "valid choices: 'smoke', 'cpu', 'paper'"),
    (["train", "homoode-digits", "--device", "tpu"], "valid choices: 'auto', 'cpu', 'cuda'"),
    (["list", "--profile", "full"], "valid choices: 'smoke', 'cpu', 'paper'"),
])
def test_bad_input_exits_2_naming_the_valid_choices(capsys, argv, message):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_missing_dataset_exits_2_saying_how_to_get_it(capsys, tmp_path):
    argv = ["train", "homoode-cifar10", "--profile", "paper", "--data-root", str(tmp_path),
            "--results-dir", str(tmp_path / "results")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "dataset 'cifar10' is missing" in err and str(tmp_path / "cifar10") in err
    assert "--download" in err
    assert not (tmp_path / "results").exists()  # nothing written for a run that never started


def test_failed_run_exits_1_with_the_reason(capsys, tmp_path, monkeypatch):
    from test_train import config

    failing = config(epochs=2, model_kwargs={"fail_at": 3})
    monkeypatch.setattr(experiments, "get", lambda name, profile: failing)
    argv = ["train", "tiny", "--device", "cpu", "--results-dir", str(tmp_path), "--quiet"]
    assert cli.main(argv) == 1
    assert "failed: epoch 1, iteration 2: non-finite logits" in capsys.readouterr().err
    status = json.loads((tmp_path / "smoke" / "tiny" / "status.json").read_text())
    assert status["state"] == "failed"


def test_train_stop_and_resume_through_the_cli(capsys, tmp_path):
    common = ["train", "homoode-digits", "--device", "cpu", "--results-dir", str(tmp_path),
              "--no-progress", "--epochs", "2"]
    assert cli.main([*common, "--max-epochs", "1"]) == 0
    out = tmp_path / "smoke" / "homoode-digits"
    assert json.loads((out / "status.json").read_text())["state"] == "stopped"
    assert cli.main([*common, "--resume"]) == 0
    record = json.loads((out / "metrics.json").read_text())
    assert record["summary"]["state"] == "completed" and len(record["history"]) == 2
    assert record["summary"]["epochs_planned"] == 2
    assert "completed: best test acc" in capsys.readouterr().out
    assert cli.main([*common[:-1], "3", "--resume"]) == 2  # a changed config cannot resume
    assert "configuration changed in ['epochs']" in capsys.readouterr().err


def test_registry_names_and_errors():
    assert {"homoode-digits", "node-digits", "anode-digits", "deq-digits"} <= set(
        experiments.experiment_names("smoke"))
    paper = set(experiments.experiment_names("paper"))
    for model in ("homoode", "node", "anode", "deq"):
        assert {f"{model}-cifar10", f"{model}-cifar100", f"{model}-tiny"} <= paper
    with pytest.raises(UnknownChoiceError, match="valid choices: 'smoke', 'cpu', 'paper'"):
        experiments.get("homoode-digits", "full")
    assert {"cifar10", "cifar100", "tiny-imagenet"} <= set(experiments.required_datasets("paper"))
    assert "digits" in experiments.required_datasets("smoke")


@pytest.mark.parametrize(("key", "dataset", "seed", "lr_init", "freq", "grad_mode"), [
    ("cifar10", "cifar10", 0, 0.02, 20, "backprop"),
    ("cifar100", "cifar100", 0, 0.01, 5, "frozen_adjoint"),
    ("tiny", "tiny-imagenet", 1, 0.05, 20, "frozen_adjoint"),
])
def test_paper_configs_are_the_released_settings(key, dataset, seed, lr_init, freq, grad_mode):
    """Spec §2.4, §3.2, §3.4, §3.5: one test per released script."""
    cfg = experiments.get(f"homoode-{key}", "paper")
    assert (cfg.dataset, cfg.seed, cfg.epochs) == (dataset, seed, 300)
    assert (cfg.batch_size, cfg.test_batch_size, cfg.drop_last) == (64, 400, True)
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay) == ("adam", 1e-3, 0.0)
    assert (cfg.schedule, cfg.eta_min) == ("cosine", 1e-6)
    assert (cfg.flood_level, cfg.entropy_weight) == (0.0, 0.0)
    ip = cfg.init_point
    assert (ip.lr, ip.freq, ip.scheduler_divisor, ip.eta_min) == (lr_init, freq, 1, 1e-6)
    model = models.build(cfg.model, **cfg.model_kwargs)
    assert (model.method, model.rtol, model.atol) == ("dopri5", 1e-3, 1e-3)
    assert (model.grad_mode, model.lr_init, model.freq) == (grad_mode, lr_init, freq)
    noinit = experiments.get(f"homoode-noinit-{key}", "paper")
    assert models.build(noinit.model, **noinit.model_kwargs).init_parameters() == []
    for baseline in ("node", "anode", "deq"):
        base = experiments.get(f"{baseline}-{key}", "paper")
        assert (base.dataset, base.seed, base.epochs, base.lr) == (dataset, seed, 300, 1e-3)
    rows = homoode_experiments.hyperparameters("paper")
    assert [r["grad_mode"] for r in rows] == ["backprop", "frozen_adjoint", "frozen_adjoint"]


@pytest.mark.slow
def test_smoke_command_reaches_90_percent_on_digits(tmp_path):
    """The done-when check of issue 3, run as the real command (about 30-50 s on 2 idle cores)."""
    cmd = [sys.executable, "-m", "deqode", "train", "homoode-digits", "--profile", "smoke",
           "--results-dir", str(tmp_path), "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    record = json.loads((tmp_path / "smoke" / "homoode-digits" / "metrics.json").read_text())
    summary = record["summary"]
    assert summary["state"] == "completed" and summary["last_test_acc"] > 0.9
    assert summary["best_test_acc"] >= summary["last_test_acc"]
    assert summary["num_init_parameters"] == 3 * 8
    ckpt = torch.load(tmp_path / "smoke" / "homoode-digits" / "checkpoint.pt",
                      map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 15 and ckpt["init_optimizer"] is not None
