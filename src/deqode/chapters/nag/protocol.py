"""The Nesterov-solver chapter's comparison protocol [companion].

* **Equal NFE.** A budget of K evaluations of f per forward solve over the task's time interval:
  N = K steps for euler and nesterov, K/2 for midpoint, K/3 for heun3, K/4 for rk4, K - 6 for
  explicit_adams (:func:`steps_for_budget`; a solver whose N would not be a whole number is
  skipped at that K). Every fixed-grid solver gets the same uniform grid constructor
  (:func:`deqode.solvers.nesterov.step_grid`), so the counts are exact. Metrics are plotted
  against the cumulative NFE (forward + backward).
* **Equal wall time.** Every run records its cumulative training seconds (evaluation excluded),
  as wall-clock and as process CPU time (the machine may be shared; with one thread the CPU time
  is what an unloaded machine would take); the equal-time view reads each run's last evaluation
  within a common budget, the shortest total training time among the compared runs
  (:func:`value_at_budget`).
* **Solver transfer** (C11). Trained models are re-evaluated with ``dopri5`` (rtol = atol =
  1e-5); a model trained with an inconsistent or very coarse solver learned a field that is only
  right for that discretisation.

Gradients are taken by direct backpropagation through the solver (the exact gradient of the
discrete forward pass); ``grad_mode="adjoint"`` in a setup runs the adjoint ablation. Not done:
the third, matched-steps view of this protocol (the same h for every solver).
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deqode import rehearsal
from deqode.choices import check_choice
from deqode.solvers.nesterov import DEFAULT_BETA, register, step_grid
from deqode.train.batches import Stream
from deqode.train.loop import load_result
from deqode.train.tasks import FunctionTask

register()

NFE_PER_STEP = {"nesterov": 1, "euler": 1, "midpoint": 2, "heun3": 3, "rk4": 4}
FIXED_METHODS = (*NFE_PER_STEP, "explicit_adams")
SMOKE_SOLVERS = ("nesterov", "euler", "midpoint", "rk4")
CPU_SOLVERS = SMOKE_SOLVERS
PAPER_SOLVERS = ("nesterov", "euler", "midpoint", "rk4", "heun3", "explicit_adams")
TRANSFER_METHOD = "dopri5"
TRANSFER_TOL = 1e-5
SCHEDULES = ("constant", "cosine")


# ------------------------------------------------------------------------------------------------
# the solver protocol
# ------------------------------------------------------------------------------------------------


def steps_for_budget(method: str, budget: int) -> int | None:
    """Steps N that spend ``budget`` evaluations per solve, or None if no whole N does."""
    check_choice("fixed-grid method", method, FIXED_METHODS)
    if budget < 1:
        raise ValueError(f"the NFE budget must be positive, got {budget}")
    if method == "explicit_adams":  # RK4 for its first two steps: N + 6 evaluations, N >= 2
        return budget - 6 if budget - 6 >= 2 else None
    per_step = NFE_PER_STEP[method]
    return budget // per_step if budget % per_step == 0 else None


@dataclass(frozen=True)
class SolverChoice:
    """One solver of a comparison: ``label`` (table row), torchdiffeq ``method``, the NFE
    budget K, the resulting steps N and solver keyword options (β, scale, start, schedule)."""

    label: str
    method: str
    budget: int
    n_steps: int
    kwargs: dict[str, Any] = field(default_factory=dict)

    def options(self, interval: float) -> dict[str, Any]:
        """torchdiffeq options for N equal steps over an interval of length ``interval``."""
        return {"grid_constructor": step_grid(abs(interval) / self.n_steps), **self.kwargs}

    @property
    def nfe_per_solve(self) -> int:
        return self.budget


def solver_choices(
    solvers: Sequence[str], budget: int, beta: float = DEFAULT_BETA
) -> list[SolverChoice]:
    """The comparison at one budget K: the consistent NAG solver (β, scaled, Euler start) and the
    other fixed-grid methods; those that cannot spend exactly K are left out."""
    out = []
    for method in solvers:
        n = steps_for_budget(method, budget)
        if n is None:
            continue
        kwargs = {"beta": beta, "scale": True, "start": "euler"} if method == "nesterov" else {}
        out.append(SolverChoice(method, method, budget, n, kwargs))
    return out


def unscaled_choice(budget: int, beta: float = DEFAULT_BETA) -> SolverChoice:
    """The inconsistent textbook-NAG step (c = 1) for the solver-transfer check C11."""
    return SolverChoice("nesterov (c=1)", "nesterov", budget, budget,
                        {"beta": beta, "scale": False, "start": "euler"})


def value_at_budget(history: Sequence[dict[str, Any]], key: str, seconds: float,
                    clock: str = "seconds") -> float | None:
    """The last recorded ``key`` at or before ``seconds`` of training (None if none yet)."""
    value = None
    for row in history:
        if row.get(clock) is not None and row[clock] <= seconds * (1 + 1e-9) + 1e-12:
            if row.get(key) is not None:
                value = row[key]
    return value


def median_step_seconds(step_seconds: Sequence[float], warmup: int = 2) -> float:
    """Median time per training iteration, discarding the first ``warmup`` iterations."""
    kept = list(step_seconds[warmup:]) or list(step_seconds)
    return float(statistics.median(kept)) if kept else float("nan")




class _UsingSolver:
    """Temporarily switch a CNF / latent ODE model to another solver."""

    def __init__(self, model, method: str, options: dict[str, Any], rtol: float, atol: float):
        self.model, self.new = model, (method, options, rtol, atol)

    def __enter__(self):
        m = self.model
        self.old = (m.method, m.options, m.rtol, m.atol)
        m.method, m.options, m.rtol, m.atol = self.new
        return m

    def __exit__(self, *exc):
        m = self.model
        m.method, m.options, m.rtol, m.atol = self.old


def transfer_solver(model) -> _UsingSolver:
    """``with transfer_solver(model):`` evaluates with dopri5 at rtol = atol = 1e-5."""
    return _UsingSolver(model, TRANSFER_METHOD, {}, TRANSFER_TOL, TRANSFER_TOL)


def equal_time_table(
    records: Sequence[dict[str, Any]],
    keys: Sequence[str],
    among: Callable[[dict[str, Any]], bool] | None = None,
) -> tuple[float, list[dict[str, Any]]]:
    """The equal-wall-time view: a common budget and each run's last evaluated ``keys`` within
    it (None where a run has no evaluation yet).

    The budget is the shortest total training time among the records selected by ``among``
    (default: all). Runs that finished earlier are read at their end: they did not use the rest
    of the budget, since the runs are trained for fixed iterations and read afterwards.
    """
    chosen = [r for r in records if among is None or among(r)]
    if not chosen:
        raise ValueError("no record selected to define the time budget")
    budget = min(r["history"][-1]["seconds"] for r in chosen)
    rows = []
    for r in records:
        evaluated = [h for h in r["history"] if keys[0] in h]
        rows.append({"label": r["label"],
                     **{k: value_at_budget(evaluated, k, budget) for k in keys}})
    return budget, rows


def aggregate(records: Sequence[dict[str, Any]], keys: Sequence[str],
              by: Sequence[str] = ("label", "budget")) -> list[dict[str, Any]]:
    """Mean (and, over several seeds, the sample standard deviation ``<key>_std``) of ``keys``
    per group of ``by``, in first-seen order; ``seeds`` counts the runs of a group."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(tuple(r.get(k) for k in by), []).append(r)
    out = []
    for key, rows in groups.items():
        row: dict[str, Any] = {**dict(zip(by, key, strict=True)), "seeds": len(rows)}
        for k in keys:
            values = [float(r[k]) for r in rows if r.get(k) is not None]
            row[k] = float(np.mean(values)) if values else None
            row[f"{k}_std"] = float(np.std(values, ddof=1)) if len(values) > 1 else None
        out.append(row)
    return out


def without_models(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records without model objects and arrays (for JSON results)."""
    drop = ("model", "samples", "log_density", "grid_axis")
    return [{k: v for k, v in r.items() if k not in drop} for r in records]


def _train_and_evaluate(
    model: torch.nn.Module, lr: float, iterations: int, eval_every: int, stream: Stream,
    task: FunctionTask, what: str, schedule: str = "constant", *, name: str,
    results_dir: str | Path | None = None, profile: str = "smoke",
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Train tasks B and C through :func:`deqode.train.fit`: Adam at ``lr``, ``iterations``
    steps on batches of ``stream``, the loss of ``task``, timed and counted.

    ``schedule``: ``"constant"`` learning rate, or ``"cosine"`` annealing to zero over the
    iterations (so that the curve flattens by the end). The history holds per iteration the
    cumulative training seconds and CPU seconds (forward, backward and update; evaluation
    excluded), the cumulative forward + backward NFE and the loss; at iteration 0, every
    ``eval_every`` iterations and after the last, also the task's evaluation. Under rehearsal
    (:mod:`deqode.rehearsal`) at most ``N`` iterations run. A failed step (e.g. a non-finite
    loss) raises ``FloatingPointError`` naming ``what``. The run is recorded under
    ``<results_dir>/<profile>/<name>/`` (a temporary folder when ``results_dir`` is None) and a
    finished one there is read back. Returns the history and the timing summary (median seconds
    per iteration, NFE per iteration, total training seconds and CPU seconds).
    """
    from deqode.train import DTYPES, TrainConfig, fit

    check_choice("learning-rate schedule", schedule, SCHEDULES)
    iterations = rehearsal.steps(iterations)
    first = next(model.parameters())
    dtype = next(k for k, v in DTYPES.items() if v == first.dtype)
    config = TrainConfig(
        name=name, model=lambda: model, task=task, data_order="stream",
        dataset=lambda split: stream if split == "train" else None, iterations=iterations,
        batch_size=eval_every, epochs=-(-iterations // eval_every), lr=lr, schedule=schedule,
        eta_min=0.0, seed=None, dtype=dtype, record_steps=True, measure_memory=False,
        evaluate_at_start=True)
    with tempfile.TemporaryDirectory(prefix="deqode-nag-") as scratch:
        result = fit(config, profile=profile, device=str(first.device),
                     results_dir=results_dir or scratch, resume=results_dir is not None,
                     quiet=True, progress=False)
        start = load_result(result.out_dir)["start"]
    if result.failed:
        raise FloatingPointError(f"{what}: {result.reason}")
    seconds, cpu_seconds, nfe, step_times, iteration = 0.0, 0.0, 0.0, [], 0
    history = [{"iteration": 0, "seconds": seconds, "cpu_seconds": cpu_seconds, "nfe": nfe,
                **start}]
    for record in result.history:
        for step in record["steps"]:
            iteration += 1
            seconds += step["time"]
            cpu_seconds += step["cpu_time"]
            nfe += step["nfe_forward"] + step["nfe_backward"]
            step_times.append(step["time"])
            history.append({"iteration": iteration, "seconds": seconds,
                            "cpu_seconds": cpu_seconds, "nfe": nfe, "loss": step["loss"]})
        history.append({"iteration": iteration, "seconds": seconds, "cpu_seconds": cpu_seconds,
                        "nfe": nfe, **{k: record[k] for k in start}})
    timing = {"seconds_per_iteration": median_step_seconds(step_times),
              "nfe_per_iteration": nfe / iterations, "train_seconds": seconds,
              "train_cpu_seconds": cpu_seconds}
    return history, timing


__all__ = [
    "CPU_SOLVERS",
    "FIXED_METHODS",
    "NFE_PER_STEP",
    "PAPER_SOLVERS",
    "SCHEDULES",
    "SMOKE_SOLVERS",
    "TRANSFER_METHOD",
    "TRANSFER_TOL",
    "SolverChoice",
    "aggregate",
    "equal_time_table",
    "median_step_seconds",
    "solver_choices",
    "steps_for_budget",
    "transfer_solver",
    "unscaled_choice",
    "value_at_budget",
    "without_models",
]
