"""Checks H8-H10 and the turning point: the Neural-ODE and ANODE readings, start distance vs
cost, and the author's 1-D MATLAB toy (book chapter "Two sides of one coin", sections 7-9)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor
from torchdiffeq import odeint

from deqode.chapters.homotopy_link.problems import (
    DTYPE,
    QuadraticHomotopy,
    Setup,
    turning_point_closed_form,
)
from deqode.chapters.homotopy_link.records import Check, CheckRecord, Condition, fmt
from deqode.errors import SolverFailure
from deqode.solvers.homotopy import (
    arclength_path,
    davidenko_path,
    homotopy_path,
    make_homotopy,
    newton_method,
)

# --------------------------------------------------------------------------------------------
# H8-H9: the Neural-ODE and ANODE readings
# --------------------------------------------------------------------------------------------


H8 = Check("H8", "Fig. 1's field started at h(x) ends at z = f(z) + h(x)", lambda r: [
    Condition(f"max_x ||z(1) - f(z(1)) - h(x)|| ({r.batch} inputs)", r.additive_residual, "<",
              1e-8),
    Condition("max_x ||z(1) - z*_DEQ(h(x))|| (additive-injection DEQ)",
              r.distance_to_additive_deq, "<", 1e-8),
    Condition("min_x ||z(1) - f(z(1))|| (not a fixed point of f)", r.plain_residual_min, ">",
              1e-2),
])


def check_h8(setup: Setup, batch: int = 4, input_dim: int = 3, steps: int = 400) -> CheckRecord:
    """H8: a Neural ODE whose field has Fig. 1's form, ``f`` input-independent
    (``f(z) = tanh(W z + b)``), started at the feature-extractor output ``h(x) = tanh(V x)``.

    The field conserves ``z - λ f(z) = h(x)``, so ``z(1)`` solves ``z = f(z) + h(x)``: the
    equilibrium of a DEQ with additive input injection [derived; our observation, not the paper's].
    """
    gen = torch.Generator().manual_seed(setup.seed + 2)
    toy = setup.toy  # b = U x of the common toy plays the input-independent bias
    V = torch.randn(toy.n, input_dim, generator=gen, dtype=DTYPE)
    inputs = torch.randn(batch, input_dim, generator=gen, dtype=DTYPE)
    h = torch.tanh(inputs @ V.T)  # [B, n]
    path = homotopy_path(toy, h, "fig1", steps=steps, jac=toy.jacobian)
    z1 = path.end_state

    def additive(z: Tensor) -> Tensor:
        return toy(z) + h

    deq = newton_method(additive, h, tol=1e-14, jac=toy.jacobian).z
    return H8.record(dict(
        batch=batch,
        additive_residual=float((z1 - toy(z1) - h).norm(dim=-1).max()),
        distance_to_additive_deq=float((z1 - deq).norm(dim=-1).max()),
        plain_residual_min=float((z1 - toy(z1)).norm(dim=-1).min()),
    ))


H9 = Check(
    "H9", "ANODE [h; a], a(0) = 0: frozen h: a(1) = fixed point; drifting h: not",
    conditions=lambda r: [
        Condition("(i) dh/dt = 0: ||a(1) - f(a(1); h)||", r.frozen_residual, "<", 1e-8),
        Condition("(ii) dh/dt = -h: ||a(1) - f(a(1); h(1))||", r.drifting_residual_final_h, ">",
                  1e-2),
    ],
    details=lambda r: ["  (ii) residual for the initial condition h(0): "
                       + fmt(r.drifting_residual_initial_h)],
)


def check_h9(setup: Setup, steps: int = 400) -> CheckRecord:
    """H9: ANODE read as homotopy continuation.

    State ``[h; a]``: ``h(0) = h(x)`` (here a Gaussian feature vector), ``a(0) = 0`` shared by all
    inputs, ``da/dt`` the fixed-point-homotopy field of ``f(·; h) = tanh(W · + h)`` from
    ``a(0) = 0`` at ``λ = t``. (i) ``dh/dt = 0``: ``a(1)`` is the fixed point for ``h``.
    (ii) ``dh/dt = -h``: the condition drifts, and ``a(1)`` is not the fixed point for the final
    ``h(1) = e^{-1} h(0)``.
    """
    gen = torch.Generator().manual_seed(setup.seed + 3)
    toy = setup.toy
    h0 = torch.randn(1, toy.n, generator=gen, dtype=DTYPE)
    a0 = torch.zeros_like(h0)
    grid = torch.linspace(0.0, 1.0, steps + 1, dtype=DTYPE)

    def field_for(drift: float) -> Callable[[Tensor, Tensor], Tensor]:
        def rhs(t: Tensor, state: Tensor) -> Tensor:
            h, a = state[..., : toy.n], state[..., toy.n :]
            f_h = toy.with_condition(h)
            homotopy = make_homotopy(f_h, a0, "fixed_point", jac=f_h.jacobian)
            da = homotopy.field(a, t.expand(a.shape[0]))
            return torch.cat([-drift * h, da], dim=-1)

        return rhs

    out = {}
    for name, drift in (("frozen", 0.0), ("drifting", 1.0)):
        end = odeint(field_for(drift), torch.cat([h0, a0], -1), grid, method="rk4")[-1]
        out[name] = (end[..., : toy.n], end[..., toy.n :])

    def residual(a: Tensor, h: Tensor) -> float:
        return float((a - toy.with_condition(h)(a)).norm())

    (h_f, a_f), (h_d, a_d) = out["frozen"], out["drifting"]
    return H9.record(dict(
        frozen_residual=residual(a_f, h_f),
        drifting_residual_final_h=residual(a_d, h_d),
        drifting_residual_initial_h=residual(a_d, h0),
    ))


# --------------------------------------------------------------------------------------------
# H10: start-point distance vs cost
# --------------------------------------------------------------------------------------------


def _h10_conditions(r: CheckRecord) -> list[Condition]:
    fp = r.nfe["fixed_point"]
    # the smallest positive ε (ε = 0 pays the step-size warm-up, see check_h10)
    first = min(i for i, e in enumerate(r.epsilons) if e > 0)
    eps_min, eps_max = r.epsilons[first], r.epsilons[-1]
    return [
        Condition("max_λ ||z(λ) - z*|| at ε = 0", r.path_deviation_at_zero, "<", 1e-12),
        Condition(f"NFE at ε = 0 (bound: NFE at ε = {eps_max:g})", fp[0], "<=", fp[-1]),
        *(Condition(f"NFE {kind} at ε = {eps_min:g} (bound: NFE at ε = {eps_max:g})",
                    nfe[first], "<", nfe[-1]) for kind, nfe in r.nfe.items()),
        Condition("path length in z grows strictly with ε (both homotopies)",
                  all(a < b for lengths in r.path_lengths.values()
                      for a, b in itertools.pairwise(lengths)), "==", True),
        Condition("max endpoint residual (dopri5 1e-6)",
                  max(max(v) for v in r.end_residuals.values()), "<", 1e-4),
    ]


def _h10_nfe_table(r: CheckRecord) -> list[str]:
    lines = ["  ε:            " + " ".join(f"{e:>7g}" for e in r.epsilons)]
    for kind, values in r.nfe.items():
        lines.append(f"  NFE {kind:<11s}" + " ".join(f"{v:>7d}" for v in values))
    return lines


H10 = Check("H10", "a start closer to z* gives a shorter path; for ε > 0 the nearest start costs "
            "fewer steps than the farthest (ε = 0 pays a warm-up)", _h10_conditions, _h10_nfe_table)


def check_h10(
    setup: Setup,
    epsilons: Sequence[float] = (0.0, 1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0),
    tol: float = 1e-6,
) -> CheckRecord:
    """H10: ``z0 = z* + ε v`` (unit ``v``), dopri5 at ``rtol = atol = tol``; NFE per ``ε`` for the
    fixed-point and Newton homotopies, and the length ``∫ ||dz/dλ|| dλ`` of the path in ``z``
    (polygon through 101 dense outputs). At ``ε = 0`` the fixed-point path is constant
    (``H(z*, λ) = λ g(z*) = 0``).

    At ``ε = 0`` the field is round-off (~1e-16). Its norm in units of the tolerance is below
    1e-5, for which torchdiffeq's initial-step heuristic falls back to a first step of at most
    1e-4; the step then grows by at most 10x per accepted step, so NFE(0) is not the smallest
    value: the warm-up is a solver artefact.
    """
    toy, z_star = setup.toy, setup.z_star
    gen = torch.Generator().manual_seed(setup.seed + 4)
    v = torch.randn(toy.n, generator=gen, dtype=DTYPE)
    v = v / v.norm()
    nfe: dict[str, list[int]] = {"fixed_point": [], "newton": []}
    residuals: dict[str, list[float]] = {"fixed_point": [], "newton": []}
    lengths: dict[str, list[float]] = {"fixed_point": [], "newton": []}
    deviation = math.nan
    for eps in epsilons:
        for kind in nfe:
            path = homotopy_path(toy, z_star + eps * v, kind, method="dopri5", rtol=tol, atol=tol,
                                 jac=toy.jacobian)
            nfe[kind].append(path.nfe)
            residuals[kind].append(path.end_residual)
            lengths[kind].append(float(path.states.diff(dim=0).norm(dim=-1).sum()))
            if eps == 0 and kind == "fixed_point":
                deviation = float((path.states - z_star).norm(dim=-1).max())
    return H10.record(dict(
        epsilons=tuple(float(e) for e in epsilons),
        nfe={k: tuple(v_) for k, v_ in nfe.items()},
        end_residuals={k: tuple(v_) for k, v_ in residuals.items()},
        path_lengths={k: tuple(v_) for k, v_ in lengths.items()},
        path_deviation_at_zero=deviation,
        rtol=tol,
    ))


# --------------------------------------------------------------------------------------------
# The 1-D turning-point toy (author's MATLAB prototype)
# --------------------------------------------------------------------------------------------


TURNING_POINT = Check(
    "Turning point",
    "a = -2: λ-parameterisation breaks down at the turning point and the path never reaches "
    "λ = 1; a = 2: it reaches x = 1",
    conditions=lambda r: [
        Condition("a = -2: |λ_turn - (5 - 2√3)/13|", abs(r.lam_turn - r.lam_turn_exact), "<",
                  1e-7),
        Condition("a = -2: |x_turn + 2 + √3|", abs(r.x_turn - r.x_turn_exact), "<", 1e-5),
        Condition("a = -2: arc length reaches λ = 1", r.fail_reached_end, "==", False),
        Condition("a = -2: λ at s_max (heading back to 0)", r.fail_lam_at_s_max, "<",
                  r.lam_turn_exact),
        Condition("a = -2: dopri5 in λ fails with a step-size underflow",
                  "underflow" in r.dopri5_failure, "==", True),
        Condition("a = -2: dopri5 in λ stalls at the turning point: |λ_stall - λ_turn|",
                  abs(r.dopri5_furthest_lam - r.lam_turn_exact), "<", 1e-5),
        Condition("a = -2: RK4 in λ leaves H = 0 (max ||H||)", r.rk4_lambda_max_path_residual,
                  ">", 1e-2),
        Condition("a = 2: arc length reaches λ = 1", r.success_reached_end, "==", True),
        Condition("a = 2: |x(1) - 1| (arc length)", abs(r.success_end_x - 1), "<", 1e-7),
        Condition("a = 2: |x(1) - 1| (RK4 in λ)", abs(r.success_lambda_end_x - 1), "<", 1e-8),
    ],
)


def check_turning_point(s_max: float = 10.0, rtol: float = 1e-10) -> CheckRecord:
    """The 1-D toy ``H(x, λ) = λ(x² - 1) + (1 - λ)(x - a)`` from ``x = a``, for ``a = ∓2``.

    Arc length with dopri5 (``rtol = atol``) on ``s ∈ [0, s_max]``; λ-parameterised Davidenko ODE
    with dopri5 (fails with a step-size underflow at the turning point) and with RK4 400 steps
    (steps over the singularity and ends off the zero set).
    """
    lam_exact, x_exact = turning_point_closed_form(-2.0)
    start_fail, start_ok = (torch.tensor([a], dtype=DTYPE) for a in (-2.0, 2.0))
    fail_h, ok_h = QuadraticHomotopy(-2.0), QuadraticHomotopy(2.0)

    arc_fail = arclength_path(fail_h, start_fail, s_max, rtol=rtol, atol=rtol)
    arc_ok = arclength_path(ok_h, start_ok, s_max, rtol=rtol, atol=rtol)
    turn = arc_fail.turning_points[0]
    try:
        davidenko_path(fail_h, start_fail, method="dopri5", rtol=rtol, atol=rtol)
        failure, furthest = "no failure", 1.0
    except SolverFailure as err:
        failure = str(err)
        furthest = float(err.furthest_t)  # linear schedule on [0, 1]: t = λ
    lam_fail = davidenko_path(fail_h, start_fail, steps=400)
    lam_ok = davidenko_path(ok_h, start_ok, steps=400)
    return TURNING_POINT.record(dict(
        lam_turn=turn.lam,
        x_turn=float(turn.z[0]),
        lam_turn_exact=lam_exact,
        x_turn_exact=x_exact,
        fail_reached_end=arc_fail.reached_end,
        fail_lam_at_s_max=float(arc_fail.lambdas[-1]),
        fail_x_at_s_max=float(arc_fail.states[-1, 0]),
        fail_max_path_residual=float(arc_fail.path_residuals.max()),
        dopri5_failure=failure,
        dopri5_furthest_lam=furthest,
        rk4_lambda_end_x=float(lam_fail.end_state[0]),
        rk4_lambda_max_path_residual=float(lam_fail.path_residuals.max()),
        success_reached_end=arc_ok.reached_end,
        success_end_x=float(arc_ok.end_state[0]),
        success_end_s=float(arc_ok.end_params),
        success_max_path_residual=float(arc_ok.path_residuals.max()),
        success_lambda_end_x=float(lam_ok.end_state[0]),
    ), arc_fail=arc_fail, arc_success=arc_ok, lambda_fail=lam_fail, lambda_success=lam_ok)


__all__ = ["H8", "H9", "H10", "TURNING_POINT", "check_h8", "check_h9", "check_h10",
           "check_turning_point"]
