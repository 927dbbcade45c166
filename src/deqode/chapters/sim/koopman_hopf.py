"""Koopman experiment K4 of the book chapter 14_sim_koopman: the Hopf normal form as a DEQ map.

The time-``h`` flow map ``S_h`` of ``ż = (μ + iω) z − |z|² z`` (:func:`.koopman.hopf_flow`) has a
repelling fixed point at the origin and an attracting cycle ``r = √μ`` for ``μ > 0``. Root solvers
find the origin; forward iteration circles on the cycle. The functions below run the solver
comparison, the exact and the EDMD spectra, and the readout regression of the chapter (our own
illustration of Konishi & Kawahara, "Stable Invariant Models via Koopman Spectra", arXiv
2207.07475, not the paper's experiment). Random draws come from the generator passed in, in the
notebook's order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from deqode.chapters.sim import koopman
from deqode.solvers import fixed_point
from deqode.solvers.homotopy import newton_method

F64 = torch.float64
#: The K4 solver table's μ values.
SOLVER_MUS = (0.25, 0.5, 1.0, 2.0)


def hopf_map(mu: float | Tensor, omega: float, h: float) -> Callable[[Tensor], Tensor]:
    """``z ↦ S_h(z)`` for fixed ``μ``, ``ω``, ``h``."""
    return lambda z: koopman.hopf_flow(z, mu, omega, h)


def below(value: float, bound: float = 1e-9) -> str:
    """Round-off-level numbers as a bound, so reruns print the same."""
    return f"< {bound:.0e}" if value < bound else f"{value:.1e}"


def flow_check(gen: torch.Generator, omega: float, h: float, samples: int = 64) -> float:
    """Max error of the closed-form ``S_h`` against dopri5 at random ``z`` and ``μ ∈ [-0.5, 2]``."""
    z = torch.randn(samples, 2, generator=gen, dtype=F64)
    mu = torch.rand(samples, generator=gen, dtype=F64) * 2.5 - 0.5
    return (koopman.hopf_flow(z, mu, omega, h)
            - koopman.hopf_flow_odeint(z, mu, omega, h)).abs().max().item()


def solver_table(omega: float, h: float, mus: Sequence[float] = SOLVER_MUS,
                 steps: int = 300) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """K4: Broyden, Anderson and Newton from a point on the cycle ``(√μ, 0)``, and forward
    iteration from ``(0.1, 0)``, per ``μ``. Returns the table rows and what the chapter asserts:
    the origin's Jacobian eigenvalues have modulus ``e^{μh}`` (``origin_repels``), the last
    forward step equals the cycle's chord (``chord_gap``) and every converged quasi-Newton root
    is the origin (``converged_root_norm``, 0 when none converged)."""
    rows: list[dict[str, Any]] = []
    origin_repels, chord_gap, root_norm = True, 0.0, 0.0
    for mu in mus:
        flow = hopf_map(mu, omega, h)
        start = torch.tensor([[math.sqrt(mu), 0.0]], dtype=F64)
        origin_eigs = torch.linalg.eigvals(torch.autograd.functional.jacobian(
            lambda v, flow=flow: flow(v[None])[0], torch.zeros(2, dtype=F64)))
        origin_repels &= bool(torch.allclose(origin_eigs.abs(),
                                             torch.full((2,), math.exp(mu * h), dtype=F64)))
        picard = koopman.iterate(flow, torch.tensor([0.1, 0.0], dtype=F64), steps)
        step = (picard[-1] - picard[-2]).norm().item()
        chord = koopman.hopf_chord(mu, omega, h)
        chord_gap = max(chord_gap, abs(step - chord))
        for method in ("broyden", "anderson"):
            root, info = fixed_point(flow, start, method, tol=1e-10, max_iter=100,
                                     stop_mode="abs")
            if info.converged:
                root_norm = max(root_norm, root.norm().item())
            rows.append({"mu": mu, "solver": method, "converged": info.converged,
                         "|z*|": below(root.norm().item()), "iterations": info.iterations})
        newton = newton_method(flow, start[0], tol=1e-10, max_iter=50)
        rows.append({"mu": mu, "solver": "newton (exact Jacobian)", "converged": newton.converged,
                     "|z*|": below(newton.z.norm().item()), "iterations": newton.iterations})
        rows.append({"mu": mu, "solver": f"forward iteration ({steps} steps)", "converged": False,
                     "|z*|": f"{picard[-1].norm().item():.3f} = sqrt(mu)", "iterations": steps,
                     "last step / chord": f"{step:.4f} / {chord:.4f}"})
    return rows, {"origin_repels": origin_repels, "chord_gap": chord_gap,
                  "converged_root_norm": root_norm}


def eigenpair_gap(gen: torch.Generator, mu: float, omega: float, h: float, p_max: int = 3,
                  m_max: int = 6, samples: int = 32) -> tuple[Tensor, float]:
    """The exact eigenvalues ``λ_{p,m}`` and ``max |φ(S_h z)/φ(z) − λ|`` at random ``z``."""
    lam = koopman.hopf_eigenvalues(mu, omega, h, p_max=p_max, m_max=m_max)
    pts = torch.randn(samples, 2, generator=gen, dtype=F64)
    moved = hopf_map(mu, omega, h)(pts)
    worst = max((koopman.hopf_eigenfunction(moved, mu, p, m)
                 / koopman.hopf_eigenfunction(pts, mu, p, m) - lam[p, m + m_max]).abs().max().item()
                for p in range(p_max + 1) for m in range(-m_max, m_max + 1))
    return lam, worst


def cycle_edmd(gen: torch.Generator, mu: float, omega: float, h: float, samples: int = 3000,
               degree: int = 6) -> Tensor:
    """Eigenvalues of EDMD with generic monomials (degree ≤ ``degree``) from samples in the
    annulus ``0.8 √μ ≤ r ≤ 1.2 √μ`` around the cycle."""
    radius = math.sqrt(mu) * (0.8 + 0.4 * torch.rand(samples, generator=gen, dtype=F64))
    angle = 2 * math.pi * torch.rand(samples, generator=gen, dtype=F64)
    near = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], -1)
    exps = koopman.monomial_exponents(degree)
    a = koopman.edmd(koopman.monomial_dictionary(near[:, 0], near[:, 1], exps),
                     koopman.monomial_dictionary(*hopf_map(mu, omega, h)(near).unbind(-1), exps))
    return torch.linalg.eigvals(a)


def ring_powers(lam: Tensor, depths: Sequence[int]) -> Tensor:
    """Singular values of ``A^k`` for ``A = diag(λ_{p,m})`` (exact eigenfunction dictionary)."""
    return koopman.power_singular_values(torch.diag(lam.flatten()), list(depths))


def readout_data(gen: torch.Generator, n: int, omega: float, h: float) -> dict[str, Tensor]:
    """``n`` random ``(μ ∈ [0.25, 2], θ₀)`` with the readouts of ``x₁²`` along forward iteration
    (:func:`.koopman_demos.hopf_readouts`); the time average is the regression target."""
    from deqode.chapters.sim.koopman_demos import hopf_readouts

    mus = 0.25 + 1.75 * torch.rand(n, generator=gen, dtype=F64)
    thetas = 2 * math.pi * torch.rand(n, generator=gen, dtype=F64)
    readouts = hopf_readouts(mus, thetas, omega, h)
    return {"mu": mus, "theta": thetas, "inputs": torch.stack([mus, thetas], -1), **readouts}


def deq_readout(mu: Tensor, theta: Tensor, omega: float, h: float, radius0: float = 0.3):
    """The DEQ reading: Anderson's root of ``S_h`` from ``radius0 (cos θ, sin θ)`` per input and
    the readout ``x₁²`` there. Returns ``(root, info, prediction)``."""
    z0 = radius0 * torch.stack([torch.cos(theta), torch.sin(theta)], -1)
    root, info = fixed_point(hopf_map(mu, omega, h), z0, "anderson", tol=1e-10, max_iter=100,
                             stop_mode="abs")
    return root, info, root[:, 0] ** 2


__all__ = ["SOLVER_MUS", "below", "cycle_edmd", "deq_readout", "eigenpair_gap", "flow_check",
           "hopf_map", "readout_data", "ring_powers", "solver_table"]
