"""The Nesterov-solver chapter's three tasks: configurations (smoke and paper) and training code.

nag-solver.md §3. The paper (arXiv 2312.01657) claims that its NAG solver trains Neural ODEs
faster than other fixed-step explicit solvers and than a ResNet, on classification, density
estimation and time-series modelling. Its architectures and settings are **not transcribed**;
the companion settings below follow the torchdiffeq examples (``odenet_mnist.py``, ``cnf.py``,
``latent_ode.py``) and are labelled [companion] in the book, never "the paper's setting".

Protocol (§3.2) [companion]:

* **Equal NFE.** A budget of K evaluations of f per forward solve over the task's time interval:
  N = K steps for euler and nesterov, K/2 for midpoint, K/3 for heun3, K/4 for rk4, K - 6 for
  explicit_adams (:func:`steps_for_budget`; a solver whose N would not be a whole number is
  skipped at that K). Every fixed-grid solver gets the same uniform grid constructor
  (:func:`deqode.solvers.nesterov.step_grid`), so the counts are exact. Metrics are plotted
  against the cumulative NFE (forward + backward).
* **Equal wall time.** Every run records its cumulative training seconds (evaluation excluded);
  the equal-time view reads each run's last evaluation within a common budget, the shortest
  total training time among the compared runs (:func:`value_at_budget`). Wall time is never
  asserted on, only shown.
* **Solver transfer** (C11). Trained models are re-evaluated with ``dopri5`` (rtol = atol =
  1e-5); a model trained with an inconsistent or very coarse solver learned a field that is only
  right for that discretisation.

Gradients are taken by direct backpropagation through the solver (the exact gradient of the
discrete forward pass); ``grad_mode="adjoint"`` in a setup runs the adjoint ablation. Not done:
the third, matched-steps view of §3.2 (the same h for every solver).

Tasks: :func:`classification_runs` (ODE-Net vs ResNet on digits / MNIST, trained by
:func:`deqode.train.fit`), :func:`train_cnf` (2-D CNF on two circles), :func:`train_latent_ode`
(latent ODE on spirals). :func:`paper_setups` lists every paper-profile configuration (a test
builds each model on the CPU).
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from deqode.choices import check_choice, check_profile
from deqode.experiments import register_dataset_needs, register_experiment
from deqode.models.cnf import CNF
from deqode.models.latent_ode import LatentODE
from deqode.models.odenet import ODENet, ResNet
from deqode.solvers.nesterov import DEFAULT_BETA, register, step_grid

register()

NFE_PER_STEP = {"nesterov": 1, "euler": 1, "midpoint": 2, "heun3": 3, "rk4": 4}
FIXED_METHODS = (*NFE_PER_STEP, "explicit_adams")
SMOKE_SOLVERS = ("nesterov", "euler", "midpoint", "rk4")
PAPER_SOLVERS = ("nesterov", "euler", "midpoint", "rk4", "heun3", "explicit_adams")
TRANSFER_METHOD = "dopri5"
TRANSFER_TOL = 1e-5


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


def _train_and_evaluate(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, iterations: int, eval_every: int,
    batches: Iterator[Any], batch_loss: Callable[[Any], Tensor],
    evaluate: Callable[[], dict[str, float]], what: str,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The training loop of tasks B and C: ``iterations`` optimiser steps, timed and counted.

    Each iteration takes the next of ``batches`` (untimed), then times zero_grad, the forward and
    backward pass of ``batch_loss(batch)`` and the step, and adds the model's forward + backward
    NFE. The history holds per iteration the cumulative training seconds (evaluation excluded),
    the cumulative NFE and the loss; at iteration 0, every ``eval_every`` iterations and after the
    last, also the metrics of ``evaluate()``. A non-finite loss raises ``FloatingPointError``
    naming ``what``. Returns the history and the timing summary (median seconds per iteration,
    NFE per iteration, total training seconds).
    """
    history: list[dict[str, Any]] = []
    seconds, nfe, step_times = 0.0, 0.0, []

    def record_evaluation(iteration: int) -> None:
        history.append({"iteration": iteration, "seconds": seconds, "nfe": nfe, **evaluate()})

    record_evaluation(0)
    for iteration in range(1, iterations + 1):
        batch = next(batches)
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        model.reset_nfe()
        loss = batch_loss(batch)
        loss.backward()
        model.sync_nfe()
        optimizer.step()
        elapsed = time.perf_counter() - started
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{what}: non-finite loss at iteration {iteration}")
        seconds += elapsed
        step_times.append(elapsed)
        nfe += model.nfe_forward + model.nfe_backward
        history.append({"iteration": iteration, "seconds": seconds, "nfe": nfe,
                        "loss": loss.item()})
        if iteration % eval_every == 0 or iteration == iterations:
            record_evaluation(iteration)
    timing = {"seconds_per_iteration": median_step_seconds(step_times),
              "nfe_per_iteration": nfe / iterations, "train_seconds": seconds}
    return history, timing


# ------------------------------------------------------------------------------------------------
# Task A: classification
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClassificationSetup:
    """Task A (§3.3) [companion].

    Paper profile: torchdiffeq's ``odenet_mnist.py`` (SGD, momentum 0.9, lr 0.1, batch 128,
    160 epochs, RandomCrop(28, 4) via the ``nag`` recipe). ``lr_decay_epochs`` are the example's
    ×0.1 steps, applied with the harness's ``step`` schedule as in the example. Smoke: the spec's
    width-16 models on digits for 2 epochs, with Adam at lr 1e-2 and batch 128 (our choice: the
    fastest of the settings we tried to move the loss in two epochs on 2 CPU cores).
    """

    profile: str
    dataset: str
    width: int
    downsampling: str
    budgets: tuple[int, ...]
    solvers: tuple[str, ...]
    resnet_blocks: int
    epochs: int
    batch_size: int
    test_batch_size: int
    optimizer: str
    lr: float
    momentum: float
    schedule: str
    lr_decay_epochs: tuple[int, ...]
    beta: float = DEFAULT_BETA
    transfer_budget: int = 12
    seeds: tuple[int, ...] = (0,)
    grad_mode: str = "backprop"


CLASSIFICATION = {
    "smoke": ClassificationSetup(
        "smoke", "digits", 16, "small", (6, 12), SMOKE_SOLVERS, 2, 2, 128, 360, "adam", 1e-2,
        0.0, "constant", (),
    ),
    "paper": ClassificationSetup(
        "paper", "mnist", 64, "conv", (6, 12, 24, 48), PAPER_SOLVERS, 6, 160, 128, 1000, "sgd",
        0.1, 0.9, "step", (60, 100, 140), seeds=(0, 1, 2),  # lr = 0.1 * batch / 128
    ),
}


@dataclass(frozen=True)
class ClassificationRun:
    """One training run of task A: the harness config plus what it compares."""

    kind: str  # "odenet" or "resnet"
    solver: SolverChoice | None
    config: Any  # deqode.train.TrainConfig

    @property
    def label(self) -> str:
        return f"resnet-{self.config.model_kwargs['n_blocks']}" if self.solver is None \
            else self.solver.label


def classification_setup(profile: str) -> ClassificationSetup:
    check_profile(profile)
    return CLASSIFICATION[profile]


def _train_config(setup: ClassificationSetup, name: str, model, model_kwargs: dict[str, Any],
                  seed: int):
    from deqode.train import TrainConfig

    return TrainConfig(
        name=name, model=model, dataset=setup.dataset, model_kwargs=model_kwargs,
        epochs=setup.epochs, batch_size=setup.batch_size, test_batch_size=setup.test_batch_size,
        dataset_kwargs={"recipe": "nag"}, optimizer=setup.optimizer, lr=setup.lr,
        momentum=setup.momentum, schedule=setup.schedule, milestones=setup.lr_decay_epochs,
        seed=seed,
        description="nag-solver.md §3.3 [companion]",
    )


def odenet_kwargs(setup: ClassificationSetup, solver: SolverChoice) -> dict[str, Any]:
    return {"in_channels": 1, "num_classes": 10, "width": setup.width,
            "downsampling_kind": setup.downsampling, "method": solver.method,
            "n_steps": solver.n_steps, "solver_kwargs": dict(solver.kwargs),
            "grad_mode": setup.grad_mode}


def classification_runs(profile: str, seed: int | None = None,
                        include_transfer: bool = True) -> list[ClassificationRun]:
    """Every run of task A in ``profile``: each solver at each budget K, the ResNet, and (C11) the
    unscaled NAG step at ``transfer_budget``. ``seed`` = None: the setup's seeds."""
    setup = classification_setup(profile)
    seeds = setup.seeds if seed is None else (seed,)
    runs: list[ClassificationRun] = []
    for s in seeds:
        suffix = "" if profile == "smoke" and s == 0 else f"-seed{s}"
        for budget in setup.budgets:
            for choice in solver_choices(setup.solvers, budget, setup.beta):
                name = f"nag-cls-{choice.method}-K{budget}{suffix}"
                runs.append(ClassificationRun("odenet", choice, _train_config(
                    setup, name, ODENet, odenet_kwargs(setup, choice), s)))
        resnet = {"in_channels": 1, "num_classes": 10, "width": setup.width,
                  "downsampling_kind": setup.downsampling, "n_blocks": setup.resnet_blocks}
        runs.append(ClassificationRun("resnet", None, _train_config(
            setup, f"nag-cls-resnet{setup.resnet_blocks}{suffix}", ResNet, resnet, s)))
        if include_transfer:
            choice = unscaled_choice(setup.transfer_budget, setup.beta)
            runs.append(ClassificationRun("odenet", choice, _train_config(
                setup, f"nag-cls-nesterov-unscaled-K{setup.transfer_budget}{suffix}", ODENet,
                odenet_kwargs(setup, choice), s)))
    return runs


@torch.no_grad()
def evaluate_classifier(model: torch.nn.Module, dataset, batch_size: int = 500,
                        device: torch.device | str = "cpu") -> dict[str, float]:
    """Test accuracy and forward NFE per batch of ``model`` on ``dataset`` (no augmentation)."""
    from torch.utils.data import DataLoader

    model.eval()
    correct, total, nfe = 0, 0, []
    for x, y in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        x, y = x.to(device, next(model.parameters()).dtype), y.to(device)
        logits = model(x)
        correct += int((logits.argmax(1) == y).sum())
        total += y.numel()
        nfe.append(float(getattr(model, "nfe_forward", 0)))
    return {"accuracy": correct / total, "nfe_forward": float(np.mean(nfe))}


def _history_rows(history: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per-epoch rows with cumulative training seconds (forward + backward + step) and NFE."""
    rows, seconds, nfe, done = [], 0.0, 0.0, 0
    for h in history:
        iters = h["iterations"] - done
        done = h["iterations"]
        seconds += sum(h.get(f"time_{p}_s", 0.0) for p in ("forward", "backward", "step"))
        nfe += ((h.get("nfe_forward") or 0.0) + (h.get("nfe_backward") or 0.0)) * iters
        rows.append({"epoch": h["epoch"], "seconds": seconds, "nfe": nfe,
                     "train_loss": h["train_loss"], "test_error": 1.0 - h["test_acc"]})
    return rows


def run_classification(
    run: ClassificationRun,
    profile: str,
    *,
    device: str = "cpu",
    results_dir: str = "results",
    data_root: str = "data",
    transfer: bool = True,
) -> dict[str, Any]:
    """Train one run with :func:`deqode.train.fit`, then (ODE-Nets) re-evaluate with dopri5.

    Returns the T2 row: params, test error, seconds per epoch, NFE forward / backward per
    batch, the dopri5 test error, and the per-epoch history (cumulative seconds and NFE).
    """
    from deqode import data
    from deqode.train import fit

    result = fit(run.config, profile=profile, device=device, results_dir=results_dir,
                 data_root=data_root, quiet=True, progress=False)
    if result.failed:
        raise RuntimeError(f"{run.config.name} failed: {result.reason}")
    history = result.history
    rows = _history_rows(history)
    last = history[-1]
    train_seconds = rows[-1]["seconds"]
    record: dict[str, Any] = {
        "label": run.label, "kind": run.kind, "name": run.config.name,
        "budget": None if run.solver is None else run.solver.budget,
        "n_steps": None if run.solver is None else run.solver.n_steps,
        "params": result.summary["num_parameters"],
        "test_error": 1.0 - last["test_acc"],
        "seconds_per_epoch": train_seconds / len(history),
        "nfe_forward": last.get("nfe_forward"), "nfe_backward": last.get("nfe_backward"),
        "test_error_dopri5": None, "nfe_dopri5": None, "history": rows,
    }
    if transfer and run.kind == "odenet":
        model = run.config.model(**run.config.model_kwargs)
        state = torch.load(result.out_dir / "checkpoint.pt", map_location="cpu",
                           weights_only=True)["model"]
        model.load_state_dict(state)
        model.set_solver(TRANSFER_METHOD, rtol=TRANSFER_TOL, atol=TRANSFER_TOL)
        test = data.load_dataset(run.config.dataset, root=data_root, split="test",
                                 profile=profile, augment=False, recipe="nag")
        evaluation = evaluate_classifier(model.to(device), test, device=device)
        record["test_error_dopri5"] = 1.0 - evaluation["accuracy"]
        record["nfe_dopri5"] = evaluation["nfe_forward"]
    return record


# ------------------------------------------------------------------------------------------------
# Task B: a 2-D continuous normalizing flow
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CNFSetup:
    """Task B (§3.4) [companion], from torchdiffeq's ``examples/cnf.py``."""

    profile: str
    dataset: str
    hidden: int
    width: int
    batch_size: int
    iterations: int
    lr: float
    budgets: tuple[int, ...]
    solvers: tuple[str, ...]
    eval_points: int
    sample_points: int
    grid_size: int
    eval_every: int
    t0: float = 0.0
    t1: float = 10.0
    beta: float = DEFAULT_BETA
    seeds: tuple[int, ...] = (0,)
    grad_mode: str = "backprop"
    panel_extent: float = 1.5


CNF_SETUPS = {
    "smoke": CNFSetup("smoke", "circles", 8, 8, 64, 30, 1e-3, (12,), SMOKE_SOLVERS, 512, 2000,
                      50, 10),
    "paper": CNFSetup("paper", "circles", 32, 64, 512, 1000, 1e-3, (12, 24, 48), PAPER_SOLVERS,
                      512, 30000, 100, 50, seeds=(0, 1, 2)),
}


def cnf_setup(profile: str) -> CNFSetup:
    check_profile(profile)
    return CNF_SETUPS[profile]


def build_cnf(setup: CNFSetup, solver: SolverChoice | None = None) -> CNF:
    """The task's CNF; with a solver choice, its fixed grid over [t0, t1]."""
    model = CNF(2, setup.hidden, setup.width, t0=setup.t0, t1=setup.t1,
                grad_mode=setup.grad_mode)
    if solver is not None:
        model.method, model.options = solver.method, solver.options(setup.t1 - setup.t0)
    return model


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


@torch.no_grad()
def cnf_nll(model: CNF, points: Tensor) -> tuple[float, float]:
    """Mean negative log-likelihood (nats) and the forward NFE of the solve."""
    model.reset_nfe()
    nll = float(-model.log_prob(points).mean())
    return nll, float(model.nfe_forward)


def _seeded_points(setup: CNFSetup, n: int, seed: int, stream: int) -> Tensor:
    from deqode.data import sample_2d_density

    points, _ = sample_2d_density(setup.dataset, n, np.random.default_rng([seed, stream]))
    return points


def train_cnf(setup: CNFSetup, solver: SolverChoice, *, seed: int = 0,
              dtype: torch.dtype = torch.float32, device: str = "cpu",
              panels: bool = True) -> dict[str, Any]:
    """Train the CNF with ``solver`` (Adam, fresh batch per iteration, same data order for every
    solver given the seed) and evaluate it.

    Returns: the history (iteration, cumulative train seconds and NFE, loss, and at every
    ``eval_every`` iterations the held-out NLL under the training solver and under dopri5), the
    final NLLs, the median seconds per iteration, NFE per iteration, and the panel data
    (samples and a log-density grid under the training solver).
    """
    torch.manual_seed(seed)
    model = build_cnf(setup, solver).to(device, dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=setup.lr)
    held_out = _seeded_points(setup, setup.eval_points, seed, 1).to(device, dtype)
    data_rng = np.random.default_rng([seed, 0])
    from deqode.data import sample_2d_density

    def fresh_batches() -> Iterator[Tensor]:
        while True:
            x, _ = sample_2d_density(setup.dataset, setup.batch_size, data_rng)
            yield x.to(device, dtype)

    def evaluate() -> dict[str, float]:
        nll, _ = cnf_nll(model, held_out)
        with transfer_solver(model):
            nll_ref, nfe_ref = cnf_nll(model, held_out)
        return {"nll": nll, "nll_dopri5": nll_ref, "nfe_dopri5": nfe_ref}

    history, timing = _train_and_evaluate(
        model, optimizer, setup.iterations, setup.eval_every, fresh_batches(),
        lambda x: -model.log_prob(x).mean(), evaluate, f"CNF with {solver.label}")
    evals = [h for h in history if "nll_dopri5" in h]
    record = {
        "label": solver.label, "method": solver.method, "budget": solver.budget,
        "n_steps": solver.n_steps, "seed": seed, "nll": evals[-1]["nll"],
        "nll_dopri5": evals[-1]["nll_dopri5"], "nfe_dopri5": evals[-1]["nfe_dopri5"],
        **timing, "history": history, "model": model,
    }
    if panels:
        record.update(cnf_panels(model, setup, seed))
    return record


@torch.no_grad()
def cnf_panels(model: CNF, setup: CNFSetup, seed: int = 0) -> dict[str, Any]:
    """F6 data: ``samples`` pushed from the base to t1 and ``log_density`` on a grid (training
    solver), over [-extent, extent]²."""
    dtype = next(model.parameters()).dtype
    generator = torch.Generator().manual_seed(seed + 7)
    samples, _ = model.sample(setup.sample_points, generator=generator)
    axis = torch.linspace(-setup.panel_extent, setup.panel_extent, setup.grid_size, dtype=dtype)
    gx, gy = torch.meshgrid(axis, axis, indexing="xy")
    grid = torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=1)
    log_density = model.log_prob(grid).reshape(setup.grid_size, setup.grid_size)
    return {"samples": samples.cpu().numpy(), "grid_axis": axis.cpu().numpy(),
            "log_density": log_density.cpu().numpy()}


def cnf_target(setup: CNFSetup, n: int | None = None, seed: int = 0) -> np.ndarray:
    """Points of the target density for the Target panel (``sample_points`` by default)."""
    return _seeded_points(setup, n or setup.sample_points, seed, 2).numpy()


# ------------------------------------------------------------------------------------------------
# Task C: a latent ODE on spirals
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LatentSetup:
    """Task C (§3.5) [companion], from torchdiffeq's ``examples/latent_ode.py``.

    Smoke: the spec's sizes (64 spirals of 200 points, windows of 20, hidden 16, RNN 16) but 200
    iterations instead of 50, because at 50 the models have not started to fit (about 3 s per
    run on one CPU thread)."""

    profile: str
    n_spirals: int
    n_total: int
    n_sample: int
    latent_dim: int
    hidden: int
    rnn_hidden: int
    iterations: int
    lr: float
    budgets: tuple[int, ...]
    solvers: tuple[str, ...]
    eval_every: int
    n_extrapolate: int
    noise_std: float = 0.3
    beta: float = DEFAULT_BETA
    seeds: tuple[int, ...] = (0,)
    grad_mode: str = "backprop"


LATENT_SETUPS = {
    "smoke": LatentSetup("smoke", 64, 200, 20, 4, 16, 16, 200, 0.01, (12,), SMOKE_SOLVERS, 40,
                         10),
    "paper": LatentSetup("paper", 1000, 1000, 100, 4, 20, 25, 2000, 0.01, (12, 24, 48),
                         PAPER_SOLVERS, 100, 50, seeds=(0, 1, 2)),
}


def latent_setup(profile: str) -> LatentSetup:
    check_profile(profile)
    return LATENT_SETUPS[profile]


def spiral_data(setup: LatentSetup, split: str, seed: int = 0):
    """The spirals of ``split`` (train and test come from independent streams of ``seed``)."""
    from deqode.data import SpiralDataset

    return SpiralDataset(split, setup.profile, n_spirals=setup.n_spirals,
                         n_total=setup.n_total, n_sample=setup.n_sample,
                         noise_std=setup.noise_std, seed=seed)


def build_latent_ode(setup: LatentSetup, solver: SolverChoice | None = None,
                     interval: float | None = None) -> LatentODE:
    model = LatentODE(setup.latent_dim, 2, setup.hidden, setup.rnn_hidden,
                      noise_std=setup.noise_std, grad_mode=setup.grad_mode)
    if solver is not None:
        if interval is None:
            raise ValueError("a fixed-grid solver needs the time interval")
        model.method, model.options = solver.method, solver.options(interval)
    return model


@torch.no_grad()
def latent_metrics(model: LatentODE, dataset, n_extra: int = 0, seed: int = 0
                   ) -> dict[str, float]:
    """Held-out −ELBO (one seeded posterior sample), reconstruction MSE of the posterior-mean
    trajectory against the clean window, and extrapolation MSE on the next ``n_extra`` clean
    points (where the spiral has them; NaN if ``n_extra`` = 0)."""
    dtype = next(model.parameters()).dtype
    observed = dataset.observed.to(dtype)
    times = dataset.times.to(dtype)
    generator = torch.Generator().manual_seed(seed + 11)
    model.reset_nfe()
    neg_elbo = float(model.negative_elbo(observed, times, generator=generator))
    n_sample = len(times)
    full = dataset.full_times.to(dtype)[: n_sample + n_extra]
    pred, _, _ = model.reconstruct(observed, full, sample=False)
    recon = float(((pred[:, :n_sample] - dataset.clean.to(dtype)) ** 2).mean())
    extrap = float("nan")
    if n_extra:
        errors, count = 0.0, 0
        for i in range(len(dataset)):
            start = int(dataset.start_index[i])
            available = min(n_extra, dataset.base.shape[1] - start - n_sample)
            if available <= 0:
                continue
            truth = dataset.trajectory(i)[start + n_sample : start + n_sample + available]
            diff = pred[i, n_sample : n_sample + available] - truth.to(dtype)
            errors += float((diff**2).sum())
            count += diff.numel()
        extrap = errors / max(count, 1)
    return {"neg_elbo": neg_elbo, "recon_mse": recon, "extrap_mse": extrap}


def train_latent_ode(setup: LatentSetup, solver: SolverChoice, *, seed: int = 0,
                     dtype: torch.dtype = torch.float32, device: str = "cpu") -> dict[str, Any]:
    """Train the latent ODE with ``solver`` (Adam, the whole training set as one batch) and
    evaluate it on held-out spirals under the training solver and under dopri5."""
    train, test = spiral_data(setup, "train", seed), spiral_data(setup, "test", seed)
    interval = float(train.times[-1] - train.times[0])
    torch.manual_seed(seed)
    model = build_latent_ode(setup, solver, interval).to(device, dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=setup.lr)
    observed, times = train.observed.to(device, dtype), train.times.to(device, dtype)
    generator = torch.Generator().manual_seed(seed + 3)

    def evaluate() -> dict[str, float]:
        metrics = latent_metrics(model, test, setup.n_extrapolate, seed)
        with transfer_solver(model):
            ref = latent_metrics(model, test, setup.n_extrapolate, seed)
        return {**metrics, **{f"{k}_dopri5": v for k, v in ref.items()}}

    history, timing = _train_and_evaluate(
        model, optimizer, setup.iterations, setup.eval_every,
        itertools.repeat((observed, times)),  # the whole training set as one batch
        lambda batch: model.negative_elbo(*batch, generator=generator), evaluate,
        f"latent ODE with {solver.label}")
    final = [h for h in history if "neg_elbo" in h][-1]
    return {
        "label": solver.label, "method": solver.method, "budget": solver.budget,
        "n_steps": solver.n_steps, "seed": seed,
        **{k: final[k] for k in ("neg_elbo", "recon_mse", "extrap_mse", "neg_elbo_dopri5",
                                 "recon_mse_dopri5", "extrap_mse_dopri5")},
        **timing, "history": history, "model": model, "interval": interval,
    }


@torch.no_grad()
def latent_trajectory(model: LatentODE, dataset, index: int = 0,
                      forward_points: int | None = None) -> dict[str, np.ndarray]:
    """F8 data for one trajectory: the clean spiral, the noisy window, and the decoded learned
    trajectory from the posterior mean, forward (past the window) and backward in time, with the
    training solver's step size."""
    dtype = next(model.parameters()).dtype
    observed = dataset.observed[index : index + 1].to(dtype)
    mean, _ = model.encoder(observed)
    n_sample = dataset.observed.shape[1]
    forward_points = forward_points or min(3 * n_sample, len(dataset.full_times))
    forward_t = dataset.full_times[:forward_points].to(dtype)
    span = float(dataset.times[-1])
    backward_t = -torch.linspace(0.0, span, n_sample, dtype=dtype)
    ahead = model.decoder(model.integrate(mean, forward_t))[:, 0]
    behind = model.decoder(model.integrate(mean, backward_t))[:, 0]
    return {"spiral": dataset.trajectory(index).numpy(),
            "observed": dataset.observed[index].numpy(),
            "forward": ahead.numpy(), "backward": behind.numpy()}


# ------------------------------------------------------------------------------------------------
# paper profile, tables
# ------------------------------------------------------------------------------------------------


def paper_setups() -> dict[str, Any]:
    """Every paper-profile setup of the three tasks (for the configuration test)."""
    return {"classification": classification_setup("paper"), "cnf": cnf_setup("paper"),
            "latent_ode": latent_setup("paper")}


def setup_table(profile: str) -> list[dict[str, Any]]:
    """One row per task with its settings (for the book's configuration table)."""
    rows = []
    for task, setup in (("classification", classification_setup(profile)),
                        ("cnf", cnf_setup(profile)), ("latent_ode", latent_setup(profile))):
        rows.append({"task": task, **{k: v for k, v in asdict(setup).items() if k != "profile"}})
    return rows


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


def _register_experiments() -> None:
    """``python -m deqode train nag-cls-... --profile P`` trains any run of task A."""
    for profile in CLASSIFICATION:
        for run in classification_runs(profile):
            register_experiment(
                run.config.name, profile,
                lambda p=profile, n=run.config.name: _classification_config(p, n),
            )


def _classification_config(profile: str, name: str):
    for run in classification_runs(profile):
        if run.config.name == name:
            return run.config
    raise KeyError(name)  # pragma: no cover - names come from the same function


_register_experiments()


@register_dataset_needs
def _dataset_needs(profile: str) -> list[str]:
    """Task A reads MNIST from disk in the paper profile; everything else is generated."""
    return ["mnist"] if profile == "paper" else ["digits"]


__all__ = [
    "CLASSIFICATION",
    "CNF_SETUPS",
    "FIXED_METHODS",
    "LATENT_SETUPS",
    "NFE_PER_STEP",
    "PAPER_SOLVERS",
    "SMOKE_SOLVERS",
    "TRANSFER_METHOD",
    "TRANSFER_TOL",
    "CNFSetup",
    "ClassificationRun",
    "ClassificationSetup",
    "LatentSetup",
    "SolverChoice",
    "aggregate",
    "build_cnf",
    "build_latent_ode",
    "classification_runs",
    "classification_setup",
    "cnf_nll",
    "cnf_panels",
    "cnf_setup",
    "cnf_target",
    "equal_time_table",
    "evaluate_classifier",
    "latent_metrics",
    "latent_setup",
    "latent_trajectory",
    "median_step_seconds",
    "odenet_kwargs",
    "paper_setups",
    "run_classification",
    "setup_table",
    "solver_choices",
    "spiral_data",
    "steps_for_budget",
    "train_cnf",
    "train_latent_ode",
    "transfer_solver",
    "unscaled_choice",
    "value_at_budget",
    "without_models",
]
