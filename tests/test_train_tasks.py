"""The training loop's pieces: tasks (loss, checks, metrics), the separate-update hook, and
checkpoint/resume through :func:`deqode.train.fit` for every task."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deqode.choices import UnknownChoiceError
from deqode.metrics import Accumulator
from deqode.models import build
from deqode.train import TASKS, SeparateUpdate, TrainConfig
from deqode.train.hooks import separate_update
from deqode.train.tasks import Classification, make_task


class Flood:
    flood_level, entropy_weight, max_abs_logit = 0.0, 0.0, 1e6


def test_classification_loss_and_metrics_on_a_tiny_model():
    torch.manual_seed(0)
    model, x, y = nn.Linear(3, 4), torch.randn(6, 3), torch.tensor([0, 1, 2, 3, 0, 1])
    task = Classification()
    loss, logits = task.loss(model, (x, y), Flood())
    assert torch.equal(loss, F.cross_entropy(model(x), y))
    assert task.check(loss, logits, Flood()) is None
    flooded = type("C", (Flood,), {"flood_level": 5.0, "entropy_weight": 0.5})()
    loss5, _ = task.loss(model, (x, y), flooded)
    log_p = F.log_softmax(logits, 1)
    entropy = (log_p.exp() * log_p).sum(1).mean()
    expected = (F.cross_entropy(logits, y) - 5).abs() + 5 + 0.5 * entropy
    assert torch.allclose(loss5, expected)
    acc = Accumulator()
    task.train_metrics(acc, (x, y), logits, float(loss.detach()))
    assert acc.mean("train_acc") == pytest.approx(float((logits.argmax(1) == y).float().mean()))
    with torch.no_grad():
        task.evaluate(model, (x, y), acc)
    assert acc.mean("test_loss") == pytest.approx(float(loss.detach()))
    assert task.check_evaluation({"test_loss": float("nan")}).startswith("non-finite test loss")
    bad = logits.detach() * float("nan")
    assert "non-finite logits" in task.check(loss, bad, Flood())
    assert "exploding state" in task.check(loss, logits.detach() * 1e9, Flood())
    summary = task.summary({"test_acc": 0.5, "epoch": 2}, {"test_acc": 0.4, "train_loss": 1.0})
    assert summary == {"best_test_acc": 0.5, "best_epoch": 2, "last_test_acc": 0.4,
                       "last_train_loss": 1.0}


def test_unflooded_loss_is_abs_ce_bit_for_bit_also_at_zero_loss():
    """Without flooding the loss is CE itself unless CE = 0, where |CE| (the released
    formula) zeroes the gradient; values and gradients equal |CE|'s bit for bit."""
    task, y = Classification(), torch.tensor([0, 1, 2])
    x = torch.eye(3)
    for scale in (1.0, 20.0):  # CE > 0; CE = 0 in float32 (e^-20 is lost next to 1)
        weight = (scale * torch.eye(3)).requires_grad_()
        reference = weight.detach().clone().requires_grad_()
        plain = weight.detach().clone().requires_grad_()
        loss, _ = task.loss(lambda inputs, w=weight: inputs @ w, (x, y), Flood())
        expected = F.cross_entropy(x @ reference, y).abs()
        loss.backward()
        expected.backward()
        F.cross_entropy(x @ plain, y).backward()
        assert torch.equal(loss, expected) and torch.equal(weight.grad, reference.grad)
        assert (loss.item() == 0.0) == (scale > 1.0)
        assert (weight.grad.abs().sum() == 0) == (scale > 1.0)
        assert plain.grad.abs().sum() > 0  # plain CE keeps a gradient at CE = 0; |CE| does not


def test_logit_check_reads_the_largest_magnitude_of_either_sign():
    task, limit = Classification(), type("C", (Flood,), {"max_abs_logit": 10.0})()
    for logits, reported in ((torch.tensor([[-30.0, 2.0]]), "3.000e+01"),
                             (torch.tensor([[-3.0, 20.0]]), "2.000e+01")):
        assert f"max |logit| = {reported} > max_abs_logit = 10" in task.check(0.5, logits, limit)
    assert task.check(0.5, torch.tensor([[-9.0, 9.0]]), limit) is None
    for bad in (float("inf"), -float("inf"), float("nan")):
        assert "non-finite logits" in task.check(0.5, torch.tensor([[bad, 1.0]]), limit)
    assert task.check(float("nan"), torch.tensor([[1.0, 2.0]]), limit) == "non-finite loss (nan)"


def test_task_names_are_checked():
    assert set(TASKS) >= {"classification"}
    with pytest.raises(UnknownChoiceError, match="valid choices"):
        make_task("nope")
    with pytest.raises(UnknownChoiceError, match="task"):
        TrainConfig(name="x", model="homoode", dataset="digits", task="nope")
    with pytest.raises(ValueError, match="density_task"):
        TrainConfig(name="x", model="homoode", dataset="digits", task="density")
    # a default task is left out of the recorded configuration (earlier runs still match)
    assert "task" not in TrainConfig(name="x", model="homoode", dataset="digits").to_dict()


def test_homoode_provides_its_shared_initial_point_update():
    model = build("homoode-digits")
    update = separate_update(model, None, None)
    assert isinstance(update, SeparateUpdate) and update.name == "init"
    assert update.parameters == model.init_parameters()
    assert (update.lr, update.every) == (model.lr_init, model.freq)
    assert separate_update(model, 0.5, 7).lr == 0.5 and separate_update(model, 0.5, 7).every == 7
    model.train()
    model(torch.randn(2, 1, 8, 8))
    assert torch.equal(update.loss(), model.init_loss())
    without = build("homoode-digits", use_init_layer=False)
    assert separate_update(without, None, None) is None
    with pytest.raises(ValueError, match="every >= 1"):
        SeparateUpdate("init", [], lambda: torch.zeros(()), 0.1, 0)


def _tiny_classifier() -> nn.Module:
    torch.manual_seed(1)  # seed=None runs: the caller seeds the model it builds
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).double()


def _blobs(split: str):
    gen = torch.Generator().manual_seed(0 if split == "train" else 1)
    y = torch.arange(3).repeat_interleave(30)
    x = torch.eye(3, 4, dtype=torch.float64)[y] * 3 + torch.randn(90, 4, generator=gen,
                                                                  dtype=torch.float64)
    return torch.utils.data.TensorDataset(x, y)


def _steps_without_time(history):
    return [[{k: v for k, v in s.items() if k not in ("time", "cpu_time")} for s in h["steps"]]
            for h in history]


def _deterministic(history):
    skip = ("time_", "epoch_time_s", "saved_tensor_peak_mb", "cuda_peak_mb", "steps")
    return [{k: v for k, v in h.items() if not k.startswith(skip)} for h in history]


@pytest.mark.parametrize("schedule", ["steplr", "1cycle"])
def test_shuffled_order_schedules_and_resume(tmp_path, schedule):
    from deqode.train import fit

    cfg = TrainConfig(name="shuffled", model=_tiny_classifier, dataset=_blobs, epochs=4,
                      batch_size=16, drop_last=False, lr=0.05, dtype="float64", seed=None,
                      schedule=schedule, step_size=1, gamma=0.5, data_order="shuffle",
                      shuffle_seed=3, record_steps=True)
    kwargs = dict(profile="smoke", device="cpu", quiet=True, progress=False)
    whole = fit(cfg, results_dir=tmp_path / "a", **kwargs)
    # 90 samples in batches of 16, the last one short: 6 steps per epoch, each recorded
    assert [len(h["steps"]) for h in whole.history] == [6] * 4
    lrs = [h["lr"] for h in whole.history]
    if schedule == "steplr":  # x gamma after every epoch
        assert lrs == pytest.approx([0.025, 0.0125, 0.00625, 0.003125])
    first = fit(cfg, results_dir=tmp_path / "b", max_epochs=2, **kwargs)
    assert first.state == "stopped" and len(first.history) == 2
    resumed = fit(cfg, results_dir=tmp_path / "b", resume=True, **kwargs)
    assert _deterministic(resumed.history) == _deterministic(whole.history)
    assert _steps_without_time(resumed.history) == _steps_without_time(whole.history)
    for a, b in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)
    read_back = fit(cfg, results_dir=tmp_path / "b", resume=True, **kwargs)  # nothing to train
    assert read_back.history == resumed.history


def test_on_epoch_stops_a_run_early(tmp_path):
    from deqode.train import fit

    cfg = TrainConfig(name="early", model=_tiny_classifier, dataset=_blobs, epochs=5,
                      batch_size=30, dtype="float64", seed=None, data_order="shuffle")
    seen = []
    result = fit(cfg, profile="smoke", device="cpu", results_dir=tmp_path, quiet=True,
                 progress=False, on_epoch=lambda r: seen.append(r["epoch"]) or r["epoch"] == 2)
    assert seen == [1, 2] and result.state == "stopped" and "on_epoch" in result.reason
    with pytest.raises(ValueError, match="seed=None"):
        TrainConfig(name="x", model=_tiny_classifier, dataset=_blobs, seed=None)


class _Pairs(torch.utils.data.Dataset):
    """Tensors with ``inputs`` / ``targets`` (as the SIM data sets), for the in-order orders."""

    def __init__(self, inputs, targets):
        self.inputs, self.targets = inputs, targets

    def __len__(self):
        return len(self.inputs)

    def __getitem__(self, i):
        return self.inputs[i], self.targets[i]


def _sequence_data(split: str):
    gen = torch.Generator().manual_seed(0 if split == "train" else 1)
    x = torch.randn(24, 2, 5, generator=gen, dtype=torch.float64)
    return _Pairs(x, (x[:, 0] > 0).long())  # (N, T) labels from (N, C, T) inputs


class _PerPosition(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.lin = nn.Linear(2, 2).double()

    def forward(self, x):
        return self.lin(x.transpose(1, 2))  # (N, T, K)


def _regression_data(split: str):
    gen = torch.Generator().manual_seed(0 if split == "train" else 1)
    x = torch.rand(40, 2, generator=gen, dtype=torch.float64)
    return _Pairs(x, torch.sin(3 * x).mul(0.5).add(0.5))


def _regressor():
    torch.manual_seed(3)
    return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 2)).double()


def test_sequence_and_regression_tasks_on_tiny_models():
    from deqode.train.tasks import Regression, Sequence, psnr

    x, y = _sequence_data("train")[0:4]
    model, task = _PerPosition(), Sequence()
    loss, logits = task.loss(model, (x, y), Flood())
    assert logits.shape == (20, 2)
    assert torch.equal(loss, F.cross_entropy(model(x).flatten(0, 1), y.flatten()))
    assert task.step_record((x, y), logits)["acc"] == pytest.approx(
        100 * float((logits.argmax(1) == y.flatten()).double().mean()))
    acc = Accumulator()
    with torch.no_grad():
        task.evaluate(model, (x[:2], y[:2]), acc)
        task.evaluate(model, (x[2:], y[2:]), acc)
    halves = [float(F.cross_entropy(model(x[s]).flatten(0, 1), y[s].flatten()).detach())
              for s in (slice(0, 2), slice(2, 4))]
    assert acc.mean("test_loss") == pytest.approx(sum(halves) / 2)  # mean of batch means
    assert 0 <= acc.mean("test_acc") <= 100
    x, y = _regression_data("train")[0:8]
    reg, task = _regressor(), Regression()
    loss, _ = task.loss(reg, (x, y), Flood())
    assert torch.equal(loss, F.mse_loss(reg(x), y))
    assert task.derived({"train_loss": 0.01, "test_loss": 0.001}) == {
        "train_psnr": pytest.approx(20.0), "test_psnr": pytest.approx(30.0)}
    assert psnr(0.0) == float("inf")


TASK_RUNS = {
    "classification": dict(model=_tiny_classifier, dataset=_blobs, batch_size=16,
                           data_order="shuffle"),
    "sequence": dict(model=_PerPosition, dataset=_sequence_data, batch_size=5,
                     data_order="in_order", test_batch_size=10),
    "regression": dict(model=_regressor, dataset=_regression_data, batch_size=1,
                       data_order="full_batch", test_batch_size=40, checkpoint_every=2),
}


@pytest.mark.parametrize("task", sorted(TASK_RUNS))
def test_every_task_resumes_to_the_uninterrupted_numbers(tmp_path, task):
    from deqode.train import fit

    cfg = TrainConfig(name=task, task=task, epochs=4, lr=0.05, dtype="float64", seed=None,
                      drop_last=False, schedule="constant", record_steps=True, **TASK_RUNS[task])
    kwargs = dict(profile="smoke", device="cpu", quiet=True, progress=False)
    whole = fit(cfg, results_dir=tmp_path / "a", **kwargs)
    assert whole.state == "completed" and len(whole.history) == 4
    metric = make_task(task).selection
    assert whole.summary[f"best_{metric}"] is not None
    fit(cfg, results_dir=tmp_path / "b", max_epochs=2, **kwargs)
    resumed = fit(cfg, results_dir=tmp_path / "b", resume=True, **kwargs)
    assert _deterministic(resumed.history) == _deterministic(whole.history)
    assert _steps_without_time(resumed.history) == _steps_without_time(whole.history)
    for a, b in zip(whole.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(a, b)


class _Gaussian(nn.Module):
    """``log p(x)`` of N(mu, I) and a noisy 'negative ELBO' drawing from a generator."""

    def __init__(self):
        super().__init__()
        self.mu = nn.Parameter(torch.zeros(2, dtype=torch.float64))
        self.nfe_forward = self.nfe_backward = 0

    def log_prob(self, x):
        return -0.5 * (x - self.mu).square().sum(1)

    def negative_elbo(self, observed, times, generator):
        noise = torch.randn(2, generator=generator, dtype=torch.float64)
        return (observed - self.mu - 0.1 * noise).square().mean() * times.mean()


def _stream_run(tmp_path, kind, **kwargs):
    import numpy as np

    from deqode.train import fit
    from deqode.train.batches import Stream
    from deqode.train.tasks import density_task, elbo_task

    model = _Gaussian()
    held_out = torch.full((5, 2), 1.0, dtype=torch.float64)
    if kind == "density":
        task = density_task(lambda: {"nll": -model.log_prob(held_out).mean().item()})
        stream = Stream(lambda rng: torch.from_numpy(rng.normal(1.0, 1.0, (4, 2))),
                        np.random.default_rng(0))
    else:
        batch = (torch.ones(3, 2, dtype=torch.float64), torch.ones(3, dtype=torch.float64))
        task = elbo_task(lambda: {"neg_elbo": (model.mu - 1).square().sum().item()},
                         torch.Generator().manual_seed(5))
        stream = Stream(lambda _: batch)
    cfg = TrainConfig(name=kind, model=lambda: model, task=task, data_order="stream",
                      dataset=lambda split: stream, iterations=7, batch_size=3, epochs=3,
                      lr=0.1, schedule="cosine", eta_min=0.0, seed=None, dtype="float64",
                      record_steps=True, evaluate_at_start=True)
    return fit(cfg, profile="smoke", device="cpu", results_dir=tmp_path, quiet=True,
               progress=False, **kwargs)


@pytest.mark.parametrize("kind", ["density", "elbo"])
def test_stream_tasks_evaluate_at_start_and_resume_exactly(tmp_path, kind):
    from deqode.train import load_result

    whole = _stream_run(tmp_path / "a", kind)
    assert [len(h["steps"]) for h in whole.history] == [3, 3, 1]  # 7 iterations in blocks of 3
    metric = "nll" if kind == "density" else "neg_elbo"
    start = load_result(whole.out_dir)["start"]
    assert whole.history[-1][metric] < start[metric]
    assert whole.summary[f"best_{metric}"] == min(h[metric] for h in whole.history)
    assert whole.history[-1]["lr"] == pytest.approx(0.0, abs=1e-12)  # cosine over 7 steps
    _stream_run(tmp_path / "b", kind, max_epochs=1)
    resumed = _stream_run(tmp_path / "b", kind, resume=True)
    assert _deterministic(resumed.history) == _deterministic(whole.history)
    assert _steps_without_time(resumed.history) == _steps_without_time(whole.history)
    assert load_result(resumed.out_dir)["start"] == start


def test_probe_trainer_times_the_step_training_runs():
    from deqode.metrics import PhaseTimer
    from deqode.train.loop import probe_trainer

    x, y = _blobs("train")[0:12]
    model, reference = _tiny_classifier(), _tiny_classifier()
    trainer = probe_trainer(model, (x, y), lr=0.01)
    acc, timer = Accumulator(), PhaseTimer()
    trainer.train_step((x, y), acc, timer)
    assert set(timer.seconds) == {"forward", "backward", "step"}
    optimizer = torch.optim.Adam(reference.parameters(), lr=0.01)
    F.cross_entropy(reference(x), y).backward()
    optimizer.step()
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(a, b)
