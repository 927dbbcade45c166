"""The book's figure style and small plotting helpers."""

from __future__ import annotations

import matplotlib.pyplot as plt

PALETTE = {
    "deq": "#1b7837",
    "node": "#7f7f7f",
    "homoode": "#2166ac",
    "anode": "#b2182b",
    "newton": "#e08214",
    "fixed_point": "#2166ac",
    "fig1": "#b2182b",
    "picard": "#762a83",
}


def use_book_style() -> None:
    """A quiet, print-friendly style shared by every figure in the book."""
    plt.rcParams.update(
        {
            "figure.figsize": (6.4, 4.0),
            "figure.dpi": 100,
            "axes.grid": True,
            "grid.alpha": 0.3,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "font.size": 10,
            "legend.frameon": False,
        }
    )


def stamp(fig, label: str) -> None:
    """Write the profile label (e.g. 'smoke profile — ...') in the figure's bottom right corner."""
    fig.text(0.995, 0.005, label, ha="right", va="bottom", fontsize=7, color="0.45")
