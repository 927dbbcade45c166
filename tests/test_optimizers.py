"""Optimisers and step budgets of the training loop: AdamW (lr-scaled or not), SGD with Nesterov
momentum, and a run that ends after a number of optimiser steps, part-way through an epoch."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from deqode.train import TrainConfig, fit

SAMPLES, BATCH = 20, 4  # 5 optimiser steps per epoch, in dataset order


def points(split: str) -> TensorDataset:
    gen = torch.Generator().manual_seed(0 if split == "train" else 1)
    x = torch.randn(SAMPLES, 3, generator=gen, dtype=torch.float64)
    return TensorDataset(x, (x.sum(1) > 0).long())


def linear() -> nn.Module:
    return nn.Linear(3, 2)


def config(**changes) -> TrainConfig:
    base = TrainConfig(name="opt", model=linear, dataset=points, epochs=2, batch_size=BATCH,
                       test_batch_size=SAMPLES, lr=0.05, dtype="float64", data_order="in_order",
                       schedule="constant", measure_memory=False)
    return base.replace(**changes)


def train(tmp_path, cfg: TrainConfig, **kwargs):
    return fit(cfg, profile="smoke", device="cpu", results_dir=tmp_path, progress=False,
               quiet=True, **kwargs)


def final_weights(result) -> dict[str, torch.Tensor]:
    ckpt = torch.load(result.out_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    return ckpt["model"]


def by_hand(make_optimizer, steps: int, before_step=None) -> dict[str, torch.Tensor]:
    """The same model trained by a plain torch loop: batches in dataset order, ``steps`` in all."""
    torch.manual_seed(0)
    model = linear().double()
    optimizer = make_optimizer(model.parameters())
    x, y = points("train").tensors
    for step in range(steps):
        batch = slice((step % (SAMPLES // BATCH)) * BATCH, (step % (SAMPLES // BATCH) + 1) * BATCH)
        if before_step is not None:
            before_step(model, optimizer, step)
        optimizer.zero_grad()
        F.cross_entropy(model(x[batch]), y[batch]).backward()
        optimizer.step()
    return model.state_dict()


def assert_same(ours: dict, theirs: dict) -> None:
    assert ours.keys() == theirs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], theirs[key], rtol=1e-12, atol=1e-14)


def test_adamw_takes_torch_adamw_steps(tmp_path):
    result = train(tmp_path, config(optimizer="adamw", weight_decay=0.3))
    theirs = by_hand(lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.3), 10)
    assert_same(final_weights(result), theirs)
    # the decay matters: plain Adam (coupled L2) ends elsewhere
    adam = by_hand(lambda p: torch.optim.Adam(p, lr=0.05, weight_decay=0.3), 10)
    assert not torch.allclose(adam["weight"], theirs["weight"])


def test_adamw_decay_not_scaled_by_the_learning_rate(tmp_path):
    """``lr_scaled_decay=False``: Adam's step, then ``w -= weight_decay * w`` at every rate of a
    cosine schedule (Optimisers.jl's ``OptimiserChain(Adam(lr), WeightDecay(wd))``)."""
    wd, lr, steps = 0.01, 0.05, 10
    result = train(tmp_path, config(optimizer="adamw", weight_decay=wd, lr_scaled_decay=False,
                                    schedule="cosine", eta_min=1e-3))
    torch.manual_seed(0)
    model = linear().double()
    adam = torch.optim.Adam(model.parameters(), lr=lr)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR(adam, steps, eta_min=1e-3)
    x, y = points("train").tensors
    for step in range(steps):
        batch = slice((step % 5) * BATCH, (step % 5 + 1) * BATCH)
        before = [p.detach().clone() for p in model.parameters()]
        adam.zero_grad()
        F.cross_entropy(model(x[batch]), y[batch]).backward()
        adam.step()
        with torch.no_grad():
            for p, old in zip(model.parameters(), before, strict=True):
                p.sub_(wd * old)
        cosine.step()
    assert_same(final_weights(result), model.state_dict())


def test_sgd_nesterov_takes_torch_nesterov_steps(tmp_path):
    result = train(tmp_path, config(optimizer="sgd", momentum=0.9, nesterov=True,
                                    weight_decay=1e-3))
    theirs = by_hand(lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True,
                                               weight_decay=1e-3), 10)
    assert_same(final_weights(result), theirs)
    heavy_ball = by_hand(lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9,
                                                   weight_decay=1e-3), 10)
    assert not torch.allclose(heavy_ball["weight"], theirs["weight"])


@pytest.mark.parametrize(("changes", "message"), [
    ({"nesterov": True, "momentum": 0.9}, "nesterov=True needs optimizer='sgd'"),
    ({"optimizer": "sgd", "nesterov": True}, "momentum > 0"),
    ({"optimizer": "adam", "lr_scaled_decay": False}, "option of optimizer='adamw'"),
    ({"iterations": 7, "epochs": 3}, "leave epochs at 1"),
    ({"iterations": 0, "epochs": 1}, "iterations must be >= 1"),
    ({"optimizer": "lbfgs"}, "adamw"),
])
def test_bad_optimiser_options_say_what_is_wrong(changes, message):
    with pytest.raises(ValueError, match=message):
        config(**changes)


def test_a_step_budget_ends_mid_epoch_and_resumes(tmp_path):
    """7 steps of batch 4 over 20 samples: one whole epoch and 2 steps of the second; the
    cosine schedule spans the 7 steps; stopping after epoch 1 and resuming gives the same run."""
    cfg = config(epochs=1, iterations=7, schedule="cosine", eta_min=1e-3, optimizer="adamw",
                 weight_decay=0.1, data_order="sampler")
    straight = train(tmp_path / "a", cfg)
    assert straight.state == "completed"
    s = straight.summary
    assert (s["iterations"], s["epochs_completed"], s["epochs_planned"]) == (7, 2, 2)
    assert [h["iterations"] for h in straight.history] == [5, 7]
    assert straight.history[-1]["lr"] == pytest.approx(1e-3)  # cosine ends at eta_min
    lr_after_5 = 1e-3 + (0.05 - 1e-3) * (1 + math.cos(math.pi * 5 / 7)) / 2
    assert straight.history[0]["lr"] == pytest.approx(lr_after_5)
    first = train(tmp_path / "b", cfg, max_epochs=1)
    assert first.state == "stopped" and first.summary["iterations"] == 5
    resumed = train(tmp_path / "b", cfg, resume=True)
    assert resumed.state == "completed" and resumed.summary["iterations"] == 7
    assert_same(final_weights(resumed), final_weights(straight))
    recorded = torch.load(straight.out_dir / "checkpoint.pt", weights_only=True)["config"]
    assert recorded["iterations"] == 7 and recorded["optimizer"] == "adamw"


def test_step_milestones_count_optimiser_steps_under_a_budget(tmp_path):
    result = train(tmp_path, config(epochs=1, iterations=12, schedule="step",
                                    milestones=(3, 11), gamma=0.5))
    assert [h["lr"] for h in result.history] == pytest.approx([0.025, 0.025, 0.0125])
    assert result.summary["iterations"] == 12


def test_new_fields_at_their_defaults_leave_recorded_configs_unchanged():
    recorded = config().to_dict()
    assert not {"nesterov", "lr_scaled_decay", "iterations"} & recorded.keys()
    assert config(optimizer="sgd", momentum=0.9, nesterov=True).to_dict()["nesterov"] is True
