"""Decision rules of the NAG chapter's claims C9 (trains faster), C10 (better or comparable final
performance) and C11 (learned fields hide the unscaled step's inconsistency).

Every rule works on per-seed values of the compared rows and returns a verdict of
:mod:`deqode.book.claims` with the measured text and, where it cannot decide, a measured reason. All
margins are fractions of the size of the metric itself (``|best final mean|``), so one set of
constants serves an accuracy, an NLL in nats and a -ELBO.

* **Target.** ``target = best ∓ TARGET_SLACK × |best|`` (worse than ``best`` by the slack),
  ``best`` being the best final mean among the compared rows; fixed by this formula before any
  time is read off a curve. (A first version used a fraction of the improvement from the value
  before training; the latent ODE's and the CNF's first evaluations are so far off that every
  run reached that target at its first evaluation, so it was replaced after the first cpu run.)
* **Time to target.** The training CPU seconds (and the cumulative NFE, the spec's view) at the
  first evaluation that reaches the target; a seed that never reaches it has no time.
* **Flattened.** A curve has flattened when over its last ``PLATEAU_WINDOW`` evaluation
  intervals it moved by less than ``PLATEAU_FRACTION`` of its last value's size. Window and
  fraction were set after the first cpu run (with a cosine learning rate the last interval is
  the one that shows whether training still moves).
* **Noise.** Two rows differ only when :func:`deqode.book.claims.compare` says so: the difference of
  the means beats the margin and twice its standard error.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from deqode.book import claims

TARGET_SLACK = 0.05  # the target is 5 % (of |best|) worse than the best row's final mean
PLATEAU_WINDOW = 1  # evaluation intervals
PLATEAU_FRACTION = 0.01  # of the curve's last value (in size)
MIN_SEEDS = 3
TIME_MARGIN = 0.10  # a time difference counts beyond 10 % of the competitor's mean time
COMPARABLE_FRACTION = 0.02  # a final-metric difference counts beyond 2 % of |best|
NESTEROV = "nesterov"
UNSCALED = "nesterov (c=1)"


def target_value(best: float, higher_is_better: bool, slack: float = TARGET_SLACK) -> float:
    """The metric value a run must reach: ``best`` made worse by ``slack × |best|``."""
    return best - slack * abs(best) if higher_is_better else best + slack * abs(best)


def reached(value: float, target: float, higher_is_better: bool) -> bool:
    return value >= target if higher_is_better else value <= target


def time_to_target(curve: Sequence[Mapping[str, Any]], key: str, target: float,
                   higher_is_better: bool, clock: str) -> float | None:
    """``clock`` (e.g. ``cpu_seconds`` or ``nfe``) at the first row of ``curve`` whose ``key``
    reaches ``target``; None if none does."""
    for row in curve:
        if row.get(key) is not None and reached(row[key], target, higher_is_better):
            return float(row[clock])
    return None


def flattened(values: Sequence[float], window: int = PLATEAU_WINDOW,
              fraction: float = PLATEAU_FRACTION) -> tuple[bool, float]:
    """(flat?, last-window change as a fraction of the last value's size) of one curve."""
    if len(values) <= window:
        return False, math.inf
    size = abs(values[-1])
    change = abs(values[-1] - values[-1 - window])
    ratio = change / size if size > 0 else math.inf
    return ratio < fraction, ratio


def _seed_reason(rows: Mapping[str, Sequence[Any]]) -> str:
    counts = {label: len(v) for label, v in rows.items()}
    if min(counts.values()) >= MIN_SEEDS:
        return ""
    return (f"{min(counts.values())} seed(s) per row (the rule needs {MIN_SEEDS}): "
            + ", ".join(f"{k}: {n}" for k, n in counts.items()))


def _flat_reason(flat: Mapping[str, Sequence[tuple[bool, float]]]) -> str:
    bad = {label: max(r for _, r in checks) for label, checks in flat.items()
           if not all(ok for ok, _ in checks)}
    if not bad:
        return ""
    return (f"curves not flat (over the last {PLATEAU_WINDOW} evaluation interval(s) moved ≥ "
            f"{PLATEAU_FRACTION:.0%} of the last value): "
            + ", ".join(f"{k} {v:.0%}" if math.isfinite(v) else f"{k} (too few evaluations)"
                        for k, v in bad.items()))


def _verdict_from(parts: Sequence[bool]) -> str:
    if all(parts):
        return claims.SUPPORTED
    if not any(parts):
        return claims.NOT_SUPPORTED
    return claims.MIXED


def faster_rule_text(metric: str) -> str:
    return (f"target = the best row's final mean of {metric} made worse by {TARGET_SLACK:.0%} "
            f"of its size; "
            f"nesterov is faster than a row when its mean CPU time to the target is lower by "
            f"more than {TIME_MARGIN:.0%} of that row's mean and 2 standard errors (a row that "
            f"misses the target in any seed is slower); {claims.SUPPORTED} if faster than every "
            f"row, {claims.NOT_SUPPORTED} if faster than none, else {claims.MIXED}; "
            f"{claims.NOT_DECIDABLE} with fewer than "
            f"{MIN_SEEDS} seeds or a curve that has not flattened (over its last {PLATEAU_WINDOW} "
            f"evaluation interval(s) it moved ≥ {PLATEAU_FRACTION:.0%} of its last value)")


def faster_verdict(times: Mapping[str, Sequence[float | None]],
                   flat: Mapping[str, Sequence[tuple[bool, float]]],
                   nesterov: str = NESTEROV) -> tuple[str, str, dict[str, str]]:
    """C9: (verdict, reason, comparison per row) from per-seed CPU times to target (None: missed).

    A comparison is ``"faster"``, ``"slower"`` or ``"equal"`` for nesterov against that row."""
    reason = _seed_reason(times) or _flat_reason(flat)
    comparisons: dict[str, str] = {}
    mine = times[nesterov]
    for label, theirs in times.items():
        if label == nesterov:
            continue
        if any(t is None for t in mine):
            comparisons[label] = "equal" if any(t is None for t in theirs) else "slower"
        elif any(t is None for t in theirs):
            comparisons[label] = "faster"
        else:
            margin = TIME_MARGIN * claims.mean_std(theirs)[0]
            side = claims.compare(mine, theirs, margin)
            comparisons[label] = {"lower": "faster", "higher": "slower"}.get(side, "equal")
    if reason:
        return claims.NOT_DECIDABLE, reason, comparisons
    return _verdict_from([c == "faster" for c in comparisons.values()]), "", comparisons


def comparable_rule_text(metric: str) -> str:
    return (f"final {metric}: nesterov is not worse than a row unless its mean is worse by "
            f"more than {COMPARABLE_FRACTION:.0%} of the best row's final mean (in size) and 2 "
            f"standard errors; {claims.SUPPORTED} if not worse than every row, "
            f"{claims.NOT_SUPPORTED} if worse than every row, else {claims.MIXED}; "
            f"{claims.NOT_DECIDABLE} with fewer than {MIN_SEEDS} "
            f"seeds or a curve that has not flattened")


def comparable_verdict(finals: Mapping[str, Sequence[float]], higher_is_better: bool,
                       scale: float, flat: Mapping[str, Sequence[tuple[bool, float]]],
                       nesterov: str = NESTEROV) -> tuple[str, str, dict[str, str]]:
    """C10: (verdict, reason, comparison per row: "better" / "worse" / "comparable");
    ``scale``: the size the margin is a fraction of (the best final mean)."""
    reason = _seed_reason(finals) or _flat_reason(flat)
    margin = COMPARABLE_FRACTION * abs(scale)
    comparisons = {}
    for label, theirs in finals.items():
        if label == nesterov:
            continue
        side = claims.compare(finals[nesterov], theirs, margin)
        better = "higher" if higher_is_better else "lower"
        comparisons[label] = ("comparable" if side == "equal"
                              else "better" if side == better else "worse")
    if reason:
        return claims.NOT_DECIDABLE, reason, comparisons
    not_worse = [c != "worse" for c in comparisons.values()]
    if not any(not_worse):
        return claims.NOT_SUPPORTED, "", comparisons
    return (claims.SUPPORTED if all(not_worse) else claims.MIXED), "", comparisons


def hidden_rule_text(metric: str) -> str:
    return (f"{metric}: the unscaled step's inconsistency is hidden when its final value under "
            f"its training solver is not worse than the consistent step's (beyond "
            f"{COMPARABLE_FRACTION:.0%} of the consistent step's value and 2 standard errors), "
            f"and exposed by dopri5 when its |change under dopri5| is larger than the "
            f"consistent step's by the same margin; {claims.SUPPORTED} if both, "
            f"{claims.NOT_SUPPORTED} if neither, else {claims.MIXED}; {claims.NOT_DECIDABLE} "
            f"with fewer than {MIN_SEEDS} seeds or a training curve that has not flattened")


def hidden_verdict(train_metric: Mapping[str, Sequence[float]],
                   shift: Mapping[str, Sequence[float]], higher_is_better: bool,
                   flat: Mapping[str, Sequence[tuple[bool, float]]],
                   consistent: str = NESTEROV,
                   unscaled: str = UNSCALED) -> tuple[str, str, dict[str, bool]]:
    """C11: (verdict, reason, {"hidden": …, "exposed": …}) from per-seed final metrics under the
    training solver and per-seed changes under dopri5 (dopri5 − training solver)."""
    reason = _seed_reason(train_metric) or _flat_reason(flat)
    margin = COMPARABLE_FRACTION * abs(claims.mean_std(train_metric[consistent])[0])
    side = claims.compare(train_metric[unscaled], train_metric[consistent], margin)
    worse = "lower" if higher_is_better else "higher"
    parts = {
        "hidden": side != worse,
        "exposed": claims.compare([abs(v) for v in shift[unscaled]],
                                  [abs(v) for v in shift[consistent]], margin) == "higher",
    }
    if reason:
        return claims.NOT_DECIDABLE, reason, parts
    return _verdict_from(list(parts.values())), "", parts


__all__ = [
    "COMPARABLE_FRACTION", "MIN_SEEDS", "PLATEAU_FRACTION", "PLATEAU_WINDOW", "TARGET_SLACK",
    "TIME_MARGIN", "comparable_rule_text", "comparable_verdict", "faster_rule_text",
    "faster_verdict", "flattened", "hidden_rule_text", "hidden_verdict", "reached",
    "target_value", "time_to_target",
]
