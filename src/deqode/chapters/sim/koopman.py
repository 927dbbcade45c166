"""Koopman / Perron–Frobenius helpers for the SIM chapter (book chapter 14_sim_koopman, K1–K6).

Conventions. A map ``S`` acts on states ``s``; the Koopman operator acts on observables,
``(K g)(s) = g(S(s))``. On a finite dictionary ``Ψ = (ψ_1, …, ψ_n)`` the Koopman matrix ``A``
follows the *coefficient convention* ``Ψ(S(s)) ≈ A Ψ(s)`` (rows of data ``Ψ(S(s_i)) ≈ Ψ(s_i) Aᵀ``),
so ``Ψ(s_k) = A^k Ψ(s_0)``. Eigenvalues of modulus < 1 decay with depth ``k``; only the
peripheral (unit-modulus) part of ``A^k`` survives, which is what SIM keeps in closed form.

Contents: K1/K2 (linearisation of a DEQ at its fixed point, ``A = blockdiag(1, J)``), K3 (EDMD on
the joint ``(x, z)`` system with monomials, spectral projector), K4 (the Hopf normal form: exact
flow map, exact Koopman eigenpairs, forward iteration vs root solving), K5 (random-Fourier-feature
kernel check), K6 (diagnostics of a learned ``U V``). Everything is batched torch, float64 where
a tolerance matters; nothing here trains a model.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

# --------------------------------------------------------------------------------------------------
# K1 / K2: linearisation at a fixed point
# --------------------------------------------------------------------------------------------------


def spectral_radius(matrices: Tensor) -> Tensor:
    """``ρ`` of each matrix in a batch ``(..., n, n)``."""
    return torch.linalg.eigvals(matrices).abs().amax(dim=-1)


def distance_trace(f: Callable[[Tensor], Tensor], z0: Tensor, z_star: Tensor, steps: int) -> Tensor:
    """``||z_k − z*||`` per sample for ``k = 0..steps`` of forward iteration ``z ← f(z)``.

    Returns ``(steps + 1, B)``."""
    out = []
    z = z0
    with torch.no_grad():
        for _ in range(steps + 1):
            out.append((z - z_star).flatten(1).norm(dim=1))
            z = f(z)
    return torch.stack(out)


def affine_koopman_matrix(jacobian: Tensor) -> Tensor:
    """First-order Koopman matrix on the dictionary ``(1, δz_1, …, δz_d)``: ``blockdiag(1, J)``."""
    d = jacobian.shape[-1]
    a = jacobian.new_zeros(*jacobian.shape[:-2], d + 1, d + 1)
    a[..., 0, 0] = 1
    a[..., 1:, 1:] = jacobian
    return a


def power_singular_values(a: Tensor, ks: Sequence[int]) -> Tensor:
    """Singular values of ``A^k`` for each ``k`` in ``ks``: ``(len(ks), n)``, descending."""
    return torch.stack([torch.linalg.svdvals(torch.linalg.matrix_power(a, k)) for k in ks])


def peripheral_projector(a: Tensor, tol: float = 1e-6) -> tuple[Tensor, int]:
    """The limit ``lim_k A^k`` when the only peripheral eigenvalue is 1 (semisimple).

    ``P = W₁ V₁`` from the eigen-decomposition (``W₁`` right eigenvectors with ``|λ − 1| < tol``,
    ``V₁`` the matching rows of ``W^{-1}``). Returns ``(P, rank)``; ``P`` is real up to round-off
    and idempotent.
    """
    eigvals, right = torch.linalg.eig(a)
    left = torch.linalg.inv(right)
    keep = (eigvals - 1).abs() < tol
    p = right[:, keep] @ left[keep, :]
    return p.real.to(a.dtype), int(keep.sum())


# --------------------------------------------------------------------------------------------------
# K3: EDMD on the joint (x, z) system
# --------------------------------------------------------------------------------------------------


def monomial_exponents(degree: int) -> list[tuple[int, int]]:
    """Exponents ``(i, j)`` of ``x^i z^j`` with ``i + j ≤ degree``; x-only monomials first."""
    x_only = [(i, 0) for i in range(degree + 1)]
    mixed = [(i, j) for j in range(1, degree + 1) for i in range(degree + 1 - j)]
    return x_only + mixed


def monomial_dictionary(x: Tensor, z: Tensor, exponents: Sequence[tuple[int, int]]) -> Tensor:
    """``Ψ(x, z) = (x^i z^j)`` for scalar batches ``x``, ``z`` of shape ``(N,)``: ``(N, n)``."""
    return torch.stack([x**i * z**j for i, j in exponents], dim=1)


def edmd(psi_now: Tensor, psi_next: Tensor) -> Tensor:
    """Least-squares Koopman matrix ``A`` with ``psi_next ≈ psi_now Aᵀ`` (``Ψ∘S ≈ A Ψ``)."""
    return torch.linalg.lstsq(psi_now, psi_next).solution.T


# --------------------------------------------------------------------------------------------------
# K4: the Hopf normal form ż = (μ + iω) z − |z|² z
# --------------------------------------------------------------------------------------------------


def _growth(mu: Tensor, h: float) -> Tensor:
    """``(1 − e^{−2μh}) / μ`` (→ ``2h`` as ``μ → 0``)."""
    small = mu.abs() < 1e-12
    safe = torch.where(small, torch.ones_like(mu), mu)
    return torch.where(small, torch.full_like(mu, 2 * h), -torch.expm1(-2 * safe * h) / safe)


def hopf_flow(z: Tensor, mu: Tensor | float, omega: float, h: float) -> Tensor:
    """The exact time-``h`` flow map ``S_h`` of the Hopf normal form, ``z`` real ``(..., 2)``.

    With ``s = r²``: ``s(h) = s₀ / (e^{−2μh} + s₀ (1 − e^{−2μh})/μ)`` (``s₀ / (1 + 2 s₀ h)`` at
    ``μ = 0``) and ``θ(h) = θ₀ + ωh``, so ``S_h(z) = R(ωh) z / sqrt(e^{−2μh} + s₀ g(μ))``. Valid for
    every real ``μ`` (attracting origin for ``μ < 0``, limit cycle ``r = √μ`` for ``μ > 0``);
    differentiable, batched over ``z`` and ``μ`` (broadcast on the leading dims).
    """
    mu = torch.as_tensor(mu, dtype=z.dtype, device=z.device)
    s0 = (z**2).sum(-1)
    scale = torch.rsqrt(torch.exp(-2 * mu * h) + s0 * _growth(mu, h))
    c, s = math.cos(omega * h), math.sin(omega * h)
    rotated = torch.stack([c * z[..., 0] - s * z[..., 1], s * z[..., 0] + c * z[..., 1]], -1)
    return scale[..., None] * rotated


def hopf_field(z: Tensor, mu: Tensor | float, omega: float) -> Tensor:
    """The vector field ``(μ + iω) z − |z|² z`` in real coordinates."""
    mu = torch.as_tensor(mu, dtype=z.dtype, device=z.device)
    s = (z**2).sum(-1, keepdim=True)
    x, y = z[..., :1], z[..., 1:]
    m = mu[..., None] if mu.dim() else mu
    return torch.cat([m * x - omega * y, omega * x + m * y], -1) - s * z


def hopf_flow_odeint(
    z: Tensor, mu: Tensor | float, omega: float, h: float, rtol: float = 1e-10,
    atol: float = 1e-12,
) -> Tensor:
    """``S_h`` by numerical integration (torchdiffeq ``dopri5``), to check :func:`hopf_flow`."""
    from torchdiffeq import odeint

    t = torch.tensor([0.0, h], dtype=z.dtype, device=z.device)
    return odeint(lambda _t, y: hopf_field(y, mu, omega), z, t, rtol=rtol, atol=atol,
                  method="dopri5")[-1]


def hopf_eigenvalues(mu: float, omega: float, h: float, p_max: int, m_max: int) -> Tensor:
    """Exact Koopman eigenvalues ``λ_{p,m} = exp((−2μp + i m ω) h)`` of ``S_h`` away from the
    origin, ``p = 0..p_max``, ``m = −m_max..m_max``: complex ``(p_max + 1, 2 m_max + 1)``."""
    p = torch.arange(p_max + 1, dtype=torch.float64)[:, None]
    m = torch.arange(-m_max, m_max + 1, dtype=torch.float64)[None, :]
    return torch.exp(torch.complex(-2 * mu * p * h, m * omega * h))


def hopf_eigenfunction(z: Tensor, mu: float, p: int, m: int) -> Tensor:
    """``φ_{p,m}(z) = ((μ − |z|²) / |z|²)^p e^{i m θ}`` (complex), for ``z ≠ 0``."""
    s = (z**2).sum(-1)
    theta = torch.atan2(z[..., 1], z[..., 0])
    radial = ((mu - s) / s) ** p
    return radial * torch.exp(1j * m * theta)


def hopf_chord(mu: float, omega: float, h: float) -> float:
    """The limit of ``||z_{k+1} − z_k||`` on the cycle: ``2 √μ |sin(ωh/2)|``."""
    return 2 * math.sqrt(mu) * abs(math.sin(omega * h / 2))


def hopf_origin_eigenvalues(mu: float, omega: float, h: float) -> tuple[complex, complex]:
    """Eigenvalues ``e^{(μ ± iω)h}`` of the Jacobian of ``S_h`` at the origin."""
    lam = complex(math.exp(mu * h) * math.cos(omega * h), math.exp(mu * h) * math.sin(omega * h))
    return lam, lam.conjugate()


def iterate(f: Callable[[Tensor], Tensor], z0: Tensor, steps: int) -> Tensor:
    """Forward iteration ``z_{k+1} = f(z_k)``: the trajectory ``(steps + 1, *z0.shape)``."""
    out = [z0]
    with torch.no_grad():
        for _ in range(steps):
            out.append(f(out[-1]))
    return torch.stack(out)


# --------------------------------------------------------------------------------------------------
# K5 / K6: the second tier as a kernel; diagnostics of a learned U V
# --------------------------------------------------------------------------------------------------


def gaussian_kernel(a: Tensor, b: Tensor, bandwidth: float) -> Tensor:
    """``exp(−||a_i − b_j||² / (2σ²))`` for rows of ``a`` and ``b``: ``(len(a), len(b))``."""
    return torch.exp(-torch.cdist(a, b) ** 2 / (2 * bandwidth**2))


def uv_diagnostics(uv: Tensor, rank: int) -> dict[str, object]:
    """Spectrum and idempotency of a learned ``U V`` (n × n, rank ≤ r).

    Returns eigenvalues (complex, by descending modulus), singular values, the numerical rank
    (singular values above ``1e-6`` of the largest), ``rank`` (= r), and the idempotency defect
    ``||(UV)² − UV||_F / ||UV||_F`` (0 for a projector such as the λ = 1 part of ``A^∞``).
    """
    eig = torch.linalg.eigvals(uv)
    eig = eig[torch.argsort(eig.abs(), descending=True)]
    sv = torch.linalg.svdvals(uv)
    defect = (uv @ uv - uv).norm() / uv.norm().clamp_min(torch.finfo(uv.dtype).tiny)
    return {
        "eigenvalues": eig,
        "singular_values": sv,
        "numerical_rank": int((sv > 1e-6 * sv[0]).sum()) if sv.numel() else 0,
        "rank_bound": rank,
        "idempotency_defect": float(defect),
    }


__all__ = [
    "affine_koopman_matrix",
    "distance_trace",
    "edmd",
    "gaussian_kernel",
    "hopf_chord",
    "hopf_eigenfunction",
    "hopf_eigenvalues",
    "hopf_field",
    "hopf_flow",
    "hopf_flow_odeint",
    "hopf_origin_eigenvalues",
    "iterate",
    "monomial_dictionary",
    "monomial_exponents",
    "peripheral_projector",
    "power_singular_values",
    "spectral_radius",
    "uv_diagnostics",
]
