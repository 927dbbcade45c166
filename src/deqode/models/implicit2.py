"""An (Implicit)²-style DEQ for image regression: an infinitely deep multiplicative filter network.

(Implicit)² (Huang, Bai & Kolter, NeurIPS 2021; ``locuslab/ImpSq``) fits an image from pixel
coordinates with a DEQ whose layer is a multiplicative filter network (MFN) cell. Our reading,
written from the description in spec ``sim.md`` §3.5 (a reconstruction, not a port)::

    f(z, x) = g(x) ⊙ (W z + b),      g(x) = sin(s · Ω x + φ)   ("fourier" filter)
    z* = f(z*, x),                   y = W_out z* + c

Unrolling ``z ← f(z)`` from ``z = 0`` gives ``g⊙b``, ``g⊙(W(g⊙b) + b)``, …: the layers of an MFN
with a shared filter, so ``z*`` is the infinite-depth MFN. ``|g| ≤ 1`` and ``||W||₂ ≤ ρ < 1``
(exact spectral-norm rescaling ``W = W̃ ρ / max(ρ, ||W̃||₂)``) make ``f`` a contraction.

Solver settings follow ImpSq's image-generalisation config: forward (Picard) iteration with
relative ``tol = 1e-3`` and ``max_iter = 100``, a one-step (Jacobian-free) backward, and the last
fixed point reused as the next solve's start (``warm_start``) in full-batch training, where the
input never changes. ``backward="ift"`` gives the exact implicit gradient instead.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from deqode.choices import check_choice
from deqode.models.contractive import ContractiveDEQ, spectrally_rescaled
from deqode.solvers.implicit import BACKWARD_MODES


class FourierFilter(nn.Module):
    """``g(x) = sin(s · Ω x + φ)`` with ``Ω`` uniform in ``±1/sqrt(d)`` and ``φ ~ U(−π, π)``."""

    def __init__(self, in_dim: int, width: int, input_scale: float) -> None:
        super().__init__()
        self.linear = nn.Linear(in_dim, width)
        bound = 1 / math.sqrt(in_dim)
        with torch.no_grad():
            self.linear.weight.uniform_(-bound, bound).mul_(input_scale)
            self.linear.bias.uniform_(-math.pi, math.pi)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.linear(x))


class DEQMFN(ContractiveDEQ):
    """DEQ-MFN regressor ``x ∈ R^d ↦ y ∈ R^out`` (see the module docstring).

    Args:
        width: state width; input_scale: the filter's frequency scale ``s`` (ImpSq: 128 on
            coordinates in [−1, 1]; SIM's coordinates are in [0, 1)).
        max_norm: ``ρ``, the bound on ``||W||₂`` (0.9).
        solver, tol, max_iter: :func:`deqode.solvers.fixed_point` settings (picard, 1e-3, 100);
            these four are the keywords of :class:`~deqode.models.contractive.ContractionSolve`.
        backward: ``"one_step"`` (ImpSq) or ``"ift"``.
        warm_start: start each solve from the previous fixed point when the batch shape matches.

    Counters ``nfe_forward`` (f evaluations of the last forward, solver + the final application)
    and ``last_solver_info``.
    """

    def __init__(
        self,
        in_dim: int = 2,
        width: int = 32,
        out_dim: int = 3,
        input_scale: float = 32.0,
        backward: str = "one_step",
        warm_start: bool = True,
        **solve: Any,
    ) -> None:
        super().__init__()
        check_choice("DEQ backward", backward, BACKWARD_MODES)
        self.filter = FourierFilter(in_dim, width, input_scale)
        self.z_map = nn.Linear(width, width)
        bound = 1 / math.sqrt(width)
        nn.init.uniform_(self.z_map.weight, -bound, bound)
        self.w_out = nn.Linear(width, out_dim)
        self.set_solve(solve, solver="picard", max_iter=100)
        self.backward, self.warm_start = backward, warm_start
        self._cache: Tensor | None = None

    def weight(self) -> Tensor:
        """``W`` after the spectral-norm rescaling (``||W||₂ ≤ max_norm``)."""
        return spectrally_rescaled(self.z_map.weight, self.max_norm)

    def forward(self, x: Tensor) -> Tensor:
        g = self.filter(x)
        w, b = self.weight(), self.z_map.bias

        def f(z: Tensor) -> Tensor:
            return g * (z @ w.T + b)

        z0 = torch.zeros_like(g)
        if self.warm_start and self._cache is not None and self._cache.shape == g.shape:
            z0 = self._cache.to(g.dtype)
        eq = self.equilibrium(f, z0, backward=self.backward, backward_solver="gmres",
                              backward_tol=1e-8, backward_max_iter=50)
        self.nfe_forward += 1  # the final application
        if self.warm_start:
            self._cache = eq.z_star
        return self.w_out(eq.z)

    def reset_cache(self) -> None:
        """Forget the warm-start state (call when the input set changes)."""
        self._cache = None

    def extra_repr(self) -> str:
        settings: dict[str, Any] = dict(solver=self.solver, tol=self.tol, max_iter=self.max_iter,
                                        backward=self.backward, max_norm=self.max_norm)
        return ", ".join(f"{k}={v!r}" for k, v in settings.items())


__all__ = ["DEQMFN", "FourierFilter"]
