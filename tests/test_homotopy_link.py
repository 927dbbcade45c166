"""The checks H1-H10 of the homotopy-link chapter, with its thresholds (a companion choice)."""

from __future__ import annotations

import itertools
import math

import matplotlib
import pytest
import torch

from deqode.book import schematics
from deqode.chapters import homotopy_link as hl

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def setup() -> hl.Setup:
    return hl.make_toy(seed=0)


def test_the_toy_is_seeded_contractive_float64(setup):
    again = hl.make_toy(seed=0)
    assert torch.equal(setup.toy.W, again.toy.W) and torch.equal(setup.z0, again.z0)
    assert setup.toy.W.dtype == torch.float64
    assert float(torch.linalg.matrix_norm(setup.toy.W, ord=2)) == pytest.approx(0.9)
    assert float((setup.z_star - setup.toy(setup.z_star)).norm()) < 1e-14
    z = torch.randn(3, 5, dtype=torch.float64)
    from deqode.solvers.homotopy import batch_jacobian

    assert torch.allclose(setup.toy.jacobian(z), batch_jacobian(setup.toy, z), atol=1e-14)
    assert not torch.equal(hl.make_toy(seed=1).toy.W, setup.toy.W)


def test_h1_fixed_point_homotopy_endpoint(setup):
    r = hl.check_h1(setup)
    assert r.residual_rk4 < 1e-10  # issue: < 1e-10 in float64 (RK4, 400 steps)
    assert r.residual_dopri5 < 1e-8  # the chapter's threshold (dopri5 at 1e-10)
    assert r.error_to_newton < 1e-10
    r.assert_passed()


def test_h2_fig1_field_from_zero(setup):
    r = hl.check_h2(setup)
    assert r.residual < 1e-8
    assert r.max_difference_to_fixed_point_homotopy < 1e-12
    r.assert_passed()


def test_h3_fig1_field_from_nonzero_start_conserves_z_minus_lambda_f(setup):
    r = hl.check_h3(setup)
    assert r.residual > 1e-2
    assert r.conserved_end < 1e-8 and r.conserved_max < 1e-8
    assert r.residual == pytest.approx(r.norm_z0, abs=1e-8)
    r.assert_passed()


def test_h4_newton_homotopy_residual_is_linear_in_lambda(setup):
    r = hl.check_h4(setup)
    assert r.residual < 1e-8 and r.max_linear_decay_error < 1e-8
    r.assert_passed()


def test_h5_newton_flow_decays_like_exp_minus_t(setup):
    # 100 RK4 steps per unit time keep the file fast; the notebook runs the chapter's 400
    r = hl.check_h5(setup, horizons=(1, 5, 20), steps_per_unit=100)
    assert r.horizons == (1.0, 5.0, 20.0)
    for T, ratio, err in zip(r.horizons, r.ratios, r.relative_errors, strict=True):
        assert err < 1e-6
        assert ratio == pytest.approx(math.exp(-T), rel=1e-6)
    assert r.ratios[0] > 0.3  # at T = 1 the residual is still O(||g(z0)||)
    r.assert_passed()


def test_h6_one_euler_step_is_one_newton_step(setup):
    r = hl.check_h6(setup)
    assert r.max_difference <= 1e-14
    assert r.error_after < r.error_before**2 * 10
    r.assert_passed()


def test_h7_naive_flow_and_picard(setup):
    r = hl.check_h7(setup)
    assert r.euler_picard_difference < 1e-15
    assert r.picard_history_difference < 1e-12
    assert math.exp(-1.9) < r.ratio_T1 < math.exp(-0.1)
    assert r.residual_T_large < 1e-8
    r.assert_passed()


def test_broyden_sits_between_newton_and_picard(setup):
    r = hl.check_quasi_newton(setup, tol=1e-12)
    assert all(r.converged.values())
    assert r.iterations["newton"] < r.iterations["broyden"] < r.iterations["picard"]
    assert r.residuals["broyden"][1] == pytest.approx(r.residuals["picard"][1], rel=1e-12)
    r.assert_passed()


def test_h8_neural_ode_reading_is_additive_injection(setup):
    r = hl.check_h8(setup)
    assert r.additive_residual < 1e-8 and r.distance_to_additive_deq < 1e-8
    assert r.plain_residual_min > 1e-2
    r.assert_passed()


def test_h9_anode_frozen_versus_drifting_condition(setup):
    r = hl.check_h9(setup)
    assert r.frozen_residual < 1e-8
    assert r.drifting_residual_final_h > 1e-2
    r.assert_passed()


def test_h10_nfe_versus_start_distance(setup):
    r = hl.check_h10(setup)
    assert r.epsilons[0] == 0.0
    assert r.path_deviation_at_zero < 1e-12
    assert r.nfe["fixed_point"][0] <= r.nfe["fixed_point"][-1]
    for lengths in r.path_lengths.values():
        assert all(a < b for a, b in itertools.pairwise(lengths))
    for nfe in r.nfe.values():  # the smallest positive ε is cheaper than the largest
        assert nfe[1] < nfe[-1]
    r.assert_passed()


def test_h10_conditions_fail_when_a_far_start_is_cheaper():
    record = hl.H10.record(dict(
        epsilons=(0.0, 1e-3, 1.0),
        nfe={"fixed_point": (32, 60, 50), "newton": (32, 14, 50)},
        end_residuals={"fixed_point": (0.0, 1e-7, 1e-7), "newton": (0.0, 1e-7, 1e-7)},
        path_lengths={"fixed_point": (0.0, 1e-3, 1.0), "newton": (0.0, 2e-3, 1e-3)},
        path_deviation_at_zero=0.0,
        rtol=1e-6,
    ))
    failed = [c.name for c in record.conditions() if not c.ok]
    assert failed == ["NFE fixed_point at ε = 0.001 (bound: NFE at ε = 1)",
                      "path length in z grows strictly with ε (both homotopies)"]


def test_turning_point_against_the_closed_form():
    lam_exact, x_exact = hl.turning_point_closed_form(-2.0)
    assert lam_exact == pytest.approx(0.11814602960478812)
    assert x_exact == pytest.approx(-(2 + math.sqrt(3)))
    r = hl.check_turning_point()
    assert abs(r.lam_turn - lam_exact) < 1e-7 and abs(r.x_turn - x_exact) < 1e-5
    assert not r.fail_reached_end and r.fail_lam_at_s_max < lam_exact
    assert "underflow" in r.dopri5_failure
    assert r.success_reached_end and abs(r.success_end_x - 1) < 1e-7
    r.assert_passed()
    no_failure = r.replace(dopri5_failure="no failure", dopri5_furthest_lam=1.0)
    with pytest.raises(AssertionError, match="step-size underflow"):
        no_failure.assert_passed()
    with pytest.raises(ValueError, match="a = -2"):
        hl.turning_point_closed_form(2.0)


def test_a_failed_condition_raises_with_the_numbers():
    condition = hl.Condition("residual", 0.5, "<", 1e-8)
    assert not condition.ok and "0.5 < 1e-08: FAILED" in str(condition)
    record = hl.H2.record(dict(residual=0.5, max_difference_to_fixed_point_homotopy=0.0))
    with pytest.raises(AssertionError, match=r"H2 failed: \|\|g\(z\(1\)\)\|\| = 0\.5"):
        record.assert_passed()


def test_the_pipeline_schematic_shows_both_formulas():
    fig = schematics.pipeline_figure()
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert schematics.FIG1_FORMULA in texts and schematics.CORRECTED_FORMULA in texts
    assert {"Neural ODE", "HomoODE", "DEQ"} <= set(texts)
    assert r"- z_0" in schematics.CORRECTED_FORMULA and "z_0" not in schematics.FIG1_FORMULA
    matplotlib.pyplot.close(fig)


def test_a_check_record_reads_its_numbers_and_artifacts_and_names_what_is_missing():
    record = hl.H2.record(dict(residual=1e-9, max_difference_to_fixed_point_homotopy=0.0),
                          path="a path")
    assert record.residual == 1e-9 and record.path == "a path" and record.check_id == "H2"
    assert list(record.numbers()) == ["residual", "max_difference_to_fixed_point_homotopy"]
    assert record.passed and not record.replace(residual=0.5).passed and record.passed
    with pytest.raises(AttributeError, match=r"no 'nfe'.*'max_difference_to_fixed_point"):
        _ = record.nfe
    with pytest.raises(ValueError, match=r"H2 has no numbers \['nfe'\]; valid: \['residual'"):
        record.replace(nfe=3)
    with pytest.raises(ValueError, match=r"\['passed', 'residual'\]"):
        hl.H2.record(dict(residual=0.5, passed=True), residual=0.1)
