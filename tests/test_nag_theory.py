"""The NAG theory chapter's summaries and figures (chapters.nag.theory: studies, figures)."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

from deqode.chapters.nag import theory as nag

matplotlib.use("Agg")


def _n_axes(fig) -> int:
    import matplotlib.pyplot as plt

    n = len(fig.axes)
    plt.close(fig)
    return n


@pytest.mark.filterwarnings("ignore:No artists with labels")
def test_unscaled_summary_levels_off_against_f_and_converges_to_the_rescaled_field() -> None:
    records = nag.unscaled_study(problems=("decay",), betas=(0.3,), steps=(20, 80, 320, 1280))
    (row,) = nag.unscaled_summary(records)
    assert (row["problem"], row["beta"], row["n"]) == ("decay", 0.3, 1280)
    assert row["ratios"].shape == (2,) and (row["ratios"] > 0.8).all()
    assert 0.9 <= row["slope_vs_scaled"] <= 1.1
    assert row["error_vs_f"] == pytest.approx(records[-2]["error"])  # target "f" at n = 1280
    assert _n_axes(nag.unscaled_figure(records)) == 3


def test_schedule_series_picks_one_schedule_and_target_sorted_by_n() -> None:
    records = nag.schedule_study(steps=(320, 80))
    memory = nag.schedule_series(records, "nesterov", "memory ODE")
    assert memory["n"].tolist() == [80, 320]
    assert set(memory["schedule"]) == {"nesterov"} and set(memory["target"]) == {"memory ODE"}
    const = nag.schedule_series(records, "const", "x'=f")
    exact = nag.schedule_series(records, "nesterov", "x'=f")
    assert _n_axes(nag.schedule_figure(const, exact, memory)) == 1


def test_plugin_checks_match_the_standalone_loop() -> None:
    checks = nag.plugin_checks(n=20)
    assert checks["variants"] == 8 and checks["loop_gap"] <= 1e-12
    assert checks["same_as_euler"] and checks["nfe"] == checks["steps"] == 20
    assert checks["tuple_gap"] <= 1e-14 and checks["backward_gap"] <= 1e-12


def test_order_stability_and_adjoint_figures_draw() -> None:
    records = nag.order_study(problems=("decay", "logistic", "linear2d"), betas=(0.0, 0.3),
                              steps=(20, 40), starts=("euler",))
    assert _n_axes(nag.order_figure(records)) == 3
    assert _n_axes(nag.stability_figure(fine=False)) == 3
    adjoint = nag.adjoint_gradient_study(steps=(0.05,))
    assert _n_axes(nag.adjoint_figure(adjoint)) == 1
    assert np.isfinite([r["adjoint_error"] for r in adjoint]).all()
