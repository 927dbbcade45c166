"""SIM's training: classification, image regression, copy memory (the official SIM code's
``train_imgcl.py``, ``train_imgreg.py`` and ``train_cpmem.py``).

SIM is trained like a feedforward model, plain Adam on an explicit network; the DEQ baselines run
through the same functions so that the cost comparison (C3) measures the models, not the
harnesses. Classification runs through the one training loop, :func:`deqode.train.fit` (monDEQ's
schedules and batch order are options of it). Every loop honours :mod:`deqode.rehearsal`
(epochs, batches and iterations capped when rehearsing).
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from deqode import rehearsal
from deqode.chapters.sim.configs import LR_MODES
from deqode.choices import check_choice
from deqode.models.sim import count_trainable
from deqode.train.schedules import one_cycle  # noqa: F401 (re-exported: deqode.chapters.sim)
from deqode.train.tasks import psnr  # noqa: F401 (re-exported: deqode.chapters.sim)

# --------------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------------


def final_run_seeds(best_seed: int, runs: int = 3) -> list[int]:
    """Seeds of the official final classification runs: ``seed += run_idx`` accumulates, giving
    offsets 0, 1, 3, 6, … (official code ``run_imgcl.py``)."""
    seeds, seed = [], best_seed
    for run_idx in range(runs):
        seed += run_idx
        seeds.append(seed)
    return seeds


# --------------------------------------------------------------------------------------------------
# T1: image classification
# --------------------------------------------------------------------------------------------------


def train_classifier(
    model: nn.Module,
    train_set: Dataset,
    test_set: Dataset,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    lr_mode: str = "step",
    steplr_step: int = 10,
    test_batch_size: int = 400,
    device: torch.device | str = "cpu",
    shuffle_seed: int = 0,
    report: Callable[[int, float], bool] | None = None,
    results_dir: str | os.PathLike | None = None,
    profile: str = "smoke",
    name: str = "sim-classifier",
) -> dict[str, Any]:
    """SIM's classification training (monDEQ's ``train.py``): Adam, cross-entropy, no
    augmentation, through :func:`deqode.train.fit` (the model as built by the caller, who seeds).

    ``lr_mode``: ``step`` (StepLR γ = 0.1 every ``steplr_step`` epochs, stepped per epoch),
    ``constant``, ``1cycle`` (:func:`one_cycle`, per batch). The loader shuffles with its own
    generator seeded ``shuffle_seed`` (identical batch order across runs, as the official code).
    After every epoch: test loss and accuracy (fraction); ``report(epoch, accuracy)`` (search)
    may stop training early by returning True. The run's records go to
    ``<results_dir>/<profile>/<name>/`` and a finished run there is read back, not retrained
    (``results_dir=None``: a temporary folder).

    Returns ``{"epochs": [...], "steps": [...], "test_loss", "test_acc", "params"}``; each step
    records wall time (forward + backward + update), forward and backward NFE.
    """
    from deqode.train import TrainConfig

    schedule = {"step": "steplr", "constant": "constant", "1cycle": "1cycle"}[
        check_choice("lr_mode", lr_mode, LR_MODES)]
    config = TrainConfig(
        name=name, model=lambda: model,
        dataset=lambda split: train_set if split == "train" else test_set,
        epochs=epochs, batch_size=batch_size, test_batch_size=test_batch_size, drop_last=False,
        lr=lr, schedule=schedule, step_size=steplr_step, gamma=0.1, seed=None,
        data_order="shuffle", shuffle_seed=shuffle_seed, record_steps=True, measure_memory=False)
    on_epoch = None if report is None else (lambda r: report(r["epoch"], r["test_acc"]))
    params = count_trainable(model)
    result = _fit_in(results_dir, config, profile, device, on_epoch)
    model.train()
    return classifier_record(result, params)


def classifier_record(result: Any, params: int) -> dict[str, Any]:
    """What :func:`train_classifier` returns, from a run's :class:`~deqode.train.RunResult`."""
    epochs = [{k: h[k] for k in ("epoch", "train_loss", "test_loss", "test_acc")}
              for h in result.history]
    steps = [{k: step[k] for k in ("time", "loss", "nfe_forward", "nfe_backward")}
             for h in result.history for step in h["steps"]]
    return {"epochs": epochs, "steps": steps, "params": params,
            "test_loss": epochs[-1]["test_loss"], "test_acc": epochs[-1]["test_acc"]}


def _fit_in(results_dir: str | os.PathLike | None, config: Any, profile: str,
            device: torch.device | str, on_epoch: Callable[[dict[str, Any]], bool] | None
            ) -> Any:
    """:func:`deqode.train.fit` of ``config`` (resumed / read back when it ran there before);
    ``results_dir=None``: in a temporary folder. A failed run raises."""
    from deqode.train import fit

    with tempfile.TemporaryDirectory(prefix="deqode-sim-") as scratch:
        result = fit(config, profile=profile, device=device, results_dir=results_dir or scratch,
                     resume=results_dir is not None, quiet=True, progress=False,
                     on_epoch=on_epoch)
    if result.failed:
        raise RuntimeError(f"{config.name} failed: {result.reason}")
    return result


def cost_summary(history: Mapping[str, Any], skip: int = 1) -> dict[str, float]:
    """Per training step (the first ``skip`` steps dropped as warm-up): median time (ms) and
    mean forward / backward NFE — the "learned like a feedforward model" comparison (C3)."""
    steps = history["steps"][skip:] or history["steps"]
    return {
        "median step time (ms)": 1e3 * float(np.median([s["time"] for s in steps])),
        "forward NFE / step": float(np.mean([s["nfe_forward"] for s in steps])),
        "backward NFE / step": float(np.mean([s["nfe_backward"] for s in steps])),
    }


# --------------------------------------------------------------------------------------------------
# T2: image regression
# --------------------------------------------------------------------------------------------------


def train_regression(
    model: nn.Module,
    train_set: Dataset,
    test_set: Dataset,
    *,
    iterations: int,
    lr: float,
    device: torch.device | str = "cpu",
    report: Callable[[int, float], bool] | None = None,
    results_dir: str | os.PathLike | None = None,
    profile: str = "smoke",
    name: str = "sim-regression",
) -> dict[str, Any]:
    """Full-batch Adam on MSE through :func:`deqode.train.fit` (task ``regression``, one
    iteration per epoch; the model as built by the caller). After each step: train PSNR from the
    pre-step loss, test PSNR from a fresh forward pass; the reported values are those after the
    last iteration. ``report(iteration, test_psnr)`` may stop early (search). The test-grid
    prediction ``(S/2, S/2, 3)`` of the final model is returned as ``prediction`` (with
    ``target``). Records: as :func:`train_classifier`."""
    from deqode.train import TrainConfig

    config = TrainConfig(
        name=name, model=lambda: model, task="regression",
        dataset=lambda split: train_set if split == "train" else test_set,
        epochs=iterations, batch_size=len(train_set), test_batch_size=len(test_set),
        drop_last=False, lr=lr, schedule="constant", seed=None, data_order="full_batch",
        record_steps=True, measure_memory=False, checkpoint_every=max(iterations // 10, 1))
    on_epoch = None if report is None else (lambda r: report(r["epoch"], r["test_psnr"]))
    params = count_trainable(model)
    result = _fit_in(results_dir, config, profile, device, on_epoch)
    model.train()
    return regression_record(result, model, test_set, params, device)


def regression_record(result: Any, model: nn.Module, test_set: Dataset, params: int,
                      device: torch.device | str = "cpu") -> dict[str, Any]:
    """What :func:`train_regression` returns, from a run's result and its trained ``model``
    (which predicts the test grid here; when rehearsing with a batch cap, only its first rows:
    a DEQ's forward solve over the 65,536 pixels of a 512-pixel image is minutes on a CPU core).
    """
    history = result.history
    rows, width = test_set.grid_shape
    rows = rehearsal.batch_size(rows)
    x_te, y_te = (t[:rows * width].to(device) for t in (test_set.inputs, test_set.targets))
    with torch.no_grad():
        prediction = model(x_te).reshape(rows, width, -1).cpu()
    return {
        "train_psnr": [h["train_psnr"] for h in history],
        "test_psnr": [h["test_psnr"] for h in history],
        "final_train_psnr": history[-1]["train_psnr"],
        "final_test_psnr": history[-1]["test_psnr"],
        "step_times": [s["time"] for h in history for s in h["steps"]],
        "prediction": prediction,
        "target": y_te.reshape(rows, width, -1).cpu(),
        "params": params,
    }


# --------------------------------------------------------------------------------------------------
# T3: copy memory
# --------------------------------------------------------------------------------------------------


def _stack(dataset: Dataset) -> tuple[Tensor, Tensor]:
    if hasattr(dataset, "inputs") and hasattr(dataset, "targets"):
        return dataset.inputs, dataset.targets
    xs, ys = zip(*[dataset[i] for i in range(len(dataset))], strict=True)
    return torch.stack(xs), torch.stack([torch.as_tensor(y) for y in ys])


@torch.no_grad()
def evaluate_copy_memory(model: nn.Module, x: Tensor, y: Tensor, batch_size: int
                         ) -> tuple[float, float]:
    """Test loss (mean over batches of the per-batch mean CE over all ``T + 20`` positions) and
    accuracy over all positions, in percent — the official metrics (``run_cpmem.py``,
    ``train_cpmem.py``)."""
    model.eval()
    losses, correct = [], 0
    for i in rehearsal.capped(range(0, len(x), batch_size)):
        logits = model(x[i : i + batch_size]).flatten(0, 1)
        target = y[i : i + batch_size].flatten()
        losses.append(F.cross_entropy(logits, target).item())
        correct += (logits.argmax(1) == target).sum().item()
    model.train()
    counted = min(len(x), len(losses) * batch_size)
    return float(np.mean(losses)), 100.0 * correct / y[:counted].numel()


def train_copy_memory(
    model: nn.Module,
    train_set: Dataset,
    test_set: Dataset,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    adam_eps: float = 1e-5,
    device: torch.device | str = "cpu",
    report: Callable[[int, float], bool] | None = None,
    val_set: Dataset | None = None,
    track_positions: bool = False,
    results_dir: str | os.PathLike | None = None,
    profile: str = "smoke",
    name: str = "sim-copy-memory",
) -> dict[str, Any]:
    """SIM's copy-memory training: Adam (``eps`` 1e-5), constant lr, mini-batches in order,
    through :func:`deqode.train.fit` (task ``sequence``; the model as built by the caller).

    No gradient clipping: the official code calls ``clip_grad_norm_`` before ``backward()``, so
    its clipping has no effect; we reproduce that effective behaviour. Per batch: loss, accuracy
    (%), cumulative wall-clock time (ms, forward + backward + update; synchronised on a GPU) and
    NFE. The test set is evaluated after the last epoch (:func:`evaluate_copy_memory`). With
    ``val_set`` and ``report`` (search), the validation loss is reported after each epoch.
    ``track_positions``: after each epoch, the test accuracy split by position
    (:func:`copy_memory_position_accuracy`) goes to ``epochs``. Records: as
    :func:`train_classifier`.
    """
    from deqode.train import TrainConfig

    config = TrainConfig(
        name=name, model=lambda: model, task="sequence",
        dataset=lambda split: train_set if split == "train" else test_set,
        epochs=epochs, batch_size=batch_size, test_batch_size=batch_size, drop_last=False,
        lr=lr, adam_eps=adam_eps, schedule="constant", seed=None, data_order="in_order",
        record_steps=True, measure_memory=False)

    def on_epoch(record: dict[str, Any]) -> bool:
        if track_positions:
            record["positions"] = copy_memory_position_accuracy(model, test_set, batch_size=50,
                                                                device=device)
        if val_set is None or report is None:
            return False
        x_va, y_va = (t.to(device) for t in _stack(val_set))
        return bool(report(record["epoch"], evaluate_copy_memory(model, x_va, y_va,
                                                                 batch_size)[0]))

    params = count_trainable(model)
    result = _fit_in(results_dir, config, profile, device, on_epoch)
    model.train()
    steps = copy_memory_steps(result.history)
    epochs_log = [{"epoch": h["epoch"], **h["positions"]} for h in result.history
                  if "positions" in h]
    x_te, y_te = (t.to(device) for t in _stack(test_set))
    test_loss, test_acc = evaluate_copy_memory(model, x_te, y_te, batch_size)
    return {"steps": steps, "epochs": epochs_log, "test_loss": test_loss, "test_acc": test_acc,
            "params": params}


def copy_memory_steps(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per training batch of a copy-memory run: loss, accuracy (%), cumulative training time
    (ms) and NFE."""
    steps, elapsed = [], 0.0
    for step in (s for h in history for s in h["steps"]):
        elapsed += step["time"]
        steps.append({"loss": step["loss"], "acc": step["acc"], "time_ms": 1e3 * elapsed,
                      "nfe_forward": step["nfe_forward"], "nfe_backward": step["nfe_backward"]})
    return steps


@torch.no_grad()
def copy_memory_position_accuracy(
    model: nn.Module, dataset: Dataset, batch_size: int = 50, device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Test accuracy (%) split by position, to read the official all-position accuracy
    (``run_cpmem.py``, ``train_cpmem.py``): on the ``T + 10`` blank positions, on the last 10
    (the digits to recall; chance is 12.5 % over the 8 digit values), and the share of those last
    10 predicted as a blank. A model that predicts a blank everywhere scores
    ``100 (T + 10) / (T + 20)`` % overall."""
    x, y = (t.to(device) for t in _stack(dataset))
    if y.dim() != 2 or y.shape[1] <= 10:
        raise ValueError(f"copy-memory targets must be (N, T + 20), got {tuple(y.shape)}")
    was_training = model.training
    model.eval()
    preds = torch.cat([model(x[i : i + batch_size]).argmax(-1)
                       for i in range(0, len(x), batch_size)])
    model.train(was_training)
    blank, digit = slice(None, -10), slice(-10, None)
    return {
        "blank positions": 100.0 * (preds[:, blank] == y[:, blank]).float().mean().item(),
        "digit positions": 100.0 * (preds[:, digit] == y[:, digit]).float().mean().item(),
        "digit positions predicted blank": 100.0 * (preds[:, digit] == 0).float().mean().item(),
    }


def memoryless_loss(T: int) -> float:
    """Cross-entropy of the best predictor that remembers nothing: exact zeros on the ``T + 10``
    blank positions, uniform over the 8 digit values on the last 10: ``10 ln 8 / (T + 20)``."""
    return 10 * math.log(8) / (T + 20)


def always_blank_accuracy(T: int) -> float:
    """Accuracy (%) of predicting a blank everywhere: right on the ``T + 10`` blank positions of
    the ``T + 20``, wrong on the 10 digits to recall."""
    return 100 * (T + 10) / (T + 20)


