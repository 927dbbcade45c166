"""Continuous DEQ chapter: decision rules of the claims (thresholds as module constants).

Each rule takes per-seed measurements of our runs and returns ``(verdict, reason)``; the rule's
text (:func:`rule_text` and friends) is built from the same constants. The claimed ranges come
from ``data/reference/continuous_deq.csv`` (:func:`stated_range`), never typed here.

Gates shared by every rule (→ not decidable, with the measured reason):

* fewer than :data:`MIN_SEEDS` seeds of a compared row;
* a compared row whose mean test accuracy lies within :data:`CHANCE_MARGIN` points of chance
  (:data:`CHANCE`): an untrained model's cost says nothing about training cost;
* a run of a compared row whose test-accuracy curve has not flattened
  (:func:`deqode.chapters.continuous_deq.runs.plateau_check`): a verdict on models still
  learning would describe the budget, not the method.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from deqode.book.claims import (
    MIXED,
    NOT_DECIDABLE,
    NOT_SUPPORTED,
    SUPPORTED,
    combine,
    compare,
    mean_std,
)
from deqode.chapters.continuous_deq.reference import reference_rows
from deqode.chapters.continuous_deq.runs import PLATEAU_POINTS

#: Chance accuracy of the ten-class stand-ins (%), and how far above it a compared row must be.
CHANCE = 10.0
CHANCE_MARGIN = 5.0
#: Seeds a compared row needs for a verdict.
MIN_SEEDS = 3
#: A speed-up counts only when mean − 2 standard errors of the per-seed ratios exceeds this.
SPEEDUP_NULL = 1.0
#: A run counts as at its plateau when its test accuracy moved by at most this (the plateau
#: check's constant).
PLATEAU_LIMIT = PLATEAU_POINTS
#: Accuracy differences (points) below this count as equal (C3/C4 "at equal accuracy", C10).
ACCURACY_MARGIN = 0.5
#: GMRES iterations per backward pass: differences below this count as equal (C12).
GMRES_MARGIN = 0.5


def stated_range(claim_id: str) -> tuple[float, float]:
    """The ``(low, high)`` of a claim's stated range, e.g. ``"2-4x"`` → (2.0, 4.0), from the
    ``claims`` rows of the reference CSV."""
    for row in reference_rows():
        if row["table"] == "claims" and row["row"].startswith(claim_id + " "):
            numbers = [float(v) for v in re.findall(r"\d+(?:\.\d+)?", row["value"])]
            if len(numbers) != 2:
                raise ValueError(f"{claim_id}: stated value {row['value']!r} is not a range")
            return numbers[0], numbers[1]
    raise KeyError(f"no stated range for {claim_id} in data/reference/continuous_deq.csv")


def _se(values: Sequence[float]) -> float:
    return mean_std(values)[1] / math.sqrt(len(values)) if len(values) > 1 else math.inf


def gate(accuracies: Mapping[str, Sequence[float]],
         plateau: Mapping[str, Sequence[float]] | None = None) -> str:
    """The reason a comparison cannot be decided ("" when it can): too few seeds, a row near
    chance, and/or runs not at their plateau. ``accuracies``: per-seed test accuracies (%) of
    every compared row; ``plateau``: per-seed change of test accuracy over the plateau window
    (points), compared with :data:`PLATEAU_LIMIT`."""
    reasons = []
    few = {k: len(v) for k, v in accuracies.items() if len(v) < MIN_SEEDS}
    if few:
        reasons.append(", ".join(f"{k}: {n} seed" + ("s" if n != 1 else "")
                                 for k, n in few.items()) + f" run; the rule needs {MIN_SEEDS}")
    near = {k: mean_std(v)[0] for k, v in accuracies.items()
            if mean_std(v)[0] < CHANCE + CHANCE_MARGIN}
    if near:
        reasons.append(f"test accuracy within {CHANCE_MARGIN:g} points of chance ({CHANCE:g} %): "
                       + ", ".join(f"{k} {a:.1f} %" for k, a in near.items()))
    rising = {k: sum(not c <= PLATEAU_LIMIT for c in v) for k, v in (plateau or {}).items()
              if any(not c <= PLATEAU_LIMIT for c in v)}
    if rising:
        reasons.append(f"runs not at their plateau (test accuracy still moving by more than "
                       f"{PLATEAU_LIMIT:g} points over the last epochs): "
                       + ", ".join(f"{k} {n} of {len(plateau[k])} runs" for k, n in rising.items()))
    return "; ".join(reasons)


def speedup_verdict(ratios: Sequence[float], low: float) -> str:
    """Per-seed ratios (baseline cost ÷ claimed-faster cost) against a claimed lower bound:
    supported when the mean reaches ``low`` and mean − 2·SE > :data:`SPEEDUP_NULL`; mixed when
    only the latter holds (faster, by less than claimed); else not supported."""
    mean = mean_std(ratios)[0]
    faster = mean - 2.0 * _se(ratios) > SPEEDUP_NULL
    if faster and mean >= low:
        return SUPPORTED
    return MIXED if faster else NOT_SUPPORTED


def speedup_rule(low: float, what: str) -> str:
    return (f"{what}: per-seed ratios; supported if their mean ≥ {low:g} (the paper's lower "
            f"bound) and mean − 2 SE > {SPEEDUP_NULL:g}; mixed if only faster (mean − 2 SE > "
            f"{SPEEDUP_NULL:g}); else not supported; not decidable with < {MIN_SEEDS} seeds, a "
            f"compared row within {CHANCE_MARGIN:g} points of chance, or a run whose test "
            f"accuracy still moves by more than {PLATEAU_LIMIT:g} points")


def decide_speedup(ratios: Mapping[str, Sequence[float]], low: float,
                   accuracies: Mapping[str, Sequence[float]],
                   equal_accuracy: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None
                   = None, plateau: Mapping[str, Sequence[float]] | None = None
                   ) -> tuple[str, str]:
    """C1–C4: one :func:`speedup_verdict` per comparison in ``ratios``, combined. With
    ``equal_accuracy`` ({name: (faster model's accuracies, baseline's)}), a comparison whose
    faster model is less accurate by more than :data:`ACCURACY_MARGIN` (beyond noise) counts as
    mixed at best. ``plateau``: see :func:`gate`."""
    reason = gate(accuracies, plateau)
    if reason:
        return NOT_DECIDABLE, reason
    parts = []
    for name, values in ratios.items():
        verdict = speedup_verdict(values, low)
        if equal_accuracy and name in equal_accuracy and verdict == SUPPORTED:
            fast, base = equal_accuracy[name]
            if compare(fast, base, ACCURACY_MARGIN) == "lower":
                verdict = MIXED
        parts.append(verdict)
    return combine(parts), ""


def decide_slower(ratios: Sequence[float], accuracies: Mapping[str, Sequence[float]],
                  plateau: Mapping[str, Sequence[float]] | None = None) -> tuple[str, str]:
    """C9: per-seed ratios continuous ÷ discrete cost; supported when mean − 2·SE > 1
    (continuous slower beyond noise), else not supported."""
    reason = gate(accuracies, plateau)
    if reason:
        return NOT_DECIDABLE, reason
    mean = mean_std(ratios)[0]
    return (SUPPORTED if mean - 2.0 * _se(ratios) > SPEEDUP_NULL else NOT_SUPPORTED), ""


def slower_rule(what: str) -> str:
    return (f"{what}: per-seed ratios continuous ÷ discrete; supported if mean − 2 SE > "
            f"{SPEEDUP_NULL:g}, else not supported; not decidable with < {MIN_SEEDS} seeds, a "
            f"row within {CHANCE_MARGIN:g} points of chance, or a run whose test accuracy still "
            f"moves by more than {PLATEAU_LIMIT:g} points")


def decide_best(best: Sequence[float], others: Mapping[str, Sequence[float]],
                best_name: str = "Skip Reg.",
                plateau: Mapping[str, Sequence[float]] | None = None) -> tuple[str, str]:
    """C10: is ``best`` (per-seed accuracies) above every row of ``others``? Supported when
    higher than all (``claims.compare`` with :data:`ACCURACY_MARGIN`), not supported when
    lower than any, mixed when tied with some."""
    reason = gate({best_name: best, **others}, plateau)
    if reason:
        return NOT_DECIDABLE, reason
    outcomes = [compare(best, values, ACCURACY_MARGIN) for values in others.values()]
    if "lower" in outcomes:
        return NOT_SUPPORTED, ""
    return (SUPPORTED if all(o == "higher" for o in outcomes) else MIXED), ""


def best_rule() -> str:
    return (f"supported if Skip Reg.'s mean accuracy beats every other row's by more than "
            f"{ACCURACY_MARGIN:g} points and 2 standard errors; not supported if below any; "
            f"mixed if tied with some; not decidable with < {MIN_SEEDS} seeds, a row within "
            f"{CHANCE_MARGIN:g} points of chance, or a run whose test accuracy still moves by "
            f"more than {PLATEAU_LIMIT:g} points")


def decide_fewer_iterations(skip: Mapping[str, Sequence[float]], vanilla: Sequence[float],
                            accuracies: Mapping[str, Sequence[float]],
                            plateau: Mapping[str, Sequence[float]] | None = None
                            ) -> tuple[str, str]:
    """C12: GMRES iterations per backward pass (per seed) of each Skip variant against the
    vanilla continuous DEQ. Not decidable when the vanilla model's GMRES never iterates (nothing
    to lower); per variant supported if lower (compare, :data:`GMRES_MARGIN`), else not."""
    reason = gate(accuracies, plateau)
    if reason:
        return NOT_DECIDABLE, reason
    if max(vanilla) == 0:
        return NOT_DECIDABLE, ("the vanilla continuous DEQ's GMRES stops at iteration 0 on every "
                               "probe batch: there are no iterations to lower")
    parts = [SUPPORTED if compare(values, vanilla, GMRES_MARGIN) == "lower" else NOT_SUPPORTED
             for values in skip.values()]
    return combine(parts), ""


def fewer_iterations_rule() -> str:
    return (f"per Skip variant: supported if its mean GMRES iterations per backward pass are "
            f"below the vanilla continuous DEQ's by more than {GMRES_MARGIN:g} and 2 standard "
            f"errors, else not supported; combined over Skip and Skip Reg.; not decidable with "
            f"< {MIN_SEEDS} seeds, a row within {CHANCE_MARGIN:g} points of chance, a run not at "
            f"its plateau (> {PLATEAU_LIMIT:g} points), or no GMRES iterations in the vanilla "
            f"model")



def plateau_changes(runs: Sequence[Mapping[str, Any]], rows: Sequence[str]
                    ) -> dict[str, list[float]]:
    """Per compared row, the plateau check's change of test accuracy (points) of every run
    (``runs``: summaries of :func:`run_table`, keyed by their ``paper_row`` or ``row``)."""
    from deqode.chapters.continuous_deq.runs import plateau_check

    out: dict[str, list[float]] = {}
    for r in runs:
        name = r["paper_row"] if r["paper_row"] in rows else r["row"]
        if name in rows:
            check = plateau_check(r)
            out.setdefault(name, []).append(
                next(v for k, v in check.items() if k.startswith("change")))
    return out


__all__ = [
    "ACCURACY_MARGIN",
    "CHANCE",
    "CHANCE_MARGIN",
    "GMRES_MARGIN",
    "MIN_SEEDS",
    "PLATEAU_LIMIT",
    "SPEEDUP_NULL",
    "best_rule",
    "decide_best",
    "decide_fewer_iterations",
    "decide_slower",
    "decide_speedup",
    "fewer_iterations_rule",
    "gate",
    "plateau_changes",
    "slower_rule",
    "speedup_rule",
    "speedup_verdict",
    "stated_range",
]
