"""E1: test problems with closed-form solutions, fixed-grid solves and fitted orders (book
chapter 10_nag_theory, section E1)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchdiffeq import odeint

from deqode.choices import check_choice
from deqode.solvers.nesterov import START_RULES, register, step_grid

DTYPE = torch.float64
#: β values of the order study (E1).
ORDER_BETAS = (0.0, 0.3, 0.6, 0.9)
#: n = 20 * 2^j up to 640 (E1).
ORDER_STEPS = tuple(20 * 2**j for j in range(6))

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
    for name, beta, start, n in itertools.product(problems, betas, starts, steps):
        prob = problem(name)
        records.append({"problem": name, "beta": beta, "start": start, "n": n,
                        "h": (prob.t1 - prob.t0) / n,
                        "error": final_error(prob, n, beta=beta, start=start)})
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


__all__ = [
    "DTYPE", "ORDER_BETAS", "ORDER_STEPS", "PROBLEMS", "TestProblem", "final_error",
    "fit_order", "fitted_orders", "fixed_grid_solve", "forced_linear_solution", "order_study",
    "problem",
]
