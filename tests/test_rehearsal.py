"""Rehearsal mode caps every training loop at a few steps."""

from __future__ import annotations

import pytest

from deqode import rehearsal


def test_off_by_default(monkeypatch):
    monkeypatch.delenv(rehearsal.ENV, raising=False)
    assert rehearsal.step_cap() is None and not rehearsal.active()
    assert list(rehearsal.capped(range(5))) == [0, 1, 2, 3, 4]
    assert rehearsal.epochs(7) == 7 and rehearsal.steps(300) == 300


def test_caps_loops_epochs_and_steps(monkeypatch):
    monkeypatch.setenv(rehearsal.ENV, "2")
    assert rehearsal.step_cap() == 2 and rehearsal.active()
    assert list(rehearsal.capped(range(5))) == [0, 1]
    assert rehearsal.epochs(7) == rehearsal.REHEARSAL_EPOCHS
    assert rehearsal.steps(300) == 2 and rehearsal.steps(1) == 1


@pytest.mark.parametrize("raw", ["0", "-3", "two"])
def test_bad_values_name_the_variable(monkeypatch, raw):
    monkeypatch.setenv(rehearsal.ENV, raw)
    with pytest.raises(ValueError, match=rehearsal.ENV):
        rehearsal.step_cap()


def test_fit_stops_after_the_capped_steps(monkeypatch, tmp_path):
    from test_train import config, run

    monkeypatch.setenv(rehearsal.ENV, "2")
    result = run(tmp_path, config(epochs=3))  # 240 points, batch 32: 8 steps per epoch
    assert len(result.history) == rehearsal.REHEARSAL_EPOCHS
    assert result.history[-1]["iterations"] == 2
    assert result.state == "stopped"


def test_batch_cap_needs_the_step_cap_and_caps_fit_batches(monkeypatch, tmp_path):
    from test_train import config, run

    monkeypatch.delenv(rehearsal.ENV, raising=False)
    monkeypatch.setenv(rehearsal.BATCH_ENV, "4")
    with pytest.raises(ValueError, match=rehearsal.ENV):
        rehearsal.batch_size(32)
    monkeypatch.setenv(rehearsal.ENV, "2")
    assert rehearsal.batch_size(32) == 4 and rehearsal.batch_size(3) == 3
    assert rehearsal.loader_workers(8) == 1 and rehearsal.loader_workers(0) == 0
    result = run(tmp_path, config(epochs=3))  # 240 points, batch 32 -> 4: 60 steps per epoch
    assert result.summary["iterations_per_epoch"] == 60 and result.history[-1]["iterations"] == 2
    monkeypatch.delenv(rehearsal.BATCH_ENV)
    assert rehearsal.batch_cap() is None and rehearsal.batch_size(32) == 32
    assert rehearsal.loader_workers(8) == 8


def test_the_runner_trains_experiments_in_worker_processes(monkeypatch, tmp_path):
    from deqode import rehearse

    monkeypatch.setenv(rehearsal.ENV, "1")
    outcomes = rehearse.run_experiments(["homoode-digits", "no-such-experiment"], "smoke",
                                        tmp_path / "results", tmp_path / "data", workers=1)
    by_name = {o.name: o for o in outcomes}
    assert by_name["homoode-digits"].ok
    assert not by_name["no-such-experiment"].ok
    assert "unknown experiment" in by_name["no-such-experiment"].detail
    assert (tmp_path / "results" / "smoke" / "homoode-digits" / "metrics.json").is_file()
    text = rehearse.timings_markdown("smoke", {"experiments": 1.0}, {"experiments": outcomes}, 1)
    assert "(1 failed)" in text and "homoode-digits" in text
