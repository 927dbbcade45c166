"""Continuous DEQ chapter: figures (linear system, schematic, Figure 1, curves)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from deqode.chapters.continuous_deq.configs import LABELS
from deqode.chapters.continuous_deq.reference import BAR_OFFSET, FIG1_DATASETS, FIG1_PANELS

# --------------------------------------------------------------------------------------------------
# figures
# --------------------------------------------------------------------------------------------------


def linear_system(alphas: Sequence[float] = (0.9, 0.5, -0.9, 0.1, 0.99), steps: int = 50
                  ) -> dict[str, Any]:
    """F5: ``u_{n+1} = α u_n`` from ``u₀ = 1`` (exact), and the continuous analogue
    ``du/dt = (α − 1) u``, i.e. ``u(t) = e^{(α−1)t}`` [reconstruction]."""
    n = np.arange(steps + 1)
    t = np.linspace(0, steps, 10 * steps + 1)
    return {"n": n, "t": t,
            "discrete": {a: a ** n.astype(float) for a in alphas},
            "continuous": {a: np.exp((a - 1.0) * t) for a in alphas}}


def linear_system_figure(data: Mapping[str, Any]):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6), sharey=True)
    for a, u in data["discrete"].items():
        axes[0].plot(data["n"], u, marker=".", ms=3, lw=1, label=f"α = {a:g}")
    for a, u in data["continuous"].items():
        axes[1].plot(data["t"], u, lw=1.2, label=f"α = {a:g}")
    axes[0].set(title=r"discrete $u_{n+1} = \alpha u_n$", xlabel="n", ylabel="u",
                ylim=(-1.0, 1.05))
    axes[1].set(title=r"continuous $\dot u = (\alpha - 1)\,u$", xlabel="t")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _box(ax: Any, x0: float, y0: float, w: float, h: float, text: str, colour: str) -> None:
    from matplotlib.patches import FancyBboxPatch

    ax.add_patch(FancyBboxPatch((x0, y0), w, h, boxstyle="round,pad=0.08", fc=colour, ec="0.3",
                                lw=1))
    ax.text(x0 + w / 2, y0 + h / 2, text, ha="center", va="center", fontsize=9)


def _arrow(ax: Any, a: tuple[float, float], b: tuple[float, float], **kw: Any) -> None:
    from matplotlib.patches import FancyArrowPatch

    ax.add_patch(FancyArrowPatch(a, b, arrowstyle="-|>", mutation_scale=10, lw=1, color="0.25",
                                 **kw))


def schematic_figure():
    """F6: a DEQ block with the input injected at every iteration, from z₀ to z*; vanilla
    ``z₀ = 0`` (left) and Skip ``z₀ = g_φ(x)`` / Skip Reg. ``z₀ = f_θ(0, x)`` (right)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 2.8))
    panels = (("(Continuous) DEQ", r"$z_0 = 0$", False),
              ("Skip DEQ / Skip Reg. DEQ", r"$z_0 = g_\phi(x)$ or $f_\theta(0, x)$", True))
    for ax, (title, start, skip) in zip(axes, panels, strict=True):
        ax.set_xlim(0, 10)
        ax.set_ylim(0, 4)
        ax.axis("off")
        ax.set_title(title, fontsize=10)
        _box(ax, 0.2, 2.6, 1.6, 0.9, "input $x$", "#e6e6e6")
        _box(ax, 0.1, 0.6, 3.0, 0.9, start, "#dbe9f6" if skip else "#f7f7f7")
        _box(ax, 3.6, 1.2, 2.6, 1.6, r"$f_\theta(z, x)$", "#d9f0d3")
        _box(ax, 7.6, 1.5, 1.8, 1.0, r"$z^* = f_\theta(z^*, x)$", "#fde0c5")
        _arrow(ax, (1.8, 3.05), (4.9, 2.85))
        _arrow(ax, (3.1, 1.05), (3.6, 1.5))
        _arrow(ax, (6.2, 2.0), (7.6, 2.0))
        _arrow(ax, (5.6, 1.2), (4.2, 1.2), connectionstyle="arc3,rad=-0.9")
        ax.text(4.9, 0.25, "solver iterations / ODE steps (x injected each time)",
                ha="center", fontsize=8, color="0.35")
        if skip:
            _arrow(ax, (1.0, 2.6), (1.0, 1.5))
            ax.text(1.1, 2.0, r"$g_\phi$", fontsize=8)
    fig.tight_layout()
    return fig


def figure1_figure(audit: Sequence[Mapping[str, Any]], ours: Sequence[Mapping[str, Any]] = (),
                   ours_label: str = ""):
    """Figure 1: bars from the tables, the decoded bars (offset ones hatched) and, optionally,
    our ratios (``ours``: dicts with panel, dataset, bar, value)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    colours = {"Skip Cont. DEQ": "#2166ac", "Skip Reg. Cont. DEQ": "#e08214",
               "Neural ODE": "#1b7837"}
    width = 0.26
    ours_map = {(o["panel"], o["dataset"], o["bar"]): o["value"] for o in ours}
    for ax, panel in zip(axes, FIG1_PANELS, strict=True):
        for i, dataset in enumerate(FIG1_DATASETS):
            for j, bar in enumerate(colours):
                entry = next((b for b in audit if (b["panel"], b["dataset"], b["bar"])
                              == (panel, dataset, bar)), None)
                if entry is None:
                    continue
                x = i + (j - 1) * width
                ax.bar(x, entry["tables"], width * 0.9, color=colours[bar], alpha=0.85,
                       label=bar if i == 0 else None)
                offset = abs(entry["difference"]) > BAR_OFFSET
                ax.plot([x - width * 0.45, x + width * 0.45], [entry["figure"]] * 2,
                        color="k" if not offset else "#b2182b", lw=2 if offset else 1)
                if (panel, dataset, bar) in ours_map:
                    ax.plot(x, ours_map[(panel, dataset, bar)], "D", color="k", ms=4)
        ax.axhline(1.0, color="0.3", lw=0.8, ls="--")
        ax.set_xticks(range(len(FIG1_DATASETS)), list(FIG1_DATASETS))
        ax.set_title(panel)
    axes[0].set_ylabel("time relative to vanilla Cont. DEQ")
    axes[0].plot([], [], color="k", lw=1, label="Fig. 1 bar (decoded)")
    offsets = [b["difference"] for b in audit if abs(b["difference"]) > BAR_OFFSET]
    if offsets:
        axes[0].plot([], [], color="#b2182b", lw=2,
                     label=f"Fig. 1 bar {abs(np.mean(offsets)):.2f} "
                     f"{'below' if np.mean(offsets) < 0 else 'above'} the table")
    if ours:
        axes[0].plot([], [], "D", color="k", ms=4, label=ours_label or "ours")
    axes[0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def curves_figure(results: Sequence[Mapping[str, Any]], accuracy_label: str = "test accuracy (%)"):
    """Figures 2–4: forward (test) time, backward time and test accuracy against the training
    step; columns discrete / continuous DEQ, one curve per variant."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 2, figsize=(10, 7.5), sharex=True)
    colours = {"vanilla": "#7f7f7f", "skip": "#2166ac", "skip_reg": "#e08214"}
    for col, solver in enumerate(("discrete", "continuous")):
        for r in results:
            if r["solver"] != solver:
                continue
            steps = [c["step"] for c in r["curve"]]
            for row, key in enumerate(("prediction_s", "backward_s", "test_acc")):
                axes[row, col].plot(steps, [c[key] for c in r["curve"]], marker="o", ms=3,
                                    color=colours[r["variant"]], label=LABELS[r["variant"]])
        axes[0, col].set_title(f"{solver.capitalize()} DEQ")
        axes[2, col].set_xlabel("training step")
    axes[0, 0].set_ylabel("forward (test) time (s/batch)")
    axes[1, 0].set_ylabel("backward time (s/batch)")
    axes[2, 0].set_ylabel(accuracy_label)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return fig


__all__ = [
    "curves_figure",
    "figure1_figure",
    "linear_system",
    "linear_system_figure",
    "schematic_figure",
]
