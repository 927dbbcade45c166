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
