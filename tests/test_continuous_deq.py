"""Continuous DEQ / Skip DEQ / Skip Reg. DEQ: steady-state solver, termination rules (M1),
implicit GMRES backward (M2), parameter counts (P1), losses and model switches."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from deqode.choices import UnknownChoiceError
from deqode.models import build, count_parameters
from deqode.models.continuous_deq import (
    ARCHS,
    ContinuousDEQ,
    MultiscaleNeuralODE,
    SkipDEQ,
    SkipRegDEQ,
    solve_implicit_adjoint,
    variant_model,
)
from deqode.models.regularizers import attach_loss, jacobian_frobenius, skip_loss
from deqode.solvers import fixed_point
from deqode.solvers.steady_state import (
    Termination,
    broyden_steady_state,
    integrate,
    steady_state,
)

D64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors: one thread


def n_params(module: torch.nn.Module) -> int:
    return count_parameters(module.parameters())


def affine_map(batch: int = 3, n: int = 12, norm: float = 0.6, seed: int = 0):
    """A batched contraction ``f(z) = A z + b`` with ``‖A_i‖₂ = norm``, and its fixed point."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(batch, n, n, generator=g, dtype=D64)
    a = norm * a / torch.linalg.matrix_norm(a, ord=2)[:, None, None]
    b = torch.randn(batch, n, generator=g, dtype=D64)
    exact = torch.linalg.solve(torch.eye(n, dtype=D64) - a, b)

    def f(z: Tensor) -> Tensor:
        return torch.einsum("bij,bj->bi", a, z) + b

    return f, exact


def global_rel_residual(f, u: Tensor) -> float:
    fu = f(u)
    return float((fu - u).norm() / fu.norm())


# --------------------------------------------------------------------------------------------------
# the integrator
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["vcab3", "bs3"])
def test_integrator_is_exact_for_a_quadratic_derivative_with_variable_steps(method):
    # (s, y)' = (1, s²): BS3 start-up and variable-step AB3 both integrate t² exactly,
    # whatever the (adaptively changing, sometimes rejected) step sizes.
    def field(u: Tensor) -> Tensor:
        return torch.stack([torch.ones_like(u[0]), u[0] ** 2])

    u0 = torch.zeros(2, dtype=D64)
    out = integrate(field, u0, t_end=1.0, method=method, abstol=1e-4, reltol=1e-4,
                    max_steps=500)
    assert out.reason == "t_end" and out.t == pytest.approx(1.0, abs=1e-15)
    assert len(set(round(h, 12) for h in out.dts)) > 3, "steps must vary"
    assert out.u[1].item() == pytest.approx(1.0 / 3.0, abs=1e-13)


def test_vcab3_costs_one_evaluation_per_step_after_start_up():
    out = integrate(lambda u: -u, torch.ones(4, dtype=D64), t_end=2.0, abstol=1e-6,
                    reltol=1e-6, max_steps=5000)
    assert out.reason == "t_end" and out.rejected > 0
    # f(u0) + Hairer's initial step + 2 BS3 start-up steps (3 each) + 1 per accepted AB3 step;
    # the rejected steps (AB3 here) cost no evaluation
    assert out.nfe == 1 + 1 + 3 * 2 + (out.accepted - 2)
    assert out.u[0].item() == pytest.approx(math.exp(-2.0), rel=1e-5)


def test_step_attempts_are_capped():
    out = integrate(lambda u: -50.0 * u, torch.ones(3, dtype=D64), max_steps=7)
    assert out.attempts == 7 and out.reason == "max_steps"


# --------------------------------------------------------------------------------------------------
# termination rules on synthetic contractive maps (M1)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["rel_norm", "rel_deq_best", "abs_deq_best"])
def test_continuous_and_discrete_reach_the_same_fixed_point(mode):
    f, exact = affine_map()
    tol = 1e-6
    u_cont, info_c = steady_state(f, torch.zeros_like(exact), termination=mode, tol=tol,
                                  max_steps=2000, abstol=1e-6, reltol=1e-6)
    u_disc, info_d = broyden_steady_state(f, torch.zeros_like(exact), termination=mode,
                                          tol=tol, max_steps=200, memory=300)
    u_fp, info_fp = fixed_point(f, torch.zeros_like(exact), "broyden", tol=1e-10, max_iter=200)
    assert info_c.converged and info_d.converged and info_fp.converged
    assert info_c.reason == info_d.reason == "tolerance"
    scale = exact.norm()
    if mode == "abs_deq_best":
        assert float((f(u_cont) - u_cont).norm()) <= tol
        assert float((f(u_disc) - u_disc).norm()) <= tol
    else:
        assert global_rel_residual(f, u_cont) <= tol
        assert global_rel_residual(f, u_disc) <= tol
    # the same fixed point as the existing discrete solver, up to the stop threshold
    assert float((u_cont - u_fp).norm() / scale) < 10 * tol
    assert float((u_disc - u_fp).norm() / scale) < 10 * tol


def test_rel_norm_is_relative_and_abs_mode_is_absolute_on_the_whole_batch():
    f, exact = affine_map()

    def scaled(z: Tensor) -> Tensor:  # the same problem, state scaled by 1000
        return 1000.0 * f(z / 1000.0)

    small = dict(tol=1e-3, max_steps=2000, abstol=1e-6, reltol=1e-6)
    big = {**small, "abstol": 1e-3}  # step control scaled with the state
    zero = torch.zeros_like(exact)
    _, rel_small = steady_state(f, zero, termination="rel_norm", **small)
    _, rel_big = steady_state(scaled, zero, termination="rel_norm", **big)
    _, abs_small = steady_state(f, zero, termination="abs_deq_best", **small)
    _, abs_big = steady_state(scaled, zero, termination="abs_deq_best", **big)
    assert rel_small.converged and abs_small.converged and abs_big.converged
    assert rel_small.iterations == rel_big.iterations  # scale-free
    assert abs_big.iterations > abs_small.iterations  # ‖du‖ grows with the scale
    # the objective is batch-global: the norm of the whole (B, n) tensor
    rule = Termination("abs_deq_best", 0.0)
    u = torch.zeros(2, 3, dtype=D64)
    du = torch.tensor([[3.0, 0, 0], [4.0, 0, 0]], dtype=D64)
    rule.check(u, du)
    assert rule.history == [5.0]


def _feed(rule: Termination, objectives: list[float]) -> tuple[list[str | None], list[Tensor]]:
    """Feed iterates u_k = k (scalar tensors) with ``‖du‖`` = the given objectives (abs mode)."""
    reasons, states = [], []
    for k, obj in enumerate(objectives):
        u = torch.full((1,), float(k), dtype=D64)
        states.append(u)
        reasons.append(rule.check(u, torch.full((1,), obj, dtype=D64)))
    return reasons, states


def test_best_modes_stop_at_tolerance_and_return_the_best_iterate():
    rule = Termination("abs_deq_best", tol=0.05)
    reasons, _ = _feed(rule, [1.0, 0.3, 0.5, 0.04])
    assert reasons == [None, None, None, "tolerance"]
    assert rule.result(torch.zeros(1)).item() == 3.0
    rule = Termination("abs_deq_best", tol=0.05)  # capped run: the best, not the last
    _feed(rule, [1.0, 0.2, 0.7, 0.9])
    assert rule.result(torch.zeros(1)).item() == 1.0 and rule.best_objective == 0.2


def test_rel_norm_returns_the_last_iterate():
    rule = Termination("rel_norm", tol=0.05)
    for u, du in [(1.0, 1.0), (2.0, 0.5), (3.0, 1.0)]:  # objectives 0.5, 0.2, 0.25
        assert rule.check(torch.tensor([u]), torch.tensor([du])) is None
    assert rule.result(torch.zeros(1)).item() == 3.0  # the last, not the best (2.0)


def test_stagnation_needs_30_steps_a_flat_history_and_3_tol():
    # flat objective 0.1 (≤ 3·0.05): stops exactly at step 30
    rule = Termination("abs_deq_best", tol=0.05)
    reasons, _ = _feed(rule, [0.1] * 40)
    assert reasons.index("stagnation") == 29
    # a history whose max/min ≥ 1.3 never stagnates (the window is the whole history)
    rule = Termination("abs_deq_best", tol=0.05)
    reasons, _ = _feed(rule, [0.2] + [0.12] * 40)
    assert "stagnation" not in reasons
    # flat but above 3·tol: no stagnation either
    rule = Termination("abs_deq_best", tol=0.05)
    reasons, _ = _feed(rule, [0.2] * 40)
    assert set(reasons) == {None}
    # rel_norm has no stagnation rule
    rule = Termination("rel_norm", tol=0.05)
    reasons = [rule.check(torch.ones(1), torch.full((1,), 0.1)) for _ in range(40)]
    assert set(reasons) == {None}


def test_protective_break_at_1e3_times_numel_times_first_objective():
    u = torch.ones(4, dtype=D64)  # numel 4: threshold = first objective · 1e3 · 4
    rule = Termination("abs_deq_best", tol=0.05)
    assert rule.check(u, torch.full((4,), 0.5, dtype=D64)) is None  # first objective ‖du‖ = 1
    assert rule.check(2 * u, torch.full((4,), 1999.0, dtype=D64)) is None  # ‖du‖ = 3998
    assert rule.check(3 * u, torch.full((4,), 2000.5, dtype=D64)) == "protective_break"  # 4001
    assert torch.equal(rule.result(u), u) and rule.best_objective == 1.0


def test_non_finite_state_stops_and_returns_the_best_finite_iterate():
    def f(z: Tensor) -> Tensor:  # expands without bound: overflows to inf
        return 1e30 * z + 1.0

    u, info = broyden_steady_state(f, torch.zeros(2, 3, dtype=D64),
                                   termination="abs_deq_best", tol=1e-3, max_steps=30)
    assert torch.isfinite(u).all() and not info.converged
    assert info.reason in ("non_finite", "protective_break")


def test_discrete_solver_nfe_is_updates_plus_one():
    f, exact = affine_map()
    _, info = broyden_steady_state(f, torch.zeros_like(exact), tol=1e-8, max_steps=5)
    assert info.nfe == info.iterations + 1 == 6 and info.reason == "max_steps"


def test_unknown_termination_mode_lists_the_modes():
    with pytest.raises(UnknownChoiceError, match="'rel_norm', 'rel_deq_best', 'abs_deq_best'"):
        steady_state(lambda u: u, torch.zeros(2), termination="rel")
    with pytest.raises(UnknownChoiceError, match="'vcab3', 'bs3'"):
        integrate(lambda u: u, torch.zeros(2), method="dopri5")


# --------------------------------------------------------------------------------------------------
# implicit backward (M2)
# --------------------------------------------------------------------------------------------------


def contractive_fc(stem_gradient: str, **kwargs) -> ContinuousDEQ:
    """digits-FC in float64 with ‖W₁‖₂ = 0.5 (a contraction) and tight solver settings."""
    torch.manual_seed(0)
    model = ContinuousDEQ("digits-fc", solver="discrete", termination="rel_norm", tol=1e-13,
                          max_steps=200, broyden_memory=400, gmres_atol=0.0, gmres_rtol=1e-13,
                          gmres_max_iter=64, stem_gradient=stem_gradient, **kwargs).double()
    with torch.no_grad():
        w = model.core.state_weight.weight
        w.mul_(0.5 / torch.linalg.matrix_norm(w, ord=2))
    return model


def unrolled_loss(model: ContinuousDEQ, x: Tensor, y: Tensor, iterations: int = 300) -> Tensor:
    """The same network with the equilibrium replaced by a long unrolled Picard iteration."""
    h = model.stem(x)
    z = torch.zeros_like(h)
    for _ in range(iterations):
        z = model.core(z, h)
    return F.cross_entropy(model.head(z), y)


def grads(model: ContinuousDEQ, loss: Tensor) -> dict[str, Tensor]:
    model.zero_grad()
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_gmres_implicit_gradient_equals_autograd_through_a_long_unrolled_iteration():
    x = torch.rand(6, 1, 8, 8, dtype=D64, generator=torch.Generator().manual_seed(1))
    y = torch.arange(6) % 10
    model = contractive_fc("implicit")
    implicit = grads(model, F.cross_entropy(model(x), y))
    assert model.last_backward["iterations"] > 0 and model.last_backward["converged"]
    reference = grads(model, unrolled_loss(model, x, y))
    for name, g_ref in reference.items():
        rel = float((implicit[name] - g_ref).norm() / g_ref.norm())
        assert rel < 1e-5, (name, rel)


def test_paper_stem_gradient_quirk_changes_only_the_stem():
    x = torch.rand(6, 1, 8, 8, dtype=D64, generator=torch.Generator().manual_seed(2))
    y = torch.arange(6) % 10
    full = contractive_fc("implicit")
    quirk = contractive_fc("paper")
    g_full = grads(full, F.cross_entropy(full(x), y))
    g_quirk = grads(quirk, F.cross_entropy(quirk(x), y))
    for name in g_full:
        same = torch.allclose(g_full[name], g_quirk[name], rtol=1e-9, atol=1e-12)
        assert same == (not name.startswith("stem")), name
    # the quirk's stem gradient is the explicit one: u* held fixed, only f(u*, x) differentiated
    quirk.zero_grad()
    h = quirk.stem(x)
    with torch.no_grad():
        u_star = quirk.core(torch.zeros_like(h), h)
        for _ in range(300):
            u_star = quirk.core(u_star, h)
    F.cross_entropy(quirk.head(quirk.core(u_star, h)), y).backward()
    for name, p in quirk.named_parameters():
        if name.startswith("stem"):
            assert torch.allclose(p.grad, g_quirk[name], rtol=1e-9, atol=1e-12), name


def test_gmres_exits_at_iteration_zero_when_the_cotangent_is_small():
    # ‖v‖ ≤ atol / (1 − rtol): λ = 0, i.e. the pure one-step (JFB) gradient
    v = torch.ones(2, 5, dtype=D64)
    v = 0.99 * (0.05 / 0.95) * v / v.norm()  # just below the threshold
    mu, record = solve_implicit_adjoint(lambda w: 0.5 * w, v, 0.05, 0.05, 20)
    assert record["iterations"] == 0 and float(mu.abs().max()) == 0.0
    mu, record = solve_implicit_adjoint(lambda w: 0.5 * w, 2 * v, 0.05, 0.05, 20)
    assert record["iterations"] >= 1
    assert torch.allclose(mu, 2 * v / 0.5, rtol=0.1)  # (I − 0.5 I)⁻¹ v, to GMRES's tolerance


def test_jfb_backward_equals_the_zero_iteration_gradient():
    x = torch.rand(4, 1, 8, 8, dtype=D64, generator=torch.Generator().manual_seed(3))
    y = torch.arange(4)
    model = contractive_fc("paper", backward="jfb")
    g_jfb = grads(model, F.cross_entropy(model(x), y))
    model.backward = "implicit"
    model.gmres_max_iter = 0
    g_zero = grads(model, F.cross_entropy(model(x), y))
    for name in g_jfb:
        assert torch.allclose(g_jfb[name], g_zero[name], rtol=1e-10, atol=1e-14), name


# --------------------------------------------------------------------------------------------------
# parameter counts (P1)
# --------------------------------------------------------------------------------------------------

# arch: (vanilla total, Skip total, stem, DEQ f, head, predictor): the paper's totals, counted
# from the layers of the official code (`experiments/src/construct.jl`, v1 `mnist_fc.jl`)
COUNTS = {
    "cifar10-small": (163_546, 200_122, 5_928, 116_064, 41_554, 36_576),
    "cifar10-large": (10_631_958, 11_186_774, 11_296, 8_247_232, 2_373_430, 554_816),
    "imagenet-small": (17_912_456, 18_467_272, 11_296, 9_815_392, 8_085_768, 554_816),
    "mnist-fc": (134_538, 151_050, 100_480, 32_768, 1_290, 16_512),
}


@pytest.mark.parametrize("arch", list(COUNTS))
def test_parameter_counts_are_exact(arch):
    vanilla, skip, stem, core, head, predictor = COUNTS[arch]
    model = ContinuousDEQ(arch)
    assert n_params(model) == vanilla
    assert (n_params(model.stem), n_params(model.core), n_params(model.head)) == (stem, core,
                                                                                   head)
    skip_model = SkipDEQ(arch)
    assert n_params(skip_model) == skip and n_params(skip_model.predictor) == predictor
    assert n_params(SkipRegDEQ(arch)) == vanilla  # Skip Reg. adds no parameters
    if arch != "mnist-fc" and arch != "imagenet-small":
        assert n_params(MultiscaleNeuralODE(arch)) == vanilla


@pytest.mark.parametrize("arch", ARCHS)
def test_skip_reg_adds_no_parameters_and_skip_adds_only_the_predictor(arch):
    vanilla = n_params(ContinuousDEQ(arch))
    assert n_params(SkipRegDEQ(arch)) == vanilla
    skip = SkipDEQ(arch)
    assert n_params(skip) == vanilla + n_params(skip.predictor)


def test_named_builds_and_paper_counts_disagree_with_the_text_where_the_spec_says():
    assert n_params(build("cdeq-mnist-fc")) == 134_538  # text: 138K
    assert n_params(build("skipdeq-mnist-fc")) == 151_050  # text: 151K
    predictor = n_params(build("skipdeq-cifar10-small")) - n_params(build("cdeq-cifar10-small"))
    assert predictor == 36_576  # text: "+58K"
    assert build("skipregdeq-cifar10-large", solver="discrete").solver == "discrete"


# --------------------------------------------------------------------------------------------------
# losses and the model's switches
# --------------------------------------------------------------------------------------------------


def test_attach_loss_adds_the_auxiliary_gradient_once():
    w = torch.randn(5, requires_grad=True, dtype=D64)
    aux = (w**2).sum()
    out = attach_loss(3 * w, aux)
    assert torch.equal(out, 3 * w)
    (out.sum() + out[0]).backward()  # two uses of the output: aux still counted once
    expected = torch.full((5,), 3.0, dtype=D64) + 2 * w.detach()
    expected[0] += 3.0
    assert torch.allclose(w.grad, expected)


def test_jacobian_estimate_is_the_hutchinson_vjp_norm_and_differentiable():
    a = torch.randn(4, 4, dtype=D64, requires_grad=True)
    z = torch.randn(3, 4, dtype=D64)
    g = torch.Generator().manual_seed(0)
    est, _ = jacobian_frobenius(lambda u: u @ a.T, z, generator=g)
    eps = torch.randn(3, 4, dtype=D64, generator=torch.Generator().manual_seed(0))
    expected = float((eps @ a.detach()).pow(2).sum() / 12)
    assert est.detach().item() == pytest.approx(expected, rel=1e-12)
    est.backward()
    assert a.grad is not None and torch.isfinite(a.grad).all()
    # unbiased for ‖J‖_F² / n per sample: average of many estimates
    many = torch.stack([jacobian_frobenius(lambda u: u @ a.detach().T, z)[0]
                        for _ in range(4000)]).mean().detach()
    exact = float(a.detach().pow(2).sum() / 4)
    assert many.item() == pytest.approx(exact, rel=0.05)


def test_skip_loss_is_the_mean_absolute_error():
    z, u0 = torch.tensor([[1.0, -1.0]]), torch.tensor([[0.5, 0.0]])
    assert skip_loss(z, u0).item() == pytest.approx(0.75)
    with pytest.raises(ValueError, match="one shape"):
        skip_loss(z, u0[:, :1])


def digits(n: int = 8, seed: int = 0) -> Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("variant, solver", [
    (v, s) for v in ("vanilla", "skip", "skip_reg") for s in ("continuous", "discrete")
] + [("neural_ode", "neural_ode")])
def test_every_variant_trains_with_finite_gradients(variant, solver):
    torch.manual_seed(0)
    kwargs = {} if variant == "neural_ode" else {"solver": solver}
    model = variant_model("digits-small", variant, max_steps=6, **kwargs).train()
    logits = model(digits())
    assert logits.shape == (8, 10)
    F.cross_entropy(logits, torch.arange(8)).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.nfe_forward > 1
    if variant in ("skip", "skip_reg"):
        assert model.last_stats["skip_loss"].item() > 0


def test_predictor_learns_only_through_the_skip_loss():
    torch.manual_seed(0)
    model = SkipDEQ("digits-fc", skip_weight=0.0).train()
    F.cross_entropy(model(digits()), torch.arange(8)).backward()
    assert all(p.grad is None or float(p.grad.abs().max()) == 0.0
               for p in model.predictor.parameters())


def test_nfe_counts_follow_the_definition():
    torch.manual_seed(0)
    model = ContinuousDEQ("digits-fc", solver="discrete", max_steps=4, tol=0.0).eval()
    with torch.no_grad():
        model(digits())
    assert model.nfe_forward == 4 + 1 + 1  # updates + initial evaluation + extra application
    model = SkipRegDEQ("digits-fc", solver="discrete", max_steps=4, tol=0.0, jac_weight=1.0)
    model.train()(digits())
    assert model.nfe_forward == 1 + 5 + 1 + 1  # f(0, x) + solver + extra + Jacobian term
    assert model.last_stats["jacobian_loss"].item() > 0


def test_solve_outcomes_reports_cap_or_tolerance_per_test_batch():
    from deqode.chapters import continuous_deq as cd

    torch.manual_seed(0)
    x = digits(12)
    capped = ContinuousDEQ("digits-fc", solver="discrete", max_steps=3, tol=0.0)
    out = cd.solve_outcomes(capped, x, batch_size=5)  # batches of 5, 5, 2
    assert out["stops"] == "max_steps" and out["met tol"] == "0/3"
    assert out["solver steps (mean)"] == 3.0 and out["final objective (max)"] > 0
    loose = ContinuousDEQ("digits-fc", solver="discrete", max_steps=3, tol=1e9)
    out = cd.solve_outcomes(loose, x, batch_size=12)
    assert out == {"stops": "tolerance", "met tol": "1/1", "solver steps (mean)": 0.0,
                   "final objective (max)": out["final objective (max)"]}
    with pytest.raises(ValueError, match="batch_size"):
        cd.solve_outcomes(loose, x, batch_size=0)
    with pytest.raises(ValueError, match="no steady-state solve"):
        cd.solve_outcomes(MultiscaleNeuralODE("digits-small"), digits(4), batch_size=4)


def test_pretraining_unrolls_then_switches_to_the_solver():
    torch.manual_seed(0)
    model = ContinuousDEQ("digits-fc", pretrain_steps=2, pretrain_depth=5).train()
    for expected in (True, True, False):
        F.cross_entropy(model(digits()), torch.arange(8)).backward()
        assert model.last_stats["pretraining"] is expected
    assert int(model.training_steps) == 3
    model.eval()
    with torch.no_grad():
        model(digits())
    assert model.last_stats["pretraining"] is False and int(model.training_steps) == 3


def test_neural_ode_adjoint_mode_counts_backward_evaluations():
    torch.manual_seed(0)
    model = MultiscaleNeuralODE("digits-small", grad_mode="adjoint").train()
    F.cross_entropy(model(digits()), torch.arange(8)).backward()
    assert model.nfe_backward > 0
    assert all(p.grad is not None for p in model.core.parameters())


def test_bad_settings_raise_clear_errors():
    with pytest.raises(UnknownChoiceError, match="'cifar10-small'"):
        ContinuousDEQ("cifar10-tiny")
    with pytest.raises(UnknownChoiceError, match="'continuous', 'discrete', 'neural_ode'"):
        ContinuousDEQ("digits-fc", solver="ode")
    with pytest.raises(ValueError, match="starts at z\\(0\\) = 0"):
        ContinuousDEQ("digits-small", solver="neural_ode", init="skip")
    with pytest.raises(ValueError, match="fixes init='skip'"):
        SkipDEQ("digits-fc", init="zero")
    with pytest.raises(ValueError, match=r"C=1, got \(2, 3, 8, 8\)"):
        ContinuousDEQ("digits-small")(torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"\(N, 64\)"):
        ContinuousDEQ("digits-fc")(torch.rand(2, 65))


# --------------------------------------------------------------------------------------------------
# the chapter's configurations and the paper's numbers
# --------------------------------------------------------------------------------------------------


def test_reference_csv_holds_every_cell_of_tables_1_to_4():
    from deqode.chapters import continuous_deq as cd
    from deqode.results import NOT_TRANSCRIBED

    for table in cd.TABLES:
        rows = cd.paper_table(table)
        assert len(rows) == (6 if table in ("T1", "T4") else 7)
        for row in rows:
            assert NOT_TRANSCRIBED not in row.values(), (table, row)
    assert cd.paper_cell("T2", "Skip Reg. DEQ (continuous)", "Test Acc (%)") == "82.513 ± 0.177"


def test_claims_and_figure1_audit_from_the_tables():
    from deqode.chapters import continuous_deq as cd

    audit = cd.figure1_audit()
    offset = sorted((b["panel"], b["dataset"], b["bar"]) for b in audit
                    if abs(b["difference"]) > 0.05)
    assert offset == [("Backward Pass", "CIFAR10 Small", "Skip Reg. Cont. DEQ"),
                      ("Training", "CIFAR10 Large", "Skip Cont. DEQ"),
                      ("Training", "CIFAR10 Large", "Skip Reg. Cont. DEQ"),
                      ("Training", "ImageNet", "Skip Reg. Cont. DEQ")]
    speedups = [cd.ratio(t, cd.CONT, label, "Training (s/batch)") for t in ("T2", "T3", "T4")
                for label in (cd.SKIP_CONT, cd.SKIPREG_CONT)]
    assert max(speedups) == pytest.approx(1.95, abs=0.005)  # not the abstract's 3.19
    assert cd.ratio("T2", cd.CONT, cd.SKIPREG_CONT, "Training (s/batch)") == pytest.approx(
        1.11, abs=0.005)
    assert {c.id for c in cd.claims()} >= {"C1", "C2", "C3", "C4", "C9", "C11"}


def test_registered_runs_and_their_settings():
    from deqode.chapters import continuous_deq as cd
    from deqode.chapters import experiment_names, get

    smoke = [n for n in experiment_names("smoke") if n.startswith("cdeq-t")]
    paper = [n for n in experiment_names("paper") if n.startswith("cdeq-t")]
    assert len(smoke) == 12 + 7 + 7 + 6
    assert len(paper) == (12 + 7 + 7 + 6) * cd.PAPER_SEEDS  # every row, every seed
    config = get("cdeq-t2-skipreg-cont", "paper")
    assert (config.model, config.dataset, config.batch_size) == ("skipregdeq-cifar10-small",
                                                                 "cifar10", 128)
    assert config.model_kwargs == {"pretrain_steps": 3000, "solver": "continuous"}
    code = get("cdeq-t1-skip-jac-code", "paper").model_kwargs
    assert code == {"solver": "discrete", "jac_weight": 1.0, "skip_weight": 5.0}
    assert get("cdeq-t2-skipreg-cont-s2", "paper").seed == 2


def test_paper_settings_follow_the_official_code():
    """AdamW for the MNIST code setting, the CIFAR-small decay the rate does not scale, step
    budgets, and ImageNet's Nesterov SGD with step milestones counted in optimiser steps."""
    from deqode.chapters import continuous_deq as cd
    from deqode.chapters import get

    code, text = get("cdeq-t1-skip-code", "paper"), get("cdeq-t1-skip-text", "paper")
    assert (code.optimizer, code.weight_decay, code.schedule) == ("adamw", 2.5e-6, "cosine")
    assert (text.optimizer, text.weight_decay, text.schedule) == ("adam", 0.0, "constant")
    small = get("cdeq-t2-vanilla-cont", "paper")
    assert (small.optimizer, small.weight_decay, small.lr_scaled_decay) == ("adamw", 2.5e-5,
                                                                           False)
    assert (small.iterations, small.epochs, small.eta_min) == (20_000, 1, 1e-5)
    assert get("cdeq-t3-skip-disc", "paper").iterations == 90_000
    imagenet = get("cdeq-t4-skipreg-cont", "paper")
    assert (imagenet.dataset, imagenet.dataset_kwargs) == ("imagenet", {"recipe": "cdeq"})
    assert (imagenet.optimizer, imagenet.momentum, imagenet.nesterov) == ("sgd", 0.9, True)
    assert (imagenet.iterations, imagenet.batch_size, imagenet.lr) == (500_000, 64, 0.05)
    assert imagenet.milestones == (100_000, 150_000, 250_000) and imagenet.weight_decay == 1e-6
    assert "imagenet" in cd.needed_datasets("paper")
    departures = " ".join(r["departures"] for r in cd.hyperparameters("paper"))
    for gone in ("Adam without decay", "fit has no", "rounded", "not runnable", "ImageNet loader",
                 "19,890", "90,090"):
        assert gone not in departures, gone
    assert all(r["departures"] != "-" and r["runnable"] for r in cd.hyperparameters("paper"))


def test_cost_model_counts():
    from deqode.chapters import continuous_deq as cd

    assert cd.solver_nfe("continuous", 18) == 2 + 6 + 16
    assert cd.solver_nfe("continuous", 18, "bs3") == 2 + 54
    assert cd.solver_nfe("discrete", 18) == 19
    costs = {"f": 1.0, "f_tape": 1.0, "vjp": 2.0, "predictor": 0.0, "step": 0.0,
             "stem_head_forward": 0.0, "stem_head_backward": 0.0}
    est = cd.cost_model(costs, cd.CONT, steps=18, gmres=20)
    assert est["forward"] == 24 + 1 and est["backward"] == 1 + 22 * 2


def test_smoke_runs_train_on_a_digits_subset_and_state_their_budget():
    from deqode import data
    from deqode.chapters import continuous_deq as cd

    full = data.load_dataset("digits", split="train", profile="smoke", recipe="cdeq")
    subset = cd.DigitsSubset(256)
    train, test = subset("train"), subset("test")
    assert len(train) == 256
    assert torch.equal(train[3][0], full[3][0]) and train[3][1] == full[3][1]
    assert len(test) == len(data.load_dataset("digits", split="test", profile="smoke",
                                              recipe="cdeq"))
    with pytest.raises(ValueError, match=rf"train_size must lie in \[1, {len(full)}\]"):
        cd.DigitsSubset(len(full) + 1)("train")
    config = cd.train_config(cd.Row("T2", "vanilla", "continuous"), "smoke")
    assert config.dataset == cd.DigitsSubset(256, "cdeq")

    s = cd.setup("T2", "smoke")
    assert s.train_images == 256 and s.steps == s.epochs * (256 // s.batch_size)
    assert cd.setup("T1", "smoke").train_images == len(full)  # T1 trains on the whole split
    assert cd.setup("T4", "paper").steps == 500_000  # a step budget
    summary = cd.setup_summary("T2", "smoke")
    assert summary.startswith(f"smoke T2: {s.epochs} epochs of batch {s.batch_size} on the "
                              f"first 256 of the {len(full):,} digits train images = {s.steps} ")
    assert "one CPU thread per run" in summary
    assert "constant (text setting)" in cd.setup_summary("T1", "smoke")
    assert cd.setup_summary("T4", "paper").startswith(
        "paper T4: 500,000 optimiser steps (≈ 25.0 epochs) of batch 64 on all 1,281,167 imagenet")
    assert "Nesterov momentum 0.9" in cd.setup_summary("T4", "paper")


# --------------------------------------------------------------------------------------------------
# cpu profile: seeds, aggregation, plateau check, decision rules, paper-claim agreement
# --------------------------------------------------------------------------------------------------


def test_claim_rows_get_three_seeds_outside_smoke():
    from deqode.chapters import continuous_deq as cd

    cont = cd.Row("T2", "vanilla", "continuous")
    disc = cd.Row("T2", "vanilla", "discrete")
    assert cd.row_seeds(cont, "cpu") == list(range(cd.CLAIM_SEEDS))
    assert cd.row_seeds(disc, "cpu") == [0]
    assert cd.row_seeds(cont, "smoke") == [0]
    assert cd.row_seeds(disc, "paper") == list(range(cd.PAPER_SEEDS))  # every paper row
    assert cd.run_name(cont, 0) == cont.name and cd.run_name(cont, 2) == cont.name + "-s2"
    assert cd.train_config(cont, "cpu", seed=1).name == cont.name + "-s1"


def test_cpu_setups_use_mnist8k_for_tables_1_to_3():
    from deqode.chapters import continuous_deq as cd

    for table in ("T1", "T2", "T3"):
        assert cd.setup(table, "cpu").dataset == "mnist-8k"
    config = cd.train_config(cd.Row("T2", "skip", "continuous"), "cpu")
    assert isinstance(config.dataset, cd.TrainSubset) and config.dataset.dataset == "mnist-8k"
    assert "mnist-8k" in cd.needed_datasets("cpu")


def test_cpu_schedules_cut_the_rate_before_the_plateau_window():
    from deqode.chapters import continuous_deq as cd

    for table in ("T2", "T3"):
        config = cd.train_config(cd.Row(table, "vanilla", "continuous"), "cpu")
        assert config.schedule == "step" and config.milestones == cd.CPU_DECAY_AT[table]
        # the last cut lies before the epochs the plateau check reads
        assert max(config.milestones) <= config.epochs - cd.PLATEAU_EPOCHS
    text, code = (cd.train_config(cd.Row("T1", "skip_reg", s, False, setting), "cpu")
                  for s, setting in (("continuous", "text"), ("discrete", "code")))
    assert text.schedule == "step" and text.milestones == cd.CPU_DECAY_AT["T1"]
    assert code.schedule == "cosine" and code.milestones == ()
    smoke = cd.train_config(cd.Row("T1", "skip_reg", "continuous", False, "text"), "smoke")
    assert smoke.schedule == "constant" and smoke.milestones == ()
    assert "×0.1 after epochs" in cd.setup_summary("T2", "cpu")


def test_checkpoint_of_other_settings_is_not_resumed(tmp_path):
    import torch

    from deqode.chapters import continuous_deq as cd
    from deqode.train.reuse import _checkpoint_matches

    row = cd.Row("T2", "vanilla", "continuous")
    config = cd.train_config(row, "cpu")
    checkpoint = tmp_path / "cpu" / config.name / "checkpoint.pt"
    assert not _checkpoint_matches(config, checkpoint)
    checkpoint.parent.mkdir(parents=True)
    torch.save({"config": config.to_dict()}, checkpoint)
    assert _checkpoint_matches(config, checkpoint)
    assert not _checkpoint_matches(config.replace(epochs=4), checkpoint)
    checkpoint.write_bytes(checkpoint.read_bytes()[:40])  # damaged: fit's resume decides
    assert _checkpoint_matches(config.replace(epochs=4), checkpoint)


def _summary(row, seed, acc, curve=(50.0, 60.0, 61.0)):
    return {"row": row, "seed": seed, "test_acc": acc, "training_s_total": 10.0 + seed,
            "curve": [{"test_acc": a} for a in curve]}


def test_aggregate_means_and_per_seed_values():
    from deqode.chapters import continuous_deq as cd

    rows = cd.aggregate([_summary("a", 0, 90.0), _summary("a", 1, 92.0), _summary("b", 0, 50.0)])
    a, b = rows
    assert a["test_acc"] == 91.0 and a["test_acc_seeds"] == [90.0, 92.0]
    assert a["test_acc_std"] == pytest.approx(math.sqrt(2.0)) and a["seeds"] == [0, 1]
    assert b["test_acc_std"] == 0.0 and b["training_s_total"] == 10.0


def test_plateau_check_flags_a_rising_curve():
    from deqode.chapters import continuous_deq as cd

    flat = cd.plateau_check(_summary("a", 0, 0, curve=(40.0, 80.0, 90.0, 90.5, 90.2)))
    rising = cd.plateau_check(_summary("a", 0, 0, curve=(40.0, 60.0, 70.0, 80.0)))
    short = cd.plateau_check(_summary("a", 0, 0, curve=(40.0, 41.0)))
    assert flat["flat"] and not rising["flat"] and not short["flat"]
    assert str(cd.PLATEAU_POINTS) in cd.plateau_rule() or f"{cd.PLATEAU_POINTS:g}" in \
        cd.plateau_rule()


def test_speedup_rule_reaches_every_verdict():
    from deqode.book import claims
    from deqode.chapters import continuous_deq as cd

    acc = {"a": [90.0, 91.0, 92.0], "b": [90.0, 90.5, 91.0]}
    assert cd.decide_speedup({"x": [2.5, 2.6, 2.4]}, 2.0, acc)[0] == claims.SUPPORTED
    assert cd.decide_speedup({"x": [1.5, 1.6, 1.4]}, 2.0, acc)[0] == claims.MIXED
    assert cd.decide_speedup({"x": [0.9, 1.2, 1.0]}, 2.0, acc)[0] == claims.NOT_SUPPORTED
    verdict, reason = cd.decide_speedup({"x": [2.5]}, 2.0, {"a": [90.0]})
    assert verdict == claims.NOT_DECIDABLE and "1 seed" in reason
    verdict, reason = cd.decide_speedup({"x": [2.5, 2.6, 2.4]}, 2.0, {"a": [11.0, 12.0, 13.0]})
    assert verdict == claims.NOT_DECIDABLE and "chance" in reason
    # faster, but clearly less accurate: mixed at best
    worse = {"x": ([80.0, 80.1, 79.9], [90.0, 90.1, 89.9])}
    assert cd.decide_speedup({"x": [2.5, 2.6, 2.4]}, 2.0, acc, worse)[0] == claims.MIXED
    assert f"{cd.SPEEDUP_NULL:g}" in cd.speedup_rule(2.0, "training time")


def test_slower_best_and_gmres_rules_reach_every_verdict():
    from deqode.book import claims
    from deqode.chapters import continuous_deq as cd

    acc = {"a": [90.0, 91.0, 92.0]}
    assert cd.decide_slower([1.5, 1.6, 1.4], acc)[0] == claims.SUPPORTED
    assert cd.decide_slower([0.9, 1.1, 1.0], acc)[0] == claims.NOT_SUPPORTED
    top, mid = [95.0, 95.1, 94.9], [93.0, 93.1, 92.9]
    assert cd.decide_best(top, {"v": mid, "s": mid})[0] == claims.SUPPORTED
    assert cd.decide_best(mid, {"v": top})[0] == claims.NOT_SUPPORTED
    assert cd.decide_best(top, {"v": mid, "s": top})[0] == claims.MIXED
    assert cd.decide_best(top, {"v": [12.0, 11.0, 13.0]})[0] == claims.NOT_DECIDABLE
    few, many = [1.0, 1.2, 0.8], [4.0, 4.2, 3.8]
    assert cd.decide_fewer_iterations({"s": few, "r": few}, many, acc)[0] == claims.SUPPORTED
    assert cd.decide_fewer_iterations({"s": many}, many, acc)[0] == claims.NOT_SUPPORTED
    assert cd.decide_fewer_iterations({"s": few, "r": many}, many, acc)[0] == claims.MIXED
    verdict, reason = cd.decide_fewer_iterations({"s": few}, [0, 0, 0], acc)
    assert verdict == claims.NOT_DECIDABLE and "iteration 0" in reason


def test_range_agreement_and_stated_ranges_come_from_the_reference():
    from deqode.chapters import continuous_deq as cd

    assert cd.stated_range("C1") == (2.0, 4.0)
    assert cd.range_agreement("2-4x", [2.14, 4.10]).startswith("agrees")
    assert cd.range_agreement("1.57-1.96x", [1.55, 1.95]).startswith("differs")
    assert cd.range_agreement("4.7-6.182x", [4.75, 6.1826]).startswith("agrees")
    verdicts = {c.id: c.verdict for c in cd.claims()}
    assert verdicts["C7"].startswith("differs") and verdicts["C2"].startswith("agrees")


def test_train_subset_cuts_train_and_optionally_test_split():
    from deqode.chapters import continuous_deq as cd

    subset = cd.TrainSubset(100, "cdeq", "digits", test_size=50)
    assert len(subset("train")) == 100 and len(subset("test")) == 50
    assert len(cd.TrainSubset(100)("test")) == 360
    with pytest.raises(ValueError, match="train_size"):
        cd.TrainSubset(10_000)("train")


def test_runs_still_learning_make_a_claim_not_decidable():
    from deqode.book import claims
    from deqode.chapters import continuous_deq as cd

    acc = {"a": [90.0, 91.0, 92.0]}
    flat = {"a": [0.2, 0.4, 0.1]}
    rising = {"a": [0.2, 10.0, 0.1]}
    assert cd.decide_slower([1.5, 1.6, 1.4], acc, flat)[0] == claims.SUPPORTED
    verdict, reason = cd.decide_slower([1.5, 1.6, 1.4], acc, rising)
    assert verdict == claims.NOT_DECIDABLE and "plateau" in reason and "1 of 3" in reason
    runs = [{"row": "x", "paper_row": "a", "curve": [{"test_acc": v} for v in (50, 60, 60.2)]},
            {"row": "y", "paper_row": "b", "curve": [{"test_acc": v} for v in (50, 60, 70)]}]
    assert cd.plateau_changes(runs, ["a"]) == {"a": [pytest.approx(10.2)]}
