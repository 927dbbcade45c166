"""Random search (paper profile): Optuna or a dependency-free random backend.

Both stand in for the official code's Ray Tune random search with an ASHA scheduler.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from deqode.chapters.sim.configs import SEARCH_BACKENDS, TASKS, ModelSpec, build_model
from deqode.chapters.sim.loops import (
    train_classifier,
    train_copy_memory,
    train_regression,
)
from deqode.choices import check_choice

# --------------------------------------------------------------------------------------------------
# random search (paper profile)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]


@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float


@dataclass(frozen=True)
class QRandInt:
    """Integers ``low, low + q, …, high`` (Ray's ``qrandint``, upper bound included)."""

    low: int
    high: int
    q: int


@dataclass(frozen=True)
class RandInt:
    """Integers in ``[low, high)`` (Ray's ``randint``)."""

    low: int
    high: int


Distribution = Choice | LogUniform | QRandInt | RandInt


@dataclass(frozen=True)
class SearchSettings:
    """The official protocol per task (official code ``run_imgcl.py``, ``run_imgreg.py``,
    ``run_cpmem.py``): samples, metric, ASHA settings."""

    num_samples: int
    metric: str
    mode: str
    max_t: int
    grace_period: int
    reduction_factor: int = 2


SEARCH_SETTINGS: dict[str, SearchSettings] = {
    "classification": SearchSettings(200, "val_acc", "max", 80, 5),
    "regression": SearchSettings(200, "val_psnr", "max", 100, 5),
    "copy-memory": SearchSettings(100, "val_loss", "min", 6, 3),
}

_SEED = RandInt(0, 10_000)
_WIDTHS = Choice((32, 64, 128, 256, 512))
_BANDWIDTH = LogUniform(1e-3, 1e3)
_LR = LogUniform(1e-4, 0.05)
_CLS = {"train_batch_size": Choice((64, 128, 256, 512)), "epochs": Choice((20, 40, 60, 80)),
        "max_lr": _LR, "lr_mode": Choice(("1cycle", "step", "constant")),
        "steplr_step": QRandInt(5, 50, 5), "seed": _SEED}
_CPM = {"batch_size": Choice((1, 2, 5, 10, 20)), "lr": _LR, "seed": _SEED}
SEARCH_SPACES: dict[tuple[str, str], dict[str, Distribution]] = {
    ("classification", "single-tier"): dict(_CLS),
    ("classification", "two-tier"): {**_CLS, "bandwidth": _BANDWIDTH},
    ("regression", "single-tier"): {"lr": _LR, "tier_dim": _WIDTHS, "basis_dim": _WIDTHS,
                                    "seed": _SEED},
    ("regression", "two-tier"): {"lr": _LR, "basis_dim": _WIDTHS, "first_tier_dim": _WIDTHS,
                                 "second_tier_dim": _WIDTHS, "bandwidth": _BANDWIDTH,
                                 "seed": _SEED},
    ("regression", "rff-only"): {"lr": _LR, "tier_dim": _WIDTHS, "bandwidth": _BANDWIDTH,
                                 "seed": _SEED},
    ("copy-memory", "single-tier"): dict(_CPM),
    ("copy-memory", "two-tier"): {**_CPM, "bandwidth": _BANDWIDTH},
}


def search_space(task: str, variant: str) -> dict[str, Distribution]:
    """The official search space of ``task`` × SIM ``variant`` (official code ``run_imgcl.py``,
    ``run_imgreg.py``, ``run_cpmem.py``)."""
    check_choice("task", task, TASKS)
    valid = [v for t, v in SEARCH_SPACES if t == task]
    check_choice(f"SIM variant for task {task!r}", variant, valid)
    return dict(SEARCH_SPACES[task, variant])


def sample_config(space: Mapping[str, Distribution], rng: np.random.Generator) -> dict[str, Any]:
    """One random configuration (the dependency-free sampler)."""
    config: dict[str, Any] = {}
    for key, dist in space.items():
        if isinstance(dist, Choice):
            config[key] = dist.values[int(rng.integers(len(dist.values)))]
        elif isinstance(dist, LogUniform):
            config[key] = float(np.exp(rng.uniform(np.log(dist.low), np.log(dist.high))))
        elif isinstance(dist, QRandInt):
            steps = (dist.high - dist.low) // dist.q + 1
            config[key] = dist.low + dist.q * int(rng.integers(steps))
        elif isinstance(dist, RandInt):
            config[key] = int(rng.integers(dist.low, dist.high))
        else:
            raise TypeError(f"unknown distribution {dist!r} for {key!r}")
    return config


def suggest_config(space: Mapping[str, Distribution], trial: Any) -> dict[str, Any]:
    """One configuration drawn through an Optuna ``trial`` (``suggest_*`` API)."""
    config: dict[str, Any] = {}
    for key, dist in space.items():
        if isinstance(dist, Choice):
            config[key] = trial.suggest_categorical(key, list(dist.values))
        elif isinstance(dist, LogUniform):
            config[key] = trial.suggest_float(key, dist.low, dist.high, log=True)
        elif isinstance(dist, QRandInt):
            config[key] = trial.suggest_int(key, dist.low, dist.high, step=dist.q)
        elif isinstance(dist, RandInt):
            config[key] = trial.suggest_int(key, dist.low, dist.high - 1)
        else:
            raise TypeError(f"unknown distribution {dist!r} for {key!r}")
    return config


@dataclass
class TrialRecord:
    """One trial: its configuration, the reported ``(step, value)`` pairs and whether it stopped
    early (``pruned``: by the pruner; ``truncated``: at ``max_t``)."""

    config: dict[str, Any]
    values: list[tuple[int, float]] = field(default_factory=list)
    pruned: bool = False
    truncated: bool = False

    @property
    def last(self) -> float:
        return self.values[-1][1] if self.values else math.nan


@dataclass
class SearchResult:
    best_config: dict[str, Any]
    best_value: float
    trials: list[TrialRecord]
    backend: str
    settings: SearchSettings


Objective = Callable[[dict[str, Any], Callable[[int, float], bool]], None]


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError as err:  # optional dependency
        raise ImportError(
            "the SIM search driver's 'optuna' backend needs Optuna, an optional dependency: "
            "pip install 'deqode[tune]' (or pip install optuna); backend='random' runs without it"
        ) from err
    return optuna


def _select(trials: list[TrialRecord], mode: str) -> TrialRecord:
    """Best trial by its *last* reported value, early-stopped trials included (Ray's
    ``get_best_trial(metric, mode, 'last')``)."""
    scored = [t for t in trials if t.values and math.isfinite(t.last)]
    if not scored:
        raise RuntimeError("no trial reported a finite value")
    return (max if mode == "max" else min)(scored, key=lambda t: t.last)


def run_search(
    objective: Objective,
    task: str,
    variant: str,
    *,
    n_trials: int | None = None,
    seed: int = 777,
    backend: str = "optuna",
    settings: SearchSettings | None = None,
    space: Mapping[str, Distribution] | None = None,
) -> SearchResult:
    """Random search with ASHA-style early stopping, selection by the last reported value.

    ``objective(config, report)`` trains one configuration and calls ``report(step, value)``
    after every epoch (classification, copy memory) or iteration (regression) with the
    validation metric; when ``report`` returns True the objective must stop. ``report`` returns
    True once ``step ≥ max_t`` (the official ASHA ``max_t`` truncation of ``run_*.py``) and, with
    ``backend="optuna"``, when Optuna's ``SuccessiveHalvingPruner(min_resource=grace_period,
    reduction_factor=2)`` prunes the trial (asynchronous successive halving = ASHA).

    ``backend="random"``: the same random search without pruning (no dependency). The sampler is
    seeded with ``seed`` (official global seed 777). ``n_trials`` defaults to the official
    ``num_samples``.
    """
    check_choice("search backend", backend, SEARCH_BACKENDS)
    settings = settings or SEARCH_SETTINGS[check_choice("task", task, TASKS)]
    space = dict(space) if space is not None else search_space(task, variant)
    n_trials = settings.num_samples if n_trials is None else int(n_trials)
    trials: list[TrialRecord] = []

    def reporter(record: TrialRecord, trial: Any | None) -> Callable[[int, float], bool]:
        def report(step: int, value: float) -> bool:
            record.values.append((int(step), float(value)))
            if step >= settings.max_t:
                record.truncated = True
                return True
            if trial is not None:
                trial.report(float(value), int(step))
                if trial.should_prune():
                    record.pruned = True
                    return True
            return False

        return report

    if backend == "random":
        rng = np.random.default_rng(seed)
        for _ in range(n_trials):
            record = TrialRecord(sample_config(space, rng))
            trials.append(record)
            objective(dict(record.config), reporter(record, None))
    else:
        optuna = _import_optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            direction="maximize" if settings.mode == "max" else "minimize",
            sampler=optuna.samplers.RandomSampler(seed=seed),
            pruner=optuna.pruners.SuccessiveHalvingPruner(
                min_resource=settings.grace_period, reduction_factor=settings.reduction_factor),
        )

        def wrapped(trial: Any) -> float:
            record = TrialRecord(suggest_config(space, trial))
            trials.append(record)
            objective(dict(record.config), reporter(record, trial))
            return record.last

        study.optimize(wrapped, n_trials=n_trials)
    best = _select(trials, settings.mode)
    return SearchResult(dict(best.config), best.last, trials, backend, settings)


def split_train_val(dataset: Dataset, fraction: float = 0.9, seed: int = 777
                    ) -> tuple[Dataset, Dataset]:
    """The official tuning split: ``random_split`` 90/10 with the generator seeded 777, so every
    trial sees the same split (the official ``run_*.py`` seed 777 before ``random_split``)."""
    n_train = round(fraction * len(dataset))
    generator = torch.Generator().manual_seed(seed)
    train, val = torch.utils.data.random_split(dataset, [n_train, len(dataset) - n_train],
                                               generator=generator)
    return train, val


def _sim_overrides(task: str, variant: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments of a searched configuration (widths, bandwidth)."""
    out: dict[str, Any] = {}
    if "bandwidth" in config:
        out["bandwidth"] = config["bandwidth"]
    if task == "regression":
        if variant == "single-tier":
            out.update(basis_dim=config["basis_dim"], first_tier_dim=config["tier_dim"])
        elif variant == "two-tier":
            out.update(basis_dim=config["basis_dim"], first_tier_dim=config["first_tier_dim"],
                       second_tier_dim=config["second_tier_dim"])
        else:
            out.update(tier_dim=config["tier_dim"])
    return out


def search_objective(
    task: str, spec: ModelSpec, train_set: Dataset, val_set: Dataset,
    device: torch.device | str = "cpu", full_length: int | None = None,
) -> Objective:
    """The objective of one SIM ``spec`` for :func:`run_search`: seed with the trial's
    ``seed``, build the model with the searched widths / bandwidth, train on ``train_set``,
    report the validation metric per epoch (classification: accuracy, copy memory: loss) or per
    iteration (regression: PSNR). ``full_length``: iterations (regression, default 2000) or
    epochs (copy memory, default 20); classification takes ``epochs`` from the configuration."""
    check_choice("task", task, TASKS)
    variant = spec.variant or "single-tier"

    def objective(config: dict[str, Any], report: Callable[[int, float], bool]) -> None:
        torch.manual_seed(int(config["seed"]))
        model = build_model(spec, **_sim_overrides(task, variant, config))
        if task == "classification":
            train_classifier(model, train_set, val_set, epochs=config["epochs"],
                             batch_size=config["train_batch_size"], lr=config["max_lr"],
                             lr_mode=config["lr_mode"], steplr_step=config["steplr_step"],
                             device=device, report=report)
        elif task == "regression":
            train_regression(model, train_set, val_set, iterations=full_length or 2000,
                             lr=config["lr"], device=device, report=report)
        else:
            train_copy_memory(model, train_set, val_set, epochs=full_length or 20,
                              batch_size=config["batch_size"], lr=config["lr"], device=device,
                              report=report, val_set=val_set)

    return objective




# --------------------------------------------------------------------------------------------------
# stored searches (python -m deqode search)
# --------------------------------------------------------------------------------------------------

SEARCH_FOLDER = "sim-search"


def search_path(results_dir: str | os.PathLike, profile: str, task: str, dataset: str,
                variant: str) -> Path:
    """``<results_dir>/<profile>/sim-search/<task>-<dataset>-<variant>.json``."""
    from deqode.paths import resolve

    return resolve(results_dir) / profile / SEARCH_FOLDER / f"{task}-{dataset}-{variant}.json"


def load_search(path: str | os.PathLike) -> dict[str, Any] | None:
    """A stored search (``best_config``, ``best_value``, ``trials``, ...), or None if absent."""
    from deqode.results import read_json

    return read_json(path) if Path(path).is_file() else None


def classification_search(dataset: str, variant: str, profile: str = "paper", *,
                          n_trials: int | None = None, backend: str = "optuna", seed: int = 777,
                          device: torch.device | str = "cpu", data_root: str = "data",
                          results_dir: str | os.PathLike = "results") -> Path:
    """The random search of T1 for the ``variant`` SIM of the profile's setup on ``dataset``
    (the official 90/10 tuning split of the training set), stored with every trial at
    :func:`search_path`, where ``run_classification(tune=True)`` reads it. Returns the path."""
    from deqode.chapters.sim.configs import classification_setup
    from deqode.data import load_dataset
    from deqode.results import write_json_atomic

    setup = classification_setup(profile)
    check_choice(f"dataset of the {profile} profile", dataset, setup.datasets)
    specs = {s.variant: s for s in setup.models[dataset] if s.kind == "sim"}
    spec = specs[check_choice("SIM variant", variant, specs)]
    train = load_dataset(dataset, root=data_root, split="train", profile=profile, recipe="sim",
                         **setup.data_options)
    fit_part, val_part = split_train_val(train)
    result = run_search(search_objective("classification", spec, fit_part, val_part, device),
                        "classification", variant, n_trials=n_trials, backend=backend, seed=seed)
    path = search_path(results_dir, profile, "classification", dataset, variant)
    write_json_atomic(path, {
        "task": "classification", "dataset": dataset, "variant": variant, "profile": profile,
        "backend": backend, "seed": seed, "settings": asdict(result.settings),
        "best_config": result.best_config, "best_value": result.best_value,
        "trials": [{"config": t.config, "values": [list(v) for v in t.values],
                    "pruned": t.pruned, "truncated": t.truncated} for t in result.trials]})
    return path
