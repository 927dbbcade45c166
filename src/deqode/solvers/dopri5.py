"""torchdiffeq's dopri5 with fewer passes over the state, for backpropagation through the solve.

:func:`odeint_dopri5` returns what ``torchdiffeq.odeint(func, y0, t, method="dopri5", ...)``
returns, step for step: the same stages, error estimates, step-size decisions, callbacks and
gradient paths (including the one through the first step size, which torchdiffeq's initial-step
rule computes from f(y0) with autograd on). Only the bookkeeping differs:

* the stages are a list of tensors, and each stage's state ``y0 + Σ_j (β_ij·dt)·k_j`` is summed
  term by term, in the order of torchdiffeq's reduction, instead of through a (…, 7) scratch tensor
  written with an unchecked assign and sliced per stage (that costs copies, strided reductions,
  and zero-filled slice gradients in the backward pass);
* the error estimate and error ratio are computed without autograd (torchdiffeq records a graph
  for them that no gradient ever uses: the next step size is computed under ``no_grad``);
* the interpolating polynomial is fitted only for the step that an output time falls in, not
  for every accepted step (the others were never evaluated);
* the time passed to ``func`` is cast to the state's dtype without an ``abs()`` of the state per
  evaluation.

On the CPU, with a float32 or float64 state, the forward values are bit-for-bit torchdiffeq's
(the summation order is the same, see :func:`_weighted_sum`), so every step-size decision is
too; elsewhere they agree to round-off. The gradients agree to round-off (autograd accumulates
the stages' gradients in another order). A tuple state, decreasing times or the
``step_t``/``jump_t`` options go to torchdiffeq's own ``odeint`` unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor
from torchdiffeq import odeint
from torchdiffeq._impl.dopri5 import Dopri5Solver
from torchdiffeq._impl.interp import _interp_evaluate, _interp_fit
from torchdiffeq._impl.misc import (
    Perturb,
    _compute_error_ratio,
    _nextafter,
    _optimal_step_size,
    _rms_norm,
)
from torchdiffeq._impl.rk_common import _RungeKuttaState

#: Options that :func:`odeint_dopri5` leaves to torchdiffeq (prescribed grid points).
GRID_OPTIONS = ("step_t", "jump_t")


def _no_callback(*args: Any) -> None:
    return None


class _TimedField:
    """``func(t, y)`` as torchdiffeq's solvers call it, ``(t, y, perturb=...)``, with ``t`` in
    the state's dtype (torchdiffeq's ``_PerturbFunc`` without its ``y.abs()``)."""

    def __init__(self, func: Callable[[Tensor, Tensor], Tensor]) -> None:
        self.func = func
        for name in ("callback_step", "callback_accept_step", "callback_reject_step"):
            setattr(self, name, getattr(func, name, _no_callback))

    def __call__(self, t: Tensor, y: Tensor, *, perturb: Perturb = Perturb.NONE) -> Tensor:
        t = t.to(y.dtype)
        if perturb is Perturb.NEXT:
            t = _nextafter(t, t + 1)
        elif perturb is Perturb.PREV:
            t = _nextafter(t, t - 1)
        return self.func(t, y)


def _weighted_sum(terms: Sequence[Tensor], weights: Tensor, used: Sequence[int]) -> Tensor:
    """``Σ_j weights[j]·terms[j]`` (j in ``used``; the other weights are zero) in the order of
    torch's CPU reduction over a short contiguous dimension, which is how torchdiffeq sums
    ``k * weights`` (measured on torch 2.14): below four terms left to right; from four on, four
    partial sums (term j < 4⌊n/4⌋ into sum j mod 4) added left to right, the remaining terms
    added to the first partial sum one by one (float32) or summed first (float64)."""
    count = len(weights)
    if count < 4:
        lanes, full = 1, count
    else:
        lanes, full = 4, count // 4 * 4
    partial: list[Tensor | None] = [None] * lanes
    tail: Tensor | None = None
    for j in used:
        term = terms[j] * weights[j]
        if j < full:
            partial[j % lanes] = _plus(partial[j % lanes], term)
        elif weights.dtype == torch.float64:
            tail = _plus(tail, term)
        else:
            partial[0] = _plus(partial[0], term)
    if tail is not None:
        partial[0] = _plus(partial[0], tail)
    total = None
    for value in partial:
        if value is not None:
            total = _plus(total, value)
    assert total is not None, "no nonzero weight"
    return total


def _plus(total: Tensor | None, term: Tensor) -> Tensor:
    """``total + term``, in place (``total`` is always a temporary of :func:`_weighted_sum`)."""
    return term if total is None else total.add_(term)


class _Step:
    """What the interpolant of an accepted step needs; fitted only when it is evaluated."""

    __slots__ = ("dt", "stages", "y0", "y1")

    def __init__(self, y0: Tensor, y1: Tensor, stages: list[Tensor], dt: Tensor) -> None:
        self.y0, self.y1, self.stages, self.dt = y0, y1, stages, dt


class LeanDopri5Solver(Dopri5Solver):
    """torchdiffeq's :class:`Dopri5Solver` with the stage bookkeeping of this module's docstring.

    Takes torchdiffeq's dopri5 options except ``step_t`` and ``jump_t``.
    """

    def __init__(self, func: _TimedField, y0: Tensor, rtol: Any, atol: Any,
                 **options: Any) -> None:
        grid = [name for name in GRID_OPTIONS if options.get(name) is not None]
        if grid:
            raise ValueError(f"LeanDopri5Solver does not take the options {grid}; use "
                             "torchdiffeq.odeint for prescribed grid points")
        super().__init__(func=func, y0=y0, rtol=rtol, atol=atol, **options)
        tableau = self.tableau
        if not (tableau.c_sol[-1] == 0 and (tableau.c_sol[:-1] == tableau.beta[-1]).all()):
            raise RuntimeError("dopri5's last stage is expected to be its solution (FSAL)")
        self._stage_at_end = [bool(alpha == 1.0) for alpha in tableau.alpha]
        self._beta_used = [_nonzero(beta) for beta in tableau.beta]
        self._error_used = _nonzero(tableau.c_error)
        self._mid_used = _nonzero(self.mid)

    def _stages(self, y0: Tensor, f0: Tensor, t0: Tensor, dt: Tensor,
                t1: Tensor) -> tuple[Tensor, list[Tensor], Tensor]:
        """The step's solution, its seven stages (FSAL: the last is f at the solution) and its
        error estimate (without autograd)."""
        t0, dt, t1 = t0.to(y0.dtype), dt.to(y0.dtype), t1.to(y0.dtype)
        stages = [f0]
        y1 = y0
        rows = zip(self.tableau.alpha, self.tableau.beta, self._beta_used, self._stage_at_end,
                   strict=True)
        for alpha, beta, used, at_end in rows:
            y1 = _weighted_sum(stages, beta * dt, used).add_(y0)  # = y0 + Σ, bit for bit
            if at_end:
                stages.append(self.func(t1, y1, perturb=Perturb.PREV))
            else:
                stages.append(self.func(t0 + alpha * dt, y1))
        with torch.no_grad():
            error = _weighted_sum(stages, dt * self.tableau.c_error, self._error_used)
        return y1, stages, error

    def _adaptive_step(self, rk_state: _RungeKuttaState) -> _RungeKuttaState:
        """One adaptive step; torchdiffeq's ``RKAdaptiveStepsizeODESolver._adaptive_step``
        without grid points."""
        y0, f0, _, t0, dt, interp = rk_state
        if not torch.isfinite(dt):
            dt = self.min_step
        dt = dt.clamp(self.min_step, self.max_step)
        self.func.callback_step(t0, y0, dt)
        t1 = t0 + dt
        assert t0 + dt > t0, f"underflow in dt {dt.item()}"
        assert torch.isfinite(y0).all(), f"non-finite values in state `y`: {y0}"
        y1, stages, error = self._stages(y0, f0, t0, dt, t1)
        with torch.no_grad():
            error_ratio = _compute_error_ratio(error, self.rtol, self.atol, y0, y1, self.norm)
        accept = bool(error_ratio <= 1)
        if dt > self.max_step:
            accept = False
        if dt <= self.min_step:
            accept = True
        if accept:
            self.func.callback_accept_step(t0, y0, dt)
            state = (y1, stages[-1], t0, t1)
            interp = _Step(y0, y1, stages, dt)
        else:
            self.func.callback_reject_step(t0, y0, dt)
            state = (y0, f0, t0, t0)
        dt_next = _optimal_step_size(dt, error_ratio, self.safety, self.ifactor, self.dfactor,
                                     self.order).clamp(self.min_step, self.max_step)
        return _RungeKuttaState(*state, dt_next, interp)

    def _coefficients(self, interp: _Step | list[Tensor]) -> list[Tensor]:
        """The interpolant's coefficients (torchdiffeq's ``_interp_fit``), fitted on demand."""
        if not isinstance(interp, _Step):
            return interp  # the initial state's constant placeholder
        dt = interp.dt.type_as(interp.y0)
        y_mid = _weighted_sum(interp.stages, dt * self.mid, self._mid_used).add_(interp.y0)
        return _interp_fit(interp.y0, interp.y1, y_mid, interp.stages[0], interp.stages[-1], dt)

    def _advance(self, next_t: Tensor) -> Tensor:
        steps = 0
        while next_t > self.rk_state.t1:
            assert steps < self.max_num_steps, (
                f"max_num_steps exceeded ({steps}>={self.max_num_steps})")
            self.rk_state = self._adaptive_step(self.rk_state)
            steps += 1
        state = self.rk_state
        return _interp_evaluate(self._coefficients(state.interp_coeff), state.t0, state.t1, next_t)


def _nonzero(weights: Tensor) -> list[int]:
    return [j for j, w in enumerate(weights.tolist()) if w != 0.0]


def odeint_dopri5(func: Callable[[Tensor, Tensor], Tensor], y0: Tensor, t: Tensor, *,
                  rtol: float = 1e-7, atol: float = 1e-9,
                  options: dict[str, Any] | None = None) -> Tensor:
    """``torchdiffeq.odeint(func, y0, t, method="dopri5", rtol=rtol, atol=atol, options=options)``
    through :class:`LeanDopri5Solver` (same values, fewer passes; see the module docstring).

    ``func``'s ``callback_step``/``callback_accept_step``/``callback_reject_step`` are called as
    torchdiffeq calls them. A tuple or complex state, times that are not one increasing 1-D
    floating tensor, or a ``step_t``/``jump_t`` option go to ``torchdiffeq.odeint`` itself.
    """
    options = dict(options or {})
    simple = (isinstance(y0, Tensor) and y0.is_floating_point() and isinstance(t, Tensor)
              and t.dim() == 1 and t.is_floating_point() and len(t) > 0
              and t.device == y0.device and bool((t[1:] > t[:-1]).all())
              and not any(options.get(name) is not None for name in GRID_OPTIONS)
              and not (torch.is_tensor(rtol) and rtol.requires_grad)
              and not (torch.is_tensor(atol) and atol.requires_grad))
    if not simple:
        return odeint(func, y0, t, rtol=rtol, atol=atol, method="dopri5", options=options)
    options.setdefault("norm", _rms_norm)
    solver = LeanDopri5Solver(_TimedField(func), y0, rtol, atol, **options)
    return solver.integrate(t)


__all__ = ["GRID_OPTIONS", "LeanDopri5Solver", "odeint_dopri5"]
