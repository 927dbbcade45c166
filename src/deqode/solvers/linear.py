"""Matrix-free Krylov solver for batches of independent linear systems (restarted GMRES)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from deqode.solvers.fixed_point import SolverInfo, batch_view

DEFAULT_RESTART = 20  # Krylov vectors per cycle when ``restart`` is None (SciPy's default too)


def _rotate(a: Tensor, b: Tensor, c: Tensor, s: Tensor) -> tuple[Tensor, Tensor]:
    """Apply the Givens rotation ``[[c, s], [-s, c]]`` to the pair ``(a, b)`` (per sample)."""
    return c * a + s * b, -s * a + c * b


def gmres(
    matvec: Callable[[Tensor], Tensor],
    b: Tensor,
    x0: Tensor | None = None,
    tol: float = 1e-8,
    max_iter: int | None = None,
    restart: int | None = None,
) -> tuple[Tensor, SolverInfo]:
    """Solve ``A x = b`` per sample with restarted GMRES, given only ``matvec(x) = A x``.

    ``b`` is batched along its first dimension (trailing dims are flattened per sample; a 0-D/1-D
    ``b`` is one system); ``matvec`` maps tensors of ``b``'s shape to that shape and must act on
    each sample separately. The Arnoldi process runs in lockstep over the batch (classical
    Gram-Schmidt applied twice), with Givens rotations giving each sample's residual estimate;
    samples stop contributing once ``||b - A x|| <= tol * ||b||`` (``b = 0`` gives ``x = 0``).

    Args:
        max_iter: total Arnoldi steps (= matvecs besides one per restart); default: the dimension.
        restart: Krylov vectors per cycle (memory ``B * restart * n``); default
            ``min(max_iter, 20)``.

    Returns:
        ``x`` (shape of ``b``) and a :class:`SolverInfo` with ``method="gmres"``,
        ``nfe`` = matvecs, relative residuals ``||b - A x|| / ||b||`` (batch max; the true value at
        the start of each cycle and at the end, the Givens estimate after each Arnoldi step),
        ``final_residual`` the true relative residual of ``x``. A non-finite cycle is discarded and
        flagged ``diverged``; nothing raises on numerical trouble.
    """
    b2 = batch_view(b)
    batch, dim = b2.shape
    max_iter = dim if max_iter is None else max_iter
    restart = min(max_iter, DEFAULT_RESTART) if restart is None else restart
    if restart < 1 and max_iter > 0:
        raise ValueError(f"restart must be >= 1, got {restart}")
    info = SolverInfo(method="gmres", stop_mode="rel")
    bnorm = b2.norm(dim=1)
    scale = torch.where(bnorm > 0, bnorm, torch.ones_like(bnorm))
    target = tol * scale

    def apply(x: Tensor) -> Tensor:
        info.nfe += 1
        return batch_view(matvec(x.reshape(b.shape)))

    def log(res: Tensor) -> None:
        info.abs_residuals.append(res.max().item())
        info.rel_residuals.append((res / scale).max().item())

    with torch.no_grad():
        x = b2.new_zeros(batch, dim) if x0 is None else batch_view(x0).clone()
        r = b2 - apply(x) if x0 is not None else b2.clone()
        while True:
            beta = r.norm(dim=1)
            log(beta)
            active = beta > target
            if not active.any() or info.iterations >= max_iter:
                break
            steps = min(restart, max_iter - info.iterations)
            basis = b2.new_zeros(batch, steps + 1, dim)
            basis[:, 0] = torch.where(active[:, None], r / beta[:, None], 0.0)
            hess = b2.new_zeros(batch, steps + 1, steps)  # rotated: upper triangular
            cos, sin = b2.new_ones(batch, steps), b2.new_zeros(batch, steps)
            rhs = b2.new_zeros(batch, steps + 1)
            rhs[:, 0] = beta
            used = torch.zeros(batch, steps, dtype=torch.bool, device=b2.device)
            est = beta.clone()
            for j in range(steps):
                w = apply(basis[:, j])
                info.iterations += 1
                h = b2.new_zeros(batch, j + 1)
                for _ in range(2):  # CGS2: re-orthogonalise once
                    dh = torch.einsum("bkd,bd->bk", basis[:, : j + 1], w)
                    w = w - torch.einsum("bkd,bk->bd", basis[:, : j + 1], dh)
                    h = h + dh
                hnorm = w.norm(dim=1)
                basis[:, j + 1] = torch.where((hnorm > 0)[:, None], w / hnorm[:, None], 0.0)
                col = torch.cat([h, hnorm[:, None]], dim=1)
                for i in range(j):
                    col[:, i], col[:, i + 1] = _rotate(
                        col[:, i], col[:, i + 1], cos[:, i], sin[:, i]
                    )
                rho = torch.hypot(col[:, j], col[:, j + 1])
                new = active & (rho > 0)
                cos[:, j] = torch.where(new, col[:, j] / rho, 1.0)
                sin[:, j] = torch.where(new, col[:, j + 1] / rho, 0.0)
                col[:, j], col[:, j + 1] = rho, 0.0
                rhs[:, j], rhs[:, j + 1] = _rotate(rhs[:, j], rhs[:, j + 1], cos[:, j], sin[:, j])
                hess[:, : j + 2, j] = torch.where(active[:, None], col, 0.0)
                used[:, j] = active
                est = torch.where(active, rhs[:, j + 1].abs(), est)
                log(est)
                active = active & (est > target)
                if not active.any():
                    break
            k = j + 1
            upper = hess[:, :k, :k].clone()
            diag = torch.where(used[:, :k], upper.diagonal(dim1=1, dim2=2), 1.0)
            upper.diagonal(dim1=1, dim2=2).copy_(diag)
            coef = torch.where(used[:, :k], rhs[:, :k], 0.0)
            y = torch.linalg.solve_triangular(upper, coef[..., None], upper=True)[..., 0]
            x_new = x + torch.einsum("bk,bkd->bd", y, basis[:, :k])
            r_new = b2 - apply(x_new)
            if not (torch.isfinite(x_new).all() and torch.isfinite(r_new).all()):
                info.diverged = True
                log(r.norm(dim=1))
                break
            x, r = x_new, r_new
    info.residuals = info.rel_residuals
    info.final_residual = info.rel_residuals[-1]
    info.best_iteration = info.iterations
    info.converged = not info.diverged and bool((r.norm(dim=1) <= target).all())
    return x.reshape(b.shape), info


__all__ = ["gmres"]
