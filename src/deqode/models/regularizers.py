"""Auxiliary losses of the Continuous DEQ paper: Skip DEQ, Skip Reg. and Jacobian stabilisation.

* :func:`skip_loss`: Skip (Reg.) DEQ's ``mean |z* − u₀|`` between the equilibrium ``z*`` and the
  predicted start ``u₀`` (the code's element-wise mean absolute error; the paper writes a norm).
* :func:`jacobian_frobenius`: the Jacobian stabilisation of Bai, Koltun & Kolter (2021), a
  Hutchinson estimate ``‖εᵀ J_f(z*)‖² / d`` of ``‖J_f‖_F² / d`` with ``ε ~ N(0, I)``, one
  vector–Jacobian product with ``create_graph=True`` so that training back-propagates through it
  (double backward). ``d`` = number of entries of the whole batch state, as in the v1 code.
* :func:`attach_loss`: adds an auxiliary loss to the *gradient* of whatever is computed from the
  logits, so that a training loop that only sees ``cross_entropy(logits, y)`` (such as
  :func:`deqode.train.fit`) still minimises ``CE + auxiliary`` (the loss *value* it logs stays
  the cross-entropy; the model reports the auxiliary terms itself).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def skip_loss(z_star: Tensor, u0: Tensor) -> Tensor:
    """``mean |z* − u₀|`` over every entry; gradients reach both ``z*`` and ``u₀``."""
    if z_star.shape != u0.shape:
        raise ValueError(f"z* and u0 must have one shape, got {tuple(z_star.shape)} and "
                         f"{tuple(u0.shape)}")
    return (z_star - u0).abs().mean()


def jacobian_frobenius(
    f: Callable[[Tensor], Tensor],
    z: Tensor,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor]:
    """Hutchinson estimate ``‖εᵀ J_f(z)‖² / d`` (``d = z.numel()``) with graph for training.

    ``f`` is applied once at a detached copy of ``z`` (the "+1 NFE" of the paper's count) and
    one vector–Jacobian product is taken with ``create_graph=True``; ``E[‖εᵀJ‖²] = ‖J‖_F²``.
    Returns ``(estimate, f(z))``.
    """
    z_in = z.detach().requires_grad_(True)
    with torch.enable_grad():
        fz = f(z_in)
        eps = torch.randn(z_in.shape, dtype=z_in.dtype, device=z_in.device, generator=generator)
        (vjp,) = torch.autograd.grad(fz, z_in, eps, create_graph=True)
    return vjp.pow(2).sum() / z_in.numel(), fz


class _AttachLoss(torch.autograd.Function):
    """Identity on ``x`` whose backward also sends gradient 1 into the scalar ``loss``."""

    @staticmethod
    def forward(ctx, x: Tensor, loss: Tensor) -> Tensor:
        ctx.loss_meta = (loss.shape, loss.dtype, loss.device)
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, Tensor]:
        shape, dtype, device = ctx.loss_meta
        return grad, torch.ones(shape, dtype=dtype, device=device)


def attach_loss(x: Tensor, loss: Tensor) -> Tensor:
    """``x`` unchanged; any backward through it also back-propagates ``loss`` (a scalar) once.

    ``L(attach_loss(x, a))`` has the gradient of ``L(x) + a`` for every ``L`` computed from
    ``x`` alone (the backward of this node runs once per backward pass, with the summed gradient
    of all uses of the result).
    """
    if loss.dim() != 0:
        raise ValueError(f"the attached loss must be a scalar, got shape {tuple(loss.shape)}")
    return _AttachLoss.apply(x, loss)


__all__ = ["attach_loss", "jacobian_frobenius", "skip_loss"]
