"""The one training loop for every model: metrics, checkpoints, resume, failure handling, DDP.

:func:`fit` trains the model a :class:`TrainConfig` names on the dataset it names and writes, to
``results/<profile>/<experiment>/`` (only rank 0 writes, every file atomically):

* ``config.json``  the configuration, the profile and the environment (versions, device, commit);
* ``status.json``  ``state`` = ``running`` | ``completed`` | ``stopped`` (``max_epochs`` reached or
  interrupted; resume with ``resume=True``) | ``failed``, with the ``reason``;
* ``metrics.json`` the per-epoch ``history`` and a ``summary`` (best test accuracy and its epoch,
  which is the official code's model selection on the test set, *and* the last-epoch accuracy);
* ``checkpoint.pt`` written after every completed epoch: model, optimiser, schedule, the
  shared-initial-point optimiser and its schedule, RNG states of every rank, history and best
  (a run started without ``resume`` first moves an existing one to ``checkpoint.previous.pt``).

One iteration (HomoODE spec §2.4, §2.6, §3.4):

1. ``loss = |CE(logits, y) - flood_level| + flood_level + entropy_weight * E[sum p log p]``
   (both extras are 0 by default, as in the released code);
2. backward, main optimiser step (all parameters except the initial-point ones), schedule step:
   the schedule is stepped **every iteration** with ``T_max = epochs * iterations_per_epoch``;
3. for models with a shared learnable initial point (``model.init_parameters()``): when
   ``iteration % freq == 0`` (iteration 0 included, counted over the whole run) the init loss
   ``model.init_loss()`` is back-propagated into the init parameters only and a separate SGD
   (``lr_init``, no momentum, no weight decay) steps, followed by its own
   ``CosineAnnealingLR(T_max = total_iterations / init_scheduler, eta_min)`` — stepped only on
   these iterations. Both optimisers' gradients are zeroed every iteration.

Data order is a function of ``(seed, epoch)`` only (a ``DistributedSampler`` re-seeded by
``set_epoch``), and the RNG states are checkpointed, so an interrupted run resumed from its
checkpoint gives the same numbers as an uninterrupted one (bitwise on the CPU).

Failures — a non-finite loss, logits or gradient, logits above ``max_abs_logit`` (an exploding
state) or :class:`deqode.errors.SolverFailure` from the model — stop the run before the bad update
is applied; ``status.json`` and ``metrics.json`` record the reason, the checkpoint of the last good
epoch is kept, and :func:`fit` returns a :class:`RunResult` with ``failed=True``.

Distributed data parallel: under ``torchrun`` (``WORLD_SIZE > 1``) the same call uses
``DistributedDataParallel`` (backend ``nccl`` on CUDA, ``gloo`` on the CPU, device
``cuda:LOCAL_RANK``). ``batch_size`` is the **global** batch: every rank takes
``batch_size / world_size`` samples per iteration, so one DDP iteration sees the same samples as
one single-process iteration and the averaged gradient is the same. The initial-point
parameters are excluded from DDP (they get no gradient from the main loss) and their gradients
are averaged over ranks with an explicit ``all_reduce`` before the init optimiser steps. Metrics
are exact (sum, count) reductions over ranks. What stays per rank, so that DDP equals one process
only for models without these: BatchNorm statistics (no SyncBN), dropout masks, and the step-size
control of adaptive ODE solvers, which sees only the rank's sub-batch (NFE and the solution can
differ from a single-process solve of the whole global batch). A ``SolverFailure`` raised inside
backward on one rank only cannot be agreed on and may leave the other ranks waiting until the
process group times out; forward-time failures are agreed on every iteration.

Memory: ``cuda_peak_mb`` is ``torch.cuda.max_memory_allocated`` over the epoch's training phase
(reset every epoch; ``None`` on the CPU); ``saved_tensor_peak_mb`` is the autograd saved-tensor
peak of :class:`deqode.metrics.SavedTensorMeter`, the device-independent measure used on the CPU.

Mixed precision is deliberately not offered: adaptive ODE solvers in fp16 reject steps on
round-off and their error estimates are unreliable, so every run is float32 or float64.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler

from deqode import metrics, rehearsal
from deqode.choices import check_choice, check_profile
from deqode.devices import resolve_device
from deqode.environment import environment_record
from deqode.errors import SolverFailure
from deqode.paths import resolve
from deqode.results import read_json, torch_save_atomic, write_json_atomic

OPTIMIZERS = ("adam", "sgd")
SCHEDULES = ("cosine", "constant", "step")
DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass(frozen=True)
class InitPointConfig:
    """The shared-initial-point optimiser (spec §2.4); ``None`` fields take the model's defaults."""

    lr: float | None = None  # lr_init; None -> model.lr_init
    freq: int | None = None  # steps when iteration % freq == 0; None -> model.freq
    scheduler_divisor: int = 1  # init_scheduler: T_max = total_iterations / scheduler_divisor
    eta_min: float = 1e-6


@dataclass(frozen=True)
class TrainConfig:
    """One training run. ``model``/``dataset`` are registry names (or, in tests, factories).

    ``model`` is built by ``deqode.models.build(model, **model_kwargs)`` (a callable is called with
    ``**model_kwargs``); ``dataset`` by ``deqode.data.load_dataset`` (a callable is called with the
    split, ``"train"`` or ``"test"``). ``batch_size`` is the global batch over all DDP ranks.
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
    momentum: float = 0.0
    weight_decay: float = 0.0
    schedule: str = "cosine"  # stepped every iteration; "step": x gamma at each milestone epoch
    eta_min: float = 1e-6
    milestones: tuple[int, ...] = ()  # epochs, for schedule="step"
    gamma: float = 0.1
    init_point: InitPointConfig = field(default_factory=InitPointConfig)
    flood_level: float = 0.0
    entropy_weight: float = 0.0
    seed: int = 0
    dtype: str = "float32"
    max_abs_logit: float = 1e6
    num_workers: int = 0
    description: str = ""

    def __post_init__(self) -> None:
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        if self.schedule == "step" and not self.milestones:
            raise ValueError("schedule='step' needs milestones (epochs at which lr *= gamma)")
        check_choice("dtype", self.dtype, DTYPES)
        for key in ("epochs", "batch_size", "test_batch_size"):
            if int(getattr(self, key)) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)!r}")

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types; a factory is recorded as ``callable:<module>.<qualname>``."""
        out = dataclasses.asdict(self)
        for key in ("model", "dataset"):
            value = getattr(self, key)
            if callable(value):
                module = getattr(value, "__module__", type(value).__module__)
                out[key] = f"callable:{module}.{getattr(value, '__qualname__', repr(value))}"
        return out


@dataclass
class RunResult:
    """What :func:`fit` returns; ``history`` holds one record per completed epoch."""

    experiment: str
    profile: str
    out_dir: Path
    state: str
    reason: str
    history: list[dict[str, Any]]
    summary: dict[str, Any]

    @property
    def failed(self) -> bool:
        return self.state == "failed"

    @property
    def best_test_acc(self) -> float | None:
        return self.summary.get("best_test_acc")

    @property
    def last_test_acc(self) -> float | None:
        return self.summary.get("last_test_acc")


class _RunFailed(Exception):
    """Internal: a training or evaluation step went bad; the message is the reason."""


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    created: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup(device: str | torch.device) -> tuple[_Dist, torch.device]:
    """Device and process group: under torchrun one process per ``LOCAL_RANK``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if world == 1:
        return _Dist(), dev
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return _Dist(dist.get_rank(), dist.get_world_size(), created), dev


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the global RNG others may use)
    torch.manual_seed(seed)


def _rng_state(device: torch.device) -> dict[str, Any]:
    """RNG states as tensors and plain types, loadable with ``weights_only=True``."""
    _, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    version, py_state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": [torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": [int(version), torch.tensor(py_state, dtype=torch.int64), gauss],
    }


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    keys, pos, has_gauss, cached = state["numpy"]
    keys = keys.numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, pos, has_gauss, cached))  # noqa: NPY002
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(int(v) for v in py_state.tolist()), gauss))


def _build_model(config: TrainConfig) -> nn.Module:
    if callable(config.model):
        return config.model(**config.model_kwargs)
    from deqode import models

    return models.build(config.model, **config.model_kwargs)


def _load_datasets(config: TrainConfig, profile: str, data_root: Path, download: bool):
    if callable(config.dataset):
        return config.dataset("train"), config.dataset("test")
    from deqode import data

    if not download:
        data.check_available([config.dataset], root=data_root)
    common = {"root": data_root, "profile": profile, "download": download,
              **config.dataset_kwargs}
    train = data.load_dataset(config.dataset, split="train", augment=config.augment, **common)
    test = data.load_dataset(config.dataset, split="test", augment=False, **common)
    return train, test


def _objective(logits: torch.Tensor, target: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """Spec §2.6: flooded cross-entropy plus the (signed) entropy term of the released code."""
    loss = (F.cross_entropy(logits, target) - config.flood_level).abs() + config.flood_level
    if config.entropy_weight:
        log_p = F.log_softmax(logits, dim=1)
        loss = loss + config.entropy_weight * (log_p.exp() * log_p).sum(dim=1).mean()
    return loss


def _check_step(loss: torch.Tensor, logits: torch.Tensor, config: TrainConfig) -> str | None:
    if not torch.isfinite(logits).all():
        return "non-finite logits (exploding or NaN state)"
    largest = float(logits.detach().abs().max())
    if largest > config.max_abs_logit:
        return (f"exploding state: max |logit| = {largest:.3e} > max_abs_logit = "
                f"{config.max_abs_logit:g}")
    if not torch.isfinite(loss):
        return f"non-finite loss ({loss.detach().item()})"
    return None


class _Trainer:
    """The state of one run; :func:`fit` is the public entry point."""

    def __init__(self, config, profile, device, out_dir, data_root, download, progress, quiet):
        self.config, self.profile, self.out_dir = config, profile, out_dir
        self.ctx, self.device = _setup(device)
        try:
            self._build(data_root, download, progress, quiet)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Leave the process group if this run created it."""
        if self.ctx.created and dist.is_initialized():
            dist.destroy_process_group()

    def _build(self, data_root, download, progress, quiet) -> None:
        config, profile = self.config, self.profile
        self.dtype = DTYPES[config.dtype]
        self.progress = self.ctx.main and (sys.stderr.isatty() if progress is None else progress)
        self.quiet = quiet or not self.ctx.main
        if config.batch_size % self.ctx.world:
            raise ValueError(
                f"batch_size {config.batch_size} (the global batch) is not divisible by the "
                f"world size {self.ctx.world}"
            )
        if self.ctx.main or not download:
            train_set, test_set = _load_datasets(config, profile, data_root, download)
        if self.ctx.enabled and download:
            dist.barrier()  # rank 0 downloads first
            if not self.ctx.main:
                train_set, test_set = _load_datasets(config, profile, data_root, download)
        _seed(config.seed)  # identical initial weights on every rank
        self.net = _build_model(config).to(self.device, self.dtype)
        self._make_loaders(train_set, test_set)
        self._make_optimisers()
        self.model: nn.Module = self.net
        if self.ctx.enabled:
            names = [n for n, p in self.net.named_parameters() if id(p) in self.init_ids]
            nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                self.net, names
            )
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        _seed(config.seed + self.ctx.rank)  # different dropout masks on different ranks
        self.epoch, self.iteration = 0, 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {"test_acc": None, "epoch": None}
        self.meter = metrics.SavedTensorMeter()
        self.started = time.time()

    def _make_loaders(self, train_set: Dataset, test_set: Dataset) -> None:
        cfg, ctx = self.config, self.ctx
        self.sampler = DistributedSampler(
            train_set, num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=cfg.seed,
            drop_last=True,
        )
        pin = self.device.type == "cuda"
        per_rank = cfg.batch_size // ctx.world
        self.train_loader = DataLoader(
            train_set, batch_size=per_rank, sampler=self.sampler, drop_last=cfg.drop_last,
            num_workers=cfg.num_workers, pin_memory=pin,
        )
        shard = Subset(test_set, range(ctx.rank, len(test_set), ctx.world))  # no padding
        self.test_loader = DataLoader(
            shard, batch_size=max(cfg.test_batch_size // ctx.world, 1), shuffle=False,
            num_workers=cfg.num_workers, pin_memory=pin,
        )
        self.iters_per_epoch = len(self.train_loader)
        if self.iters_per_epoch == 0:
            raise ValueError(
                f"no training iteration: {len(train_set)} samples, global batch {cfg.batch_size}"
            )

    def _make_optimisers(self) -> None:
        cfg, net = self.config, self.net
        get_init = getattr(net, "init_parameters", None)
        self.init_params = list(get_init()) if callable(get_init) else []
        self.init_ids = {id(p) for p in self.init_params}
        main = [p for p in net.parameters() if p.requires_grad and id(p) not in self.init_ids]
        if cfg.optimizer == "adam":
            self.optimizer = torch.optim.Adam(main, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(
                main, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
            )
        total = cfg.epochs * self.iters_per_epoch
        self.scheduler = self._main_schedule(self.optimizer, total)
        self.init_optimizer = self.init_scheduler = None
        self.freq = 0
        if self.init_params:
            ip = cfg.init_point
            lr_init = ip.lr if ip.lr is not None else getattr(net, "lr_init", None)
            self.freq = int(ip.freq if ip.freq is not None else getattr(net, "freq", 0) or 0)
            if lr_init is None or self.freq < 1:
                raise ValueError(
                    f"model {cfg.model!r} has init parameters but no lr_init/freq: set "
                    "config.init_point or the model's lr_init and freq"
                )
            self.init_optimizer = torch.optim.SGD(self.init_params, lr=lr_init, momentum=0.0)
            t_max = max(total // ip.scheduler_divisor, 1)
            self.init_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.init_optimizer, t_max, eta_min=ip.eta_min
            )
        model_ids = {id(p) for p in net.parameters()}
        self.extra_init = [p for p in self.init_params if id(p) not in model_ids]

    def _main_schedule(self, optimizer, t_max: int):
        """The main learning-rate schedule, stepped every iteration."""
        cfg = self.config
        if cfg.schedule == "cosine":
            return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, t_max, eta_min=cfg.eta_min)
        if cfg.schedule == "step":
            bounds = [m * self.iters_per_epoch for m in cfg.milestones]
            return torch.optim.lr_scheduler.LambdaLR(
                optimizer, lambda it: cfg.gamma ** sum(it >= b for b in bounds)
            )
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)

    # ---- collective helpers -------------------------------------------------------------------
    def _agree(self, failure: str | None) -> str | None:
        """Under DDP every rank learns whether any rank failed, and why."""
        if not self.ctx.enabled:
            return failure
        flag = torch.tensor([0.0 if failure is None else 1.0], device=self.device)
        dist.all_reduce(flag)
        if flag.item() == 0:
            return None
        reasons: list[str | None] = [None] * self.ctx.world
        dist.all_gather_object(reasons, failure)
        return "; ".join(f"rank {r}: {m}" for r, m in enumerate(reasons) if m)

    def _average_init_grads(self) -> None:
        for p in self.init_params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            if self.ctx.enabled:
                dist.all_reduce(p.grad)
                p.grad /= self.ctx.world

    # ---- one epoch ----------------------------------------------------------------------------
    def _train_epoch(self) -> dict[str, Any]:
        from tqdm import tqdm  # text bar; tqdm.auto needs ipywidgets in notebooks

        cfg, net = self.config, self.net
        self.model.train()
        self.sampler.set_epoch(self.epoch)
        acc, timer = metrics.Accumulator(), metrics.PhaseTimer(self.device)
        self.meter.reset_peak()
        bar = tqdm(self.train_loader, desc=f"epoch {self.epoch + 1}/{cfg.epochs}",
                   disable=not self.progress, leave=False, dynamic_ncols=True)
        params = [p for p in net.parameters()]
        for x, y in rehearsal.capped(bar):
            x, y = x.to(self.device, self.dtype, non_blocking=True), y.to(self.device)
            self.optimizer.zero_grad(set_to_none=True)
            if self.init_optimizer is not None:
                self.init_optimizer.zero_grad(set_to_none=True)
            metrics.reset_nfe(net)
            failure = None
            with self.meter.track(exclude=params):
                try:
                    with timer.phase("forward"):
                        logits = self.model(x)
                        loss = _objective(logits, y, cfg)
                    failure = _check_step(loss, logits, cfg)
                except SolverFailure as err:
                    failure = f"solver failure in forward: {err}"
                failure = self._agree(failure)
                if failure is not None:
                    raise _RunFailed(failure)
                nfe_forward, _ = metrics.read_nfe(net)
                loss_value = loss.detach().item()
                try:
                    with timer.phase("backward"):
                        loss.backward()
                except SolverFailure as err:
                    raise _RunFailed(f"solver failure in backward: {err}") from err
            _, nfe_backward = metrics.read_nfe(net)
            grads = [p.grad for p in params if p.grad is not None]
            grad_norm = float(nn.utils.get_total_norm(grads)) if grads else 0.0
            if not math.isfinite(grad_norm):
                raise _RunFailed(f"non-finite gradient norm ({grad_norm})")
            with timer.phase("step"):
                self.optimizer.step()
                self.scheduler.step()
                if self.init_optimizer is not None and self.iteration % self.freq == 0:
                    init_loss = net.init_loss()
                    bad = None if torch.isfinite(init_loss) else "non-finite init loss"
                    if (bad := self._agree(bad)) is not None:
                        raise _RunFailed(bad)
                    init_loss.backward()
                    self._average_init_grads()
                    self.init_optimizer.step()
                    self.init_scheduler.step()
                    acc.add("init_loss", init_loss.detach().item())
            n = y.numel()
            acc.add("train_loss", loss_value * n, n)
            acc.add("train_acc", float((logits.argmax(1) == y).sum()), n)
            acc.add("grad_norm", grad_norm)
            if nfe_forward is not None:
                acc.add("nfe_forward", nfe_forward)
            if nfe_backward is not None:
                acc.add("nfe_backward", nfe_backward)
            self.iteration += 1
            if self.progress:
                bar.set_postfix(loss=f"{loss_value:.3f}", nfe=nfe_forward)
        bar.close()
        acc.all_reduce(self.device)
        record = {k: acc.mean(k) for k in sorted(acc.sums)}
        record.update(timer.record())
        return record

    @torch.no_grad()
    def _evaluate(self) -> dict[str, Any]:
        net = self.net
        net.eval()
        acc, timer = metrics.Accumulator(), metrics.PhaseTimer(self.device)
        for x, y in rehearsal.capped(self.test_loader):
            x, y = x.to(self.device, self.dtype, non_blocking=True), y.to(self.device)
            metrics.reset_nfe(net)
            with timer.phase("eval"):
                try:
                    logits = net(x)
                except SolverFailure as err:
                    raise _RunFailed(f"solver failure in evaluation: {err}") from err
            nfe_forward, _ = metrics.read_nfe(net)
            acc.add("test_loss", float(F.cross_entropy(logits, y, reduction="sum")), y.numel())
            acc.add("test_acc", float((logits.argmax(1) == y).sum()), y.numel())
            if nfe_forward is not None:
                acc.add("test_nfe_forward", nfe_forward)
        acc.all_reduce(self.device)
        record = {k: acc.mean(k) for k in sorted(acc.sums)}
        if record["test_loss"] is None or not math.isfinite(record["test_loss"]):
            raise _RunFailed(f"non-finite test loss ({record['test_loss']})")
        record.update(timer.record())
        return record

    def run_epoch(self) -> dict[str, Any]:
        start = time.perf_counter()
        metrics.cuda_peak_reset(self.device)
        record: dict[str, Any] = {"epoch": self.epoch + 1}
        record.update(self._train_epoch())
        record["saved_tensor_peak_mb"] = self.meter.peak_bytes / metrics.MB
        record["cuda_peak_mb"] = metrics.cuda_peak_mb(self.device)
        record.update(self._evaluate())
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        if self.init_optimizer is not None:
            record["lr_init"] = self.init_optimizer.param_groups[0]["lr"]
        record["iterations"] = self.iteration
        record["epoch_time_s"] = time.perf_counter() - start
        self.epoch += 1
        if self.best["test_acc"] is None or record["test_acc"] > self.best["test_acc"]:
            self.best = {"test_acc": record["test_acc"], "epoch": self.epoch}
        record["best_test_acc"], record["best_epoch"] = self.best["test_acc"], self.best["epoch"]
        self.history.append(record)
        return record

    # ---- checkpoints --------------------------------------------------------------------------
    def _gather_rng(self) -> list[dict[str, Any]]:
        local = _rng_state(self.device)
        if not self.ctx.enabled:
            return [local]
        states: list[Any] = [None] * self.ctx.world
        dist.all_gather_object(states, local)
        return states

    def save_checkpoint(self) -> None:
        rng = self._gather_rng()  # collective: every rank takes part
        if not self.ctx.main:
            return
        torch_save_atomic({
            "format": 1, "config": self.config.to_dict(), "epoch": self.epoch,
            "iteration": self.iteration, "model": self.net.state_dict(),
            "extra_init_parameters": [p.detach().cpu() for p in self.extra_init],
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "init_optimizer": None if self.init_optimizer is None
            else self.init_optimizer.state_dict(),
            "init_scheduler": None if self.init_scheduler is None
            else self.init_scheduler.state_dict(),
            "rng": rng, "history": self.history, "best": self.best,
        }, self.out_dir / "checkpoint.pt")

    def load_checkpoint(self, path: Path) -> None:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        saved, current = ckpt["config"], self.config.to_dict()
        changed = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
        if changed:
            raise ValueError(
                f"cannot resume {path}: the configuration changed in {changed}; "
                "resume with the original settings or start a new run without --resume"
            )
        self.net.load_state_dict(ckpt["model"])
        with torch.no_grad():
            for p, value in zip(self.extra_init, ckpt["extra_init_parameters"], strict=True):
                p.copy_(value)
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(ckpt["scheduler"])
        if self.init_optimizer is not None:
            self.init_optimizer.load_state_dict(ckpt["init_optimizer"])
            self.init_scheduler.load_state_dict(ckpt["init_scheduler"])
        self.epoch, self.iteration = int(ckpt["epoch"]), int(ckpt["iteration"])
        self.history, self.best = list(ckpt["history"]), dict(ckpt["best"])
        if len(ckpt["rng"]) == self.ctx.world:
            _set_rng_state(ckpt["rng"][self.ctx.rank], self.device)
        else:  # another world size: exact continuation is impossible anyway
            _seed(self.config.seed + 1000 * self.epoch + self.ctx.rank)

    # ---- records ------------------------------------------------------------------------------
    def summary(self, state: str, reason: str) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        return {
            "state": state, "reason": reason, "epochs_completed": self.epoch,
            "epochs_planned": self.config.epochs, "iterations": self.iteration,
            "best_test_acc": self.best["test_acc"], "best_epoch": self.best["epoch"],
            "last_test_acc": last.get("test_acc"), "last_train_loss": last.get("train_loss"),
            "world_size": self.ctx.world, "global_batch_size": self.config.batch_size,
            "per_rank_batch_size": self.config.batch_size // self.ctx.world,
            "iterations_per_epoch": self.iters_per_epoch,
            "num_parameters": sum(p.numel() for p in self.net.parameters()
                                  if id(p) not in self.init_ids),
            "num_init_parameters": sum(p.numel() for p in self.init_params),
            "device": str(self.device), "dtype": self.config.dtype,
            "wall_time_s": time.time() - self.started,
        }

    def write(self, state: str, reason: str = "") -> RunResult:
        summary = self.summary(state, reason)
        if self.ctx.main:
            write_json_atomic(self.out_dir / "metrics.json",
                              {"summary": summary, "history": self.history})
            write_json_atomic(self.out_dir / "status.json", {
                "state": state, "reason": reason, "experiment": self.config.name,
                "profile": self.profile, "epoch": self.epoch, "pid": os.getpid(),
                "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            })
        return RunResult(self.config.name, self.profile, self.out_dir, state, reason,
                         list(self.history), summary)

    def log(self, record: dict[str, Any]) -> None:
        if self.quiet:
            return
        nfe = record.get("nfe_forward")
        nfe_text = "" if nfe is None else f"  nfe {nfe:.1f}/{record.get('nfe_backward') or 0:.1f}"
        print(
            f"[{self.config.name}] epoch {record['epoch']}/{self.config.epochs}  "
            f"train loss {record['train_loss']:.4f} acc {record['train_acc']:.4f}  "
            f"test loss {record['test_loss']:.4f} acc {record['test_acc']:.4f}"
            f"{nfe_text}  {record['epoch_time_s']:.1f}s",
            flush=True,
        )


def fit(
    config: TrainConfig,
    *,
    profile: str,
    device: str | torch.device = "auto",
    results_dir: str | os.PathLike = "results",
    data_root: str | os.PathLike = "data",
    resume: bool = False,
    max_epochs: int | None = None,
    download: bool = False,
    progress: bool | None = None,
    quiet: bool = False,
    threads: int | None = None,
) -> RunResult:
    """Train ``config`` and write its records to ``<results_dir>/<profile>/<config.name>/``.

    ``device``: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N`` (under torchrun the
    index comes from ``LOCAL_RANK``). ``resume``: continue from ``checkpoint.pt`` when it exists
    (the configuration must be unchanged). ``max_epochs``: stop once this many epochs are
    complete, without changing the schedule (status ``stopped``; resume later). ``progress``:
    tqdm bar (``None`` = only on a terminal). ``threads``: torch CPU threads for this run
    (restored afterwards; ``None`` keeps the current setting — on a small shared CPU one thread is
    often faster than several). Relative folders are taken relative to the repository root.
    Side effect: the global Python, NumPy and torch RNGs are seeded from ``config.seed`` (and
    restored from the checkpoint on resume). Returns a :class:`RunResult`; a failed run returns
    ``failed=True``.
    """
    check_profile(profile)
    if max_epochs is not None and max_epochs < 0:
        raise ValueError(f"max_epochs must be >= 0, got {max_epochs}")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        torch.set_num_threads(threads)
    try:
        return _fit(config, profile, device, results_dir, data_root, resume, max_epochs, download,
                    progress, quiet)
    finally:
        torch.set_num_threads(previous_threads)


def _fit(config, profile, device, results_dir, data_root, resume, max_epochs, download, progress,
         quiet) -> RunResult:
    out_dir = resolve(results_dir) / profile / config.name
    trainer = _Trainer(config, profile, device, out_dir, resolve(data_root), download,
                       progress, quiet)
    try:
        checkpoint = out_dir / "checkpoint.pt"
        if resume and checkpoint.is_file():
            trainer.load_checkpoint(checkpoint)
        elif trainer.ctx.main:
            if resume and not trainer.quiet:
                print(f"[{config.name}] no checkpoint at {checkpoint}; starting afresh", flush=True)
            out_dir.mkdir(parents=True, exist_ok=True)
            if checkpoint.is_file():  # a fresh start never silently destroys a long run
                checkpoint.replace(out_dir / "checkpoint.previous.pt")
        if trainer.ctx.main:
            write_json_atomic(out_dir / "config.json", {
                "experiment": config.name, "profile": profile, "config": config.to_dict(),
                "world_size": trainer.ctx.world, "environment": environment_record(trainer.device),
            })
        stop_at = config.epochs if max_epochs is None else min(config.epochs, max_epochs)
        stop_at = rehearsal.epochs(stop_at)
        trainer.write("running")
        try:
            while trainer.epoch < stop_at:
                record = trainer.run_epoch()
                trainer.save_checkpoint()
                trainer.write("running")
                trainer.log(record)
        except _RunFailed as err:
            reason = f"epoch {trainer.epoch + 1}, iteration {trainer.iteration}: {err}"
            if not trainer.quiet:
                print(f"[{config.name}] FAILED: {reason}", file=sys.stderr, flush=True)
            return trainer.write("failed", reason)
        except KeyboardInterrupt:
            trainer.write("stopped", f"interrupted during epoch {trainer.epoch + 1}")
            raise
        except Exception as err:
            trainer.write("failed", f"{type(err).__name__}: {err}")
            raise
        if trainer.epoch >= config.epochs:
            return trainer.write("completed")
        return trainer.write(
            "stopped", f"max_epochs={max_epochs} reached; continue with resume=True / --resume"
        )
    finally:
        trainer.close()


def load_result(out_dir: str | os.PathLike) -> dict[str, Any]:
    """``metrics.json`` of a finished or running run, with its ``status.json`` merged in."""
    out = Path(out_dir)
    record = read_json(out / "metrics.json")
    record["status"] = read_json(out / "status.json")
    return record


__all__ = ["InitPointConfig", "RunResult", "TrainConfig", "fit", "load_result"]
