"""Homotopy continuation for DEQ fixed points: Davidenko ODE, arc length, Newton and naive flows.

The module holds one idea, tracing the zero set of a homotopy from ``z0`` to the equilibrium, and
is long for that reason only: the homotopies, the path records, the λ- and arc-length tracers and
the two flows (the Newton flow is the Newton homotopy under the schedule ``1 − λ = e^{−t}``,
Nocedal & Wright, *Numerical Optimization*, §11.3; the naive flow ``dz/dt = f(z) − z`` is the
continuous DEQ of Pal et al., arXiv 2201.12240, for contrast) share one batching, Jacobian and
torchdiffeq plumbing.

Conventions (used throughout the book)
-------------------------------------
* A DEQ equilibrium is a fixed point ``z* = f(z*)``; it is a root of the residual
  ``g(z) = z - f(z)``. The residual we report along a path is the absolute norm
  ``||z - f(z)||_2`` per sample (the relative residual ``||f(z) - z|| / (||f(z)|| + eps)`` of the
  fixed-point solvers is not used here: the homotopy checks assert absolute numbers).
* ``J_f(z) = df/dz``; ``dg/dz = I - J_f``.
* Shapes: ``z0`` is ``[n]`` (one problem) or ``[B, n]`` (a batch of independent problems). The map
  ``f`` acts on the last dimension of a ``[B, n]`` tensor and must treat the rows independently
  (row ``b`` of ``f(z)`` depends on row ``b`` of ``z`` only). That is what lets one reverse-mode
  Jacobian of ``f(z).sum(0)`` give every per-sample Jacobian at once. Pass ``jac`` (``[B, n]`` ->
  ``[B, n, n]``) to use a closed-form Jacobian instead. ``f`` is only ever called on tensors with
  the batch size of ``z0`` (``[1, n]`` for a single problem), so it may hold a per-sample
  condition such as an injected input ``x [B, m]``.
* dtype and device follow ``z0``; everything runs in float64 when ``z0`` is float64.

A homotopy ``H(z, λ)``, ``λ ∈ [0, 1]``, has a known zero ``z0`` at ``λ = 0`` and ``H(·, 1) = g``.
Differentiating ``H(z(λ), λ) = 0`` gives the **Davidenko ODE**

    dz/dλ = -[∂_z H]^{-1} ∂_λ H,     z(0) = z0,

and a schedule ``λ = λ(t)`` multiplies the field by ``dλ/dt``. Three homotopies are built in:

=============  ==============================  ==================  ===============================
kind           H(z, λ)                          ∂_z H               field dz/dλ
=============  ==============================  ==================  ===============================
fixed_point    z - λ f(z) - (1 - λ) z0          I - λ J_f           (I - λJ_f)^{-1} (f(z) - z0)
newton         g(z) - (1 - λ) g(z0)             I - J_f             -(I - J_f)^{-1} g(z0)
fig1           z - λ f(z) - z0                  I - λ J_f           (I - λJ_f)^{-1} f(z)
=============  ==============================  ==================  ===============================

``fig1`` is the field printed in Fig. 1 of Ding et al. (2023). It is the fixed-point homotopy for
``z0 = 0`` only: integrated from any ``z0`` it conserves ``z - λ f(z) = z0``, so its endpoint solves
``z - f(z) = z0`` rather than the fixed point (the ``fig1`` row lists the homotopy it follows).

Where ``∂_z H`` becomes singular (a turning point) the λ-parameterisation breaks down; the path is
then traced in arc length ``s`` (:func:`arclength_path`). All integration is done by torchdiffeq.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torchdiffeq import odeint

from deqode.choices import check_choice
from deqode.errors import SolverFailure

__all__ = [
    "KINDS",
    "METHODS",
    "PARAMS",
    "CallableHomotopy",
    "Fig1Homotopy",
    "FixedPointHomotopy",
    "Homotopy",
    "HomotopyPath",
    "NewtonHomotopy",
    "NewtonResult",
    "Trajectory",
    "TurningPoint",
    "arclength_path",
    "batch_jacobian",
    "davidenko_path",
    "flow",
    "homotopy_path",
    "make_homotopy",
    "naive_flow",
    "newton_flow",
    "newton_method",
    "newton_step",
    "oriented_tangent",
]

KINDS = ("fixed_point", "newton", "fig1")
PARAMS = ("lambda", "arclength")
FIXED_STEP_METHODS = ("rk4", "euler", "midpoint")
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "adaptive_heun")
METHODS = FIXED_STEP_METHODS + ADAPTIVE_METHODS

Map = Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------------------------
# Jacobians and small helpers
# --------------------------------------------------------------------------------------------


def batch_jacobian(f: Map, z: Tensor) -> Tensor:
    """Per-sample Jacobians ``df(z)[b]/dz[b]`` of a row-wise map, shape ``[B, n, n]``.

    Uses one reverse-mode Jacobian of ``f(z).sum(0)``: because row ``b`` of ``f(z)`` depends on row
    ``b`` of ``z`` only, ``d(sum_b f_b)/dz_b = J_f(z_b)``. Differentiable (``torch.func``), so it
    can sit inside a computation that is itself backpropagated.
    """
    jac = torch.func.jacrev(lambda zz: f(zz).sum(0))(z)  # [n_out, B, n_in]
    return jac.permute(1, 0, 2)


def _eye_like(z: Tensor) -> Tensor:
    """Identity ``[1, n, n]`` with ``z``'s dtype and device (broadcasts over the batch)."""
    return torch.eye(z.shape[-1], dtype=z.dtype, device=z.device).unsqueeze(0)


SMALL_N = 32  # dense systems up to this size are factorised on one thread


@contextmanager
def _serial_if_small(n: int):
    """Run tiny batched LAPACK calls on one thread.

    For ``[B, n, n]`` systems with small ``n`` the batched CPU kernels spend their time in thread
    synchronisation (milliseconds instead of microseconds per call on a busy machine); the result
    is the same on one thread. The previous thread count is restored afterwards.
    """
    threads = torch.get_num_threads()
    serial = n <= SMALL_N and threads > 1
    if serial:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if serial:
            torch.set_num_threads(threads)


def _solve(matrix: Tensor, rhs: Tensor) -> Tensor:
    """Batched ``matrix^{-1} rhs`` for ``matrix [B, n, n]`` and ``rhs [B, n]`` (LU, partial pivots).

    An exactly singular matrix raises :class:`SolverFailure`.
    """
    with _serial_if_small(matrix.shape[-1]):
        solution, info = torch.linalg.solve_ex(matrix, rhs.unsqueeze(-1))
    if bool((info != 0).any()):
        raise SolverFailure("singular matrix in a homotopy linear solve (∂_z H at a turning point)")
    return solution.squeeze(-1)


def _as_batch(z0: Tensor) -> tuple[Tensor, bool]:
    """``z0`` as a ``[B, n]`` batch, and whether it was a single ``[n]`` problem."""
    if not torch.is_tensor(z0):
        raise TypeError(f"z0 must be a torch.Tensor, got {type(z0).__name__}")
    if z0.dim() == 1:
        return z0.unsqueeze(0), True
    if z0.dim() == 2:
        return z0, False
    raise ValueError(f"z0 must have shape [n] or [B, n], got {tuple(z0.shape)}")


def _unbatch(x: Tensor, single: bool, batch_dim: int) -> Tensor:
    return x.squeeze(batch_dim) if single else x


# --------------------------------------------------------------------------------------------
# Homotopies
# --------------------------------------------------------------------------------------------


class Homotopy:
    """A homotopy ``H(z, λ)`` with its partial derivatives, for a batch ``z [B, n]``, ``λ [B]``.

    Subclasses define ``__call__`` (the value ``[B, n]``), :meth:`partials` (``∂_z H [B, n, n]``
    and ``∂_λ H [B, n]``) and :meth:`target_residual`, the function whose root the path is meant
    to reach (``g(z) = z - f(z)`` for the fixed-point problems). :meth:`field` is the Davidenko
    field ``dz/dλ = -[∂_z H]^{-1} ∂_λ H``.
    """

    kind: str = "custom"

    def __call__(self, z: Tensor, lam: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def partials(self, z: Tensor, lam: Tensor) -> tuple[Tensor, Tensor]:  # pragma: no cover
        raise NotImplementedError

    def target_residual(self, z: Tensor) -> Tensor:
        """The residual the continuation should drive to zero; default ``H(z, 1)``."""
        return self(z, torch.ones(z.shape[0], dtype=z.dtype, device=z.device))

    def field(self, z: Tensor, lam: Tensor) -> Tensor:
        """Davidenko field ``dz/dλ = -[∂_z H(z, λ)]^{-1} ∂_λ H(z, λ)``, shape ``[B, n]``."""
        h_z, h_lam = self.partials(z, lam)
        return -_solve(h_z, h_lam)


class _FixedPointProblem(Homotopy):
    """Shared parts of the homotopies built from a fixed-point map ``f``."""

    def __init__(self, f: Map, z0: Tensor, jac: Callable[[Tensor], Tensor] | None = None):
        self.f = f
        self.z0 = z0
        self._jac = jac

    def jacobian(self, z: Tensor) -> Tensor:
        """``J_f(z)``, ``[B, n, n]``: closed form if given, else reverse-mode autograd."""
        return self._jac(z) if self._jac is not None else batch_jacobian(self.f, z)

    def target_residual(self, z: Tensor) -> Tensor:
        """``g(z) = z - f(z)``."""
        return z - self.f(z)


class FixedPointHomotopy(_FixedPointProblem):
    """``H = z - λf(z) - (1 - λ)z0 = λg(z) + (1 - λ)(z - z0)``.

    Field ``dz/dλ = (I - λJ_f)^{-1} (f(z) - z0)``; the start system ``z - z0 = 0`` at ``λ = 0``.
    """

    kind = "fixed_point"

    def __call__(self, z: Tensor, lam: Tensor) -> Tensor:
        lam = lam.unsqueeze(-1)
        return z - lam * self.f(z) - (1 - lam) * self.z0

    def partials(self, z: Tensor, lam: Tensor) -> tuple[Tensor, Tensor]:
        h_z = _eye_like(z) - lam[:, None, None] * self.jacobian(z)
        return h_z, self.z0 - self.f(z)


class NewtonHomotopy(_FixedPointProblem):
    """``H = g(z) - (1 - λ) g(z0)``; field ``-(I - J_f)^{-1} g(z0)`` (autonomous).

    On the exact path ``g(z(λ)) = (1 - λ) g(z0)``: the residual falls linearly in ``λ``.
    """

    kind = "newton"

    def __init__(self, f: Map, z0: Tensor, jac: Callable[[Tensor], Tensor] | None = None):
        super().__init__(f, z0, jac)
        self.g0 = z0 - f(z0)

    def __call__(self, z: Tensor, lam: Tensor) -> Tensor:
        return (z - self.f(z)) - (1 - lam.unsqueeze(-1)) * self.g0

    def partials(self, z: Tensor, lam: Tensor) -> tuple[Tensor, Tensor]:
        h_z = _eye_like(z) - self.jacobian(z)
        return h_z, self.g0.expand_as(z)


class Fig1Homotopy(_FixedPointProblem):
    """The field of Fig. 1, ``(I - λJ_f)^{-1} f(z)``, read as the homotopy it actually follows.

    From a start ``z0`` that field keeps ``H = z - λ f(z) - z0`` at zero (``d/dλ [z - λ f(z)] =
    (I - λJ_f) dz/dλ - f = 0``), so ``z(1)`` solves ``z - f(z) = z0``: the fixed point only if
    ``z0 = 0``. :meth:`target_residual` is still the DEQ residual ``g(z)``, which is what it misses.
    """

    kind = "fig1"

    def __call__(self, z: Tensor, lam: Tensor) -> Tensor:
        return z - lam.unsqueeze(-1) * self.f(z) - self.z0

    def partials(self, z: Tensor, lam: Tensor) -> tuple[Tensor, Tensor]:
        h_z = _eye_like(z) - lam[:, None, None] * self.jacobian(z)
        return h_z, -self.f(z)


class CallableHomotopy(Homotopy):
    """Any ``H(z, λ)`` given as a function of ``z [B, n]`` and ``λ [B]``; partials by autograd.

    The rows must be independent (as for ``f``). The target residual is ``H(z, 1)``.
    """

    def __init__(self, H: Callable[[Tensor, Tensor], Tensor], kind: str = "custom"):
        self.H = H
        self.kind = kind

    def __call__(self, z: Tensor, lam: Tensor) -> Tensor:
        return self.H(z, lam)

    def partials(self, z: Tensor, lam: Tensor) -> tuple[Tensor, Tensor]:
        h_z, h_lam = torch.func.jacrev(lambda zz, ll: self.H(zz, ll).sum(0), argnums=(0, 1))(z, lam)
        return h_z.permute(1, 0, 2), h_lam.transpose(0, 1)


def make_homotopy(
    f: Map, z0: Tensor, kind: str = "fixed_point", jac: Callable[[Tensor], Tensor] | None = None
) -> Homotopy:
    """The homotopy ``kind`` (fixed_point, newton, fig1) for the fixed-point map ``f`` from ``z0``.

    ``z0`` must be a batch ``[B, n]`` here (:func:`homotopy_path` takes ``[n]`` too).
    """
    check_choice("homotopy kind", kind, KINDS)
    cls = {"fixed_point": FixedPointHomotopy, "newton": NewtonHomotopy, "fig1": Fig1Homotopy}[kind]
    return cls(f, z0, jac)


def _as_homotopy(H: Homotopy | Callable[[Tensor, Tensor], Tensor]) -> Homotopy:
    return H if isinstance(H, Homotopy) else CallableHomotopy(H)


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass
class TurningPoint:
    """A point where ``dλ/ds`` changes sign on an arc-length path (``∂_z H`` singular there)."""

    sample: int
    s: float
    lam: float
    z: Tensor


@dataclass
class HomotopyPath:
    """A traced homotopy path.

    Attributes:
        params: the integration variable, ``[P]``: ``t`` for ``param="lambda"`` (equal to ``λ``
            for the default linear schedule on ``[0, 1]``) or the arc length ``s``.
        lambdas: ``λ`` at each point, ``[P]`` (``param="lambda"``) or per sample ``[P(, B)]``
            (``param="arclength"``, where ``λ`` is part of the state).
        states: ``z`` at each point, ``[P, *z0.shape]``. On an arc-length path a sample that
            reached ``λ = 1`` keeps its end point in the remaining rows, so ``states[-1]`` is the
            end point of every sample that reached it.
        residuals: the target residual ``||g(z)||`` along the path, ``[P(, B)]``; for the
            fixed-point kinds ``g(z) = z - f(z)``.
        path_residuals: ``||H(z, λ)||`` along the path, ``[P(, B)]``: the distance of the numerical
            path from the zero set it is meant to follow.
        nfe: number of evaluations of the ODE right-hand side (including event location).
        reached_end: ``λ = 1`` was reached (by every sample of a batch).
        kind, param, method: what was traced and how.
        end_params: arc length at which each sample reached ``λ = 1`` (``inf`` if it did not);
            ``None`` for ``param="lambda"``.
        turning_points: turning points found on an arc-length path (``dλ/ds = 0``).
    """

    params: Tensor
    lambdas: Tensor
    states: Tensor
    residuals: Tensor
    path_residuals: Tensor
    nfe: int
    reached_end: bool
    kind: str
    param: str
    method: str
    end_params: Tensor | None = None
    turning_points: list[TurningPoint] = field(default_factory=list)

    @property
    def end_state(self) -> Tensor:
        """``z`` at the last point of the path (``z(1)`` when :attr:`reached_end`)."""
        return self.states[-1]

    @property
    def end_residual(self) -> float:
        """Largest ``||g(z_end)||`` over the batch."""
        return float(self.residuals[-1].max())


@dataclass
class Trajectory:
    """A trajectory of an autonomous flow ``dz/dt = F(z)`` on ``[0, T]``.

    ``times [P]``, ``states [P, *z0.shape]``, ``residuals [P(, B)] = ||z - f(z)||``, ``nfe``.
    """

    times: Tensor
    states: Tensor
    residuals: Tensor
    nfe: int
    kind: str
    method: str

    @property
    def end_state(self) -> Tensor:
        return self.states[-1]


@dataclass
class NewtonResult:
    """Newton's method for ``g(z) = 0``: solution, ``||g||`` per iteration (max over the batch)."""

    z: Tensor
    residuals: list[float]
    iterations: int
    converged: bool


# --------------------------------------------------------------------------------------------
# torchdiffeq plumbing
# --------------------------------------------------------------------------------------------


class _Counted:
    """Wrap an ODE right-hand side ``(t, y) -> dy/dt``: count calls, remember the furthest ``t``."""

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor]):
        self.fn = fn
        self.nfe = 0
        self.furthest: float = float("-inf")

    def __call__(self, t: Tensor, y: Tensor) -> Tensor:
        self.nfe += 1
        self.furthest = max(self.furthest, float(t))
        return self.fn(t, y)


def _time_grid(t0: float, t1: float, method: str, steps: int, n_points: int | None, like: Tensor):
    """Output grid: every step for fixed-step methods, ``n_points`` points for adaptive ones."""
    if method in FIXED_STEP_METHODS:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        count = steps + 1
    else:
        count = n_points if n_points is not None else 101
        if count < 2:
            raise ValueError(f"n_points must be >= 2, got {count}")
    return torch.linspace(t0, t1, count, dtype=like.dtype, device=like.device)


def _integrate(
    rhs: _Counted, y0: Tensor, grid: Tensor, method: str, rtol: float, atol: float, what: str
) -> Tensor:
    """``odeint`` on ``grid``; fixed-step methods step exactly on the grid (step = grid spacing).

    A failure (step-size underflow, non-finite state) becomes a :class:`SolverFailure` that says
    how far the integration got.
    """
    check_choice("ODE method", method, METHODS)
    try:
        ys = odeint(rhs, y0, grid, method=method, rtol=rtol, atol=atol)
    except SolverFailure as err:
        err.furthest_t = rhs.furthest
        raise
    except AssertionError as err:  # torchdiffeq signals step underflow / step cap by assertion
        failure = SolverFailure(
            f"{what}: {method} failed after {rhs.nfe} evaluations, furthest t = "
            f"{rhs.furthest:.6g}: {err}"
        )
        failure.furthest_t = rhs.furthest  # how far the integration got, for the caller
        raise failure from err
    if not torch.isfinite(ys).all():
        bad = int((~torch.isfinite(ys)).flatten(1).any(1).nonzero()[0])
        raise SolverFailure(
            f"{what}: non-finite state at t = {float(grid[bad]):.6g} "
            f"({method}, {rhs.nfe} evaluations)"
        )
    return ys


# --------------------------------------------------------------------------------------------
# λ-parameterised continuation (Davidenko ODE)
# --------------------------------------------------------------------------------------------

Schedule = str | Callable[[Tensor], Tensor]


def _schedule(schedule: Schedule, t_span: tuple[float, float]):
    """``t -> (λ(t), dλ/dt)`` for ``"linear"`` (λ = (t - t0)/(t1 - t0)) or a callable ``λ(t)``."""
    t0, t1 = t_span
    if isinstance(schedule, str):
        check_choice("schedule", schedule, ("linear",))
        rate = 1.0 / (t1 - t0)
        return lambda t: ((t - t0) * rate, torch.full_like(t, rate))
    if not callable(schedule):
        raise TypeError(f"schedule must be 'linear' or a callable t -> λ(t), got {schedule!r}")

    def lam_and_rate(t: Tensor) -> tuple[Tensor, Tensor]:
        with torch.enable_grad():
            tt = t.detach().clone().requires_grad_(True)
            lam = schedule(tt)
            (rate,) = torch.autograd.grad(lam, tt, allow_unused=True)
        return lam.detach(), torch.zeros_like(t) if rate is None else rate

    return lam_and_rate


def davidenko_path(
    H: Homotopy | Callable[[Tensor, Tensor], Tensor],
    z0: Tensor,
    *,
    schedule: Schedule = "linear",
    t_span: tuple[float, float] = (0.0, 1.0),
    method: str = "rk4",
    steps: int = 400,
    rtol: float = 1e-10,
    atol: float = 1e-10,
    n_points: int | None = None,
) -> HomotopyPath:
    """Trace ``H(z, λ) = 0`` from ``(z0, 0)`` by integrating the Davidenko ODE in ``t``.

    ``dz/dt = -[∂_z H]^{-1} ∂_λ H · dλ/dt`` with ``λ = λ(t)`` from ``schedule`` (``"linear"``:
    ``λ = (t - t0)/(t1 - t0)``, so ``t = λ`` on the default span ``[0, 1]``; or a differentiable
    callable ``t -> λ(t)``, its rate taken by autograd). ``method="rk4"`` (and the other fixed-step
    methods) take ``steps`` equal steps of size ``(t1 - t0)/steps``; adaptive methods (``dopri5``)
    use ``rtol``/``atol`` and report ``n_points`` evenly spaced outputs.

    Raises :class:`~deqode.errors.SolverFailure` when the integrator fails, e.g. dopri5's step
    size underflows at a turning point where ``∂_z H`` is singular; the message says how far it got
    and the exception's ``furthest_t`` attribute holds the furthest ``t`` at which the field was
    evaluated (stages of rejected steps included, so it may lie slightly past the breakdown).
    """
    homotopy = _as_homotopy(H)
    z_batch, single = _as_batch(z0)
    lam_rate = _schedule(schedule, t_span)

    def rhs_fn(t: Tensor, z: Tensor) -> Tensor:
        lam, rate = lam_rate(t)
        lam_b = lam.expand(z.shape[0]).to(z)
        return homotopy.field(z, lam_b) * rate

    rhs = _Counted(rhs_fn)
    grid = _time_grid(*t_span, method, steps, n_points, z_batch)
    states = _integrate(rhs, z_batch, grid, method, rtol, atol, f"Davidenko ODE ({homotopy.kind})")
    lambdas = torch.stack([lam_rate(t)[0] for t in grid]).to(z_batch)
    residuals = torch.stack([homotopy.target_residual(z).norm(dim=-1) for z in states])
    path_res = torch.stack(
        [homotopy(z, lam.expand(z.shape[0])).norm(dim=-1)
         for z, lam in zip(states, lambdas, strict=True)]
    )
    return HomotopyPath(
        params=grid,
        lambdas=lambdas,
        states=_unbatch(states, single, 1),
        residuals=_unbatch(residuals, single, 1),
        path_residuals=_unbatch(path_res, single, 1),
        nfe=rhs.nfe,
        reached_end=bool(abs(float(lambdas[-1]) - 1.0) < 1e-12),
        kind=homotopy.kind,
        param="lambda",
        method=method,
    )


# --------------------------------------------------------------------------------------------
# Arc-length continuation
# --------------------------------------------------------------------------------------------


def oriented_tangent(h_z: Tensor, h_lam: Tensor) -> Tensor:
    """Unit tangent ``(dz/ds, dλ/ds)`` of ``H = 0``, ``[B, n + 1]``, with a continuous orientation.

    The tangent spans the kernel of the ``n × (n + 1)`` matrix ``A = [∂_z H, ∂_λ H]`` (last right
    singular vector). Its sign is fixed by ``det [A; τᵀ] > 0`` (the orientation induced by ``A``,
    Allgower & Georg 1990, §2.1). That determinant cannot vanish where ``A`` has full rank, so
    ``τ`` varies continuously along a regular path and turns smoothly through turning points
    (where only the ``∂_z H`` block is singular). This is the rule "agree with the previous
    tangent" expressed as a function of the point alone, so it is also valid inside the stages of
    an adaptive Runge-Kutta step, which are not evaluated in path order.
    """
    a = torch.cat([h_z, h_lam.unsqueeze(-1)], dim=-1)  # [B, n, n+1]
    with _serial_if_small(a.shape[-1]):
        kernel = torch.linalg.svd(a, full_matrices=True).Vh[..., -1, :]  # [B, n+1], unit length
        sign = torch.sign(torch.linalg.det(torch.cat([a, kernel.unsqueeze(-2)], dim=-2)))
    sign = torch.where(sign == 0, torch.ones_like(sign), sign)
    return kernel * sign.unsqueeze(-1)


class _ArclengthField:
    """``dy/ds = σ τ(y)`` for ``y = [z, λ]``; ``σ = ±1`` per sample fixes the start direction."""

    def __init__(self, homotopy: Homotopy, sigma: Tensor):
        self.homotopy = homotopy
        self.sigma = sigma

    def tangent(self, y: Tensor) -> Tensor:
        z, lam = y[..., :-1], y[..., -1]
        return oriented_tangent(*self.homotopy.partials(z, lam)) * self.sigma.unsqueeze(-1)

    def __call__(self, s: Tensor, y: Tensor) -> Tensor:
        return self.tangent(y)


LOCATE_MAX_STEPS = 10_000  # cap on dopri5 steps while locating one event


def _locate(
    rhs: _Counted,
    y_start: Tensor,
    s_start: float,
    sample: int,
    event: Callable[[Tensor], Tensor],
    rtol: float,
    atol: float,
) -> tuple[float, Tensor]:
    """Integrate from ``y_start`` (the whole batch) until ``event(y)[sample]`` changes sign.

    Uses torchdiffeq's event handling (dopri5 + bisection on its dense output). Returns the arc
    length of the event and the batch state there.
    """
    s0 = torch.tensor(s_start, dtype=y_start.dtype, device=y_start.device)
    try:
        event_s, ys = odeint(
            rhs, y_start, torch.stack([s0, s0 + 1.0]), method="dopri5", rtol=rtol, atol=atol,
            options={"max_num_steps": LOCATE_MAX_STEPS}, event_fn=lambda s, y: event(y)[sample],
        )
    except AssertionError as err:  # the crossing seen on the grid was not found again
        raise SolverFailure(
            f"arc-length event location failed for sample {sample} from s = {s_start:.6g}: {err}"
        ) from err
    return float(event_s), ys[-1]


def arclength_path(
    H: Homotopy | Callable[[Tensor, Tensor], Tensor],
    z0: Tensor,
    s_max: float = 10.0,
    *,
    lam_end: float = 1.0,
    method: str = "dopri5",
    rtol: float = 1e-10,
    atol: float = 1e-10,
    n_points: int = 401,
    find_turning_points: bool = True,
) -> HomotopyPath:
    """Trace ``H(z, λ) = 0`` from ``(z0, 0)`` in arc length ``s ∈ [0, s_max]``.

    The state is ``y = (z, λ)`` and ``dy/ds`` is the unit tangent of :func:`oriented_tangent`,
    oriented so that the first step goes towards increasing ``λ``. There is no corrector step (a
    pure ODE predictor, as in the author's MATLAB prototype); :attr:`HomotopyPath.path_residuals`
    shows how far the numerical path drifts from ``H = 0``.

    The terminal event ``λ = lam_end`` is found in two stages: the path is integrated on a grid of
    ``n_points`` values of ``s`` (``method``: dopri5 with ``rtol``/``atol``, or a fixed-step method
    stepping on the grid), the first grid interval where ``λ`` crosses ``lam_end`` is located per
    sample, and the crossing is then refined from the start of that interval with torchdiffeq's
    event handling (``odeint(..., event_fn=...)``, dopri5). A sample that reaches ``λ = lam_end``
    keeps its end point in the later rows. If ``find_turning_points``, sign changes of ``dλ/ds`` on
    the grid are refined the same way and reported in :attr:`HomotopyPath.turning_points`.
    """
    if not (s_max > 0 and lam_end > 0):
        raise ValueError(f"need s_max > 0 and lam_end > 0, got s_max={s_max}, lam_end={lam_end}")
    homotopy = _as_homotopy(H)
    z_batch, single = _as_batch(z0)
    batch = z_batch.shape[0]
    y0 = torch.cat([z_batch, torch.zeros(batch, 1, dtype=z_batch.dtype, device=z_batch.device)], -1)

    # Orientation: the first tangent points towards increasing λ.
    probe = _ArclengthField(homotopy, torch.ones(batch, dtype=y0.dtype, device=y0.device))
    first = probe.tangent(y0)
    sigma = torch.where(first[:, -1] < 0, -1.0, 1.0).to(y0)
    vector_field = _ArclengthField(homotopy, sigma)
    rhs = _Counted(vector_field)

    grid = torch.linspace(0.0, s_max, n_points, dtype=y0.dtype, device=y0.device)
    ys = _integrate(rhs, y0, grid, method, rtol, atol, f"arc-length path ({homotopy.kind})")
    lam = ys[..., -1]  # [P, B]

    # Turning points: sign changes of dλ/ds between grid points.
    turning: list[TurningPoint] = []
    if find_turning_points:
        dlam = torch.stack([vector_field.tangent(y)[:, -1] for y in ys])  # [P, B]
        for b in range(batch):
            changes = (torch.sign(dlam[1:, b]) * torch.sign(dlam[:-1, b]) < 0).nonzero().flatten()
            for k in changes.tolist():
                if lam[k, b] >= lam_end:  # beyond the end of this sample's path
                    break
                s_tp, y_tp = _locate(
                    rhs, ys[k], float(grid[k]), b, lambda y: vector_field.tangent(y)[:, -1],
                    rtol, atol,
                )
                turning.append(TurningPoint(b, s_tp, float(y_tp[b, -1]), y_tp[b, :-1].clone()))

    # Terminal event λ = lam_end.
    end_params = torch.full((batch,), float("inf"), dtype=y0.dtype, device=y0.device)
    states = ys.clone()
    for b in range(batch):
        crossed = (lam[:, b] >= lam_end).nonzero().flatten()
        if len(crossed) == 0:
            continue
        k = int(crossed[0]) - 1
        s_end, y_end = _locate(rhs, ys[k], float(grid[k]), b, lambda y: y[:, -1] - lam_end,
                               rtol, atol)
        end_params[b] = s_end
        states[k + 1 :, b] = y_end[b]

    z_all, lam_all = states[..., :-1], states[..., -1]
    residuals = torch.stack([homotopy.target_residual(z).norm(dim=-1) for z in z_all])
    path_res = torch.stack(
        [homotopy(z, lam).norm(dim=-1) for z, lam in zip(z_all, lam_all, strict=True)]
    )
    return HomotopyPath(
        params=grid,
        lambdas=_unbatch(lam_all, single, 1),
        states=_unbatch(z_all, single, 1),
        residuals=_unbatch(residuals, single, 1),
        path_residuals=_unbatch(path_res, single, 1),
        nfe=rhs.nfe,
        reached_end=bool(torch.isfinite(end_params).all()),
        kind=homotopy.kind,
        param="arclength",
        method=method,
        end_params=_unbatch(end_params, single, 0),
        turning_points=turning,
    )


# --------------------------------------------------------------------------------------------
# Entry point for fixed-point problems
# --------------------------------------------------------------------------------------------


def homotopy_path(
    f: Map,
    z0: Tensor,
    kind: str = "fixed_point",
    param: str = "lambda",
    method: str = "rk4",
    steps: int = 400,
    rtol: float = 1e-10,
    atol: float = 1e-10,
    *,
    jac: Callable[[Tensor], Tensor] | None = None,
    schedule: Schedule = "linear",
    t_span: tuple[float, float] = (0.0, 1.0),
    n_points: int | None = None,
    s_max: float = 10.0,
) -> HomotopyPath:
    """Trace a homotopy from ``z0`` to a fixed point ``z* = f(z*)`` (a root of ``g = z - f``).

    Args:
        f: the fixed-point map, row-wise on ``[B, n]``.
        z0: start point ``[n]`` or ``[B, n]`` (the known zero of ``H(·, 0)``).
        kind: ``"fixed_point"`` (``H = z - λf(z) - (1-λ)z0``), ``"newton"``
            (``H = g(z) - (1-λ)g(z0)``) or ``"fig1"`` (Fig. 1's field ``(I - λJ_f)^{-1} f``,
            exact only from ``z0 = 0``).
        param: ``"lambda"`` (Davidenko ODE in ``t``, :func:`davidenko_path`) or ``"arclength"``
            (:func:`arclength_path` on ``s ∈ [0, s_max]``).
        method: torchdiffeq method: ``"rk4"`` (``steps`` equal steps) or ``"dopri5"`` etc.
        steps, rtol, atol, n_points: integration settings (see :func:`davidenko_path`).
        jac: optional closed-form ``J_f`` (``[B, n] -> [B, n, n]``); default: autograd.
        schedule, t_span: ``λ(t)`` for ``param="lambda"``; the field is multiplied by ``dλ/dt``.
        s_max: arc-length budget for ``param="arclength"``.
    """
    check_choice("homotopy kind", kind, KINDS)
    check_choice("homotopy parameterisation", param, PARAMS)
    check_choice("ODE method", method, METHODS)
    z_batch, single = _as_batch(z0)
    homotopy = make_homotopy(f, z_batch, kind, jac)
    start = z_batch[0] if single else z_batch
    if param == "lambda":
        return davidenko_path(
            homotopy, start, schedule=schedule, t_span=t_span, method=method, steps=steps,
            rtol=rtol, atol=atol, n_points=n_points,
        )
    if schedule != "linear" or tuple(t_span) != (0.0, 1.0):
        raise ValueError("schedule and t_span apply to param='lambda' only")
    return arclength_path(
        homotopy, start, s_max, method=method, rtol=rtol, atol=atol,
        n_points=n_points if n_points is not None else steps + 1,
    )


# --------------------------------------------------------------------------------------------
# Newton's method, the continuous Newton flow and the naive flow
# --------------------------------------------------------------------------------------------


def _jacobian_of(f: Map, jac: Callable[[Tensor], Tensor] | None) -> Callable[[Tensor], Tensor]:
    return jac if jac is not None else (lambda z: batch_jacobian(f, z))


def newton_step(f: Map, z: Tensor, jac: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """One Newton step for ``g(z) = z - f(z) = 0``: ``z - (I - J_f(z))^{-1} (z - f(z))``."""
    z_batch, single = _as_batch(z)
    jacobian = _jacobian_of(f, jac)
    step = _solve(_eye_like(z_batch) - jacobian(z_batch), z_batch - f(z_batch))
    return _unbatch(z_batch - step, single, 0)


def newton_method(
    f: Map,
    z0: Tensor,
    *,
    tol: float = 1e-12,
    max_iter: int = 50,
    jac: Callable[[Tensor], Tensor] | None = None,
) -> NewtonResult:
    """Newton's method with the exact Jacobian, the reference the quasi-Newton solvers approximate.

    Stops when ``max_b ||g(z_b)|| <= tol``. ``residuals[k]`` is ``max_b ||g||`` after ``k``
    iterations (``residuals[0]`` at ``z0``).
    """
    z_batch, single = _as_batch(z0)
    z = z_batch
    residuals = [float((z - f(z)).norm(dim=-1).max())]
    iterations = 0
    while residuals[-1] > tol and iterations < max_iter:
        z = newton_step(f, z, jac)
        iterations += 1
        residuals.append(float((z - f(z)).norm(dim=-1).max()))
        if not torch.isfinite(z).all():
            raise SolverFailure(f"Newton's method: non-finite iterate at step {iterations}")
    return NewtonResult(_unbatch(z, single, 0), residuals, iterations, residuals[-1] <= tol)


FLOWS = ("newton", "naive")


def flow(
    f: Map,
    z0: Tensor,
    T: float = 1.0,
    steps: int | None = None,
    *,
    kind: str = "newton",
    method: str = "rk4",
    rtol: float = 1e-10,
    atol: float = 1e-10,
    n_points: int | None = None,
    jac: Callable[[Tensor], Tensor] | None = None,
) -> Trajectory:
    """A flow toward the fixed point of ``f`` on ``[0, T]``, the time-continuous view of a solver.

    ``kind`` is one of :data:`FLOWS`: ``"newton"`` (:func:`newton_flow`) or ``"naive"``
    (:func:`naive_flow`; ``jac`` is unused). ``method``, ``rtol``, ``atol``: torchdiffeq's
    solver; default ``steps``: ``400 T`` fixed steps; ``n_points`` output times (default: every
    step). ``jac``: the Jacobian of ``f`` (default: autograd).
    """
    check_choice("flow", kind, FLOWS)
    z_batch, single = _as_batch(z0)
    jacobian = _jacobian_of(f, jac)

    def rhs_fn(t: Tensor, z: Tensor) -> Tensor:
        g = z - f(z)
        if kind == "naive":
            return -g
        return -_solve(_eye_like(z) - jacobian(z), g)

    rhs = _Counted(rhs_fn)
    steps = steps if steps is not None else max(1, round(400 * T))
    grid = _time_grid(0.0, T, method, steps, n_points, z_batch)
    states = _integrate(rhs, z_batch, grid, method, rtol, atol, f"{kind} flow")
    residuals = torch.stack([(z - f(z)).norm(dim=-1) for z in states])  # f sees [B, n] rows
    return Trajectory(
        times=grid,
        states=_unbatch(states, single, 1),
        residuals=_unbatch(residuals, single, 1),
        nfe=rhs.nfe,
        kind=kind,
        method=method,
    )


def newton_flow(f: Map, z0: Tensor, T: float = 1.0, steps: int | None = None,
                **settings: Any) -> Trajectory:
    """The continuous Newton flow ``dz/dt = -(I - J_f(z))^{-1} (z - f(z))`` on ``[0, T]``.

    It is the Newton homotopy under the schedule ``1 - λ = e^{-t}``: along it
    ``g(z(t)) = e^{-t} g(z0)`` exactly, and one forward-Euler step of size 1 is one Newton step.
    ``settings``: the keywords of :func:`flow` (default: ``400 T`` RK4 steps).
    """
    return flow(f, z0, T, steps, kind="newton", **settings)


def naive_flow(f: Map, z0: Tensor, T: float = 1.0, steps: int | None = None,
               **settings: Any) -> Trajectory:
    """The naive flow ``dz/dt = f(z) - z = -g(z)`` on ``[0, T]`` (the continuous-DEQ view).

    Its equilibria are the fixed points; forward Euler with step 1 is the Picard iteration
    ``z <- f(z)``. It converges only as ``t -> ∞``, at a rate set by the spectrum of ``I - J_f``.
    ``settings``: the keywords of :func:`flow` (default: ``400 T`` RK4 steps).
    """
    return flow(f, z0, T, steps, kind="naive", **settings)
