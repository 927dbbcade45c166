"""A continuous normalizing flow (CNF) for 2-D densities, as in torchdiffeq's ``examples/cnf.py``.

Used by the Nesterov-solver chapter (task B). Described, not copied:

* **Hypernetwork** ``t ↦ (W, B, U)``: ``Linear(1, H) → tanh → Linear(H, H) → tanh →
  Linear(H, 3·width·d + width)``; the output is split into ``W (width, d)``, ``U (width, d)``, a
  gate ``G (width, d)`` with ``U ← U ⊙ sigmoid(G)``, and ``B (width,)``.
* **Field** ``dz/dt = f(t, z) = (1/width) Σ_w tanh(z·W_w + B_w) U_w`` (a mean over the width
  units), and ``d log p(z(t))/dt = -tr(∂f/∂z)``.
* **Exact trace.** For this field the trace has the closed form
  ``tr(∂f/∂z) = (1/width) Σ_w (1 - tanh²(z·W_w + B_w)) (W_w · U_w)`` (``trace="analytic"``, the
  default: one pass, no autograd). ``trace="autograd"`` computes it as the example does, one
  autograd call per dimension; both are exact (the tests check that they agree).
* **Base density** ``p(z_0) = N(0, 0.1 I)``; data live at ``t1 = 10``, the base at ``t0 = 0``.
  ``log p(x) = log p_0(z(t0)) - Δ(t0)`` where ``(z, Δ)`` is integrated **backwards** from
  ``(x, 0)`` at t1 to t0 (:meth:`CNF.log_prob`); :meth:`CNF.sample` pushes base samples forward.

The solver is an attribute (``method``, ``options``, ``rtol``, ``atol``, ``grad_mode`` in
{"backprop", "adjoint"}), so a trained model can be re-evaluated with another solver (the
solver-transfer check). With a coarse fixed-step solver the integrated trace is not the exact
log-determinant of the discrete map, so the training-solver NLL is not a normalised density
(a companion choice); compare solvers on a ``dopri5`` re-evaluation.

NFE: ``nfe_forward`` / ``nfe_backward`` count evaluations of the field in the last call's solve
and in its backward pass (non-zero only under the adjoint); solver attributes and counters come
from :class:`~deqode.models.solved_field.SolvedFieldModel`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from deqode.choices import check_choice
from deqode.models.settings import ODESolve, reject_unknown, take_settings
from deqode.models.solved_field import GRAD_MODES, SolvedFieldModel

TRACE_MODES = ("analytic", "autograd")


class HyperNetwork(nn.Module):
    """``t ↦ (W, B, U)`` of the CNF field; parameters ``(1+1)H + (H+1)H + (H+1)(3wd + w)``."""

    def __init__(self, dim: int = 2, hidden: int = 32, width: int = 64) -> None:
        super().__init__()
        self.dim, self.width = dim, width
        self.net = nn.Sequential(
            nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(),
            nn.Linear(hidden, 3 * width * dim + width),
        )

    def forward(self, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        w, d = self.width, self.dim
        params = self.net(t.reshape(1, 1).to(self.net[0].weight.dtype)).reshape(-1)
        W = params[: w * d].reshape(w, d)
        U = params[w * d : 2 * w * d].reshape(w, d)
        gate = params[2 * w * d : 3 * w * d].reshape(w, d)
        B = params[3 * w * d :].reshape(w)
        return W, B, U * torch.sigmoid(gate)


class CNFField(nn.Module):
    """The augmented dynamics ``(z, Δ) ↦ (f(t, z), -tr ∂f/∂z)`` with an evaluation counter."""

    def __init__(self, dim: int = 2, hidden: int = 32, width: int = 64,
                 trace: str = "analytic") -> None:
        super().__init__()
        check_choice("CNF trace mode", trace, TRACE_MODES)
        self.hyper = HyperNetwork(dim, hidden, width)
        self.trace = trace
        self.nfe = 0

    def velocity(self, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """``f(t, z)`` (N, d) and the exact trace of its Jacobian (N,) (analytic form)."""
        W, B, U = self.hyper(t)
        h = torch.tanh(z @ W.T + B)  # (N, width)
        dz = h @ U / self.hyper.width
        trace = (1.0 - h * h) @ (W * U).sum(dim=1) / self.hyper.width
        return dz, trace

    def forward(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        self.nfe += 1
        z = state[0]
        if self.trace == "analytic":
            dz, trace = self.velocity(t, z)
            return dz, -trace
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            z = z if z.requires_grad else z.detach().requires_grad_(True)
            dz, _ = self.velocity(t, z)
            trace = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
            for i in range(z.shape[1]):
                grad = torch.autograd.grad(dz[:, i].sum(), z, create_graph=create_graph)[0]
                trace = trace + grad[:, i]
        if not create_graph:
            dz, trace = dz.detach(), trace.detach()
        return dz, -trace


class CNF(SolvedFieldModel):
    """The 2-D CNF of torchdiffeq's example (see the module docstring).

    ``hidden`` is the hypernetwork width H (example: 32), ``width`` the number of units (64).
    Solver keywords: the fields of :class:`~deqode.models.settings.ODESolve`, here with
    rtol = atol = 1e-5.
    """

    keyword_settings = (ODESolve,)

    def __init__(
        self,
        dim: int = 2,
        hidden: int = 32,
        width: int = 64,
        *,
        t0: float = 0.0,
        t1: float = 10.0,
        base_variance: float = 0.1,
        trace: str = "analytic",
        **solver: Any,
    ) -> None:
        super().__init__()
        if not t1 > t0:
            raise ValueError(f"need t1 > t0, got t0={t0}, t1={t1}")
        if base_variance <= 0:
            raise ValueError(f"base_variance must be positive, got {base_variance}")
        self._set_solver(take_settings(ODESolve, solver, rtol=1e-5, atol=1e-5))
        reject_unknown(solver, type(self))
        self.dim = dim
        self.field = CNFField(dim, hidden, width, trace)
        self.t0, self.t1 = float(t0), float(t1)
        self.base_variance = float(base_variance)

    # ---- densities -----------------------------------------------------------------------------
    def base_log_prob(self, z: Tensor) -> Tensor:
        """log N(z; 0, σ² I) with σ² = ``base_variance``, per row."""
        var = self.base_variance
        return -0.5 * (z * z).sum(dim=1) / var - 0.5 * self.dim * math.log(2 * math.pi * var)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) per point (nats), integrating (z, Δ) from t1 back to t0."""
        if x.dim() != 2 or x.shape[1] != self.dim:
            raise ValueError(f"CNF expects points of shape (N, {self.dim}), got {tuple(x.shape)}")
        times = torch.tensor([self.t1, self.t0], dtype=x.dtype, device=x.device)
        zero = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        z, delta = self._solve((x, zero), times)
        return self.base_log_prob(z[-1]) - delta[-1]

    def forward(self, x: Tensor) -> Tensor:
        return self.log_prob(x)

    def sample(self, n: int | None = None, z0: Tensor | None = None,
               generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """Samples pushed from t0 to t1 and their log densities (from ``z0`` or ``n`` draws)."""
        param = next(self.parameters())
        if z0 is None:
            if n is None:
                raise ValueError("give n or z0")
            z0 = torch.randn(n, self.dim, generator=generator, dtype=param.dtype) * math.sqrt(
                self.base_variance
            )
            z0 = z0.to(param.device)
        times = torch.tensor([self.t0, self.t1], dtype=z0.dtype, device=z0.device)
        z, logp = self._solve((z0, self.base_log_prob(z0)), times)
        return z[-1], logp[-1]


__all__ = ["CNF", "GRAD_MODES", "TRACE_MODES", "CNFField", "HyperNetwork"]
