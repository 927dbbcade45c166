"""Implicit backward pass of a fixed point ``z* = f(z*, x)``: the implicit function theorem (IFT).

For a loss ``L(z*)`` with incoming gradient ``g = dL/dz*``, the IFT gives
``dL/dθ = u^T ∂f/∂θ`` (θ: parameters and inputs of f) where ``u`` solves the adjoint fixed point

    u = u^T J_f + g,   i.e.   (I - J_f^T) u = g,   J_f = ∂f/∂z at z*.

:func:`solve_adjoint` solves it with GMRES or a fixed-point solver; :func:`implicit_fixed_point`
wires it into autograd: f is applied once more with grad at the detached solution, and a hook on
that output replaces the incoming gradient ``g`` by ``u`` (the recipe of locuslab/deq). The
``"one_step"`` (Jacobian-free / phantom) alternative keeps ``g`` as is, i.e. differentiates only
the last application of f. First-order gradients only (no double backward).

:func:`solve_equilibrium` is the one entry of every DEQ-like model of :mod:`deqode.models`: the
no-grad forward solve, the failure check (:func:`check_solution`, raising
:class:`~deqode.errors.SolverFailure`), the record of the solve and of its evaluations of f, and
the implicit backward above. The continuous DEQ's backward (Pal, Edelman & Rackauckas, arXiv
2201.12240; ``DeepEquilibriumAdjoint`` in ``SciML/DeepEquilibriumNetworks.jl``, ``src/adjoint.jl``)
is the same implicit gradient arranged the other way round: :func:`attach_implicit_correction`
keeps the explicit gradient of the extra application ``f(u*, x)`` and adds ``μᵀ ∂f/∂(θ, x)``
with ``(I − Jᵀ) μ = v`` solved over the whole batch (:func:`solve_implicit_adjoint`).
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from deqode.choices import check_choice
from deqode.errors import SolverFailure
from deqode.solvers.fixed_point import METHODS, OPTIONS, SolverInfo, fixed_point
from deqode.solvers.linear import gmres

ADJOINT_METHODS = ("gmres", *METHODS)
BACKWARD_MODES = ("ift", "one_step")
GMRES_OPTIONS = ("x0", "restart")


def _check_options(method: str, options: dict[str, object]) -> None:
    """Raise on an unknown adjoint solver or an option it does not take."""
    check_choice("adjoint solver", method, ADJOINT_METHODS)
    valid = GMRES_OPTIONS if method == "gmres" else ("stop_mode", *OPTIONS[method])
    for key in options:
        check_choice(f"option of adjoint solver {method!r}", key, valid)


def solve_adjoint(
    vjp: Callable[[Tensor], Tensor],
    grad: Tensor,
    method: str = "gmres",
    tol: float = 1e-8,
    max_iter: int = 100,
    **options: object,
) -> tuple[Tensor, SolverInfo]:
    """Solve ``u = vjp(u) + grad``, i.e. ``(I - J_f^T) u = grad``, where ``vjp(u) = u^T J_f``.

    ``method="gmres"`` runs :func:`deqode.solvers.linear.gmres` on ``u - vjp(u) = grad``
    (options ``x0``, ``restart``; tolerance on ``||grad - (u - vjp(u))|| / ||grad||``).
    ``"picard" | "anderson" | "broyden"`` run :func:`fixed_point` on ``u -> vjp(u) + grad`` from
    ``u0 = grad`` (options: ``stop_mode``, default ``"rel"``, and the method's own options).
    Returns ``u`` and the solver's :class:`SolverInfo` (``nfe`` = number of vjp evaluations).
    """
    _check_options(method, options)
    if method == "gmres":
        return gmres(lambda u: u - vjp(u), grad, tol=tol, max_iter=max_iter, **options)
    return fixed_point(lambda u: vjp(u) + grad, grad, method, tol, max_iter, **options)


def _record(stats: MutableMapping[str, object], info: SolverInfo) -> None:
    """Accumulate backward NFE and iterations into ``stats``; keep the last solve's record."""
    stats["backward_nfe"] = int(stats.get("backward_nfe", 0)) + info.nfe
    stats["backward_iterations"] = int(stats.get("backward_iterations", 0)) + info.iterations
    stats["backward_info"] = info


def implicit_fixed_point(
    f: Callable[[Tensor], Tensor],
    z_star: Tensor,
    backward: str = "ift",
    solver: str = "gmres",
    tol: float = 1e-8,
    max_iter: int = 100,
    stats: MutableMapping[str, object] | None = None,
    **solver_options: object,
) -> Tensor:
    """Return ``f(z*)`` carrying the implicit gradient of the fixed point ``z* = f(z*)``.

    Args:
        f: closure ``z -> f(z, x)`` whose parameters and input ``x`` may require grad.
        z_star: the solution found without grad (e.g. by :func:`fixed_point`); it is detached.
        backward: ``"ift"`` (exact implicit gradient; the adjoint system is solved by ``solver``
            with ``tol``, ``max_iter`` and ``solver_options``, see :func:`solve_adjoint`) or
            ``"one_step"`` (gradient of the single application of f, no solve).
        stats: optional mapping; each backward solve adds its ``backward_nfe`` and
            ``backward_iterations`` and stores its :class:`SolverInfo` as ``backward_info``
            (check ``.converged`` there; an unconverged solve returns its best ``u``, no error).

    Returns:
        ``f(z*)`` with grad (equal to ``z*`` up to the forward residual). Under ``"ift"`` the
        gradient w.r.t. f's parameters and inputs is ``u^T ∂f/∂θ`` with ``u = u^T J_f + g``. The
        ``"ift"`` mode applies f twice with grad: once for the output, once at ``z*`` for the
        vector-Jacobian products of the backward solve.
    """
    check_choice("backward mode", backward, BACKWARD_MODES)
    _check_options(solver, solver_options)
    z_star = z_star.detach()
    z_out = f(z_star)
    if backward == "one_step" or not z_out.requires_grad:
        return z_out
    z_in = z_star.clone().requires_grad_()
    f_in = f(z_in)  # its graph gives u -> u^T J_f at z*

    def vjp(u: Tensor) -> Tensor:
        return torch.autograd.grad(f_in, z_in, u, retain_graph=True)[0]

    def hook(grad: Tensor) -> Tensor:
        u, info = solve_adjoint(vjp, grad, solver, tol, max_iter, **solver_options)
        if stats is not None:
            _record(stats, info)
        return u

    z_out.register_hook(hook)
    return z_out


# --------------------------------------------------------------------------------------------------
# the one entry of the DEQ-like models: solve, check, record, implicit backward
# --------------------------------------------------------------------------------------------------

#: A model's own backward: ``(z*, f) -> f(z*)`` carrying the gradient the model wants (z* detached).
CustomBackward = Callable[[Tensor, Callable[[Tensor], Tensor]], Tensor]


def check_solution(
    z: Tensor,
    info: SolverInfo,
    what: str,
    *,
    require_convergence: bool = False,
    tol: float | None = None,
    max_iter: int | None = None,
    best_iterate_kept: bool = False,
) -> None:
    """Raise :class:`~deqode.errors.SolverFailure` if a forward solve failed.

    A solve fails when it diverged (``info.diverged``) or returned a non-finite ``z``; with
    ``best_iterate_kept`` (solvers that return their best finite iterate after a non-finite step,
    :mod:`deqode.solvers.steady_state`) only a non-finite ``z`` fails. With
    ``require_convergence`` an unconverged solve (``tol`` not reached) fails too.
    """
    if (info.diverged and not best_iterate_kept) or not torch.isfinite(z).all():
        raise SolverFailure(
            f"{what}: the {info.method} solve diverged (non-finite values after "
            f"{info.iterations} iterations, {info.nfe} evaluations; last residuals "
            f"{info.residuals[-3:]})"
        )
    if require_convergence and not info.converged:
        raise SolverFailure(
            f"{what}: {info.method} did not reach tol={tol} in max_iter={max_iter} iterations "
            f"(final {info.stop_mode} residual {info.final_residual:.3e})"
        )


@dataclass
class Equilibrium:
    """What :func:`solve_equilibrium` returns.

    ``z``: ``f(z*)`` carrying the implicit gradient; ``z_star``: the solver's ``z*``, detached
    (a warm start for the next solve); ``info``: the forward solver's record;
    ``evaluations``: calls of f in the forward pass (solver + the applications with grad: one,
    or two under ``"ift"`` when f has parameters that require grad); ``backward``: filled by each
    backward solve with ``backward_nfe``, ``backward_iterations`` and ``backward_info``.
    """

    z: Tensor
    z_star: Tensor
    info: SolverInfo
    evaluations: int
    backward: dict[str, Any] = field(default_factory=dict)

    @property
    def backward_nfe(self) -> int:
        """Vector-Jacobian products of the ``"ift"`` backward solves so far (0 for
        ``"one_step"``; a custom backward keeps its own record)."""
        return int(self.backward.get("backward_nfe", 0))


def solve_equilibrium(
    f: Callable[[Tensor], Tensor],
    z0: Tensor,
    what: str,
    *,
    solver: str = "broyden",
    tol: float = 1e-3,
    max_iter: int = 30,
    stop_mode: str = "rel",
    solver_options: dict[str, Any] | None = None,
    solve: Callable[[Callable[[Tensor], Tensor], Tensor], tuple[Tensor, SolverInfo]] | None = None,
    require_convergence: bool = False,
    best_iterate_kept: bool = False,
    on_solve: Callable[[SolverInfo], None] | None = None,
    backward: str | CustomBackward = "ift",
    backward_solver: str = "gmres",
    backward_tol: float = 1e-8,
    backward_max_iter: int = 100,
) -> Equilibrium:
    """Find ``z* = f(z*)`` without autograd and return ``f(z*)`` with its implicit gradient.

    Steps: (1) ``solve(f, z0)`` — by default :func:`fixed_point` with ``solver``, ``tol``,
    ``max_iter``, ``stop_mode`` and ``solver_options``; (2) :func:`check_solution` (``what``
    names the model in the error; ``on_solve(info)``, if given, runs before it, so that a model
    keeps the record of a failed solve); (3) :func:`implicit_fixed_point` with ``backward``
    ``"ift"`` (the adjoint system solved by ``backward_solver`` to ``backward_tol`` within
    ``backward_max_iter``) or ``"one_step"``. A callable ``backward(z*, f)`` is a model's own
    backward: it applies f to ``z*`` and attaches the model's gradient (monDEQ's splitting hook,
    the continuous DEQ's :func:`attach_implicit_correction`). ``best_iterate_kept`` is passed to
    :func:`check_solution`. Every call of f is counted in
    :attr:`Equilibrium.evaluations`.
    """
    evaluations = 0

    def counted(z: Tensor) -> Tensor:
        nonlocal evaluations
        evaluations += 1
        return f(z)

    if solve is None:
        z_star, info = fixed_point(counted, z0, solver, tol, max_iter, stop_mode,
                                   **(solver_options or {}))
    else:
        z_star, info = solve(counted, z0)
    if on_solve is not None:
        on_solve(info)
    check_solution(z_star, info, what, require_convergence=require_convergence, tol=tol,
                   max_iter=max_iter, best_iterate_kept=best_iterate_kept)
    stats: dict[str, Any] = {}
    if callable(backward):
        z = backward(z_star.detach(), counted)
    else:
        z = implicit_fixed_point(counted, z_star, backward, backward_solver, backward_tol,
                                 backward_max_iter, stats=stats)
    return Equilibrium(z, z_star.detach(), info, evaluations, stats)


# --------------------------------------------------------------------------------------------------
# the continuous DEQ's arrangement: explicit gradient of f(u*, x) plus an implicit correction
# --------------------------------------------------------------------------------------------------


def solve_implicit_adjoint(
    vjp: Callable[[Tensor], Tensor], v: Tensor, atol: float, rtol: float, max_iter: int
) -> tuple[Tensor, dict[str, Any]]:
    """Solve ``(I − Jᵀ) μ = v`` for the whole batch as one system (GMRES from 0, unrestarted).

    ``vjp(w) = wᵀJ``. Stops when ``‖v − (I − Jᵀ)μ‖ ≤ atol + rtol‖v‖`` (Krylov.jl's rule, the
    norms over the whole batch tensor) or after ``max_iter`` iterations. Returns ``μ`` and a
    record with ``v_norm``, ``iterations``, ``vjps`` (matrix–vector products), ``converged``
    and ``relative_residual``.
    """
    v_norm = float(v.norm())
    if v_norm == 0.0 or max_iter == 0:
        return torch.zeros_like(v), {"v_norm": v_norm, "iterations": 0, "vjps": 0,
                                     "converged": v_norm == 0.0,
                                     "relative_residual": 0.0 if v_norm == 0 else 1.0}
    rel_tol = (atol + rtol * v_norm) / v_norm  # Krylov.jl's rule as a relative tolerance

    def vjp_flat(w: Tensor) -> Tensor:  # the whole batch is one system: a (1, N) "sample"
        return vjp(w.reshape(v.shape)).reshape(1, -1)

    mu, info = solve_adjoint(vjp_flat, v.reshape(1, -1), "gmres", tol=rel_tol,
                             max_iter=max_iter, restart=max_iter)
    return mu.reshape(v.shape), {
        "v_norm": v_norm, "iterations": info.iterations, "vjps": info.nfe,
        "converged": info.converged, "relative_residual": info.final_residual,
    }


class _ImplicitCorrection(torch.autograd.Function):
    """Identity on ``u*`` whose backward adds the implicit correction ``μᵀ ∂f/∂(θ, x)``."""

    @staticmethod
    def forward(ctx, u_star: Tensor, x: Tensor, core: nn.Module, settings: dict[str, Any],
                record: dict[str, Any], *params: Tensor) -> Tensor:
        ctx.core, ctx.settings, ctx.record, ctx.params = core, settings, record, params
        ctx.save_for_backward(u_star, x)
        return u_star.clone()

    @staticmethod
    def backward(ctx, v: Tensor):
        u_star, x = ctx.saved_tensors
        need_x = ctx.needs_input_grad[1]
        need_p = ctx.needs_input_grad[5:]
        with torch.enable_grad():
            u = u_star.detach().requires_grad_(True)
            x_in = x.detach().requires_grad_(need_x)
            fu = ctx.core(u, x_in)

        def vjp(w: Tensor) -> Tensor:
            return torch.autograd.grad(fu, u, w, retain_graph=True)[0]

        s = ctx.settings
        mu, record = solve_implicit_adjoint(vjp, v, s["atol"], s["rtol"], s["max_iter"])
        ctx.record.update(record)
        inputs = ([x_in] if need_x else []) + [p for p, n in zip(ctx.params, need_p, strict=True)
                                                if n]
        grads = list(torch.autograd.grad(fu, inputs, mu, allow_unused=True)) if inputs else []
        grad_x = grads.pop(0) if need_x else None
        grad_params = [grads.pop(0) if n else None for n in need_p]
        return (None, grad_x, None, None, None, *grad_params)


def attach_implicit_correction(
    u_star: Tensor,
    x: Tensor,
    core: nn.Module,
    *,
    atol: float,
    rtol: float,
    max_iter: int,
    record: dict[str, Any],
) -> Tensor:
    """``u*`` (a copy) whose backward adds ``μᵀ ∂f/∂(θ, x)``, ``(I − Jᵀ) μ = v``, to the gradient.

    ``core(u, x)`` is f with parameters θ; ``v`` is the cotangent reaching ``u*``. Apply f to the
    result (the "extra application") so that its explicit gradient plus this correction is the
    implicit gradient ``(∂f/∂θ)ᵀ (I − Jᵀ)⁻¹ ∂L/∂z*``. Pass ``x.detach()`` for the Julia code's
    quirk (the input gets only the explicit gradient). Each backward writes
    :func:`solve_implicit_adjoint`'s record into ``record``.
    """
    settings = {"atol": atol, "rtol": rtol, "max_iter": max_iter}
    return _ImplicitCorrection.apply(u_star, x, core, settings, record, *core.parameters())


__all__ = [
    "ADJOINT_METHODS",
    "BACKWARD_MODES",
    "CustomBackward",
    "Equilibrium",
    "attach_implicit_correction",
    "check_solution",
    "implicit_fixed_point",
    "solve_adjoint",
    "solve_equilibrium",
    "solve_implicit_adjoint",
]
