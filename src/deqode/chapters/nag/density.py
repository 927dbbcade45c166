"""Task B: density estimation with a 2-D continuous normalizing flow [companion], from
torchdiffeq's ``examples/cnf.py``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from deqode.chapters.nag import protocol
from deqode.chapters.nag.protocol import SolverChoice, StreamRun, stream_history, transfer_solver
from deqode.choices import check_profile
from deqode.models.cnf import CNF
from deqode.solvers.nesterov import DEFAULT_BETA
from deqode.train.batches import Stream
from deqode.train.tasks import density_task


@dataclass(frozen=True)
class CNFSetup:
    """Task B [companion], from torchdiffeq's ``examples/cnf.py``.

    cpu profile: hypernetwork 16, width 32, 128 points per iteration, 600 iterations with the
    learning rate annealed to zero (cosine) so that every curve flattens within the budget, 3
    seeds; sizes chosen from a probe (300 iterations at width 32 still improved by 0.1 nats).
    Adam at lr 1e-3: the first full cpu run used 5e-3, at which the nesterov, euler and midpoint
    flows learned fields that only their K = 12 discretisation turns into a density (dopri5 NLL
    105.7 ± 29.0 for nesterov) and whose curves never flattened; the rate was lowered after
    seeing that (one-seed probes at 1e-3: every solver flat, dopri5 NLL 1.5 to 1.8)."""

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
    schedule: str = "constant"


CNF_SETUPS = {
    "smoke": CNFSetup("smoke", "circles", 8, 8, 64, 30, 1e-3, (12,), protocol.SMOKE_SOLVERS,
                      512, 2000, 50, 10),
    # lr 1e-3 (was 5e-3): chosen after the 5e-3 cpu run's flows had not flattened
    "cpu": CNFSetup("cpu", "circles", 16, 32, 128, 600, 1e-3, (12,), protocol.CPU_SOLVERS,
                    512, 2000, 50, 60, seeds=(0, 1, 2), schedule="cosine"),
    "paper": CNFSetup("paper", "circles", 32, 64, 512, 1000, 1e-3, (12, 24, 48),
                      protocol.PAPER_SOLVERS, 512, 30000, 100, 50, seeds=(0, 1, 2)),
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


class CNFRun(StreamRun):
    """One run of task B: the CNF with ``solver`` (Adam, a fresh batch per iteration, the same
    data order for every solver given the seed); its held-out NLL under the training solver
    and under dopri5 is evaluated at the start and every ``eval_every`` iterations."""

    task = "cnf"

    def cnf(self) -> CNF:
        """The model factory: the seeded CNF on the solver's grid."""
        torch.manual_seed(self.seed)
        self.net = build_cnf(self.setup, self.solver)
        self.held_out = _seeded_points(self.setup, self.setup.eval_points, self.seed, 1)
        return self.net

    def density_2d(self, split: str) -> Stream | None:
        """The data factory: a stream of fresh batches of the 2-D density (train only)."""
        from deqode.data import sample_2d_density

        def fresh_batch(rng: np.random.Generator) -> Tensor:
            x, _ = sample_2d_density(self.setup.dataset, self.setup.batch_size, rng)
            return self.batch_place(x)

        return Stream(fresh_batch, np.random.default_rng([self.seed, 0])) \
            if split == "train" else None

    def factories(self):
        return self.cnf, self.density_2d

    def function_task(self):
        return density_task(self.evaluate)

    def evaluate(self) -> dict[str, float]:
        held_out = self.batch_place(self.held_out)
        nll, _ = cnf_nll(self.net, held_out)
        with transfer_solver(self.net):
            nll_ref, nfe_ref = cnf_nll(self.net, held_out)
        return {"nll": nll, "nll_dopri5": nll_ref, "nfe_dopri5": nfe_ref}


def train_cnf(setup: CNFSetup, solver: SolverChoice, *, seed: int = 0,
              dtype: torch.dtype = torch.float32, device: str = "cpu",
              panels: bool = True, results_dir: str | Path = "results") -> dict[str, Any]:
    """Train the CNF with ``solver`` (:class:`CNFRun`), or read it back: a finished run of the
    same configuration under ``<results_dir>/<profile>/<name>/`` (e.g. trained by ``python -m
    deqode train``) is read, an unfinished one resumed (:func:`deqode.train.fit_or_reuse`).

    Returns: the history (iteration, cumulative train seconds and NFE, loss, and at every
    ``eval_every`` iterations the held-out NLL under the training solver and under dopri5), the
    final NLLs, the median seconds per iteration, NFE per iteration, the trained ``model``,
    ``cached`` (read back, not trained) and the panel data (samples and a log-density grid
    under the training solver).
    """
    result = CNFRun(setup, solver, seed, dtype).run(device=device, results_dir=results_dir)
    history, timing = stream_history(result)
    evals = [h for h in history if "nll_dopri5" in h]
    record = {
        "label": solver.label, "method": solver.method, "budget": solver.budget,
        "n_steps": solver.n_steps, "seed": seed, "nll": evals[-1]["nll"],
        "nll_dopri5": evals[-1]["nll_dopri5"], "nfe_dopri5": evals[-1]["nfe_dopri5"],
        **timing, "history": history, "model": result.model, "cached": result.reused,
    }
    if panels:
        record.update(cnf_panels(result.model, setup, seed))
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



__all__ = ["CNF_SETUPS", "CNFRun", "CNFSetup", "build_cnf", "cnf_nll", "cnf_panels", "cnf_setup",
           "cnf_target", "train_cnf"]
