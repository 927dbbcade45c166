"""Decision rules of the SIM chapter's claims (sim-C3, sim-C4-A/B/C) and the plateau checks.

Every threshold is a module constant fixed before the runs; each rule returns its verdict, the
rule's text built from those constants, and (for not decidable) the measured reason. The
verdict words come from :mod:`deqode.book.claims`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from deqode.book import claims

#: A row compared in a claim needs at least this many seeds.
MIN_SEEDS = 3
#: Classification: a compared row must be this far (accuracy, fraction) above chance.
CHANCE_MARGIN = 0.05
#: Differences that count as "comparable": accuracy (fraction), PSNR (dB), copy-memory loss.
ACC_MARGIN = 0.01
PSNR_MARGIN = 0.5
LOSS_MARGIN = 0.005
#: C3: the DEQ must evaluate its layer at least this often per step for "root finding" to show.
MIN_DEQ_NFE = 2.0
#: Copy memory: the digit positions count as learned this many points above chance (12.5 %).
DIGIT_CHANCE = 12.5
DIGIT_MARGIN = 10.0
#: Plateau checks: change (max − min) over the last k points of a curve.
T1_PLATEAU_EPOCHS, T1_PLATEAU_TOL = 3, 0.01  # test accuracy (fraction)
#: T2 compares window means (full-batch Adam's PSNR oscillates by ~1 dB from one iteration to
#: the next, which a max − min range would read as "not flat"; changed after seeing that on the
#: first cpu run): mean test PSNR over the last 10 % of iterations against the 10 % before.
T2_PLATEAU_FRACTION, T2_PLATEAU_TOL = 0.1, 0.5
T3_PLATEAU_EPOCHS, T3_PLATEAU_TOL = 3, 5.0  # digit-position test accuracy (%)


@dataclass(frozen=True)
class Decision:
    verdict: str
    rule: str
    reason: str = ""


def plateau_change(curve: Sequence[float], last: int) -> float:
    """max − min of the last ``last`` values of ``curve`` (the whole curve if shorter)."""
    tail = [float(v) for v in curve[-last:]]
    return max(tail) - min(tail)


def flattened(curve: Sequence[float], last: int, tol: float) -> bool:
    """True when the last ``last`` values of ``curve`` move by at most ``tol``."""
    return len(curve) >= last and plateau_change(curve, last) <= tol


def window_trend(curve: Sequence[float], window: int) -> float:
    """|mean of the last ``window`` values − mean of the ``window`` values before them|
    (``inf`` when the curve is shorter than two windows)."""
    if window < 1 or len(curve) < 2 * window:
        return float("inf")
    last = [float(v) for v in curve[-window:]]
    before = [float(v) for v in curve[-2 * window:-window]]
    return abs(sum(last) / window - sum(before) / window)


def _comparable_or_superior(sim: Sequence[float], deq: Sequence[float], margin: float,
                            higher_is_better: bool = True) -> str:
    side = claims.compare(sim, deq, margin)
    worse = "lower" if higher_is_better else "higher"
    return claims.NOT_SUPPORTED if side == worse else claims.SUPPORTED


def _few_seeds(rows: Mapping[str, Sequence[float]]) -> str:
    few = {name: len(v) for name, v in rows.items() if len(v) < MIN_SEEDS}
    if not few:
        return ""
    return "; ".join(f"{name}: {n} seed(s)" for name, n in few.items()) + \
        f" (the rule needs ≥ {MIN_SEEDS} per compared row)"


def _not_flat(flat: Mapping[str, bool] | None, what: str = "curve") -> str:
    unflat = [k for k, ok in (flat or {}).items() if not ok]
    return f"{what} not flat: " + ", ".join(unflat) if unflat else ""


def _decide(rule: str, reasons: Sequence[str], pairs: Sequence[tuple[Sequence[float],
            Sequence[float]]], margin: float, higher_is_better: bool = True) -> Decision:
    """Not decidable when any reason is given; else each (SIM, DEQ) pair of per-seed values is
    compared by :func:`_comparable_or_superior` and the parts combine."""
    reason = "; ".join(r for r in reasons if r)
    if reason:
        return Decision(claims.NOT_DECIDABLE, rule, reason)
    parts = [_comparable_or_superior(sim, deq, margin, higher_is_better) for sim, deq in pairs]
    return Decision(claims.combine(parts), rule)


def c3_decision(sim_nfe: Mapping[str, float], deq_nfe: float,
                sim_step_ms: Mapping[str, Sequence[float]],
                deq_step_ms: Sequence[float]) -> Decision:
    """sim-C3, "learned like feedforward models (no root finding)".

    ``sim_nfe``: per SIM variant, the largest forward + backward NFE of any training step;
    ``deq_nfe``: the DEQ's mean forward NFE per step; step times: median ms per seed.
    Supported: every SIM step evaluates no implicit function, the DEQ root-finds
    (≥ ``MIN_DEQ_NFE`` evaluations per step) and each SIM's step time is lower than the DEQ's
    (:func:`deqode.book.claims.compare`, margin 0). Not supported: a SIM step evaluated an implicit
    function. Mixed: no root finding but a SIM step not faster. Not decidable: the DEQ did not
    root-find, so there is nothing to contrast."""
    rule = (f"supported if every SIM training step makes 0 solver evaluations, the DEQ makes "
            f"≥ {MIN_DEQ_NFE:g} per step and every SIM's median step time is lower than the "
            f"DEQ's (difference beyond 2 standard errors over seeds); not supported if a SIM "
            f"step makes any; mixed if none but a SIM is not faster; not decidable if the DEQ "
            f"makes fewer than {MIN_DEQ_NFE:g}")
    if any(v > 0 for v in sim_nfe.values()):
        return Decision(claims.NOT_SUPPORTED, rule)
    if deq_nfe < MIN_DEQ_NFE:
        return Decision(claims.NOT_DECIDABLE, rule,
                        f"the DEQ made only {deq_nfe:.1f} solver evaluations per step")
    faster = all(claims.compare(t, deq_step_ms, 0.0) == "lower" for t in sim_step_ms.values())
    return Decision(claims.SUPPORTED if faster else claims.MIXED, rule)


def c4_classification(accs: Mapping[str, Sequence[float]], deq: str,
                      flat: Mapping[str, bool], chance: float = 0.1) -> Decision:
    """sim-C4-A: each SIM variant's final test accuracy (per seed) against the DEQ's.

    A variant is comparable or superior unless :func:`deqode.book.claims.compare` finds it lower by
    more than ``ACC_MARGIN`` and 2 standard errors; the variants combine with
    :func:`deqode.book.claims.combine`. Not decidable: fewer than ``MIN_SEEDS`` seeds, a row within
    ``CHANCE_MARGIN`` of chance, or a curve that had not flattened."""
    rule = (f"per SIM variant: comparable or superior unless its mean test accuracy is below the "
            f"DEQ's by more than {ACC_MARGIN:.2f} and 2 standard errors; all variants → "
            f"supported, none → not supported, else mixed; not decidable with < {MIN_SEEDS} "
            f"seeds, a row within {CHANCE_MARGIN:.2f} of chance or a curve that had not "
            f"flattened (last {T1_PLATEAU_EPOCHS} epochs moving > {T1_PLATEAU_TOL:.2f})")
    reasons = [_few_seeds(accs)]
    near = {k: sum(v) / len(v) for k, v in accs.items() if sum(v) / len(v) < chance + CHANCE_MARGIN}
    if near:
        reasons.append("; ".join(f"{k}: mean accuracy {v:.3f} (chance {chance:.2f})"
                                 for k, v in near.items()))
    reasons.append(_not_flat(flat))
    return _decide(rule, reasons, [(v, accs[deq]) for k, v in accs.items() if k != deq],
                   ACC_MARGIN)


def c4_regression(psnr: Mapping[tuple[str, str], Sequence[float]], deq: str,
                  flat: Mapping[str, bool]) -> Decision:
    """sim-C4-B: per image set and SIM variant, test PSNR (per seed) against the DEQ's.

    ``psnr[(set, model)]``; comparable or superior unless lower by more than ``PSNR_MARGIN`` dB
    and 2 standard errors; combined over sets and variants."""
    rule = (f"per image set and SIM variant: comparable or superior unless its mean test PSNR "
            f"is below the DEQ's by more than {PSNR_MARGIN:g} dB and 2 standard errors; all → "
            f"supported, none → not supported, else mixed; not decidable with < {MIN_SEEDS} "
            f"seeds or a curve that had not flattened (mean test PSNR over the last "
            f"{T2_PLATEAU_FRACTION:.0%} of iterations differing from the mean over the "
            f"{T2_PLATEAU_FRACTION:.0%} before by > {T2_PLATEAU_TOL:g} dB)")
    reasons = [_few_seeds({f"{s}/{m}": v for (s, m), v in psnr.items()}), _not_flat(flat)]
    return _decide(rule, reasons, [(v, psnr[(s, deq)]) for (s, m), v in psnr.items() if m != deq],
                   PSNR_MARGIN)


def c4_copy_memory(losses: Mapping[str, Sequence[float]], digit_accs: Mapping[str, Sequence[float]],
                   deq: str, flat: Mapping[str, bool] | None = None) -> Decision:
    """sim-C4-C: final test loss (per seed) of each SIM variant against the DEQ's.

    Comparable or superior unless higher by more than ``LOSS_MARGIN`` and 2 standard errors.
    Not decidable with fewer than ``MIN_SEEDS`` seeds, when a seed of a compared model ends with
    its digit-position accuracy within ``DIGIT_MARGIN`` points of chance (that run has not
    learned the task, so the losses compare which seeds escaped the plateau, not the models),
    or when a digit-accuracy curve had not flattened (``flat``)."""
    rule = (f"per SIM variant: comparable or superior unless its mean test loss is above the "
            f"DEQ's by more than {LOSS_MARGIN:g} and 2 standard errors; all → supported, none "
            f"→ not supported, else mixed; not decidable with < {MIN_SEEDS} seeds, a seed "
            f"whose digit-position accuracy ends within {DIGIT_MARGIN:g} points of chance "
            f"({DIGIT_CHANCE:g} %) or a digit-accuracy curve that had not flattened (last "
            f"{T3_PLATEAU_EPOCHS} epochs moving > {T3_PLATEAU_TOL:g} points)")
    reasons = [_few_seeds(losses)]
    stuck = {k: sum(not learned_digits([a]) for a in v) for k, v in digit_accs.items()}
    if any(stuck.values()):
        reasons.append("; ".join(
            f"{k}: {n} of {len(digit_accs[k])} seeds not beyond chance + {DIGIT_MARGIN:g} "
            f"points on the digits "
            f"({', '.join(f'{a:.1f}' for a in digit_accs[k])} %)"
            for k, n in stuck.items() if n))
    reasons.append(_not_flat(flat, "digit-accuracy curve"))
    return _decide(rule, reasons, [(v, losses[deq]) for k, v in losses.items() if k != deq],
                   LOSS_MARGIN, higher_is_better=False)


def learned_digits(digit_accs: Sequence[float]) -> bool:
    """True when every run's digit-position accuracy (%) beats chance by ``DIGIT_MARGIN``."""
    return all(a > DIGIT_CHANCE + DIGIT_MARGIN for a in digit_accs)


__all__ = [
    "ACC_MARGIN",
    "CHANCE_MARGIN",
    "DIGIT_CHANCE",
    "DIGIT_MARGIN",
    "LOSS_MARGIN",
    "MIN_DEQ_NFE",
    "MIN_SEEDS",
    "PSNR_MARGIN",
    "T1_PLATEAU_EPOCHS",
    "T1_PLATEAU_TOL",
    "T2_PLATEAU_FRACTION",
    "T2_PLATEAU_TOL",
    "T3_PLATEAU_EPOCHS",
    "T3_PLATEAU_TOL",
    "Decision",
    "c3_decision",
    "c4_classification",
    "c4_copy_memory",
    "c4_regression",
    "flattened",
    "learned_digits",
    "plateau_change",
    "window_trend",
]
