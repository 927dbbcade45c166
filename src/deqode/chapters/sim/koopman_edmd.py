"""Koopman experiments K1-K3 and K5 of the book chapter 14_sim_koopman, as functions.

K1: linearise a trained tanh DEQ at its fixed point (spectral radius, observed contraction);
K2: singular values of powers of the first-order Koopman matrix ``blockdiag(1, J)``; K3: EDMD on
the joint ``(x, z)`` system of the scalar DEQ ``z ← tanh(0.7 z + x)`` and its peripheral
projector; K5: random Fourier features against the Gaussian kernel. The demos are our own
illustration of the abstract of Konishi & Kawahara, "Stable Invariant Models via Koopman
Spectra" (Neural Networks 2023, arXiv 2207.07475), not the paper's experiments. The notebook
prints and asserts the returned numbers and draws them with :mod:`.koopman_figures`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from deqode.chapters.sim import koopman
from deqode.chapters.sim.koopman_demos import (
    observed_contraction_rates,
    rates_match_spectral_radius,
)

F64 = torch.float64


def linearisation_study(deq, x_test: Tensor, traced: int = 8, steps: int = 40) -> dict[str, Any]:
    """K1: ``J(x)`` at ``z*(x)`` for every test input, its spectral radius, ``||W||_2``, and the
    distances ``||z_k − z*||`` of forward iteration from 0 for the first ``traced`` inputs with the
    observed contraction per step (:func:`.koopman_demos.observed_contraction_rates`)."""
    jac = deq.jacobian(x_test)
    sample = x_test[:traced]
    z_star = deq.solve(sample)
    dist = koopman.distance_trace(deq.cell(sample), torch.zeros_like(z_star), z_star, steps)
    rho_traced = koopman.spectral_radius(jac[:traced])
    rates = observed_contraction_rates(dist)  # geometric mean per step, above the solve accuracy
    return {
        "jacobian": jac,
        "rho": koopman.spectral_radius(jac),
        "w_norm": torch.linalg.matrix_norm(deq.recurrent_weight(), ord=2).item(),
        "distances": dist,
        "rho_traced": rho_traced,
        "rates": rates,
        "rates_match": rates_match_spectral_radius(rates, rho_traced),
    }


def depth_powers(jacobian: Tensor, depths: Sequence[int] = range(0, 41, 2)) -> dict[str, Any]:
    """K2: singular values of ``A^k`` for ``A = blockdiag(1, J)`` at the given depths, and
    ``||J||_2`` (every singular value but the first is bounded by ``||J||_2^k``)."""
    depths = list(depths)
    a = koopman.affine_koopman_matrix(jacobian)
    return {"depths": depths, "singular_values": koopman.power_singular_values(a, depths),
            "j_norm": torch.linalg.matrix_norm(jacobian, ord=2).item()}


def scalar_deq_fixed_points(x: Tensor, gain: float = 0.7, steps: int = 200) -> Tensor:
    """``z*(x)`` of ``z = tanh(gain z + x)`` by forward iteration from 0 (a contraction)."""
    z = torch.zeros_like(x)
    for _ in range(steps):
        z = torch.tanh(gain * z + x)
    return z


def joint_edmd(seed: int, samples: int = 4000, degree: int = 7, gain: float = 0.7,
               tol: float = 1e-8) -> dict[str, Any]:
    """K3: EDMD with monomials ``x^i z^j`` (``i + j ≤ degree``) on the joint map
    ``(x, z) ↦ (x, tanh(gain z + x))`` from uniform samples on [-1.5, 1.5] × [-1, 1]; the
    multiplicity of the eigenvalue 1, the peripheral projector ``P`` and the infinite-depth
    prediction ``e_zᵀ P Ψ(x, 0)`` against the iterated ``z*(x)`` on a grid of x."""
    gen = torch.Generator().manual_seed(seed)
    xs = torch.rand(samples, generator=gen, dtype=F64) * 3 - 1.5
    zs = torch.rand(samples, generator=gen, dtype=F64) * 2 - 1
    exps = koopman.monomial_exponents(degree)
    a = koopman.edmd(koopman.monomial_dictionary(xs, zs, exps),
                     koopman.monomial_dictionary(xs, torch.tanh(gain * zs + xs), exps))
    eig = torch.linalg.eigvals(a)
    proj, rank = koopman.peripheral_projector(a, tol=tol)
    x_grid = torch.linspace(-1.5, 1.5, 201, dtype=F64)
    z_pred = koopman.monomial_dictionary(x_grid, torch.zeros_like(x_grid), exps) @ proj[
        exps.index((0, 1))]
    return {"matrix": a, "eigenvalues": eig, "n_unit": int(((eig - 1).abs() < tol).sum()),
            "projector": proj, "rank": rank, "others": eig[(eig - 1).abs() >= tol].abs(),
            "dictionary_size": len(exps), "x_grid": x_grid,
            "z_true": scalar_deq_fixed_points(x_grid, gain), "z_pred": z_pred}


#: K5: feature counts of the kernel check and the bandwidths of the Gram-matrix panels.
RFF_FEATURES = (16, 256, 4096)


def rff_kernel_study(seed: int, sigma: float = 1.5, points: int = 40, dim: int = 3,
                     panel_features: int = 512) -> dict[str, Any]:
    """K5: Gram matrices ``ξ(a)ᵀξ(b)`` of random Fourier features against the Gaussian kernel of
    bandwidth ``sigma`` (``RFF_FEATURES`` features), then with ``panel_features`` features at
    bandwidths 1e3 (constant features), ``sigma`` and 1e-3 (delta kernel). Seeds torch's global
    generator (the features draw from it), in this order."""
    from deqode.models import sim

    torch.manual_seed(seed)
    pts = torch.randn(points, dim, dtype=F64)
    exact = koopman.gaussian_kernel(pts, pts, sigma)
    grams, errors = {}, {}
    for m in RFF_FEATURES:
        rff = sim.RandomFourierFeatures(dim, m, sigma).double()
        grams[m] = rff(pts) @ rff(pts).T
        errors[m] = (grams[m] - exact).abs().max().item()
    panels = {}
    for bandwidth in (1e3, sigma, 1e-3):
        rff = sim.RandomFourierFeatures(dim, panel_features, bandwidth).double()
        gram = rff(pts) @ rff(pts).T
        panels[bandwidth] = {"gram": gram,
                             "off_diagonal": gram[~torch.eye(points, dtype=torch.bool)]}
    return {"sigma": sigma, "exact": exact, "grams": grams, "errors": errors, "panels": panels}


__all__ = ["RFF_FEATURES", "depth_powers", "joint_edmd", "linearisation_study",
           "rff_kernel_study", "scalar_deq_fixed_points"]
