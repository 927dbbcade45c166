"""HomoODE chapter: figures."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def _colour(record: dict[str, Any]) -> str:
    from deqode.book.plots import PALETTE

    if "noinit" in str(record["experiment"]):
        return "#67a9cf"  # a lighter blue: HomoODE without the shared start
    model = str(record["model"]).split("-", 1)[0]
    return PALETTE.get(model, "#444444")


def _style(record: dict[str, Any]) -> str:
    return "--" if "noinit" in str(record["experiment"]) else "-"


def plot_curves(records: Sequence[dict[str, Any]], title: str):
    """F2: test accuracy and training loss against the epoch, one line per run."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for r in records:
        epochs = [h["epoch"] for h in r["history"]]
        kwargs = dict(color=_colour(r), ls=_style(r), marker="o", ms=3, label=r["label"])
        axes[0].plot(epochs, [100 * h["test_acc"] for h in r["history"]], **kwargs)
        axes[1].plot(epochs, [h["train_loss"] for h in r["history"]], **kwargs)
    axes[0].set_ylabel("test accuracy (%)")
    axes[1].set_ylabel("training loss")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def plot_nfe_vs_iteration(records: Sequence[dict[str, Any]], title: str):
    """F3: forward NFE per training batch (epoch means, at the epoch's last iteration), the test
    NFE, and the init loss, against the training iteration."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for r in records:
        its = [h["iterations"] for h in r["history"]]
        kwargs = dict(color=_colour(r), ls=_style(r), marker="o", ms=3)
        axes[0].plot(its, [h.get("nfe_forward") for h in r["history"]],
                     label=f"{r['label']}: train", **kwargs)
        axes[0].plot(its, [h.get("test_nfe_forward") for h in r["history"]],
                     label=f"{r['label']}: test", alpha=0.5, **{**kwargs, "marker": "s"})
        if any(h.get("init_loss") is not None for h in r["history"]):
            axes[1].plot(its, [h.get("init_loss") for h in r["history"]], label=r["label"],
                         **kwargs)
    axes[0].set_ylabel("forward NFE per batch")
    highest = max((v for r in records for h in r["history"]
                   for v in (h.get("nfe_forward"), h.get("test_nfe_forward")) if v is not None),
                  default=1.0)
    axes[0].set_ylim(0, 1.15 * highest)
    axes[1].set_ylabel("init loss SmoothL1(z0, z(1))")
    for ax in axes:
        ax.set_xlabel("training iteration")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def plot_start_sweep(rows: Sequence[dict[str, Any]], title: str):
    """Forward NFE and start distance against the tolerance, one line per start."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    for label in labels:
        mine = [r for r in rows if r["label"] == label]
        tols = [r["tol"] for r in mine]
        axes[0].plot(tols, [r["nfe"] for r in mine], "o-", ms=4, label=label)
        axes[1].plot(tols, [r["start_distance"] for r in mine], "o-", ms=4, label=label)
    axes[0].set_ylabel("forward NFE (whole test set, one batch)")
    axes[1].set_ylabel("mean ‖z(1) − z0‖ / ‖z(1)‖")
    for ax in axes:
        ax.set_xscale("log")
        ax.invert_xaxis()
        ax.set_xlabel("rtol = atol")
    axes[0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def plot_memory_vs_nfe(rows: Sequence[dict[str, Any]], title: str):
    """Saved-tensor peak of one training step against its total NFE, one line per mode."""
    import matplotlib.pyplot as plt

    colours = {"backprop": "#b2182b", "adjoint": "#2166ac", "frozen_adjoint": "#7f7f7f"}
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for mode in dict.fromkeys(r["mode"] for r in rows):
        mine = [r for r in rows if r["mode"] == mode]
        ax.plot([r["nfe_forward"] + r["nfe_backward"] for r in mine], [r["saved_mb"] for r in mine],
                marker="^" if mode == "frozen_adjoint" else "o",
                ls="--" if mode == "frozen_adjoint" else "-", ms=4, color=colours.get(mode),
                label=mode)
    ax.set_xlabel("NFE of the step (forward + backward)")
    ax.set_ylabel("autograd saved-tensor peak (MB)")
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig


def plot_deq_residuals(traces: Mapping[str, Mapping[str, Any]], homoode_nfe: int, tol: float,
                       title: str):
    """F4: the DEQ's worst-sample relative residual against evaluations of f, per solver, with
    the tolerance and the forward NFE one HomoODE solve of the same batch costs."""
    import matplotlib.pyplot as plt

    colours = {"broyden": "#1b7837", "anderson": "#e08214", "picard": "#762a83"}
    finals = [v for trace in traces.values() for v in trace["final"] if v > 0]
    low, high = math.log10(min(*finals, tol)), math.log10(max(*finals, tol))
    bins = [10 ** (low + (high - low) * i / 24) for i in range(25)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for solver, trace in traces.items():
        res = trace["residuals"]
        axes[0].semilogy(range(1, len(res) + 1), res, "-", color=colours.get(solver),
                         label=solver)
        axes[1].hist(trace["final"], bins=bins, histtype="step", color=colours.get(solver),
                     label=f"{solver}: {100 * trace['failed']:.0f}% miss tol")
    axes[0].axhline(tol, color="0.3", ls=":", lw=1, label=f"tol {tol:g}")
    axes[0].axvline(homoode_nfe, color="#2166ac", ls="--", lw=1,
                    label=f"one HomoODE solve: {homoode_nfe} NFE")
    axes[0].set_xlabel("evaluations of f")
    axes[0].set_ylabel("relative residual (worst sample)")
    axes[1].axvline(tol, color="0.3", ls=":", lw=1)
    axes[1].set_xscale("log")
    axes[1].set_xlabel("final relative residual per sample")
    axes[1].set_ylabel("samples")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    return fig
