"""E0 and E2: the NAG rule as a linear two-step method, its error constants, root condition and
linear stability (book chapter 10_nag_theory, sections E0-E2; Dahlquist's theory as in Hairer,
Nørsett & Wanner, Solving Ordinary Differential Equations I, Chapter III)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from deqode.choices import check_choice

#: β values of the stability plots (E2).
REGION_BETAS = (0.0, 0.3, 0.5, 0.7, 0.9)
#: Fixed-grid methods of torchdiffeq: evaluations of f per step and classical order.
RK_METHODS = {"euler": (1, 1), "midpoint": (2, 2), "heun3": (3, 3), "rk4": (4, 4)}

# ------------------------------------------------------------------------------------------------
# E0: the linear multistep form, symbolically
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SymbolicLMM:
    """ρ, σ and error constants of ``x_{k+2} - (1+β) x_{k+1} + β x_k = c h [(1+β) f_{k+1} - β f_k]``
    (sympy expressions in the symbols ``beta``, ``c`` and ``z``)."""

    beta: Any
    c: Any
    z: Any
    rho: Any
    sigma: Any
    constants: tuple[Any, ...]  # C_0, C_1, C_2

    def at(self, c_value: Any) -> tuple[Any, ...]:
        """The error constants with c replaced (e.g. ``1`` or ``1 - beta``), simplified."""
        import sympy as sp

        return tuple(sp.simplify(C.subs(self.c, c_value)) for C in self.constants)

    def normalised_error_constant(self, c_value: Any) -> Any:
        """``C_2 / σ(1)``: the constant of the global error per unit time (for consistent c)."""
        import sympy as sp

        return sp.simplify(self.at(c_value)[2] / self.sigma.subs({self.z: 1, self.c: c_value}))


def symbolic_lmm(max_q: int = 2) -> SymbolicLMM:
    """E0: the characteristic polynomials and C_0..C_max_q of the NAG recursion, as sympy
    expressions (book chapter 10_nag_theory, E0)."""
    import sympy as sp

    beta, c, z = sp.symbols("beta c z")
    alphas = [beta, -(1 + beta), sp.Integer(1)]  # coefficients of x_k, x_{k+1}, x_{k+2}
    betas = [-c * beta, c * (1 + beta), sp.Integer(0)]
    rho = sp.expand(sum(a * z**j for j, a in enumerate(alphas)))
    sigma = sp.expand(sum(b * z**j for j, b in enumerate(betas)))
    constants = []
    for q in range(max_q + 1):
        term = sum(sp.Integer(j) ** q * a for j, a in enumerate(alphas)) / sp.factorial(q)
        if q >= 1:
            term -= sum(sp.Integer(j) ** (q - 1) * b for j, b in enumerate(betas)) / sp.factorial(
                q - 1
            )
        constants.append(sp.simplify(term))
    return SymbolicLMM(beta, c, z, rho, sigma, tuple(constants))


def error_constants(beta: float, scale: bool = True, max_q: int = 3) -> list[float]:
    """C_0..C_max_q of the NAG recursion at a numeric β (c = 1 - β, or c = 1 if not ``scale``).

    The same convention as :func:`symbolic_lmm`, evaluated in floating point.
    """
    c = (1.0 - beta) if scale else 1.0
    alphas = (beta, -(1.0 + beta), 1.0)
    betas = (-c * beta, c * (1.0 + beta), 0.0)
    out = []
    for q in range(max_q + 1):
        term = sum(j**q * a for j, a in enumerate(alphas)) / math.factorial(q)
        if q >= 1:
            term -= sum(j ** (q - 1) * b for j, b in enumerate(betas)) / math.factorial(q - 1)
        out.append(float(term))
    return out


def lmm_order(beta: float, scale: bool = True, tol: float = 1e-12) -> int | None:
    """Order of consistency p (C_0 = ... = C_p = 0, C_{p+1} != 0), or None if inconsistent.

    Computed from :func:`error_constants`, not assumed (T1's order column).
    """
    constants = error_constants(beta, scale)
    if abs(constants[0]) > tol or abs(constants[1]) > tol:
        return None
    for q, value in enumerate(constants[2:], start=2):
        if abs(value) > tol:
            return q - 1
    raise ValueError(f"order of the NAG recursion at beta={beta} exceeds {len(constants) - 2}")


def rho_roots(beta: float) -> np.ndarray:
    """Roots of ρ(z) = z² - (1+β) z + β (they are 1 and β)."""
    return np.roots([1.0, -(1.0 + beta), beta])


def satisfies_root_condition(beta: float, tol: float = 1e-12) -> bool:
    """Root condition: all roots of ρ in the closed unit disc, those on the circle simple."""
    roots = rho_roots(beta)
    moduli = np.abs(roots)
    if np.any(moduli > 1 + tol):
        return False
    on_circle = roots[np.abs(moduli - 1) <= tol]
    for i, r in enumerate(on_circle):
        if np.any(np.abs(np.delete(on_circle, i) - r) <= 1e-8):
            return False
    return True


# ------------------------------------------------------------------------------------------------
# E2: linear stability
# ------------------------------------------------------------------------------------------------


def stability_interval_closed_form(beta: float, scale: bool = True) -> float:
    """Left end of the real stability interval in ĥ = hλ, valid for -1/2 < β < 1 (Schur-Cohn
    conditions on π(z) = ρ(z) - ĥσ(z); book chapter 10_nag_theory, E2).

    ``-2(1+β)/((1-β)(1+2β))`` with c = 1 - β; ``-2(1+β)/(1+2β)`` with c = 1.
    """
    if not -0.5 < beta < 1:
        raise ValueError(f"the closed form holds for -1/2 < beta < 1, got {beta}")
    left = -2.0 * (1.0 + beta) / (1.0 + 2.0 * beta)
    return left / (1.0 - beta) if scale else left


def max_root_modulus(hl: np.ndarray, beta: float, scale: bool = True) -> np.ndarray:
    """Largest root modulus of π(z) = z² - (1+β) a z + β a with a = 1 + c ĥ (ĥ = hλ, complex)."""
    hl = np.asarray(hl, dtype=complex)
    c = (1.0 - beta) if scale else 1.0
    a = 1.0 + c * hl
    b = (1.0 + beta) * a
    disc = np.sqrt(b * b - 4.0 * beta * a + 0j)
    return np.maximum(np.abs((b + disc) / 2), np.abs((b - disc) / 2))


def rk_amplification(hl: np.ndarray, method: str) -> np.ndarray:
    """|R(ĥ)| of euler/midpoint/heun3/rk4 (explicit s-stage RK of order s ≤ 4: R = Σ ĥ^j/j!)."""
    check_choice("Runge-Kutta method", method, RK_METHODS)
    order = RK_METHODS[method][1]
    hl = np.asarray(hl, dtype=complex)
    return np.abs(sum(hl**j / math.factorial(j) for j in range(order + 1)))


def amplification(hl: np.ndarray, method: str, beta: float = 0.5, scale: bool = True) -> np.ndarray:
    """The stability measure of a method at ĥ: max root modulus (nesterov) or |R(ĥ)| (RK)."""
    if method == "nesterov":
        return max_root_modulus(hl, beta, scale)
    return rk_amplification(hl, method)


def real_stability_interval(
    method: str = "nesterov",
    beta: float = 0.5,
    scale: bool = True,
    spacing: float = 1e-4,
    lower: float = -40.0,
    tol: float = 1e-12,
) -> float:
    """E2: the left end of the stable real segment [x, 0] found on a grid of ``spacing``.

    Returns the smallest grid point x such that every grid point in [x, 0] is stable
    (amplification ≤ 1 + tol); exact to within ``spacing``.
    """
    n = round(-lower / spacing)
    grid = -spacing * np.arange(n + 1)
    stable = amplification(grid, method, beta, scale) <= 1.0 + tol
    if not stable[0]:
        raise ValueError(f"{method} is not stable at hλ = 0")
    unstable = np.flatnonzero(~stable)
    if unstable.size == 0:
        raise ValueError(f"{method}: stable on all of [{lower}, 0]; lower the bound")
    return float(grid[unstable[0] - 1])


def boundary_locus(beta: float, scale: bool = True, n: int = 721) -> np.ndarray:
    """ĥ(θ) = ρ(e^{iθ}) / σ(e^{iθ}), θ ∈ [0, 2π] (the stability boundary is a subset)."""
    c = (1.0 - beta) if scale else 1.0
    z = np.exp(1j * np.linspace(0.0, 2 * np.pi, n))
    sigma = c * ((1.0 + beta) * z - beta)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (z - 1.0) * (z - beta) / sigma


def imaginary_axis_stable(beta: float, scale: bool = True, extent: float = 4.0,
                          n: int = 4001) -> bool:
    """Whether some ĥ = iy, 0 < |y| ≤ extent, is stable (E2: it is not, like Euler)."""
    y = np.linspace(-extent, extent, n)
    y = y[np.abs(y) > 1e-9]
    return bool(np.any(max_root_modulus(1j * y, beta, scale) <= 1.0 + 1e-12))


__all__ = [
    "REGION_BETAS", "RK_METHODS", "SymbolicLMM", "amplification", "boundary_locus",
    "error_constants", "imaginary_axis_stable", "lmm_order", "max_root_modulus",
    "real_stability_interval", "rho_roots", "rk_amplification", "satisfies_root_condition",
    "stability_interval_closed_form", "symbolic_lmm",
]
