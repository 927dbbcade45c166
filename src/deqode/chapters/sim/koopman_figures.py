"""Figures of the book chapter 14_sim_koopman (F1, K1-K5), drawn from the records of
:mod:`.koopman_edmd` and :mod:`.koopman_hopf`; the notebook stamps, saves and shows them."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from deqode.book import plots
from deqode.chapters.sim import koopman
from deqode.chapters.sim.koopman_hopf import hopf_map
from deqode.solvers import fixed_point

F64 = torch.float64


def _unit_circle(ax, radius: float = 1.0, style: str = "-", **kwargs) -> None:
    t = torch.linspace(0, 2 * math.pi, 300)
    ax.plot(radius * torch.cos(t), radius * torch.sin(t), style, color="0.5", lw=0.8, **kwargs)


def _finish(fig):
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def fixed_point_vs_invariant_set_figure(omega: float, h: float, mus=(-0.5, 1.0)):
    """F1: the Hopf field, forward iteration of ``S_h`` from three starts and Broyden's root, for
    an attracting origin (``μ < 0``) and a limit cycle around a repelling origin (``μ > 0``)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    grid = torch.linspace(-1.6, 1.6, 21, dtype=F64)
    gx, gy = torch.meshgrid(grid, grid, indexing="xy")
    starts = torch.tensor([[1.5, 0.0], [0.05, 0.0], [-1.0, 1.2]], dtype=F64)
    for ax, mu in zip(axes, mus, strict=True):
        field = koopman.hopf_field(torch.stack([gx, gy], -1), mu, omega)
        ax.streamplot(gx.numpy(), gy.numpy(), field[..., 0].numpy(), field[..., 1].numpy(),
                      color="0.75", density=0.9, linewidth=0.7)
        traj = koopman.iterate(hopf_map(mu, omega, h), starts, 40)
        for b in range(len(starts)):
            ax.plot(traj[:, b, 0], traj[:, b, 1], ".-", ms=3, lw=0.6, color=plots.PALETTE["deq"])
        root, _ = fixed_point(hopf_map(mu, omega, h), starts[:1], "broyden", tol=1e-10,
                              max_iter=100, stop_mode="abs")
        ax.plot(root[0, 0], root[0, 1], "x", color="#b2182b", ms=10, mew=2, label="Broyden root")
        if mu > 0:
            t = torch.linspace(0, 2 * math.pi, 200)
            ax.plot(math.sqrt(mu) * torch.cos(t), math.sqrt(mu) * torch.sin(t), "--",
                    color="#2166ac", lw=1, label="cycle $r=\\sqrt{\\mu}$")
        ax.set_title(f"$\\mu = {mu}$: "
                     + ("attracting origin" if mu < 0 else "limit cycle, repelling origin"))
        ax.set_aspect("equal")
        ax.set_xlim(-1.6, 1.6)
        ax.set_ylim(-1.6, 1.6)
        ax.legend(loc="lower left", fontsize=7)
    return _finish(fig)


def jacobian_spectrum_figure(k1: dict[str, Any]):
    """K1: eigenvalues of ``J(x)`` for the traced inputs against the unit circle, and
    ``||z_k − z*||`` of forward iteration with the slope ``log ρ(J)`` dashed
    (:func:`.koopman_edmd.linearisation_study`)."""
    import matplotlib.pyplot as plt

    dist, rho = k1["distances"], k1["rho_traced"]
    traced = len(rho)
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4))
    _unit_circle(axes[0])
    _unit_circle(axes[0], 0.9, ":", label="$\\|W\\|_2 = 0.9$")
    eig = torch.linalg.eigvals(k1["jacobian"][:traced])
    for b in range(traced):
        axes[0].plot(eig[b].real, eig[b].imag, "o", ms=3.5, alpha=0.8)
    axes[0].set_aspect("equal")
    axes[0].set_title(f"eigenvalues of $J(x)$, {traced} test inputs")
    axes[0].legend(fontsize=7)
    k = torch.arange(dist.shape[0])
    for b in range(traced):
        line, = axes[1].semilogy(k, dist[:, b], lw=1)
        axes[1].semilogy(k[10:], dist[10, b] * rho[b] ** (k[10:] - 10), "--", lw=0.7,
                         color=line.get_color())
    axes[1].set_ylim(1e-16, 10)
    axes[1].set_xlabel("iteration $k$")
    axes[1].set_ylabel("$\\|z_k - z^\\star\\|$")
    axes[1].set_title("forward iteration (dashed: slope $\\log\\rho(J)$)")
    return _finish(fig)


def contrast_figure(rho: Tensor, rho_free: Tensor):
    """K1 contrast: histograms of ``ρ(J(x))`` over test inputs, constrained and unconstrained."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.hist([rho.numpy(), rho_free.numpy()], bins=30,
            label=["$\\|W\\|_2 \\leq 0.9$", "unconstrained"])
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xlabel("$\\rho(J(x))$ over test inputs")
    ax.legend()
    return _finish(fig)


def powers_figure(k2: dict[str, Any]):
    """K2: singular values of ``A^k`` against depth, with ``σ_1 = 1`` and the bound
    ``||J||_2^k`` (:func:`.koopman_edmd.depth_powers`)."""
    import matplotlib.pyplot as plt

    ks, sv, j_norm = k2["depths"], k2["singular_values"], k2["j_norm"]
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    ax.semilogy(ks, sv[:, 1:].clamp_min(1e-30), color="0.6", lw=0.8)
    ax.semilogy(ks, sv[:, 0], color=plots.PALETTE["homoode"], lw=2, label="$\\sigma_1(A^k) = 1$")
    ax.semilogy(ks, [j_norm ** k for k in ks], "k--", lw=0.8, label="$\\|J\\|_2^k$")
    ax.set_ylim(1e-16, 3)
    ax.set_xlabel("depth $k$")
    ax.set_ylabel("singular values of $A^k$")
    ax.legend()
    return _finish(fig)


def edmd_figure(k3: dict[str, Any]):
    """K3: the EDMD spectrum on the joint system and the infinite-depth prediction from
    input-only features against the iterated fixed point (:func:`.koopman_edmd.joint_edmd`)."""
    import matplotlib.pyplot as plt

    eig = k3["eigenvalues"]
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8))
    _unit_circle(axes[0])
    axes[0].plot(eig.real, eig.imag, "o", ms=4)
    axes[0].set_aspect("equal")
    axes[0].set_title(f"EDMD spectrum ({k3['dictionary_size']} monomials)")
    axes[1].plot(k3["x_grid"], k3["z_true"], "k", lw=2, label="$z^\\star(x)$ (iterated)")
    axes[1].plot(k3["x_grid"], k3["z_pred"], "--", color=plots.PALETTE["homoode"],
                 label="$e_z^\\top P\\,\\Psi(x, 0)$")
    axes[1].set_xlabel("$x$")
    axes[1].legend()
    axes[1].set_title("infinite-depth prediction from input-only features")
    return _finish(fig)


def hopf_spectrum_figure(lam: Tensor, eig_cycle: Tensor, depths, sv_powers: Tensor):
    """K4: the exact Koopman eigenvalues ``λ_{p,m}``, a generic EDMD spectrum near the cycle,
    and the singular values of ``A^k`` on the exact eigenfunctions (the ``p = 0`` ring stays)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13.5, 4.2))
    for ax in axes[:2]:
        _unit_circle(ax)
        ax.set_aspect("equal")
    axes[2].semilogy(depths, sv_powers.real.clamp_min(1e-16), color="0.5", lw=0.8)
    axes[2].set_xlabel("depth $k$")
    axes[2].set_title(f"singular values of $A^k$ (exact dictionary, $p \\leq {len(lam) - 1}$)")
    for p in range(len(lam)):
        axes[0].plot(lam[p].real, lam[p].imag, "o", ms=4,
                     label=f"$p = {p}$, $|\\lambda| = e^{{-{2 * p}\\mu h}}$")
    m_max = (lam.shape[1] - 1) // 2
    axes[0].set_title(f"exact Koopman eigenvalues $\\lambda_{{p,m}}$, $|m| \\leq {m_max}$")
    axes[0].legend(fontsize=6.5, loc="lower left")
    axes[1].plot(eig_cycle.real, eig_cycle.imag, "o", ms=4, color="#e08214",
                 label="EDMD, monomials deg $\\leq 6$")
    axes[1].plot(lam[0].real, lam[0].imag, "+", color="k", ms=7, label="exact $p = 0$ ring")
    axes[1].set_title("approximate: generic dictionary near the cycle")
    axes[1].legend(fontsize=6.5, loc="lower left")
    return _finish(fig)


def rff_figure(k5: dict[str, Any]):
    """K5: RFF Gram entries against the Gaussian kernel per feature count, and the Gram matrices
    at three bandwidths (:func:`.koopman_edmd.rff_kernel_study`)."""
    import matplotlib.pyplot as plt

    sigma, exact = k5["sigma"], k5["exact"]
    fig, axes = plt.subplots(1, 4, figsize=(12, 3.2))
    for m, gram in k5["grams"].items():
        axes[0].plot(exact.flatten(), gram.flatten(), ".", ms=2, label=f"m = {m}")
    axes[0].plot([0, 1], [0, 1], "k", lw=0.8)
    axes[0].set_xlabel("Gaussian kernel")
    axes[0].set_ylabel("$\\xi(a)^\\top\\xi(b)$")
    axes[0].legend(fontsize=7)
    titles = {1e3: "$\\sigma = 10^3$: constant features", sigma: f"$\\sigma = {sigma}$",
              1e-3: "$\\sigma = 10^{-3}$: delta kernel"}
    for ax, (bandwidth, panel) in zip(axes[1:], k5["panels"].items(), strict=True):
        ax.imshow(panel["gram"].numpy(), vmin=-0.2, vmax=1, cmap="viridis")
        ax.set_title(titles[bandwidth], fontsize=9)
        ax.axis("off")
    return _finish(fig)


__all__ = ["contrast_figure", "edmd_figure", "fixed_point_vs_invariant_set_figure",
           "hopf_spectrum_figure", "jacobian_spectrum_figure", "powers_figure", "rff_figure"]
