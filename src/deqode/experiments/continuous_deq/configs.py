"""Continuous DEQ chapter (Pal, Edelman & Rackauckas, arXiv 2201.12240): runs, tables, figures.

Everything the chapter's notebooks show comes from here (spec ``continuous-deq.md`` §6):

* **Run configurations** of Tables 1–4 in profiles ``smoke`` and ``paper``, registered with
  :mod:`deqode.experiments` (``python -m deqode train cdeq-t2-skipreg-cont --profile smoke``) and
  trained by :func:`deqode.train.fit`. The models add the skip and Jacobian losses to the gradient
  themselves (:mod:`deqode.models.regularizers`), so ``fit`` trains the paper's total loss.
* **Paper numbers** from ``data/reference/continuous_deq.csv`` (:func:`paper_table`), the
  arithmetic behind every headline claim (:func:`claims`) and the Figure 1 audit
  (:func:`figure1_audit`): four bars sit 0.20 below the ratios of the paper's own tables.
* **Figures**: the linear discrete system (F5, :func:`linear_system`), the architecture
  schematic (F6, :func:`schematic_figure`), Figure 1 (:func:`figure1_figure`) and the training
  curves of Figures 2–4 (:func:`curves_figure`).
* **Timing** at the paper's real sizes with random inputs (:func:`time_variants`,
  :func:`unit_costs`, :func:`cost_model`): timing only, untrained weights.

Profiles. ``paper`` = the Julia code's settings (§3), with these departures forced by the one
training loop (``fit``: Adam with coupled L2 or SGD without Nesterov momentum, schedules by
epochs):
step counts are rounded to whole epochs (CIFAR small 51 epochs = 19,890 steps instead of 20,000;
large 231 epochs = 90,090), the code's decoupled, learning-rate-unscaled weight decay 2.5e-5
(CIFAR small) and AdamW (MNIST code settings) are replaced by no weight decay, and ImageNet
(Nesterov SGD, step schedule, a 1000-class loader deqode.data does not have) is described
(:func:`setup`) but not registered. ``smoke`` = the digits analogues of §6 [reconstruction]:
digits-FC for Table 1 and three digits-MDEQs (2 branches; 4 branches; downsampling stem) for
Tables 2–4, a few short epochs each (Tables 2–4 on a subset of the train split,
:class:`DigitsSubset`), one CPU thread, rows one after another (:func:`setup_summary` states
each budget). Smoke numbers are smoke, never a reproduction.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deqode.choices import check_choice, check_profile
from deqode.experiments import register_dataset_needs, register_experiment
from deqode.results import NOT_TRANSCRIBED, load_reference

PAPER = "continuous_deq"
TABLES = ("T1", "T2", "T3", "T4")
VARIANTS = ("vanilla", "skip", "skip_reg")
LABELS = {"vanilla": "Vanilla DEQ", "skip": "Skip DEQ", "skip_reg": "Skip Reg. DEQ",
          "neural_ode": "Neural ODE"}
PREFIX = {"vanilla": "cdeq", "skip": "skipdeq", "skip_reg": "skipregdeq", "neural_ode": "msnode"}
SHORT = {"vanilla": "vanilla", "skip": "skip", "skip_reg": "skipreg", "neural_ode": "node"}
SOLVER_SHORT = {"continuous": "cont", "discrete": "disc"}
ACCURACY_COLUMN = {"T1": "Test Acc (%)", "T2": "Test Acc (%)", "T3": "Test Acc (%)",
                   "T4": "Test Acc Top-5 (%)"}
TIME_COLUMNS = ("Training (s/batch)", "Backward (s/batch)", "Prediction (s/batch)")
SMOKE_THREADS = 1  # tiny tensors: one thread is faster and immune to a busy CPU


# --------------------------------------------------------------------------------------------------
# run configurations
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One row of a table: a variant, a solver, and (Table 1) Jacobian regularisation and the
    hyperparameter setting (``text`` = the paper's text, ``code`` = the released script)."""

    table: str
    variant: str  # vanilla | skip | skip_reg | neural_ode
    solver: str  # continuous | discrete | neural_ode
    jac: bool = False
    setting: str = ""

    @property
    def name(self) -> str:
        """Experiment name, e.g. ``cdeq-t2-skipreg-cont`` or ``cdeq-t1-skip-jac-text``."""
        parts = ["cdeq", self.table.lower(), SHORT[self.variant]]
        if self.jac:
            parts.append("jac")
        if self.table == "T1":
            parts.append(self.setting)
        elif self.variant != "neural_ode":
            parts.append(SOLVER_SHORT[self.solver])
        return "-".join(parts)

    @property
    def paper_label(self) -> str:
        """The row label of the paper's table (and of the reference CSV)."""
        base = LABELS[self.variant]
        if self.table == "T1":
            return f"{base} + Jac. Reg." if self.jac else base
        if self.variant == "neural_ode":
            return base
        return f"{base} ({self.solver})"

    @property
    def label(self) -> str:
        """Our row label (Table 1 adds the setting and the solver)."""
        if self.table == "T1":
            return f"{self.paper_label} [{self.setting}: {self.solver}]"
        return self.paper_label


@dataclass(frozen=True)
class TableSetup:
    """The training settings of one table in one profile."""

    table: str
    profile: str
    arch: str
    dataset: str
    recipe: str
    epochs: int
    batch_size: int
    test_batch_size: int
    lr: float
    eta_min: float
    schedule: str = "cosine"
    optimizer: str = "adam"
    momentum: float = 0.0
    weight_decay: float = 0.0
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    train_size: int | None = None  # smoke: train on the first N images only (None = all)
    registered: bool = True
    source: str = ""
    departures: str = ""

    @property
    def rows(self) -> tuple[Row, ...]:
        return table_rows(self.table)

    @property
    def dataset_train_size(self) -> int | None:
        """Images in the data set's train split (None where not recorded: ImageNet has no
        loader here)."""
        from deqode import data

        if self.dataset not in data.dataset_names():
            return None
        return (data.dataset_info(self.dataset, self.profile).sizes or {}).get("train")

    @property
    def train_images(self) -> int | None:
        """Images of one training epoch: ``train_size``, else the whole train split."""
        return self.train_size if self.train_size is not None else self.dataset_train_size

    @property
    def steps(self) -> int | None:
        """Optimiser steps of one run (the train loader drops the last partial batch)."""
        images = self.train_images
        return None if images is None else self.epochs * (images // self.batch_size)


@dataclass(frozen=True)
class DigitsSubset:
    """Data set factory of the short smoke runs: the digits test split whole, the train split cut
    to its first ``train_size`` images — a random sample, since sklearn's stratified split is
    shuffled. A picklable callable, as :class:`deqode.train.TrainConfig` accepts for ``dataset``.
    """

    train_size: int
    recipe: str = "cdeq"

    def __call__(self, split: str):
        from torch.utils.data import Subset

        from deqode import data

        dataset = data.load_dataset("digits", split=split, profile="smoke", recipe=self.recipe)
        if split != "train":
            return dataset
        if not 0 < self.train_size <= len(dataset):
            raise ValueError(f"train_size must lie in [1, {len(dataset)}] for the digits train "
                             f"split, got {self.train_size}")
        return Subset(dataset, range(self.train_size))


def table_rows(table: str) -> tuple[Row, ...]:
    """The rows of ``table`` in the paper's order (Table 1: both settings)."""
    check_choice("table", table, TABLES)
    if table == "T1":
        return tuple(Row("T1", v, "continuous" if s == "text" else "discrete", jac, s)
                     for s in ("text", "code") for v in VARIANTS for jac in (False, True))
    rows = [Row(table, v, solver) for v in VARIANTS for solver in ("discrete", "continuous")]
    if table != "T4":
        rows.append(Row(table, "neural_ode", "neural_ode"))
    return tuple(rows)


_SMOKE_COMMON = {"dataset": "digits", "recipe": "cdeq", "schedule": "cosine"}
# Smoke budgets: each notebook must run in about a minute on two cores with another notebook
# beside it, one torch thread each, so the rows get tens of optimiser steps (Table 1) or a
# handful (the MDEQs: 0.1-0.3 s a step whatever the batch up to 64, Python and per-call
# overhead, and an evaluation of the 360 test digits after every epoch). Runs train on the first
# ``train_size`` images of the (shuffled) train split, so that short epochs still give two or
# three evaluation points for the curves of Figures 2-4.
SETUPS: dict[tuple[str, str], TableSetup] = {
    ("T1", "smoke"): TableSetup(
        "T1", "smoke", "digits-fc", epochs=2, batch_size=32, test_batch_size=120, lr=1e-2,
        eta_min=1e-5, source="digits-FC analogue of Table 1 (spec §6) [reconstruction]",
        **_SMOKE_COMMON),
    ("T2", "smoke"): TableSetup(
        "T2", "smoke", "digits-small", epochs=2, batch_size=64, test_batch_size=180, lr=3e-2,
        eta_min=1e-5, train_size=256,
        source="digits-MDEQ analogue of Table 2 (spec §6) [reconstruction]", **_SMOKE_COMMON),
    ("T3", "smoke"): TableSetup(
        "T3", "smoke", "digits-large", epochs=2, batch_size=64, test_batch_size=360, lr=2e-2,
        eta_min=1e-5, model_kwargs={"max_steps": 8}, train_size=256,
        source="4-branch digits-MDEQ analogue of Table 3 (spec §6) [reconstruction]",
        **_SMOKE_COMMON),
    ("T4", "smoke"): TableSetup(
        "T4", "smoke", "digits-ds", epochs=3, batch_size=64, test_batch_size=360, lr=2e-2,
        eta_min=1e-5, train_size=512, source="digits-MDEQ with a downsampling stem, analogue "
        "of Table 4 (spec §6) [reconstruction]", **_SMOKE_COMMON),
    ("T1", "paper"): TableSetup(
        "T1", "paper", "mnist-fc", "mnist", "cdeq", epochs=25, batch_size=32, test_batch_size=32,
        lr=1e-3, eta_min=1e-6, source="v1 mnist_fc.jl (code settings) and the v4 text "
        "(continuous-deq.md §3.1)",
        departures="code setting: AdamW(wd 2.5e-6) → Adam without decay (fit has no AdamW); "
        "6 MPI ranks × 32 → one process, batch 32"),
    ("T2", "paper"): TableSetup(
        "T2", "paper", "cifar10-small", "cifar10", "cdeq", epochs=51, batch_size=128,
        test_batch_size=128, lr=1e-3, eta_min=1e-5, model_kwargs={"pretrain_steps": 3000},
        source="experiments/cifar10/tiny.yml at d18c610 (continuous-deq.md §3.3)",
        departures="51 epochs = 19,890 steps (code: 20,000); decoupled weight decay 2.5e-5 "
        "(not lr-scaled) → none"),
    ("T3", "paper"): TableSetup(
        "T3", "paper", "cifar10-large", "cifar10", "cdeq-large", epochs=231, batch_size=128,
        test_batch_size=128, lr=1e-3, eta_min=1e-5,
        source="experiments/cifar10/large.yml at d18c610 (continuous-deq.md §3.3)",
        departures="231 epochs = 90,090 steps (code: 90,000)"),
    ("T4", "paper"): TableSetup(
        "T4", "paper", "imagenet-small", "imagenet", "", epochs=25, batch_size=64,
        test_batch_size=64, lr=0.05, eta_min=0.0, schedule="step", optimizer="nesterov",
        momentum=0.9, weight_decay=1e-6, registered=False,
        source="experiments/imagenet/small.yml at d18c610 (continuous-deq.md §3.3)",
        departures="not runnable here: deqode.data has no ImageNet loader and deqode.train.fit "
        "no Nesterov momentum (500k steps × batch 64 also exceed the companion's budget); "
        "the settings are listed for the record"),
}


def setup(table: str, profile: str) -> TableSetup:
    """The settings of ``table`` (T1–T4) in ``profile``."""
    check_choice("table", table, TABLES)
    check_profile(profile)
    return SETUPS[(table, profile)]


def row_kwargs(row: Row, s: TableSetup) -> dict[str, Any]:
    """Model constructor overrides of ``row`` under ``s`` (solver, λ_skip, λ_jac, ...)."""
    kwargs: dict[str, Any] = dict(s.model_kwargs)
    if row.variant != "neural_ode":
        kwargs["solver"] = row.solver
    if row.jac:
        kwargs["jac_weight"] = 1.0
    if row.table == "T1" and row.setting == "code" and row.variant != "vanilla":
        kwargs["skip_weight"] = 5.0  # the v1 script's λ_skip (text: 0.01)
    return kwargs


def train_config(row: Row, profile: str, *, seed: int = 0, **changes: Any):
    """The :class:`deqode.train.TrainConfig` of ``row`` in ``profile`` (``changes`` override)."""
    from deqode.train import TrainConfig

    s = setup(row.table, profile)
    if not s.registered:
        raise ValueError(f"{row.table} cannot be trained in profile {profile!r}: {s.departures}")
    schedule, eta_min = s.schedule, s.eta_min
    if row.table == "T1" and row.setting == "text":
        schedule = "constant"  # the text: Adam with a constant learning rate
    dataset: Any = s.dataset
    if s.train_size is not None:
        if s.dataset != "digits":
            raise ValueError(f"train_size is only supported on digits, not {s.dataset!r}")
        dataset = DigitsSubset(s.train_size, s.recipe)
    config = TrainConfig(
        name=row.name, model=f"{PREFIX[row.variant]}-{s.arch}", dataset=dataset,
        model_kwargs=row_kwargs(row, s), epochs=s.epochs, batch_size=s.batch_size,
        test_batch_size=s.test_batch_size, dataset_kwargs={"recipe": s.recipe},
        optimizer=s.optimizer, lr=s.lr, momentum=s.momentum, weight_decay=s.weight_decay,
        schedule=schedule, eta_min=eta_min, seed=seed,
        description=f"{s.source}; {row.label}" + (f"; departures: {s.departures}"
                                                   if s.departures else ""),
    )
    return config.replace(**changes) if changes else config


def _register() -> None:
    for (table, profile), s in SETUPS.items():
        if not s.registered:
            continue
        for row in table_rows(table):
            register_experiment(row.name, profile,
                                lambda r=row, p=profile: train_config(r, p))


_register()


@register_dataset_needs
def needed_datasets(profile: str) -> list[str]:
    """Digits (bundled) in smoke; MNIST and CIFAR-10 in paper (ImageNet rows are not run)."""
    check_profile(profile)
    return ["cifar10", "mnist"] if profile == "paper" else ["digits"]


def hyperparameters(profile: str) -> list[dict[str, Any]]:
    """One row per table: the settings the chapter's runs use in ``profile``."""
    from deqode.models.continuous_deq import ARCH_DEFAULTS

    rows = []
    for table in TABLES:
        s = setup(table, profile)
        solver = {**ARCH_DEFAULTS[s.arch], **s.model_kwargs}
        images = s.train_images
        rows.append({
            "table": table, "architecture": s.arch, "dataset": s.dataset,
            "train images / epoch": "-" if images is None else f"{images:,}",
            "epochs": s.epochs, "batch": s.batch_size,
            "optimiser steps": "-" if s.steps is None else f"{s.steps:,}",
            "optimizer": f"{s.optimizer} lr {s.lr:g}" + (f", momentum {s.momentum:g}"
                                                        if s.momentum else ""),
            "schedule": f"{s.schedule} → {s.eta_min:g}" if s.schedule == "cosine" else s.schedule,
            "termination": f"{solver['termination']} {solver['tol']:g}",
            "max steps / GMRES itmax": f"{solver['max_steps']} / {solver['gmres_max_iter']}",
            "extra": ", ".join(f"{k}={v}" for k, v in s.model_kwargs.items()
                               if k != "max_steps") or "-",
            "runnable": s.registered, "source": s.source, "departures": s.departures or "-",
        })
    return rows


def setup_summary(table: str, profile: str) -> str:
    """One sentence stating the training budget of ``table``'s runs in ``profile`` (for the
    notebooks' text: the numbers come from :data:`SETUPS`, never typed)."""
    from deqode.models.continuous_deq import ARCH_DEFAULTS

    s = setup(table, profile)
    solver = {**ARCH_DEFAULTS[s.arch], **s.model_kwargs}
    images, total = s.train_images, s.dataset_train_size
    if images is None:
        data_text = f"the {s.dataset} train split"
    elif s.train_size is not None and total is not None:
        data_text = f"the first {images:,} of the {total:,} {s.dataset} train images"
    else:
        data_text = f"all {images:,} {s.dataset} train images"
    steps = "" if s.steps is None else f" = {s.steps:,} optimiser steps"
    schedule = f"{s.schedule} to {s.eta_min:g}" if s.schedule == "cosine" else s.schedule
    if table == "T1":
        schedule = f"constant (text setting) or {schedule} (code setting)"
    threads = ", one CPU thread per run, rows one after another" if profile == "smoke" else ""
    return (f"{profile} {table}: {s.epochs} epochs of batch {s.batch_size} on {data_text}"
            f"{steps}; {s.optimizer} lr {s.lr:g}, schedule {schedule}; termination "
            f"{solver['termination']} {solver['tol']:g}, at most {solver['max_steps']} solver "
            f"steps and {solver['gmres_max_iter']} GMRES iterations; test batches of "
            f"{s.test_batch_size}, evaluated after every epoch{threads}."
            + ("" if s.registered else " Listed for the record, not runnable here."))


# --------------------------------------------------------------------------------------------------
# training runs and their summaries
# --------------------------------------------------------------------------------------------------


def summarize(row: Row, result: Any) -> dict[str, Any]:
    """Table cells of one finished run (:class:`deqode.train.RunResult`).

    Per-batch times average the epochs after the first (warm-up) when there are several:
    training = forward (solve + tape) + backward + optimiser step, backward = the backward pass,
    prediction = one test-mode forward per test batch (the paper's columns, spec §3.4).
    """
    history = result.history
    timed = history[1:] if len(history) > 1 else history
    iters = [h["iterations"] - (history[i - 1]["iterations"] if i else 0)
             for i, h in enumerate(history)]
    timed_iters = iters[1:] if len(history) > 1 else iters

    def per_batch(keys: Sequence[str]) -> float:
        total = sum(sum(h.get(f"time_{k}_s", 0.0) for k in keys) for h in timed)
        return total / max(sum(timed_iters), 1)

    last = history[-1]
    train_seconds = sum(sum(h.get(f"time_{k}_s", 0.0) for k in ("forward", "backward", "step"))
                        for h in history)
    return {
        "experiment": row.name, "row": row.label, "paper_row": row.paper_label,
        "variant": row.variant, "solver": row.solver, "jac": row.jac, "setting": row.setting,
        "params": result.summary.get("num_parameters"),
        "test_acc": 100.0 * last["test_acc"],
        "test_nfe": last.get("test_nfe_forward"),
        "train_nfe_forward": float(np.mean([h.get("nfe_forward") or 0 for h in history])),
        "train_nfe_backward": float(np.mean([h.get("nfe_backward") or 0 for h in history])),
        "training_s_per_batch": per_batch(("forward", "backward", "step")),
        "backward_s_per_batch": per_batch(("backward",)),
        "prediction_s_per_batch": float(np.mean([h["time_eval_per_batch_s"] for h in timed])),
        "training_min": train_seconds / 60.0,
        "curve": [{"step": h["iterations"], "test_acc": 100.0 * h["test_acc"],
                   "prediction_s": h["time_eval_per_batch_s"],
                   "backward_s": h.get("time_backward_per_batch_s"),
                   "nfe_backward": h.get("nfe_backward")} for h in history],
        "state": result.state,
    }


def _train_row(row: Row, profile: str, seed: int, device: str, results_dir: str, data_root: str,
               threads: int | None, changes: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Train one row (a top-level function, so that worker processes can run it)."""
    from deqode.train import fit

    config = train_config(row, profile, seed=seed, **changes)
    result = fit(config, profile=profile, device=device, results_dir=results_dir,
                 data_root=data_root, quiet=True, progress=False, threads=threads)
    if result.failed:
        raise RuntimeError(f"{config.name} failed: {result.reason}")
    return summarize(row, result), float(result.summary["wall_time_s"])


def run_table(
    table: str,
    profile: str,
    *,
    device: str = "auto",
    results_dir: str = "results",
    data_root: str = "data",
    seed: int = 0,
    rows: Sequence[Row] | None = None,
    threads: int | None = None,
    workers: int = 1,
    progress: Callable[[str], None] | None = None,
    **changes: Any,
) -> list[dict[str, Any]]:
    """Train every row of ``table`` with :func:`deqode.train.fit`; one summary per row.

    ``threads``: torch CPU threads per run (smoke default 1). ``workers``: runs trained at the
    same time in separate processes (default 1: one after another in this process). The book
    already executes notebooks side by side, one per core, and a spawned worker re-imports torch
    and deqode (seconds of CPU each), so a process pool made the smoke notebooks slower; pass
    ``workers=2`` on an otherwise idle machine. Each run is seeded on its own, so the numbers do
    not depend on ``workers``. ``changes`` override the :class:`TrainConfig` (e.g. ``epochs``).
    A failed run raises ``RuntimeError`` with its reason.
    """
    if threads is None and profile == "smoke":
        threads = SMOKE_THREADS
    selected = list(rows if rows is not None else table_rows(table))
    args = [(row, profile, seed, device, str(results_dir), str(data_root), threads,
             dict(changes)) for row in selected]
    if workers <= 1 or len(selected) <= 1:
        outputs = []
        for a in args:
            outputs.append(_train_row(*a))
            if progress is not None:
                progress(f"{a[0].name}: {outputs[-1][0]['test_acc']:.1f}% "
                         f"({outputs[-1][1]:.1f}s)")
        return [o[0] for o in outputs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # no fork after torch's thread pools exist
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_train_row, *a) for a in args]
        outputs = []
        for a, future in zip(args, futures, strict=True):
            outputs.append(future.result())
            if progress is not None:
                progress(f"{a[0].name}: {outputs[-1][0]['test_acc']:.1f}% "
                         f"({outputs[-1][1]:.1f}s)")
    return [o[0] for o in outputs]


def load_trained(row: Row, profile: str, results_dir: str = "results", **overrides: Any):
    """The model of a finished run of ``row``, rebuilt and loaded from its checkpoint."""
    from deqode import models
    from deqode.paths import resolve

    config = train_config(row, profile)
    path = resolve(results_dir) / profile / config.name / "checkpoint.pt"
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = models.build(config.model, **{**config.model_kwargs, **overrides})
    model.load_state_dict(state["model"])
    return model.eval()


# --------------------------------------------------------------------------------------------------
# the paper's numbers
# --------------------------------------------------------------------------------------------------


def reference_rows() -> list[dict[str, str]]:
    return load_reference(PAPER)


def paper_value(table: str, row: str, column: str) -> float:
    """A numeric cell of the reference CSV (raises KeyError if absent or not transcribed)."""
    for r in reference_rows():
        if r["table"] == table and r["row"] == row and r["column"] == column:
            if not r["value"] or r["value"] == NOT_TRANSCRIBED:
                break
            return float(r["value"])
    raise KeyError(f"{PAPER}.csv has no numeric cell ({table}, {row}, {column})")


def paper_cell(table: str, row: str, column: str) -> str:
    """A cell as printed, ``mean ± std`` where the table has a std; else "not transcribed"."""
    rows = reference_rows()
    from deqode.results import reference_value

    value = reference_value(rows, table, row, column)
    std = reference_value(rows, table, row, f"{column} std")
    return value if std == NOT_TRANSCRIBED else f"{value} ± {std}"


def paper_table(table: str) -> list[dict[str, str]]:
    """The paper's table as printed: one dict per row (columns in the paper's order)."""
    check_choice("table", table, TABLES)
    columns = (["# Params", "Test Acc (%)", "Testing NFE", "Training Time (min)",
                "Prediction Time (s/batch)"] if table == "T1"
               else ["# Params", ACCURACY_COLUMN[table], *TIME_COLUMNS])
    labels = list(dict.fromkeys(r.paper_label for r in table_rows(table)))
    return [{"row": label, **{c: paper_cell(table, label, c) for c in columns}}
            for label in labels]


def side_by_side(table: str, ours: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Paper and ours per row: accuracy, times (and NFE for Table 1), ours labelled."""
    out = []
    for r in ours:
        label = r["paper_row"]
        if table == "T1":
            cells = {
                "Test Acc (%) paper": paper_cell(table, label, "Test Acc (%)"),
                "Test Acc (%) ours": f"{r['test_acc']:.1f}",
                "Testing NFE paper": paper_cell(table, label, "Testing NFE"),
                "Testing NFE ours": f"{r['test_nfe']:.1f}",
                "Training paper (min)": paper_cell(table, label, "Training Time (min)"),
                "Training ours (min)": f"{r['training_min']:.3f}",
                "Prediction paper (s/batch)": paper_cell(table, label,
                                                         "Prediction Time (s/batch)"),
                "Prediction ours (s/batch)": f"{r['prediction_s_per_batch']:.4f}",
            }
        else:
            acc = ACCURACY_COLUMN[table]
            cells = {
                f"{acc} paper": paper_cell(table, label, acc),
                "Test Acc (%) ours" if table != "T4" else "Top-1 / Top-5 (%) ours":
                    f"{r['test_acc']:.1f}" if table != "T4"
                    else f"{r['test_acc']:.1f} / {r.get('top5_acc', float('nan')):.1f}",
                "Training paper": paper_cell(table, label, TIME_COLUMNS[0]),
                "Training ours": f"{r['training_s_per_batch']:.4f}",
                "Backward paper": paper_cell(table, label, TIME_COLUMNS[1]),
                "Backward ours": f"{r['backward_s_per_batch']:.4f}",
                "Prediction paper": paper_cell(table, label, TIME_COLUMNS[2]),
                "Prediction ours": f"{r['prediction_s_per_batch']:.4f}",
                "NFE test ours": f"{r['test_nfe']:.1f}",
                "GMRES VJPs / step ours": f"{r['train_nfe_backward']:.1f}",
            }
        out.append({"row": r["row"], "params ours": r["params"],
                    "params paper": paper_cell(table, label, "# Params"), **cells})
    return out


def _time(table: str, label: str, column: str) -> float:
    return paper_value(table, label, column)


def ratio(table: str, num: str, den: str, column: str) -> float:
    """``time(num) / time(den)`` in ``column`` of a paper table (row labels as in the CSV)."""
    return _time(table, num, column) / _time(table, den, column)


CONT = "Vanilla DEQ (continuous)"
SKIP_CONT = "Skip DEQ (continuous)"
SKIPREG_CONT = "Skip Reg. DEQ (continuous)"
DISC = "Vanilla DEQ (discrete)"
FIG1_DATASETS = {"CIFAR10 Small": "T2", "CIFAR10 Large": "T3", "ImageNet": "T4"}
FIG1_BARS = {"Skip Cont. DEQ": SKIP_CONT, "Skip Reg. Cont. DEQ": SKIPREG_CONT,
             "Neural ODE": "Neural ODE"}
FIG1_PANELS = {"Training": TIME_COLUMNS[0], "Backward Pass": TIME_COLUMNS[1]}


def figure1_audit() -> list[dict[str, Any]]:
    """Every Figure 1 bar: decoded height, the same ratio from Tables 2–4, their difference.

    A bar is "time of the model / time of the vanilla continuous DEQ" (lower is better).
    """
    out = []
    for panel, column in FIG1_PANELS.items():
        for dataset, table in FIG1_DATASETS.items():
            for bar, label in FIG1_BARS.items():
                if table == "T4" and bar == "Neural ODE":
                    continue
                height = paper_value("F1", f"{panel} | {dataset} | {bar}", "height")
                from_tables = ratio(table, label, CONT, column)
                out.append({"panel": panel, "dataset": dataset, "bar": bar,
                            "figure": height, "tables": from_tables,
                            "difference": height - from_tables})
    return out


@dataclass(frozen=True)
class Claim:
    """A headline claim, its stated value, and what the paper's own tables give."""

    id: str
    claim: str
    stated: str
    from_tables: str
    verdict: str


def claims() -> list[Claim]:
    """C1–C9 and C11 of spec §6: every number recomputed from the reference tables."""
    def r(table: str, num: str, den: str, col: int) -> float:
        return ratio(table, num, den, TIME_COLUMNS[col])

    def stated(cid: str) -> str:
        for row in reference_rows():
            if row["table"] == "claims" and row["row"].startswith(cid + " "):
                return row["value"]
        return NOT_TRANSCRIBED

    node_train = [r("T2", "Neural ODE", CONT, 0), r("T3", "Neural ODE", CONT, 0)]
    node_back = [r("T2", "Neural ODE", CONT, 1), r("T3", "Neural ODE", CONT, 1)]
    skip_train = {t: (r(t, CONT, SKIP_CONT, 0), r(t, CONT, SKIPREG_CONT, 0))
                  for t in ("T2", "T3", "T4")}
    skip_back = {t: max(r(t, CONT, SKIP_CONT, 1), r(t, CONT, SKIPREG_CONT, 1))
                 for t in ("T2", "T3", "T4")}
    bars = {(b["panel"], b["dataset"], b["bar"]): b for b in figure1_audit()}
    t4 = (r("T4", CONT, SKIP_CONT, 0), r("T4", CONT, SKIPREG_CONT, 0))
    offset_small = bars[("Backward Pass", "CIFAR10 Small", "Skip Reg. Cont. DEQ")]["figure"]
    cont_disc = [r(t, CONT, DISC, 0) for t in ("T2", "T3", "T4")]
    cont_disc_b = [r(t, CONT, DISC, 1) for t in ("T2", "T3", "T4")]
    offset = [b for b in bars.values() if abs(b["difference"]) > 0.05]
    t1 = {k: paper_value("T1", k, "Training Time (min)") for k in (
        "Vanilla DEQ", "Skip DEQ", "Skip Reg. DEQ", "Vanilla DEQ + Jac. Reg.",
        "Skip DEQ + Jac. Reg.", "Skip Reg. DEQ + Jac. Reg.")}
    return [
        Claim("C1", "Continuous DEQ trains faster than the Neural ODE (abstract)", stated("C1"),
              f"{node_train[0]:.2f}× (CIFAR small), {node_train[1]:.2f}× (large)",
              "matches (Neural ODE ÷ vanilla continuous DEQ)"),
        Claim("C2", "Neural ODE backward slower than the vanilla continuous DEQ (Fig. 1)",
              stated("C2"), f"{node_back[0]:.2f}×, {node_back[1]:.3f}×", "matches"),
        Claim("C3", "Skip (Reg.) speeds up continuous-DEQ training (abstract)", stated("C3"),
              "; ".join(f"{t}: Skip {a:.2f}×, Skip Reg. {b:.2f}×"
                        for t, (a, b) in skip_train.items()),
              f"tables give at most {max(max(v) for v in skip_train.values()):.2f}×; 3.19 = "
              f"1/{bars[('Training', 'ImageNet', 'Skip Reg. Cont. DEQ')]['figure']:.3f}, an "
              "offset Fig. 1 bar"),
        Claim("C4", "Skip (Reg.) speeds up the continuous-DEQ backward pass (Fig. 1)",
              stated("C4"), ", ".join(f"{t}: {v:.2f}×" for t, v in skip_back.items()),
              f"2.8 = 1/{offset_small:.3f} (offset bar); table: {skip_back['T2']:.2f}×"),
        Claim("C7", "Table 4: Skip (Reg.) training speed-up", stated("C7"),
              f"{t4[0]:.2f}× – {t4[1]:.2f}×", "small mismatch (unrounded timings?)"),
        Claim("C8", "Table 1: Skip variants speed up training 1.42–4×", "1.42–4×",
              f"with Jac.: {t1['Vanilla DEQ + Jac. Reg.'] / t1['Skip Reg. DEQ + Jac. Reg.']:.2f}×;"
              f" without: {t1['Vanilla DEQ'] / t1['Skip Reg. DEQ']:.2f}× (Skip Reg.), "
              f"{t1['Vanilla DEQ'] / t1['Skip DEQ']:.2f}× (Skip)", "matches"),
        Claim("C9", "Continuous DEQs are slower than discrete DEQs (limitations)", "slower",
              "training " + ", ".join(f"{v:.2f}×" for v in cont_disc) + "; backward "
              + ", ".join(f"{v:.1f}×" for v in cont_disc_b), "matches (continuous ÷ discrete)"),
        Claim("C11", "Figure 1 agrees with Tables 2–4", "(implicit)",
              f"{len(offset)} of {len(bars)} bars differ by "
              + ", ".join(f"{b['difference']:+.3f}" for b in offset),
              "four bars sit 0.20 below the tables' ratios"),
    ]


# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------


def linear_system(alphas: Sequence[float] = (0.9, 0.5, -0.9, 0.1, 0.99), steps: int = 50
                  ) -> dict[str, Any]:
    """F5: ``u_{n+1} = α u_n`` from ``u₀ = 1`` (exact), and the continuous analogue
    ``du/dt = (α − 1) u``, i.e. ``u(t) = e^{(α−1)t}`` [reconstruction]."""
    n = np.arange(steps + 1)
    t = np.linspace(0, steps, 10 * steps + 1)
    return {"n": n, "t": t,
            "discrete": {a: a ** n.astype(float) for a in alphas},
            "continuous": {a: np.exp((a - 1.0) * t) for a in alphas}}


def linear_system_figure(data: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for a, u in data["discrete"].items():
        axes[0].plot(data["n"], u, marker=".", ms=3, lw=1, label=f"α = {a:g}")
    for a, u in data["continuous"].items():
        axes[1].plot(data["t"], u, lw=1.2, label=f"α = {a:g}")
    axes[0].set(title=r"discrete $u_{n+1} = \alpha u_n$", xlabel="n", ylabel="u",
                ylim=(-1.0, 1.05))
    axes[1].set(title=r"continuous $\dot u = (\alpha - 1)\,u$", xlabel="t")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _box(ax: Any, x0: float, y0: float, w: float, h: float, text: str, colour: str) -> None:
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x0, y0), w, h, boxstyle="round,pad=0.08", fc=colour, ec="0.3",
                                lw=1))
    ax.text(x0 + w / 2, y0 + h / 2, text, ha="center", va="center", fontsize=9)


def _arrow(ax: Any, a: tuple[float, float], b: tuple[float, float], **kw: Any) -> None:
    from matplotlib.patches import FancyArrowPatch

    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=10, lw=1, color="0.25",
                                 **kw))


def schematic_figure():
    """F6: a DEQ block with the input injected at every iteration, from z₀ to z*; vanilla
    ``z₀ = 0`` (left) and Skip ``z₀ = g_φ(x)`` / Skip Reg. ``z₀ = f_θ(0, x)`` (right)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 2.8))
    panels = (("(Continuous) DEQ", r"$z_0 = 0$", False),
              ("Skip DEQ / Skip Reg. DEQ", r"$z_0 = g_\phi(x)$ or $f_\theta(0, x)$", True))
    for ax, (title, start, skip) in zip(axes, panels, strict=True):
        ax.set_xlim(0, 10)
        ax.set_ylim(0, 4)
        ax.axis("off")
        ax.set_title(title, fontsize=10)
        _box(ax, 0.2, 2.6, 1.6, 0.9, "input $x$", "#e6e6e6")
        _box(ax, 0.1, 0.6, 3.0, 0.9, start, "#dbe9f6" if skip else "#f7f7f7")
        _box(ax, 3.6, 1.2, 2.6, 1.6, r"$f_\theta(z, x)$", "#d9f0d3")
        _box(ax, 7.6, 1.5, 1.8, 1.0, r"$z^* = f_\theta(z^*, x)$", "#fde0c5")
        _arrow(ax, (1.8, 3.05), (4.9, 2.85))
        _arrow(ax, (3.1, 1.05), (3.6, 1.5))
        _arrow(ax, (6.2, 2.0), (7.6, 2.0))
        _arrow(ax, (5.6, 1.2), (4.2, 1.2), connectionstyle="arc3,rad=-0.9")
        ax.text(4.9, 0.25, "solver iterations / ODE steps (x injected each time)",
                ha="center", fontsize=8, color="0.35")
        if skip:
            _arrow(ax, (1.0, 2.6), (1.0, 1.5))
            ax.text(1.1, 2.0, r"$g_\phi$", fontsize=8)
    fig.tight_layout()
    return fig


def figure1_figure(audit: Sequence[Mapping[str, Any]], ours: Sequence[Mapping[str, Any]] = (),
                   ours_label: str = ""):
    """Figure 1: bars from the tables, the decoded bars (offset ones hatched) and, optionally,
    our ratios (``ours``: dicts with panel, dataset, bar, value)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    colours = {"Skip Cont. DEQ": "#2166ac", "Skip Reg. Cont. DEQ": "#e08214",
               "Neural ODE": "#1b7837"}
    width = 0.26
    ours_map = {(o["panel"], o["dataset"], o["bar"]): o["value"] for o in ours}
    for ax, panel in zip(axes, FIG1_PANELS, strict=True):
        for i, dataset in enumerate(FIG1_DATASETS):
            for j, bar in enumerate(colours):
                entry = next((b for b in audit if (b["panel"], b["dataset"], b["bar"])
                              == (panel, dataset, bar)), None)
                if entry is None:
                    continue
                x = i + (j - 1) * width
                ax.bar(x, entry["tables"], width * 0.9, color=colours[bar], alpha=0.85,
                       label=bar if i == 0 else None)
                offset = abs(entry["difference"]) > 0.05
                ax.plot([x - width * 0.45, x + width * 0.45], [entry["figure"]] * 2,
                        color="k" if not offset else "#b2182b", lw=2 if offset else 1)
                if (panel, dataset, bar) in ours_map:
                    ax.plot(x, ours_map[(panel, dataset, bar)], "D", color="k", ms=4)
        ax.axhline(1.0, color="0.3", lw=0.8, ls="--")
        ax.set_xticks(range(len(FIG1_DATASETS)), list(FIG1_DATASETS))
        ax.set_title(panel)
    axes[0].set_ylabel("time relative to vanilla Cont. DEQ")
    axes[0].plot([], [], color="k", lw=1, label="Fig. 1 bar (decoded)")
    axes[0].plot([], [], color="#b2182b", lw=2, label="Fig. 1 bar 0.20 below the table")
    if ours:
        axes[0].plot([], [], "D", color="k", ms=4, label=ours_label or "ours")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def curves_figure(results: Sequence[Mapping[str, Any]], accuracy_label: str = "test accuracy (%)"):
    """Figures 2–4: forward (test) time, backward time and test accuracy against the training
    step; columns discrete / continuous DEQ, one curve per variant."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 2, figsize=(10, 7.5), sharex=True)
    colours = {"vanilla": "#7f7f7f", "skip": "#2166ac", "skip_reg": "#e08214"}
    for col, solver in enumerate(("discrete", "continuous")):
        for r in results:
            if r["solver"] != solver:
                continue
            steps = [c["step"] for c in r["curve"]]
            for row, key in enumerate(("prediction_s", "backward_s", "test_acc")):
                axes[row, col].plot(steps, [c[key] for c in r["curve"]], marker="o", ms=3,
                                    color=colours[r["variant"]], label=LABELS[r["variant"]])
        axes[0, col].set_title(f"{solver.capitalize()} DEQ")
        axes[2, col].set_xlabel("training step")
    axes[0, 0].set_ylabel("forward (test) time (s/batch)")
    axes[1, 0].set_ylabel("backward time (s/batch)")
    axes[2, 0].set_ylabel(accuracy_label)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# parameter counts (P1)
# --------------------------------------------------------------------------------------------------


PAPER_PARAM_ARCHS = {"mnist-fc": "T1", "cifar10-small": "T2", "cifar10-large": "T3",
                     "imagenet-small": "T4"}


def parameter_counts() -> list[dict[str, Any]]:
    """P1: our counts of every paper architecture next to the paper's (instantiates them)."""
    from deqode.models.continuous_deq import ContinuousDEQ, SkipDEQ

    rows = []
    for arch, table in PAPER_PARAM_ARCHS.items():
        vanilla, skip = ContinuousDEQ(arch), SkipDEQ(arch)
        count = sum(p.numel() for p in vanilla.parameters())
        skip_count = sum(p.numel() for p in skip.parameters())
        rows.append({
            "architecture": arch, "table": table,
            "stem": sum(p.numel() for p in vanilla.stem.parameters()),
            "DEQ f": sum(p.numel() for p in vanilla.core.parameters()),
            "head": sum(p.numel() for p in vanilla.head.parameters()),
            "vanilla / Skip Reg. (ours)": count,
            "vanilla (paper)": paper_cell(table, "Vanilla DEQ" if table == "T1"
                                          else "Vanilla DEQ (discrete)", "# Params"),
            "Skip (ours)": skip_count,
            "Skip (paper)": paper_cell(table, "Skip DEQ" if table == "T1"
                                       else "Skip DEQ (discrete)", "# Params"),
            "predictor (ours)": skip_count - count,
            "predictor (text)": paper_cell("P1", "Skip predictor", "stated"),
        })
        del vanilla, skip
    return rows


# --------------------------------------------------------------------------------------------------
# analyses on trained smoke models (C12, M3)
# --------------------------------------------------------------------------------------------------


def backward_probe(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, Any]:
    """One training-mode forward/backward: forward NFE, ‖v‖ and GMRES iterations (C12)."""
    model.train()
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    info = model.last_stats.get("solver_info")
    record = dict(model.last_backward)
    model.zero_grad(set_to_none=True)
    model.eval()
    return {"nfe_forward": model.nfe_forward, "v_norm": record.get("v_norm", 0.0),
            "gmres_iterations": record.get("iterations", 0),
            "forward_reason": info.reason if info is not None else "",
            "forward_residual": info.final_residual if info is not None else math.nan}


@torch.no_grad()
def solve_outcomes(model: nn.Module, x: Tensor, batch_size: int) -> dict[str, Any]:
    """How the test-mode forward solves of ``model`` on ``x`` (in batches of ``batch_size``)
    ended: why they stopped, how many solver steps they took (accepted integrator steps or
    Broyden updates) and the largest final termination objective, e.g. to check whether an NFE
    column is spent reaching the tolerance or running into the step cap."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    model.eval()
    infos = []
    for i in range(0, len(x), batch_size):
        model(x[i:i + batch_size])
        info = model.last_stats.get("solver_info")
        if info is None:
            raise ValueError(f"{type(model).__name__} with solver={model.solver!r} has no "
                             "steady-state solve to report (use 'continuous' or 'discrete')")
        infos.append(info)
    return {"stops": "/".join(sorted({i.reason for i in infos})),
            "met tol": f"{sum(i.converged for i in infos)}/{len(infos)}",
            "solver steps (mean)": float(np.mean([i.iterations for i in infos])),
            "final objective (max)": max(i.final_residual for i in infos)}


@torch.no_grad()
def topk_accuracy(model: nn.Module, dataset: Any, k: int = 5, batch_size: int = 180) -> float:
    """Top-k test accuracy (%) of ``model`` on ``dataset`` in batches of ``batch_size``."""
    from torch.utils.data import DataLoader

    model.eval()
    hits, total = 0, 0
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        top = model(x).topk(k, dim=1).indices
        hits += int((top == y[:, None]).any(1).sum())
        total += y.numel()
    return 100.0 * hits / total


@torch.no_grad()
def tolerance_probe(model: nn.Module, x: Tensor, y: Tensor,
                    settings: Mapping[str, tuple[float, float]]) -> list[dict[str, Any]]:
    """M3: forward NFE, integration time reached, residual and accuracy of a trained continuous
    DEQ under different integrator step-size tolerances ``{label: (abstol, reltol)}``."""
    model.eval()
    saved = (model.abstol, model.reltol)
    out = []
    try:
        for label, (abstol, reltol) in settings.items():
            model.abstol, model.reltol = abstol, reltol
            logits = model(x)
            info = model.last_stats["solver_info"]
            out.append({"step-size tolerances": label, "NFE": model.nfe_forward,
                        "accepted steps": info.iterations, "rejected": info.rejected,
                        "t reached": info.t, "stop": info.reason,
                        "final objective": info.final_residual,
                        "accuracy (%)": 100.0 * float((logits.argmax(1) == y).float().mean())})
    finally:
        model.abstol, model.reltol = saved
    return out


# --------------------------------------------------------------------------------------------------
# timing at real sizes with random inputs (RT1–RT3)
# --------------------------------------------------------------------------------------------------

TIMING_LABEL = ("real-size architecture, random inputs, untrained weights, CPU — timing only, "
                "not the paper's measurement")
TIMING_VARIANTS: dict[str, dict[str, Any]] = {
    "Vanilla DEQ (discrete)": {"variant": "vanilla", "solver": "discrete"},
    "Skip DEQ (discrete)": {"variant": "skip", "solver": "discrete"},
    "Skip Reg. DEQ (discrete)": {"variant": "skip_reg", "solver": "discrete"},
    CONT: {"variant": "vanilla", "solver": "continuous"},
    SKIP_CONT: {"variant": "skip", "solver": "continuous"},
    SKIPREG_CONT: {"variant": "skip_reg", "solver": "continuous"},
    "Neural ODE": {"variant": "neural_ode", "grad_mode": "backprop"},
    "Neural ODE (torchdiffeq adjoint)": {"variant": "neural_ode", "grad_mode": "adjoint"},
}


def timing_model(arch: str, label: str, replay: bool = True, **kwargs: Any) -> nn.Module:
    """A model of the timing row ``label``; ``replay`` forces the caps (termination tolerance 0,
    GMRES tolerances 0), so every variant runs ``max_steps`` solver steps and ``itmax`` GMRES
    iterations — comparable counts for untrained weights."""
    from deqode.models.continuous_deq import variant_model

    spec = dict(TIMING_VARIANTS[label])
    variant = spec.pop("variant")
    if replay and variant != "neural_ode":
        spec.update(tol=0.0, gmres_atol=0.0, gmres_rtol=0.0)
    return variant_model(arch, variant, **spec, **kwargs)


def _clock() -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter()


def time_training_step(model: nn.Module, x: Tensor, y: Tensor, repeats: int = 1,
                       warmup: int = 1) -> dict[str, Any]:
    """Per-batch times of the Julia phases: forward (solve + tape), backward, optimiser step,
    and test-mode prediction; mean over ``repeats`` after ``warmup`` batches; with NFE/GMRES."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    records = []
    for k in range(warmup + repeats):
        model.train()
        optimizer.zero_grad(set_to_none=True)
        t0 = _clock()
        loss = F.cross_entropy(model(x), y)
        t1 = _clock()
        nfe_f = model.nfe_forward
        loss.backward()
        t2 = _clock()
        optimizer.step()
        t3 = _clock()
        nfe_b, gmres_it = model.nfe_backward, model.last_backward.get("iterations", 0)
        model.eval()
        with torch.no_grad():
            t4 = _clock()
            model(x)
            t5 = _clock()
        if k >= warmup:
            records.append({"forward": t1 - t0, "backward": t2 - t1, "step": t3 - t2,
                            "training": t3 - t0, "prediction": t5 - t4, "nfe_forward": nfe_f,
                            "nfe_backward": nfe_b, "gmres_iterations": gmres_it,
                            "nfe_prediction": model.nfe_forward})
    return {key: float(np.mean([r[key] for r in records])) for key in records[0]}


def time_variants(arch: str, batch: int, labels: Sequence[str] | None = None, *,
                  replay: bool = True, repeats: int = 1, warmup: int = 1, seed: int = 0,
                  dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
                  ) -> list[dict[str, Any]]:
    """Directly timed training steps of several variants on random inputs of the right shape."""
    out = []
    for label in labels or list(TIMING_VARIANTS):
        torch.manual_seed(seed)
        model = timing_model(arch, label, replay=replay).to(device, dtype)
        x = torch.randn(batch, *model.input_shape, dtype=dtype, device=device)
        y = torch.randint(0, model.cfg.num_classes, (batch,), device=device)
        out.append({"row": label, "batch": batch, **time_training_step(model, x, y, repeats,
                                                                        warmup)})
        del model
    return out


def _mean_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = _clock()
        fn()
        times.append(_clock() - t0)
    return float(np.median(times))


def unit_costs(arch: str, batch: int, *, repeats: int = 2, seed: int = 0,
               dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
               ) -> dict[str, float]:
    """Seconds per batch of the unit operations of the cost model (§5.3), after one warm-up:

    ``f`` (no-grad evaluation), ``f_tape`` (evaluation recording the graph), ``vjp`` (one
    vector–Jacobian product through a taped f), ``stem_head_forward`` / ``stem_head_backward``,
    ``predictor`` (Skip's g_φ, forward + backward), ``step`` (Adam update of all parameters).
    """
    from deqode.models.continuous_deq import SkipDEQ

    torch.manual_seed(seed)
    model = SkipDEQ(arch).to(device, dtype).train()
    x_in = torch.randn(batch, *model.input_shape, dtype=dtype, device=device)
    y = torch.randint(0, model.cfg.num_classes, (batch,), device=device)
    x = model.stem(x_in).detach()
    model.core.prepare(x)
    u = model.predictor(x).detach()
    costs: dict[str, float] = {}

    def no_grad_f() -> None:
        with torch.no_grad():
            model.core(u, x)

    def taped() -> Tensor:
        u_in = u.clone().requires_grad_(True)
        return model.core(u_in, x), u_in

    fu, u_in = taped()
    w = torch.randn_like(fu)

    def vjp() -> None:
        torch.autograd.grad(fu, u_in, w, retain_graph=True)

    def stem_head() -> Tensor:  # the stem joins the graph with weight 0: its cost, not values
        h = model.stem(x_in)
        return F.cross_entropy(model.head(model.core.split(u + 0.0 * h.mean())), y)

    def predictor() -> None:
        model.predictor(x).sum().backward()

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        optimizer.step()

    for name, fn in (("f", no_grad_f), ("f_tape", taped), ("vjp", vjp),
                     ("predictor", predictor), ("step", step)):
        fn()  # warm-up
        costs[name] = _mean_time(fn, repeats)
    stem_head()  # warm-up
    costs["stem_head_forward"] = _mean_time(stem_head, repeats)
    losses = [stem_head() for _ in range(repeats)]
    costs["stem_head_backward"] = float(np.median([_mean_time(lambda loss=loss: loss.backward(),
                                                              1) for loss in losses]))
    model.zero_grad(set_to_none=True)
    return costs


def solver_nfe(solver: str, steps: int, method: str = "vcab3") -> int:
    """Evaluations of f for ``steps`` accepted solver steps without rejections: VCAB3
    ``2 + 3·2 + (steps − 2)``, BS3 ``2 + 3·steps``, Broyden ``steps + 1``."""
    if solver == "discrete":
        return steps + 1
    if method == "bs3":
        return 2 + 3 * steps
    return 2 + 3 * min(steps, 2) + max(steps - 2, 0)


def cost_model(costs: Mapping[str, float], label: str, steps: int, gmres: int,
               node_steps: int | None = None) -> dict[str, float]:
    """Per-batch training / backward / prediction time of timing row ``label`` estimated from
    :func:`unit_costs` at given counts (linear combination, integrator bookkeeping ignored).

    DEQ rows: forward = solver NFE · f + extra application (taped) + stem/head (+ g_φ or the
    taped f(0, x) for Skip / Skip Reg.); backward = stem/head + recomputed f (taped) +
    ``gmres`` VJPs + parameter VJP + the extra application's VJP. Neural ODE (backprop): every
    evaluation of ``node_steps`` accepted VCAB3 steps taped and back-propagated.
    """
    spec = TIMING_VARIANTS[label]
    f, tape, vjp = costs["f"], costs["f_tape"], costs["vjp"]
    sh_f, sh_b = costs["stem_head_forward"], costs["stem_head_backward"]
    if spec["variant"] == "neural_ode":
        nfe = solver_nfe("continuous", node_steps if node_steps is not None else steps)
        forward = nfe * tape + tape + sh_f
        backward = (nfe + 1) * vjp + sh_b
        prediction = (nfe + 1) * f + sh_f
    else:
        nfe = solver_nfe(spec["solver"], steps)
        extra_f = {"vanilla": 0.0, "skip": costs["predictor"] / 2, "skip_reg": tape}
        extra_b = {"vanilla": 0.0, "skip": costs["predictor"] / 2, "skip_reg": vjp}
        forward = nfe * f + tape + sh_f + extra_f[spec["variant"]]
        backward = sh_b + tape + (gmres + 2) * vjp + extra_b[spec["variant"]]
        prediction = (nfe + 1) * f + sh_f + (f if spec["variant"] == "skip_reg" else 0.0)
    return {"forward": forward, "backward": backward, "step": costs["step"],
            "training": forward + backward + costs["step"], "prediction": prediction}


def paper_timing_ratios() -> list[dict[str, Any]]:
    """The ratios the timing notebook compares with (from Tables 2 and 3)."""
    rows = []
    for table, size in (("T2", "CIFAR-10 small"), ("T3", "CIFAR-10 large")):
        for name, num, den, col in (
            ("Neural ODE ÷ Cont. DEQ, training", "Neural ODE", CONT, 0),
            ("Neural ODE ÷ Cont. DEQ, backward", "Neural ODE", CONT, 1),
            ("Cont. ÷ Skip Cont., training", CONT, SKIP_CONT, 0),
            ("Cont. ÷ Skip Reg. Cont., training", CONT, SKIPREG_CONT, 0),
            ("Cont. ÷ Skip Reg. Cont., backward", CONT, SKIPREG_CONT, 1),
            ("Cont. ÷ Disc. vanilla, training", CONT, DISC, 0),
        ):
            rows.append({"size": size, "ratio": name, "paper": ratio(table, num, den,
                                                                      TIME_COLUMNS[col])})
    return rows


def ratio_table(measured: Mapping[str, Mapping[str, float]], size: str) -> list[dict[str, Any]]:
    """Our ratios (from ``measured[row][phase]``) next to the paper's for one model size."""
    keys = {
        "Neural ODE ÷ Cont. DEQ, training": ("Neural ODE", CONT, "training"),
        "Neural ODE ÷ Cont. DEQ, backward": ("Neural ODE", CONT, "backward"),
        "Cont. ÷ Skip Cont., training": (CONT, SKIP_CONT, "training"),
        "Cont. ÷ Skip Reg. Cont., training": (CONT, SKIPREG_CONT, "training"),
        "Cont. ÷ Skip Reg. Cont., backward": (CONT, SKIPREG_CONT, "backward"),
        "Cont. ÷ Disc. vanilla, training": (CONT, DISC, "training"),
    }
    out = []
    for row in paper_timing_ratios():
        if row["size"] != size:
            continue
        num, den, phase = keys[row["ratio"]]
        ours = (measured[num][phase] / measured[den][phase]
                if num in measured and den in measured else math.nan)
        out.append({**row, "ours": ours})
    return out


__all__ = [
    "LABELS",
    "PAPER",
    "SETUPS",
    "TABLES",
    "TIMING_LABEL",
    "TIMING_VARIANTS",
    "Claim",
    "DigitsSubset",
    "Row",
    "TableSetup",
    "backward_probe",
    "claims",
    "cost_model",
    "curves_figure",
    "figure1_audit",
    "figure1_figure",
    "hyperparameters",
    "linear_system",
    "linear_system_figure",
    "load_trained",
    "paper_cell",
    "paper_table",
    "paper_timing_ratios",
    "paper_value",
    "parameter_counts",
    "ratio",
    "ratio_table",
    "run_table",
    "schematic_figure",
    "setup",
    "setup_summary",
    "side_by_side",
    "solve_outcomes",
    "solver_nfe",
    "summarize",
    "table_rows",
    "time_training_step",
    "time_variants",
    "timing_model",
    "tolerance_probe",
    "topk_accuracy",
    "train_config",
    "unit_costs",
]

