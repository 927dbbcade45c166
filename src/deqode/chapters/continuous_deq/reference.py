"""Continuous DEQ chapter: the paper's numbers (data/reference/continuous_deq.csv) and the
arithmetic behind its headline claims and Figure 1."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from deqode.chapters.continuous_deq.configs import (
    ACCURACY_COLUMN,
    PAPER,
    TABLES,
    TIME_COLUMNS,
    table_rows,
)
from deqode.choices import check_choice
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


def _ours(r: Mapping[str, Any], key: str, digits: int) -> str:
    """``mean ± std`` over seeds where :func:`aggregate` gave several, else the value."""
    value = r.get(key)
    if value is None:
        return "-"
    if len(r.get(f"{key}_seeds", ())) > 1:
        return f"{value:.{digits}f} ± {r[f'{key}_std']:.{digits}f}"
    return f"{value:.{digits}f}"


def side_by_side(table: str, ours: Sequence[Mapping[str, Any]], header: str = "ours"
                 ) -> list[dict[str, Any]]:
    """Paper and ours per row: accuracy, times (and NFE for Table 1). Our columns carry
    ``header`` (profile and data set, e.g. ``ours (cpu, MNIST-8k)``); cells are mean ± std over
    seeds where a row ran several (``seeds`` gives how many)."""
    out = []
    for r in ours:
        label = r["paper_row"]
        if table == "T1":
            cells = {
                "Test Acc (%) paper": paper_cell(table, label, "Test Acc (%)"),
                f"Test Acc (%) {header}": _ours(r, "test_acc", 1),
                "Testing NFE paper": paper_cell(table, label, "Testing NFE"),
                f"Testing NFE {header}": _ours(r, "test_nfe", 1),
                "Training paper (min)": paper_cell(table, label, "Training Time (min)"),
                f"Training {header} (min)": _ours(r, "training_min", 3),
                "Prediction paper (s/batch)": paper_cell(table, label,
                                                         "Prediction Time (s/batch)"),
                f"Prediction {header} (s/batch)": _ours(r, "prediction_s_per_batch", 4),
            }
        else:
            acc = ACCURACY_COLUMN[table]
            cells = {
                f"{acc} paper": paper_cell(table, label, acc),
                f"Test Acc (%) {header}" if table != "T4" else f"Top-1 / Top-5 (%) {header}":
                    _ours(r, "test_acc", 1) if table != "T4"
                    else f"{_ours(r, 'test_acc', 1)} / {_ours(r, 'top5_acc', 1)}",
                "Training paper": paper_cell(table, label, TIME_COLUMNS[0]),
                f"Training {header}": _ours(r, "training_s_per_batch", 4),
                "Backward paper": paper_cell(table, label, TIME_COLUMNS[1]),
                f"Backward {header}": _ours(r, "backward_s_per_batch", 4),
                "Prediction paper": paper_cell(table, label, TIME_COLUMNS[2]),
                f"Prediction {header}": _ours(r, "prediction_s_per_batch", 4),
                f"NFE test {header}": _ours(r, "test_nfe", 1),
                f"GMRES VJPs / step {header}": _ours(r, "train_nfe_backward", 1),
            }
        out.append({"row": r["row"], "seeds": len(r.get("seeds", [0])),
                    f"params {header}": r["params"],
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
    """A headline claim, its stated value, what the paper's own tables give, and whether the two
    agree (:func:`range_agreement`)."""

    id: str
    claim: str
    stated: str
    from_tables: str
    verdict: str


def stated_value(claim_id: str) -> str:
    """The stated value of a headline claim (``claims`` rows of the reference CSV)."""
    for row in reference_rows():
        if row["table"] == "claims" and row["row"].startswith(claim_id + " "):
            return row["value"]
    return NOT_TRANSCRIBED


def _decimals(text: str) -> int:
    return len(text.split(".")[1]) if "." in text else 0


def range_agreement(stated: str, values: Sequence[float], source: str = "the tables") -> str:
    """Do the paper's tables give its stated range? ``stated`` as in the CSV (``"2-4x"``);
    ``values``: the ratios the tables give. The range agrees when its ends equal the smallest and
    largest value within one unit of the last decimal the text prints (e.g. a stated 2 covers
    any value in [1, 3], a stated 4.7 any value in [4.6, 4.8])."""
    ends = re.findall(r"\d+(?:\.\d+)?", stated)
    if len(ends) != 2:
        raise ValueError(f"stated value {stated!r} is not a range")
    low, high = min(values), max(values)
    ok = all(abs(v - float(e)) <= 10.0 ** -_decimals(e) + 1e-9
             for v, e in ((low, ends[0]), (high, ends[1])))
    return (f"agrees: {source} give {low:.2f}–{high:.2f}" if ok
            else f"differs: {source} give {low:.2f}–{high:.2f}, the text {ends[0]}–{ends[1]}")


#: Figure 1 bars further than this from the tables' ratio count as offset (rounding of the tables'
#: three decimals stays well below it).
BAR_OFFSET = 0.05


def claims() -> list[Claim]:
    """The paper's headline claims C1–C9 (abstract, Figure 1 and table captions, Limitations)
    and the Figure 1 audit C11: every number recomputed from the reference tables, every
    agreement computed (:func:`range_agreement`)."""
    from deqode.book.claims import load_catalogue

    def r(table: str, num: str, den: str, col: int) -> float:
        return ratio(table, num, den, TIME_COLUMNS[col])

    node_train = [r("T2", "Neural ODE", CONT, 0), r("T3", "Neural ODE", CONT, 0)]
    node_back = [r("T2", "Neural ODE", CONT, 1), r("T3", "Neural ODE", CONT, 1)]
    skip_train = {t: (r(t, CONT, SKIP_CONT, 0), r(t, CONT, SKIPREG_CONT, 0))
                  for t in ("T2", "T3", "T4")}
    skip_back = {t: max(r(t, CONT, SKIP_CONT, 1), r(t, CONT, SKIPREG_CONT, 1))
                 for t in ("T2", "T3", "T4")}
    bars = {(b["panel"], b["dataset"], b["bar"]): b for b in figure1_audit()}
    t4 = (r("T4", CONT, SKIP_CONT, 0), r("T4", CONT, SKIPREG_CONT, 0))
    cont_disc = [r(t, CONT, DISC, 0) for t in ("T2", "T3", "T4")]
    cont_disc_b = [r(t, CONT, DISC, 1) for t in ("T2", "T3", "T4")]
    offset = [b for b in bars.values() if abs(b["difference"]) > BAR_OFFSET]
    t1 = {k: paper_value("T1", k, "Training Time (min)") for k in (
        "Vanilla DEQ", "Skip DEQ", "Skip Reg. DEQ", "Vanilla DEQ + Jac. Reg.",
        "Skip DEQ + Jac. Reg.", "Skip Reg. DEQ + Jac. Reg.")}
    t1_speedups = [t1["Vanilla DEQ + Jac. Reg."] / t1["Skip Reg. DEQ + Jac. Reg."],
                   t1["Vanilla DEQ"] / t1["Skip Reg. DEQ"]]
    best_skip_train = [max(v) for v in skip_train.values()]
    skips = ("Skip Cont. DEQ", "Skip Reg. Cont. DEQ")
    fig_c3, fig_c4 = ([max(1.0 / bars[(panel, d, b)]["figure"] for b in skips)
                       for d in FIG1_DATASETS] for panel in ("Training", "Backward Pass"))
    slower = sum(v > 1.0 for v in cont_disc)
    c9_words = load_catalogue().get("cdeq-C9")
    return [
        Claim("C1", "Continuous DEQ trains faster than the Neural ODE (abstract)",
              stated_value("C1"),
              f"{node_train[0]:.2f}× (CIFAR small), {node_train[1]:.2f}× (large)",
              range_agreement(stated_value("C1"), node_train)),
        Claim("C2", "Neural ODE backward slower than the vanilla continuous DEQ (Fig. 1)",
              stated_value("C2"), f"{node_back[0]:.2f}×, {node_back[1]:.3f}×",
              range_agreement(stated_value("C2"), node_back)),
        Claim("C3", "Skip (Reg.) speeds up continuous-DEQ training (abstract)",
              stated_value("C3"),
              "; ".join(f"{t}: Skip {a:.2f}×, Skip Reg. {b:.2f}×"
                        for t, (a, b) in skip_train.items()),
              f"tables (best Skip variant per data set): "
              f"{range_agreement(stated_value('C3'), best_skip_train)}; Fig. 1 (best bar per data "
              f"set): {range_agreement(stated_value('C3'), fig_c3, 'the bars')}"),
        Claim("C4", "Skip (Reg.) speeds up the continuous-DEQ backward pass (Fig. 1)",
              stated_value("C4"), ", ".join(f"{t}: {v:.2f}×" for t, v in skip_back.items()),
              f"tables (best Skip variant per data set): "
              f"{range_agreement(stated_value('C4'), list(skip_back.values()))}; Fig. 1 (best bar "
              f"per data set): {range_agreement(stated_value('C4'), fig_c4, 'the bars')}"),
        Claim("C7", "Table 4: Skip (Reg.) training speed-up", stated_value("C7"),
              f"{t4[0]:.2f}× – {t4[1]:.2f}×", range_agreement(stated_value("C7"), t4)),
        Claim("C8", "Table 1: Skip variants speed up training", stated_value("C8"),
              f"with Jac.: {t1_speedups[0]:.2f}×; without: {t1_speedups[1]:.2f}× (Skip Reg.), "
              f"{t1['Vanilla DEQ'] / t1['Skip DEQ']:.2f}× (Skip)",
              range_agreement(stated_value("C8"), t1_speedups)),
        Claim("C9", "Continuous DEQs are slower than discrete DEQs (limitations)",
              c9_words.words if c9_words is not None else NOT_TRANSCRIBED,
              "training " + ", ".join(f"{v:.2f}×" for v in cont_disc) + "; backward "
              + ", ".join(f"{v:.1f}×" for v in cont_disc_b) + " (continuous ÷ discrete)",
              f"continuous slower in training in {slower} of {len(cont_disc)} tables"),
        Claim("C11", "Figure 1 agrees with Tables 2–4", "(implicit)",
              f"{len(offset)} of {len(bars)} bars differ by "
              + ", ".join(f"{b['difference']:+.3f}" for b in offset),
              f"{len(offset)} bars sit more than {BAR_OFFSET:g} from the tables' ratios"),
    ]


__all__ = [
    "BAR_OFFSET",
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
    "range_agreement",
    "ratio",
    "reference_rows",
    "side_by_side",
    "stated_value",
]
