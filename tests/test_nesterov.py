"""The Nesterov ODE solver (the companion's reconstruction of the paper's rule, derived in the
book's Nesterov-theory chapter): registration, the rule, order, stability, adjoint.

All tolerances are asserted in float64 against closed forms or an independent loop.
"""

from __future__ import annotations

import importlib
import itertools
import math

import numpy as np
import pytest
import sympy as sp
import torch
from torchdiffeq import odeint, odeint_adjoint

import deqode  # noqa: F401  (registers method="nesterov")
from deqode.chapters.nag import theory as nag
from deqode.choices import UnknownChoiceError
from deqode.solvers import nesterov

DT = torch.float64


#: Scalar and 2-D problems: one intra-op thread avoids contention on a shared CPU.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _decay(t, x):
    return -x


# ---- registration ---------------------------------------------------------------------------


def test_import_deqode_registers_for_odeint_and_adjoint():
    table = importlib.import_module("torchdiffeq._impl.odeint").SOLVERS
    assert table["nesterov"] is nesterov.NesterovODE
    assert importlib.import_module("torchdiffeq._impl.adjoint").SOLVERS is table


def test_registration_is_idempotent():
    before = dict(nesterov.solvers_table())
    for _ in range(3):
        nesterov.register()
    after = nesterov.solvers_table()
    assert after.keys() == before.keys() and after["nesterov"] is nesterov.NesterovODE


def test_register_refuses_to_replace_a_foreign_solver():
    table = nesterov.solvers_table()
    table["nesterov"] = table["euler"]
    try:
        with pytest.raises(RuntimeError, match="already has a solver"):
            nesterov.register()
    finally:
        table["nesterov"] = nesterov.NesterovODE


def test_odeint_and_odeint_adjoint_both_run():
    field = nag.LinearField(-1.0)
    t = torch.linspace(0, 1, 5, dtype=DT)
    x0 = torch.ones(1, dtype=DT)
    opts = {"step_size": 0.05, "beta": 0.3}
    a = odeint(field, x0, t, method="nesterov", options=opts)
    b = odeint_adjoint(field, x0, t, method="nesterov", options=opts)
    assert torch.equal(a, b)
    b.sum().backward()
    assert field.a.grad is not None and torch.isfinite(field.a.grad)


# ---- options ----------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [1.0, 1.5, -0.1, float("nan")])
def test_bad_beta_raises(beta):
    x0 = torch.ones(1, dtype=DT)
    t = torch.tensor([0.0, 1.0], dtype=DT)
    with pytest.raises(ValueError, match="0 <= beta < 1"):
        odeint(_decay, x0, t, method="nesterov", options={"step_size": 0.1, "beta": beta})


@pytest.mark.parametrize(
    "options, message",
    [
        ({"betta": 0.3}, "unknown option.*'betta'.*valid choices: 'beta', 'scale'"),
        ({"start": "warm"}, "unknown nesterov start rule 'warm'; valid choices: 'euler', 'zero'"),
        ({"schedule": "cosine"}, "valid choices: 'const', 'nesterov'"),
        ({"interp": "quadratic"}, "valid choices: 'linear', 'cubic'"),
    ],
)
def test_unknown_options_raise_naming_valid_choices(options, message):
    x0 = torch.ones(1, dtype=DT)
    t = torch.tensor([0.0, 1.0], dtype=DT)
    with pytest.raises(UnknownChoiceError, match=message):
        odeint(_decay, x0, t, method="nesterov", options={"step_size": 0.1, **options})


def test_bad_scale_and_conflicting_grid_raise():
    x0 = torch.ones(1, dtype=DT)
    t = torch.tensor([0.0, 1.0], dtype=DT)
    with pytest.raises(TypeError, match="scale must be True or False"):
        odeint(_decay, x0, t, method="nesterov", options={"scale": "yes"})
    with pytest.raises(ValueError, match="mutually exclusive"):
        odeint(_decay, x0, t, method="nesterov",
               options={"step_size": 0.1, "grid_constructor": nesterov.step_grid(0.1)})
    with pytest.raises(ValueError, match="positive"):
        nesterov.step_grid(0.0)


def test_step_grid_snaps_and_clips():
    t = torch.tensor([0.0, 1.0], dtype=DT)
    for n in (12, 49, 98, 103):  # torchdiffeq's own grid adds a sliver step for 49, 98, 103
        grid = nesterov.step_grid(1.0 / n)(None, None, t)
        assert len(grid) == n + 1 and grid[-1] == 1.0
        assert torch.allclose(grid.diff(), torch.full((n,), 1.0 / n, dtype=DT), rtol=1e-12)
    grid = nesterov.step_grid(0.3)(None, None, t)
    assert torch.allclose(grid, torch.tensor([0.0, 0.3, 0.6, 0.9, 1.0], dtype=DT))
    assert len(nesterov.step_grid(5.0)(None, None, t)) == 2


# ---- E5: the rule through torchdiffeq --------------------------------------------------------


@pytest.mark.parametrize("start", nesterov.START_RULES)
@pytest.mark.parametrize("scale", [True, False])
@pytest.mark.parametrize("schedule", nesterov.SCHEDULES)
def test_odeint_equals_the_standalone_loop(start, scale, schedule):
    prob = nag.problem("linear2d")
    n, beta = 40, 0.6
    t = torch.linspace(0.0, 2.0, n + 1, dtype=DT)
    ours = odeint(prob.f(), prob.initial(), t, method="nesterov",
                  options={"step_size": 2.0 / n, "beta": beta, "scale": scale, "start": start,
                           "schedule": schedule})
    loop = nag.reference_loop(prob.f(), prob.initial(), 0.0, 2.0 / n, n, beta, scale, start,
                              schedule)
    assert torch.allclose(ours, loop, rtol=0, atol=1e-12)


def test_beta_zero_is_bitwise_euler():
    f = lambda t, x: -x * torch.sin(t) + torch.cos(3 * t)  # noqa: E731
    x0 = torch.randn(4, dtype=DT, generator=torch.Generator().manual_seed(0))
    t = torch.linspace(0.0, 2.0, 7, dtype=DT)
    grid = nesterov.step_grid(0.05)
    ours = odeint(f, x0, t, method="nesterov", options={"grid_constructor": grid, "beta": 0.0})
    euler = odeint(f, x0, t, method="euler", options={"grid_constructor": grid})
    assert torch.equal(ours, euler)


def test_first_step_of_each_start_rule():
    x0 = torch.ones(1, dtype=DT)
    t = torch.tensor([0.0, 0.1], dtype=DT)
    beta = 0.5
    euler_start = odeint(_decay, x0, t, method="nesterov", options={"beta": beta})[-1]
    zero_start = odeint(_decay, x0, t, method="nesterov", options={"beta": beta, "start": "zero"})
    assert float(euler_start) == pytest.approx(1 - 0.1, abs=1e-15)  # exact Euler step
    assert float(zero_start[-1]) == pytest.approx(1 - (1 - beta**2) * 0.1, abs=1e-15)


def test_tuple_state_and_decreasing_time():
    prob = nag.problem("linear2d")
    n, beta, h = 30, 0.4, 2.0 / 30
    t = torch.linspace(0.0, 2.0, 4, dtype=DT)
    x0 = prob.initial()
    flat = odeint(prob.f(), x0, t, method="nesterov", options={"step_size": h, "beta": beta})

    def split_field(t, state):
        out = prob.f()(t, torch.cat(state))
        return out[:1], out[1:]

    first, second = odeint(split_field, (x0[:1], x0[1:]), t, method="nesterov",
                           options={"step_size": h, "beta": beta})
    assert torch.allclose(torch.cat([first, second], dim=1), flat, rtol=0, atol=1e-14)
    # decreasing time: from t = 2 back to 0, against the loop with a negative step
    back = odeint(prob.f(), x0, torch.tensor([2.0, 0.0], dtype=DT), method="nesterov",
                  options={"step_size": h, "beta": beta})[-1]
    loop = nag.reference_loop(prob.f(), x0, 2.0, -h, n, beta)[-1]
    assert torch.allclose(back, loop, rtol=0, atol=1e-12)


def test_one_evaluation_per_step_and_history_reset_per_call():
    f = nag.CountingFunction(_decay)
    x0 = torch.ones(1, dtype=DT)
    t = torch.linspace(0, 1, 11, dtype=DT)
    first = odeint(f, x0, t, method="nesterov", options={"step_size": 1 / 40, "beta": 0.7})
    assert f.nfe == 40
    second = odeint(f, x0, t, method="nesterov", options={"step_size": 1 / 40, "beta": 0.7})
    assert torch.equal(first, second)  # no momentum carried over from the first call
    class Wrapped:  # what torchdiffeq hands a solver: f(t, x, perturb=...) with callbacks
        def __call__(self, t, x, perturb=None):
            return -x

        def callback_step(self, t0, y0, dt):
            pass

    solver = nesterov.NesterovODE(func=Wrapped(), y0=x0, rtol=0.0, atol=0.0, step_size=0.1,
                                  beta=0.7)
    again = [solver.integrate(t) for _ in range(2)]
    assert torch.equal(again[0], again[1]) and solver.steps_taken == 10


def test_event_handling_runs_with_a_step_size():
    """odeint with an event function: x' = -1 from 1 hits 0 at t = 1 (one Euler-exact path)."""
    x0 = torch.ones(1, dtype=DT)
    down = lambda t, x: -torch.ones_like(x)  # noqa: E731
    event_t, _ = odeint(down, x0, torch.tensor([0.0, 5.0], dtype=DT), method="nesterov",
                        options={"step_size": 0.01, "beta": 0.5},
                        event_fn=lambda t, x: x.sum())
    assert float(event_t) == pytest.approx(1.0, abs=1e-6)


def test_constant_field_is_exact_on_unequal_grids():
    """The variable-step rule keeps x' = const exact on clipped and user grids (any beta)."""
    x0 = torch.zeros(1, dtype=DT)
    one = lambda t, x: torch.ones_like(x)  # noqa: E731
    for beta in (0.3, 0.9):
        clipped = odeint(one, x0, torch.tensor([0.0, 1.0], dtype=DT), method="nesterov",
                         options={"step_size": 0.3, "beta": beta})[-1]
        ragged = odeint(one, x0, torch.tensor([0.0, 1.0], dtype=DT), method="nesterov",
                        options={"beta": beta, "grid_constructor": lambda f, y, t: torch.tensor(
                            [0.0, 0.1, 0.15, 0.5, 0.55, 1.0], dtype=DT)})[-1]
        assert float(clipped) == pytest.approx(1.0, abs=1e-14)
        assert float(ragged) == pytest.approx(1.0, abs=1e-14)


# ---- E0, E1: consistency and order --------------------------------------------------------------


def test_symbolic_error_constants():
    lmm = nag.symbolic_lmm()
    b, c, z = lmm.beta, lmm.c, lmm.z
    assert sp.expand(lmm.rho - (z - 1) * (z - b)) == 0
    assert sp.expand(lmm.sigma - c * ((1 + b) * z - b)) == 0
    C0, C1, C2 = lmm.constants
    assert C0 == 0
    assert sp.simplify(C1 - (1 - b - c)) == 0
    assert sp.simplify(C2 - (sp.Rational(3, 2) - b / 2 - c * (1 + b))) == 0
    assert lmm.at(1 - b)[1] == 0
    assert sp.simplify(lmm.at(1 - b)[2] - (2 * b**2 - b + 1) / 2) == 0
    assert sp.simplify(lmm.at(1)[1] + b) == 0
    normalised = lmm.normalised_error_constant(1 - b)
    assert [float(normalised.subs(b, v)) for v in (0, 0.5)] == [0.5, 1.0]
    assert float(normalised.subs(b, 0.9)) == pytest.approx(8.6, abs=1e-12)


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 0.9])
def test_numeric_error_constants_and_order(beta):
    lmm = nag.symbolic_lmm(max_q=3)
    for scale, c in ((True, 1 - lmm.beta), (False, 1)):
        symbolic = [float(C.subs({lmm.c: c}).subs(lmm.beta, beta)) for C in lmm.constants]
        assert nag.error_constants(beta, scale) == pytest.approx(symbolic, abs=1e-14)
    assert nag.lmm_order(beta, True) == 1  # C2 = (2 beta^2 - beta + 1)/2 > 0
    assert nag.lmm_order(beta, False) == (1 if beta == 0.0 else None)  # c = 1: C1 = -beta


def test_root_condition():
    assert sorted(nag.rho_roots(0.6)) == pytest.approx([0.6, 1.0])
    assert all(nag.satisfies_root_condition(b) for b in (-0.9, 0.0, 0.5, 0.99))
    assert not nag.satisfies_root_condition(1.0)  # double root at 1
    assert not nag.satisfies_root_condition(1.2)


@pytest.mark.parametrize("name", list(nag.PROBLEMS))
@pytest.mark.parametrize("beta", [0.0, 0.3, 0.6])
@pytest.mark.parametrize("start", nesterov.START_RULES)
def test_measured_order_is_one(name, beta, start):
    records = nag.order_study([name], [beta], nag.ORDER_STEPS, [start])
    (fit,) = nag.fitted_orders(records)
    assert abs(fit["order"] - 1.0) <= 0.05, fit
    errors = [r["error"] for r in records]
    assert errors[-1] < 1e-2 * max(1.0, errors[0])


def test_closed_form_of_the_linear_problem_solves_it():
    prob = nag.problem("linear2d")
    for rate in (1.0, 2.5):
        t = np.array([0.0, 0.7, 2.0])
        x = prob.solution(t, rate)
        eps = 1e-6
        derivative = (prob.solution(t + eps, rate) - prob.solution(t - eps, rate)) / (2 * eps)
        for i, ti in enumerate(t):
            rhs = rate * prob.f()(torch.tensor(ti, dtype=DT), torch.tensor(x[i], dtype=DT))
            assert np.allclose(derivative[i], rhs.numpy(), atol=1e-8)
    assert np.allclose(prob.solution(0.0), [[1.0, 0.0]])


# ---- E2: stability --------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 0.7, 0.9])
@pytest.mark.parametrize("scale", [True, False])
def test_stability_interval_matches_closed_form(beta, scale):
    spacing = 1e-4
    grid = nag.real_stability_interval("nesterov", beta, scale, spacing=spacing)
    closed = nag.stability_interval_closed_form(beta, scale)
    assert closed - 1e-12 <= grid <= closed + spacing  # the last stable grid point
    # just outside the interval the method is unstable, just inside stable
    assert nag.max_root_modulus(np.array([closed * (1 + 1e-6)]), beta, scale)[0] > 1
    assert nag.max_root_modulus(np.array([closed * (1 - 1e-6)]), beta, scale)[0] <= 1


def test_stability_interval_is_observed_in_the_solver():
    """x' = λ x with hλ just inside / outside the interval: bounded vs growing iterates."""
    beta, h = 0.7, 0.1
    left = nag.stability_interval_closed_form(beta)
    x0 = torch.ones(1, dtype=DT)
    t = torch.tensor([0.0, 400 * h], dtype=DT)
    for factor, grows in ((0.98, False), (1.02, True)):
        lam = factor * left / h
        x = odeint(lambda t, x, lam=lam: lam * x, x0, t, method="nesterov",
                   options={"step_size": h, "beta": beta})[-1]
        assert (abs(float(x)) > 1.0) == grows


def test_rk_intervals_and_imaginary_axis():
    assert nag.real_stability_interval("euler", spacing=1e-4) == pytest.approx(-2.0, abs=1e-4)
    assert nag.real_stability_interval("rk4", spacing=1e-4) == pytest.approx(-2.7853, abs=2e-4)
    assert not any(nag.imaginary_axis_stable(b) for b in nag.REGION_BETAS)


# ---- E3: the unscaled variant ---------------------------------------------------------------


@pytest.mark.parametrize("name", list(nag.PROBLEMS))
@pytest.mark.parametrize("beta", [0.3, 0.6])
@pytest.mark.parametrize("start", nesterov.START_RULES)
def test_unscaled_variant_equals_scaled_solver_on_rescaled_field(name, beta, start):
    assert nag.unscaled_identity_gap(nag.problem(name), beta, 160, start) <= 1e-12


def test_unscaled_variant_is_inconsistent():
    records = nag.unscaled_study(["decay", "linear2d"], [0.3, 0.6], (80, 320, 1280))
    for name in ("decay", "linear2d"):
        for beta in (0.3, 0.6):
            rows = [r for r in records if r["problem"] == name and r["beta"] == beta]
            to_f = [r["error"] for r in rows if r["target"] == "f"]
            to_scaled = [r for r in rows if r["target"] == "f/(1-beta)"]
            assert all(b / a > 0.8 for a, b in itertools.pairwise(to_f))  # levels off
            order = nag.fit_order([r["h"] for r in to_scaled[-2:]],
                                  [r["error"] for r in to_scaled[-2:]], last=2)
            assert 0.9 <= order <= 1.1


# ---- E4: the schedule -----------------------------------------------------------------------


def test_memory_ode_series_solves_the_memory_ode():
    t, lam = np.array([0.3, 1.0, 2.0]), -1.0
    eps = 1e-5
    x = nag.memory_ode_linear(lam, 1.0, t)
    d1 = (nag.memory_ode_linear(lam, 1.0, t + eps) - nag.memory_ode_linear(lam, 1.0, t - eps))
    d2 = (nag.memory_ode_linear(lam, 1.0, t + eps) - 2 * x
          + nag.memory_ode_linear(lam, 1.0, t - eps))
    residual = t * d2 / eps**2 + 3 * d1 / (2 * eps) - 3 * lam * x
    assert np.max(np.abs(residual)) < 1e-4


def test_schedule_converges_to_the_memory_ode_not_to_x_dot_f():
    records = nag.schedule_study(steps=(80, 320, 1280))

    def errors(schedule, target):
        return [r["error"] for r in records if r["schedule"] == schedule and r["target"] == target]

    const = errors("const", "x'=f")
    assert const[-1] < const[0] / 10
    exact = errors("nesterov", "x'=f")
    assert exact[-1] > 0.05 and exact[-1] / exact[0] > 0.8  # levels off near 1e-1
    memory = errors("nesterov", "memory ODE")
    assert 0.8 <= nag.fit_order([2 / 320, 2 / 1280], memory[-2:], last=2) <= 1.1


# ---- E6: adjoint vs direct -------------------------------------------------------------------


def test_adjoint_gradient_converges_to_the_direct_gradient():
    times = nag.latent_ode_times(40)
    steps = (0.05, 0.01, 0.002)
    records = nag.adjoint_gradient_study(steps, ("euler",), beta=0.7, times=times)
    gaps = [r["adjoint_vs_direct"] for r in records]
    assert all(b < a for a, b in itertools.pairwise(gaps)), gaps
    exact = records[0]["exact"]
    assert gaps[-1] / abs(exact) < 2e-2
    assert records[-1]["direct_error"] < 1e-2 * abs(exact)
    assert records[-1]["adjoint_error"] < 1e-2 * abs(exact)
    direct_errors = [r["direct_error"] for r in records]
    assert all(b < a for a, b in itertools.pairwise(direct_errors))


def test_zero_start_biases_the_adjoint_when_h_exceeds_the_output_spacing():
    times = nag.latent_ode_times(40)  # spacing 0.0189 < h = 0.05: one backward step per interval
    (zero,) = nag.adjoint_gradient_study((0.05,), ("zero",), beta=0.7, times=times)
    (euler,) = nag.adjoint_gradient_study((0.05,), ("euler",), beta=0.7, times=times)
    assert zero["adjoint_error"] > 3 * euler["adjoint_error"]


def test_gradient_of_sum_closed_form():
    times = torch.tensor([0.0, 1.0, 2.0], dtype=DT)
    assert nag.gradient_of_sum(times) == pytest.approx(math.exp(-1) + 2 * math.exp(-2))


# ---- T1 ---------------------------------------------------------------------------------------


def test_solver_properties_table():
    rows = {r["solver"]: r for r in nag.solver_properties(spacing=1e-3)}
    assert rows["nesterov, beta=0.9, c=1-beta"]["interval_grid"] == pytest.approx(-13.571, abs=1e-3)
    assert rows["nesterov, beta=0.5, c=1"]["interval_closed_form"] == pytest.approx(-1.5)
    assert rows["rk4"]["nfe_per_step"] == 4 and rows["euler"]["interval_grid"] == -2.0
    assert rows["nesterov, beta=0.5, c=1-beta"]["order"] == "1"
    assert rows["nesterov, beta=0.5, c=1"]["order"].startswith("inconsistent")


# ---- the benchmark script ------------------------------------------------------------------


def test_benchmark_script_quick_run_writes_its_files(tmp_path):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_nesterov.py"
    spec = importlib.util.spec_from_file_location("bench_nesterov", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--quick", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "nesterov.md").read_text()
    assert text.startswith("### Nesterov solver") and "Machine: " in text
    assert text.count("| forward") == 6  # 3 cases x (forward, forward + backward)
    assert (tmp_path / "nesterov.png").stat().st_size > 0
    assert (tmp_path / "nesterov.json").is_file()
