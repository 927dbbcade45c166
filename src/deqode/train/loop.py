"""The training loop: :class:`Trainer` (one run's state, :meth:`Trainer.train_step`, epochs,
records) and :func:`fit`, its entry point. What is learnt comes from the run's
:class:`~deqode.train.tasks.Task`; a model's extra update from :mod:`deqode.train.hooks`."""

from __future__ import annotations

import itertools
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torch.utils.data.distributed import DistributedSampler

from deqode import metrics, rehearsal
from deqode.choices import check_profile
from deqode.environment import environment_record, write_package_list
from deqode.errors import SolverFailure
from deqode.paths import resolve
from deqode.results import read_json, write_json_atomic
from deqode.train import gradient_norm
from deqode.train.batches import Stream, StreamEpochs, TensorBatches
from deqode.train.checkpoints import resume_checkpoint, save_checkpoint, shelve_for_fresh_start
from deqode.train.config import DTYPES, RunResult, TrainConfig
from deqode.train.hooks import separate_update
from deqode.train.progress import Progress
from deqode.train.rng import seed_everything, setup
from deqode.train.schedules import Schedule, initial_lr
from deqode.train.tasks import make_task


class RunFailed(Exception):
    """A training or evaluation step went bad; the message is the reason."""


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


class Trainer:
    """The state of one run; :func:`fit` is the entry point, :meth:`train_step` one iteration."""

    def __init__(self, config, profile, device, out_dir, data_root, download, progress, quiet):
        self.config, self.profile, self.out_dir = config, profile, out_dir
        self.task = make_task(config.task)
        self.ctx, self.device = setup(device)
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
        if config.seed is not None:
            seed_everything(config.seed)  # identical initial weights on every rank
        self.net = _build_model(config).to(self.device, self.dtype)
        self._make_loaders(train_set, test_set)
        self._make_optimisers()
        self.model: nn.Module = self.net
        if self.ctx.enabled:
            names = [n for n, p in self.net.named_parameters() if id(p) in self.update_ids]
            nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                self.net, names
            )
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.net, device_ids=ids)
        if config.seed is not None:  # different dropout masks on different ranks
            seed_everything(config.seed + self.ctx.rank)
        self.epoch, self.iteration = 0, 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] = {self.task.selection: None, "epoch": None}
        self.meter = metrics.SavedTensorMeter()
        self.params = list(self.net.parameters())
        first = self.params[0] if self.params else None
        self.uniform_params = first is not None and first.device.type in ("cpu", "cuda") and all(
            type(p.data) is torch.Tensor and p.device == first.device and p.dtype == first.dtype
            for p in self.params)
        self.reset_nfe = metrics.nfe_resetter(self.net)  # looked up once, called every step
        sync = getattr(self.net, "sync_nfe", None)
        self.sync_nfe = sync if callable(sync) else None
        self._held: Any = None
        self.start: dict[str, Any] | None = None  # TrainConfig.evaluate_at_start
        self.batch_in_epoch = 0
        self.steps: list[dict[str, Any]] | None = None  # TrainConfig.record_steps
        self.started = time.time()
        self.reporter = Progress(config.name, self.epochs,
                                 rehearsal.steps(self.iters_per_epoch))

    def _make_loaders(self, train_set: Dataset, test_set: Dataset) -> None:
        cfg, ctx = self.config, self.ctx
        pin = self.device.type == "cuda"
        per_rank = rehearsal.batch_size(cfg.batch_size // ctx.world)
        workers = rehearsal.loader_workers(cfg.num_workers)
        self.sampler = self.generator = self.stream = None
        if cfg.data_order == "stream":
            self.stream = train_set
            self.train_loader: Any = StreamEpochs(train_set, cfg.batch_size, cfg.iterations)
            self.test_loader: Any = None
            self.iters_per_epoch = cfg.batch_size
            return
        if cfg.data_order == "sampler":
            self.sampler = DistributedSampler(
                train_set, num_replicas=ctx.world, rank=ctx.rank, shuffle=True, seed=cfg.seed,
                drop_last=True,
            )
            order: dict[str, Any] = {"sampler": self.sampler}
        elif ctx.enabled:
            raise ValueError(f"data_order={cfg.data_order!r} runs in one process only; "
                             "use data_order='sampler' under torchrun")
        elif cfg.data_order == "shuffle":
            self.generator = torch.Generator().manual_seed(cfg.shuffle_seed)
            order = {"shuffle": True, "generator": self.generator}
        if cfg.data_order in ("in_order", "full_batch"):
            size = rehearsal.batch_size(len(train_set)) if cfg.data_order == "full_batch" \
                else per_rank
            self.train_loader = TensorBatches(train_set, size, cfg.drop_last)
        else:
            self.train_loader = DataLoader(
                train_set, batch_size=per_rank, drop_last=cfg.drop_last,
                num_workers=workers, pin_memory=pin, **order,
            )
        shard = Subset(test_set, range(ctx.rank, len(test_set), ctx.world))  # no padding
        self.test_loader = DataLoader(
            shard, batch_size=rehearsal.batch_size(max(cfg.test_batch_size // ctx.world, 1)),
            shuffle=False,
            num_workers=workers, pin_memory=pin,
        )
        if cfg.data_order in ("in_order", "full_batch"):  # no DataLoader: no draw from the RNG
            self.test_loader = TensorBatches(test_set, rehearsal.batch_size(cfg.test_batch_size))
        self.iters_per_epoch = len(self.train_loader)
        if self.iters_per_epoch == 0:
            raise ValueError(
                f"no training iteration: {len(train_set)} samples, global batch {cfg.batch_size}"
            )

    def _make_optimisers(self) -> None:
        cfg, net = self.config, self.net
        ip = cfg.init_point
        self.update = separate_update(net, ip.lr, ip.freq)
        get_init = getattr(net, "init_parameters", None)
        if self.update is None and callable(get_init) and list(get_init()):
            raise ValueError(f"model {cfg.model!r} has init parameters but no separate_update() "
                             "to train them (see deqode.train.hooks)")
        update_params = [] if self.update is None else list(self.update.parameters)
        self.update_ids = {id(p) for p in update_params}
        main = [p for p in net.parameters() if p.requires_grad and id(p) not in self.update_ids]
        lr = initial_lr(cfg)
        if cfg.optimizer in ("adam", "adamw"):
            adam = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
            self.optimizer = adam(main, lr=lr, eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(
                main, lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                nesterov=cfg.nesterov,
            )
        total, self.epochs = cfg.budget(self.iters_per_epoch)  # optimiser steps, epochs
        self.schedule = Schedule(cfg, self.optimizer, self.iters_per_epoch)
        self.update_optimizer = self.update_scheduler = None
        if self.update is not None:
            self.update_optimizer = torch.optim.SGD(update_params, lr=self.update.lr,
                                                    momentum=0.0)
            self.update_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.update_optimizer, max(total // ip.scheduler_divisor, 1), eta_min=ip.eta_min
            )
        model_ids = {id(p) for p in net.parameters()}
        self.update_params = update_params
        self.extra_update_params = [p for p in update_params if id(p) not in model_ids]

    # ---- collective helpers -------------------------------------------------------------------
    def agree(self, failure: str | None) -> None:
        """Under DDP every rank learns whether any rank failed, and why; a failure raises
        :class:`RunFailed` on every rank."""
        if self.ctx.enabled:
            flag = torch.tensor([0.0 if failure is None else 1.0], device=self.device)
            dist.all_reduce(flag)
            if flag.item() == 0:
                return
            reasons: list[str | None] = [None] * self.ctx.world
            dist.all_gather_object(reasons, failure)
            failure = "; ".join(f"rank {r}: {m}" for r, m in enumerate(reasons) if m)
        if failure is not None:
            raise RunFailed(failure)

    def _average_update_grads(self) -> None:
        for p in self.update_params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            if self.ctx.enabled:
                dist.all_reduce(p.grad)
                p.grad /= self.ctx.world

    # ---- one iteration ------------------------------------------------------------------------
    def train_step(self, batch: Any, acc: metrics.Accumulator, timer: metrics.PhaseTimer
                   ) -> float:
        """One training iteration on ``batch`` (as the loader yields it): forward and loss,
        failure checks (agreed over ranks), backward, the optimiser and schedule step and the
        model's separate update; ``timer`` times the phases ``forward``, ``backward`` and
        ``step``; the task's metrics, the gradient norm and the NFE go to ``acc``. Returns the
        batch loss; raises :class:`RunFailed` before a bad update is applied."""
        cfg, net, task = self.config, self.net, self.task
        batch = task.prepare(batch, self.device, self.dtype)
        self.schedule.before_step(self.epoch, self.batch_in_epoch)
        cpu_started = time.process_time() if self.steps is not None else 0.0
        self.optimizer.zero_grad(set_to_none=True)
        if self.update_optimizer is not None:
            self.update_optimizer.zero_grad(set_to_none=True)
        if self.reset_nfe is not None:
            self.reset_nfe()
        failure = None
        meter = self.meter.track(exclude=self.params) if cfg.measure_memory else nullcontext()
        with meter:
            started = timer.now()
            try:
                loss, outputs = task.loss(self.model, batch, cfg)
                seconds = timer.add("forward", started) - started
                self._held = None
                loss_value = loss.item()
                failure = task.check(loss_value, outputs, cfg)
            except SolverFailure as err:
                failure = f"solver failure in forward: {err}"
            self.agree(failure)
            nfe_forward, _ = metrics.read_nfe(net)
            try:
                started = timer.now()
                loss.backward()
                if self.sync_nfe is not None:
                    self.sync_nfe()  # counters that only the model can settle after backward
                seconds += timer.add("backward", started) - started
            except SolverFailure as err:
                raise RunFailed(f"solver failure in backward: {err}") from err
        _, nfe_backward = metrics.read_nfe(net)
        grad_norm = self._grad_norm()
        if not math.isfinite(grad_norm):
            raise RunFailed(f"non-finite gradient norm ({grad_norm})")
        task.train_metrics(acc, batch, outputs, loss_value)  # outputs: no parameter, unchanged
        started = timer.now()
        self.apply_update()
        if self.update is not None and self.iteration % self.update.every == 0:
            self._separate_step(acc)
        seconds += timer.add("step", started) - started
        if self.steps is not None:  # time: forward + backward + update, without the checks
            nfe = [int(v or 0) for v in metrics.read_nfe(net)]
            self.steps.append({"time": seconds, "cpu_time": time.process_time() - cpu_started,
                               "loss": loss_value,
                               **task.step_record(batch, outputs), "nfe_forward": nfe[0],
                               "nfe_backward": nfe[1]})
        acc.add("grad_norm", grad_norm)
        if nfe_forward is not None:
            acc.add("nfe_forward", nfe_forward)
        if nfe_backward is not None:
            acc.add("nfe_backward", nfe_backward)
        self.iteration += 1
        self.batch_in_epoch += 1
        self.last_nfe_forward = nfe_forward
        # What backward does not free (e.g. an implicit-gradient DEQ's graph) stays referenced
        # until the next step's loss is computed, so the saved-tensor peak counts it as it did
        # when the epoch was one function; released at the end of the epoch.
        self._held = (loss, outputs)
        return loss_value

    def _grad_norm(self) -> float:
        """The 2-norm of all gradients: :func:`deqode.train.gradient_norm.total_norm` (one C loop
        on the CPU) when every parameter has one device and dtype (:attr:`uniform_params`), else
        ``nn.utils.get_total_norm``."""
        grads = [g for g in (p.grad for p in self.params) if g is not None]
        if not self.uniform_params and grads:
            return float(nn.utils.get_total_norm(grads))
        return gradient_norm.total_norm(grads)

    def apply_update(self) -> None:
        """The main optimiser's step on the current gradients and the schedule's step."""
        self.optimizer.step()
        self.schedule.after_step()

    def _separate_step(self, acc: metrics.Accumulator) -> None:
        """The model's separate update (:mod:`deqode.train.hooks`)."""
        update = self.update
        aux_loss = update.loss()
        self.agree(None if torch.isfinite(aux_loss) else f"non-finite {update.name} loss")
        aux_loss.backward()
        self._average_update_grads()
        self.update_optimizer.step()
        self.update_scheduler.step()
        acc.add(f"{update.name}_loss", aux_loss.detach().item())

    # ---- one epoch ----------------------------------------------------------------------------
    def _train_epoch(self) -> dict[str, Any]:
        from tqdm import tqdm  # text bar; tqdm.auto needs ipywidgets in notebooks

        self.model.train()
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch)
        if self.stream is not None:
            self.train_loader.epoch = self.epoch
        self.batch_in_epoch = 0
        self.steps = [] if self.config.record_steps else None
        acc, timer = metrics.Accumulator(), metrics.PhaseTimer(self.device)
        self.meter.reset_peak()
        bar = tqdm(self.train_loader, desc=f"epoch {self.epoch + 1}/{self.epochs}",
                   disable=not self.progress, leave=False, dynamic_ncols=True)
        budget = self.config.iterations  # a step budget may end the run part-way this epoch
        batches = bar if budget is None else itertools.islice(bar, budget - self.iteration)
        for batch in rehearsal.capped(batches):
            loss_value = self.train_step(batch, acc, timer)
            if self.progress:
                bar.set_postfix(loss=f"{loss_value:.3f}", nfe=self.last_nfe_forward)
            if self.ctx.main and self.reporter.due():
                self.reporter.step(self.epoch, self.batch_in_epoch,
                                   {k: acc.mean(k) for k in acc.sums})
        bar.close()
        self._held = None
        self.schedule.after_epoch()
        acc.all_reduce(self.device)
        record = {k: acc.mean(k) for k in sorted(acc.sums)}
        record.update(timer.record())
        if self.steps is not None:
            record["steps"] = self.steps
        return record

    def evaluate_model(self, timer: metrics.PhaseTimer | None = None) -> dict[str, Any]:
        """The task's own evaluation of the model (:class:`~deqode.train.tasks.FunctionTask`)."""
        timer = timer or metrics.PhaseTimer(self.device)
        with timer.phase("eval"), torch.enable_grad():
            try:
                return self.task.evaluate_model()
            except SolverFailure as err:
                raise RunFailed(f"solver failure in evaluation: {err}") from err

    @torch.no_grad()
    def _evaluate(self) -> dict[str, Any]:
        if self.task.evaluates_model:
            timer = metrics.PhaseTimer(self.device)
            return {**self.evaluate_model(timer), **timer.record()}
        net = self.net
        net.eval()
        acc, timer = metrics.Accumulator(), metrics.PhaseTimer(self.device)
        for batch in rehearsal.capped(self.test_loader):
            batch = self.task.prepare(batch, self.device, self.dtype)
            metrics.reset_nfe(net)
            with timer.phase("eval"):
                try:
                    self.task.evaluate(net, batch, acc)
                except SolverFailure as err:
                    raise RunFailed(f"solver failure in evaluation: {err}") from err
            nfe_forward, _ = metrics.read_nfe(net)
            if nfe_forward is not None:
                acc.add("test_nfe_forward", nfe_forward)
        acc.all_reduce(self.device)
        record = {k: acc.mean(k) for k in sorted(acc.sums)}
        if (failure := self.task.check_evaluation(record)) is not None:
            raise RunFailed(failure)
        record.update(timer.record())
        return record

    def run_epoch(self) -> dict[str, Any]:
        start = time.perf_counter()
        metrics.cuda_peak_reset(self.device)
        record: dict[str, Any] = {"epoch": self.epoch + 1}
        record.update(self._train_epoch())
        record["saved_tensor_peak_mb"] = (self.meter.peak_bytes / metrics.MB
                                          if self.config.measure_memory else None)
        record["cuda_peak_mb"] = metrics.cuda_peak_mb(self.device)
        record.update(self._evaluate())
        record.update(self.task.derived(record))
        record["lr"] = self.optimizer.param_groups[0]["lr"]
        if self.update is not None:
            record[f"lr_{self.update.name}"] = self.update_optimizer.param_groups[0]["lr"]
        record["iterations"] = self.iteration
        record["epoch_time_s"] = time.perf_counter() - start
        self.epoch += 1
        metric, best = self.task.selection, self.best[self.task.selection]
        value = record[metric]
        if best is None or (value > best if self.task.maximise else value < best):
            self.best = {metric: value, "epoch": self.epoch}
        record[f"best_{metric}"], record["best_epoch"] = self.best[metric], self.best["epoch"]
        self.history.append(record)
        return record

    # ---- records ------------------------------------------------------------------------------
    def summary(self, state: str, reason: str) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        return {
            "state": state, "reason": reason, "epochs_completed": self.epoch,
            "epochs_planned": self.epochs, "iterations": self.iteration,
            **self.task.summary(self.best, last),
            "world_size": self.ctx.world, "global_batch_size": self.config.batch_size,
            "per_rank_batch_size": self.config.batch_size // self.ctx.world,
            "iterations_per_epoch": self.iters_per_epoch,
            "num_parameters": sum(p.numel() for p in self.net.parameters()
                                  if id(p) not in self.update_ids),
            "num_init_parameters": sum(p.numel() for p in self.update_params),
            "device": str(self.device), "dtype": self.config.dtype,
            "wall_time_s": time.time() - self.started,
        }

    def write(self, state: str, reason: str = "") -> RunResult:
        summary = self.summary(state, reason)
        if self.ctx.main:
            write_json_atomic(self.out_dir / "metrics.json", {
                "summary": summary, "history": self.history,
                **({} if self.start is None else {"start": self.start})})
            write_json_atomic(self.out_dir / "status.json", {
                "state": state, "reason": reason, "experiment": self.config.name,
                "profile": self.profile, "epoch": self.epoch, "pid": os.getpid(),
                "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            })
            if state != "running":
                self.reporter.end(state, reason)
        return RunResult(self.config.name, self.profile, self.out_dir, state, reason,
                         list(self.history), summary, self.net)

    def log(self, record: dict[str, Any]) -> None:
        """The epoch's progress line to the progress logger, and printed unless quiet."""
        if not self.ctx.main:
            return
        line = self.reporter.epoch_line(record, self.task.log_text(record))
        if not self.quiet:
            print(line, flush=True)


def probe_trainer(model: nn.Module, batch: Any, *, lr: float = 1e-3,
                  device: str | torch.device = "cpu", task: str = "classification") -> Trainer:
    """A :class:`Trainer` of ``model`` (Adam at ``lr``, constant) on the one ``batch``, without
    records or checkpoints: for probes that time :meth:`Trainer.train_step` (phases
    ``forward``, ``backward``, ``step``) or :meth:`Trainer.apply_update`, the step training runs.
    """
    first = next(model.parameters())
    dtype = next(k for k, v in DTYPES.items() if v == first.dtype)
    config = TrainConfig(
        name="probe", model=lambda: model, task=task, data_order="stream",
        dataset=lambda split: Stream(lambda _: batch), iterations=1, batch_size=1, epochs=1,
        lr=lr, schedule="constant", seed=None, dtype=dtype, measure_memory=False)
    return Trainer(config, "smoke", device, None, None, False, False, True)


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
    on_epoch: Callable[[dict[str, Any]], bool] | None = None,
) -> RunResult:
    """Train ``config`` and write its records to ``<results_dir>/<profile>/<config.name>/``.

    ``device``: ``auto`` (CUDA when present), ``cpu``, ``cuda`` or ``cuda:N`` (under torchrun the
    index comes from ``LOCAL_RANK``). ``resume``: continue from ``checkpoint.pt`` when it exists
    (the configuration must be unchanged). ``max_epochs``: stop once this many epochs are
    complete, without changing the schedule (status ``stopped``; resume later). ``progress``:
    tqdm bar (``None`` = only on a terminal). ``threads``: torch CPU threads for this run
    (restored afterwards; ``None`` keeps the current setting — on a small shared CPU one thread is
    often faster than several). ``on_epoch(record)`` is called after every epoch with its
    history record, before the checkpoint (what it adds to the record is kept); returning True
    stops the run there (status ``stopped``; e.g. a search pruning a trial). Relative folders
    are taken relative to the repository root.
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
                    progress, quiet, on_epoch)
    finally:
        torch.set_num_threads(previous_threads)


def _fit(config, profile, device, results_dir, data_root, resume, max_epochs, download, progress,
         quiet, on_epoch) -> RunResult:
    out_dir = resolve(results_dir) / profile / config.name
    trainer = Trainer(config, profile, device, out_dir, resolve(data_root), download,
                      progress, quiet)
    try:
        checkpoint = out_dir / "checkpoint.pt"
        if resume and checkpoint.is_file():
            resume_checkpoint(trainer, checkpoint)  # a damaged one: checkpoint.previous.pt
        elif trainer.ctx.main:
            if resume and not trainer.quiet:
                print(f"[{config.name}] no checkpoint at {checkpoint}; starting afresh", flush=True)
            out_dir.mkdir(parents=True, exist_ok=True)
            shelve_for_fresh_start(out_dir)  # a fresh start never silently destroys a long run
        if trainer.ctx.main:
            write_json_atomic(out_dir / "config.json", {
                "experiment": config.name, "profile": profile, "config": config.to_dict(),
                "world_size": trainer.ctx.world, "environment": environment_record(trainer.device),
            })
            write_package_list(out_dir)
        stop_at = trainer.epochs if max_epochs is None else min(trainer.epochs, max_epochs)
        stop_at = rehearsal.epochs(stop_at)
        trainer.reporter.begin(trainer.epoch, stop_at)
        if config.evaluate_at_start and trainer.start is None:
            trainer.start = trainer.evaluate_model()
        trainer.write("running")
        try:
            while trainer.epoch < stop_at:
                record = trainer.run_epoch()
                stop = on_epoch is not None and on_epoch(record)
                if stop or trainer.epoch % config.checkpoint_every == 0 \
                        or trainer.epoch == stop_at:
                    save_checkpoint(trainer)
                    trainer.write("running")
                trainer.log(record)
                if stop and trainer.epoch < stop_at:
                    return trainer.write("stopped", f"stopped by on_epoch after epoch "
                                                    f"{trainer.epoch}")
        except RunFailed as err:
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
        if trainer.epoch >= trainer.epochs:
            return trainer.write("completed")
        return trainer.write("stopped", rehearsal.stop_reason(max_epochs))
    finally:
        trainer.close()


def load_result(out_dir: str | os.PathLike) -> dict[str, Any]:
    """``metrics.json`` of a finished or running run, with its ``status.json`` merged in."""
    out = Path(out_dir)
    record = read_json(out / "metrics.json")
    record["status"] = read_json(out / "status.json")
    return record


__all__ = ["RunFailed", "Trainer", "fit", "load_result", "probe_trainer"]
