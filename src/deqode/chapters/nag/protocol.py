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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deqode.choices import check_choice
from deqode.solvers.nesterov import DEFAULT_BETA, register, step_grid
from deqode.train.config import DTYPES
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


def run_name(task: str, solver: SolverChoice, seed: int, profile: str) -> str:
    """The experiment name of a run of task B (``cnf``) or C (``latent``):
    ``nag-<task>-<method>-K<K>`` (``nesterov-unscaled`` for the c = 1 step), with ``-seed<s>``
    except for seed 0 in smoke (as task A's names)."""
    method = solver.method
    if method == "nesterov" and solver.kwargs.get("scale") is False:
        method = "nesterov-unscaled"
    suffix = "" if profile == "smoke" and seed == 0 else f"-seed{seed}"
    return f"nag-{task}-{method}-K{solver.budget}{suffix}"


class StreamRun:
    """One run of task B or C as a :class:`deqode.train.TrainConfig` (:meth:`train_config`)
    whose model and data factories are methods of this object, so that ``python -m deqode
    train`` and the notebook train the same thing. Subclasses give ``task`` (the name part),
    the model factory (which seeds and sets ``self.net``), the data factory and the
    :class:`~deqode.train.tasks.FunctionTask`; :meth:`batch_place` puts a batch where the model
    is (its device and dtype are only known once ``fit`` has built and moved it)."""

    task = ""

    def __init__(self, setup: Any, solver: SolverChoice, seed: int = 0,
                 dtype: str | torch.dtype = "float32") -> None:
        if isinstance(dtype, torch.dtype):  # recorded by name, as TrainConfig.dtype
            dtype = next(name for name, kind in DTYPES.items() if kind == dtype)
        self.setup, self.solver, self.seed, self.dtype = setup, solver, seed, dtype
        self.net: torch.nn.Module | None = None

    @property
    def name(self) -> str:
        return run_name(self.task, self.solver, self.seed, self.setup.profile)

    def batch_place(self, tensor: torch.Tensor) -> torch.Tensor:
        first = next(self.net.parameters())
        return tensor.to(first.device, first.dtype)

    def factories(self) -> tuple[Callable[..., torch.nn.Module], Callable[[str], Any]]:
        raise NotImplementedError

    def function_task(self) -> FunctionTask:
        raise NotImplementedError

    def train_config(self) -> Any:
        """Adam at the setup's lr and schedule (cosine anneals to zero), ``iterations`` steps in
        epochs of ``eval_every`` with the task's evaluation at the start and after every epoch,
        every step's time and NFE recorded. ``dataset_kwargs`` record the run's settings (the
        factories read them from this object), so that the configuration check sees them."""
        from deqode.train import TrainConfig

        check_choice("learning-rate schedule", self.setup.schedule, SCHEDULES)
        model, data = self.factories()
        s = self.setup
        return TrainConfig(
            name=self.name, model=model, dataset=data, task=self.function_task(),
            data_order="stream", iterations=s.iterations, batch_size=s.eval_every,
            epochs=-(-s.iterations // s.eval_every), lr=s.lr, schedule=s.schedule, eta_min=0.0,
            seed=None, dtype=self.dtype, record_steps=True, measure_memory=False,
            evaluate_at_start=True,
            dataset_kwargs={"setup": asdict(s), "solver": asdict(self.solver),
                            "seed": self.seed},
            description=f"NAG task {'B' if self.task == 'cnf' else 'C'} [companion]")

    def run(self, *, device: str = "cpu", results_dir: str | Path = "results") -> Any:
        """Read, resume or train this run under ``<results_dir>/<profile>/<name>/``
        (:func:`deqode.train.fit_or_reuse`); a failed run raises ``FloatingPointError``. The
        result's ``model`` is the trained model on ``device``, in training mode."""
        from deqode.train import fit_or_reuse

        result = fit_or_reuse(self.train_config(), profile=self.setup.profile, device=device,
                              results_dir=results_dir, quiet=True, progress=False)
        if result.failed:
            raise FloatingPointError(f"{self.name}: {result.reason}")
        result.model = result.model.to(device).train()
        return result


def stream_history(result: Any) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The history of a task B or C run (:meth:`StreamRun.run`): per iteration the cumulative
    training seconds and CPU seconds (forward, backward and update; evaluation excluded), the
    cumulative forward + backward NFE and the loss; at iteration 0 and after every epoch also
    the task's evaluation. And the timing summary: median seconds per iteration, NFE per
    iteration, total training seconds and CPU seconds."""
    from deqode.train.loop import load_result

    start = load_result(result.out_dir)["start"]
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
              "nfe_per_iteration": nfe / max(iteration, 1), "train_seconds": seconds,
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
    "StreamRun",
    "aggregate",
    "equal_time_table",
    "median_step_seconds",
    "run_name",
    "solver_choices",
    "steps_for_budget",
    "stream_history",
    "transfer_solver",
    "unscaled_choice",
    "value_at_budget",
    "without_models",
]
