"""Schematic figures drawn with matplotlib (no data): Figure F1, the HomoODE pipeline.

:func:`pipeline_figure` redraws Fig. 1 of Ding et al., "Two Sides of the Same Coin" (NeurIPS
2023; the image ships as ``wadx2019/homoode:img/HomoODE_pipeline.jpg``): three panels side by side
(Neural ODE | HomoODE | DEQ), each ``input x -> feature extractor -> solver -> equilibrium``, and
a formula band at the bottom. The band shows Fig. 1's
formula as printed next to the ``z0``-corrected fixed-point-homotopy field (our correction; Fig. 1's
formula is the ``z0 = 0`` case).
"""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from deqode.book.plots import PALETTE

GREY = "#7f7f7f"
GREEN = "#1b7837"
LIGHT = {"grey": "#e6e6e6", "green": "#d9f0d3", "blue": "#dbe9f6", "band": "#f7f7f7"}

FIG1_FORMULA = (
    r"$F(z(t), t;\, x, \theta) = \left(\mathbf{I} - \lambda\,\nabla_z f(z; x, \theta)\right)^{-1}"
    r" f(z; x, \theta)\,\cdot\,d\lambda/dt$"
)
CORRECTED_FORMULA = (
    r"$F(z(t), t;\, x, \theta) = \left(\mathbf{I} - \lambda\,\nabla_z f(z; x, \theta)\right)^{-1}"
    r" \left(f(z; x, \theta) - z_0\right)\cdot\,d\lambda/dt$"
)


@dataclass(frozen=True)
class _Panel:
    title: str
    colour: str
    extractor_fill: str
    extractor_edge: str
    feeds: str  # what the extractor output is: "initial point" or "condition"
    solver: str
    dynamics: str
    initial_point: str | None  # a separate initial point box, or None
    equilibrium: str


PANELS = (
    _Panel(
        "Neural ODE", PALETTE["node"], LIGHT["grey"], GREY, "initial point $z(t_0)$",
        "ODE solver", r"$dz/dt = F(z(t), t;\, \theta)$", None,
        r"$z(t_1)$ read as $z^* = f(z^*;\, \theta)$",
    ),
    _Panel(
        "HomoODE", PALETTE["homoode"], LIGHT["green"], GREEN, r"condition $\tilde{x}$",
        "ODE solver", r"$dz/dt = F(z(t), t;\, x, \theta)$", r"initial point $z(t_0)$",
        r"$z(t_1)$ read as $z^* = f(z^*;\, x, \theta)$",
    ),
    _Panel(
        "DEQ", PALETTE["deq"], LIGHT["green"], GREEN, r"condition $x$",
        "Broyden solver", r"find $z^* = f(z^*, x, \theta)$", r"initial point $z_0$",
        r"equilibrium $z^* = f(z^*;\, x, \theta)$",
    ),
)


def _box(ax, x, y, w, h, text, *, fill, edge, size=9.5, weight="normal"):
    """A rounded box centred at ``(x, y)`` with ``text`` in it."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h,
                                boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=fill, edgecolor=edge, linewidth=1.2))
    ax.text(x, y, text, ha="center", va="center", fontsize=size, weight=weight)


def _arrow(ax, start, end, label=None, *, colour="0.25", label_offset=(0.08, 0.0), ha="left"):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color=colour,
                                 linewidth=1.2, shrinkA=2, shrinkB=2))
    if label:
        mid = ((start[0] + end[0]) / 2 + label_offset[0], (start[1] + end[1]) / 2 + label_offset[1])
        ax.text(*mid, label, ha=ha, va="center", fontsize=8.5, style="italic", color="0.2")


def pipeline_figure(figsize: tuple[float, float] = (13.0, 7.2)) -> Figure:
    """Figure F1 redrawn: Neural ODE | HomoODE | DEQ, and the formula band.

    The band's left formula is Fig. 1's as printed (exact only for the start point ``z0 = 0``);
    the right one is the fixed-point-homotopy field from any ``z0`` (book chapter
    01_homotopy_link, section 4: integrated from ``z0``, Fig. 1's field ends at ``z - f(z) = z0``).
    """
    fig, ax = plt.subplots(figsize=figsize)
    ax.set_xlim(0, 13)
    ax.set_ylim(0, 7.2)
    ax.set_axis_off()
    panel_w = 4.1
    for i, panel in enumerate(PANELS):
        x0 = 0.2 + i * (panel_w + 0.2)
        xc = x0 + panel_w / 2
        ax.add_patch(FancyBboxPatch((x0, 2.05), panel_w, 5.0,
                                    boxstyle="round,pad=0.02,rounding_size=0.15",
                                    facecolor="white", edgecolor=panel.colour, linewidth=1.6))
        ax.text(xc, 6.78, panel.title, ha="center", va="center", fontsize=13, weight="bold",
                color=panel.colour)
        solver_x = xc + 0.45 if panel.initial_point else xc
        _box(ax, solver_x, 6.2, 1.5, 0.42, "input $x$", fill="white", edge="0.3")
        _box(ax, solver_x, 5.35, 2.0, 0.5, "feature extractor", fill=panel.extractor_fill,
             edge=panel.extractor_edge)
        _arrow(ax, (solver_x, 5.99), (solver_x, 5.6))
        solver_fill = LIGHT["blue"] if panel.solver.startswith("ODE") else LIGHT["green"]
        _box(ax, solver_x, 3.95, 2.6, 0.95, f"{panel.solver}\n{panel.dynamics}", fill=solver_fill,
             edge=panel.colour, size=9.5)
        _arrow(ax, (solver_x, 5.1), (solver_x, 4.43), panel.feeds)
        if panel.initial_point:
            _box(ax, x0 + 0.62, 5.35, 1.05, 0.62, panel.initial_point.replace(" $", "\n$"),
                 fill="white", edge="0.3", size=8.5)
            _arrow(ax, (x0 + 0.62, 5.03), (solver_x - 1.3, 4.1))
        _box(ax, solver_x, 2.65, 2.9 if panel.initial_point else 3.2, 0.55, panel.equilibrium,
             fill="#fff7e6", edge="0.3", size=9.5)
        _arrow(ax, (solver_x, 3.47), (solver_x, 2.93))

    # Formula band.
    ax.add_patch(FancyBboxPatch((0.2, 0.1), 12.6, 1.75,
                                boxstyle="round,pad=0.02,rounding_size=0.15",
                                facecolor=LIGHT["band"], edgecolor="0.4", linewidth=1.2))
    ax.text(6.5, 1.6, "Connecting $F(z)$ and $f(z)$ via Homotopy Continuation", ha="center",
            va="center", fontsize=11.5, weight="bold")
    ax.text(3.35, 1.12, "Fig. 1 as printed (exact only for $z_0 = 0$)", ha="center", va="center",
            fontsize=9, color=PALETTE["fig1"])
    ax.text(3.35, 0.55, FIG1_FORMULA, ha="center", va="center", fontsize=11.5)
    ax.plot([6.5, 6.5], [0.25, 1.35], color="0.6", linewidth=1)
    ax.text(9.65, 1.12, "corrected for any start point $z_0$ (fixed-point homotopy; ours)",
            ha="center", va="center", fontsize=9, color=PALETTE["fixed_point"])
    ax.text(9.65, 0.55, CORRECTED_FORMULA, ha="center", va="center", fontsize=11.5)
    fig.tight_layout(pad=0.2)
    return fig


__all__ = ["CORRECTED_FORMULA", "FIG1_FORMULA", "PANELS", "pipeline_figure"]
