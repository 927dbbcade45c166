"""The two small DEQs of the SIM chapter that are not monotone operators.

:class:`ContractiveTanhDEQ` is the Koopman demo's DEQ (the book's SIM chapter, demos K1/K2: a
contraction whose Jacobian at the fixed point is compared with SIM's ``U V``); :class:`TemporalDEQ`
is the copy-memory baseline, a DEQ over a causal convolution (Konishi & Kawahara, arXiv
2207.07475, compare SIM with a DEQ on copy memory; the official code ``uswodce/sim`` holds no
baseline, so this one is a companion choice). Both solve, check and differentiate through
:func:`deqode.solvers.implicit.solve_equilibrium`. Fixed-point convention: ``z* = f(z*)``,
relative residual ``||f(z) − z|| / (||f(z)|| + eps)`` per sample, batch value = max over samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deqode.models.contractive import ContractiveDEQ, rescaled, spectrally_rescaled
from deqode.models.sim_tiers import TemporalBlock
from deqode.solvers import fixed_point
from deqode.solvers.implicit import check_solution


class ContractiveTanhDEQ(ContractiveDEQ):
    """``z* = tanh(W z* + U x + b)``, ``z ∈ R^d``, logits ``= W_out z*`` (the book's Koopman
    demo K1; a contraction, so its linearisation at z* can be read as a Koopman operator).

    With ``max_norm`` set, the layer uses ``W = W̃ · max_norm / max(max_norm, ||W̃||₂)`` (exact
    spectral norm), so ``||W||₂ ≤ max_norm`` and ``J(x) = diag(1 − z*∘z*) W`` has
    ``ρ(J) ≤ ||J||₂ ≤ max_norm`` for every input; ``max_norm=None`` leaves ``W`` free.
    Forward: :func:`deqode.solvers.fixed_point` (``solver``, ``tol`` on the relative residual,
    ``max_iter``) from ``z = 0``; backward: the implicit function theorem
    (:func:`deqode.solvers.implicit_fixed_point`, GMRES to ``backward_tol``). Inputs are
    flattened per sample. :meth:`solve` and :meth:`jacobian` (analysis) solve to 1e-12.
    ``max_norm``, ``solver``, ``tol``, ``max_iter``: keywords of
    :class:`~deqode.models.contractive.ContractionSolve`, here 0.9, Anderson, 1e-4 and 100.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int = 16,
        num_classes: int = 10,
        backward_tol: float = 1e-6,
        **solve: Any,
    ) -> None:
        super().__init__()
        self.inject = nn.Linear(in_dim, hidden)
        self.weight = nn.Parameter(torch.randn(hidden, hidden) / math.sqrt(hidden))
        self.readout = nn.Linear(hidden, num_classes)
        self.set_solve(solve, tol=1e-4, max_iter=100)
        self.backward_tol = backward_tol

    def recurrent_weight(self) -> Tensor:
        """``W`` after the optional spectral-norm rescaling."""
        if self.max_norm is None:
            return self.weight
        return spectrally_rescaled(self.weight, self.max_norm)

    def cell(self, x: Tensor) -> Callable[[Tensor], Tensor]:
        """The map ``z ↦ f(z, x)`` for a batch ``x``."""
        injection, w = self.inject(x.flatten(1)), self.recurrent_weight()
        return lambda z: torch.tanh(z @ w.T + injection)

    def solve(self, x: Tensor, tol: float = 1e-12, max_iter: int = 500) -> Tensor:
        """``z*(x)`` to ``tol`` without autograd (analysis)."""
        with torch.no_grad():
            f = self.cell(x)
            z0 = x.new_zeros(x.shape[0], self.weight.shape[0])
            z_star, info = fixed_point(f, z0, self.solver, tol, max_iter)
            check_solution(z_star, info, "ContractiveTanhDEQ")
        return z_star

    def forward(self, x: Tensor) -> Tensor:
        f = self.cell(x)
        z0 = x.new_zeros(x.shape[0], self.weight.shape[0])
        eq = self.equilibrium(f, z0, backward="ift", backward_solver="gmres",
                              backward_tol=self.backward_tol)
        return self.readout(eq.z)

    def jacobian(self, x: Tensor) -> Tensor:
        """``∂f/∂z`` at ``z*(x)``: ``diag(1 − z*²) W``, shape ``(B, d, d)``, detached."""
        z_star = self.solve(x)
        with torch.no_grad():
            return (1 - z_star**2)[:, :, None] * self.recurrent_weight()[None]



class TemporalDEQ(ContractiveDEQ):
    """Copy-memory DEQ baseline: a TCN basis as input injection, an implicit causal convolution.

    ``h = TCN(x)`` (channels ``C``, the SIM basis without its linear layer), then per sequence

        z* = tanh(W ⋆ z* + V h + b),     logits = Lin(z*) per time step,

    with ``W ⋆`` a causal 1-D convolution (kernel ``k``, dilation 1) whose weight is rescaled so
    that ``Σ_taps ||W_tap||_F ≤ max_norm`` (the sum over the kernel taps of the Frobenius norms
    of the ``hidden × hidden`` tap matrices bounds the operator 2-norm of the convolution, so the
    map is a contraction). Forward: ``solver`` with relative ``tol`` and ``max_iter`` (keywords of
    :class:`~deqode.models.contractive.ContractionSolve`: 0.9, Anderson, 1e-3 and 30 by default);
    backward: IFT with GMRES. This is a [companion choice]: the paper's copy-memory DEQ is not
    published (Konishi & Kawahara compare SIM with a DEQ on copy memory; ``uswodce/sim`` holds no
    baseline).
    """

    def __init__(
        self,
        hidden: int = 16,
        channels: int = 8,
        levels: int = 4,
        kernel: int = 3,
        num_classes: int = 10,
        in_channels: int = 1,
        cell_kernel: int = 3,
        **solve: Any,
    ) -> None:
        super().__init__()
        self.tcn = nn.Sequential(
            *[TemporalBlock(in_channels if i == 0 else channels, channels, kernel, 2**i, 0.0)
              for i in range(levels)]
        )
        self.inject = nn.Conv1d(channels, hidden, 1)
        self.cell_weight = nn.Parameter(torch.randn(hidden, hidden, cell_kernel) * 0.1)
        self.readout = nn.Linear(hidden, num_classes)
        self.set_solve(solve)
        self.cell_kernel = cell_kernel
        self._stats: dict[str, Any] = {}

    def _weight(self) -> Tensor:
        # ||conv||_2 <= sum_k ||W_k||_2 <= sum_k ||W_k||_F; rescale that bound to max_norm
        bound = self.cell_weight.pow(2).sum(dim=(0, 1)).sqrt().sum()
        return rescaled(self.cell_weight, bound, self.max_norm)

    def forward(self, x: Tensor) -> Tensor:
        injection = self.inject(self.tcn(x))  # (B, hidden, L)
        w, pad = self._weight(), self.cell_kernel - 1

        def f(z: Tensor) -> Tensor:
            return torch.tanh(F.conv1d(F.pad(z, (pad, 0)), w) + injection)

        eq = self.equilibrium(f, torch.zeros_like(injection), backward="ift",
                              backward_solver="gmres", backward_tol=1e-6, backward_max_iter=30)
        self._stats = eq.backward
        return self.readout(eq.z.transpose(1, 2))

    @property
    def nfe_backward(self) -> int:  # type: ignore[override]
        """Vector-Jacobian products of the backward solves since the last forward."""
        return int(self._stats.get("backward_nfe", 0))

    def reset_nfe(self) -> None:
        self.nfe_forward, self._stats = 0, {}


__all__ = ["ContractiveTanhDEQ", "TemporalDEQ"]
