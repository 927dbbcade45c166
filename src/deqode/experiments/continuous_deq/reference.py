"""Continuous DEQ chapter: the paper's numbers (data/reference/continuous_deq.csv) and the
arithmetic behind its headline claims and Figure 1."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from deqode.choices import check_choice
from deqode.experiments.continuous_deq.configs import (
    ACCURACY_COLUMN,
    PAPER,
    TABLES,
    TIME_COLUMNS,
    table_rows,
)
from deqode.results import NOT_TRANSCRIBED, load_reference

# --------------------------------------------------------------------------------------------------
# the paper's numbers
# --------------------------------------------------------------------------------------------------


def reference_rows() -> list[dict[str, str]]:
    return load_reference(PAPER)


def paper_value(table: str, row: str, column: str) -> float:
    """A numeric cell of the reference CSV (raises KeyError if absent or not transcribed)."""
    for r in reference_rows():
        if r["table"] == table and r["row"] == row and r["column"] == column:
            if not r["value"] or r["value"] == NOT_TRANSCRIBED:
                break
            return float(r["value"])
    raise KeyError(f"{PAPER}.csv has no numeric cell ({table}, {row}, {column})")


def paper_cell(table: str, row: str, column: str) -> str:
    """A cell as printed, ``mean ± std`` where the table has a std; else "not transcribed"."""
    rows = reference_rows()
    from deqode.results import reference_value

    value = reference_value(rows, table, row, column)
    std = reference_value(rows, table, row, f"{column} std")
    return value if std == NOT_TRANSCRIBED else f"{value} ± {std}"


def paper_table(table: str) -> list[dict[str, str]]:
    """The paper's table as printed: one dict per row (columns in the paper's order)."""
    check_choice("table", table, TABLES)
    columns = (["# Params", "Test Acc (%)", "Testing NFE", "Training Time (min)",
                "Prediction Time (s/batch)"] if table == "T1"
               else ["# Params", ACCURACY_COLUMN[table], *TIME_COLUMNS])
    labels = list(dict.fromkeys(r.paper_label for r in table_rows(table)))
    return [{"row": label, **{c: paper_cell(table, label, c) for c in columns}}
            for label in labels]


def side_by_side(table: str, ours: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Paper and ours per row: accuracy, times (and NFE for Table 1), ours labelled."""
    out = []
    for r in ours:
        label = r["paper_row"]
        if table == "T1":
            cells = {
                "Test Acc (%) paper": paper_cell(table, label, "Test Acc (%)"),
                "Test Acc (%) ours": f"{r['test_acc']:.1f}",
                "Testing NFE paper": paper_cell(table, label, "Testing NFE"),
                "Testing NFE ours": f"{r['test_nfe']:.1f}",
                "Training paper (min)": paper_cell(table, label, "Training Time (min)"),
                "Training ours (min)": f"{r['training_min']:.3f}",
                "Prediction paper (s/batch)": paper_cell(table, label,
                                                         "Prediction Time (s/batch)"),
                "Prediction ours (s/batch)": f"{r['prediction_s_per_batch']:.4f}",
            }
        else:
            acc = ACCURACY_COLUMN[table]
            cells = {
                f"{acc} paper": paper_cell(table, label, acc),
                "Test Acc (%) ours" if table != "T4" else "Top-1 / Top-5 (%) ours":
                    f"{r['test_acc']:.1f}" if table != "T4"
                    else f"{r['test_acc']:.1f} / {r.get('top5_acc', float('nan')):.1f}",
                "Training paper": paper_cell(table, label, TIME_COLUMNS[0]),
                "Training ours": f"{r['training_s_per_batch']:.4f}",
                "Backward paper": paper_cell(table, label, TIME_COLUMNS[1]),
                "Backward ours": f"{r['backward_s_per_batch']:.4f}",
                "Prediction paper": paper_cell(table, label, TIME_COLUMNS[2]),
                "Prediction ours": f"{r['prediction_s_per_batch']:.4f}",
                "NFE test ours": f"{r['test_nfe']:.1f}",
                "GMRES VJPs / step ours": f"{r['train_nfe_backward']:.1f}",
            }
        out.append({"row": r["row"], "params ours": r["params"],
                    "params paper": paper_cell(table, label, "# Params"), **cells})
    return out


def _time(table: str, label: str, column: str) -> float:
    return paper_value(table, label, column)


def ratio(table: str, num: str, den: str, column: str) -> float:
    """``time(num) / time(den)`` in ``column`` of a paper table (row labels as in the CSV)."""
    return _time(table, num, column) / _time(table, den, column)


CONT = "Vanilla DEQ (continuous)"
SKIP_CONT = "Skip DEQ (continuous)"
SKIPREG_CONT = "Skip Reg. DEQ (continuous)"
DISC = "Vanilla DEQ (discrete)"
FIG1_DATASETS = {"CIFAR10 Small": "T2", "CIFAR10 Large": "T3", "ImageNet": "T4"}
FIG1_BARS = {"Skip Cont. DEQ": SKIP_CONT, "Skip Reg. Cont. DEQ": SKIPREG_CONT,
             "Neural ODE": "Neural ODE"}
FIG1_PANELS = {"Training": TIME_COLUMNS[0], "Backward Pass": TIME_COLUMNS[1]}


def figure1_audit() -> list[dict[str, Any]]:
    """Every Figure 1 bar: decoded height, the same ratio from Tables 2–4, their difference.

    A bar is "time of the model / time of the vanilla continuous DEQ" (lower is better).
    """
    out = []
    for panel, column in FIG1_PANELS.items():
        for dataset, table in FIG1_DATASETS.items():
            for bar, label in FIG1_BARS.items():
                if table == "T4" and bar == "Neural ODE":
                    continue
                height = paper_value("F1", f"{panel} | {dataset} | {bar}", "height")
                from_tables = ratio(table, label, CONT, column)
                out.append({"panel": panel, "dataset": dataset, "bar": bar,
                            "figure": height, "tables": from_tables,
                            "difference": height - from_tables})
    return out


@dataclass(frozen=True)
class Claim:
    """A headline claim, its stated value, and what the paper's own tables give."""

    id: str
    claim: str
    stated: str
    from_tables: str
    verdict: str


def claims() -> list[Claim]:
    """C1–C9 and C11 of spec §6: every number recomputed from the reference tables."""
    def r(table: str, num: str, den: str, col: int) -> float:
        return ratio(table, num, den, TIME_COLUMNS[col])

    def stated(cid: str) -> str:
        for row in reference_rows():
            if row["table"] == "claims" and row["row"].startswith(cid + " "):
                return row["value"]
        return NOT_TRANSCRIBED

    node_train = [r("T2", "Neural ODE", CONT, 0), r("T3", "Neural ODE", CONT, 0)]
    node_back = [r("T2", "Neural ODE", CONT, 1), r("T3", "Neural ODE", CONT, 1)]
    skip_train = {t: (r(t, CONT, SKIP_CONT, 0), r(t, CONT, SKIPREG_CONT, 0))
                  for t in ("T2", "T3", "T4")}
    skip_back = {t: max(r(t, CONT, SKIP_CONT, 1), r(t, CONT, SKIPREG_CONT, 1))
                 for t in ("T2", "T3", "T4")}
    bars = {(b["panel"], b["dataset"], b["bar"]): b for b in figure1_audit()}
    t4 = (r("T4", CONT, SKIP_CONT, 0), r("T4", CONT, SKIPREG_CONT, 0))
    offset_small = bars[("Backward Pass", "CIFAR10 Small", "Skip Reg. Cont. DEQ")]["figure"]
    cont_disc = [r(t, CONT, DISC, 0) for t in ("T2", "T3", "T4")]
    cont_disc_b = [r(t, CONT, DISC, 1) for t in ("T2", "T3", "T4")]
    offset = [b for b in bars.values() if abs(b["difference"]) > 0.05]
    t1 = {k: paper_value("T1", k, "Training Time (min)") for k in (
        "Vanilla DEQ", "Skip DEQ", "Skip Reg. DEQ", "Vanilla DEQ + Jac. Reg.",
        "Skip DEQ + Jac. Reg.", "Skip Reg. DEQ + Jac. Reg.")}
    return [
        Claim("C1", "Continuous DEQ trains faster than the Neural ODE (abstract)", stated("C1"),
              f"{node_train[0]:.2f}× (CIFAR small), {node_train[1]:.2f}× (large)",
              "matches (Neural ODE ÷ vanilla continuous DEQ)"),
        Claim("C2", "Neural ODE backward slower than the vanilla continuous DEQ (Fig. 1)",
              stated("C2"), f"{node_back[0]:.2f}×, {node_back[1]:.3f}×", "matches"),
        Claim("C3", "Skip (Reg.) speeds up continuous-DEQ training (abstract)", stated("C3"),
              "; ".join(f"{t}: Skip {a:.2f}×, Skip Reg. {b:.2f}×"
                        for t, (a, b) in skip_train.items()),
              f"tables give at most {max(max(v) for v in skip_train.values()):.2f}×; 3.19 = "
              f"1/{bars[('Training', 'ImageNet', 'Skip Reg. Cont. DEQ')]['figure']:.3f}, an "
              "offset Fig. 1 bar"),
        Claim("C4", "Skip (Reg.) speeds up the continuous-DEQ backward pass (Fig. 1)",
              stated("C4"), ", ".join(f"{t}: {v:.2f}×" for t, v in skip_back.items()),
              f"2.8 = 1/{offset_small:.3f} (offset bar); table: {skip_back['T2']:.2f}×"),
        Claim("C7", "Table 4: Skip (Reg.) training speed-up", stated("C7"),
              f"{t4[0]:.2f}× – {t4[1]:.2f}×", "small mismatch (unrounded timings?)"),
        Claim("C8", "Table 1: Skip variants speed up training 1.42–4×", "1.42–4×",
              f"with Jac.: {t1['Vanilla DEQ + Jac. Reg.'] / t1['Skip Reg. DEQ + Jac. Reg.']:.2f}×;"
              f" without: {t1['Vanilla DEQ'] / t1['Skip Reg. DEQ']:.2f}× (Skip Reg.), "
              f"{t1['Vanilla DEQ'] / t1['Skip DEQ']:.2f}× (Skip)", "matches"),
        Claim("C9", "Continuous DEQs are slower than discrete DEQs (limitations)", "slower",
              "training " + ", ".join(f"{v:.2f}×" for v in cont_disc) + "; backward "
              + ", ".join(f"{v:.1f}×" for v in cont_disc_b), "matches (continuous ÷ discrete)"),
        Claim("C11", "Figure 1 agrees with Tables 2–4", "(implicit)",
              f"{len(offset)} of {len(bars)} bars differ by "
              + ", ".join(f"{b['difference']:+.3f}" for b in offset),
              "four bars sit 0.20 below the tables' ratios"),
    ]


__all__ = [
    "CONT",
    "DISC",
    "FIG1_BARS",
    "FIG1_DATASETS",
    "FIG1_PANELS",
    "SKIPREG_CONT",
    "SKIP_CONT",
    "Claim",
    "claims",
    "figure1_audit",
    "paper_cell",
    "paper_table",
    "paper_value",
    "ratio",
    "reference_rows",
    "side_by_side",
]
