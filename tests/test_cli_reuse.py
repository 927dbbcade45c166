"""A run finished through the CLI is read by its notebook's run function, not retrained; an
unfinished one is resumed (the one rule of :func:`deqode.train.fit_or_reuse`)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from deqode import cli
from deqode.chapters import nag
from deqode.chapters import sim as exp


def _files(run_dir):
    """What must not change when a finished run is read: the checkpoints' mtimes (the one it
    replaced is kept beside it) and the bytes of its records."""
    return {**{name: (run_dir / name).stat().st_mtime_ns if (run_dir / name).exists() else None
               for name in ("checkpoint.pt", "checkpoint.previous.pt", "checkpoint.shelved.pt")},
            **{name: (run_dir / name).read_bytes()
               for name in ("metrics.json", "status.json", "config.json")}}


def _cli_train(name, profile, results_dir, *extra):
    code = cli.main(["train", name, "--profile", profile, "--results-dir", str(results_dir),
                     "--quiet", *extra])
    assert code == 0
    return results_dir / profile / name


@pytest.fixture
def no_training(monkeypatch):
    def refuse(*args, **kwargs):
        pytest.fail("a finished run was retrained")

    def forbid():
        monkeypatch.setattr("deqode.train.loop.Trainer.train_step", refuse)

    return forbid


def test_sim_copy_memory_run_finished_by_the_cli_is_read_not_retrained(tmp_path, no_training):
    run_dir = _cli_train("sim-t3-single-tier-seed0", "smoke", tmp_path)
    before = _files(run_dir)
    no_training()
    setup = exp.copy_memory_setup("smoke")
    setup = dataclasses.replace(setup, models=setup.models[:1])  # the single-tier SIM only
    (record,) = exp.run_copy_memory(setup, results_dir=tmp_path).values()
    assert record["cached"] and _files(run_dir) == before
    metrics = json.loads(before["metrics.json"])
    assert record["test_loss"] == metrics["history"][-1]["test_loss"]
    assert len(record["steps"]) == metrics["summary"]["iterations"] == 80


def test_sim_classification_run_finished_by_the_cli_is_read_not_retrained(tmp_path,
                                                                            no_training):
    run_dir = _cli_train("sim-t1-digits-single-tier-seed0", "smoke", tmp_path)
    before = _files(run_dir)
    no_training()
    setup = exp.classification_setup("smoke")
    setup = dataclasses.replace(setup, models={"digits": setup.models["digits"][:1]})
    (record,) = exp.run_classification(setup, "digits", results_dir=tmp_path).values()
    assert record["cached"] == 1 and _files(run_dir) == before
    assert record["accs"] == [json.loads(before["metrics.json"])["history"][-1]["test_acc"]]
    assert record["model"].koopman_matrix().shape[0] == record["model"].tier_dim


def test_nag_cnf_run_finished_by_the_cli_is_read_not_retrained(tmp_path, no_training):
    run_dir = _cli_train("nag-cnf-nesterov-K12", "smoke", tmp_path)
    before = _files(run_dir)
    no_training()
    setup = nag.cnf_setup("smoke")
    choice = next(c for c in nag.solver_choices(setup.solvers, 12, setup.beta)
                  if c.method == "nesterov")
    record = nag.train_cnf(setup, choice, seed=0, results_dir=tmp_path, panels=False)
    assert record["cached"] and _files(run_dir) == before
    history = json.loads(before["metrics.json"])["history"]
    assert record["nll_dopri5"] == history[-1]["nll_dopri5"]
    assert record["nfe_per_iteration"] == 12.0


def test_an_unfinished_cli_run_is_resumed_by_the_notebook(tmp_path):
    run_dir = _cli_train("nag-cnf-euler-K12", "smoke", tmp_path, "--max-epochs", "1")
    assert json.loads((run_dir / "status.json").read_text())["state"] == "stopped"
    first_epoch = json.loads((run_dir / "metrics.json").read_text())["history"][0]
    setup = nag.cnf_setup("smoke")
    choice = next(c for c in nag.solver_choices(setup.solvers, 12, setup.beta)
                  if c.method == "euler")
    record = nag.train_cnf(setup, choice, seed=0, results_dir=tmp_path, panels=False)
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "completed" and not record["cached"]
    # resumed, not restarted: the CLI's first epoch (and its timings) kept, no run set aside
    assert json.loads((run_dir / "metrics.json").read_text())["history"][0] == first_epoch
    assert not (run_dir / "checkpoint.shelved.pt").exists()
    assert record["history"][-1]["iteration"] == setup.iterations


def test_a_finished_run_of_other_settings_is_never_retrained_in_place(tmp_path, monkeypatch):
    from deqode import chapters
    from deqode.train import fit_or_reuse

    run_dir = _cli_train("nag-cnf-rk4-K12", "smoke", tmp_path)
    cpu_dir = tmp_path / "cpu" / "nag-cnf-rk4-K12"
    cpu_dir.parent.mkdir()
    run_dir.rename(cpu_dir)  # as if finished under the cpu profile
    before = _files(cpu_dir)
    changed = chapters.get("nag-cnf-rk4-K12", "smoke").replace(lr=0.5)
    with pytest.raises(ValueError, match=r"finished run of other settings.*\['lr'\]"):
        fit_or_reuse(changed, profile="cpu", results_dir=tmp_path)
    assert _files(cpu_dir) == before


def test_under_smoke_a_run_of_other_settings_is_replaced(tmp_path):
    from deqode import chapters
    from deqode.train import fit_or_reuse

    run_dir = _cli_train("nag-cnf-rk4-K12", "smoke", tmp_path)
    changed = chapters.get("nag-cnf-rk4-K12", "smoke").replace(lr=0.5)
    result = fit_or_reuse(changed, profile="smoke", results_dir=tmp_path, quiet=True)
    assert result.state == "completed" and not result.reused
    assert (run_dir / "checkpoint.previous.pt").is_file()
    assert json.loads((run_dir / "config.json").read_text())["config"]["lr"] == 0.5


def test_the_search_command_stores_what_the_notebook_reads(tmp_path, monkeypatch, capsys):
    from deqode.chapters.sim import search

    def one_trial(objective, task, variant, **kwargs):
        config = {"train_batch_size": 64, "epochs": 20, "max_lr": 0.01, "lr_mode": "step",
                  "steplr_step": 10, "seed": 3}
        return exp.SearchResult(config, 0.9, [exp.TrialRecord(config, [(1, 0.9)])],
                                kwargs["backend"], exp.SEARCH_SETTINGS[task])

    monkeypatch.setattr(search, "run_search", one_trial)
    argv = ["search", "classification", "--dataset", "digits", "--variant", "two-tier",
            "--profile", "smoke", "--backend", "random", "--results-dir", str(tmp_path)]
    assert cli.main(argv) == 0
    path = exp.search_path(tmp_path, "smoke", "classification", "digits", "two-tier")
    stored = exp.load_search(path)
    assert stored["best_config"]["seed"] == 3 and stored["backend"] == "random"
    assert str(path) in capsys.readouterr().out
    assert cli.main([*argv[:5], "rff-only", *argv[6:]]) == 2
    assert "valid choices: 'single-tier', 'two-tier'" in capsys.readouterr().err
