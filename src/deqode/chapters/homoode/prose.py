"""HomoODE chapter: the prose of notebooks 02-04 that carries measured numbers.

A sentence whose wording is fixed lives in a markdown cell of its notebook and takes its numbers
from myst-nb ``glue`` (``{glue:text}`name:.1f```): the ``*_values`` functions here return those
numbers by name, raw (percentages already multiplied by 100), and the notebook glues them with
:func:`deqode.book.notebook.glue_values`. Text whose shape depends on the run (one paragraph per
dataset or seed pair, a paragraph shown in one profile only) is built here as Markdown and glued
whole (``{glue:md}``) with :func:`deqode.book.notebook.glue_markdown`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from deqode.chapters.homoode.configs import DATASET_TITLES
from deqode.choices import GRAD_MODES

# ------------------------------------------------------------------------------------------------
# Chapter 02 (the comparison)
# ------------------------------------------------------------------------------------------------


def comparison_reading(by: Mapping[tuple[str, str], Mapping[str, Any]],
                       first_seed: Mapping[str, int]) -> str:
    """One paragraph per dataset of ``first_seed`` (Markdown): the rows ranked by best test
    accuracy, and the saved-tensor memory and NFE of HomoODE, the DEQ and the Neural ODE.

    ``by`` maps (dataset key, row label) to the run record of the dataset's first seed.
    """
    paragraphs = []
    for key, seed in first_seed.items():
        homo, deq, node = by[key, "HomoODE"], by[key, "DEQ"], by[key, "Neural ODE"]
        ranking = sorted((r for (k, _), r in by.items() if k == key), key=lambda r: -r["best_acc"])
        paragraphs.append(
            f"**{DATASET_TITLES[key]}, seed {seed}.** Best test accuracy: "
            + ", ".join(f"{r['label']} {100 * r['best_acc']:.1f} % "
                        f"(last {100 * r['last_acc']:.1f} %)" for r in ranking)
            + f". HomoODE ({homo['gradient']}) held {homo['saved_mb']:.2f} MB of saved tensors "
            f"per step at {homo['nfe_forward']:.1f} forward NFE; the DEQ, whose implicit gradient "
            f"keeps only the last application of f, held {deq['saved_mb']:.2f} MB at "
            f"{deq['nfe_forward']:.1f} forward and {deq['nfe_backward']:.1f} backward NFE; the "
            f"Neural ODE {node['saved_mb']:.2f} MB.")
    return "\n\n".join(paragraphs)


def comparison_smoke_text(record: Mapping[str, Any], n_test: int) -> str:
    """What the smoke-scale comparison can and cannot show (Markdown), from the HomoODE run
    ``record`` and the size of its test set."""
    return (
        f"**What the smoke scale can and cannot show.** {record['epochs']} epochs of "
        f"{record['iterations_per_epoch']} iterations on 8×8 digits with models of about "
        f"{record['params']:,} parameters cannot rank the models on CIFAR-10, CIFAR-100 or "
        "Tiny-ImageNet: the accuracies above are far from converged, come from one seed and rest "
        f"on {n_test} test images (one image is {100 / n_test:.2f} points), so no accuracy claim "
        "of the paper is tested here. The memory comparison is structural and does transfer: "
        "trained by backpropagation through the solver, as the CIFAR-10 script does, HomoODE "
        "stores every dopri5 stage and needs more memory for the backward pass than a DEQ with an "
        "implicit gradient. HomoODE's memory advantage therefore needs an adjoint (exact, or the "
        "scripts' frozen one for CIFAR-100/Tiny-ImageNet), whose memory stays flat in the NFE.")


# ------------------------------------------------------------------------------------------------
# Chapter 03 (the shared learnable start)
# ------------------------------------------------------------------------------------------------

def ablation_thresholds_text(title: str, n_test: int, nfe_drop: float, acc_margin: float) -> str:
    """The C2 thresholds of one dataset, in images of its test set (Markdown)."""
    return (f"*Thresholds:* NFE lower by at least {nfe_drop:.0%}; accuracy margin "
            f"{100 * acc_margin:.0f} points, {acc_margin * n_test:.1f} of the {n_test} "
            f"{title} test images.")


def ablation_pair_text(verdict: Mapping[str, Any], ends: Mapping[str, Mapping[str, Any]],
                       drift: Mapping[str, Mapping[str, Any]], tol: float,
                       nfe_drop: float) -> str:
    """One with/without pair of the C2 ablation in words (Markdown): forward and test NFE,
    accuracies, how far the learned start moved and how near the end points each start ends
    (``ends`` from :func:`.probes.end_point_gaps`, ``drift`` from
    :func:`.probes.init_point_drift`)."""
    w, wo = verdict["with"], verdict["without"]
    ratio, lower, equal = verdict["nfe_ratio"], verdict["lower"], verdict["equal"]
    gap_w, gap_wo = ends[w["experiment"]]["mean_gap"], ends[wo["experiment"]]["mean_gap"]
    return (
        f"**{DATASET_TITLES[w['key']]}, seed {w['seed']}, {w['epochs']} epochs at "
        f"{tol:g}.** Forward NFE per training batch, mean over the epochs: "
        f"{w['nfe_forward']:.1f} with the learned start, "
        f"{wo['nfe_forward']:.1f} with the fixed one "
        f"({ratio - 1:+.0%}); test NFE after the last epoch "
        f"{w['history'][-1]['test_nfe_forward']:.0f} vs "
        f"{wo['history'][-1]['test_nfe_forward']:.0f}. "
        f"Best test accuracy {100 * w['best_acc']:.1f} % vs {100 * wo['best_acc']:.1f} %, last "
        f"{100 * w['last_acc']:.1f} % vs {100 * wo['last_acc']:.1f} %. "
        "The learned start moved by up "
        f"to {drift[w['experiment']]['max_change']:.2f} per channel and ends "
        f"{gap_w:.2f} from the mean end point, the fixed ±1 start {gap_wo:.2f} "
        f"(init loss on the test set {ends[w['experiment']]['init_loss']:.3f} vs "
        f"{ends[wo['experiment']]['init_loss']:.3f}). "
        + ("**In this pair the learned start lowered the forward NFE at equal accuracy**, the "
           "direction C2 claims; how much of the drop is the start's, one pair cannot tell "
           "(below)." if lower and equal else
           "**Not shown here:** "
           + (f"the forward NFE did not drop by {nfe_drop:.0%}" if not lower else "")
           + (" and " if not lower and not equal else "")
           + ("the accuracy was not equal" if not equal else "") + "."))


def _sweep_row(sweep: Sequence[Mapping[str, Any]], label: str, tol: float) -> Mapping[str, Any]:
    row = next((r for r in sweep if r["label"] == label and r["tol"] == tol), None)
    if row is None:
        raise KeyError(f"the start sweep has no row {label!r} at tol {tol:g}; its rows: "
                       f"{sorted({(r['label'], r['tol']) for r in sweep})}")
    return row


#: Glue names of the learned field's other starts (rows of :func:`.probes.start_sweep`).
OTHER_STARTS = {"learned field, ±1 start": "pm1", "learned field, zero start": "zero",
                "learned field, end-point mean start": "mean"}


def other_starts_values(sweep: Sequence[Mapping[str, Any]], learned: str, seed: int,
                        tol: float) -> dict[str, Any]:
    """The numbers of "the same field from other starts" at ``tol``, by glue name:
    ``starts_<start>_nfe``, ``starts_<start>_gap`` (mean gap) and ``starts_<start>_acc`` (%)
    for the learned start (``own``) and each of :data:`OTHER_STARTS`; ``starts_seed``,
    ``starts_tol``."""
    values: dict[str, Any] = {"starts_seed": int(seed), "starts_tol": f"{tol:.0e}"}
    for label, name in {learned: "own", **OTHER_STARTS}.items():
        row = _sweep_row(sweep, label, tol)
        values[f"starts_{name}_nfe"] = int(row["nfe"])
        values[f"starts_{name}_gap"] = float(row["mean_gap"])
        values[f"starts_{name}_acc"] = 100 * float(row["acc"])
    return values


def init_point_smoke_text(*, sweep: Sequence[Mapping[str, Any]],
                          verdicts: Sequence[Mapping[str, Any]],
                          ends: Mapping[str, Mapping[str, Any]], released: Mapping[str, Any],
                          cifar10_reach: float, learned: str, fixed: str, loosest: float,
                          tol: float, nfe_drop: float, acc_margin: float) -> str:
    """What the smoke-scale ablation can and cannot show about C2 (Markdown): the released
    start's reach (``released``: the smoke row of :func:`.configs.init_reach_table`), the end-point
    gaps, the NFE changes per seed and the init loss of the first pair."""
    pairs = [(v["with"], v["without"]) for v in verdicts]
    drop = [v["lower"] for v in verdicts]
    n_equal = sum(v["equal"] for v in verdicts)
    channels = released["C"]
    fixed_gap = ends[pairs[0][1]["experiment"]]["mean_gap"]
    losses = [h["init_loss"] for h in pairs[0][0]["history"] if h.get("init_loss") is not None]
    changes = ", ".join(f"seed {w['seed']} {w['nfe_forward'] / wo['nfe_forward'] - 1:+.0%}"
                        for w, wo in pairs)
    return (
        "**What the smoke scale can and cannot show.** "
        "*At the released settings it cannot show C2 either way:* "
        f"at {loosest:.0e} the two trained "
        f"models need {_sweep_row(sweep, learned, loosest)['nfe']} and "
        f"{_sweep_row(sweep, fixed, loosest)['nfe']} forward "
        f"evaluations of the test batch, on or near dopri5's floor of 20, and the released smoke "
        f"lr_init {released['lr_init']:g} every {released['freq']} iterations gives "
        f"the start a reach of {released['reach']:.3f} in {released['iterations']} "
        f"iterations, against {fixed_gap / channels ** 0.5:.2f} per channel (root mean square) "
        "between the ±1 start and the mean end point of the trained model without init layer: "
        "SGD can shift and scale the start only a little (the CIFAR-10 script's reach is "
        f"{cifar10_reach:.2f}). "
        f"*With the ablation's settings* ({tol:g}, a start that can reach the end points) the "
        "trained start does end much nearer the mean end point than the fixed one, the "
        "precondition of the mechanism, and the forward NFE "
        + (f"dropped by at least {nfe_drop:.0%}" if all(drop) else
           f"did not drop by {nfe_drop:.0%}" if not any(drop) else
           f"dropped by {nfe_drop:.0%} for some seeds only")
        + f" in {'this pair' if len(pairs) == 1 else 'these pairs'} ({changes}); the accuracy of "
        "the run with the learned start was equal "
        f"(at most {100 * acc_margin:.0f} points below) in "
        f"{n_equal} of {len(verdicts)} {'pair' if len(verdicts) == 1 else 'pairs'}. "
        "*What it cannot show:* "
        + ("this is one seed, and the run-to-run spread of the NFE at this scale is not measured "
           "here (pass `seeds` to run more pairs); " if len(pairs) == 1 else
           f"these are {len(pairs)} seeds, a small sample of the run-to-run spread; ")
        + "the two runs of a pair differ not only in the start but in their whole trained field "
        "(the field adapts to its start), their dropout masks and the start's initial sign "
        "pattern, so the size of the difference is not an estimate of the effect of the start. "
        f"The init loss of the learned start went from {losses[0]:.3f} to {losses[-1]:.3f} over "
        f"the epochs (F3, seed {pairs[0][0]['seed']}): it is bounded below by the spread of "
        "the end points around their mean, which changes as the field trains, so it does not "
        "measure where the start is; the mean gap does. The homotopy mechanism itself "
        "(a start nearer the "
        "equilibrium shortens the path of a fixed homotopy) is checked on the toy of chapter 1 "
        "(check H10). Whether the learned start lowers the NFE at equal accuracy on CIFAR, over "
        "300 epochs at the released tolerance, needs the paper profile.")


def ablation_reading(verdicts: Sequence[Mapping[str, Any]], ends: Mapping[str, Mapping[str, Any]],
                     drift: Mapping[str, Mapping[str, Any]], *, test_sizes: Mapping[str, int],
                     tol: float, nfe_drop: float, acc_margin: float) -> str:
    """The C2 reading (Markdown): the thresholds per dataset (``test_sizes``: dataset key ->
    test images), then one paragraph per seed pair (:func:`ablation_pair_text`)."""
    parts = [ablation_thresholds_text(DATASET_TITLES[key], n_test, nfe_drop, acc_margin)
             for key, n_test in test_sizes.items()]
    parts += [ablation_pair_text(v, ends, drift, tol, nfe_drop) for v in verdicts]
    return "\n\n".join(parts)


# ------------------------------------------------------------------------------------------------
# Chapter 04 (the gradient modes)
# ------------------------------------------------------------------------------------------------


def _rel_diff(rows: Sequence[Mapping[str, Any]], mode: str, group: str) -> float:
    return float(next(r["rel_diff"] for r in rows if r["mode"] == mode and r["group"] == group))


def frozen_range(gaps: Sequence[Mapping[str, Any]]) -> tuple[float, float]:
    """The smallest and largest per-tensor relative gap of the frozen adjoint on the stem and the
    ODE function (rows of :func:`.probes.gradient_gaps`)."""
    rows = [r for r in gaps if r["mode"] == "frozen_adjoint" and r["group"] in ("field", "stem")]
    return float(min(r["tensor_min"] for r in rows)), float(max(r["tensor_max"] for r in rows))


def gradients_reading_values(*, key: str, gap_tol: float, gaps: Sequence[Mapping[str, Any]],
                             smooth: Sequence[Mapping[str, Any]],
                             records: Sequence[Mapping[str, Any]],
                             memory: Sequence[Mapping[str, Any]], spread: Mapping[str, float],
                             broyden: Mapping[str, Any], homoode_nfe: int) -> dict[str, Any]:
    """The numbers of chapter 04's reading, by glue name (``grad_*``; relative gaps, accuracies,
    growths and shares in %). ``gaps``/``smooth``: :func:`.probes.gradient_gaps` with the ReLU
    and the softplus field; ``memory``: :func:`.probes.memory_vs_nfe`, read at its tightest
    tolerance; ``spread``: per mode, the saved-tensor peak's growth over that sweep (a fraction);
    ``broyden``: the DEQ's Broyden trace of :func:`.probes.deq_residual_traces`."""
    low, high = frozen_range(gaps)
    values: dict[str, Any] = {
        "grad_data": DATASET_TITLES.get(key, key), "grad_tol": f"{gap_tol:g}",
        "grad_frozen_field": 100 * _rel_diff(gaps, "frozen_adjoint", "field"),
        "grad_frozen_stem": 100 * _rel_diff(gaps, "frozen_adjoint", "stem"),
        "grad_adjoint_field": 100 * _rel_diff(gaps, "adjoint", "field"),
        "grad_adjoint_smooth": 100 * _rel_diff(smooth, "adjoint", "field"),
        "grad_frozen_low": low, "grad_frozen_high": high,
    }
    by_mode = {r["label"]: r for r in records if r["key"] == key}
    for mode in GRAD_MODES:
        values[f"grad_best_{mode}"] = 100 * float(by_mode[mode]["best_acc"])
        values[f"grad_last_{mode}"] = 100 * float(by_mode[mode]["last_acc"])
        values[f"grad_growth_{mode}"] = 100 * float(spread[mode])
    tightest = min(r["tol"] for r in memory)
    values["grad_memory_tol"] = f"{tightest:g}"
    for mode in ("backprop", "adjoint"):
        row = next(r for r in memory if r["mode"] == mode and r["tol"] == tightest)
        values[f"grad_{mode}_mb"] = float(row["saved_mb"])
        values[f"grad_{mode}_nfe"] = int(row["nfe_forward"])
        if mode == "adjoint":  # backprop has no backward solve
            values["grad_adjoint_nfe_bwd"] = int(row["nfe_backward"])
    values["grad_broyden_failed"] = 100 * float(broyden["failed"])
    values["grad_broyden_nfe"] = int(broyden["nfe"])
    values["grad_homoode_nfe"] = int(homoode_nfe)
    return values


def gradients_smoke_text(low: float, high: float) -> str:
    """What the smoke-scale gradient study can and cannot show (Markdown); ``low``/``high``:
    :func:`frozen_range`."""
    return (
        "**What the smoke scale can and cannot show.** The gradient gaps and the memory behaviour "
        "are properties of the modes and show at any scale: the frozen adjoint is a biased "
        "gradient for the stem and the ODE function (how far off depends on the model and its "
        f"training: {low:.2f} to {high:.2f} per tensor here, 0.93 to 1.02 on a small HomoNet "
        "under the released code), exact for the head, with the memory of an adjoint; backprop's "
        "memory grows with the NFE, the adjoints' does not. What a few epochs on digits cannot "
        "show is what the approximate gradient costs in accuracy at the paper's scale: the three "
        "accuracies above come from short runs of one seed, and the CIFAR-100 and Tiny-ImageNet "
        "scripts would have to be rerun with the exact gradient (the registered "
        "`homoode-backprop-cifar100`, `homoode-adjoint-cifar100`, and the same for `tiny`) to "
        "measure it. The DEQ's residuals depend on its training; a smoke DEQ is not a converged "
        "MDEQ, so the share of unconverged samples is an illustration, not a measurement of the "
        "paper's baseline.")
