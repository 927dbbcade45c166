"""What one training run is: :class:`TrainConfig` (with :class:`InitPointConfig`) and what
:func:`deqode.train.fit` returns, :class:`RunResult`."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from deqode import rehearsal
from deqode.choices import check_choice
from deqode.train.tasks import TASKS, Task

OPTIMIZERS = ("adam", "adamw", "sgd")
SCHEDULES = ("cosine", "constant", "step", "steplr", "1cycle")  # deqode.train.schedules
DATA_ORDERS = ("sampler", "shuffle", "in_order", "full_batch", "stream")
DTYPES = {"float32": torch.float32, "float64": torch.float64}

#: Fields added after runs were recorded: left out of :meth:`TrainConfig.to_dict` while they hold
#: their default, so that the recorded configurations (and checkpoints) of earlier runs still match.
_LATER_FIELDS = {"task": "classification", "step_size": 10, "data_order": "sampler",
                 "shuffle_seed": 0, "record_steps": False, "adam_eps": 1e-8,
                 "checkpoint_every": 1, "iterations": None, "evaluate_at_start": False,
                 "nesterov": False, "lr_scaled_decay": True,
                 # default True until the meter became opt-in; a documentation field either way
                 "measure_memory": False}


@dataclass(frozen=True)
class InitPointConfig:
    """The separate update of a model's shared initial point (HomoODE, Ding et al. 2023, §3.3;
    ``train.py`` of the official code ``wadx2019/homoode``); ``None`` fields take the model's
    defaults (its ``lr_init`` and ``freq``)."""

    lr: float | None = None  # lr_init; None -> model.lr_init
    freq: int | None = None  # steps when iteration % freq == 0; None -> model.freq
    scheduler_divisor: int = 1  # init_scheduler: T_max = total_iterations / scheduler_divisor
    eta_min: float = 1e-6


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``model``/``dataset`` are registry names or factories.

    ``model`` is built by ``deqode.models.build(model, **model_kwargs)`` (a callable is called with
    ``**model_kwargs``); ``dataset`` by ``deqode.data.load_dataset`` (a callable is called with the
    split, ``"train"`` or ``"test"``). ``batch_size`` is the global batch over all DDP ranks.
    ``task`` names the objective and metrics (:data:`deqode.train.tasks.TASKS`; or is a
    :class:`~deqode.train.tasks.Task`, e.g. :func:`~deqode.train.tasks.density_task`).
    ``data_order``: ``sampler`` (a ``DistributedSampler`` re-seeded from ``(seed, epoch)``;
    DDP-ready), ``shuffle`` (one process; a ``DataLoader`` shuffled by its own generator seeded
    ``shuffle_seed`` once for the whole run, as monDEQ's and SIM's ``train.py``), ``in_order``
    (mini-batches in dataset order, as SIM's ``train_cpmem.py``), ``full_batch`` (every
    sample in one batch; ``batch_size`` is ignored) or ``stream`` (``dataset("train")`` is a
    :class:`deqode.train.batches.Stream`, ``batch_size`` of its batches make an epoch and
    ``iterations`` the run; ``dataset("test")`` is unused: the task evaluates the model).

    Optimisers: ``adam``, ``adamw`` (torch's AdamW: decoupled weight decay, each step shrinks
    the weights by ``lr · weight_decay``; with ``lr_scaled_decay=False`` by ``weight_decay``
    itself at every learning rate, as Optimisers.jl's ``WeightDecay`` chained after ``Adam``)
    and ``sgd`` (``momentum``, ``nesterov``). ``iterations`` is a budget in optimiser steps:
    the run ends after that many steps (its last epoch may stop part-way), the schedule spans
    them and ``milestones`` count steps; the epochs follow from it (:meth:`budget`), so
    ``epochs`` stays 1 (streams: ``ceil(iterations / batch_size)``, as before).
    """

    name: str
    model: str | Callable[..., nn.Module]
    dataset: str | Callable[[str], Dataset]
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 1
    batch_size: int = 64
    test_batch_size: int = 400
    drop_last: bool = True
    augment: bool | None = None  # None: the dataset recipe's train augmentation
    dataset_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. recipe=..., options
    optimizer: str = "adam"
    lr: float = 1e-3
    adam_eps: float = 1e-8
    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False  # sgd: Nesterov momentum (needs momentum > 0)
    lr_scaled_decay: bool = True  # adamw: False = decay by weight_decay, not lr * weight_decay
    schedule: str = "cosine"  # see deqode.train.schedules
    eta_min: float = 1e-6
    milestones: tuple[int, ...] = ()  # schedule="step": epochs (optimiser steps with iterations)
    gamma: float = 0.1
    step_size: int = 10  # epochs, for schedule="steplr"
    init_point: InitPointConfig = field(default_factory=InitPointConfig)
    flood_level: float = 0.0
    entropy_weight: float = 0.0
    seed: int | None = 0  # None: leave the global RNGs as they are (a model built by the caller)
    dtype: str = "float32"
    max_abs_logit: float = 1e6
    num_workers: int = 0
    description: str = ""
    task: str | Task = "classification"  # a name, or (streams) a Task instance
    data_order: str = "sampler"
    shuffle_seed: int = 0  # data_order="shuffle": the seed of the loader's own generator
    record_steps: bool = False  # history entries get "steps": loss, time and NFE of every step
    checkpoint_every: int = 1  # epochs between checkpoints (and the last epoch)
    iterations: int | None = None  # a budget in optimiser steps (streams: batch_size per epoch)
    evaluate_at_start: bool = False  # an evaluation before the first step (metrics.json "start")
    # The saved-tensor meter (history "saved_tensor_peak_mb"); off by default: its hooks cost
    # several per cent of a step. It measures and changes nothing that is trained, so it is not
    # part of a run's identity (deqode.train.checkpoints.DOCUMENTATION_FIELDS).
    measure_memory: bool = False

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        if self.schedule == "step" and not self.milestones:
            raise ValueError("schedule='step' needs milestones (epochs at which lr *= gamma)")
        check_choice("dtype", self.dtype, DTYPES)
        if self.task in ("density", "elbo"):
            raise ValueError(f"task {self.task!r} needs its loss and evaluation: pass "
                             f"deqode.train.tasks.{self.task}_task(...) as the task")
        if not isinstance(self.task, Task):
            check_choice("task", self.task, TASKS)
        self._check_optimizer()
        if self.iterations is not None and int(self.iterations) < 1:
            raise ValueError(f"iterations must be >= 1, got {self.iterations!r}")
        if self.data_order == "stream":
            if self.iterations is None or self.epochs != -(-self.iterations // self.batch_size):
                raise ValueError("data_order='stream' needs iterations and epochs = "
                                 "ceil(iterations / batch_size) (batch_size: iterations per "
                                 f"epoch), got iterations={self.iterations}, epochs={self.epochs}")
        elif self.iterations is not None and self.epochs != 1:
            raise ValueError(f"iterations={self.iterations} is the run's budget in optimiser "
                             "steps and sets the epochs (ceil(iterations / iterations per "
                             f"epoch)); leave epochs at 1, got epochs={self.epochs}")
        check_choice("data order", self.data_order, DATA_ORDERS)
        if self.seed is None and self.data_order == "sampler":
            raise ValueError("seed=None needs a data order with its own seed (data_order="
                             "'shuffle'); the 'sampler' order is seeded by seed")
        for key in ("epochs", "batch_size", "test_batch_size", "checkpoint_every"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)!r}")

    def _check_optimizer(self) -> None:
        if self.nesterov and (self.optimizer != "sgd" or self.momentum <= 0):
            raise ValueError("nesterov=True needs optimizer='sgd' and momentum > 0, got "
                             f"optimizer={self.optimizer!r}, momentum={self.momentum}")
        if not self.lr_scaled_decay and self.optimizer != "adamw":
            raise ValueError("lr_scaled_decay=False is an option of optimizer='adamw', got "
                             f"optimizer={self.optimizer!r}")

    def budget(self, iters_per_epoch: int) -> tuple[int, int]:
        """``(optimiser steps, epochs)`` of the run when an epoch holds ``iters_per_epoch``
        steps: the step budget ``iterations`` and the epochs it spans (the last one may stop
        part-way), else ``epochs`` whole epochs."""
        if self.iterations is None:
            return self.epochs * iters_per_epoch, self.epochs
        return int(self.iterations), -(-int(self.iterations) // iters_per_epoch)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; a factory is recorded as ``callable:<module>.<qualname>``."""
        plain = self
        if isinstance(self.task, Task):  # recorded by name (its functions are not data)
            plain = copy.copy(self)
            object.__setattr__(plain, "task", self.task.name)
        out = dataclasses.asdict(plain)
        for key in ("model", "dataset"):
            value = getattr(self, key)
            if callable(value):
                module = getattr(value, "__module__", type(value).__module__)
                out[key] = f"callable:{module}.{getattr(value, '__qualname__', repr(value))}"
        for key, default in _LATER_FIELDS.items():
            if out[key] == default:
                del out[key]
        if (caps := rehearsal.record()) is not None:  # never mistaken for a real run (reuse)
            out["rehearsal"] = caps
        return out


@dataclass
class RunResult:
    """What :func:`deqode.train.fit` returns; ``history`` holds one record per completed epoch."""

    experiment: str
    profile: str
    out_dir: Path
    state: str
    reason: str
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    model: nn.Module | None = field(default=None, repr=False)  # the trained model (this rank's)
    reused: bool = False  # read back from a finished run (deqode.train.reuse), not trained

    @property
    def failed(self) -> bool:
        return self.state == "failed"

    @property
    def best_test_acc(self) -> float | None:
        return self.summary.get("best_test_acc")

    @property
    def last_test_acc(self) -> float | None:
        return self.summary.get("last_test_acc")
