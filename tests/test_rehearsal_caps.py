"""The chapters' evaluations outside deqode.train.fit honour the rehearsal batch cap
(DEQODE_REHEARSAL_BATCH): probes, dopri5 re-evaluation and image predictions see at most B items
per batch, and a few batches; without a rehearsal they see everything."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from deqode import rehearsal


def _rehearse(monkeypatch, rehearsing: bool) -> None:
    """A rehearsal of 2 steps with batches of at most 3, or no rehearsal."""
    if rehearsing:
        monkeypatch.setenv(rehearsal.ENV, "2")
        monkeypatch.setenv(rehearsal.BATCH_ENV, "3")
    else:
        monkeypatch.delenv(rehearsal.ENV, raising=False)
        monkeypatch.delenv(rehearsal.BATCH_ENV, raising=False)


@pytest.fixture
def capped(monkeypatch):
    _rehearse(monkeypatch, True)


@pytest.fixture
def uncapped(monkeypatch):
    _rehearse(monkeypatch, False)


class Recorder(nn.Module):
    """A linear model that records the batch sizes it sees and reports solver statistics as the
    continuous DEQ does."""

    def __init__(self, inputs: int = 4, outputs: int = 3) -> None:
        super().__init__()
        self.linear, self.seen = nn.Linear(inputs, outputs), []
        self.abstol = self.reltol = 1e-3
        self.nfe_forward, self.last_backward = 5, {"v_norm": 1.0, "iterations": 2}
        info = SimpleNamespace(reason="converged", final_residual=0.0, iterations=3, t=1.0,
                               rejected=0, converged=True)
        self.last_stats = {"solver_info": info}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(len(x))
        return self.linear(x.flatten(1))


def _batch(n: int = 10):
    return torch.randn(n, 4), torch.randint(0, 3, (n,))


def test_continuous_deq_probes_use_the_first_items_when_rehearsing(capped):
    from deqode.chapters.continuous_deq import probes

    model, (x, y) = Recorder(), _batch(10)
    probes.backward_probe(model, x, y)
    probes.tolerance_probe(model, x, y, {"a": (1e-6, 1e-3), "b": (0.05, 0.05)})
    assert model.seen == [3, 3, 3]
    model.seen.clear()
    assert probes.solve_outcomes(model, x, batch_size=4)["met tol"] == "2/2"
    assert model.seen == [3, 3]  # batches of at most 3, at most 2 of them


def test_continuous_deq_probes_use_everything_otherwise(uncapped):
    from deqode.chapters.continuous_deq import probes

    model, (x, y) = Recorder(), _batch(10)
    probes.backward_probe(model, x, y)
    probes.tolerance_probe(model, x, y, {"a": (1e-6, 1e-3)})
    probes.solve_outcomes(model, x, batch_size=4)
    assert model.seen == [10, 10, 4, 4, 2]


@pytest.mark.parametrize("rehearsing", [True, False])
def test_nag_dopri5_evaluation_batches(monkeypatch, rehearsing):
    from deqode.chapters.nag.classification import evaluate_classifier

    _rehearse(monkeypatch, rehearsing)
    model = Recorder()
    evaluate_classifier(model, TensorDataset(*_batch(1200)), batch_size=500)
    assert model.seen == ([3, 3] if rehearsing else [500, 500, 200])


@pytest.mark.parametrize("rehearsing", [True, False])
def test_sim_regression_predicts_the_first_grid_rows_when_rehearsing(monkeypatch, rehearsing):
    from deqode.chapters.sim.loops import regression_record
    from deqode.data.images import PixelRegressionDataset

    _rehearse(monkeypatch, rehearsing)
    image = np.random.default_rng(0).random((16, 16, 3))
    test = PixelRegressionDataset(image, "test")  # an 8 x 8 grid
    history = [{"train_psnr": 10.0, "test_psnr": 9.0, "steps": [{"time": 0.1}]}]
    model = Recorder(inputs=2)
    record = regression_record(SimpleNamespace(history=history), model, test, params=9)
    rows = 3 if rehearsing else 8
    assert model.seen == [rows * 8]
    assert record["prediction"].shape == record["target"].shape == (rows, 8, 3)
    expected = test.targets.reshape(8, 8, 3)[:rows]
    assert torch.equal(record["target"], expected)
