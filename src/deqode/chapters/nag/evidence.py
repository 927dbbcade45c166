"""The evidence of claims C9-C11 from a notebook's run records (see :mod:`.rules`).

Each function returns the keyword arguments of :meth:`deqode.book.notebook.Run.claim` (``ran``,
``measured``, ``rule``, ``verdict``, ``reason``, ``values``) plus a ``table`` of per-row numbers
for the notebook to show, so the notebook only adds the claim id and its section.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from deqode.book import claims
from deqode.chapters.nag import rules


def _curve(record: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [h for h in record["history"] if h.get(key) is not None]


def _clock(records: Sequence[dict[str, Any]]) -> str:
    """CPU seconds where every curve has them, else wall-clock seconds."""
    ok = all(h.get("cpu_seconds") is not None for r in records for h in r["history"])
    return "cpu_seconds" if ok else "seconds"


def _by_label(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(r["label"], []).append(r)
    return out


def _fmt(values: Sequence[float | None], digits: int) -> str:
    if any(v is None for v in values):
        shown = ", ".join("missed" if v is None else f"{v:.{digits}f}" for v in values)
        return f"(per seed: {shown})"
    return claims.summarise(values, digits)


def speed_and_final(records: Sequence[dict[str, Any]], key: str, higher_is_better: bool,
                    metric: str, ran: str) -> dict[str, Any]:
    """C9 and C10 evidence from the compared runs (every label but the unscaled step).

    ``key``: the metric in each record's history (its last entry is the final value)."""
    compared = [r for r in records if r["label"] != rules.UNSCALED]
    groups = _by_label(compared)
    clock = _clock(compared)
    finals = {label: [float(_curve(r, key)[-1][key]) for r in rs] for label, rs in groups.items()}
    means = {label: claims.mean_std(v)[0] for label, v in finals.items()}
    best = max(means.values()) if higher_is_better else min(means.values())
    target = rules.target_value(best, higher_is_better)
    times, nfes, flat = {}, {}, {}
    for label, rs in groups.items():
        curves = [_curve(r, key) for r in rs]
        times[label] = [rules.time_to_target(c, key, target, higher_is_better, clock)
                        for c in curves]
        nfes[label] = [rules.time_to_target(c, key, target, higher_is_better, "nfe")
                       for c in curves]
        flat[label] = [rules.flattened([h[key] for h in c]) for c in curves]
    c9, c9_reason, c9_parts = rules.faster_verdict(times, flat)
    c10, c10_reason, c10_parts = rules.comparable_verdict(finals, higher_is_better, best, flat)
    unit = "CPU s" if clock == "cpu_seconds" else "wall s"
    table = [{"label": label, f"final {metric}": _fmt(finals[label], 4),
              f"{unit} to target": _fmt(times[label], 1), "NFE to target": _fmt(nfes[label], 0),
              "flat (last-interval change / last value)":
                  ", ".join(f"{r:.0%}" for _, r in flat[label]),
              "nesterov is (time)": c9_parts.get(label, "—"),
              "nesterov is (final)": c10_parts.get(label, "—")} for label in groups]
    head = f"target {metric} = {target:.4f} (best final mean {best:.4f})"
    c9_measured = head + "; " + "; ".join(
        f"{label}: {unit} to target {_fmt(times[label], 1)}, NFE {_fmt(nfes[label], 0)}"
        for label in groups)
    c10_measured = "; ".join(f"{label}: final {metric} {_fmt(finals[label], 4)}"
                             for label in groups)
    values = {"target": target, "best": best, "clock": clock,
              "times": times, "nfe_to_target": nfes, "finals": finals}
    return {
        "target": target, "table": table,
        "c9": {"ran": ran, "measured": c9_measured, "rule": rules.faster_rule_text(metric),
               "verdict": c9, "reason": c9_reason,
               "values": {**values, "comparisons": c9_parts}},
        "c10": {"ran": ran, "measured": c10_measured,
                "rule": rules.comparable_rule_text(metric), "verdict": c10,
                "reason": c10_reason, "values": {**values, "comparisons": c10_parts}},
    }


def transfer_evidence(records: Sequence[dict[str, Any]], train_key: str, dopri5_key: str,
                      higher_is_better: bool, metric: str, ran: str) -> dict[str, Any]:
    """C11 evidence: the unscaled step against the consistent one, under the training solver and
    re-evaluated with dopri5 (margins: see :mod:`.rules`); ``train_key``
    must also be in each record's history (the flatness check)."""
    groups = _by_label([r for r in records if r["label"] in (rules.NESTEROV, rules.UNSCALED)])
    train = {label: [float(r[train_key]) for r in rs] for label, rs in groups.items()}
    shift = {label: [float(r[dopri5_key]) - float(r[train_key]) for r in rs]
             for label, rs in groups.items()}
    flat = {label: [rules.flattened([h[train_key] for h in _curve(r, train_key)]) for r in rs]
            for label, rs in groups.items()}
    verdict, reason, parts = rules.hidden_verdict(train, shift, higher_is_better, flat)
    measured = "; ".join(
        f"{label}: {metric} {claims.summarise(train[label], 4)}, change under dopri5 "
        f"{claims.summarise(shift[label], 4)}" for label in groups)
    table = [{"label": label, f"{metric}, training solver": claims.summarise(train[label], 4),
              "change under dopri5": claims.summarise(shift[label], 4)} for label in groups]
    return {"table": table, "hidden": parts["hidden"], "exposed": parts["exposed"],
            "claim": {"ran": ran, "measured": measured, "rule": rules.hidden_rule_text(metric),
                      "verdict": verdict, "reason": reason,
                      "values": {"train": train, "shift": shift, **parts}}}


__all__ = ["speed_and_final", "transfer_evidence"]
