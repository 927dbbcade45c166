"""Continuous DEQ chapter: training runs (several seeds), their summaries and plateau checks."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from deqode.chapters.continuous_deq.configs import (
    SMOKE_THREADS,
    Row,
    row_seeds,
    run_name,
    table_rows,
    train_config,
)

# --------------------------------------------------------------------------------------------------
# training runs and their summaries
# --------------------------------------------------------------------------------------------------


def summarize(row: Row, result: Any, seed: int = 0) -> dict[str, Any]:
    """Table cells of one finished run (:class:`deqode.train.RunResult`).

    Per-batch times average the epochs after the first (warm-up) when there are several:
    training = forward (solve + tape) + backward + optimiser step, backward = the backward pass,
    prediction = one test-mode forward per test batch (the paper's columns, timed as in the
    official code `experiments/src/utils.jl`).
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
    backward_seconds = sum(h.get("time_backward_s", 0.0) for h in history)
    nfe_f_total = sum((h.get("nfe_forward") or 0.0) * n for h, n in zip(history, iters,
                                                                          strict=True))
    nfe_b_total = sum((h.get("nfe_backward") or 0.0) * n for h, n in zip(history, iters,
                                                                           strict=True))
    return {
        "experiment": run_name(row, seed),
        "seed": seed, "row": row.label, "paper_row": row.paper_label,
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
        # whole training (every epoch, warm-up included): the cost compared in C1–C4 and C9
        "training_s_total": train_seconds,
        "backward_s_total": backward_seconds,
        "train_nfe_forward_total": nfe_f_total,
        "train_nfe_backward_total": nfe_b_total,
        "train_nfe_total": nfe_f_total + nfe_b_total,
        "steps": history[-1]["iterations"],
        "curve": [{"step": h["iterations"], "test_acc": 100.0 * h["test_acc"],
                   "prediction_s": h["time_eval_per_batch_s"],
                   "backward_s": h.get("time_backward_per_batch_s"),
                   "nfe_backward": h.get("nfe_backward")} for h in history],
        "state": result.state,
    }


def _train_row(row: Row, profile: str, seed: int, device: str, results_dir: str, data_root: str,
               threads: int | None, changes: dict[str, Any]) -> tuple[dict[str, Any], float]:
    """Train one row (a top-level function, so that worker processes can run it), by the one
    rule of :func:`deqode.train.fit_or_reuse`: a finished run of the same configuration (from a
    notebook or ``python -m deqode train``) is read back, an unfinished one resumed."""
    from deqode.train import fit_or_reuse

    config = train_config(row, profile, seed=seed, **changes)
    result = fit_or_reuse(config, profile=profile, results_dir=results_dir, load_model=False,
                          device=device, data_root=data_root, quiet=True, progress=False,
                          threads=threads)
    if result.failed:
        raise RuntimeError(f"{config.name} failed: {result.reason}")
    return summarize(row, result, seed), float(result.summary["wall_time_s"])


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
    """Train every row of ``table`` with :func:`deqode.train.fit`; one summary per run.

    Rows compared in a claim run several seeds outside smoke (:func:`row_seeds`); each summary
    carries its ``seed``, :func:`aggregate` joins them per row. Outside smoke, finished runs are
    read from ``results_dir`` instead of retrained. ``threads``: torch CPU threads per run (smoke
    and cpu default 1). ``workers``: runs trained at the same time in separate processes
    (default 1: one after another in this process; a spawned worker re-imports torch and deqode,
    seconds of CPU each). ``changes`` override the :class:`TrainConfig` (e.g. ``epochs``).
    A failed run raises ``RuntimeError`` with its reason.
    """
    if threads is None and profile in ("smoke", "cpu"):
        threads = SMOKE_THREADS
    selected = list(rows if rows is not None else table_rows(table))
    args = [(row, profile, s, device, str(results_dir), str(data_root), threads, dict(changes))
            for row in selected for s in row_seeds(row, profile, seed)]

    def report(a: tuple, output: tuple[dict[str, Any], float]) -> None:
        if progress is not None:
            progress(f"{run_name(a[0], a[2])}: {output[0]['test_acc']:.1f}% ({output[1]:.1f}s)")

    outputs = []
    if workers <= 1 or len(args) <= 1:
        for a in args:
            outputs.append(_train_row(*a))
            report(a, outputs[-1])
        return [o[0] for o in outputs]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # no fork after torch's thread pools exist
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_train_row, *a) for a in args]
        for a, future in zip(args, futures, strict=True):
            outputs.append(future.result())
            report(a, outputs[-1])
    return [o[0] for o in outputs]


#: Columns :func:`aggregate` averages over seeds.
AGGREGATED = ("test_acc", "test_nfe", "training_s_per_batch", "backward_s_per_batch",
              "prediction_s_per_batch", "training_min", "training_s_total", "backward_s_total",
              "train_nfe_total", "train_nfe_forward", "train_nfe_backward", "top5_acc")


def aggregate(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One entry per row (first seed's fields), with ``<key>_seeds`` (per-seed values),
    ``<key>_std`` and ``<key>`` = the mean over seeds for every :data:`AGGREGATED` key."""
    by_row: dict[str, list[Mapping[str, Any]]] = {}
    for r in results:
        by_row.setdefault(r["row"], []).append(r)
    out = []
    for runs in by_row.values():
        entry = dict(runs[0])
        entry["seeds"] = [r.get("seed", 0) for r in runs]
        for key in AGGREGATED:
            values = [float(r[key]) for r in runs if r.get(key) is not None]
            if not values:
                continue
            entry[f"{key}_seeds"] = values
            entry[key] = float(np.mean(values))
            entry[f"{key}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        out.append(entry)
    return out


#: Plateau check of the cpu profile: over the last PLATEAU_EPOCHS evaluations the test accuracy
#: may move by at most PLATEAU_POINTS percentage points (a fixed budget chosen from probe runs,
#: then checked on every run's curve).
PLATEAU_EPOCHS = 2
PLATEAU_POINTS = 1.5


def plateau_check(result: Mapping[str, Any], epochs: int = PLATEAU_EPOCHS,
                  points: float = PLATEAU_POINTS) -> dict[str, Any]:
    """Whether the test-accuracy curve of one run has flattened: the largest change between the
    last ``epochs`` + 1 evaluations is at most ``points`` (percentage points)."""
    curve = [c["test_acc"] for c in result["curve"]]
    tail = curve[-(epochs + 1):]
    change = max(tail) - min(tail) if len(tail) > 1 else math.nan
    flat = len(curve) > epochs and change <= points
    return {"run": result.get("experiment", result["row"]), "final acc (%)": curve[-1],
            f"change over last {epochs} epochs (points)": change, "flat": flat}


def plateau_rule() -> str:
    """The plateau rule in words (from the constants)."""
    return (f"a run has reached its plateau when its test accuracy moved by at most "
            f"{PLATEAU_POINTS:g} points over its last {PLATEAU_EPOCHS} epochs")


def load_trained(row: Row, profile: str, results_dir: str = "results", seed: int = 0,
                 **overrides: Any):
    """The model of a finished run of ``row`` (``seed``), rebuilt and loaded from its
    checkpoint."""
    from deqode import models
    from deqode.paths import resolve

    config = train_config(row, profile, seed=seed)
    path = resolve(results_dir) / profile / config.name / "checkpoint.pt"
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = models.build(config.model, **{**config.model_kwargs, **overrides})
    model.load_state_dict(state["model"])
    return model.eval()


__all__ = [
    "AGGREGATED",
    "PLATEAU_EPOCHS",
    "PLATEAU_POINTS",
    "aggregate",
    "load_trained",
    "plateau_check",
    "plateau_rule",
    "run_table",
    "summarize",
]
