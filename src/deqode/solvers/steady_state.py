"""Steady states of ``du/dt = f(u) − u``: the forward solve of a Continuous DEQ (Pal et al. 2022).

A DEQ's fixed point ``u* = f(u*)`` is the steady state of the ODE ``du/dt = f(u) − u``, reached as
``t → ∞``. This module integrates that ODE with an adaptive explicit method under the termination
rules of the paper's Julia code (official code ``src/solvers/termination.jl``, ``src/solve.jl``),
and solves the same problem with the discrete baseline (per-sample limited-memory Broyden,
official code ``limited_memory_broyden.jl``) under the *same* rules.

Integrator. The paper's runs use OrdinaryDiffEq's ``VCAB3``, which torchdiffeq does not have (its
adaptive methods are Runge–Kutta pairs, its Adams methods fixed-step). We implement the same
scheme ourselves, :func:`integrate` with ``method="vcab3"``:

* the first two steps are Bogacki–Shampine 3(2) steps (3 new evaluations each, FSAL), which
  build the history the multistep formula needs;
* every later step is the **variable-step third-order Adams–Bashforth** formula, written in
  Newton form over the last three accepted points,
  ``u⁺ = u_n + h f_n + (h²/2) f[n,n−1] + (h³/3 + h₁h²/2) f[n,n−1,n−2]``: the last term is the
  difference between the 3rd- and 2nd-order formulas and is the local error estimate (as in
  OrdinaryDiffEq). An accepted step costs **one** new evaluation (the derivative at the new point,
  which the termination test reads for free); a rejected step costs none.

We chose this over torchdiffeq's ``bosh3`` (3 evaluations per step) because the paper's speed
ratios are ratios of function evaluations: an integrator with a different cost per step would
change every timing comparison. ``method="bs3"`` (Bogacki–Shampine throughout) is offered for
comparison. Step sizes: Hairer's initial-step heuristic (one extra evaluation), the error norm is
the RMS over the whole batch tensor of ``err / (abstol + reltol · max(|u|, |u⁺|))``, and the
I-controller ``h ← h · clip(0.9 · err^(−1/3), 0.2, 10)``. This controller is our simplification
[reconstruction]: OrdinaryDiffEq's default for ``VCAB3`` is its PI controller (β₁ = 7/30,
β₂ = 2/15 for order 3, same safety factor and limits), which damps step-size oscillation and so
changes how many attempts are rejected. ``max_steps`` caps step *attempts* (accepted +
rejected), as ``maxiters`` does in OrdinaryDiffEq.

Termination (evaluated after every accepted step, on ``du = f(u) − u``; norms are 2-norms over
the **entire batch tensor**, not per sample — the paper's convention, which differs from the
per-sample max used by :func:`deqode.solvers.fixed_point`):

* ``rel_norm``: stop when ``‖du‖ ≤ tol · ‖du + u‖`` (``= ‖f(u)‖``); return the last iterate.
* ``rel_deq_best``: objective ``‖du‖ / (‖du + u‖ + eps)``; ``abs_deq_best``: objective ``‖du‖``.
  Stop when (a) objective ≤ tol, or (b) stagnation: objective ≤ 3·tol, at least 30 steps taken
  and max/min of the objective history < 1.3 (the whole history: the Julia comment says "last 30
  steps", its indexing takes all of them), or (c) protective break: objective ≥ first objective
  · 1e3 · numel(u). Return the iterate with the **smallest** objective.

A non-finite state stops every mode (reason ``non_finite``) and returns the best finite iterate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from deqode.choices import check_choice
from deqode.solvers.fixed_point import REL_EPS, SolverInfo, _broyden, _Trace, batch_view

TERMINATION_MODES = ("rel_norm", "rel_deq_best", "abs_deq_best")
INTEGRATORS = ("vcab3", "bs3")
STOP_REASONS = ("tolerance", "stagnation", "protective_break", "max_steps", "t_end", "non_finite",
                "dt_underflow")

# Step-size controller (OrdinaryDiffEq-like defaults).
SAFETY, MIN_FACTOR, MAX_FACTOR = 0.9, 0.2, 10.0
ERROR_EXPONENT = 1.0 / 3.0  # embedded / AB2-vs-AB3 estimates are of local order 3

# Bogacki–Shampine 3(2): stage nodes, weights of the 3rd-order solution, and the weights of
# (3rd-order − embedded 2nd-order), the error estimate.
BS3_C = (0.5, 0.75)
BS3_B = (2.0 / 9.0, 1.0 / 3.0, 4.0 / 9.0)
BS3_E = (-5.0 / 72.0, 1.0 / 12.0, 1.0 / 9.0, -1.0 / 8.0)


@dataclass
class SteadyStateInfo(SolverInfo):
    """What a steady-state solve did (extends :class:`SolverInfo`).

    ``residuals`` is the termination objective after each accepted step (for the discrete
    solver: after each iterate, the initial one included); ``abs_residuals`` /
    ``rel_residuals`` hold the batch-global ``‖du‖`` and ``‖du‖ / ‖du + u‖`` alongside.
    ``iterations`` = accepted steps (or Broyden updates), ``nfe`` = evaluations of f,
    ``reason`` one of :data:`STOP_REASONS`, ``t`` the integration time reached.
    """

    termination: str = "rel_norm"
    tol: float = 0.05
    attempts: int = 0
    rejected: int = 0
    t: float = 0.0
    reason: str = ""
    dts: list[float] = field(default_factory=list)


def rms(t: Tensor) -> float:
    """Root mean square over every entry (OrdinaryDiffEq's default internal norm)."""
    return float(t.pow(2).mean().sqrt())


class Termination:
    """The Julia code's termination rules, batch-global (see the module docstring).

    Call :meth:`check` with each new iterate ``u`` and its ``du = f(u) − u``; it returns a stop
    reason or ``None``. :attr:`result` is the iterate to return (best or last, by mode).
    """

    def __init__(
        self,
        mode: str = "rel_norm",
        tol: float = 0.05,
        *,
        stagnation_factor: float = 3.0,
        stagnation_steps: int = 30,
        stagnation_ratio: float = 1.3,
        blowup_factor: float = 1e3,
    ) -> None:
        check_choice("termination mode", mode, TERMINATION_MODES)
        if tol < 0:
            raise ValueError(f"termination tolerance must be >= 0, got {tol}")
        self.mode, self.tol = mode, float(tol)
        self.stagnation_factor = stagnation_factor
        self.stagnation_steps = stagnation_steps
        self.stagnation_ratio = stagnation_ratio
        self.blowup_factor = blowup_factor
        self.history: list[float] = []
        self.abs_history: list[float] = []
        self.rel_history: list[float] = []
        self.best: Tensor | None = None
        self.best_objective = math.inf
        self.best_index = -1
        self.last: Tensor | None = None

    def objective(self, u: Tensor, du: Tensor) -> tuple[float, float, float]:
        """(objective, ‖du‖, ‖du‖ / ‖du + u‖) on the whole batch tensor."""
        abs_norm = float(du.norm())
        f_norm = float((du + u).norm())
        rel = abs_norm / (f_norm + REL_EPS)
        if self.mode == "abs_deq_best":
            return abs_norm, abs_norm, rel
        if self.mode == "rel_norm":
            exact = 0.0 if abs_norm == 0 else (abs_norm / f_norm if f_norm > 0 else math.inf)
            return exact, abs_norm, rel
        return rel, abs_norm, rel

    def check(self, u: Tensor, du: Tensor) -> str | None:
        """Record iterate ``u`` and return why to stop now (``None``: go on)."""
        obj, abs_norm, rel = self.objective(u, du)
        if not (math.isfinite(obj) and bool(torch.isfinite(u).all())):
            return "non_finite"
        self.history.append(obj)
        self.abs_history.append(abs_norm)
        self.rel_history.append(rel)
        self.last = u.detach().clone()
        if obj < self.best_objective:
            self.best, self.best_objective = self.last, obj
            self.best_index = len(self.history) - 1
        if obj <= self.tol:
            return "tolerance"
        if self.mode == "rel_norm":
            return None
        steps = len(self.history)
        if (obj <= self.stagnation_factor * self.tol and steps >= self.stagnation_steps
                and max(self.history) / max(min(self.history), 1e-300) < self.stagnation_ratio):
            return "stagnation"
        if obj >= self.history[0] * self.blowup_factor * u.numel():
            return "protective_break"
        return None

    @property
    def returns_best(self) -> bool:
        return self.mode != "rel_norm"

    def result(self, fallback: Tensor) -> Tensor:
        """The iterate a solve returns: best (``*_best`` modes) or last; ``fallback`` if none."""
        chosen = self.best if self.returns_best else self.last
        return fallback if chosen is None else chosen

    def fill(self, info: SteadyStateInfo) -> None:
        """Copy the histories into ``info``."""
        info.residuals = list(self.history)
        info.abs_residuals = list(self.abs_history)
        info.rel_residuals = list(self.rel_history)
        info.best_iteration = max(self.best_index, 0)
        if self.returns_best:
            info.final_residual = self.best_objective
        else:
            info.final_residual = self.history[-1] if self.history else math.inf


# --------------------------------------------------------------------------------------------------
# the adaptive integrator
# --------------------------------------------------------------------------------------------------


@dataclass
class _Point:
    """An accepted point of the trajectory: time, state and derivative there."""

    t: float
    u: Tensor
    du: Tensor


def _error_norm(err: Tensor, u_old: Tensor, u_new: Tensor, abstol: float, reltol: float) -> float:
    scale = abstol + reltol * torch.maximum(u_old.detach().abs(), u_new.detach().abs())
    value = rms(err.detach() / scale)
    return value if math.isfinite(value) else math.inf


def initial_step(field_fn: Callable[[Tensor], Tensor], u0: Tensor, du0: Tensor, abstol: float,
                 reltol: float, order: int = 3) -> float:
    """Hairer–Nørsett–Wanner's starting step (one evaluation of the field), as in OrdinaryDiffEq
    and torchdiffeq: ``h0 = 0.01 d0/d1`` (or 1e-6 when a norm is tiny), refined by the change of
    the derivative over ``h0``; at most ``100 h0``."""
    with torch.no_grad():
        scale = abstol + u0.abs() * reltol
        d0, d1 = rms(u0 / scale), rms(du0 / scale)
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        du1 = field_fn(u0 + h0 * du0)
        d2 = rms((du1 - du0) / scale) / h0
        if max(d1, d2) <= 1e-15:
            h1 = max(1e-6, h0 * 1e-3)
        else:
            h1 = (0.01 / max(d1, d2)) ** (1.0 / (order + 1))
    return min(100 * h0, h1)


def _bs3_step(
    field_fn: Callable[[Tensor], Tensor], p: _Point, h: float
) -> tuple[Tensor, Tensor, Tensor]:
    """One Bogacki–Shampine 3(2) step from ``p``: (u⁺, du⁺ = F(u⁺), error estimate)."""
    k1 = p.du
    k2 = field_fn(p.u + (BS3_C[0] * h) * k1)
    k3 = field_fn(p.u + (BS3_C[1] * h) * k2)
    u_new = p.u + h * (BS3_B[0] * k1 + BS3_B[1] * k2 + BS3_B[2] * k3)
    k4 = field_fn(u_new)
    err = h * (BS3_E[0] * k1 + BS3_E[1] * k2 + BS3_E[2] * k3 + BS3_E[3] * k4)
    return u_new, k4, err


def _ab3_step(history: list[_Point], h: float) -> tuple[Tensor, Tensor]:
    """Variable-step Adams–Bashforth 3 from the last three accepted points (Newton form).

    With ``h₁ = t_n − t_{n−1}``, ``h₂ = t_{n−1} − t_{n−2}`` and divided differences
    ``f[n,n−1] = (f_n − f_{n−1}) / h₁``, ``f[n,n−1,n−2] = (f[n,n−1] − f[n−1,n−2]) / (h₁ + h₂)``,
    integrating the interpolating quadratic over ``[t_n, t_n + h]`` gives
    ``u⁺ = u_n + h f_n + (h²/2) f[n,n−1] + (h³/3 + h₁h²/2) f[n,n−1,n−2]``.
    Returns ``(u⁺, error)`` where ``error`` is the last term (AB3 − AB2); no evaluation of F.
    """
    p0, p1, p2 = history[-1], history[-2], history[-3]
    h1, h2 = p0.t - p1.t, p1.t - p2.t
    d01 = (p0.du - p1.du) / h1
    d12 = (p1.du - p2.du) / h2
    d012 = (d01 - d12) / (h1 + h2)
    err = (h**3 / 3.0 + h1 * h**2 / 2.0) * d012
    u_new = p0.u + h * p0.du + (h**2 / 2.0) * d01 + err
    return u_new, err


@dataclass
class IntegrationResult:
    """Final state of :func:`integrate` and what it cost."""

    u: Tensor
    t: float
    nfe: int
    attempts: int
    accepted: int
    rejected: int
    reason: str
    dts: list[float]


def integrate(
    field_fn: Callable[[Tensor], Tensor],
    u0: Tensor,
    *,
    t_end: float = math.inf,
    method: str = "vcab3",
    abstol: float = 1e-6,
    reltol: float = 1e-3,
    max_steps: int = 18,
    dt0: float | None = None,
    on_step: Callable[[Tensor, Tensor, float], str | None] | None = None,
) -> IntegrationResult:
    """Integrate the autonomous ODE ``du/dt = field_fn(u)`` from ``u0`` at ``t = 0``.

    Runs with or without autograd (with it, gradients flow through every accepted step: the
    Neural ODE baseline's "backprop" mode; step sizes are constants for autograd). Stops at
    ``t_end`` (the last step is clipped to land on it), after ``max_steps`` step attempts, when
    ``on_step(u, du, t)`` (called after every accepted step with the derivative at the new point)
    returns a reason, on a non-finite state, or when the step underflows.

    Args:
        method: ``"vcab3"`` (BS3 start-up, then variable-step AB3: 1 evaluation per step) or
            ``"bs3"`` (Bogacki–Shampine 3(2) with FSAL: 3 evaluations per step).
        abstol, reltol: step-size control tolerances (OrdinaryDiffEq's defaults 1e-6 / 1e-3).
        dt0: first step; ``None`` = Hairer's heuristic (one extra evaluation).

    Returns:
        an :class:`IntegrationResult`; ``nfe`` counts every evaluation of ``field_fn``.
    """
    check_choice("integrator", method, INTEGRATORS)
    if max_steps < 0:
        raise ValueError(f"max_steps must be >= 0, got {max_steps}")
    if not t_end > 0:
        raise ValueError(f"t_end must be positive, got {t_end}")
    nfe = 0

    def field_counted(u: Tensor) -> Tensor:
        nonlocal nfe
        nfe += 1
        return field_fn(u)

    start = _Point(0.0, u0, field_counted(u0))
    history = [start]
    h = dt0 if dt0 is not None else initial_step(field_counted, u0, start.du, abstol, reltol)
    attempts = accepted = rejected = 0
    reason, dts = "max_steps", []
    while True:
        if attempts >= max_steps:
            reason = "max_steps"
            break
        p = history[-1]
        if p.t >= t_end:
            reason = "t_end"
            break
        h = min(h, t_end - p.t)
        if h <= 1e-14 * max(1.0, abs(p.t)):
            reason = "dt_underflow"
            break
        attempts += 1
        use_multistep = method == "vcab3" and len(history) >= 3
        if use_multistep:
            u_new, err = _ab3_step(history, h)
            du_new = None
        else:
            u_new, du_new, err = _bs3_step(field_counted, p, h)
        err_norm = _error_norm(err, p.u, u_new, abstol, reltol)
        factor = SAFETY * err_norm ** -ERROR_EXPONENT if err_norm > 0 else MAX_FACTOR
        if err_norm > 1.0:  # reject: shrink and retry from the same point
            rejected += 1
            h *= max(MIN_FACTOR, min(factor, 1.0))
            continue
        if du_new is None:
            du_new = field_counted(u_new)
        t_new = p.t + h
        accepted += 1
        dts.append(h)
        history.append(_Point(t_new, u_new, du_new))
        del history[:-3]  # AB3 needs three points
        if not (bool(torch.isfinite(u_new).all()) and bool(torch.isfinite(du_new).all())):
            reason = "non_finite"
            break
        if on_step is not None:
            stop = on_step(u_new, du_new, t_new)
            if stop is not None:
                reason = stop
                break
        h *= min(MAX_FACTOR, max(MIN_FACTOR, factor))
    last = history[-1]
    return IntegrationResult(last.u, last.t, nfe, attempts, accepted, rejected, reason, dts)


# --------------------------------------------------------------------------------------------------
# the two forward solvers of the paper
# --------------------------------------------------------------------------------------------------


def _check_common(termination: str, tol: float, max_steps: int) -> None:
    check_choice("termination mode", termination, TERMINATION_MODES)
    if tol < 0:
        raise ValueError(f"tol must be >= 0, got {tol}")
    if max_steps < 0:
        raise ValueError(f"max_steps must be >= 0, got {max_steps}")


def steady_state(
    f: Callable[[Tensor], Tensor],
    u0: Tensor,
    *,
    termination: str = "rel_norm",
    tol: float = 0.05,
    max_steps: int = 18,
    method: str = "vcab3",
    abstol: float = 1e-6,
    reltol: float = 1e-3,
    dt0: float | None = None,
) -> tuple[Tensor, SteadyStateInfo]:
    """Integrate ``du/dt = f(u) − u`` from ``u0`` toward ``t = ∞`` without autograd.

    ``f`` maps a tensor of ``u0``'s shape to one of the same shape (the whole batch at once: f
    may mix samples, e.g. through batch-statistics BatchNorm). The termination rule
    ``termination`` with tolerance ``tol`` (module docstring) is tested after every accepted
    step; at most ``max_steps`` step attempts. ``abstol``/``reltol`` control the *step size*
    only: the paper's Julia code never passes its 0.05 to the integrator, which therefore runs at
    OrdinaryDiffEq's defaults 1e-6 / 1e-3 — our defaults too (the official code named above).

    Returns the best (``*_best``) or last (``rel_norm``) iterate and a :class:`SteadyStateInfo`
    (``converged`` = stopped by the tolerance test; nothing raises on numerical trouble).
    """
    _check_common(termination, tol, max_steps)
    rule = Termination(termination, tol)

    def field_fn(u: Tensor) -> Tensor:
        return f(u) - u

    with torch.no_grad():
        out = integrate(field_fn, u0.detach(), method=method, abstol=abstol, reltol=reltol,
                        max_steps=max_steps, dt0=dt0, on_step=lambda u, du, t: rule.check(u, du))
    info = SteadyStateInfo(method=method, stop_mode=termination, termination=termination, tol=tol,
                           nfe=out.nfe, iterations=out.accepted, attempts=out.attempts,
                           rejected=out.rejected, t=out.t, reason=out.reason, dts=out.dts)
    rule.fill(info)
    info.converged = out.reason == "tolerance"
    info.diverged = out.reason == "non_finite"
    return rule.result(u0.detach()), info


class _TerminationTrace(_Trace):
    """:class:`deqode.solvers.fixed_point`'s trace with the batch-global termination rules."""

    def __init__(self, f: Callable[[Tensor], Tensor], z0: Tensor, info: SolverInfo,
                 rule: Termination) -> None:
        super().__init__(f, z0, info, tol=0.0)
        self.rule = rule
        self.reason: str | None = None

    def record(self, z: Tensor, fz: Tensor) -> None:
        super().record(z, fz)
        if self.reason is None:
            u = z.reshape(self.shape)
            self.reason = self.rule.check(u, fz.reshape(self.shape) - u)

    @property
    def stop(self) -> bool:
        return self.reason is not None


def broyden_steady_state(
    f: Callable[[Tensor], Tensor],
    u0: Tensor,
    *,
    termination: str = "rel_norm",
    tol: float = 0.05,
    max_steps: int = 18,
    memory: int = 27,
) -> tuple[Tensor, SteadyStateInfo]:
    """The discrete DEQ's forward solve: limited-memory Broyden on ``g(u) = u − f(u)``.

    Broyden's update is per sample (one low-rank inverse-Jacobian estimate per sample, starting at
    the identity so the first step is a Picard step; no line search), exactly the update of
    :func:`deqode.solvers.fixed_point` (``method="broyden"``), while the stopping test is the
    batch-global :class:`Termination` shared with :func:`steady_state` (as in the official
    ``limited_memory_broyden.jl``: same termination modes, best iterate in ``*_best`` modes).
    The memory ``min(max_steps, memory)`` never fills within ``max_steps`` updates, so FIFO and
    restart policies coincide.
    NFE = updates + 1.
    """
    _check_common(termination, tol, max_steps)
    rule = Termination(termination, tol)
    info = SteadyStateInfo(method="broyden", stop_mode=termination, termination=termination,
                           tol=tol)
    with torch.no_grad():
        z0 = u0.detach()
        trace = _TerminationTrace(f, z0, info, rule)
        _broyden(trace, batch_view(z0).clone(), max_steps, max(min(max_steps, memory), 1), False)
    info.iterations = len(info.abs_residuals) - 1
    info.attempts = info.iterations
    info.reason = trace.reason or "max_steps"
    rule.fill(info)
    info.converged = info.reason == "tolerance"
    info.diverged = info.reason == "non_finite"
    return rule.result(z0).reshape(u0.shape), info


__all__ = [
    "INTEGRATORS",
    "STOP_REASONS",
    "TERMINATION_MODES",
    "IntegrationResult",
    "SteadyStateInfo",
    "Termination",
    "broyden_steady_state",
    "initial_step",
    "integrate",
    "steady_state",
]
