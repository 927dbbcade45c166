"""HomoODE chapter: decision rules of the claims, thresholds as module constants."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

ABLATION_NFE_DROP = 0.10
#: ... and the accuracy *equal* when neither the best nor the last test accuracy of the run with
#: the learned start is more than this (a fraction, 0.02 = 2 points) below the other run's.
ABLATION_ACC_MARGIN = 0.02


def ablation_verdicts(records: Sequence[dict[str, Any]], *, nfe_drop: float = ABLATION_NFE_DROP,
                      acc_margin: float = ABLATION_ACC_MARGIN) -> list[dict[str, Any]]:
    """Pair each ablation run with the shared start (``init_params`` > 0) with the run of the same
    key and seed without it, and judge the pair: ``with``, ``without`` (the two :func:`run_record`
    dicts), ``nfe_ratio`` (mean forward NFE with / without), ``lower`` (ratio ≤ 1 − ``nfe_drop``),
    ``acc_gaps`` ((best, last) accuracy with minus without) and ``equal`` (both gaps ≥
    −``acc_margin``). Raises ``ValueError`` when a run has no partner."""
    pairs = []
    for w in records:
        if not w["init_params"]:
            continue
        partners = [r for r in records if not r["init_params"] and r["key"] == w["key"]
                    and r["seed"] == w["seed"]]
        if len(partners) != 1:
            raise ValueError(f"{w['experiment']}: expected one run without the shared start for "
                             f"key {w['key']!r}, seed {w['seed']}, found {len(partners)}")
        wo = partners[0]
        ratio = w["nfe_forward"] / wo["nfe_forward"]
        gaps = (w["best_acc"] - wo["best_acc"], w["last_acc"] - wo["last_acc"])
        pairs.append({"with": w, "without": wo, "nfe_ratio": ratio,
                      "lower": ratio <= 1 - nfe_drop, "acc_gaps": gaps,
                      "equal": min(gaps) >= -acc_margin})
    return pairs


# ---- rules of the claims ledger (homoode-C2, C3, C4a, C4b) --------------------------------------

#: Every compared row needs at least this many seeds for an accuracy verdict ...
MIN_SEEDS = 3
#: ... no compared row may be within this many points (fraction) of chance ...
CHANCE_MARGIN = 0.05
#: ... and every run's curve must have flattened: the test accuracy of the last
#: :data:`PLATEAU_EPOCHS` epochs spans at most :data:`PLATEAU_SPREAD` (fraction; 0.02 = 2 points).
PLATEAU_EPOCHS = 2
PLATEAU_SPREAD = 0.02
#: Two accuracy rows differ only when their means differ by more than this (fraction) and by
#: more than twice the standard error (:func:`deqode.book.claims.compare`).
ACC_COMPARE_MARGIN = 0.01
#: HomoODE's memory counts as lower (higher) than the DEQ's when the ratio of the saved-tensor
#: peaks of a training step is at most 1 − (at least 1 +) this.
MEMORY_MARGIN = 0.10
#: The H9 reading of ANODE (derived in the book's homotopy-link chapter; thresholds are a
#: companion choice): the frozen-condition endpoint is the equilibrium to below this residual,
#: the drifting one misses it by more than :data:`H9_DRIFT_MIN`.
H9_FROZEN_MAX = 1e-8
H9_DRIFT_MIN = 1e-2


def plateau(history: Sequence[dict[str, Any]], *, epochs: int = PLATEAU_EPOCHS,
            spread: float = PLATEAU_SPREAD) -> dict[str, Any]:
    """The stopping rule's check on one run's curve: ``flat`` when the test accuracies of the last
    ``epochs`` epochs lie within ``spread`` of each other (``change`` is their range). A run with
    fewer epochs than that is not flat."""
    accs = [float(h["test_acc"]) for h in history if h.get("test_acc") is not None]
    if len(accs) < epochs:
        return {"flat": False, "change": None, "last": accs}
    tail = accs[-epochs:]
    change = max(tail) - min(tail)
    return {"flat": change <= spread, "change": change, "last": tail}


def _rows(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        rows.setdefault(r["label"], []).append(r)
    return rows


def accuracy_precondition(rows: Mapping[str, Sequence[dict[str, Any]]], *, chance: float,
                          min_seeds: int = MIN_SEEDS, chance_margin: float = CHANCE_MARGIN,
                          ) -> str:
    """Why an accuracy comparison of ``rows`` (label -> run records) cannot be decided, or ``""``:
    too few seeds, a row's mean last accuracy within ``chance_margin`` of ``chance``, a failed
    run, or a curve that has not flattened (:func:`plateau`). The reason carries the numbers."""
    reasons = []
    for label, runs in rows.items():
        if any(r["state"] != "completed" for r in runs):
            reasons.append(f"{label}: a run did not complete")
            continue
        if len(runs) < min_seeds:
            reasons.append(f"{label}: {len(runs)} seed(s), the rule needs {min_seeds}")
        mean = sum(r["last_acc"] for r in runs) / len(runs)
        if mean - chance <= chance_margin:
            reasons.append(f"{label}: last accuracy {100 * mean:.1f} % is within "
                           f"{100 * chance_margin:.0f} points of chance ({100 * chance:.0f} %)")
        for r in runs:
            check = plateau(r["history"])
            if not check["flat"]:
                change = "–" if check["change"] is None else f"{100 * check['change']:.1f}"
                reasons.append(f"{label} seed {r['seed']}: test accuracy still moved {change} "
                               f"points over the last {PLATEAU_EPOCHS} epochs")
    return "; ".join(reasons)


def accuracy_verdict(records: Sequence[dict[str, Any]], *, subject: str,
                     baselines: Sequence[str], chance: float,
                     margin: float = ACC_COMPARE_MARGIN) -> dict[str, Any]:
    """homoode-C4a: is ``subject``'s last-epoch test accuracy higher than every baseline's?

    Per baseline :func:`deqode.book.claims.compare` over the seeds (``higher``/``equal``/``lower``).
    All higher: supported; none higher and one lower: not supported; otherwise mixed. Not
    decidable when :func:`accuracy_precondition` finds a reason (returned in ``reason``).
    """
    from deqode.book import claims

    rows = _rows(records)
    wanted = {label: rows.get(label, []) for label in (subject, *baselines)}
    missing = [label for label, runs in wanted.items() if not runs]
    if missing:
        raise ValueError(f"no runs for {missing}")
    accs = {label: [r["last_acc"] for r in runs] for label, runs in wanted.items()}
    outcome = {b: claims.compare(accs[subject], accs[b], margin) for b in baselines}
    reason = accuracy_precondition(wanted, chance=chance)
    if reason:
        verdict = claims.NOT_DECIDABLE
    elif all(o == "higher" for o in outcome.values()):
        verdict = claims.SUPPORTED
    elif "lower" in outcome.values() and "higher" not in outcome.values():
        verdict = claims.NOT_SUPPORTED
    else:
        verdict = claims.MIXED
    return {"verdict": verdict, "reason": reason, "outcome": outcome, "accs": accs}


def accuracy_rule_text(subject: str, margin: float = ACC_COMPARE_MARGIN) -> str:
    """The text of :func:`accuracy_verdict`'s rule, built from its constants."""
    return (f"last-epoch test accuracy over ≥ {MIN_SEEDS} seeds; {subject} is higher than a "
            f"baseline when the means differ by more than {100 * margin:.0f} point(s) and 2 "
            "standard errors; supported if higher than every baseline, not supported if lower "
            "than one and higher than none, else mixed; not decidable with fewer seeds, a row "
            f"within {100 * CHANCE_MARGIN:.0f} points of chance, or a curve whose last "
            f"{PLATEAU_EPOCHS} epochs span more than {100 * PLATEAU_SPREAD:.0f} points")


def anode_verdict(records: Sequence[dict[str, Any]], *, h9_frozen: float, h9_drifting: float,
                  chance: float, node: str = "Neural ODE", anode: str = "ANODE",
                  homoode: str = "HomoODE", margin: float = ACC_COMPARE_MARGIN
                  ) -> dict[str, Any]:
    """homoode-C3: ANODE works because its augmented part is the equilibrium to find.

    Measurable form [reconstruction]: (a) the H9 toy: with the condition frozen the augmented
    endpoint is the equilibrium (residual < :data:`H9_FROZEN_MAX`), with a drifting condition it
    is not (> :data:`H9_DRIFT_MIN`); (b) the models that use the input as a condition with a
    shared start (ANODE, HomoODE) are not less accurate than the Neural ODE, which uses it as the
    start only. (a) fails: not supported. Else supported when both are higher than the Neural
    ODE, not supported when one is lower, mixed otherwise; not decidable under
    :func:`accuracy_precondition`.
    """
    from deqode.book import claims

    rows = _rows(records)
    wanted = {label: rows.get(label, []) for label in (node, anode, homoode)}
    accs = {label: [r["last_acc"] for r in runs] for label, runs in wanted.items()}
    h9_ok = h9_frozen < H9_FROZEN_MAX and h9_drifting > H9_DRIFT_MIN
    outcome = {label: claims.compare(accs[label], accs[node], margin) for label in (anode, homoode)}
    reason = accuracy_precondition(wanted, chance=chance)
    if not h9_ok:
        verdict = claims.NOT_SUPPORTED
        reason = ""
    elif reason:
        verdict = claims.NOT_DECIDABLE
    elif all(o == "higher" for o in outcome.values()):
        verdict = claims.SUPPORTED
    elif "lower" in outcome.values():
        verdict = claims.NOT_SUPPORTED
    else:
        verdict = claims.MIXED
    return {"verdict": verdict, "reason": reason, "outcome": outcome, "accs": accs,
            "h9_ok": h9_ok}


def anode_rule_text(margin: float = ACC_COMPARE_MARGIN) -> str:
    """The text of :func:`anode_verdict`'s rule, built from its constants."""
    return (f"H9 toy: frozen-condition residual < {H9_FROZEN_MAX:g} and drifting-condition "
            f"residual > {H9_DRIFT_MIN:g} (else not supported); then ANODE and HomoODE against "
            f"the Neural ODE (last-epoch accuracy, ≥ {MIN_SEEDS} seeds, higher = more than "
            f"{100 * margin:.0f} point(s) and 2 standard errors): both higher supported, one lower "
            "not supported, else mixed; not decidable under the accuracy preconditions (seeds, "
            f"{100 * CHANCE_MARGIN:.0f} points from chance, flattened curves)")


def memory_verdict(homoode_mb: Mapping[str, float], deq_mb: float, *,
                   margin: float = MEMORY_MARGIN) -> dict[str, Any]:
    """homoode-C4b: HomoODE's saved-tensor peak per training step, per gradient mode, against the
    DEQ's. A mode is ``lower`` at ratio ≤ 1 − ``margin``, ``higher`` at ≥ 1 + ``margin``, else
    ``equal``. Every mode lower: supported; none lower: not supported; else mixed (the memory
    depends on the gradient mode)."""
    from deqode.book import claims

    ratios = {mode: mb / deq_mb for mode, mb in homoode_mb.items()}
    outcome = {mode: "lower" if r <= 1 - margin else "higher" if r >= 1 + margin else "equal"
               for mode, r in ratios.items()}
    if all(o == "lower" for o in outcome.values()):
        verdict = claims.SUPPORTED
    elif "lower" not in outcome.values():
        verdict = claims.NOT_SUPPORTED
    else:
        verdict = claims.MIXED
    return {"verdict": verdict, "ratios": ratios, "outcome": outcome}


def memory_rule_text(margin: float = MEMORY_MARGIN) -> str:
    """The text of :func:`memory_verdict`'s rule, built from its constant."""
    return (f"autograd saved-tensor peak of a training step, HomoODE per gradient mode over the "
            f"DEQ's (IFT): lower at ratio ≤ {1 - margin:.2f}, higher at ≥ {1 + margin:.2f}; "
            "supported if every mode is lower, not supported if none is, else mixed")


def init_point_verdict(pairs: Sequence[dict[str, Any]], *, min_pairs: int = MIN_SEEDS
                       ) -> dict[str, Any]:
    """homoode-C2 from the pairs of :func:`ablation_verdicts`: supported when in every pair the
    forward NFE is lower at equal accuracy, not supported when in none, mixed otherwise; not
    decidable with fewer than ``min_pairs`` pairs or a run that did not complete."""
    from deqode.book import claims

    good = [p["lower"] and p["equal"] for p in pairs]
    unfinished = [r["experiment"] for p in pairs for r in (p.get("with"), p.get("without"))
                  if r is not None and r["state"] != "completed"]
    if unfinished:
        return {"verdict": claims.NOT_DECIDABLE, "good": good,
                "reason": f"runs not completed: {', '.join(unfinished)}"}
    if len(pairs) < min_pairs:
        return {"verdict": claims.NOT_DECIDABLE, "good": good,
                "reason": f"{len(pairs)} seed pair(s), the rule needs {min_pairs}"}
    verdict = (claims.SUPPORTED if all(good) else claims.NOT_SUPPORTED if not any(good)
               else claims.MIXED)
    return {"verdict": verdict, "good": good, "reason": ""}


def init_point_rule_text() -> str:
    """The text of :func:`init_point_verdict`'s rule, built from the ablation's constants."""
    return (f"per seed pair (same seed, with vs without the shared start): forward NFE per "
            f"training batch lower by ≥ {ABLATION_NFE_DROP:.0%} and neither best nor last test "
            f"accuracy more than {100 * ABLATION_ACC_MARGIN:.0f} points below; supported if every "
            f"pair passes, not supported if none does, else mixed; ≥ {MIN_SEEDS} pairs needed")
