"""Figures P1-P4 of the homotopy chapter and the paths they draw (profile-independent: no stamp)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from deqode.chapters.homotopy_link.problems import DTYPE, QuadraticHomotopy, Setup
from deqode.chapters.homotopy_link.records import CheckRecord
from deqode.solvers.homotopy import HomotopyPath, homotopy_path

# --------------------------------------------------------------------------------------------
# Paths for plot P1
# --------------------------------------------------------------------------------------------


def p1_paths(setup: Setup, steps: int = 400) -> dict[str, HomotopyPath]:
    """The three paths of plot P1 from the same ``z0``: fixed-point homotopy, Newton homotopy
    (both end at ``z*``) and Fig. 1's field (ends at the solution of ``z - f(z) = z0``)."""
    toy = setup.toy
    return {
        kind: homotopy_path(toy, setup.z0, kind, steps=steps, jac=toy.jacobian)
        for kind in ("fixed_point", "newton", "fig1")
    }




# --------------------------------------------------------------------------------------------
# Figures (profile-independent: no stamp)
# --------------------------------------------------------------------------------------------

KIND_LABELS = {
    "fixed_point": "fixed-point homotopy",
    "newton": r"Newton homotopy ($\lambda = t$)",
    "fig1": r"Fig. 1 field from $z_0 \neq 0$",
}


def plot_p1(paths: dict[str, HomotopyPath], z_star: Tensor):
    """P1: components ``z_i(λ)`` of the three paths from the same ``z0``; dotted lines at ``z*``."""
    import matplotlib.pyplot as plt

    from deqode.book.plots import PALETTE

    fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.8), sharey=True)
    colours = plt.cm.viridis(torch.linspace(0.0, 0.9, z_star.numel()).numpy())
    for ax, (kind, path) in zip(axes, paths.items(), strict=True):
        lam = path.lambdas.numpy()
        for i, colour in enumerate(colours):
            ax.plot(lam, path.states[:, i].numpy(), color=colour, linewidth=1.6,
                    label=f"$z_{i + 1}$")
            ax.axhline(float(z_star[i]), color=colour, linestyle=":", linewidth=1.0)
        ax.plot([1.0] * z_star.numel(), path.end_state.numpy(), "o", color=PALETTE[kind],
                markersize=5, label=r"$z(1)$")
        ax.set_title(KIND_LABELS[kind], color=PALETTE[kind])
        ax.set_xlabel(r"$\lambda$")
        ax.set_xlim(0, 1.04)
    axes[0].set_ylabel(r"$z_i(\lambda)$")
    handles, labels = axes[0].get_legend_handles_labels()
    handles.append(plt.Line2D([], [], color="0.3", linestyle=":"))
    labels.append(r"$z^*_i$ (fixed point)")
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def plot_p2(h1: CheckRecord, h4: CheckRecord, h5: CheckRecord, h7: CheckRecord,
            newton_residuals: list[float]):
    """P2: residual decay. Left: ``||g||/||g(z0)||`` against ``1 - λ`` (log-log) for the two
    homotopies. Right: against ``t`` for the Newton flow (``e^{-t}``), the naive flow (inside its
    bounds ``e^{-(1±L)t}``) and their Euler(h = 1) discretisations: Newton's method and Picard."""
    import matplotlib.pyplot as plt

    from deqode.book.plots import PALETTE

    fig, (left, right) = plt.subplots(1, 2, figsize=(13.0, 4.0))
    for kind, path in (("fixed_point", h1.path), ("newton", h4.path)):
        one_minus = (1 - path.lambdas[:-1]).numpy()
        ratio = (path.residuals[:-1] / path.residuals[0]).numpy()
        left.loglog(one_minus, ratio, color=PALETTE[kind], linewidth=2, label=KIND_LABELS[kind])
    grid = (1 - h4.path.lambdas[:-1]).numpy()
    left.loglog(grid, grid, color="black", linestyle="--", linewidth=1, label=r"$1 - \lambda$")
    left.invert_xaxis()
    left.set_xlabel(r"$1 - \lambda$ (path runs left to right)")
    left.set_ylabel(r"$\|g(z(\lambda))\| \,/\, \|g(z_0)\|$")
    left.set_title(r"homotopies on $\lambda \in [0, 1]$")
    left.legend()

    T_max = float(h5.trajectory.times[-1])
    t = h5.trajectory.times.numpy()
    r = (h5.trajectory.residuals / h5.trajectory.residuals[0]).numpy()
    right.semilogy(t, r, color=PALETTE["newton"], linewidth=2.5, label="continuous Newton flow")
    right.semilogy(t, torch.exp(-h5.trajectory.times).numpy(), color="black", linestyle="--",
                   linewidth=1, label=r"$e^{-t}$")
    naive = h7.trajectory
    keep = naive.times <= T_max
    tn = naive.times[keep]
    right.semilogy(tn.numpy(), (naive.residuals[keep] / naive.residuals[0]).numpy(),
                   color=PALETTE["picard"], linewidth=2, label=r"naive flow $\dot z = f(z) - z$")
    L = h7.contraction_bound
    right.fill_between(tn.numpy(), torch.exp(-(1 + L) * tn).numpy(),
                       torch.exp(-(1 - L) * tn).numpy(), color=PALETTE["picard"], alpha=0.08,
                       label=r"bounds $e^{-(1\pm L)t}$, $L = \|W\|_2$")
    newton = torch.tensor(newton_residuals) / newton_residuals[0]
    right.semilogy(range(len(newton)), newton.numpy(), "s", color=PALETTE["newton"],
                   markerfacecolor="white",
                   label="Newton's method = Euler ($h = 1$) on Newton flow")
    picard = torch.tensor(h7.picard_residuals) / h7.picard_residuals[0]
    right.semilogy(range(len(picard)), picard.numpy(), "o", color=PALETTE["picard"],
                   markerfacecolor="white", label="Picard = Euler ($h = 1$) on naive flow")
    right.set_ylim(1e-17, 2)
    right.set_xlim(0, T_max)
    right.set_xlabel("$t$ (iteration $k$ for the markers)")
    right.set_ylabel(r"$\|g(z(t))\| \,/\, \|g(z_0)\|$")
    right.set_title("flows on $t \\in [0, \\infty)$ and their Euler steps")
    right.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return fig


def plot_quasi_newton(record: CheckRecord):
    """Residual histories of Newton's method, Broyden and Picard from the same start."""
    import matplotlib.pyplot as plt

    from deqode.book.plots import PALETTE

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    styles = {
        "newton": ("Newton (exact $(I - J_f)^{-1}$)", PALETTE["newton"], "s"),
        "broyden": ("Broyden (low-rank inverse, starts at $I$)", PALETTE["deq"], "D"),
        "picard": ("Picard $z \\leftarrow f(z)$", PALETTE["picard"], "o"),
    }
    for method, history in record.residuals.items():
        label, colour, marker = styles[method]
        ax.semilogy(range(len(history)), history, marker=marker, color=colour, markersize=4,
                    linewidth=1.5, label=f"{label}: {record.iterations[method]} it.")
    ax.axhline(record.tol, color="0.4", linestyle=":", linewidth=1, label=f"tol = {record.tol:g}")
    ax.set_xlabel("iteration $k$")
    ax.set_ylabel(r"$\|z_k - f(z_k)\|$")
    ax.set_title("Broyden as quasi-Newton on the toy DEQ")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _zero_set_curve(h: QuadraticHomotopy, x_range: tuple[float, float]) -> tuple[Tensor, Tensor]:
    """``(λ, x)`` points of the real zero set with ``λ ∈ [0, 1.05]``; NaN breaks at the poles."""
    x = torch.linspace(*x_range, 20001, dtype=DTYPE)
    lam = h.zero_set(x)
    lam = torch.where((lam >= 0) & (lam <= 1.05), lam, torch.nan)
    jump = torch.cat([torch.zeros(1, dtype=torch.bool), (lam.diff().abs() > 0.05)])
    lam = torch.where(jump, torch.nan, lam)
    return lam, x


def plot_p3(record: CheckRecord):
    """P3: the 1-D toy in the ``(λ, x)`` plane for ``a = -2`` (turning point, never reaches
    ``λ = 1``) and ``a = 2`` (reaches ``x = 1``): zero set, arc-length path, RK4-in-λ path."""
    import matplotlib.pyplot as plt

    from deqode.book.plots import PALETTE

    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.2))
    cases = (
        (-2.0, record.arc_fail, record.lambda_fail, (-13.0, 2.5)),
        (2.0, record.arc_success, record.lambda_success, (-4.0, 3.0)),
    )
    for ax, (a, arc, lam_path, x_range) in zip(axes, cases, strict=True):
        lam0, x0 = _zero_set_curve(QuadraticHomotopy(a), x_range)
        ax.plot(lam0.numpy(), x0.numpy(), color="0.75", linewidth=5, solid_capstyle="round",
                label="zero set $H(x, \\lambda) = 0$ (closed form)")
        ax.plot(arc.lambdas.numpy(), arc.states[:, 0].numpy(), color=PALETTE["fixed_point"],
                linewidth=2, label=f"arc length $s \\in [0, {float(arc.params[-1]):g}]$")
        ax.plot(lam_path.lambdas.numpy(), lam_path.states[:, 0].numpy(), color=PALETTE["fig1"],
                linestyle="--", linewidth=1.5, label="Davidenko ODE in $\\lambda$ (RK4)")
        ax.plot([0], [a], "o", color="black", label=f"start $x = a = {a:g}$")
        ax.axvline(1.0, color="0.4", linestyle=":", linewidth=1)
        ax.plot([1, 1], [-1, 1], "x", color="black", markersize=8, label="roots of $x^2 - 1$")
        ax.set_xlim(-0.02, 1.05)
        ax.set_ylim(*x_range)
        ax.set_xlabel(r"$\lambda$")
        ax.set_ylabel("$x$")
    axes[0].plot([record.lam_turn], [record.x_turn], "*", color=PALETTE["newton"], markersize=14,
                 label=f"turning point $\\lambda = {record.lam_turn:.4f}$")
    axes[0].set_title("$a = -2$: turning point, $\\lambda = 1$ never reached")
    axes[1].set_title("$a = 2$: monotone path to $x = 1$")
    axes[0].legend(fontsize=7.5, loc="lower right")
    axes[1].legend(fontsize=7.5, loc="lower right")
    fig.tight_layout()
    return fig


def plot_p4(record: CheckRecord):
    """P4: NFE of dopri5 (rtol = atol = 1e-6) against the start distance ``||z0 - z*|| = ε``.

    ``ε = 0`` is drawn at a symbolic position left of the smallest positive ``ε`` (tick "0")."""
    import matplotlib.pyplot as plt

    from deqode.book.plots import PALETTE

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    eps = torch.tensor(record.epsilons, dtype=DTYPE)
    positive = eps > 0
    zero_at = float(eps[positive].min()) / 10
    position = torch.where(positive, eps, torch.full_like(eps, zero_at))
    for kind, nfe in record.nfe.items():
        values = torch.tensor(nfe, dtype=DTYPE)
        ax.semilogx(position[positive].numpy(), values[positive].numpy(), marker="o",
                    color=PALETTE[kind], label=KIND_LABELS[kind].split(" (")[0])
        if not bool(positive.all()):
            ax.plot(position[~positive].numpy(), values[~positive].numpy(), marker="o",
                    markerfacecolor="white", color=PALETTE[kind], linestyle="none",
                    markersize=7 if kind == "fixed_point" else 4)
    ticks = [zero_at] + [10.0**k for k in range(round(math.log10(float(eps[positive].min()))),
                                                 round(math.log10(float(eps.max()))) + 1)]
    ax.set_xticks(ticks, ["0"] + [f"$10^{{{round(math.log10(t))}}}$" for t in ticks[1:]])
    ax.minorticks_off()
    if not bool(positive.all()):
        ax.axvline(math.sqrt(zero_at * float(eps[positive].min())), color="0.5", linewidth=0.8,
                   linestyle=(0, (2, 2)))
        ax.annotate("$z_0 = z^*$: constant path;\nNFE = step-size warm-up", (zero_at,
                    float(record.nfe["fixed_point"][0])), xytext=(8, -30),
                    textcoords="offset points", fontsize=8, color="0.3")
    ax.set_xlabel(r"start distance $\|z_0 - z^*\| = \varepsilon$")
    ax.set_ylabel(f"NFE (dopri5, rtol = atol = {record.rtol:g})")
    ax.set_title("a start closer to the fixed point costs fewer evaluations")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


__all__ = [
    "KIND_LABELS", "p1_paths", "plot_p1", "plot_p2", "plot_p3", "plot_p4", "plot_quasi_newton",
]
