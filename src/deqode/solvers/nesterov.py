"""A Nesterov (NAG) fixed-grid ODE solver for torchdiffeq: ``odeint(..., method="nesterov")``.

The update rule is a **reconstruction** (a companion choice): the printed equations of Akhtar
(arXiv 2312.01657) are not transcribed, so this solver is built from the paper's abstract (a
"first-order NAG-based ODE solver, tuned for consistency, convergence and stability") and is
tested against the consequences derived in the book's Nesterov-theory chapter (multistep form,
consistency, zero-stability, linear stability, time-varying momentum), not against the paper.

Rule (equal steps h, constant momentum β, problem ``dx/dt = f(t, x)``)::

    y_{k+1} = x_k + c h f(t_k, x_k)                 (gradient step, from the look-ahead x_k)
    x_{k+1} = y_{k+1} + β (y_{k+1} - y_k)           (extrapolation: the next look-ahead)

with ``c = 1 - β`` (option ``scale=True``, the default: consistent) or ``c = 1`` (``scale=False``:
the textbook NAG step, inconsistent for β ≠ 0: it integrates ``dx/dt = f / (1 - β)``). Eliminating
y gives the explicit two-step method ``x_{k+2} - (1+β) x_{k+1} + β x_k = c h [(1+β) f_{k+1} - β
f_k]``, of order exactly 1 for every β when c = 1 - β, zero-stable iff -1 ≤ β < 1 (both derived
in the theory chapter). One evaluation of f per step, as Euler. The solver's state (what
torchdiffeq carries and returns) is the look-ahead sequence x.

Implementation: the velocity form. With ``u_k = (y_k - y_{k-1}) / h`` (velocity per unit time)
and ``H`` the length of the first step of the solve, the look-ahead is ``x_k = y_k + β_{k-1} H
u_k`` and the step k → k+1 of length ``h_k`` is::

    z_k     = x_k + β_{k-1} (h_k - H) u_k            (= x_k on an equal-step grid)
    f_k     = f(t_k, z_k)
    u_{k+1} = β_{k-1} u_k + c_k f_k                  (so y_{k+1} = y_k + h_k u_{k+1})
    x_{k+1} = x_k + [z_k - x_k] + c_k h_k f_k + β_k H u_{k+1}

On an equal-step grid (h_k = H) this is exactly the rule above (to rounding: the increment form
keeps β = 0 bitwise equal to torchdiffeq's ``euler``). On a grid with unequal steps (a clipped
last step, an adjoint interval shorter than h, a user ``grid_constructor``) f is evaluated at
``y_k + β_{k-1} h_k u_k`` while the carried look-ahead distance stays ``β H u``, so a constant
field is integrated exactly on any grid (tested). This variable-step extension is **ours** (the
equal-step analysis leaves it out of scope); the theory chapter's momentum analysis assumes equal
steps, so use a
step size that divides the interval (:func:`step_grid` snaps to such a grid).

Options (``odeint(..., options={...})``), all validated; an unknown key is an error (torchdiffeq
itself would only warn, and a misspelt ``beta`` would silently fall back to the default):

* ``beta`` (float, default 0.5 [companion]): momentum, 0 ≤ β < 1 (β ≥ 1 breaks the root
  condition, β < 0 is excluded [companion choice]; the weakly stable β = -1 is not offered).
* ``scale`` (bool, default True): ``c = 1 - β`` (True) or ``c = 1`` (False, inconsistent).
* ``start`` (``"euler"`` default, or ``"zero"``): the first velocity. ``"euler"`` starts it at
  its steady value ``u_0 = c f_0 / (1 - β)`` (reusing f_0, no extra evaluation), so that
  ``x_1 = x_0 + h f_0`` is an exact Euler step when c = 1 - β; ``"zero"`` is textbook NAG
  (``y_0 = x_0``), whose first step is ``x_0 + (1 + β) c h f_0``.
* ``schedule`` (``"const"`` default, or ``"nesterov"``): constant β, or the classic
  ``β_k = (k - 1)/(k + 2)`` with ``β_0 = 0`` (c_k = 1 - β_k when scaled); the schedule does not
  converge to ``dx/dt = f`` (derived in the theory chapter) and exists for the ablation. ``beta``
  is ignored under it.
* torchdiffeq's fixed-grid options: ``step_size``, ``grid_constructor`` (mutually exclusive),
  ``interp`` (``"linear"`` or ``"cubic"``), ``perturb``.

History and the adjoint: the momentum history (u, β_{k-1}, H and the step count) lives on the
solver instance and is reset at the start of every ``integrate`` call. torchdiffeq builds a new
solver for every ``odeint`` call, so each call starts afresh. ``odeint_adjoint`` integrates the
augmented backward system once per output interval, each time through a new ``odeint`` call,
i.e. with a **new instance**: the backward momentum restarts at every output time (with the start
rule), while the forward pass carries its momentum across all output times. With ``start="zero"``
and a step at least as long as the output spacing every backward step is the inconsistent
``(1 - β²) h`` first step, and the adjoint gradient is biased; ``start="euler"`` makes each
restart an exact Euler step (a companion choice, and its default). The adjoint gradient is
in any case the O(h) gradient of the continuous problem, not the exact gradient of the discrete
NAG forward pass, which direct backpropagation through ``odeint`` gives.

Time gradients: the step lengths stay tensors throughout (as in torchdiffeq's own fixed-grid
solvers), so backpropagation through ``odeint`` differentiates the iterates in the output times
(and in a grid's end points); on equal steps whose times require grad the shift ``β_{k-1} (h_k -
H) u_k`` is formed although it is zero, for its derivative. :func:`step_grid` reads the times as
numbers only to choose its number of steps. The values are bit-identical either way
(``tests/test_solver_gradients.py`` compares them with a frozen record). The time gradient is
that of the discrete pass: every output depends on the first step H through the look-ahead
distance β H u, which has no continuous counterpart (the adjoint's time gradient has none).

Speed: the solver runs its own copy of torchdiffeq's fixed-grid loop; where the times need no
gradient the steps after the first skip the per-step scalar tensor arithmetic and torchdiffeq's
per-call wrapper of the field. Without autograd they write into reused buffers; with autograd
each step's update (and the next step's look-ahead) is one graph node, ``_MomentumUpdate``, whose
backward is the transposed linear map in four to seven passes, instead of some eight elementwise
nodes. The iterates are bitwise those of the general step either way (the node's forward runs the
same operations). The gradients are equal to rounding only, not bitwise (the backward sums in
another order): measured up to 3.2e-7 (float32) and 8.8e-16 (float64) relative to the largest
entry; ``tests/test_nesterov_fast_path.py`` and the frozen-iterates test of
``tests/test_solver_gradients.py`` hold them to a few times that (and check that a wrong backward
fails, and gradcheck it).

Fused kernel: on the CPU, without autograd and inside a step node's forward, the update and the
next look-ahead are one loop in C (:mod:`deqode.solvers.nesterov_kernel`) instead of five to
eight elementwise torch calls, each a pass over the state. It rounds where those calls round
(``add`` with ``alpha`` and ``addcmul`` as one FMA, every other product and sum apart), checks
that on random states when first used, and is left out where it would not give torch's bits,
where no C compiler is found, with ``DEQODE_NATIVE=0``, and where torch would spread the
calls over several threads. The tests run the fast loop both ways.

Registration: :func:`register` adds ``"nesterov"`` to torchdiffeq's private ``SOLVERS`` table,
which ``odeint`` and ``odeint_adjoint`` share; ``import deqode`` calls it.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torchdiffeq._impl.misc import Perturb, _null_callback, _PerturbFunc
from torchdiffeq._impl.solvers import FixedGridODESolver

from deqode.choices import UnknownChoiceError, check_choice
from deqode.solvers import nesterov_kernel

METHOD_NAME = "nesterov"
DEFAULT_BETA = 0.5
START_RULES = ("euler", "zero")
SCHEDULES = ("const", "nesterov")
#: Options the solver itself consumes; the rest are torchdiffeq's fixed-grid options.
NESTEROV_OPTIONS = ("beta", "scale", "start", "schedule")
FIXED_GRID_OPTIONS = ("step_size", "grid_constructor", "interp", "perturb")
#: Keys torchdiffeq passes to every solver constructor (not user options).
_INTERNAL_KEYS = ("rtol", "atol", "norm")
SNAP_RTOL = 1e-6

GridConstructor = Callable[[Any, Tensor, Tensor], Tensor]


def check_beta(beta: float) -> float:
    """Return ``beta`` as a float if 0 ≤ β < 1, else raise a ValueError saying why."""
    if isinstance(beta, bool) or not isinstance(beta, int | float):
        raise TypeError(f"nesterov option beta must be a real number, got {beta!r}")
    beta = float(beta)
    if not math.isfinite(beta) or not 0.0 <= beta < 1.0:
        raise ValueError(
            f"nesterov option beta must satisfy 0 <= beta < 1, got {beta!r}: beta >= 1 violates "
            "the root condition (rho(z) = (z - 1)(z - beta) has a root on or outside the unit "
            "circle, so the method is not zero-stable), and negative momentum is not offered"
        )
    return beta


def momentum(k: int, beta: float, schedule: str = "const") -> float:
    """β_k of step k (k = 0 is the first step): β, or (k - 1)/(k + 2) with β_0 = 0."""
    if schedule == "const":
        return beta
    check_choice("nesterov schedule", schedule, SCHEDULES)
    return 0.0 if k == 0 else (k - 1) / (k + 2)


def step_grid(step_size: float) -> GridConstructor:
    """A torchdiffeq ``grid_constructor``: steps of ``step_size`` from t[0] to t[-1].

    Unlike torchdiffeq's own ``step_size`` grid (which takes ``ceil(T/h + 1)`` points, and so for
    many ``h = T/N`` in floating point adds a spurious sliver of a step at the end), the number of
    steps is snapped to ``round(T/h)`` when ``T/h`` is within a relative 1e-6 of an integer, and
    the grid is then exactly uniform (``linspace``). Otherwise the last step is clipped so that
    the grid ends at t[-1]. An interval shorter than h is one step. Works in both time directions
    (torchdiffeq hands a user grid constructor the original, possibly decreasing, times) and per
    interval inside ``odeint_adjoint``.
    """
    if isinstance(step_size, bool) or not isinstance(step_size, int | float | Tensor):
        raise TypeError(f"step_size must be a positive number, got {step_size!r}")
    h = float(step_size)
    if not math.isfinite(h) or h <= 0:
        raise ValueError(f"step_size must be positive and finite, got {step_size!r}")

    def grid(func: Any, y0: Tensor, t: Tensor) -> Tensor:
        start, end = t[0], t[-1]
        # The number of steps is an integer choice (as torchdiffeq's ``ceil(...).item()``), made
        # on detached times; the grid points stay tensors, differentiable in t[0] and t[-1].
        span = (end - start).detach().item()
        direction = 1.0 if span >= 0 else -1.0
        ratio = abs(span) / h
        nearest = round(ratio)
        if nearest >= 1 and abs(ratio - nearest) <= SNAP_RTOL * max(1.0, ratio):
            fraction = torch.arange(nearest + 1, dtype=t.dtype, device=t.device) / nearest
            out = start + (end - start) * fraction
        else:
            steps = max(math.ceil(ratio), 1)
            out = start + (direction * h) * torch.arange(steps + 1, dtype=t.dtype,
                                                         device=t.device)
        out[-1] = end
        return out

    grid.step_size = h  # type: ignore[attr-defined]
    return grid


def uniform_steps(t0: float, t1: float, n_steps: int) -> float:
    """The step size ``(t1 - t0) / n_steps`` after checking that ``n_steps`` is a positive int."""
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
        raise ValueError(f"n_steps must be a positive integer, got {n_steps!r}")
    return (t1 - t0) / n_steps


class NesterovODE(FixedGridODESolver):
    """The NAG fixed-grid solver (see the module docstring for the rule, options and history).

    Constructed by torchdiffeq as ``NesterovODE(func=..., y0=..., rtol=..., atol=..., **options)``.
    ``order = 1`` (the order of consistency with ``scale=True``; with ``scale=False`` the method is
    inconsistent for β ≠ 0).
    """

    order = 1

    def __init__(
        self,
        func: Any,
        y0: Tensor,
        *,
        beta: float = DEFAULT_BETA,
        scale: bool = True,
        start: str = "euler",
        schedule: str = "const",
        step_size: float | None = None,
        grid_constructor: GridConstructor | None = None,
        interp: str = "linear",
        perturb: bool = False,
        **kwargs: Any,
    ) -> None:
        unknown = [k for k in kwargs if k not in _INTERNAL_KEYS]
        if unknown:
            valid = ", ".join(repr(k) for k in NESTEROV_OPTIONS + FIXED_GRID_OPTIONS)
            raise UnknownChoiceError(
                f"unknown option(s) {', '.join(repr(k) for k in unknown)} for method "
                f"'{METHOD_NAME}'; valid choices: {valid}"
            )
        if not isinstance(scale, bool):
            raise TypeError(f"nesterov option scale must be True or False, got {scale!r}")
        check_choice("nesterov start rule", start, START_RULES)
        check_choice("nesterov schedule", schedule, SCHEDULES)
        check_choice("nesterov interp", interp, ("linear", "cubic"))
        self.beta = check_beta(beta)
        self.scale = scale
        self.start = start
        self.schedule = schedule
        if step_size is not None and grid_constructor is not None:
            raise ValueError("nesterov options step_size and grid_constructor are mutually "
                             "exclusive; give one of them")
        grid = step_grid(step_size) if step_size is not None else grid_constructor
        super().__init__(func, y0, step_size=None, grid_constructor=grid, interp=interp,
                         perturb=perturb, **kwargs)
        self.step_size = step_size
        self.reset()

    # ---- history ---------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the momentum history: the next step is a first step (start rule)."""
        self.steps_taken = 0
        self._velocity: Tensor | None = None  # u_k, velocity per unit time
        self._reference_dt: Tensor | None = None  # H, the first step's length
        self._prev_beta = 0.0  # β_{k-1}
        self._buffers: dict[str, Tensor] = {}  # scratch tensors of the steps without autograd
        self._ahead: Tensor | None = None  # the next step's look-ahead, formed by the last step
        self._fused: bool | None = None  # whether the fused kernel takes this solve's steps

    def integrate(self, t: Tensor) -> Tensor:
        """torchdiffeq's fixed-grid loop (same calls, callbacks and interpolation). Where the
        times need no gradient (and with constant β ≠ 0, no perturbation) every step after the
        first is taken by :meth:`_momentum_step`: step lengths and scale factors computed once
        per solve, the field called below torchdiffeq's per-call wrapper, buffers reused without
        autograd, one graph node per step with it. Values are bitwise those of
        :meth:`_step_func`, gradients equal to rounding (``tests/test_nesterov_fast_path.py``)."""
        self.reset()
        grid = self.grid_constructor(self.func, self.y0, t)
        values, outputs = grid.detach().tolist(), t.detach().tolist()
        assert values[0] == outputs[0] and values[-1] == outputs[-1]  # torchdiffeq's own check
        fast = (self.schedule == "const" and self.beta != 0.0 and not _differentiated(grid)
                and not self.perturb)
        points = grid.unbind()
        if fast:
            plan = _StepPlan(self.beta, self.coefficients(1)[1], grid)
            if getattr(self.func, "callback_step", None) is _null_callback:
                plan.pair(_states_read(values, outputs, self.interp))
            field, times = _unwrapped(self.func, self.y0, grid)
            steps = plan.steps
        solution = torch.empty(len(t), *self.y0.shape, dtype=self.y0.dtype, device=self.y0.device)
        solution[0] = self.y0
        j, y0 = 1, self.y0
        for k in range(len(values) - 1):
            t0, t1 = points[k], points[k + 1]
            dt = steps[k] if fast else t1 - t0
            self.func.callback_step(t0, y0, dt)
            if fast and k > 0:
                y1, f0 = self._momentum_step(field, times[k], y0, plan, k)
            else:
                dy, f0 = self._step_func(self.func, t0, dt, t1, y0)
                y1 = y0 + dy
            while j < len(outputs) and values[k + 1] >= outputs[j]:
                if self.interp == "linear":
                    solution[j] = (y0 if outputs[j] == values[k] else y1
                                   if outputs[j] == values[k + 1]
                                   else self._linear_interp(t0, t1, y0, y1, t[j]))
                else:
                    f1 = self.func(t1, y1)
                    solution[j] = self._cubic_hermite_interp(t0, y0, f0, t1, y1, f1, t[j])
                j += 1
            y0 = y1
        self._buffers, self._ahead = {}, None
        return solution

    def integrate_until_event(self, t0: Tensor, event_fn: Any):
        self.reset()
        return super().integrate_until_event(t0, event_fn)

    def coefficients(self, k: int) -> tuple[float, float]:
        """(β_k, c_k) of step k."""
        beta = momentum(k, self.beta, self.schedule)
        return beta, (1.0 - beta) if self.scale else 1.0

    # ---- one step --------------------------------------------------------------------------
    def _momentum_step(self, field: Callable, time: Tensor, y0: Tensor, plan: _StepPlan,
                       k: int) -> tuple[Tensor, Tensor]:
        """(y1, f0) of step k ≥ 1 with constant β ≠ 0 and times without gradient: the ops of
        :meth:`_step_func` on that path and torchdiffeq's ``y0 + dy``, with the per-step scalars
        of ``plan``. Without autograd the intermediates, the velocity and the state go to
        buffers reused by the next steps (the state alternates between two). With autograd the
        update is one graph node, :class:`_MomentumUpdate`, which also forms the next step's
        look-ahead; its forward runs the same ops, so the values are the same bits."""
        velocity, factor = self._velocity, plan.factors[k]
        self.steps_taken += 1
        if torch.is_grad_enabled():
            ahead = self._ahead
            if ahead is None:  # the first fast step (or after an equal one): form it here
                shift = None if factor is None else torch.mul(velocity, factor)
                ahead = y0 if shift is None else torch.add(y0, shift)
                plan.shift = None if shift is None else shift.detach()
            f0 = field(time, ahead)
            outs = _MomentumUpdate.apply(y0, velocity, f0, plan, k)
            self._velocity = outs[1]
            self._ahead = outs[2] if len(outs) > 2 else None
            return outs[0], f0
        into = self._scratch
        ahead, self._ahead = self._ahead, None  # formed by the fused kernel of the last step
        shift = None
        if factor is not None and ahead is None:
            shift = torch.mul(velocity, factor, out=into("shift", y0))
            ahead = torch.add(y0, shift, out=into("ahead", y0))
        f0 = field(time, y0 if factor is None else ahead)
        if self._fused is None:  # decided once per solve
            self._fused = nesterov_kernel.usable(y0, velocity)
        if self._fused:
            y1 = self._fused_step(y0, velocity, f0, ahead, plan, k)
            if y1 is not None:
                return y1, f0
        if factor is not None and shift is None:  # the look-ahead came from the kernel
            shift = torch.mul(velocity, factor, out=into("shift", y0))
        if velocity is self._buffers.get("velocity"):
            velocity.mul_(self.beta).add_(f0, alpha=plan.c)
        else:
            velocity = torch.mul(velocity, self.beta, out=into("velocity", y0))
            velocity.add_(f0, alpha=plan.c)
        self._velocity = velocity
        state = into("state", y0)  # the increment, then the new state, in the free state buffer
        if state is y0:
            state = into("other state", y0)
        dy = torch.mul(f0, plan.scaled[k], out=state)
        if factor is not None:
            dy = torch.add(shift, dy, out=dy)
        dy.addcmul_(velocity, plan.scale)
        return torch.add(y0, dy, out=dy), f0

    def _fused_step(self, y0: Tensor, velocity: Tensor, f0: Tensor, ahead: Tensor | None,
                    plan: _StepPlan, k: int) -> Tensor | None:
        """The update of :meth:`_momentum_step` without autograd by the fused kernel
        (:mod:`deqode.solvers.nesterov_kernel`: the same bits), which also forms the next step's
        look-ahead; None (nothing written) where the field's output does not suit it."""
        if not (f0.dtype == y0.dtype and f0.shape == y0.shape and f0.device == y0.device
                and f0.is_contiguous() and y0.is_contiguous() and velocity.is_contiguous()):
            return None
        into = self._scratch
        u_out = velocity if velocity is self._buffers.get("velocity") else into("velocity", y0)
        state = into("state", y0)
        if state is y0:
            state = into("other state", y0)
        next_ahead = None
        if plan.next_factors[k] is not None:
            next_ahead = into("ahead", y0)
            if next_ahead is ahead:
                next_ahead = into("other ahead", y0)
        if any(out is not None and nesterov_kernel.overlaps(f0, out)
               for out in (u_out, state, next_ahead)):
            return None
        nesterov_kernel.step(y0, velocity, f0, u_out, state, next_ahead, self.beta, plan.c,
                             plan.kernel_scaled[k], plan.kernel_factors[k], plan.kernel_scale,
                             plan.kernel_factors[k + 1])
        self._velocity, self._ahead = u_out, next_ahead
        return state

    def _scratch(self, name: str, like: Tensor) -> Tensor:
        """The buffer ``name`` (shaped like the state), allocated on first use in a solve."""
        buffer = self._buffers.get(name)
        if buffer is None:
            buffer = self._buffers[name] = torch.empty_like(like)
        return buffer

    def _step_func(self, func: Any, t0: Tensor, dt: Tensor, t1: Tensor, y0: Tensor):
        beta, c = self.coefficients(self.steps_taken)
        if self.steps_taken == 0:
            self._reference_dt = dt  # H: the look-ahead distance is β H u throughout the solve
        reference = self._reference_dt
        if self.steps_taken == 0 or self._prev_beta == 0.0:
            shift = None
        elif bool(dt == reference) and not _differentiated(dt, reference):
            shift = None  # equal steps: z_k = x_k exactly, and nothing to differentiate
        else:  # a step of another length: evaluate at y_k + β_{k-1} h_k u_k. Also on equal
            # steps whose times require grad: the shift is then +0 (values unchanged) but its
            # derivative β_{k-1} u_k d(h_k - H) is part of the time gradient.
            shift = (self._prev_beta * (dt - reference)) * self._velocity
        z = y0 if shift is None else y0 + shift
        f0 = func(t0, z, perturb=Perturb.NEXT if self.perturb else Perturb.NONE)
        if self.steps_taken == 0:
            # u_0: the steady velocity c f_0 / (1 - β_0) ("euler") or 0 ("zero"), and β_{-1} = β_0
            u_prev = f0 * (c / (1.0 - beta)) if self.start == "euler" else None
            beta_prev = beta
        else:
            u_prev, beta_prev = self._velocity, self._prev_beta
        # u_{k+1} = β_{k-1} u_k + c_k f_k (written so that β = 0, c = 1 is bitwise Euler)
        if u_prev is None or beta_prev == 0.0:
            velocity = f0 if c == 1.0 else c * f0
        else:
            velocity = (beta_prev * u_prev).add_(f0, alpha=c)  # fused: fewer passes over x
        # x_{k+1} - x_k = shift + c_k h_k f_k + β_k H u_{k+1}
        dy = dt * f0 if c == 1.0 else (c * dt) * f0
        if shift is not None:
            dy = shift + dy
        if beta != 0.0:
            scale = beta * reference  # a tensor on a grid; a float in event handling
            dy = (torch.addcmul(dy, velocity, scale) if isinstance(scale, Tensor)
                  else dy + scale * velocity)
        self._velocity, self._prev_beta = velocity, beta
        self.steps_taken += 1
        return dy, f0


class _StepPlan:
    """The per-step scalars of a fast solve on ``grid`` (constant β, scale factor c): step
    lengths h_k, scaled lengths c h_k, look-ahead scale β H and shift factors β (h_k - H) (None
    on a step of length H), as the tensors the step ops take, and as floats for the backward."""

    def __init__(self, beta: float, c: float, grid: Tensor) -> None:
        lengths = grid[1:] - grid[:-1]
        sizes = lengths.tolist()
        scaled = lengths if c == 1.0 else c * lengths
        factors = beta * (lengths - lengths[0])  # β_{k-1} (h_k - H)
        self.beta, self.c = beta, c
        self.steps = lengths.unbind()
        self.scaled, self.scaled_floats = scaled.unbind(), scaled.tolist()
        self.scale = beta * self.steps[0]
        self.scale_float = self.scale.item()
        equal = [h == sizes[0] for h in sizes]  # dt == H as the tensors compare
        self.factors = [None if same else f for same, f in zip(equal, factors.unbind(),
                                                                strict=True)]
        self.factor_floats = [0.0 if same else f for same, f in zip(equal, factors.tolist(),
                                                                   strict=True)]
        self.next_factors = [*self.factors[1:], None]
        # the forward's numbers for the fused kernel (None: no shift), apart from the backward's
        self.kernel_scaled, self.kernel_scale = list(self.scaled_floats), self.scale_float
        self.kernel_factors = [None if same else f for same, f in zip(equal, factors.tolist(),
                                                                     strict=True)] + [None]
        self.shift: Tensor | None = None  # the next step's shift, set by the step before it
        self.buffer: Tensor | None = None  # where the steps under autograd write it
        self.fused: bool | None = None  # whether the fused kernel takes the steps' forward
        # paired[k]: see _MomentumUpdate; set by NesterovODE.integrate (one more, for the end)
        self.paired = [False] * (len(sizes) + 1)

    def pair(self, used_states: set[int]) -> None:
        """Mark the steps k ≥ 2 with a shift whose start y_k is used by nothing but the step
        nodes (``used_states``: the indices of the states the solver's loop reads otherwise)."""
        for k in range(2, len(self.factor_floats)):
            self.paired[k] = self.factor_floats[k] != 0.0 and k not in used_states


class _MomentumUpdate(torch.autograd.Function):
    """(y_k, u_k, f_k) -> (y_{k+1}, u_{k+1}[, look-ahead_{k+1}]): the update of a fast step
    under autograd as one graph node. The forward runs the ops of :meth:`NesterovODE._step_func`
    (the same bits). The shift s = β (h - H) u of an unequal step is handed over detached in
    ``plan.shift`` and its derivative added here; when the next step is unequal the node also
    forms that step's look-ahead y_{k+1} + s_{k+1} and leaves s_{k+1} in ``plan.shift``.
    The backward is the transposed linear map in a few passes; it saves no tensor. Where
    y_{k+1} has no use but the next node and its look-ahead (``plan.paired[k + 1]``), the two
    derivatives of s_{k+1} (through the look-ahead, and through the next increment) sum to
    β (h_{k+1} - H) times the gradient of y_{k+1}, and this node adds them in one pass. The
    gradients equal those of the step-by-step graph to rounding, not bitwise (summation order)."""

    @staticmethod
    def forward(ctx, y0, velocity, f0, plan, k):
        ctx.set_materialize_grads(False)
        ctx.plan, ctx.k = plan, k
        factor = plan.next_factors[k]
        if plan.fused is None:  # decided once per solve
            plan.fused = nesterov_kernel.usable(y0, velocity)
        if (plan.fused and f0.dtype == y0.dtype and f0.shape == y0.shape and f0.is_contiguous()
                and y0.is_contiguous() and velocity.is_contiguous()):  # a fallback may permute
            new_velocity, y1 = torch.empty_like(velocity), torch.empty_like(y0)
            ahead = None if factor is None else torch.empty_like(y0)
            nesterov_kernel.step(y0, velocity, f0, new_velocity, y1, ahead, plan.beta, plan.c,
                                 plan.kernel_scaled[k], plan.kernel_factors[k],
                                 plan.kernel_scale, plan.kernel_factors[k + 1])
            plan.shift = None  # the next step's shift is inside its look-ahead (the same bits)
            return (y1, new_velocity) if ahead is None else (y1, new_velocity, ahead)
        shift = plan.shift
        if shift is None and plan.factors[k] is not None:  # the kernel formed the look-ahead
            shift = torch.mul(velocity, plan.factors[k])
        new_velocity = torch.mul(velocity, plan.beta).add_(f0, alpha=plan.c)
        dy = torch.mul(f0, plan.scaled[k])
        if shift is not None:
            dy = torch.add(shift, dy, out=dy)
        dy.addcmul_(new_velocity, plan.scale)
        y1 = torch.add(y0, dy, out=dy)
        if factor is None:
            plan.shift = None
            return y1, new_velocity
        buffer = plan.buffer  # a shift is read by its step only (above): one buffer for all
        if buffer is None:
            buffer = plan.buffer = torch.empty_like(new_velocity)
        plan.shift = torch.mul(new_velocity, factor, out=buffer)
        return y1, new_velocity, torch.add(y1, plan.shift)

    @staticmethod
    def backward(ctx, grad_y1, grad_velocity, grad_ahead=None):
        plan, k = ctx.plan, ctx.k
        grad_y = grad_y1 if grad_ahead is None else (
            grad_ahead if grad_y1 is None else grad_y1 + grad_ahead)  # ahead = y1 + s_{k+1}
        if grad_y is None:
            if grad_velocity is None:
                return None, None, None, None, None
            grad_y = torch.zeros_like(grad_velocity)
        # d/d u_{k+1}: the next step's velocity, its shift β (h_{k+1} - H) u_{k+1}, and β H u_{k+1}.
        # grad_velocity is the next node's own grad_u (u_{k+1} has no other use): updated in place.
        scale = plan.scale_float
        if plan.paired[k + 1]:  # the next node left φ grad_y1 to this one (φ grad_ahead too)
            scale += plan.factor_floats[k + 1]
            grad_ahead = None
        if grad_velocity is None:
            grad_v = (torch.mul(grad_y, scale) if grad_ahead is None
                      else torch.mul(grad_ahead, plan.factor_floats[k + 1]).add_(grad_y,
                                                                                 alpha=scale))
        else:
            grad_v = grad_velocity.add_(grad_y, alpha=scale)
            if grad_ahead is not None:
                grad_v.add_(grad_ahead, alpha=plan.factor_floats[k + 1])
        needs = ctx.needs_input_grad
        grad_f = torch.mul(grad_y, plan.scaled_floats[k]).add_(grad_v, alpha=plan.c) \
            if needs[2] else None
        grad_u = None
        if needs[1]:
            grad_u = grad_v.mul_(plan.beta)
            if plan.factor_floats[k] != 0.0 and not plan.paired[k]:
                grad_u.add_(grad_y, alpha=plan.factor_floats[k])
        return grad_y, grad_u, grad_f, None, None


def _states_read(grid: list[float], outputs: list[float], interp: str) -> set[int]:
    """The indices i of the states y_i that :meth:`NesterovODE.integrate` reads for its outputs
    (as it is, or to interpolate) on this grid."""
    read, j = set(), 1
    for k in range(len(grid) - 1):
        while j < len(outputs) and grid[k + 1] >= outputs[j]:
            if interp == "linear" and outputs[j] in (grid[k], grid[k + 1]):
                read.add(k if outputs[j] == grid[k] else k + 1)
            else:
                read.update((k, k + 1))
            j += 1
    return read


def _unwrapped(func: Any, y0: Tensor, grid: Tensor) -> tuple[Callable, tuple[Tensor, ...]]:
    """The user's field below torchdiffeq's ``_PerturbFunc`` wrapper and the grid times as that
    wrapper would hand them to it (cast to the state's real dtype), so that a step skips the
    wrapper's per-call ``y.abs()``; any other ``func`` is called as it is."""
    base = getattr(func, "base_func", None)
    if type(func) is not _PerturbFunc or base is None:
        return func, grid.unbind()
    return base, grid.to(y0.abs().dtype).unbind()


def _differentiated(*times: Any) -> bool:
    """Whether autograd records through any of these step lengths (tensors, or floats in event
    handling)."""
    return torch.is_grad_enabled() and any(
        isinstance(x, Tensor) and x.requires_grad for x in times)


def _odeint_module():
    """torchdiffeq's ``_impl.odeint`` *module* (the package attribute of that name is the
    function, hence importlib)."""
    return importlib.import_module("torchdiffeq._impl.odeint")


def solvers_table() -> dict[str, Any]:
    """torchdiffeq's ``SOLVERS`` dict, checked to be the one ``odeint_adjoint`` uses too.

    Raises a RuntimeError if torchdiffeq's private layout changed (pinned: torchdiffeq 0.2.5).
    """
    module = _odeint_module()
    table = getattr(module, "SOLVERS", None)
    adjoint = importlib.import_module("torchdiffeq._impl.adjoint")
    if not isinstance(table, dict) or getattr(adjoint, "SOLVERS", None) is not table:
        raise RuntimeError(
            "torchdiffeq's private SOLVERS table moved (expected torchdiffeq._impl.odeint.SOLVERS, "
            "shared with torchdiffeq._impl.adjoint); deqode pins torchdiffeq==0.2.5"
        )
    return table


def register() -> type[NesterovODE]:
    """Register ``method="nesterov"`` with torchdiffeq's ``odeint`` and ``odeint_adjoint``.

    Idempotent: calling it again (or after re-importing this module) leaves one entry, the
    current class. A different solver already registered under the name is an error.
    """
    table = solvers_table()
    existing = table.get(METHOD_NAME)
    if existing is not None and existing is not NesterovODE:
        ours = f"{NesterovODE.__module__}.{NesterovODE.__qualname__}"
        theirs = f"{existing.__module__}.{existing.__qualname__}"
        if theirs != ours:
            raise RuntimeError(
                f"torchdiffeq already has a solver {METHOD_NAME!r} ({theirs}); not replacing it"
            )
    table[METHOD_NAME] = NesterovODE
    return NesterovODE


def is_registered() -> bool:
    """Whether ``method="nesterov"`` currently resolves to :class:`NesterovODE`."""
    return solvers_table().get(METHOD_NAME) is NesterovODE


__all__ = [
    "DEFAULT_BETA",
    "METHOD_NAME",
    "NESTEROV_OPTIONS",
    "SCHEDULES",
    "START_RULES",
    "NesterovODE",
    "check_beta",
    "is_registered",
    "momentum",
    "register",
    "solvers_table",
    "step_grid",
    "uniform_steps",
]
