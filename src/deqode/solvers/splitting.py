"""Operator splitting for ``z = prox(W z + b)``: monDEQ's forward and backward solver.

Winston & Kolter, "Monotone operator equilibrium networks" (NeurIPS 2020), §4 and Algorithms 1–2
(``locuslab/monotone_op_net``, ``splitting.py``): with ``I − W`` strongly monotone and ``prox`` the
proximal map of a convex function at step ``α``, the fixed point is unique and

* Peaceman–Rachford (PR), from ``z = u = 0``, converges for every ``α > 0``::

      u½ = 2z − u;  z½ = (I + α(I − W))^{-1}(u½ + α b);  u = 2z½ − u½;  z = prox(u)

* forward–backward (FB) converges for small enough ``α``: ``z = prox((1 − α) z + α(W z + b))``.

The stopping rule is the relative change ``||z_{k+1} − z_k|| / (||z_{k+1}|| + eps)`` per sample,
max over the batch (the relative residual of one sweep seen as a fixed-point map).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from deqode.choices import check_choice
from deqode.solvers.fixed_point import SolverInfo

SPLITTINGS = ("peaceman_rachford", "forward_backward")
REL_EPS = 1e-9

LinearMap = Callable[[Tensor], Tensor]


def _rel_change(new: Tensor, old: Tensor) -> Tensor:
    new2, old2 = new.flatten(1), old.flatten(1)
    return (new2 - old2).norm(dim=1) / (new2.norm(dim=1) + REL_EPS)


def splitting_solve(
    multiply: LinearMap,
    resolve: LinearMap,
    prox: LinearMap,
    bias: Tensor,
    method: str = "peaceman_rachford",
    alpha: float = 1.0,
    tol: float = 1e-2,
    max_iter: int = 300,
) -> tuple[Tensor, SolverInfo]:
    """Solve ``z = prox(W z + bias)`` by operator splitting (see the module docstring).

    Args:
        multiply: ``z ↦ W z``; resolve: ``r ↦ (I + α(I − W))^{-1} r`` (PR only; FB ignores it);
        prox: the proximal map of the nonlinearity at step ``α``; bias: ``b``, batched.

    Returns the last iterate and a :class:`~deqode.solvers.SolverInfo` whose residuals are the
    relative changes between successive iterates (``nfe`` = iterations = sweeps). Runs without
    autograd; never raises on numerical trouble (``diverged`` is set on non-finite values).
    """
    check_choice("monDEQ splitting", method, SPLITTINGS)
    info = SolverInfo(method=method, stop_mode="rel")
    with torch.no_grad():
        z = torch.zeros_like(bias)
        u = torch.zeros_like(bias)
        for _ in range(max_iter):
            if method == "peaceman_rachford":
                u_half = 2 * z - u
                z_half = resolve(u_half + alpha * bias)
                u = 2 * z_half - u_half
                z_new = prox(u)
            else:
                z_new = prox((1 - alpha) * z + alpha * (multiply(z) + bias))
            change = _rel_change(z_new, z)
            z = z_new
            info.iterations += 1
            info.nfe += 1
            info.rel_residuals.append(change.max().item())
            if not torch.isfinite(z).all():
                info.diverged = True
                break
            if info.rel_residuals[-1] <= tol:
                break
    info.residuals = info.rel_residuals
    info.final_residual = info.rel_residuals[-1] if info.rel_residuals else math.inf
    info.best_iteration = info.iterations
    info.converged = not info.diverged and info.final_residual <= tol
    return z, info


__all__ = ["SPLITTINGS", "LinearMap", "splitting_solve"]
