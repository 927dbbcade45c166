"""The training harness on a tiny model: records, resume, failures, the init-point optimiser."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from deqode import metrics
from deqode.choices import UnknownChoiceError
from deqode.errors import SolverFailure
from deqode.train import InitPointConfig, SeparateUpdate, TrainConfig, fit


def blobs(split: str) -> TensorDataset:
    """Three separable Gaussian blobs in 4-D; 240 training and 90 test points."""
    n = 80 if split == "train" else 30
    gen = torch.Generator().manual_seed(0 if split == "train" else 1)
    centres = 3.0 * torch.eye(3, 4, dtype=torch.float64)
    y = torch.arange(3).repeat_interleave(n)
    x = centres[y] + 0.7 * torch.randn(3 * n, 4, generator=gen, dtype=torch.float64)
    return TensorDataset(x, y)


class TinyNet(nn.Module):
    """A two-layer net with a HomoODE-style shared initial point and NFE counters.

    ``z0 = init_layer(1)`` enters the hidden state detached; ``init_loss`` pulls it towards the
    detached hidden state of the last training forward. ``fail_at`` makes the ``k``-th training
    forward produce NaN logits (``"nan"``), huge logits (``"explode"``) or raise SolverFailure.
    """

    def __init__(self, dropout: float = 0.0, fail_at: int | None = None, fail: str = "nan",
                 init_point: bool = True) -> None:
        super().__init__()
        self.body = nn.Linear(4, 16)
        self.head = nn.Linear(16, 3)
        self.drop = nn.Dropout(dropout)
        self.init_layer = nn.Linear(1, 16, bias=False) if init_point else None
        self.lr_init, self.freq = 0.05, 3
        self.fail_at, self.fail = fail_at, fail
        self.calls = 0
        self.nfe_forward = self.nfe_backward = 0
        self.init_loss_calls = 0

    def reset_nfe(self) -> None:
        self.nfe_forward = self.nfe_backward = 0

    def init_parameters(self):
        return [] if self.init_layer is None else list(self.init_layer.parameters())

    def z0(self, like: torch.Tensor) -> torch.Tensor:
        return self.init_layer(torch.ones(1, 1, dtype=like.dtype, device=like.device))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.body(x)
        if self.init_layer is not None:
            h = h + self.z0(x).detach()
        h = self.drop(torch.tanh(h))
        self.last_state = h
        self.nfe_forward += 2
        logits = self.head(h)
        if self.training:
            self.calls += 1
            if self.calls == self.fail_at:
                if self.fail == "solver":
                    raise SolverFailure("NFE cap 100 reached")
                logits = logits * (float("nan") if self.fail == "nan" else 1e9)
        return logits

    def separate_update(self, lr=None, freq=None):
        if self.init_layer is None:
            return None
        return SeparateUpdate("init", self.init_parameters(), self.init_loss,
                              self.lr_init if lr is None else lr,
                              self.freq if freq is None else freq)

    def init_loss(self) -> torch.Tensor:
        self.init_loss_calls += 1
        z0 = self.z0(self.last_state).expand_as(self.last_state)
        return F.smooth_l1_loss(z0, self.last_state.detach())


def config(**changes) -> TrainConfig:
    base = TrainConfig(name="tiny", model=TinyNet, dataset=blobs, epochs=2, batch_size=32,
                       test_batch_size=50, lr=0.02, dtype="float64")
    return base.replace(**changes)


TIMING = ("time_", "epoch_time_s", "saved_tensor_peak_mb", "cuda_peak_mb")


def deterministic(record: dict) -> dict:
    return {k: v for k, v in record.items() if not k.startswith(TIMING)}


def run(tmp_path, cfg: TrainConfig, **kwargs):
    return fit(cfg, profile="smoke", device="cpu", results_dir=tmp_path, progress=False,
               quiet=True, **kwargs)


def test_fit_learns_and_writes_atomic_records(tmp_path):
    result = run(tmp_path, config(epochs=3, measure_memory=True))
    assert result.state == "completed" and not result.failed
    out = tmp_path / "smoke" / "tiny"
    assert result.out_dir == out
    assert {p.name for p in out.iterdir()} == {"checkpoint.pt", "checkpoint.previous.pt",
                                              "config.json", "metrics.json", "packages.txt",
                                              "status.json"}
    status = json.loads((out / "status.json").read_text())
    assert status["state"] == "completed" and status["reason"] == ""
    record = json.loads((out / "metrics.json").read_text())
    summary, history = record["summary"], record["history"]
    assert len(history) == 3 and summary["last_test_acc"] == history[-1]["test_acc"]
    assert summary["best_test_acc"] == max(h["test_acc"] for h in history)
    assert history[summary["best_epoch"] - 1]["test_acc"] == summary["best_test_acc"]
    assert summary["last_test_acc"] > 0.9
    # 240 samples, batch 32, drop_last: 7 iterations per epoch; the model reports 2 NFE per batch
    assert summary["iterations_per_epoch"] == 7 and history[-1]["iterations"] == 21
    assert history[0]["nfe_forward"] == 2.0 and history[0]["test_nfe_forward"] == 2.0
    assert history[0]["saved_tensor_peak_mb"] > 0 and history[0]["cuda_peak_mb"] is None
    for phase in ("forward", "backward", "step", "eval"):
        assert history[0][f"time_{phase}_s"] >= history[0][f"time_{phase}_per_batch_s"] > 0
    assert summary["num_parameters"] == 4 * 16 + 16 + 16 * 3 + 3
    assert summary["num_init_parameters"] == 16
    checkpoint = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert checkpoint["epoch"] == 3 and checkpoint["init_optimizer"] is not None
    assert len(checkpoint["rng"]) == 1 and not list(out.glob(".*.tmp"))


def test_schedules_follow_the_released_code(tmp_path):
    cfg = config(epochs=2, init_point=InitPointConfig(freq=4, scheduler_divisor=1))
    result = run(tmp_path, cfg)
    ckpt = torch.load(result.out_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    total = 2 * 7
    # main schedule stepped every iteration with T_max = epochs * iterations: ends at eta_min
    assert ckpt["scheduler"]["last_epoch"] == total
    assert result.history[-1]["lr"] == pytest.approx(1e-6, abs=1e-12)
    # init optimiser steps at iterations 0, 4, 8, 12 and its cosine runs over T_max = total
    init_steps = len(range(0, total, 4))
    assert ckpt["init_scheduler"]["last_epoch"] == init_steps
    lr_init = 1e-6 + (0.05 - 1e-6) * (1 + math.cos(math.pi * init_steps / total)) / 2
    assert result.history[-1]["lr_init"] == pytest.approx(lr_init, rel=1e-9)
    assert ckpt["init_optimizer"]["param_groups"][0]["momentum"] == 0.0
    assert "init_layer.weight" in ckpt["model"]


def test_init_point_trained_only_by_its_own_optimiser(tmp_path):
    cfg = config(epochs=1, init_point=InitPointConfig(freq=10**6))  # steps at iteration 0 only
    torch.manual_seed(cfg.seed)
    initial = TinyNet().init_layer.weight.detach().clone()
    result = run(tmp_path, cfg)
    ckpt = torch.load(result.out_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    after = ckpt["model"]["init_layer.weight"]
    assert not torch.equal(after.float(), initial)  # one SGD step happened ...
    state = ckpt["init_optimizer"]["state"]
    assert ckpt["init_scheduler"]["last_epoch"] == 1 and all(
        s.get("momentum_buffer") is None for s in state.values())
    # ... and the main optimiser holds no state for the init parameters
    assert len(ckpt["optimizer"]["param_groups"][0]["params"]) == 4


def test_resume_gives_the_same_run_as_an_uninterrupted_one(tmp_path):
    cfg = config(epochs=3, model_kwargs={"dropout": 0.2})
    straight = run(tmp_path / "a", cfg)
    first = run(tmp_path / "b", cfg, max_epochs=1)
    assert first.state == "stopped" and "resume" in first.reason and len(first.history) == 1
    resumed = run(tmp_path / "b", cfg, resume=True)
    assert resumed.state == "completed"
    assert [deterministic(h) for h in resumed.history] == [
        deterministic(h) for h in straight.history]
    a = torch.load(straight.out_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    b = torch.load(resumed.out_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_resume_refuses_a_changed_configuration(tmp_path):
    run(tmp_path, config(epochs=2), max_epochs=1)
    with pytest.raises(ValueError, match=r"configuration changed in \['lr'\]"):
        run(tmp_path, config(epochs=2, lr=0.5), resume=True)
    # a fresh start (no resume) keeps the earlier checkpoint aside instead of deleting it
    fresh = run(tmp_path, config(epochs=1, lr=0.5))
    previous = torch.load(fresh.out_dir / "checkpoint.previous.pt", weights_only=True)
    assert previous["config"]["lr"] == 0.02 and fresh.state == "completed"



def test_resume_accepts_a_reworded_description_only(tmp_path):
    """A description documents a run; rewording it must not strand a finished checkpoint."""
    run(tmp_path, config(epochs=2, description="old words"), max_epochs=1)
    resumed = run(tmp_path, config(epochs=2, description="new words"), resume=True)
    assert resumed.state == "completed" and len(resumed.history) == 2
    with pytest.raises(ValueError, match=r"configuration changed in \['lr'\]"):
        run(tmp_path, config(epochs=2, lr=0.5, description="new words"), resume=True)

@pytest.mark.parametrize(("fail", "message"), [
    ("nan", "non-finite logits"),
    ("explode", "exploding state"),
    ("solver", "solver failure in forward: NFE cap 100 reached"),
])
def test_failure_stops_and_keeps_the_last_good_checkpoint(tmp_path, fail, message):
    cfg = config(epochs=3, model_kwargs={"fail_at": 10, "fail": fail})  # iteration 10: epoch 2
    good = run(tmp_path / "good", config(epochs=3), max_epochs=1)
    result = run(tmp_path / "bad", cfg)
    assert result.failed and message in result.reason
    assert result.reason.startswith("epoch 2, iteration 9:")
    status = json.loads((result.out_dir / "status.json").read_text())
    assert status["state"] == "failed" and message in status["reason"]
    summary = json.loads((result.out_dir / "metrics.json").read_text())["summary"]
    assert summary["state"] == "failed" and summary["epochs_completed"] == 1
    ckpt = torch.load(result.out_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    ref = torch.load(good.out_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == 1
    for key, value in ref["model"].items():  # the epoch-1 state, not the bad one
        assert torch.equal(value, ckpt["model"][key]), key


def test_bad_input_names_the_valid_choices(tmp_path):
    with pytest.raises(UnknownChoiceError, match="'adam', 'adamw', 'sgd'"):
        config(optimizer="lbfgs")
    with pytest.raises(UnknownChoiceError, match="'float32', 'float64'"):
        config(dtype="float16")
    with pytest.raises(UnknownChoiceError, match="'smoke', 'cpu', 'paper'"):
        fit(config(), profile="full", device="cpu", results_dir=tmp_path)
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        fit(config(), profile="smoke", device="tpu", results_dir=tmp_path)
    with pytest.raises(ValueError, match="epochs must be >= 1"):
        config(epochs=0)
    with pytest.raises(ValueError, match="no training iteration"):
        run(tmp_path, config(batch_size=1000))


def test_saved_tensor_meter_counts_what_autograd_keeps():
    torch.manual_seed(0)
    layer = nn.Linear(100, 100).double()
    x = torch.randn(64, 100, dtype=torch.float64)
    meter = metrics.SavedTensorMeter()
    with meter.track(exclude=layer.parameters()):
        y = x
        for _ in range(10):  # each tanh saves its output, which the next linear saves again
            y = torch.tanh(layer(y))
        live_before_backward = meter.live_bytes
        y.sum().backward()
    activation = 64 * 100 * 8
    assert live_before_backward == meter.peak_bytes == 11 * activation  # input + 10 outputs
    assert meter.live_bytes == 0  # backward released everything
    # a graph that is never back-propagated (a solver's error estimate, say) is released when
    # dropped, also when an op saved its own output (exp): the meter must not keep it alive
    with meter.track():
        unused = torch.exp(x.requires_grad_())
        assert meter.live_bytes == activation
    del unused
    assert meter.live_bytes == 0


def test_accumulator_means():
    acc = metrics.Accumulator()
    acc.add("loss", 3.0, 2)
    acc.add("loss", 5.0, 2)
    acc.add("nfe", 26)
    assert acc.mean("loss") == 2.0 and acc.mean("nfe") == 26.0 and acc.mean("absent") is None


@pytest.mark.parametrize("steps", [5, 64, 150])
def test_deferred_accuracy_equals_the_per_step_count(steps):
    """The training accuracy counted later in batches of steps (no per-step read) is the per-step
    count, across the batching bound; the sum is read by mean(), keys exist before it."""
    from deqode.train.tasks import correct, correct_percent

    gen = torch.Generator().manual_seed(steps)
    now, later = metrics.Accumulator(), metrics.Accumulator()
    for i in range(steps):
        logits = torch.randn(7 + i % 3, 10, generator=gen)
        labels = torch.randint(0, 10, (len(logits),), generator=gen)
        now.add("acc", float((logits.argmax(1) == labels).sum()), len(labels))
        now.add("pct", 100.0 * float((logits.argmax(1) == labels).sum()), len(labels))
        later.add_deferred("acc", correct, (logits.argmax(1), labels), len(labels))
        later.add_deferred("pct", correct_percent, (logits.argmax(1), labels), len(labels))
    assert set(later.sums) == {"acc", "pct"}
    waiting = sum(len(pending) for _, pending in later._deferred.values())
    assert waiting == 2 * steps if steps < later.DEFER_STEPS else waiting < 2 * later.DEFER_STEPS
    for name in ("acc", "pct"):
        assert later.mean(name) == now.mean(name) and later.counts[name] == now.counts[name]




def test_step_schedule_multiplies_lr_by_gamma_at_each_milestone(tmp_path):
    with pytest.raises(ValueError, match="milestones"):
        config(schedule="step")
    result = fit(config(schedule="step", milestones=(1, 2), gamma=0.5, epochs=3,
                        init_point=InitPointConfig(lr=0.05, freq=3)),
                 profile="smoke", device="cpu", results_dir=tmp_path, progress=False, quiet=True)
    lrs = [epoch["lr"] for epoch in result.history]
    assert lrs == pytest.approx([0.02 * 0.5, 0.02 * 0.25, 0.02 * 0.25])
