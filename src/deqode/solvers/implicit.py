"""Implicit backward pass of a fixed point ``z* = f(z*, x)``: the implicit function theorem (IFT).

For a loss ``L(z*)`` with incoming gradient ``g = dL/dz*``, the IFT gives
``dL/dθ = u^T ∂f/∂θ`` (θ: parameters and inputs of f) where ``u`` solves the adjoint fixed point

    u = u^T J_f + g,   i.e.   (I - J_f^T) u = g,   J_f = ∂f/∂z at z*.

:func:`solve_adjoint` solves it with GMRES or a fixed-point solver; :func:`implicit_fixed_point`
wires it into autograd: f is applied once more with grad at the detached solution, and a hook on
that output replaces the incoming gradient ``g`` by ``u`` (the recipe of locuslab/deq). The
``"one_step"`` (Jacobian-free / phantom) alternative keeps ``g`` as is, i.e. differentiates only
the last application of f. First-order gradients only (no double backward).
"""

from __future__ import annotations

from collections.abc import Callable, MutableMapping

import torch
from torch import Tensor

from deqode.choices import check_choice
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


__all__ = ["ADJOINT_METHODS", "BACKWARD_MODES", "implicit_fixed_point", "solve_adjoint"]
