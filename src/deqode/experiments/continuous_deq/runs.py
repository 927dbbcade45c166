"""Continuous DEQ chapter: training runs (several seeds), their summaries and plateau checks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from deqode.experiments.continuous_deq.configs import (
    SMOKE_THREADS,
    Row,
    table_rows,
    train_config,
)

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


__all__ = [
    "load_trained",
    "run_table",
    "summarize",
]
