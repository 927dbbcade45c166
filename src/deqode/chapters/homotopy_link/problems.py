"""The toy problems of the homotopy chapter: the common tanh toy and the author's 1-D quadratic.

The common toy (book chapter "Two sides of one coin", section 1; our construction, not from Ding
et al., NeurIPS 2023): ``f(z) = tanh(W z + U x)``, ``n = 5``, ``U = I``, ``W`` Gaussian rescaled
to ``||W||_2 = 0.9`` (a contraction, so every homotopy path exists and has no turning point),
float64, seeded; ``x ~ N(0, x_scale² I)`` with ``x_scale = 0.1`` (our choice). The 1-D quadratic
is the toy of the author's MATLAB prototype (github.com/wadx2019/homotopy).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import Tensor

from deqode.errors import SolverFailure
from deqode.solvers.homotopy import Homotopy, newton_method

DTYPE = torch.float64
SPECTRAL_NORM = 0.9


@dataclass(frozen=True)
class TanhToy:
    """``f(z) = tanh(W z + U x)`` on ``z [..., n]`` with a condition ``x [..., m]`` (or ``[m]``).

    ``jacobian(z) = diag(1 - tanh²(W z + U x)) W``, ``[B, n, n]``; ``||J_f|| <= ||W||_2``.
    """

    W: Tensor
    U: Tensor
    x: Tensor

    @property
    def n(self) -> int:
        return self.W.shape[0]

    @functools.cached_property
    def bias(self) -> Tensor:
        """The injected input ``U x`` (computed once)."""
        return self.x @ self.U.T

    def preactivation(self, z: Tensor) -> Tensor:
        return z @ self.W.T + self.bias

    def __call__(self, z: Tensor) -> Tensor:
        return torch.tanh(self.preactivation(z))

    def jacobian(self, z: Tensor) -> Tensor:
        slope = 1 - torch.tanh(self.preactivation(z)) ** 2
        return slope.unsqueeze(-1) * self.W

    def with_condition(self, x: Tensor) -> TanhToy:
        """The same weights with another condition ``x`` (e.g. a batch ``[B, m]``)."""
        return TanhToy(self.W, self.U, x)

    def fixed_point(self, z0: Tensor | None = None) -> Tensor:
        """``z*`` by Newton's method to machine precision (from ``z0``, default 0)."""
        start = torch.zeros(self.n, dtype=self.W.dtype) if z0 is None else z0
        result = newton_method(self, start, tol=1e-15, max_iter=50, jac=self.jacobian)
        if result.residuals[-1] > 1e-13:
            raise SolverFailure(f"toy fixed point not found: residual {result.residuals[-1]:.2e}")
        return result.z


@dataclass(frozen=True)
class Setup:
    """The common toy with its random start point ``z0`` and the reference fixed point."""

    toy: TanhToy
    z0: Tensor
    z_star: Tensor
    seed: int


def make_toy(
    seed: int = 0, n: int = 5, m: int | None = None, x_scale: float = 0.1,
    spectral_norm: float = SPECTRAL_NORM,
) -> Setup:
    """The seeded common toy: ``W`` Gaussian with ``||W||_2 = spectral_norm``, ``U = I`` (``m = n``)
    or Gaussian ``[n, m]``, ``x ~ N(0, x_scale²)``, ``z0 ~ N(0, I)``; ``z*`` by Newton's method."""
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(n, n, generator=gen, dtype=DTYPE)
    W = W * (spectral_norm / torch.linalg.matrix_norm(W, ord=2))
    if m is None:
        U, m = torch.eye(n, dtype=DTYPE), n
    else:
        U = torch.randn(n, m, generator=gen, dtype=DTYPE) / math.sqrt(m)
    x = x_scale * torch.randn(m, generator=gen, dtype=DTYPE)
    z0 = torch.randn(n, generator=gen, dtype=DTYPE)
    toy = TanhToy(W, U, x)
    return Setup(toy=toy, z0=z0, z_star=toy.fixed_point(), seed=seed)


class QuadraticHomotopy(Homotopy):
    """The author's 1-D MATLAB toy ``H(x, λ) = λ(x² - 1) + (1 - λ)(x - a)``, closed-form partials.

    For fixed ``λ`` the zero set is the quadratic ``λx² + (1 - λ)x - λ - (1 - λ)a = 0``; its
    target ``H(·, 1) = x² - 1`` has the roots ``±1``.
    """

    kind = "quadratic"

    def __init__(self, a: float):
        self.a = a

    def __call__(self, z: Tensor, lam: Tensor) -> Tensor:
        lam = lam.unsqueeze(-1)
        return lam * (z**2 - 1) + (1 - lam) * (z - self.a)

    def partials(self, z: Tensor, lam: Tensor) -> tuple[Tensor, Tensor]:
        lam_ = lam.unsqueeze(-1)
        h_x = 2 * lam_ * z + (1 - lam_)
        h_lam = (z**2 - 1) - (z - self.a)
        return h_x.unsqueeze(-1), h_lam

    def zero_set(self, x: Tensor) -> Tensor:
        """``λ(x)`` on the zero set: ``λ = (x - a) / ((x - a) - (x² - 1))``."""
        return (x - self.a) / ((x - self.a) - (x**2 - 1))


def turning_point_closed_form(a: float = -2.0) -> tuple[float, float]:
    """``(λ*, x*)`` of the first turning point for ``a = -2``.

    The discriminant ``13λ² - 10λ + 1`` vanishes at ``λ* = (5 - 2√3)/13``, where the double root is
    ``x* = -(1 - λ*)/(2λ*) = -(2 + √3)``.
    """
    if a != -2.0:
        raise ValueError("the closed form is derived for a = -2 only")
    lam = (5 - 2 * math.sqrt(3)) / 13
    return lam, -(1 - lam) / (2 * lam)


__all__ = [
    "DTYPE", "SPECTRAL_NORM", "QuadraticHomotopy", "Setup", "TanhToy", "make_toy",
    "turning_point_closed_form",
]
