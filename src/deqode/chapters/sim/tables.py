"""Tables (paper cells from data/reference/sim.csv next to ours) and the F2 architecture figure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from deqode.chapters.sim.configs import PAPER, ModelSpec
from deqode.results import NOT_TRANSCRIBED, load_reference, reference_value

# --------------------------------------------------------------------------------------------------
# tables: paper (from data/reference/sim.csv) and ours side by side
# --------------------------------------------------------------------------------------------------


def paper_vs_ours(
    table: str,
    rows: Sequence[str],
    paper_columns: Sequence[str],
    ours: Mapping[str, Mapping[str, Any]],
    label: str,
    fmt: Callable[[Any], str] = str,
):
    """A DataFrame, one row per model: ``<column> (paper)`` for each of ``paper_columns`` read
    from ``data/reference/sim.csv`` (``not transcribed`` where the reference holds no value;
    ``–`` for rows that are ours only, e.g. a companion baseline), then
    ``<column> (ours, <label>)`` for every column that ``ours[row]`` reports (our columns may
    differ from the paper's, e.g. digits instead of MNIST in the smoke profile). Missing entries
    of ours print as ``–``."""
    import pandas as pd

    reference = load_reference(PAPER)
    paper_rows = {r["row"] for r in reference if r["table"] == table}
    our_columns: list[str] = []
    for row in rows:
        for col in ours.get(row, {}):
            if col not in our_columns:
                our_columns.append(col)
    data = []
    for row in rows:
        entry: dict[str, str] = {"model": row}
        for col in paper_columns:
            cell = reference_value(reference, table, row, col) if row in paper_rows else "–"
            entry[f"{col} (paper)"] = cell
        for col in our_columns:
            value = ours.get(row, {}).get(col)
            entry[f"{col} (ours, {label})"] = "–" if value is None else fmt(value)
        data.append(entry)
    return pd.DataFrame(data).set_index("model")


def paper_cells(table: str) -> list[dict[str, str]]:
    """The reference rows of one table (every value is ``not transcribed`` for this paper)."""
    return [r for r in load_reference(PAPER) if r["table"] == table]


def all_paper_cells_not_transcribed() -> bool:
    """True when every paper cell of ``sim.csv`` says ``not transcribed`` (no value of the
    paper's tables is copied yet)."""
    return all(r["value"] == NOT_TRANSCRIBED for r in load_reference(PAPER))


# --------------------------------------------------------------------------------------------------
# figure F2: architecture diagram from the model classes
# --------------------------------------------------------------------------------------------------


def draw_architecture(ax: Any, rows: Sequence[Mapping[str, Any]], title: str) -> None:
    """Boxes for the stages of :func:`deqode.models.sim.describe_layers`, left to right, with the
    output shape and parameter count under each (frozen RFF values marked ``frozen``)."""
    from matplotlib.patches import FancyBboxPatch

    ax.set_xlim(0, len(rows))
    ax.set_ylim(0, 1)
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    for i, row in enumerate(rows):
        frozen = row["frozen"] > 0
        ax.add_patch(FancyBboxPatch(
            (i + 0.08, 0.35), 0.84, 0.4, boxstyle="round,pad=0.02",
            facecolor="#f4f4f4" if frozen else "#d9e7f5", edgecolor="0.3",
            linestyle="--" if frozen else "-"))
        ax.text(i + 0.5, 0.55, row["stage"], ha="center", va="center", fontsize=7.5)
        count = f"{row['frozen']:,} frozen" if frozen else f"{row['trainable']:,} params"
        ax.text(i + 0.5, 0.22, f"{tuple(row['shape'])}\n{count}", ha="center", va="center",
                fontsize=6.5)
        if i:
            ax.annotate("", xy=(i + 0.08, 0.55), xytext=(i - 0.08, 0.55),
                        arrowprops=dict(arrowstyle="->", lw=0.8))


def with_overrides(spec: ModelSpec, **kwargs: Any) -> ModelSpec:
    """A copy of ``spec`` with extra constructor arguments (e.g. a searched bandwidth)."""
    return replace(spec, kwargs={**spec.kwargs, **kwargs})


