"""Checks H1-H7 and Broyden as quasi-Newton: fixed-point and Newton homotopies, the Newton and
naive flows (book chapter "Two sides of one coin", sections 3-6)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from deqode.chapters.homotopy_link.problems import DTYPE, Setup
from deqode.chapters.homotopy_link.records import CheckRecord, Condition, fmt
from deqode.solvers.fixed_point import fixed_point
from deqode.solvers.homotopy import (
    HomotopyPath,
    Trajectory,
    homotopy_path,
    naive_flow,
    newton_flow,
    newton_method,
    newton_step,
)

# --------------------------------------------------------------------------------------------
# H1-H3: fixed-point homotopy and the z0 correction of Fig. 1
# --------------------------------------------------------------------------------------------


@dataclass
class H1Record(CheckRecord):
    check_id: ClassVar[str] = "H1"
    claim: ClassVar[str] = "the fixed-point homotopy from z0 ends at the fixed point"
    residual_rk4: float
    residual_dopri5: float
    nfe_rk4: int
    nfe_dopri5: int
    max_path_residual: float
    error_to_newton: float
    path: HomotopyPath = field(repr=False)

    def conditions(self) -> list[Condition]:
        return [
            Condition("||g(z(1))||, RK4 400 steps", self.residual_rk4, "<", 1e-10),
            Condition("||g(z(1))||, dopri5 1e-10", self.residual_dopri5, "<", 1e-8),
            Condition("max ||H(z(λ), λ)|| on the RK4 path", self.max_path_residual, "<", 1e-10),
            Condition("||z(1) - z*_Newton||", self.error_to_newton, "<", 1e-10),
        ]


def check_h1(setup: Setup, steps: int = 400) -> H1Record:
    """H1: fixed-point homotopy ``dz/dλ = (I - λJ_f)^{-1}(f(z) - z0)`` from a random ``z0``."""
    toy = setup.toy
    rk4 = homotopy_path(toy, setup.z0, "fixed_point", steps=steps, jac=toy.jacobian)
    dopri = homotopy_path(toy, setup.z0, "fixed_point", method="dopri5", rtol=1e-10, atol=1e-10,
                          jac=toy.jacobian)
    return H1Record(
        residual_rk4=rk4.end_residual,
        residual_dopri5=dopri.end_residual,
        nfe_rk4=rk4.nfe,
        nfe_dopri5=dopri.nfe,
        max_path_residual=float(rk4.path_residuals.max()),
        error_to_newton=float((rk4.end_state - setup.z_star).norm()),
        path=rk4,
    )


@dataclass
class H2Record(CheckRecord):
    check_id: ClassVar[str] = "H2"
    claim: ClassVar[str] = "Fig. 1's field (I - λJ_f)^{-1} f from z0 = 0 ends at the fixed point"
    residual: float
    max_difference_to_fixed_point_homotopy: float
    path: HomotopyPath = field(repr=False)

    def conditions(self) -> list[Condition]:
        return [
            Condition("||g(z(1))||", self.residual, "<", 1e-8),
            Condition("max |z_fig1 - z_fixed-point| (z0 = 0)",
                      self.max_difference_to_fixed_point_homotopy, "<", 1e-12),
        ]


def check_h2(setup: Setup, steps: int = 400) -> H2Record:
    """H2: Fig. 1's field from ``z0 = 0`` is the fixed-point homotopy with ``z0 = 0``."""
    toy, zero = setup.toy, torch.zeros_like(setup.z0)
    fig1 = homotopy_path(toy, zero, "fig1", steps=steps, jac=toy.jacobian)
    fp = homotopy_path(toy, zero, "fixed_point", steps=steps, jac=toy.jacobian)
    return H2Record(
        residual=fig1.end_residual,
        max_difference_to_fixed_point_homotopy=float((fig1.states - fp.states).abs().max()),
        path=fig1,
    )


@dataclass
class H3Record(CheckRecord):
    check_id: ClassVar[str] = "H3"
    claim: ClassVar[str] = "Fig. 1's field from z0 != 0 misses the fixed point; z - λf(z) = z0"
    residual: float
    norm_z0: float
    conserved_end: float
    conserved_max: float
    path: HomotopyPath = field(repr=False)

    def conditions(self) -> list[Condition]:
        return [
            Condition("||g(z(1))||", self.residual, ">", 1e-2),
            Condition("||z(1) - f(z(1)) - z0||", self.conserved_end, "<", 1e-8),
            Condition("max_λ ||z(λ) - λ f(z(λ)) - z0||", self.conserved_max, "<", 1e-8),
            Condition("| ||g(z(1))|| - ||z0|| |", abs(self.residual - self.norm_z0), "<", 1e-8),
        ]


def check_h3(setup: Setup, steps: int = 400) -> H3Record:
    """H3: Fig. 1's field from ``z0 != 0`` conserves ``z - λ f(z)``, so ``g(z(1)) = z0``."""
    toy, z0 = setup.toy, setup.z0
    path = homotopy_path(toy, z0, "fig1", steps=steps, jac=toy.jacobian)
    z1 = path.end_state
    conserved = torch.stack(
        [(z - lam * toy(z) - z0).norm() for z, lam in zip(path.states, path.lambdas, strict=True)]
    )
    return H3Record(
        residual=path.end_residual,
        norm_z0=float(z0.norm()),
        conserved_end=float((z1 - toy(z1) - z0).norm()),
        conserved_max=float(conserved.max()),
        path=path,
    )


# --------------------------------------------------------------------------------------------
# H4-H7: Newton homotopy, continuous Newton flow, naive flow
# --------------------------------------------------------------------------------------------


@dataclass
class H4Record(CheckRecord):
    check_id: ClassVar[str] = "H4"
    claim: ClassVar[str] = "the Newton homotopy (λ = t) reaches the root with g(z(t)) = (1-t) g(z0)"
    residual: float
    max_linear_decay_error: float
    error_to_newton: float
    path: HomotopyPath = field(repr=False)

    def conditions(self) -> list[Condition]:
        return [
            Condition("||g(z(1))||", self.residual, "<", 1e-8),
            Condition("max_t ||g(z(t)) - (1-t) g(z0)|| / ||g(z0)||",
                      self.max_linear_decay_error, "<", 1e-8),
            Condition("||z(1) - z*_Newton||", self.error_to_newton, "<", 1e-10),
        ]


def check_h4(setup: Setup, steps: int = 400) -> H4Record:
    """H4: Newton homotopy ``dz/dt = -(I - J_f)^{-1} g(z0)`` on ``[0, 1]`` (linear schedule)."""
    toy, z0 = setup.toy, setup.z0
    path = homotopy_path(toy, z0, "newton", steps=steps, jac=toy.jacobian)
    g0 = z0 - toy(z0)
    err = torch.stack([
        (z - toy(z) - (1 - lam) * g0).norm()
        for z, lam in zip(path.states, path.lambdas, strict=True)
    ])
    return H4Record(
        residual=path.end_residual,
        max_linear_decay_error=float(err.max() / g0.norm()),
        error_to_newton=float((path.end_state - setup.z_star).norm()),
        path=path,
    )


@dataclass
class H5Record(CheckRecord):
    check_id: ClassVar[str] = "H5"
    claim: ClassVar[str] = "the continuous Newton flow decays as ||g(z(T))|| = e^{-T} ||g(z0)||"
    horizons: tuple[float, ...]
    ratios: tuple[float, ...]
    relative_errors: tuple[float, ...]
    trajectory: Trajectory = field(repr=False)

    def conditions(self) -> list[Condition]:
        out = [
            Condition(f"|ratio/e^-T - 1| at T = {T:g} (ratio {fmt(r)})", e, "<", 1e-6)
            for T, r, e in zip(self.horizons, self.ratios, self.relative_errors, strict=True)
        ]
        out.append(Condition("ratio at T = 1 (still O(1))", self.ratios[0], ">", 0.3))
        return out


def check_h5(
    setup: Setup, horizons: Sequence[float] = (1, 5, 20), steps_per_unit: int = 400
) -> H5Record:
    """H5: Newton flow with RK4 (``steps_per_unit`` steps per unit time) up to ``max(horizons)``.

    The flow is autonomous and RK4 runs on a uniform grid, so one run to ``T = 20`` read off at
    ``T = 1, 5, 20`` gives exactly the numbers of three runs with ``400 T`` steps each.
    """
    toy = setup.toy
    horizons = tuple(float(T) for T in horizons)
    T_max = max(horizons)
    traj = newton_flow(toy, setup.z0, T_max, steps=round(steps_per_unit * T_max), jac=toy.jacobian)
    r0 = float(traj.residuals[0])
    ratios, errors = [], []
    for T in horizons:
        index = round(T * steps_per_unit)
        ratio = float(traj.residuals[index]) / r0
        ratios.append(ratio)
        errors.append(abs(ratio / math.exp(-T) - 1))
    return H5Record(horizons, tuple(ratios), tuple(errors), traj)


@dataclass
class H6Record(CheckRecord):
    check_id: ClassVar[str] = "H6"
    claim: ClassVar[str] = "one forward-Euler step of size 1 of the Newton flow is one Newton step"
    max_difference: float
    batch: int
    error_before: float
    error_after: float

    def conditions(self) -> list[Condition]:
        return [
            Condition(f"max |Euler(h=1) - Newton step| over {self.batch} starts",
                      self.max_difference, "<=", 1e-14),
            Condition("||z1 - z*|| / ||z0 - z*||² (quadratic step)",
                      self.error_after / self.error_before**2, "<", 10.0),
        ]


def check_h6(setup: Setup, batch: int = 8) -> H6Record:
    """H6: torchdiffeq's Euler with one step of size 1 vs :func:`newton_step`, on a batch of starts.

    Starts ``z* + 0.3 v`` (unit ``v``); the last condition shows the Newton step is quadratic there.
    """
    gen = torch.Generator().manual_seed(setup.seed + 1)
    toy = setup.toy
    directions = torch.randn(batch, toy.n, generator=gen, dtype=DTYPE)
    starts = setup.z_star + 0.3 * directions / directions.norm(dim=-1, keepdim=True)
    euler = newton_flow(toy, starts, 1.0, steps=1, method="euler", jac=toy.jacobian).end_state
    newton = newton_step(toy, starts, jac=toy.jacobian)
    return H6Record(
        max_difference=float((euler - newton).abs().max()),
        batch=batch,
        error_before=float((starts - setup.z_star).norm(dim=-1).max()),
        error_after=float((newton - setup.z_star).norm(dim=-1).max()),
    )


@dataclass
class H7Record(CheckRecord):
    check_id: ClassVar[str] = "H7"
    claim: ClassVar[str] = "naive flow dz/dt = f(z) - z: Euler(h=1) = Picard; converges as t → ∞"
    euler_picard_difference: float
    picard_history_difference: float
    ratio_T1: float
    T_large: float
    residual_T_large: float
    lower_bound_T1: float
    upper_bound_T1: float
    contraction_bound: float
    trajectory: Trajectory = field(repr=False)
    picard_residuals: list[float] = field(repr=False)

    def conditions(self) -> list[Condition]:
        return [
            Condition("max |Euler(h=1) step - f(z0)|", self.euler_picard_difference, "<", 1e-15),
            Condition("max rel. diff. of ||g|| (k Euler steps vs k Picard iterations)",
                      self.picard_history_difference, "<", 1e-12),
            Condition("||g(z(1))|| / ||g(z0)|| (far from 0: bound e^{-(1+L)})", self.ratio_T1,
                      ">", self.lower_bound_T1),
            Condition("||g(z(1))|| / ||g(z0)|| (contraction bound e^{-(1-L)})", self.ratio_T1,
                      "<", self.upper_bound_T1),
            Condition(f"||g(z(T))|| at T = {self.T_large:g}", self.residual_T_large, "<", 1e-8),
        ]


def check_h7(setup: Setup, T_large: float = 60.0, steps_per_unit: int = 20,
             picard_iterations: int = 10) -> H7Record:
    """H7: naive flow vs Picard iteration.

    Along the flow ``dg/dt = -(I - J_f) g``, so ``e^{-(1+L)t} <= ||g(t)||/||g(0)|| <= e^{-(1-L)t}``
    with ``L = sup ||J_f|| <= ||W||_2`` [derived]: at ``t = 1`` the residual has fallen by at most
    ``e^{-1.9}``. RK4 with ``steps_per_unit`` steps per unit time up to ``T_large``.
    """
    toy, z0 = setup.toy, setup.z0
    one_step = naive_flow(toy, z0, 1.0, steps=1, method="euler").end_state
    euler_k = naive_flow(toy, z0, float(picard_iterations), steps=picard_iterations, method="euler")
    _, info = fixed_point(toy, z0, method="picard", tol=0.0, max_iter=picard_iterations,
                          stop_mode="abs")
    picard = torch.tensor(info.abs_residuals, dtype=DTYPE)
    history_diff = float(((euler_k.residuals - picard) / picard).abs().max())
    traj = naive_flow(toy, z0, T_large, steps=round(steps_per_unit * T_large))
    r = traj.residuals
    L = float(torch.linalg.matrix_norm(toy.W, ord=2))
    return H7Record(
        euler_picard_difference=float((one_step - toy(z0)).abs().max()),
        picard_history_difference=history_diff,
        ratio_T1=float(r[steps_per_unit] / r[0]),
        T_large=T_large,
        residual_T_large=float(r[-1]),
        lower_bound_T1=math.exp(-(1 + L)),
        upper_bound_T1=math.exp(-(1 - L)),
        contraction_bound=L,
        trajectory=traj,
        picard_residuals=info.abs_residuals,
    )


# --------------------------------------------------------------------------------------------
# Broyden as quasi-Newton
# --------------------------------------------------------------------------------------------


@dataclass
class QuasiNewtonRecord(CheckRecord):
    check_id: ClassVar[str] = "Broyden"
    claim: ClassVar[str] = "Newton < Broyden (quasi-Newton) < Picard in iterations to ||g|| <= tol"
    tol: float
    residuals: dict[str, list[float]] = field(repr=False)
    iterations: dict[str, int] = field(default_factory=dict)
    converged: dict[str, bool] = field(default_factory=dict)

    def conditions(self) -> list[Condition]:
        it = self.iterations
        return [
            *(Condition(f"{m} converged", self.converged[m], "==", True) for m in it),
            Condition("iterations Newton", it["newton"], "<", it["broyden"]),
            Condition("iterations Broyden", it["broyden"], "<", it["picard"]),
        ]

    def report(self) -> str:
        lines = [super().report(), "  iterations to ||g|| <= " + fmt(self.tol) + ": "
                 + ", ".join(f"{m} {k}" for m, k in self.iterations.items())]
        return "\n".join(lines)


def check_quasi_newton(setup: Setup, tol: float = 1e-12, max_iter: int = 200) -> QuasiNewtonRecord:
    """Newton's method (exact ``(I - J_f)^{-1}``), Broyden (low-rank approximation of it, started at
    ``I``, so its first step is a Picard step) and Picard, from the same ``z0``; absolute residuals.
    """
    toy, z0 = setup.toy, setup.z0
    newton = newton_method(toy, z0, tol=tol, max_iter=max_iter, jac=toy.jacobian)
    record = QuasiNewtonRecord(tol=tol, residuals={"newton": newton.residuals})
    record.iterations["newton"] = newton.iterations
    record.converged["newton"] = newton.converged
    for method in ("broyden", "picard"):
        _, info = fixed_point(toy, z0, method=method, tol=tol, max_iter=max_iter, stop_mode="abs")
        record.residuals[method] = info.abs_residuals
        record.iterations[method] = info.iterations
        record.converged[method] = info.converged
    return record


__all__ = [
    "H1Record", "H2Record", "H3Record", "H4Record", "H5Record", "H6Record", "H7Record",
    "QuasiNewtonRecord", "check_h1", "check_h2", "check_h3", "check_h4", "check_h5",
    "check_h6", "check_h7", "check_quasi_newton",
]
