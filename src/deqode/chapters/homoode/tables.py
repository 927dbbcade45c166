"""HomoODE chapter: tables, ours next to the paper's cells of ``data/reference/homoode.csv``."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from deqode.chapters.homoode.configs import (
    CPU_DATASET,
    DATASET_TITLES,
    MODELS,
    PAPER_SCRIPTS,
    chapter_config,
    hyperparameters,
    iterations_per_epoch,
)
from deqode.choices import check_choice
from deqode.results import load_reference, reference_value


def _fmt(value: Any, spec: str) -> str:
    return "–" if value is None else format(value, spec)


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def reference_rows(table: str | None = None) -> list[dict[str, str]]:
    """Rows of ``data/reference/homoode.csv`` (of ``table`` only, when given)."""
    rows = load_reference("homoode")
    return [r for r in rows if table is None or r["table"] == table]


def reference_cell(table: str, row: str, column: str) -> str:
    """A reference cell, ``not transcribed`` when absent or empty."""
    return reference_value(reference_rows(table), table, row, column)


def side_by_side(table: str, rows: Sequence[str], paper_columns: Sequence[str],
                 ours: Mapping[str, Mapping[str, str]]):
    """A DataFrame, one row per model: ``<column> (paper)`` read from the reference (``–`` for a
    row the paper's table does not have, e.g. our extra ablation row), then our columns as given
    (their names carry the profile label). Missing cells of ours print as ``–``."""
    import pandas as pd

    paper_rows = {r["row"] for r in reference_rows(table)}
    our_columns: list[str] = []
    for row in rows:
        our_columns += [c for c in ours.get(row, {}) if c not in our_columns]
    data = []
    for row in rows:
        entry: dict[str, str] = {"model": row}
        for column in paper_columns:
            entry[f"{column} (paper)"] = (reference_cell(table, row, column) if row in paper_rows
                                          else "–")
        for column in our_columns:
            entry[column] = ours.get(row, {}).get(column, "–")
        data.append(entry)
    return pd.DataFrame(data).set_index("model")


OUR_COLUMNS = ("best acc %", "last acc %", "params", "NFE fwd/bwd", "test NFE",
               "saved-tensor peak MB", "CUDA peak MB", "s/epoch")


def ours_by_label(records: Sequence[dict[str, Any]], profile_label: str,
                  kinds: Sequence[str] = OUR_COLUMNS) -> dict[str, dict[str, str]]:
    """Our cells per row label, for the ``kinds`` of :data:`OUR_COLUMNS` (in that order).

    Column names read ``<dataset> <kind> (<profile_label>)``, e.g. ``digits best acc % (smoke)``;
    a failed run's accuracies carry ``(failed)``. A row with several seeds shows the accuracies as
    ``mean ± std (per seed: ...)`` and the other numbers as means over the seeds.
    """
    from deqode.book import claims

    for kind in kinds:
        check_choice("column kind", kind, OUR_COLUMNS)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["label"], r["key"]), []).append(r)
    out: dict[str, dict[str, str]] = {}
    for (label, key), runs in groups.items():
        status = "" if all(r["state"] != "failed" for r in runs) else " (failed)"

        def mean(name: str, runs: list[dict[str, Any]] = runs) -> float | None:
            values = [r[name] for r in runs if r[name] is not None]
            return sum(values) / len(values) if values else None

        def acc(name: str, runs: list[dict[str, Any]] = runs) -> str:
            values = [r[name] for r in runs]
            if any(v is None for v in values):
                return "–"
            if len(values) == 1:
                return _pct(values[0])
            return claims.summarise([100 * v for v in values], digits=1)

        values = {
            "best acc %": acc("best_acc") + status, "last acc %": acc("last_acc") + status,
            "params": _fmt(runs[0]["params"], ","),
            "NFE fwd/bwd": f"{_fmt(mean('nfe_forward'), '.1f')} / "
                           f"{_fmt(mean('nfe_backward'), '.1f')}",
            "test NFE": _fmt(mean("test_nfe"), ".1f"),
            "saved-tensor peak MB": _fmt(mean("saved_mb"), ".2f"),
            "CUDA peak MB": _fmt(mean("cuda_mb"), ".0f"), "s/epoch": _fmt(mean("epoch_s"), ".2f"),
        }
        data = DATASET_TITLES.get(key, key)
        cells = out.setdefault(label, {})
        for kind in kinds:
            cells[f"{data} {kind} ({profile_label})"] = values[kind]
    return out


def matched_parameters(records: Sequence[dict[str, Any]], *, reference: str = "HomoODE"
                       ) -> dict[str, tuple[int, float]]:
    """Per row label: (parameter count, count / ``reference``'s − 1), from the trained runs."""
    counts = {r["label"]: int(r["params"]) for r in records}
    base = counts[reference]
    return {label: (count, count / base - 1) for label, count in counts.items()}


def released_parameters(label: str) -> str:
    """HomoODE's parameter counts of the released classes on CIFAR-10 / CIFAR-100 / Tiny-ImageNet
    (reference table T4, code-derived), ``–`` for the other rows."""
    if not label.startswith("HomoODE"):
        return "–"
    counts = [int(reference_cell("T4", f"homoode-{key}", "total")) for key in PAPER_SCRIPTS]
    text = " / ".join(f"{c:,}" for c in counts)
    if "without" in label:
        return text
    inits = [int(reference_cell("T4", f"homoode-{key}", "init")) for key in PAPER_SCRIPTS]
    return f"{text} (init layer +{' / +'.join(str(c) for c in inits)})"


def comparison_table(records: Sequence[dict[str, Any]]):
    """All our numbers of the main comparison, one row per run (cells formatted as text)."""
    import pandas as pd

    rows = [{
        "model": r["label"], "dataset": DATASET_TITLES.get(r["key"], r["key"]), "seed": r["seed"],
        "state": r["state"], "gradient": r["gradient"], "params": _fmt(r["params"], ","),
        "best acc %": _pct(r["best_acc"]), "best epoch": _fmt(r["best_epoch"], "d"),
        "last acc %": _pct(r["last_acc"]), "NFE fwd": _fmt(r["nfe_forward"], ".1f"),
        "NFE bwd": _fmt(r["nfe_backward"], ".1f"), "test NFE": _fmt(r["test_nfe"], ".1f"),
        "saved-tensor peak MB": _fmt(r["saved_mb"], ".2f"),
        "CUDA peak MB": _fmt(r["cuda_mb"], ".0f"),
        "s/epoch": _fmt(r["epoch_s"], ".2f"), "s/train batch": _fmt(r["batch_s"], ".3f"),
    } for r in records]
    return pd.DataFrame(rows).set_index(["dataset", "model", "seed"])


def parameter_counts(keys: Sequence[str] = tuple(PAPER_SCRIPTS)) -> list[dict[str, Any]]:
    """T4: parameters of every build of the paper datasets, by part, instantiated on the CPU.

    ``core`` is the ODE function (HomoODE, Neural ODE, ANODE) or the DEQ cell; ``total`` excludes
    the shared-init layer (``init``), as the released scripts' ``count_parameters`` does. The
    released-code counts (HomoODE only) come from ``data/reference/homoode.csv`` (table T4).
    """
    from deqode import models

    rows = []
    for key in keys:
        for model_name in MODELS:
            model = models.build(f"{model_name}-{key}")
            total = models.count_parameters(model.main_parameters())
            stem = models.count_parameters(model.stem.parameters())
            head = models.count_parameters(model.head.parameters())
            row = {"dataset": DATASET_TITLES[key], "build": f"{model_name}-{key}", "stem": stem,
                   "core": total - stem - head, "head": head, "total": total,
                   "init": models.count_parameters(model.init_parameters())}
            for part in ("stem", "core", "head", "total", "init"):
                value = (reference_cell("T4", f"homoode-{key}", part)
                         if model_name == "homoode" else "–")
                row[f"{part} (released code)"] = value
            rows.append(row)
    return rows


def hyperparameter_table(profile: str, *, epochs: int | None = None) -> list[dict[str, Any]]:
    """T5: :func:`hyperparameters` plus schedule lengths, preprocessing and architecture.

    Read from the configurations the chapter trains (:func:`chapter_config`: in smoke the
    chapter's shortened budget), the dataset recipes and the model builds. ``init lr at end`` is
    the init optimiser's last learning rate over ``lr_init``: its cosine schedule has
    ``T_max`` = all iterations but is stepped only every ``freq`` iterations, so it hardly decays.
    """
    from deqode import models
    from deqode.data import preprocessing

    rows = []
    for row in hyperparameters(profile):
        config = chapter_config(row["experiment"], profile, tag="t5", epochs=epochs)
        per_epoch = iterations_per_epoch(config)
        total = per_epoch * config.epochs
        init_steps = -(-total // config.init_point.freq)
        init_t_max = max(total // config.init_point.scheduler_divisor, 1)
        lr0, eta = config.init_point.lr, config.init_point.eta_min
        end_lr = eta + (lr0 - eta) * (1 + math.cos(math.pi * min(init_steps, init_t_max)
                                                   / init_t_max)) / 2
        # the chapter's recipe where the dataset has one (released scripts, digits), else the
        # dataset's default one, which fit uses (MNIST-8k: plain)
        recipe = "plain" if config.dataset == CPU_DATASET else "homoode"
        prep = preprocessing(config.dataset, recipe)
        arch = models.DATASETS[str(config.model).removeprefix("homoode-")]
        widths = (config.model_kwargs.get("channels", arch.channels),
                  config.model_kwargs.get("final_channels", arch.final_channels))
        rows.append({
            **row, "epochs": config.epochs, "iterations/epoch": per_epoch,
            "schedule T_max": total, "init T_max": init_t_max, "init steps": init_steps,
            "init lr at end / lr_init": round(end_lr / lr0, 3),
            "C / K": f"{widths[0]} / {widths[1]}",
            "GN groups": arch.max_groups, "dropout": arch.dropout,
            "flip p": prep.flip_p,
            "crop": "–" if prep.crop is None else f"{prep.crop} pad {prep.crop_padding}",
            "normalisation": "none" if prep.mean is None else (
                f"mean {tuple(prep.mean)}, std {tuple(prep.std)}"),
        })
    return rows


# ------------------------------------------------------------------------------------------------
# Chapter 03 (the shared learnable start): per-seed columns and histories
# ------------------------------------------------------------------------------------------------


def ours_per_seed(records: Sequence[dict[str, Any]], profile_label: str,
                  kinds: Sequence[str]) -> dict[str, dict[str, str]]:
    """Our cells per row label (:func:`ours_by_label`); one column set per seed when the records
    hold several seeds, tagged ``"<profile_label>, seed <s>"``."""
    seeds = list(dict.fromkeys(r["seed"] for r in records))
    if len(seeds) > 1:
        groups = {s: [r for r in records if r["seed"] == s] for s in seeds}
    else:
        groups = {None: list(records)}
    cells: dict[str, dict[str, str]] = {}
    for s, group in groups.items():
        tagged = profile_label if s is None else f"{profile_label}, seed {s}"
        for label, values in ours_by_label(group, tagged, kinds).items():
            cells.setdefault(label, {}).update(values)
    return cells


def history_series(history: Sequence[Mapping[str, Any]], name: str, spec: str) -> str:
    """The epochs' values of ``name`` formatted with ``spec``, space separated (missing skipped)."""
    return " ".join(format(h[name], spec) for h in history if h.get(name) is not None)
