"""Monotone operator equilibrium networks (monDEQ; Winston & Kolter, NeurIPS 2020).

The layer solves ``z* = σ(W z* + b)``, ``b = U x`` (+ bias), with ``σ`` a ReLU-type nonlinearity
(the proximal operator of a convex function ``f``) and ``W`` parametrised so that ``I − W`` is
``m``-strongly monotone::

    fully connected:  W = (1 − m) I − AᵀA + B − Bᵀ
    single conv:      W = (1 − m) I − g ÂᵀÂ + B̂ − B̂ᵀ,   Â = A / ||A||_F,  B̂ = h B / ||B||_F

(``A``, ``B`` circular 3×3 convolutions, ``g``, ``h`` learned scalars; ``g`` enters as
``max(g, 0)`` so the bound holds for every parameter value — the reference code uses ``g``
unclamped). Then ``½(I − W + (I − W)ᵀ) ⪰ m I``, the fixed point exists and is unique, and operator
splitting finds it for any step ``α > 0`` (Peaceman–Rachford) or small enough ``α``
(forward–backward). Circular convolutions are diagonalised by the 2-D DFT, so the resolvent
``(I + α(I − W))^{-1}`` of the conv operator is a batch of ``C × C`` inverses, one per frequency.

The splitting solvers are :func:`deqode.solvers.splitting.splitting_solve`; the layer solves,
checks and differentiates through :func:`deqode.solvers.implicit.solve_equilibrium`.
Peaceman–Rachford (PR), from ``z = u = 0``::

    u½ = 2z − u;  z½ = (I + α(I − W))^{-1}(u½ + α b);  u = 2z½ − u½;  z = σ(u)

stops when ``||z_{k+1} − z_k|| / (||z_{k+1}|| + eps) ≤ tol`` (per sample, max over the batch;
this is the relative residual of the splitting map, our convention ``||f(z) − z|| / (||f(z)|| +
eps)`` with ``f`` one PR sweep). Forward–backward (FB): ``z = σ((1 − α) z + α(W z + b))``.

Backward (``backward="splitting"``, the monDEQ recipe): with ``y* = W z* + b`` and
``D = σ'(y*)``, the gradient w.r.t. ``y`` is ``u = D (Wᵀ u + g)`` (``g`` = incoming gradient),
a problem of the same form with ``W → Wᵀ`` and ``σ → D·``, the prox of the convex quadratic
``Σ (1/d_i − 1) v_i² / 2`` (for step α: ``v ↦ d v / (d + α(1 − d))``, which is ``D v`` for
ReLUs); the same splitting solves it. ``"ift"`` uses :func:`deqode.solvers.implicit_fixed_point`
(GMRES on the adjoint system), ``"one_step"`` differentiates only the last application of σ.
Step-size auto-tuning of the reference code (``tune_alpha``) is not implemented: ``α`` is fixed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deqode.choices import check_choice
from deqode.models.nfe import CountsNFE
from deqode.solvers import SolverInfo
from deqode.solvers.implicit import solve_equilibrium
from deqode.solvers.splitting import SPLITTINGS, LinearMap, splitting_solve

BACKWARDS = ("splitting", "ift", "one_step")


# --------------------------------------------------------------------------------------------------
# monotone linear operators
# --------------------------------------------------------------------------------------------------


class MonotoneOperator(nn.Module):
    """Interface: ``inject(x) = U x + bias``; ``multiply(z) = W z``; ``multiply_transpose``;
    ``resolvent(alpha)`` → ``(solve, solve_transpose)`` for ``I + α(I − W)`` and its transpose
    (computed once without autograd, reused by every iteration of a solve)."""

    m: float

    def inject(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def multiply(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def multiply_transpose(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def resolvent(self, alpha: float) -> tuple[LinearMap, LinearMap]:
        raise NotImplementedError


class MonotoneLinear(MonotoneOperator):
    """Fully connected: ``U = Lin(in → out)``; ``A``, ``B`` = Lin(out → out, no bias);
    ``W = (1 − m) I − AᵀA + B − Bᵀ`` acting on rows (``z ↦ z Wᵀ``)."""

    def __init__(self, in_dim: int, out_dim: int, m: float = 1.0) -> None:
        super().__init__()
        if not m > 0:
            raise ValueError(f"the monotonicity parameter m must be positive, got {m}")
        self.U = nn.Linear(in_dim, out_dim)
        self.A = nn.Linear(out_dim, out_dim, bias=False)
        self.B = nn.Linear(out_dim, out_dim, bias=False)
        self.m = float(m)
        self.out_dim = out_dim

    def weight_matrix(self) -> Tensor:
        """``W`` (out × out), differentiable."""
        a, b = self.A.weight, self.B.weight
        eye = torch.eye(self.out_dim, dtype=a.dtype, device=a.device)
        return (1 - self.m) * eye - a.T @ a + b - b.T

    def inject(self, x: Tensor) -> Tensor:
        return self.U(x)

    def multiply(self, z: Tensor) -> Tensor:
        return z @ self.weight_matrix().T

    def multiply_transpose(self, z: Tensor) -> Tensor:
        return z @ self.weight_matrix()

    def resolvent(self, alpha: float) -> tuple[LinearMap, LinearMap]:
        with torch.no_grad():
            w = self.weight_matrix()
            eye = torch.eye(self.out_dim, dtype=w.dtype, device=w.device)
            inv = torch.linalg.inv(eye + alpha * (eye - w))
        return (lambda r: r @ inv.T), (lambda r: r @ inv)


def _kernel_symbol(weight: Tensor, height: int, width: int) -> Tensor:
    """DFT symbol ``(H, W, O, I)`` of the circular cross-correlation with a 3×3 ``weight``.

    ``y[o, p, q] = Σ_{c,a,b} K[o, c, a+1, b+1] z[c, p+a, q+b]`` (indices mod H, W) is the circular
    convolution with the kernel grid ``k[(−a) mod H, (−b) mod W] = K[a+1, b+1]``, whose DFT gives
    ``ŷ(ω) = K̂(ω) ẑ(ω)`` per frequency.
    """
    out_ch, in_ch, kh, kw = weight.shape
    grid = weight.new_zeros(out_ch, in_ch, height, width)
    for i in range(kh):
        for j in range(kw):
            grid[:, :, (-(i - kh // 2)) % height, (-(j - kw // 2)) % width] += weight[:, :, i, j]
    return torch.fft.fft2(grid).permute(2, 3, 0, 1)


def _adjoint(symbol: Tensor) -> Tensor:
    """Per-frequency conjugate transpose, materialised (lazy-conjugate views are slow in matmul)."""
    return torch.resolve_conj(symbol.transpose(-1, -2).conj()).contiguous()


def _apply_symbol(symbol: Tensor, z: Tensor) -> Tensor:
    """``ifft2(symbol(ω) fft2(z)(ω))``, real part; ``z`` is ``(N, C, H, W)``."""
    zhat = torch.fft.fft2(z)
    return torch.fft.ifft2(torch.einsum("pqoc,ncpq->nopq", symbol, zhat)).real.to(z.dtype)


class MonotoneConv(MonotoneOperator):
    """Single circular 3×3 convolution layer (monDEQ's ``MONSingleConv``), on an ``H × W`` grid.

    ``U``: Conv2d(in → C, 3×3, bias) applied with circular padding; ``A``, ``B``: C → C, 3×3, no
    bias; scalars ``g``, ``h`` (init 1). Trainable parameters: ``9·in·C + C + 2·9·C² + 2``.
    ``W`` is applied in the Fourier domain (exact circular convolutions and transposes).
    """

    def __init__(self, in_channels: int, channels: int, shape: tuple[int, int], m: float = 1.0):
        super().__init__()
        if not m > 0:
            raise ValueError(f"the monotonicity parameter m must be positive, got {m}")
        self.U = nn.Conv2d(in_channels, channels, 3)
        self.A = nn.Conv2d(channels, channels, 3, bias=False)
        self.B = nn.Conv2d(channels, channels, 3, bias=False)
        self.g = nn.Parameter(torch.tensor(1.0))
        self.h = nn.Parameter(torch.tensor(1.0))
        self.m, self.shape, self.channels = float(m), tuple(shape), channels

    def inject(self, x: Tensor) -> Tensor:
        if x.shape[-2:] != self.shape:
            raise ValueError(f"MonotoneConv built for {self.shape}, got input {tuple(x.shape)}")
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), self.U.weight, self.U.bias)

    def symbol(self) -> Tensor:
        """DFT symbol ``Ŵ(ω)`` of ``W`` as ``(H, W, C, C)`` complex, differentiable."""
        a = self.A.weight / self.A.weight.norm()
        b = self.h * self.B.weight / self.B.weight.norm()
        sa, sb = (_kernel_symbol(k, *self.shape) for k in (a, b))
        eye = torch.eye(self.channels, dtype=sa.dtype, device=sa.device)
        return (1 - self.m) * eye - self.g.clamp_min(0) * _adjoint(sa) @ sa + sb - _adjoint(sb)

    def multiply(self, z: Tensor) -> Tensor:
        return _apply_symbol(self.symbol(), z)

    def multiply_transpose(self, z: Tensor) -> Tensor:
        return _apply_symbol(_adjoint(self.symbol()), z)

    def resolvent(self, alpha: float) -> tuple[LinearMap, LinearMap]:
        with torch.no_grad():
            sym = self.symbol()
            eye = torch.eye(self.channels, dtype=sym.dtype, device=sym.device)
            inv = torch.linalg.inv(eye + alpha * (eye - sym))
            inv_h = _adjoint(inv)
        return (lambda r: _apply_symbol(inv, r)), (lambda r: _apply_symbol(inv_h, r))


# --------------------------------------------------------------------------------------------------
# nonlinearities (proximal maps of convex functions)
# --------------------------------------------------------------------------------------------------


def _border_mask(like: Tensor, width: int) -> Tensor:
    mask = torch.zeros_like(like[:1])
    mask[..., width:-width, width:-width] = 1
    return mask


class ReLUProx(nn.Module):
    """``σ = ReLU`` (prox of the indicator of ``z ≥ 0``, the same for every step α);
    ``border=k`` also zeroes a k-pixel image border (monDEQ's ``MONBorderReLU``)."""

    def __init__(self, border: int = 0) -> None:
        super().__init__()
        self.border = border

    def forward(self, y: Tensor) -> Tensor:
        out = F.relu(y)
        return out * _border_mask(out, self.border) if self.border else out

    def derivative(self, y: Tensor) -> Tensor:
        d = (y > 0).to(y.dtype)
        return d * _border_mask(d, self.border) if self.border else d


# --------------------------------------------------------------------------------------------------
# the layer and the networks
# --------------------------------------------------------------------------------------------------


class MonDEQ(CountsNFE, nn.Module):
    """The monDEQ layer: ``x ↦ z*`` with ``z* = σ(W z* + U x + b)`` (see the module docstring).

    Args:
        operator: a :class:`MonotoneOperator`; nonlinearity: :class:`ReLUProx`.
        solver: ``"peaceman_rachford"`` (default, monDEQ's) or ``"forward_backward"``.
        alpha, tol, max_iter: splitting step, relative tolerance, iteration cap (monDEQ: α = 1,
            tol 1e-2, 300 iterations).
        backward: ``"splitting"`` | ``"ift"`` | ``"one_step"``; backward_tol / backward_max_iter
            default to the forward ones (``"splitting"``) or 1e-8 / 100 (``"ift"``).
        require_convergence: raise :class:`~deqode.errors.SolverFailure` if the forward solve
            misses ``tol``; a non-finite solve always raises.

    Counters: ``nfe_forward`` (splitting sweeps of the last forward), ``nfe_backward`` (sweeps of
    the last ``"splitting"`` backward; the ``"ift"`` backward's vector-Jacobian products are not
    counted, it stays 0); records ``last_solver_info`` and ``last_backward_info`` (splitting).
    """

    def __init__(
        self,
        operator: MonotoneOperator,
        nonlinearity: ReLUProx | None = None,
        solver: str = "peaceman_rachford",
        alpha: float = 1.0,
        tol: float = 1e-2,
        max_iter: int = 300,
        backward: str = "splitting",
        backward_tol: float | None = None,
        backward_max_iter: int | None = None,
        require_convergence: bool = False,
    ) -> None:
        super().__init__()
        check_choice("monDEQ splitting", solver, SPLITTINGS)
        check_choice("monDEQ backward", backward, BACKWARDS)
        if not alpha > 0:
            raise ValueError(f"the splitting step alpha must be positive, got {alpha}")
        self.operator = operator
        self.nonlinearity = nonlinearity if nonlinearity is not None else ReLUProx()
        self.solver, self.alpha, self.tol, self.max_iter = solver, float(alpha), tol, max_iter
        self.backward = backward
        ift = backward == "ift"
        self.backward_tol = backward_tol if backward_tol is not None else (1e-8 if ift else tol)
        self.backward_max_iter = (
            backward_max_iter if backward_max_iter is not None else (100 if ift else max_iter)
        )
        self.require_convergence = require_convergence
        self.last_solver_info: SolverInfo | None = None
        self.last_backward_info: SolverInfo | None = None
        self.nfe_forward = 0
        self.nfe_backward = 0

    def forward(self, x: Tensor) -> Tensor:
        op, sigma = self.operator, self.nonlinearity
        bias = op.inject(x)
        resolve, resolve_t = op.resolvent(self.alpha)

        def f(z: Tensor) -> Tensor:
            return sigma(op.multiply(z) + bias)

        def splitting(_f: Callable[[Tensor], Tensor], _z0: Tensor) -> tuple[Tensor, SolverInfo]:
            return splitting_solve(op.multiply, resolve, sigma, bias.detach(), self.solver,
                                   self.alpha, self.tol, self.max_iter)

        def splitting_backward(z_star: Tensor, _f: Callable[[Tensor], Tensor]) -> Tensor:
            y = op.multiply(z_star) + bias
            z = sigma(y)
            if z.requires_grad:
                z.register_hook(self._splitting_hook(sigma.derivative(y.detach()), resolve_t))
            return z

        eq = solve_equilibrium(
            f, bias, "monDEQ forward", solve=splitting, tol=self.tol, max_iter=self.max_iter,
            require_convergence=self.require_convergence, on_solve=self._keep_info,
            backward=splitting_backward if self.backward == "splitting" else self.backward,
            backward_tol=self.backward_tol, backward_max_iter=self.backward_max_iter,
        )
        return eq.z

    def _keep_info(self, info: SolverInfo) -> None:
        self.last_solver_info, self.nfe_forward = info, info.nfe

    def _splitting_hook(self, d: Tensor, resolve_t: LinearMap) -> Callable[[Tensor], Tensor]:
        """Replace the incoming gradient ``g`` by ``g + Wᵀu`` with ``u = D(Wᵀu + g)``, so that
        the gradient reaching ``y = W z* + b`` through σ is ``D(g + Wᵀu) = u``."""
        op, alpha = self.operator, self.alpha
        prox_scale = d / (d + alpha * (1 - d))  # prox of Σ(1/d − 1)v²/2 at step α (0 where d=0)

        def hook(grad: Tensor) -> Tensor:
            with torch.no_grad():
                u, info = splitting_solve(
                    op.multiply_transpose, resolve_t, lambda v: prox_scale * v, grad,
                    self.solver, alpha, self.backward_tol, self.backward_max_iter,
                )
                self.last_backward_info, self.nfe_backward = info, info.nfe
                return grad + op.multiply_transpose(u)

        return hook


class _NFEMixin(CountsNFE):
    """NFE counters of the network = those of its monDEQ layer ``self.mon``."""

    mon: MonDEQ

    @property
    def nfe_forward(self) -> int:  # type: ignore[override]
        return self.mon.nfe_forward

    @property
    def nfe_backward(self) -> int:  # type: ignore[override]
        return self.mon.nfe_backward

    def reset_nfe(self) -> None:
        self.mon.reset_nfe()


class MonDEQFCNet(_NFEMixin, nn.Module):
    """monDEQ fully connected classifier: flatten → monDEQ(Lin in → hidden) → Lin(hidden → K)."""

    def __init__(self, in_dim: int = 784, hidden: int = 87, num_classes: int = 10,
                 m: float = 1.0, **layer_kwargs: Any) -> None:
        super().__init__()
        self.mon = MonDEQ(MonotoneLinear(in_dim, hidden, m), **layer_kwargs)
        self.w_out = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_out(self.mon(x.flatten(1)))


class MonDEQConvNet(_NFEMixin, nn.Module):
    """monDEQ single-conv classifier: zero-pad 1 → monDEQ(circular 3×3 conv, C channels, border
    ReLU) → AvgPool(4) → Lin(C·((S + 2)//4)² → K)."""

    def __init__(self, in_channels: int = 1, channels: int = 54, image_size: int = 28,
                 num_classes: int = 10, m: float = 1.0, pool: int = 4,
                 **layer_kwargs: Any) -> None:
        super().__init__()
        side = image_size + 2
        op = MonotoneConv(in_channels, channels, (side, side), m)
        self.mon = MonDEQ(op, ReLUProx(border=1), **layer_kwargs)
        self.pool = pool
        self.w_out = nn.Linear(channels * (side // pool) ** 2, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        z = self.mon(F.pad(x, (1, 1, 1, 1)))
        return self.w_out(F.avg_pool2d(z, self.pool).flatten(1))


class BasisMonDEQ(_NFEMixin, nn.Module):
    """A monDEQ on top of a feature extractor: ``logits = Lin(z*)``, ``z* = σ(W z* + U Φ(x) + b)``.

    The smoke classification baseline: the same basis ``Φ`` as the SIM it is compared with."""

    def __init__(self, basis: nn.Module, basis_dim: int, hidden: int, num_classes: int = 10,
                 m: float = 1.0, **layer_kwargs: Any) -> None:
        super().__init__()
        self.basis = basis
        self.mon = MonDEQ(MonotoneLinear(basis_dim, hidden, m), **layer_kwargs)
        self.w_out = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.w_out(self.mon(self.basis(x)))


# named builds: monDEQ's own configurations (Winston & Kolter 2020, the SIM baselines; counts
# [derived], checked by the tests)
MONDEQ_BUILDS: dict[str, tuple[type[nn.Module], dict[str, Any], int]] = {
    "mondeq-conv-mnist": (MonDEQConvNet, dict(in_channels=1, channels=54, image_size=28), 79_500),
    "mondeq-conv-cifar10": (MonDEQConvNet, dict(in_channels=3, channels=81, image_size=32),
                            172_218),
    "mondeq-conv-svhn": (MonDEQConvNet, dict(in_channels=3, channels=81, image_size=32), 172_218),
    "mondeq-fc-mnist": (MonDEQFCNet, dict(in_dim=784, hidden=87), 84_313),
}
#: monDEQ's solver settings in its experiments (locuslab/monotone_op_net): PR, tol 1e-2,
#: 300 sweeps, m = α = 1.
MONDEQ_SOLVER = dict(solver="peaceman_rachford", alpha=1.0, tol=1e-2, max_iter=300)


def names() -> list[str]:
    """Named monDEQ builds."""
    return sorted(MONDEQ_BUILDS)


def build(name: str, **overrides: Any) -> nn.Module:
    """Instantiate a named monDEQ build (solver settings of the reference experiments)."""
    check_choice("monDEQ build", name, names())
    cls, kwargs, _ = MONDEQ_BUILDS[name]
    return cls(**{**kwargs, "m": 1.0, **MONDEQ_SOLVER, **overrides})


def expected_parameters(name: str) -> int:
    """The trainable-parameter count of a named build ([derived] from its layer shapes)."""
    check_choice("monDEQ build", name, names())
    return MONDEQ_BUILDS[name][2]


__all__ = [
    "BACKWARDS",
    "MONDEQ_BUILDS",
    "MONDEQ_SOLVER",
    "SPLITTINGS",
    "BasisMonDEQ",
    "MonDEQ",
    "MonDEQConvNet",
    "MonDEQFCNet",
    "MonotoneConv",
    "MonotoneLinear",
    "MonotoneOperator",
    "ReLUProx",
    "build",
    "expected_parameters",
    "names",
    "splitting_solve",
]
