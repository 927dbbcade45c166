"""Chapters 02-04's tables and texts (chapters.homoode.tables and .prose): per-seed columns,
histories, the pair summaries and the numbers glued into the prose."""

from __future__ import annotations

import pytest

from deqode.chapters import homoode as chapter
from deqode.chapters.homoode import prose, tables


def _record(init: bool, seed: int, nfe: float, best: float, last: float) -> dict:
    name = f"{'homoode' if init else 'homoode-noinit'}-s{seed}"
    return {"experiment": name, "key": "digits", "seed": seed, "init_params": 24 if init else 0,
            "nfe_forward": nfe, "nfe_backward": nfe, "best_acc": best, "last_acc": last,
            "label": "HomoODE, learned z0" if init else "HomoODE without shared init (±1)",
            "state": "completed", "params": 1000, "test_nfe": 20.0, "saved_mb": None,
            "cuda_mb": None, "epoch_s": 1.0, "epochs": 2,
            "history": [{"test_nfe_forward": 22.0, "init_loss": 0.5 if init else None},
                        {"test_nfe_forward": 20.0, "init_loss": 0.25 if init else None}]}


def test_ours_per_seed_tags_columns_only_when_there_are_several_seeds() -> None:
    one = [_record(True, 0, 27.0, 0.9, 0.9)]
    assert tables.ours_per_seed(one, "smoke", ("test NFE",)) == tables.ours_by_label(
        one, "smoke", ("test NFE",))
    two = [*one, _record(True, 1, 30.0, 0.8, 0.8)]
    cells = tables.ours_per_seed(two, "smoke", ("test NFE",))
    assert list(cells["HomoODE, learned z0"]) == ["digits test NFE (smoke, seed 0)",
                                                  "digits test NFE (smoke, seed 1)"]


def test_history_series_skips_missing_values() -> None:
    history = [{"x": 1.0}, {"x": None}, {}, {"x": 2.5}]
    assert tables.history_series(history, "x", "4.1f") == " 1.0  2.5"


def test_pair_and_smoke_texts_follow_the_verdicts() -> None:
    records = [_record(True, 0, 27.0, 0.90, 0.90), _record(False, 0, 30.0, 0.91, 0.91)]
    (verdict,) = chapter.ablation_verdicts(records)
    ends = {r["experiment"]: {"mean_gap": 0.2 if r["init_params"] else 2.0, "init_loss": 0.1}
            for r in records}
    drift = {"homoode-s0": {"max_change": 0.5}}
    text = prose.ablation_pair_text(verdict, ends, drift, 1e-3, 0.10)
    assert text.startswith("**digits, seed 0, 2 epochs at 0.001.**")
    assert "27.0 with the learned start, 30.0 with the fixed one (-10%)" in text
    assert "**In this pair the learned start lowered the forward NFE at equal accuracy**" in text
    sweep = [{"label": label, "tol": tol, "nfe": nfe, "mean_gap": 0.1, "acc": 0.9}
             for label, nfe in (("HomoODE, learned z0", 20), ("learned field, zero start", 26),
                                ("HomoODE without shared init (±1)", 21))
             for tol in (1e-3, 1e-6)]
    with pytest.raises(KeyError, match="learned field, ±1 start"):  # the sweep lacks that row
        prose.other_starts_values(sweep, "HomoODE, learned z0", 0, 1e-6)
    sweep += [{**row, "label": label} for row in sweep if row["label"].startswith("learned field")
              for label in ("learned field, ±1 start", "learned field, end-point mean start")]
    others = prose.other_starts_values(sweep, "HomoODE, learned z0", 0, 1e-6)
    assert others["starts_zero_nfe"] == 26 and others["starts_own_nfe"] == 20
    assert others["starts_zero_acc"] == pytest.approx(90.0) and others["starts_tol"] == "1e-06"
    released = {"C": 4, "lr_init": 0.01, "freq": 1, "reach": 0.02, "iterations": 10}
    smoke = prose.init_point_smoke_text(
        sweep=sweep, verdicts=[verdict], ends=ends, released=released, cifar10_reach=3.0,
        learned="HomoODE, learned z0", fixed="HomoODE without shared init (±1)", loosest=1e-3,
        tol=1e-3, nfe_drop=0.10, acc_margin=0.02)
    assert "models need 20 and 21 forward evaluations" in smoke
    assert "dropped by at least 10% in this pair (seed 0 -10%)" in smoke
    assert "went from 0.500 to 0.250" in smoke and "1.00 per channel" in smoke


def test_thresholds_text_counts_test_images() -> None:
    text = prose.ablation_thresholds_text("digits", 180, 0.10, 0.02)
    assert text == ("*Thresholds:* NFE lower by at least 10%; accuracy margin 2 points, 3.6 of "
                    "the 180 digits test images.")


@pytest.mark.parametrize("name", ["end_point_gaps"])
def test_probes_export(name: str) -> None:
    from deqode.chapters.homoode import probes

    assert callable(getattr(probes, name))
