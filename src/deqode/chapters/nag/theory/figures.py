"""Figures F1-F4 and F10 of the NAG theory chapter (book chapter 10_nag_theory), drawn from the
records of :mod:`.problems` and :mod:`.studies`; the notebook stamps, saves and shows them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from deqode.chapters.nag.theory.lmm import (
    REGION_BETAS,
    RK_METHODS,
    amplification,
    real_stability_interval,
    stability_interval_closed_form,
)
from deqode.chapters.nag.theory.problems import ORDER_BETAS, PROBLEMS
from deqode.chapters.nag.theory.studies import latent_ode_times

#: The region plot's window (Re, Re, Im, Im) of hλ and its grid: (coarse, fine).
REGION_EXTENT = (-15.0, 1.0, -5.0, 5.0)
REGION_GRID = {False: (321, 201), True: (801, 501)}


def _tidy(fig) -> None:
    """Log axes without minor tick labels; room at the bottom for the profile stamp."""
    from matplotlib.ticker import NullFormatter

    for ax in fig.axes:
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.yaxis.set_minor_formatter(NullFormatter())
    fig.tight_layout(rect=(0, 0.04, 1, 1))


def order_figure(records: Sequence[dict[str, Any]]):
    """F1: global error at t1 against h per problem (E1 records), with a slope-1 guide."""
    import matplotlib.pyplot as plt
    import pandas as pd

    errors = pd.DataFrame(records)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), sharey=False)
    colors = dict(zip(ORDER_BETAS, ["0.1", "#2166ac", "#1b7837", "#b2182b"], strict=True))
    for ax, (name, prob) in zip(axes, PROBLEMS.items(), strict=True):
        for (beta, start), group in errors[errors["problem"] == name].groupby(["beta", "start"]):
            ax.loglog(group["h"], group["error"], "o-" if start == "euler" else "s--", ms=3,
                      color=colors[beta], label=f"β={beta:g}, {start}")
        h = errors[errors["problem"] == name]["h"].unique()
        anchor = errors[(errors["problem"] == name) & (errors["beta"] == 0.0)]["error"].max()
        ax.loglog(h, anchor * h / h.max() * 0.5, "k:", lw=1, label="slope 1")
        ax.set_title(prob.label, fontsize=9)
        ax.set_xlabel("h")
    axes[0].set_ylabel("global error at $t_1$")
    axes[2].legend(fontsize=6, ncol=2)
    fig.suptitle("F1: empirical order of the NAG solver (c = 1 − β) [reconstruction]", fontsize=10)
    _tidy(fig)
    return fig


def stability_figure(fine: bool = False):
    """F2: stability region boundaries (|root| = 1) of NAG (c = 1 - β) and Runge-Kutta methods,
    per step and per function evaluation, and the real interval against β (closed form and grid)."""
    import matplotlib.pyplot as plt

    extent = REGION_EXTENT
    n_re, n_im = REGION_GRID[fine]
    re = np.linspace(extent[0], extent[1], n_re)
    im = np.linspace(extent[2], extent[3], n_im)
    grid = re[None, :] + 1j * im[:, None]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4),
                             gridspec_kw={"width_ratios": [1.2, 1.2, 0.8]})
    nag_colors = dict(zip(REGION_BETAS, ["0.1", "#92c5de", "#2166ac", "#1b7837", "#b2182b"],
                          strict=True))
    rk_styles = {"euler": "k:", "midpoint": "k--", "rk4": "k-."}
    for ax, per_nfe in zip(axes[:2], (False, True), strict=True):
        for beta in REGION_BETAS:
            modulus = amplification(grid, "nesterov", beta)  # 1 NFE per step
            ax.contour(re, im, modulus, levels=[1.0], colors=[nag_colors[beta]], linewidths=1.3)
            ax.plot([], [], color=nag_colors[beta], label=f"nesterov β={beta:g}")
        for method, style in rk_styles.items():
            nfe = RK_METHODS[method][0] if per_nfe else 1
            modulus = amplification(grid * nfe, method)  # region scaled by 1/NFE per step
            ax.contour(re, im, modulus, levels=[1.0], colors="k",
                       linestyles=style[1:] or "-", linewidths=1.0)
            ax.plot([], [], style, label=method)
        ax.axhline(0, color="0.7", lw=0.5)
        ax.axvline(0, color="0.7", lw=0.5)
        ax.set_xlabel("Re hλ" + (" / NFE per step" if per_nfe else ""))
        ax.set_ylabel("Im hλ" + (" / NFE per step" if per_nfe else ""))
        ax.set_title("per function evaluation" if per_nfe else "per step", fontsize=9)
    axes[0].legend(fontsize=7, loc="upper left")
    interval_ax = axes[2]
    betas = np.linspace(0.0, 0.92, 47)
    interval_ax.plot(betas, [stability_interval_closed_form(b) for b in betas], "k-", lw=1,
                     label="closed form")
    interval_ax.plot(REGION_BETAS, [real_stability_interval("nesterov", b, spacing=1e-3)
                                    for b in REGION_BETAS], "o", ms=3, color="#b2182b",
                     label="grid")
    interval_ax.set_xlabel("β")
    interval_ax.set_ylabel("left end of the real interval (hλ)")
    interval_ax.set_title("real interval, c = 1 − β", fontsize=9)
    interval_ax.legend(fontsize=7)
    fig.suptitle("F2: stability regions (boundary |root| = 1), NAG with c = 1 − β "
                 "[reconstruction]", fontsize=10)
    _tidy(fig)
    return fig


def unscaled_figure(records: Sequence[dict[str, Any]]):
    """F3: the unscaled step (c = 1) against ``x' = f`` and against ``x' = f/(1-β)`` (E3)."""
    import matplotlib.pyplot as plt
    import pandas as pd

    unscaled = pd.DataFrame(records)
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, (name, prob) in zip(axes, PROBLEMS.items(), strict=True):
        groups = unscaled[unscaled["problem"] == name].groupby(["beta", "target"])
        for (beta, target), group in groups:
            ax.loglog(group["h"], group["error"], "o-" if target == "f" else "s--", ms=3,
                      color="#b2182b" if beta == 0.6 else "#2166ac",
                      label=f"β={beta:g}, vs x' = {target}")
        ax.set_title(prob.label, fontsize=9)
        ax.set_xlabel("h")
    axes[0].set_ylabel("error at $t_1$")
    axes[2].legend(fontsize=7)
    fig.suptitle("F3: the unscaled NAG step (c = 1) levels off against x' = f and converges to "
                 "x' = f/(1−β)", fontsize=10)
    _tidy(fig)
    return fig


def _one_panel(fig, ax, ylabel: str, title: str, legend_size: int):
    """The end of a one-panel figure over the step size h: labels, legend, title, layout."""
    ax.set_xlabel("h")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=legend_size)
    ax.set_title(title, fontsize=10)
    _tidy(fig)
    return fig


def schedule_figure(const, exact, memory):
    """F4: constant β against the (k-1)/(k+2) schedule, errors against ``x' = -x`` and against
    the memory ODE (frames of :func:`.studies.schedule_series`)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    ax.loglog(const["h"], const["error"], "o-", color="#1b7837", label="const β = 0.5, vs x' = −x")
    ax.loglog(exact["h"], exact["error"], "s-", color="#b2182b", label="schedule, vs x' = −x")
    ax.loglog(memory["h"], memory["error"], "s--", color="#2166ac",
              label="schedule, vs memory ODE")
    return _one_panel(fig, ax, "error at t = 2", "F4: momentum schedule ablation (start: zero)",
                      legend_size=8)


def adjoint_figure(records: Sequence[dict[str, Any]]):
    """F10: gradient errors of direct ``odeint`` and ``odeint_adjoint`` against h (E6 records),
    with the latent-ODE output spacing marked."""
    import matplotlib.pyplot as plt
    import pandas as pd

    adjoint = pd.DataFrame(records)
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for start, style in (("euler", "-"), ("zero", "--")):
        group = adjoint[adjoint["start"] == start].sort_values("h")
        ax.loglog(group["h"], group["direct_error"], "o" + style, color="#1b7837", ms=4,
                  label=f"direct odeint, start {start}")
        ax.loglog(group["h"], group["adjoint_error"], "s" + style, color="#b2182b", ms=4,
                  label=f"odeint_adjoint, start {start}")
    spacing = float(latent_ode_times()[1])
    ax.axvline(spacing, color="0.6", lw=0.8, ls=":")
    ax.text(spacing * 1.05, ax.get_ylim()[0] * 2, "output spacing", fontsize=7)
    return _one_panel(fig, ax, "|gradient − exact|", "F10: adjoint vs direct gradients, β = 0.7",
                      legend_size=7)


__all__ = ["REGION_EXTENT", "REGION_GRID", "adjoint_figure", "order_figure", "schedule_figure",
           "stability_figure", "unscaled_figure"]
