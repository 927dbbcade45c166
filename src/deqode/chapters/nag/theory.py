"""Consistency, convergence and stability ("CCS") of the Nesterov ODE solver: experiments E0-E6.

The chapter "the Nesterov solver" (nag-solver.md §2.3-§2.8) checks the **reconstructed** NAG
rule of :mod:`deqode.solvers.nesterov` against classical linear-multistep theory. Each function
here computes one experiment; the notebook ``10_nag_theory`` prints, plots and asserts, and
``tests/test_nesterov.py`` asserts the same conditions.

* E0 :func:`symbolic_lmm`: ρ, σ and the error constants C_0..C_2 with sympy, for a general step
  coefficient c and for c = 1 and c = 1 - β (numerically: :func:`error_constants`,
  :func:`lmm_order`); :func:`rho_roots` for the root condition.
* E1 :func:`order_study`: global error at t1 against closed-form solutions of three test ODEs
  (:data:`PROBLEMS`), the least-squares order over the finest step sizes (:func:`fit_order`).
* E2 :func:`real_stability_interval` (grid search) against :func:`stability_interval_closed_form`;
  :func:`max_root_modulus` on a complex grid for the region plots, with Runge-Kutta references.
* E3 :func:`unscaled_study`: the c = 1 variant integrates ``dx/dt = f/(1 - β)``.
* E4 :func:`schedule_study`: the ``(k-1)/(k+2)`` schedule converges to the memory ODE
  ``x' = u, u' = (3/t)(f - u)`` (:func:`memory_ode_linear`), not to ``x' = f``.
* E5 :func:`reference_loop`: a standalone tensor loop of the two-sequence rule, to compare with
  ``odeint(method="nesterov")``.
* E6 :func:`adjoint_gradient_study`: ``odeint`` vs ``odeint_adjoint`` gradients as h shrinks.

Everything runs in float64 on the CPU in seconds. The error-constant convention is the standard
``C_q = Σ_j j^q α_j / q! - Σ_j j^(q-1) β_j / (q-1)!`` for ``Σ α_j x_{k+j} = h Σ β_j f_{k+j}``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchdiffeq import odeint, odeint_adjoint

from deqode.choices import check_choice
from deqode.solvers.nesterov import (
    START_RULES,
    check_beta,
    momentum,
    register,
    step_grid,
)

DTYPE = torch.float64
#: β values of the order study (E1) and of the stability plots (E2).
ORDER_BETAS = (0.0, 0.3, 0.6, 0.9)
REGION_BETAS = (0.0, 0.3, 0.5, 0.7, 0.9)
#: n = 20 * 2^j up to 640 (E1).
ORDER_STEPS = tuple(20 * 2**j for j in range(6))
#: Fixed-grid methods of torchdiffeq: evaluations of f per step and classical order.
RK_METHODS = {"euler": (1, 1), "midpoint": (2, 2), "heun3": (3, 3), "rk4": (4, 4)}


# ------------------------------------------------------------------------------------------------
# E0: the linear multistep form, symbolically
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SymbolicLMM:
    """ρ, σ and error constants of ``x_{k+2} - (1+β) x_{k+1} + β x_k = c h [(1+β) f_{k+1} - β f_k]``
    (sympy expressions in the symbols ``beta``, ``c`` and ``z``)."""

    beta: Any
    c: Any
    z: Any
    rho: Any
    sigma: Any
    constants: tuple[Any, ...]  # C_0, C_1, C_2

    def at(self, c_value: Any) -> tuple[Any, ...]:
        """The error constants with c replaced (e.g. ``1`` or ``1 - beta``), simplified."""
        import sympy as sp

        return tuple(sp.simplify(C.subs(self.c, c_value)) for C in self.constants)

    def normalised_error_constant(self, c_value: Any) -> Any:
        """``C_2 / σ(1)``: the constant of the global error per unit time (for consistent c)."""
        import sympy as sp

        return sp.simplify(self.at(c_value)[2] / self.sigma.subs({self.z: 1, self.c: c_value}))


def symbolic_lmm(max_q: int = 2) -> SymbolicLMM:
    """E0: the characteristic polynomials and C_0..C_max_q of the NAG recursion (nag §2.3)."""
    import sympy as sp

    beta, c, z = sp.symbols("beta c z")
    alphas = [beta, -(1 + beta), sp.Integer(1)]  # coefficients of x_k, x_{k+1}, x_{k+2}
    betas = [-c * beta, c * (1 + beta), sp.Integer(0)]
    rho = sp.expand(sum(a * z**j for j, a in enumerate(alphas)))
    sigma = sp.expand(sum(b * z**j for j, b in enumerate(betas)))
    constants = []
    for q in range(max_q + 1):
        term = sum(sp.Integer(j) ** q * a for j, a in enumerate(alphas)) / sp.factorial(q)
        if q >= 1:
            term -= sum(sp.Integer(j) ** (q - 1) * b for j, b in enumerate(betas)) / sp.factorial(
                q - 1
            )
        constants.append(sp.simplify(term))
    return SymbolicLMM(beta, c, z, rho, sigma, tuple(constants))


def error_constants(beta: float, scale: bool = True, max_q: int = 3) -> list[float]:
    """C_0..C_max_q of the NAG recursion at a numeric β (c = 1 - β, or c = 1 if not ``scale``).

    The same convention as :func:`symbolic_lmm`, evaluated in floating point.
    """
    c = (1.0 - beta) if scale else 1.0
    alphas = (beta, -(1.0 + beta), 1.0)
    betas = (-c * beta, c * (1.0 + beta), 0.0)
    out = []
    for q in range(max_q + 1):
        term = sum(j**q * a for j, a in enumerate(alphas)) / math.factorial(q)
        if q >= 1:
            term -= sum(j ** (q - 1) * b for j, b in enumerate(betas)) / math.factorial(q - 1)
        out.append(float(term))
    return out


def lmm_order(beta: float, scale: bool = True, tol: float = 1e-12) -> int | None:
    """Order of consistency p (C_0 = ... = C_p = 0, C_{p+1} != 0), or None if inconsistent.

    Computed from :func:`error_constants`, not assumed (T1's order column).
    """
    constants = error_constants(beta, scale)
    if abs(constants[0]) > tol or abs(constants[1]) > tol:
        return None
    for q, value in enumerate(constants[2:], start=2):
        if abs(value) > tol:
            return q - 1
    raise ValueError(f"order of the NAG recursion at beta={beta} exceeds {len(constants) - 2}")


def rho_roots(beta: float) -> np.ndarray:
    """Roots of ρ(z) = z² - (1+β) z + β (they are 1 and β)."""
    return np.roots([1.0, -(1.0 + beta), beta])


def satisfies_root_condition(beta: float, tol: float = 1e-12) -> bool:
    """Root condition: all roots of ρ in the closed unit disc, those on the circle simple."""
    roots = rho_roots(beta)
    moduli = np.abs(roots)
    if np.any(moduli > 1 + tol):
        return False
    on_circle = roots[np.abs(moduli - 1) <= tol]
    for i, r in enumerate(on_circle):
        if np.any(np.abs(np.delete(on_circle, i) - r) <= 1e-8):
            return False
    return True


# ------------------------------------------------------------------------------------------------
# E2: linear stability
# ------------------------------------------------------------------------------------------------


def stability_interval_closed_form(beta: float, scale: bool = True) -> float:
    """Left end of the real stability interval in ĥ = hλ (nag §2.5), valid for -1/2 < β < 1.

    ``-2(1+β)/((1-β)(1+2β))`` with c = 1 - β; ``-2(1+β)/(1+2β)`` with c = 1.
    """
    if not -0.5 < beta < 1:
        raise ValueError(f"the closed form holds for -1/2 < beta < 1, got {beta}")
    left = -2.0 * (1.0 + beta) / (1.0 + 2.0 * beta)
    return left / (1.0 - beta) if scale else left


def max_root_modulus(hl: np.ndarray, beta: float, scale: bool = True) -> np.ndarray:
    """Largest root modulus of π(z) = z² - (1+β) a z + β a with a = 1 + c ĥ (ĥ = hλ, complex)."""
    hl = np.asarray(hl, dtype=complex)
    c = (1.0 - beta) if scale else 1.0
    a = 1.0 + c * hl
    b = (1.0 + beta) * a
    disc = np.sqrt(b * b - 4.0 * beta * a + 0j)
    return np.maximum(np.abs((b + disc) / 2), np.abs((b - disc) / 2))


def rk_amplification(hl: np.ndarray, method: str) -> np.ndarray:
    """|R(ĥ)| of euler/midpoint/heun3/rk4 (explicit s-stage RK of order s ≤ 4: R = Σ ĥ^j/j!)."""
    check_choice("Runge-Kutta method", method, RK_METHODS)
    order = RK_METHODS[method][1]
    hl = np.asarray(hl, dtype=complex)
    return np.abs(sum(hl**j / math.factorial(j) for j in range(order + 1)))


def amplification(hl: np.ndarray, method: str, beta: float = 0.5, scale: bool = True) -> np.ndarray:
    """The stability measure of a method at ĥ: max root modulus (nesterov) or |R(ĥ)| (RK)."""
    if method == "nesterov":
        return max_root_modulus(hl, beta, scale)
    return rk_amplification(hl, method)


def real_stability_interval(
    method: str = "nesterov",
    beta: float = 0.5,
    scale: bool = True,
    spacing: float = 1e-4,
    lower: float = -40.0,
    tol: float = 1e-12,
) -> float:
    """E2: the left end of the stable real segment [x, 0] found on a grid of ``spacing``.

    Returns the smallest grid point x such that every grid point in [x, 0] is stable
    (amplification ≤ 1 + tol); exact to within ``spacing``.
    """
    n = round(-lower / spacing)
    grid = -spacing * np.arange(n + 1)
    stable = amplification(grid, method, beta, scale) <= 1.0 + tol
    if not stable[0]:
        raise ValueError(f"{method} is not stable at hλ = 0")
    unstable = np.flatnonzero(~stable)
    if unstable.size == 0:
        raise ValueError(f"{method}: stable on all of [{lower}, 0]; lower the bound")
    return float(grid[unstable[0] - 1])


def boundary_locus(beta: float, scale: bool = True, n: int = 721) -> np.ndarray:
    """ĥ(θ) = ρ(e^{iθ}) / σ(e^{iθ}), θ ∈ [0, 2π] (the stability boundary is a subset)."""
    c = (1.0 - beta) if scale else 1.0
    z = np.exp(1j * np.linspace(0.0, 2 * np.pi, n))
    sigma = c * ((1.0 + beta) * z - beta)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (z - 1.0) * (z - beta) / sigma


def imaginary_axis_stable(beta: float, scale: bool = True, extent: float = 4.0,
                          n: int = 4001) -> bool:
    """Whether some ĥ = iy, 0 < |y| ≤ extent, is stable (nag §2.5: it is not, like Euler)."""
    y = np.linspace(-extent, extent, n)
    y = y[np.abs(y) > 1e-9]
    return bool(np.any(max_root_modulus(1j * y, beta, scale) <= 1.0 + 1e-12))


# ------------------------------------------------------------------------------------------------
# E1/E3: test problems with closed-form solutions
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestProblem:
    """``dx/dt = rate * f(t, x)`` on [t0, t1] with x(t0) = x0 and a closed-form solution.

    ``rate`` = 1 is the problem itself; ``rate`` = 1/(1 - β) is the equation the unscaled
    (c = 1) variant integrates (E3).
    """

    name: str
    label: str
    t0: float
    t1: float
    x0: tuple[float, ...]
    field: Callable[[Tensor, Tensor], Tensor]
    exact: Callable[[np.ndarray, float], np.ndarray]  # (times, rate) -> (len(times), dim)
    autonomous: bool

    __test__ = False  # not a pytest class

    def f(self, rate: float = 1.0) -> Callable[[Tensor, Tensor], Tensor]:
        """The vector field ``rate * f`` as a torchdiffeq function."""
        if rate == 1.0:
            return self.field
        return lambda t, x: rate * self.field(t, x)

    def initial(self) -> Tensor:
        return torch.tensor(self.x0, dtype=DTYPE)

    def solution(self, t: float | Sequence[float], rate: float = 1.0) -> np.ndarray:
        return self.exact(np.atleast_1d(np.asarray(t, dtype=float)), rate)


def _decay_exact(t: np.ndarray, rate: float) -> np.ndarray:
    return np.exp(-rate * t)[:, None]


def _logistic_exact(t: np.ndarray, rate: float) -> np.ndarray:
    x0 = 0.1
    return (1.0 / (1.0 + (1.0 / x0 - 1.0) * np.exp(-rate * t)))[:, None]


LINEAR_A = np.array([[-1.0, 2.0], [-2.0, -1.0]])
#: g(t) = (sin t, cos 2t) as (ω, G_sin, G_cos) terms.
LINEAR_FORCING = ((1.0, np.array([1.0, 0.0]), np.array([0.0, 0.0])),
                  (2.0, np.array([0.0, 0.0]), np.array([0.0, 1.0])))


def forced_linear_solution(
    A: np.ndarray,
    forcing: Sequence[tuple[float, np.ndarray, np.ndarray]],
    x0: np.ndarray,
    t: np.ndarray,
    rate: float = 1.0,
) -> np.ndarray:
    """Closed form of ``x' = rate (A x + Σ G_s sin ωt + G_c cos ωt)``, ``x(0) = x0``.

    Particular solution ``Σ P sin ωt + Q cos ωt`` with ``[[rA, ωI], [-ωI, rA]] [P; Q] =
    -r [G_s; G_c]``, plus ``expm(rA t) (x0 - x_p(0))``.
    """
    from scipy.linalg import expm

    d = A.shape[0]
    rA, eye = rate * A, np.eye(d)
    terms = []
    for omega, g_sin, g_cos in forcing:
        system = np.block([[rA, omega * eye], [-omega * eye, rA]])
        pq = np.linalg.solve(system, -rate * np.concatenate([g_sin, g_cos]))
        terms.append((omega, pq[:d], pq[d:]))
    out = np.empty((len(t), d))
    xp0 = sum(Q for _, _, Q in terms)
    for i, ti in enumerate(t):
        xp = sum(P * np.sin(w * ti) + Q * np.cos(w * ti) for w, P, Q in terms)
        out[i] = xp + expm(rA * ti) @ (np.asarray(x0) - xp0)
    return out


def _linear_field(t: Tensor, x: Tensor) -> Tensor:
    A = torch.as_tensor(LINEAR_A, dtype=x.dtype, device=x.device)
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    return x @ A.T + torch.stack([torch.sin(t), torch.cos(2 * t)]).expand_as(x)


def _linear_exact(t: np.ndarray, rate: float) -> np.ndarray:
    return forced_linear_solution(LINEAR_A, LINEAR_FORCING, np.array([1.0, 0.0]), t, rate)


PROBLEMS: dict[str, TestProblem] = {
    "decay": TestProblem("decay", "(a) x' = -x on [0, 1]", 0.0, 1.0, (1.0,),
                         lambda t, x: -x, _decay_exact, True),
    "logistic": TestProblem("logistic", "(b) x' = x(1 - x) on [0, 2]", 0.0, 2.0, (0.1,),
                            lambda t, x: x * (1 - x), _logistic_exact, True),
    "linear2d": TestProblem("linear2d", "(c) x' = A x + g(t) on [0, 2]", 0.0, 2.0, (1.0, 0.0),
                            _linear_field, _linear_exact, False),
}


def problem(name: str) -> TestProblem:
    check_choice("test problem", name, PROBLEMS)
    return PROBLEMS[name]


# ------------------------------------------------------------------------------------------------
# solving and measuring
# ------------------------------------------------------------------------------------------------


def fixed_grid_solve(
    f: Callable[[Tensor, Tensor], Tensor],
    x0: Tensor,
    t: Tensor,
    n_steps: int,
    method: str = "nesterov",
    **options: Any,
) -> Tensor:
    """``odeint`` on ``n_steps`` equal steps over [t[0], t[-1]] (outputs at every t)."""
    register()
    h = (float(t[-1]) - float(t[0])) / n_steps
    grid = step_grid(abs(h))
    return odeint(f, x0, t, method=method, options={"grid_constructor": grid, **options})


def final_error(
    prob: TestProblem, n_steps: int, method: str = "nesterov", rate: float = 1.0,
    reference_rate: float | None = None, **options: Any,
) -> float:
    """Max-norm error at t1 of ``n_steps`` steps on ``rate * f`` against the solution of
    ``reference_rate * f`` (default: the same rate)."""
    t = torch.tensor([prob.t0, prob.t1], dtype=DTYPE)
    x = fixed_grid_solve(prob.f(rate), prob.initial(), t, n_steps, method, **options)[-1]
    ref = prob.solution(prob.t1, rate if reference_rate is None else reference_rate)[0]
    return float(np.max(np.abs(x.numpy() - ref)))


def fit_order(steps: Sequence[float], errors: Sequence[float], last: int = 3) -> float:
    """Least-squares slope of log(error) against log(h) over the ``last`` finest step sizes."""
    h = np.asarray(steps, dtype=float)
    e = np.asarray(errors, dtype=float)
    order = np.argsort(h)[:last]
    if len(order) < 2:
        raise ValueError("fit_order needs at least two step sizes")
    return float(np.polyfit(np.log(h[order]), np.log(e[order]), 1)[0])


def order_study(
    problems: Sequence[str] = tuple(PROBLEMS),
    betas: Sequence[float] = ORDER_BETAS,
    steps: Sequence[int] = ORDER_STEPS,
    starts: Sequence[str] = START_RULES,
) -> list[dict[str, Any]]:
    """E1: one record per (problem, β, start, n): h, the error at t1 (scaled solver, c = 1 - β)."""
    records = []
    for name in problems:
        prob = problem(name)
        for beta in betas:
            for start in starts:
                for n in steps:
                    err = final_error(prob, n, beta=beta, start=start)
                    records.append({"problem": name, "beta": beta, "start": start, "n": n,
                                    "h": (prob.t1 - prob.t0) / n, "error": err})
    return records


def fitted_orders(records: Sequence[dict[str, Any]], last: int = 3) -> list[dict[str, Any]]:
    """Group E1 (or E3) records by everything but (n, h, error) and fit the order of each."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        key = tuple((k, v) for k, v in r.items() if k not in ("n", "h", "error"))
        groups.setdefault(key, []).append(r)
    out = []
    for key, rows in groups.items():
        out.append({**dict(key), "order": fit_order([r["h"] for r in rows],
                                                    [r["error"] for r in rows], last)})
    return out


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
    for name in problems:
        prob = problem(name)
        for beta in betas:
            for n in steps:
                h = (prob.t1 - prob.t0) / n
                for target, rate in (("f", 1.0), ("f/(1-beta)", 1.0 / (1.0 - beta))):
                    err = final_error(prob, n, beta=beta, scale=False, start=start,
                                      reference_rate=rate)
                    records.append({"problem": name, "beta": beta, "target": target, "n": n,
                                    "h": h, "error": err})
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
    """The spec's rule, literally: ``y_{k+1} = x_k + c_k h f(t_k, x_k)``,
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


# ------------------------------------------------------------------------------------------------
# E6: adjoint vs direct gradients
# ------------------------------------------------------------------------------------------------

#: The latent-ODE output grid: the first 100 stamps of linspace(0, 6π, 1000) (nag §3.5).
ADJOINT_STEPS = (0.05, 0.01, 0.002)


def latent_ode_times(n_outputs: int = 100, n_total: int = 1000) -> Tensor:
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
    "ORDER_BETAS",
    "ORDER_STEPS",
    "PROBLEMS",
    "REGION_BETAS",
    "RK_METHODS",
    "SCHEDULE_STEPS",
    "UNSCALED_BETAS",
    "UNSCALED_STEPS",
    "CountingFunction",
    "LinearField",
    "SymbolicLMM",
    "TestProblem",
    "adjoint_gradient_study",
    "amplification",
    "boundary_locus",
    "error_constants",
    "final_error",
    "fit_order",
    "fitted_orders",
    "fixed_grid_solve",
    "forced_linear_solution",
    "gradient_of_sum",
    "imaginary_axis_stable",
    "latent_ode_times",
    "lmm_order",
    "max_root_modulus",
    "memory_ode_linear",
    "order_study",
    "problem",
    "real_stability_interval",
    "reference_loop",
    "rho_roots",
    "rk_amplification",
    "satisfies_root_condition",
    "schedule_study",
    "solver_gradient",
    "solver_properties",
    "stability_interval_closed_form",
    "symbolic_lmm",
    "unscaled_identity_gap",
    "unscaled_study",
]
