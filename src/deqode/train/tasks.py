"""What a run learns: a :class:`Task` gives the loss of a batch, the failure checks of a step,
the training and test metrics, and the metric that selects the best epoch.

:func:`deqode.train.fit` runs the same loop for every task; :data:`TASKS` maps the names a
:class:`~deqode.train.TrainConfig` may give (``task=``) to their classes.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deqode.metrics import Accumulator


def correct(predictions: Tensor, labels: Tensor) -> Tensor:
    """The number of predicted classes (``logits.argmax(1)``) equal to their labels."""
    return (predictions == labels).sum()


def correct_percent(predictions: Tensor, labels: Tensor) -> Tensor:
    """:func:`correct` times 100 (a sum of percentages over the rows)."""
    return correct(predictions, labels) * 100  # an integer: exact


class Task:
    """The objective and metrics of one kind of run (subclasses override what differs).

    A batch is what the data loader yields; :meth:`prepare` moves it to the device. ``selection``
    is the test metric whose best value (``maximise``: largest) the summary reports with its
    epoch.
    """

    name = ""
    selection = "test_loss"
    maximise = False
    evaluates_model = False  # True: evaluate_model() instead of test batches (FunctionTask)

    def prepare(self, batch: Any, device: torch.device, dtype: torch.dtype) -> Any:
        x, y = batch
        return x.to(device, dtype, non_blocking=True), y.to(device)

    def loss(self, model: nn.Module, batch: Any, config: Any) -> tuple[Tensor, Any]:
        """The training loss of ``batch`` and the model's outputs (for :meth:`check` and
        :meth:`train_metrics`)."""
        raise NotImplementedError

    def check(self, loss: Tensor | float, outputs: Any, config: Any) -> str | None:
        """Why this step must not be applied (None when it is fine); ``loss``: the loss or its
        value (the loop passes the value it has read)."""
        value = loss.item() if isinstance(loss, Tensor) else float(loss)
        return None if math.isfinite(value) else f"non-finite loss ({value})"

    def train_metrics(self, acc: Accumulator, batch: Any, outputs: Any, loss: float) -> None:
        """Add the step's training metrics (``loss`` is the batch mean) to ``acc``."""
        n = len(batch[1])
        acc.add("train_loss", loss * n, n)

    def step_record(self, batch: Any, outputs: Any) -> dict[str, float]:
        """Task metrics of one step for ``TrainConfig.record_steps`` (none by default)."""
        return {}

    def evaluate(self, model: nn.Module, batch: Any, acc: Accumulator) -> None:
        """Add the test metrics of ``batch`` to ``acc`` (under ``torch.no_grad``)."""
        raise NotImplementedError

    def check_evaluation(self, record: dict[str, Any]) -> str | None:
        value = record.get("test_loss")
        if value is None or not math.isfinite(value):
            return f"non-finite test loss ({value})"
        return None

    def derived(self, record: dict[str, Any]) -> dict[str, Any]:
        """Metrics computed from an epoch's reduced training and test metrics (none here)."""
        return {}

    def summary(self, best: dict[str, Any], last: dict[str, Any]) -> dict[str, Any]:
        """The summary's task entries: the best selection metric, its epoch and the last ones."""
        metric = self.selection
        return {f"best_{metric}": best[metric], "best_epoch": best["epoch"],
                f"last_{metric}": last.get(metric), "last_train_loss": last.get("train_loss")}

    def log_text(self, record: dict[str, Any]) -> str:
        return (f"train loss {record['train_loss']:.4f}  "
                f"{self.selection.replace('_', ' ')} {record[self.selection]:.4f}")


class Classification(Task):
    """Image classification as in HomoODE's released ``train.py`` (Ding et al. 2023, §4):
    ``|CE(logits, y) − flood_level| + flood_level + entropy_weight · E[Σ p log p]`` (both extras 0
    by default); argmax accuracy; the best epoch by test accuracy (the official model selection
    on the test set). A step is refused for non-finite logits, logits above ``max_abs_logit``
    (an exploding state) or a non-finite loss."""

    name = "classification"
    selection = "test_acc"
    maximise = True

    def loss(self, model: nn.Module, batch: Any, config: Any) -> tuple[Tensor, Tensor]:
        x, y = batch
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        flood = config.flood_level
        if flood:
            loss = (loss - flood).abs() + flood
        elif not loss.item() > 0:  # |CE| is CE, forward and backward, unless CE = 0 (or NaN)
            loss = loss.abs()  # the zero gradient of |CE| at CE = 0
        if config.entropy_weight:
            log_p = F.log_softmax(logits, dim=1)
            loss = loss + config.entropy_weight * (log_p.exp() * log_p).sum(dim=1).mean()
        return loss, logits

    def check(self, loss: Tensor | float, outputs: Tensor, config: Any) -> str | None:
        low, high = (float(v) for v in outputs.detach().aminmax())  # NaN if any logit is
        if not (math.isfinite(low) and math.isfinite(high)):
            return "non-finite logits (exploding or NaN state)"
        largest = max(-low, high)  # max |logit|
        if largest > config.max_abs_logit:
            return (f"exploding state: max |logit| = {largest:.3e} > max_abs_logit = "
                    f"{config.max_abs_logit:g}")
        return super().check(loss, outputs, config)

    def train_metrics(self, acc: Accumulator, batch: Any, outputs: Tensor, loss: float) -> None:
        y = batch[1]
        n = y.numel()
        acc.add("train_loss", loss * n, n)
        # the predictions now (a model may reuse its output's memory), counted later
        acc.add_deferred("train_acc", correct, (outputs.detach().argmax(1), y), n)

    def evaluate(self, model: nn.Module, batch: Any, acc: Accumulator) -> None:
        x, y = batch
        logits = model(x)
        acc.add("test_loss", float(F.cross_entropy(logits, y, reduction="sum")), y.numel())
        acc.add("test_acc", float((logits.argmax(1) == y).sum()), y.numel())

    def log_text(self, record: dict[str, Any]) -> str:
        return (f"train loss {record['train_loss']:.4f} acc {record['train_acc']:.4f}  "
                f"test loss {record['test_loss']:.4f} acc {record['test_acc']:.4f}")


class Sequence(Classification):
    """A label at every position of a sequence, as SIM's copy memory (``train_cpmem.py`` of the
    SIM code; the TCN benchmark's task): the model maps (N, C, T) to logits (N, T, K); plain
    cross-entropy over all positions; accuracy in percent over all positions. The test loss is
    the mean over test batches of the batch-mean cross-entropy (the official metric); the best
    epoch is the one of least test loss."""

    name = "sequence"
    selection = "test_loss"
    maximise = False

    def loss(self, model: nn.Module, batch: Any, config: Any) -> tuple[Tensor, Tensor]:
        x, y = batch
        logits = model(x).flatten(0, 1)
        return F.cross_entropy(logits, y.flatten()), logits

    def train_metrics(self, acc: Accumulator, batch: Any, outputs: Tensor, loss: float) -> None:
        target = batch[1].flatten()
        n = target.numel()
        acc.add("train_loss", loss * n, n)
        acc.add_deferred("train_acc", correct_percent, (outputs.detach().argmax(1), target), n)

    def step_record(self, batch: Any, outputs: Tensor) -> dict[str, float]:
        target = batch[1].flatten()
        return {"acc": 100.0 * (outputs.argmax(1) == target).float().mean().item()}

    def evaluate(self, model: nn.Module, batch: Any, acc: Accumulator) -> None:
        x, y = batch
        logits, target = model(x).flatten(0, 1), y.flatten()
        acc.add("test_loss", F.cross_entropy(logits, target).item())
        acc.add("test_acc", 100.0 * float((logits.argmax(1) == target).sum()), target.numel())


def psnr(mse: float) -> float:
    """``−10 log10(MSE)`` for targets in [0, 1] (unclamped, as SIM's code)."""
    return -10.0 * math.log10(mse) if mse > 0 else math.inf


class Regression(Task):
    """Regression of targets in [0, 1] as SIM's image regression (``train_imgreg.py`` of the SIM
    code; usually full-batch, ``data_order="full_batch"``): mean squared error; the losses are
    means over batches of the batch-mean MSE; ``train_psnr`` / ``test_psnr`` =
    ``−10 log10(MSE)``; the best epoch is the one of highest test PSNR."""

    name = "regression"
    selection = "test_psnr"
    maximise = True

    def loss(self, model: nn.Module, batch: Any, config: Any) -> tuple[Tensor, None]:
        x, y = batch
        return F.mse_loss(model(x), y), None

    def train_metrics(self, acc: Accumulator, batch: Any, outputs: Any, loss: float) -> None:
        acc.add("train_loss", loss)

    def evaluate(self, model: nn.Module, batch: Any, acc: Accumulator) -> None:
        x, y = batch
        acc.add("test_loss", F.mse_loss(model(x), y).item())

    def derived(self, record: dict[str, Any]) -> dict[str, Any]:
        return {"train_psnr": psnr(record["train_loss"]), "test_psnr": psnr(record["test_loss"])}


class FunctionTask(Task):
    """A loss ``loss_fn(model, batch)`` and an evaluation ``evaluate_fn()`` (a dict of metrics)
    given as functions, for a stream of batches (``data_order="stream"``): the NAG chapter's
    density and ELBO tasks (:func:`density_task`, :func:`elbo_task`). The evaluation runs as the
    model is (training mode, gradients enabled, e.g. for a CNF's divergence), at the start of
    the run (``TrainConfig.evaluate_at_start``) and after every epoch; ``selection`` is one of
    its metrics. ``state`` (a ``torch.Generator`` the loss draws from) is checkpointed."""

    evaluates_model = True

    def __init__(self, name: str, loss_fn: Any, evaluate_fn: Any, selection: str,
                 maximise: bool = False, state: torch.Generator | None = None) -> None:
        self.name, self.loss_fn, self.evaluate_fn = name, loss_fn, evaluate_fn
        self.selection, self.maximise, self.state = selection, maximise, state

    def prepare(self, batch: Any, device: torch.device, dtype: torch.dtype) -> Any:
        return batch  # a stream yields batches ready for the model

    def loss(self, model: nn.Module, batch: Any, config: Any) -> tuple[Tensor, None]:
        return self.loss_fn(model, batch), None

    def train_metrics(self, acc: Accumulator, batch: Any, outputs: Any, loss: float) -> None:
        acc.add("train_loss", loss)

    def evaluate_model(self) -> dict[str, Any]:
        return dict(self.evaluate_fn())

    def check_evaluation(self, record: dict[str, Any]) -> str | None:
        return None

    def state_dict(self) -> dict[str, Any]:
        return {} if self.state is None else {"generator": self.state.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.state is not None:
            self.state.set_state(state["generator"])


def density_task(evaluate_fn: Any, selection: str = "nll") -> FunctionTask:
    """Density estimation (NAG task B, a CNF; Grathwohl et al. 2019): the mean negative
    log-likelihood ``−mean log p(x)`` of the batch."""
    return FunctionTask("density", lambda model, x: -model.log_prob(x).mean(), evaluate_fn,
                        selection)


def elbo_task(evaluate_fn: Any, generator: torch.Generator,
              selection: str = "neg_elbo") -> FunctionTask:
    """A latent ODE's negative ELBO (NAG task C; Rubanova et al. 2019) of the batch
    ``(observed, times)``, the posterior samples drawn from ``generator``."""
    return FunctionTask("elbo", lambda model, batch: model.negative_elbo(
        *batch, generator=generator), evaluate_fn, selection, state=generator)


TASKS: dict[str, type[Task]] = {
    task.name: task for task in (Classification, Regression, Sequence)}


def make_task(task: str | Task) -> Task:
    """The task a ``TrainConfig`` names (a :class:`Task` instance is used as it is)."""
    from deqode.choices import check_choice

    if isinstance(task, Task):
        return task
    return TASKS[check_choice("task", task, TASKS)]()


__all__ = ["TASKS", "Classification", "FunctionTask", "Regression", "Sequence", "Task",
           "density_task", "elbo_task", "make_task", "psnr"]
