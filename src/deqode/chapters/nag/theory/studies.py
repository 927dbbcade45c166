"""E3-E6 and table T1: the unscaled variant, the momentum schedule, the standalone loop, adjoint
gradients and the solver properties (book chapter 10_nag_theory, sections E3-E6)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchdiffeq import odeint, odeint_adjoint

from deqode.chapters.nag.theory.lmm import (
    RK_METHODS,
    lmm_order,
    real_stability_interval,
    satisfies_root_condition,
    stability_interval_closed_form,
)
from deqode.chapters.nag.theory.problems import (
    DTYPE,
    PROBLEMS,
    TestProblem,
    final_error,
    fit_order,
    fixed_grid_solve,
    problem,
)
from deqode.choices import check_choice
from deqode.solvers.nesterov import (
    SCHEDULES,
    START_RULES,
    check_beta,
    momentum,
    register,
    step_grid,
)

# ------------------------------------------------------------------------------------------------
# E3: the unscaled variant
# ------------------------------------------------------------------------------------------------

UNSCALED_BETAS = (0.3, 0.6)
UNSCALED_STEPS = (20, 80, 320, 1280)


def unscaled_study(
    problems: Sequence[str] = tuple(PROBLEMS),
    betas: Sequence[float] = UNSCALED_BETAS,
    steps: Sequence[int] = UNSCALED_STEPS,
    start: str = "euler",
) -> list[dict[str, Any]]:
    """E3: c = 1 on f, error against ``x' = f`` (``target="f"``) and ``x' = f/(1-β)``."""
    records = []
    for name, beta, n, target in itertools.product(problems, betas, steps, ("f", "f/(1-beta)")):
        prob = problem(name)
        rate = 1.0 if target == "f" else 1.0 / (1.0 - beta)
        records.append({"problem": name, "beta": beta, "target": target, "n": n,
                        "h": (prob.t1 - prob.t0) / n,
                        "error": final_error(prob, n, beta=beta, scale=False, start=start,
                                             reference_rate=rate)})
    return records


def unscaled_identity_gap(prob: TestProblem, beta: float, n_steps: int, start: str = "euler",
                          n_outputs: int = 11) -> float:
    """C2: max |scale=False on f  -  scale=True on f/(1-β)| over all outputs (float64)."""
    t = torch.linspace(prob.t0, prob.t1, n_outputs, dtype=DTYPE)
    a = fixed_grid_solve(prob.f(), prob.initial(), t, n_steps, beta=beta, scale=False,
                         start=start)
    b = fixed_grid_solve(prob.f(1.0 / (1.0 - beta)), prob.initial(), t, n_steps, beta=beta,
                         scale=True, start=start)
    return float((a - b).abs().max())


def unscaled_summary(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """E3 per (problem, β), in that order: the error against ``x' = f`` at the finest n, the ratios
    of successive errors against ``x' = f`` for n ≥ 80 (they stay near 1: the error levels off) and
    the slope against ``x' = f/(1-β)`` over the finest pair."""
    import pandas as pd

    rows = []
    for (name, beta), group in pd.DataFrame(records).groupby(["problem", "beta"]):
        to_f = group[group["target"] == "f"].sort_values("n")
        to_scaled = group[group["target"] == "f/(1-beta)"].sort_values("n")
        errors = to_f["error"].to_numpy()
        slope = fit_order(to_scaled["h"].to_numpy()[-2:], to_scaled["error"].to_numpy()[-2:], 2)
        rows.append({"problem": name, "beta": beta, "n": int(to_f["n"].iloc[-1]),
                     "error_vs_f": errors[-1], "ratios": (errors[1:] / errors[:-1])[1:],
                     "slope_vs_scaled": slope})
    return rows


# ------------------------------------------------------------------------------------------------
# E4: the (k-1)/(k+2) schedule and the memory ODE
# ------------------------------------------------------------------------------------------------

SCHEDULE_STEPS = (80, 320, 1280, 5120)


def memory_ode_linear(lam: float, x0: float, t: float | np.ndarray, terms: int = 200) -> Any:
    """x(t) of the memory ODE ``x' = u, u' = (3/t)(λ x - u)`` (regular at t = 0).

    Equivalently ``t x'' + 3 x' = 3 λ x``; the regular solution is the power series
    ``x = Σ a_n t^n`` with ``a_0 = x0`` and ``a_n = 3 λ a_{n-1} / (n (n + 2))`` (entire).
    """
    t = np.asarray(t, dtype=float)
    coeff, total, power = float(x0), np.full_like(t, float(x0)), np.ones_like(t)
    for n in range(1, terms):
        coeff *= 3.0 * lam / (n * (n + 2))
        power = power * t
        total = total + coeff * power
        if abs(coeff) * np.max(np.abs(t)) ** n < 1e-18 * abs(x0) and n > 10:
            break
    return total


def schedule_study(
    steps: Sequence[int] = SCHEDULE_STEPS, t1: float = 2.0, beta: float = 0.5,
    start: str = "zero",
) -> list[dict[str, Any]]:
    """E4 on ``x' = -x, x(0) = 1`` on [0, t1]: constant β vs the schedule; errors against the
    exact solution (``target="x'=f"``) and against the memory ODE (``target="memory ODE"``)."""
    f = lambda t, x: -x  # noqa: E731
    x0 = torch.ones(1, dtype=DTYPE)
    t = torch.tensor([0.0, t1], dtype=DTYPE)
    exact = math.exp(-t1)
    memory = float(memory_ode_linear(-1.0, 1.0, t1))
    records = []
    for schedule in ("const", "nesterov"):
        for n in steps:
            x = float(fixed_grid_solve(f, x0, t, n, beta=beta, schedule=schedule,
                                       start=start)[-1])
            for target, ref in (("x'=f", exact), ("memory ODE", memory)):
                records.append({"schedule": schedule, "target": target, "n": n, "h": t1 / n,
                                "error": abs(x - ref)})
    return records


def schedule_series(records: Sequence[dict[str, Any]], schedule: str, target: str):
    """The E4 records of one schedule and target as a frame sorted by n (for the fits and F4)."""
    import pandas as pd

    frame = pd.DataFrame(records)
    chosen = frame[(frame["schedule"] == schedule) & (frame["target"] == target)]
    return chosen.sort_values("n")


# ------------------------------------------------------------------------------------------------
# E5: a standalone loop of the two-sequence rule
# ------------------------------------------------------------------------------------------------


def reference_loop(
    f: Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    t0: float,
    h: float,
    n_steps: int,
    beta: float = 0.5,
    scale: bool = True,
    start: str = "euler",
    schedule: str = "const",
) -> Tensor:
    """The two-sequence NAG rule as the book states it (our reconstruction of Akhtar, arXiv
    2312.01657), literally: ``y_{k+1} = x_k + c_k h f(t_k, x_k)``,
    ``x_{k+1} = y_{k+1} + β_k (y_{k+1} - y_k)``, with ``y_0 = x_0 - β_0 c_0 h f_0 / (1 - β_0)``
    (``"euler"``) or ``y_0 = x_0`` (``"zero"``). Returns x_0..x_n stacked (n + 1, ...).

    Independent of torchdiffeq and of the solver class (E5 compares the two); ``h`` may be
    negative (decreasing time).
    """
    check_beta(beta)
    check_choice("nesterov start rule", start, START_RULES)

    def coefficients(k: int) -> tuple[float, float]:
        b = momentum(k, beta, schedule)
        return b, (1.0 - b) if scale else 1.0

    beta0, c0 = coefficients(0)
    x = x0
    if start == "euler":
        y_prev = x0 - (beta0 * c0 * h / (1.0 - beta0)) * f(torch.tensor(t0, dtype=x0.dtype), x0)
    else:
        y_prev = x0
    xs = [x0]
    for k in range(n_steps):
        b, c = coefficients(k)
        y = x + (c * h) * f(torch.tensor(t0 + k * h, dtype=x0.dtype), x)
        x = y + b * (y - y_prev)
        y_prev = y
        xs.append(x)
    return torch.stack(xs)


class CountingFunction(torch.nn.Module):
    """Wraps ``f(t, x)`` and counts its evaluations (``nfe``)."""

    def __init__(self, f: Callable[[Tensor, Tensor], Tensor]) -> None:
        super().__init__()
        self.f = f
        self.nfe = 0

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        self.nfe += 1
        return self.f(t, x)


def plugin_checks(n: int = 40, beta: float = 0.6) -> dict[str, Any]:
    """E5 on problem (c) with ``n`` steps on [0, 2]: ``odeint(method="nesterov")`` against
    :func:`reference_loop` for every start rule, scaling and schedule (``loop_gap``); β = 0 bitwise
    equal to ``method="euler"``; evaluations of f per run (``nfe``, one per step); a tuple state
    against the flat one (``tuple_gap``); decreasing time against the loop with ``-h``
    (``backward_gap``, β = 0.5)."""
    register()
    prob = problem("linear2d")
    h = 2.0 / n
    t = torch.linspace(0.0, 2.0, n + 1, dtype=DTYPE)
    gaps = []
    for start in START_RULES:
        for scale in (True, False):
            for schedule in SCHEDULES:
                ours = odeint(prob.f(), prob.initial(), t, method="nesterov",
                              options={"step_size": h, "beta": beta, "scale": scale,
                                       "start": start, "schedule": schedule})
                loop = reference_loop(prob.f(), prob.initial(), 0.0, h, n, beta, scale, start,
                                      schedule)
                gaps.append(float((ours - loop).abs().max()))
    grid = step_grid(0.05)
    same_as_euler = torch.equal(
        odeint(prob.f(), prob.initial(), t, method="nesterov",
               options={"grid_constructor": grid, "beta": 0.0}),
        odeint(prob.f(), prob.initial(), t, method="euler", options={"grid_constructor": grid}),
    )
    counting = CountingFunction(prob.f())
    odeint(counting, prob.initial(), t, method="nesterov", options={"step_size": h})
    flat = odeint(prob.f(), prob.initial(), t, method="nesterov",
                  options={"step_size": h, "beta": beta})
    split = odeint(lambda t, s: tuple(torch.split(prob.f()(t, torch.cat(s)), 1)),
                   (prob.initial()[:1], prob.initial()[1:]), t, method="nesterov",
                   options={"step_size": h, "beta": beta})
    back = odeint(prob.f(), prob.initial(), torch.tensor([2.0, 0.0], dtype=DTYPE),
                  method="nesterov", options={"step_size": h, "beta": 0.5})[-1]
    loop_back = reference_loop(prob.f(), prob.initial(), 2.0, -h, n, 0.5)[-1]
    return {"variants": len(gaps), "loop_gap": max(gaps), "same_as_euler": same_as_euler,
            "steps": n, "nfe": counting.nfe,
            "tuple_gap": float((torch.cat(split, dim=1) - flat).abs().max()),
            "backward_gap": float((back - loop_back).abs().max())}


# ------------------------------------------------------------------------------------------------
# E6: adjoint vs direct gradients
# ------------------------------------------------------------------------------------------------

#: The step sizes of E6 (table T5).
ADJOINT_STEPS = (0.05, 0.01, 0.002)


def latent_ode_times(n_outputs: int = 100, n_total: int = 1000) -> Tensor:
    """The latent-ODE output grid: the first 100 stamps of linspace(0, 6π, 1000), as in
    torchdiffeq's examples/latent_ode.py (ntotal 1000, nsample 100, t in [0, 6π])."""
    return torch.linspace(0.0, 6 * math.pi, n_total, dtype=DTYPE)[:n_outputs]


class LinearField(torch.nn.Module):
    """``dx/dt = a x`` with a learnable scalar ``a``."""

    def __init__(self, a: float = -1.0) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(a, dtype=DTYPE))

    def forward(self, t: Tensor, x: Tensor) -> Tensor:
        return self.a * x


def gradient_of_sum(times: Tensor, a: float = -1.0) -> float:
    """Exact d/da Σ_i x(t_i) for x' = a x, x(t_0) = 1: Σ_i (t_i - t_0) e^{a (t_i - t_0)}."""
    s = times - times[0]
    return float((s * torch.exp(a * s)).sum())


def solver_gradient(
    times: Tensor, step_size: float, adjoint: bool, a: float = -1.0, **options: Any
) -> float:
    """d/da Σ_i x(t_i) through ``odeint`` (direct backprop) or ``odeint_adjoint``."""
    register()
    field = LinearField(a)
    x0 = torch.ones(1, dtype=DTYPE)
    opts = {"step_size": step_size, **options}
    solve = odeint_adjoint if adjoint else odeint
    out = solve(field, x0, times, method="nesterov", options=opts)
    out.sum().backward()
    return float(field.a.grad)


def adjoint_gradient_study(
    steps: Sequence[float] = ADJOINT_STEPS,
    starts: Sequence[str] = START_RULES,
    beta: float = 0.7,
    times: Tensor | None = None,
) -> list[dict[str, Any]]:
    """E6 (table T5): gradients of Σ x(t_i) w.r.t. a for x' = a x, a = -1, direct and adjoint."""
    times = latent_ode_times() if times is None else times
    exact = gradient_of_sum(times)
    records = []
    for start in starts:
        for h in steps:
            direct = solver_gradient(times, h, False, beta=beta, start=start)
            adjoint = solver_gradient(times, h, True, beta=beta, start=start)
            records.append({"start": start, "h": h, "direct": direct, "adjoint": adjoint,
                            "exact": exact, "direct_error": abs(direct - exact),
                            "adjoint_error": abs(adjoint - exact),
                            "adjoint_vs_direct": abs(adjoint - direct)})
    return records


# ------------------------------------------------------------------------------------------------
# T1: solver properties
# ------------------------------------------------------------------------------------------------

T1_BETAS = (0.3, 0.5, 0.7, 0.9)


def _order_label(order: int | None) -> str:
    return "inconsistent (solves f/(1-beta))" if order is None else str(order)


def solver_properties(betas: Sequence[float] = T1_BETAS, unscaled_beta: float = 0.5,
                      spacing: float = 1e-3) -> list[dict[str, Any]]:
    """T1: NFE per step, order, zero-stability and the real stability interval (grid search next
    to the closed form where one exists). The NAG rows' order comes from the error constants
    (:func:`lmm_order`) and their zero-stability from the roots of ρ; the Runge-Kutta rows use the
    classical orders of :data:`RK_METHODS` (one-step methods are always zero-stable)."""
    rows: list[dict[str, Any]] = []
    for method in ("euler", "midpoint", "heun3", "rk4"):
        nfe, order = RK_METHODS[method]
        rows.append({"solver": method, "nfe_per_step": nfe, "order": str(order),
                     "zero_stable": True,
                     "interval_grid": real_stability_interval(method, spacing=spacing),
                     "interval_closed_form": -2.0 if method in ("euler", "midpoint") else None})
    for beta in betas:
        rows.append({"solver": f"nesterov, beta={beta:g}, c=1-beta", "nfe_per_step": 1,
                     "order": _order_label(lmm_order(beta, True)),
                     "zero_stable": satisfies_root_condition(beta),
                     "interval_grid": real_stability_interval("nesterov", beta, True, spacing),
                     "interval_closed_form": stability_interval_closed_form(beta, True)})
    rows.append({"solver": f"nesterov, beta={unscaled_beta:g}, c=1", "nfe_per_step": 1,
                 "order": _order_label(lmm_order(unscaled_beta, False)),
                 "zero_stable": satisfies_root_condition(unscaled_beta),
                 "interval_grid": real_stability_interval("nesterov", unscaled_beta, False,
                                                          spacing),
                 "interval_closed_form": stability_interval_closed_form(unscaled_beta, False)})
    return rows


__all__ = [
    "ADJOINT_STEPS",
    "SCHEDULE_STEPS",
    "T1_BETAS",
    "UNSCALED_BETAS",
    "UNSCALED_STEPS",
    "CountingFunction",
    "LinearField",
    "adjoint_gradient_study",
    "gradient_of_sum",
    "latent_ode_times",
    "memory_ode_linear",
    "plugin_checks",
    "reference_loop",
    "schedule_series",
    "schedule_study",
    "solver_gradient",
    "solver_properties",
    "unscaled_identity_gap",
    "unscaled_study",
    "unscaled_summary",
]
