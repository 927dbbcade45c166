"""Checks H1-H7 and Broyden as quasi-Newton: fixed-point and Newton homotopies, the Newton and
naive flows (book chapter "Two sides of one coin", sections 3-6)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from deqode.chapters.homotopy_link.problems import DTYPE, Setup
from deqode.chapters.homotopy_link.records import Check, CheckRecord, Condition, fmt
from deqode.solvers.fixed_point import fixed_point
from deqode.solvers.homotopy import (
    homotopy_path,
    naive_flow,
    newton_flow,
    newton_method,
    newton_step,
)

# --------------------------------------------------------------------------------------------
# H1-H3: fixed-point homotopy and the z0 correction of Fig. 1
# --------------------------------------------------------------------------------------------

H1 = Check("H1", "the fixed-point homotopy from z0 ends at the fixed point", lambda r: [
    Condition("||g(z(1))||, RK4 400 steps", r.residual_rk4, "<", 1e-10),
    Condition("||g(z(1))||, dopri5 1e-10", r.residual_dopri5, "<", 1e-8),
    Condition("max ||H(z(λ), λ)|| on the RK4 path", r.max_path_residual, "<", 1e-10),
    Condition("||z(1) - z*_Newton||", r.error_to_newton, "<", 1e-10),
])


def check_h1(setup: Setup, steps: int = 400) -> CheckRecord:
    """H1: fixed-point homotopy ``dz/dλ = (I - λJ_f)^{-1}(f(z) - z0)`` from a random ``z0``."""
    toy = setup.toy
    rk4 = homotopy_path(toy, setup.z0, "fixed_point", steps=steps, jac=toy.jacobian)
    dopri = homotopy_path(toy, setup.z0, "fixed_point", method="dopri5", rtol=1e-10, atol=1e-10,
                          jac=toy.jacobian)
    return H1.record(dict(
        residual_rk4=rk4.end_residual,
        residual_dopri5=dopri.end_residual,
        nfe_rk4=rk4.nfe,
        nfe_dopri5=dopri.nfe,
        max_path_residual=float(rk4.path_residuals.max()),
        error_to_newton=float((rk4.end_state - setup.z_star).norm()),
    ), path=rk4)


H2 = Check("H2", "Fig. 1's field (I - λJ_f)^{-1} f from z0 = 0 ends at the fixed point", lambda r: [
    Condition("||g(z(1))||", r.residual, "<", 1e-8),
    Condition("max |z_fig1 - z_fixed-point| (z0 = 0)",
              r.max_difference_to_fixed_point_homotopy, "<", 1e-12),
])


def check_h2(setup: Setup, steps: int = 400) -> CheckRecord:
    """H2: Fig. 1's field from ``z0 = 0`` is the fixed-point homotopy with ``z0 = 0``."""
    toy, zero = setup.toy, torch.zeros_like(setup.z0)
    fig1 = homotopy_path(toy, zero, "fig1", steps=steps, jac=toy.jacobian)
    fp = homotopy_path(toy, zero, "fixed_point", steps=steps, jac=toy.jacobian)
    difference = float((fig1.states - fp.states).abs().max())
    return H2.record(dict(residual=fig1.end_residual,
                          max_difference_to_fixed_point_homotopy=difference), path=fig1)


H3 = Check("H3", "Fig. 1's field from z0 != 0 misses the fixed point; z - λf(z) = z0", lambda r: [
    Condition("||g(z(1))||", r.residual, ">", 1e-2),
    Condition("||z(1) - f(z(1)) - z0||", r.conserved_end, "<", 1e-8),
    Condition("max_λ ||z(λ) - λ f(z(λ)) - z0||", r.conserved_max, "<", 1e-8),
    Condition("| ||g(z(1))|| - ||z0|| |", abs(r.residual - r.norm_z0), "<", 1e-8),
])


def check_h3(setup: Setup, steps: int = 400) -> CheckRecord:
    """H3: Fig. 1's field from ``z0 != 0`` conserves ``z - λ f(z)``, so ``g(z(1)) = z0``."""
    toy, z0 = setup.toy, setup.z0
    path = homotopy_path(toy, z0, "fig1", steps=steps, jac=toy.jacobian)
    z1 = path.end_state
    conserved = torch.stack(
        [(z - lam * toy(z) - z0).norm() for z, lam in zip(path.states, path.lambdas, strict=True)]
    )
    return H3.record(dict(
        residual=path.end_residual,
        norm_z0=float(z0.norm()),
        conserved_end=float((z1 - toy(z1) - z0).norm()),
        conserved_max=float(conserved.max()),
    ), path=path)


# --------------------------------------------------------------------------------------------
# H4-H7: Newton homotopy, continuous Newton flow, naive flow
# --------------------------------------------------------------------------------------------

H4 = Check("H4", "the Newton homotopy (λ = t) reaches the root with g(z(t)) = (1-t) g(z0)",
           lambda r: [
    Condition("||g(z(1))||", r.residual, "<", 1e-8),
    Condition("max_t ||g(z(t)) - (1-t) g(z0)|| / ||g(z0)||", r.max_linear_decay_error, "<", 1e-8),
    Condition("||z(1) - z*_Newton||", r.error_to_newton, "<", 1e-10),
])


def check_h4(setup: Setup, steps: int = 400) -> CheckRecord:
    """H4: Newton homotopy ``dz/dt = -(I - J_f)^{-1} g(z0)`` on ``[0, 1]`` (linear schedule)."""
    toy, z0 = setup.toy, setup.z0
    path = homotopy_path(toy, z0, "newton", steps=steps, jac=toy.jacobian)
    g0 = z0 - toy(z0)
    err = torch.stack([
        (z - toy(z) - (1 - lam) * g0).norm()
        for z, lam in zip(path.states, path.lambdas, strict=True)
    ])
    return H4.record(dict(
        residual=path.end_residual,
        max_linear_decay_error=float(err.max() / g0.norm()),
        error_to_newton=float((path.end_state - setup.z_star).norm()),
    ), path=path)


H5 = Check("H5", "the continuous Newton flow decays as ||g(z(T))|| = e^{-T} ||g(z0)||", lambda r: [
    *(Condition(f"|ratio/e^-T - 1| at T = {T:g} (ratio {fmt(ratio)})", e, "<", 1e-6)
      for T, ratio, e in zip(r.horizons, r.ratios, r.relative_errors, strict=True)),
    Condition("ratio at T = 1 (still O(1))", r.ratios[0], ">", 0.3),
])


def check_h5(
    setup: Setup, horizons: Sequence[float] = (1, 5, 20), steps_per_unit: int = 400
) -> CheckRecord:
    """H5: Newton flow with RK4 (``steps_per_unit`` steps per unit time) up to ``max(horizons)``.

    The flow is autonomous and RK4 runs on a uniform grid, so one run to ``T = 20`` read off at
    ``T = 1, 5, 20`` gives exactly the numbers of three runs with ``400 T`` steps each.
    """
    toy = setup.toy
    horizons = tuple(float(T) for T in horizons)
    T_max = max(horizons)
    traj = newton_flow(toy, setup.z0, T_max, steps=round(steps_per_unit * T_max), jac=toy.jacobian)
    r0 = float(traj.residuals[0])
    ratios = tuple(float(traj.residuals[round(T * steps_per_unit)]) / r0 for T in horizons)
    errors = tuple(abs(ratio / math.exp(-T) - 1) for T, ratio in zip(horizons, ratios, strict=True))
    return H5.record(dict(horizons=horizons, ratios=ratios, relative_errors=errors),
                     trajectory=traj)


H6 = Check("H6", "one forward-Euler step of size 1 of the Newton flow is one Newton step",
           lambda r: [
    Condition(f"max |Euler(h=1) - Newton step| over {r.batch} starts", r.max_difference, "<=",
              1e-14),
    Condition("||z1 - z*|| / ||z0 - z*||² (quadratic step)", r.error_after / r.error_before**2,
              "<", 10.0),
])


def check_h6(setup: Setup, batch: int = 8) -> CheckRecord:
    """H6: torchdiffeq's Euler with one step of size 1 vs :func:`newton_step`, on a batch of starts.

    Starts ``z* + 0.3 v`` (unit ``v``); the last condition shows the Newton step is quadratic there.
    """
    gen = torch.Generator().manual_seed(setup.seed + 1)
    toy = setup.toy
    directions = torch.randn(batch, toy.n, generator=gen, dtype=DTYPE)
    starts = setup.z_star + 0.3 * directions / directions.norm(dim=-1, keepdim=True)
    euler = newton_flow(toy, starts, 1.0, steps=1, method="euler", jac=toy.jacobian).end_state
    newton = newton_step(toy, starts, jac=toy.jacobian)
    return H6.record(dict(
        max_difference=float((euler - newton).abs().max()),
        batch=batch,
        error_before=float((starts - setup.z_star).norm(dim=-1).max()),
        error_after=float((newton - setup.z_star).norm(dim=-1).max()),
    ))


H7 = Check("H7", "naive flow dz/dt = f(z) - z: Euler(h=1) = Picard; converges as t → ∞",
           lambda r: [
    Condition("max |Euler(h=1) step - f(z0)|", r.euler_picard_difference, "<", 1e-15),
    Condition("max rel. diff. of ||g|| (k Euler steps vs k Picard iterations)",
              r.picard_history_difference, "<", 1e-12),
    Condition("||g(z(1))|| / ||g(z0)|| (far from 0: bound e^{-(1+L)})", r.ratio_T1,
              ">", r.lower_bound_T1),
    Condition("||g(z(1))|| / ||g(z0)|| (contraction bound e^{-(1-L)})", r.ratio_T1,
              "<", r.upper_bound_T1),
    Condition(f"||g(z(T))|| at T = {r.T_large:g}", r.residual_T_large, "<", 1e-8),
])


def check_h7(setup: Setup, T_large: float = 60.0, steps_per_unit: int = 20,
             picard_iterations: int = 10) -> CheckRecord:
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
    return H7.record(dict(
        euler_picard_difference=float((one_step - toy(z0)).abs().max()),
        picard_history_difference=history_diff,
        ratio_T1=float(r[steps_per_unit] / r[0]),
        T_large=T_large,
        residual_T_large=float(r[-1]),
        lower_bound_T1=math.exp(-(1 + L)),
        upper_bound_T1=math.exp(-(1 - L)),
        contraction_bound=L,
    ), trajectory=traj, picard_residuals=info.abs_residuals)


# --------------------------------------------------------------------------------------------
# Broyden as quasi-Newton
# --------------------------------------------------------------------------------------------

QUASI_NEWTON = Check(
    "Broyden", "Newton < Broyden (quasi-Newton) < Picard in iterations to ||g|| <= tol",
    conditions=lambda r: [
        *(Condition(f"{m} converged", r.converged[m], "==", True) for m in r.iterations),
        Condition("iterations Newton", r.iterations["newton"], "<", r.iterations["broyden"]),
        Condition("iterations Broyden", r.iterations["broyden"], "<", r.iterations["picard"]),
    ],
    details=lambda r: ["  iterations to ||g|| <= " + fmt(r.tol) + ": "
                       + ", ".join(f"{m} {k}" for m, k in r.iterations.items())],
)


def check_quasi_newton(setup: Setup, tol: float = 1e-12, max_iter: int = 200) -> CheckRecord:
    """Newton's method (exact ``(I - J_f)^{-1}``), Broyden (low-rank approximation of it, started at
    ``I``, so its first step is a Picard step) and Picard, from the same ``z0``; absolute residuals.
    """
    toy, z0 = setup.toy, setup.z0
    newton = newton_method(toy, z0, tol=tol, max_iter=max_iter, jac=toy.jacobian)
    residuals = {"newton": newton.residuals}
    iterations = {"newton": newton.iterations}
    converged = {"newton": newton.converged}
    for method in ("broyden", "picard"):
        _, info = fixed_point(toy, z0, method=method, tol=tol, max_iter=max_iter, stop_mode="abs")
        residuals[method] = info.abs_residuals
        iterations[method] = info.iterations
        converged[method] = info.converged
    return QUASI_NEWTON.record(dict(tol=tol, iterations=iterations, converged=converged),
                               residuals=residuals)


__all__ = [
    "H1", "H2", "H3", "H4", "H5", "H6", "H7", "QUASI_NEWTON", "check_h1", "check_h2", "check_h3",
    "check_h4", "check_h5", "check_h6", "check_h7", "check_quasi_newton",
]
