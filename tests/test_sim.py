"""SIM: parameter budgets, frozen RFF, solver-free forward, Koopman helpers, search driver."""

from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from deqode.chapters import sim as exp
from deqode.chapters.sim import koopman
from deqode.choices import UnknownChoiceError
from deqode.models import sim
from deqode.models.implicit2 import DEQMFN
from deqode.results import NOT_TRANSCRIBED, load_reference
from deqode.solvers import fixed_point

F64 = torch.float64


#: Tiny models: one intra-op thread is faster (and steadier on a shared 2-core machine).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

# [derived] from the layer shapes of the official models (uswodce/sim `src/sim/net.py`)
PAPER_BUDGETS = {
    "sim-single-mnist": 81_480, "sim-single-cifar10": 168_694, "sim-single-svhn": 168_694,
    "sim-two-mnist": 80_466, "sim-two-cifar10": 168_264, "sim-two-svhn": 168_264,
    "sim-single-imgreg": 396_035, "sim-two-imgreg": 396_035, "sim-rff-imgreg": 263_683,
    "sim-single-cpmem": 17_294, "sim-two-cpmem": 17_294,
}
BREAKDOWNS = {
    "sim-single-mnist": {"convs + BN": 16_056, "basis linear": 58_850, "U,V": 2_500,
                         "reverse tier": 3_744, "W_out": 330},
    "sim-single-cifar10": {"convs + BN": 40_470, "basis linear": 121_650, "U,V": 2_500,
                           "reverse tier": 3_744, "W_out": 330},
    "sim-two-mnist": {"convs + BN": 12_348, "basis linear": 51_500, "U,V": 10_816,
                      "reverse tier": 5_472, "W_out": 330},
    "sim-two-cifar10": {"convs + BN": 36_396, "basis linear": 115_250, "U,V": 10_816,
                        "reverse tier": 5_472, "W_out": 330},
    "sim-single-imgreg": {"basis": 132_352, "U,V": 65_536, "reverse tier": 197_376,
                          "W_out": 771},
    "sim-rff-imgreg": {"U,V": 65_536, "reverse tier": 197_376, "W_out": 771},
    "sim-single-cpmem": {"TCN": 12_420, "basis linear": 352, "U,V": 1_024,
                         "reverse tier": 3_168, "W_out": 330},
    "sim-two-cpmem": {"TCN": 12_420, "basis linear": 352, "U,V": 1_024,
                      "reverse tier": 3_168, "W_out": 330},
}
FROZEN = {"sim-two-mnist": 52 * 50, "sim-two-cifar10": 52 * 50, "sim-two-imgreg": 128 * 256,
          "sim-rff-imgreg": 128 * 2, "sim-two-cpmem": 16 * 32}


@pytest.mark.parametrize("name", sorted(PAPER_BUDGETS))
def test_paper_builds_have_exact_trainable_parameter_counts(name: str) -> None:
    model = sim.build(name)
    assert sim.count_trainable(model) == PAPER_BUDGETS[name] == sim.BUILDS[name].params
    if name in BREAKDOWNS:
        assert model.parameter_breakdown() == BREAKDOWNS[name]


@pytest.mark.parametrize("name", sorted(FROZEN))
def test_rff_weights_are_frozen_buffers_excluded_from_the_count(name: str) -> None:
    torch.manual_seed(0)
    model = sim.build(name)
    rff = model.second_tier
    assert rff is not None and not list(rff.parameters())
    assert "second_tier.omega" in model.state_dict()
    assert rff.omega.numel() == FROZEN[name] and not rff.omega.requires_grad
    assert all(p.requires_grad for p in model.parameters())
    before = rff.omega.clone()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    x = torch.randn(2, *_input_shape(name))
    model.train()
    out = model(x)
    out.float().pow(2).mean().backward()
    opt.step()
    assert torch.equal(rff.omega, before)


def _input_shape(name: str) -> tuple[int, ...]:
    if "mnist" in name:
        return (1, 28, 28)
    if "cifar" in name or "svhn" in name:
        return (3, 32, 32)
    if "imgreg" in name:
        return (2,)
    return (1, 40)


def test_rff_draw_follows_the_global_torch_rng_and_the_input_dtype() -> None:
    torch.manual_seed(11)
    a = sim.RandomFourierFeatures(3, 8, bandwidth=2.0)
    torch.manual_seed(11)
    b = sim.RandomFourierFeatures(3, 8, bandwidth=2.0)
    assert torch.equal(a.omega, b.omega)
    x = torch.randn(5, 3, dtype=F64)
    out = a(x)
    assert out.dtype == F64 and out.shape == (5, 8)
    # cos/sin halves share Ω; each feature vector has norm exactly 1
    assert torch.allclose(out.norm(dim=1), torch.ones(5, dtype=F64))
    with pytest.raises(ValueError, match="even"):
        sim.RandomFourierFeatures(3, 7, 1.0)
    with pytest.raises(UnknownChoiceError, match="cossin"):
        sim.RandomFourierFeatures(3, 8, 1.0, feature="sincos")


@pytest.mark.parametrize("feature", ["cossin", "cosbias"])
def test_rff_inner_products_approximate_the_gaussian_kernel(feature: str) -> None:
    gen = torch.Generator().manual_seed(3)
    rff = sim.RandomFourierFeatures(2, 40_000, bandwidth=0.7, feature=feature,
                                    generator=gen).double()
    pts = torch.randn(6, 2, generator=gen, dtype=F64) * 0.7
    gram = rff(pts) @ rff(pts).T
    exact = koopman.gaussian_kernel(pts, pts, 0.7)
    assert (gram - exact).abs().max().item() < 0.05  # O(m^{-1/2}) Monte-Carlo error


def test_sim_forward_runs_no_solver(monkeypatch: pytest.MonkeyPatch) -> None:
    """No fixed-point solve anywhere in a SIM forward/backward pass; the output is the explicit
    composition W_out M(U V ξ(Φ(x)))."""

    def forbidden(*args, **kwargs):
        raise AssertionError("SIM called a fixed-point solver")

    monkeypatch.setattr(sim, "fixed_point", forbidden)
    monkeypatch.setattr("deqode.solvers.fixed_point", forbidden)
    monkeypatch.setattr("deqode.solvers.fixed_point.fixed_point", forbidden, raising=False)
    torch.manual_seed(0)
    model = sim.build("sim-two-digits").double().eval()
    x = torch.randn(4, 1, 8, 8, dtype=F64, requires_grad=True)
    y = model(x)
    y.sum().backward()
    assert model.nfe_forward == 0 and model.nfe_backward == 0
    h = model.second_tier(model.basis(x))
    uv = model.koopman_matrix()
    expected = model.w_out(model.reverse_tier(h @ uv.T))
    assert torch.allclose(y, expected, atol=1e-12)
    assert torch.linalg.matrix_rank(uv).item() <= model.rank == model.tier_dim // 2


def test_output_shapes_and_causality_of_the_tcn_model() -> None:
    torch.manual_seed(0)
    model = sim.build("sim-single-cpmem-smoke").double().eval()
    x = torch.randn(2, 1, 30, dtype=F64)
    y = model(x)
    assert y.shape == (2, 30, 10)
    x2 = x.clone()
    x2[..., 20:] += 1.0
    y2 = model(x2)
    assert torch.equal(y[:, :20], y2[:, :20]) and not torch.equal(y[:, 20:], y2[:, 20:])
    assert sim.build("sim-single-cpmem").basis.receptive_field == 3_571


def test_build_errors_name_the_valid_choices() -> None:
    with pytest.raises(UnknownChoiceError, match="sim-single-mnist"):
        sim.build("sim-mnist")
    with pytest.raises(UnknownChoiceError, match="bandwidth"):
        sim.build("sim-two-mnist", bandwith=1.0)
    assert sim.build("sim-two-mnist", bandwidth=3.0).second_tier.bandwidth == 3.0


def test_describe_layers_lists_shapes_and_counts() -> None:
    torch.manual_seed(0)
    model = sim.build("sim-two-mnist")
    rows = sim.describe_layers(model, torch.randn(2, 1, 28, 28))
    assert [r["stage"] for r in rows][:2] == ["basis Φ", "second tier ξ_σ"]
    assert rows[1]["shape"] == (104,) and rows[1]["frozen"] == 52 * 50
    assert sum(r["trainable"] for r in rows) == 80_466


# --------------------------------------------------------------------------------------------------
# Koopman helpers
# --------------------------------------------------------------------------------------------------


def test_hopf_closed_form_matches_numerical_integration_and_koopman_eigenpairs() -> None:
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(6, 2, generator=gen, dtype=F64)
    mu = torch.tensor([0.25, 0.5, 1.0, 2.0, 0.0, -0.5], dtype=F64)
    exact = koopman.hopf_flow(z, mu, 1.0, 0.5)
    assert torch.allclose(exact, koopman.hopf_flow_odeint(z, mu, 1.0, 0.5), atol=1e-8)
    lam = koopman.hopf_eigenvalues(1.0, 1.0, 0.5, 2, 2)
    pts = torch.randn(5, 2, generator=gen, dtype=F64)
    moved = koopman.hopf_flow(pts, 1.0, 1.0, 0.5)
    for p in range(3):
        for m in range(-2, 3):
            ratio = (koopman.hopf_eigenfunction(moved, 1.0, p, m)
                     / koopman.hopf_eigenfunction(pts, 1.0, p, m))
            assert torch.allclose(ratio, lam[p, m + 2].expand_as(ratio), atol=1e-10)


def test_hopf_root_solver_finds_the_repelling_origin_forward_iteration_the_cycle() -> None:
    mu, omega, h = 1.0, 1.0, 0.5

    def flow(z):
        return koopman.hopf_flow(z, mu, omega, h)

    z0 = torch.tensor([[1.0, 0.0]], dtype=F64)
    root, info = fixed_point(flow, z0, "broyden", tol=1e-10, max_iter=100, stop_mode="abs")
    assert info.converged and root.norm().item() < 1e-9
    jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0], root[0])
    moduli = torch.linalg.eigvals(jac).abs()
    assert torch.allclose(moduli, torch.full_like(moduli, math.exp(mu * h)))  # repelling
    traj = koopman.iterate(flow, torch.tensor([0.1, 0.0], dtype=F64), 200)
    steps = (traj[1:] - traj[:-1]).norm(dim=-1)
    assert abs(steps[-1].item() - koopman.hopf_chord(mu, omega, h)) < 1e-10
    assert abs(traj[-1].norm().item() - math.sqrt(mu)) < 1e-10


def test_edmd_on_the_joint_system_has_eigenvalue_one_for_input_only_monomials() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(3000, generator=gen, dtype=F64) * 3 - 1.5
    z = torch.rand(3000, generator=gen, dtype=F64) * 2 - 1
    exps = koopman.monomial_exponents(5)
    a = koopman.edmd(koopman.monomial_dictionary(x, z, exps),
                     koopman.monomial_dictionary(x, torch.tanh(0.7 * z + x), exps))
    eig = torch.linalg.eigvals(a)
    assert int(((eig - 1).abs() < 1e-8).sum()) == 6  # x^0 … x^5
    proj, rank = koopman.peripheral_projector(a, tol=1e-8)
    assert rank == 6 and torch.allclose(proj @ proj, proj, atol=1e-8)
    assert torch.allclose(torch.linalg.matrix_power(a, 400), proj, atol=1e-6)


def test_affine_koopman_matrix_keeps_one_unit_singular_value() -> None:
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(5, 5, generator=gen, dtype=F64)
    jac = 0.8 * w / torch.linalg.matrix_norm(w, ord=2)
    sv = koopman.power_singular_values(koopman.affine_koopman_matrix(jac), [1, 10, 60])
    assert torch.allclose(sv[:, 0], torch.ones(3, dtype=F64))
    assert sv[-1, 1].item() < 0.8**60 * 1.0001


def test_uv_diagnostics_of_a_projector_and_of_a_generic_matrix() -> None:
    q, _ = torch.linalg.qr(torch.randn(6, 3, generator=torch.Generator().manual_seed(0),
                                       dtype=F64))
    diag = koopman.uv_diagnostics(q @ q.T, 3)
    assert diag["idempotency_defect"] < 1e-12 and diag["numerical_rank"] == 3
    assert torch.allclose(diag["eigenvalues"][:3].real, torch.ones(3, dtype=F64))
    assert koopman.uv_diagnostics(2 * q @ q.T, 3)["idempotency_defect"] > 0.5


def test_contractive_tanh_deq_has_jacobian_spectrum_inside_the_disc() -> None:
    torch.manual_seed(0)
    model = sim.ContractiveTanhDEQ(64, 16, max_norm=0.9).double()
    with torch.no_grad():
        model.weight.mul_(5.0)
    x = torch.randn(4, 64, dtype=F64)
    assert koopman.spectral_radius(model.jacobian(x)).max().item() <= 0.9 + 1e-12
    logits = model(x)
    logits.sum().backward()
    assert model.last_solver_info.converged and model.weight.grad is not None


def test_deq_mfn_is_a_contraction_and_trains() -> None:
    torch.manual_seed(0)
    model = DEQMFN(width=8, input_scale=4.0, tol=1e-8, backward="ift").double()
    assert torch.linalg.matrix_norm(model.weight(), ord=2).item() <= 0.9 + 1e-12
    x = torch.rand(16, 2, dtype=F64)
    y = model(x)
    assert y.shape == (16, 3) and model.last_solver_info.converged
    y.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


# --------------------------------------------------------------------------------------------------
# experiments: reference cells, search driver, loops
# --------------------------------------------------------------------------------------------------


def test_every_paper_cell_is_not_transcribed() -> None:
    rows = load_reference("sim")
    assert rows and all(r["value"] == NOT_TRANSCRIBED and r["source"] for r in rows)
    assert {r["table"] for r in rows} == {"T1", "T2", "T3"}
    table = exp.paper_vs_ours("T1", ["single-tier SIM", "new row"], ["MNIST"],
                              {"single-tier SIM": {"digits": 0.5}}, "smoke", lambda v: f"{v:.2f}")
    assert list(table.columns) == ["MNIST (paper)", "digits (ours, smoke)"]
    assert table.loc["single-tier SIM", "MNIST (paper)"] == NOT_TRANSCRIBED
    assert table.loc["new row", "MNIST (paper)"] == "–"  # a row that is ours only
    assert table.loc["single-tier SIM", "digits (ours, smoke)"] == "0.50"
    assert table.loc["new row", "digits (ours, smoke)"] == "–"


def _stub_objective(calls: list[dict]):
    """Reports ``-(log10 lr + 2)² + step/100`` per step for up to 10 steps."""

    def objective(config, report):
        calls.append(config)
        for step in range(1, 11):
            if report(step, -(math.log10(config["lr"]) + 2) ** 2 + step / 100):
                break

    return objective


def test_random_search_selects_by_last_value_and_truncates_at_max_t() -> None:
    calls: list[dict] = []
    settings = exp.SearchSettings(num_samples=30, metric="val", mode="max", max_t=4,
                                  grace_period=2)
    space = {"lr": exp.LogUniform(1e-4, 1.0), "depth": exp.Choice((1, 2)),
             "step": exp.QRandInt(5, 50, 5), "seed": exp.RandInt(0, 3)}
    result = exp.run_search(_stub_objective(calls), "regression", "single-tier", seed=0,
                            backend="random", settings=settings, space=space)
    assert len(calls) == 30 and all(len(t.values) == 4 and t.truncated for t in result.trials)
    best = max(result.trials, key=lambda t: t.last)
    assert result.best_config == best.config and result.best_value == best.last
    for c in calls:
        assert 1e-4 <= c["lr"] <= 1.0 and c["depth"] in (1, 2) and 0 <= c["seed"] < 3
        assert c["step"] % 5 == 0 and 5 <= c["step"] <= 50
    again = exp.run_search(_stub_objective([]), "regression", "single-tier", seed=0,
                           backend="random", settings=settings, space=space)
    assert again.best_config == result.best_config  # seeded


def test_search_spaces_and_protocol_constants() -> None:
    assert set(exp.search_space("classification", "two-tier")) == {
        "train_batch_size", "epochs", "max_lr", "lr_mode", "steplr_step", "bandwidth", "seed"}
    assert exp.SEARCH_SETTINGS["copy-memory"].max_t == 6
    assert exp.final_run_seeds(1554) == [1554, 1555, 1557]
    assert exp.one_cycle(0.0, 20, 0.05) == (1e-3, 0.95)
    assert exp.one_cycle(7.0, 20, 0.05) == pytest.approx((0.05, 0.85))
    with pytest.raises(UnknownChoiceError, match="single-tier"):
        exp.search_space("copy-memory", "rff-only")


def test_optuna_backend_without_optuna_says_how_to_install_it(monkeypatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "optuna", None)  # makes `import optuna` fail
    with pytest.raises(ImportError, match=r"deqode\[tune\]"):
        exp.run_search(_stub_objective([]), "regression", "rff-only", n_trials=1)


@pytest.mark.skipif(importlib.util.find_spec("optuna") is None, reason="optuna not installed")
def test_optuna_backend_runs_random_search_with_pruning() -> None:
    calls: list[dict] = []
    settings = exp.SearchSettings(20, "val", "max", max_t=8, grace_period=2)
    result = exp.run_search(_stub_objective(calls), "regression", "rff-only", seed=0,
                            backend="optuna", settings=settings)
    assert len(result.trials) == len(calls) == 20 and math.isfinite(result.best_value)
    assert any(t.pruned for t in result.trials) and any(t.truncated for t in result.trials)
    assert result.best_value == max(t.last for t in result.trials)


def test_regression_and_copy_memory_loops_on_tiny_data() -> None:
    torch.manual_seed(0)
    from deqode.data import load_dataset

    train = load_dataset("sample-china", split="train", profile="smoke", size=16)
    test = load_dataset("sample-china", split="test", profile="smoke", size=16)
    model = exp.build_model(exp.regression_setup("smoke").models[2])
    out = exp.train_regression(model, train, test, iterations=5, lr=1e-3)
    assert len(out["test_psnr"]) == 5 and np.isfinite(out["final_test_psnr"])
    assert out["prediction"].shape == (8, 8, 3)
    seqs = load_dataset("copy-memory", split="train", profile="smoke", n_samples=20)
    model = sim.build("sim-single-cpmem-smoke")
    res = exp.train_copy_memory(model, seqs, seqs, epochs=1, batch_size=10, lr=0.01)
    assert len(res["steps"]) == 2 and 0 <= res["test_acc"] <= 100
    assert res["steps"][1]["time_ms"] >= res["steps"][0]["time_ms"]
    # the official test loss: the mean over batches of the per-batch mean CE
    x, y = seqs.inputs, seqs.targets
    with torch.no_grad():
        manual = np.mean([F.cross_entropy(model(x[i:i + 10]).flatten(0, 1),
                                          y[i:i + 10].flatten()).item() for i in (0, 10)])
    assert res["test_loss"] == pytest.approx(manual)


class _ConstantPredictor(torch.nn.Module):
    """Predicts ``cls`` at every position (perfect on the targets when ``cls`` is None)."""

    def __init__(self, targets: torch.Tensor | None = None, cls: int = 0) -> None:
        super().__init__()
        self.targets, self.cls, self.seen = targets, cls, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, length = x.shape[0], x.shape[-1]
        if self.targets is None:
            labels = torch.full((n, length), self.cls)
        else:
            labels, self.seen = self.targets[self.seen:self.seen + n], self.seen + n
        return F.one_hot(labels, 10).float()


def test_copy_memory_position_accuracy_separates_blanks_and_digits() -> None:
    from deqode.data import load_dataset

    seqs = load_dataset("copy-memory", split="test", profile="smoke", n_samples=12)
    blank = exp.copy_memory_position_accuracy(_ConstantPredictor(cls=0), seqs, batch_size=5)
    assert blank == {"blank positions": 100.0, "digit positions": 0.0,
                     "digit positions predicted blank": 100.0}
    # overall accuracy of "always blank" is (T + 10) / (T + 20), here T = 10
    _, overall = exp.evaluate_copy_memory(_ConstantPredictor(cls=0), seqs.inputs, seqs.targets, 5)
    assert overall == pytest.approx(100 * 20 / 30)
    assert exp.always_blank_accuracy(10) == pytest.approx(overall)
    perfect = exp.copy_memory_position_accuracy(_ConstantPredictor(seqs.targets), seqs,
                                                batch_size=5)
    assert perfect == {"blank positions": 100.0, "digit positions": 100.0,
                       "digit positions predicted blank": 0.0}
    with pytest.raises(ValueError, match="T \\+ 20"):
        exp.copy_memory_position_accuracy(_ConstantPredictor(), torch.utils.data.TensorDataset(
            torch.zeros(2, 1, 5), torch.zeros(2, 5, dtype=torch.long)))


def test_paper_profile_models_build_and_take_a_training_step() -> None:
    """Every paper-profile model (no data needed): one forward/backward on random inputs."""
    torch.manual_seed(0)
    cls = exp.classification_setup("paper")
    cases = [(spec, torch.randn(2, 1, 28, 28)) for spec in cls.models["mnist"]]
    cases += [(spec, torch.rand(64, 2)) for spec in exp.regression_setup("paper").models]
    cases += [(spec, torch.randint(0, 10, (2, 1, 200)).float())
              for spec in exp.copy_memory_setup("paper").models]
    for spec, x in cases:
        model = exp.build_model(spec)
        out = model(x)
        out.float().square().mean().backward()
        assert torch.isfinite(out).all(), spec.label
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad), spec.label


# ------------------------------------------------------------------------------------------------
# claims rules, plateau checks, cache, rehearsal (cpu profile)


def test_c3_rule_reaches_every_verdict() -> None:
    from deqode.book import claims

    rules = exp.rules
    fast, slow, deq = [10.0, 11.0, 10.5], [40.0, 41.0, 39.0], [30.0, 31.0, 29.0]
    assert rules.c3_decision({"a": 0}, 9.0, {"a": fast}, deq).verdict == claims.SUPPORTED
    assert rules.c3_decision({"a": 0}, 9.0, {"a": slow}, deq).verdict == claims.MIXED
    assert rules.c3_decision({"a": 3}, 9.0, {"a": fast}, deq).verdict == claims.NOT_SUPPORTED
    undecided = rules.c3_decision({"a": 0}, 1.0, {"a": fast}, deq)
    assert undecided.verdict == claims.NOT_DECIDABLE and "1.0" in undecided.reason
    assert f"{rules.MIN_DEQ_NFE:g}" in undecided.rule


def test_c4_classification_rule_reaches_every_verdict() -> None:
    from deqode.book import claims

    rules = exp.rules
    deq = [0.90, 0.91, 0.92]
    flat = {"s1": True, "s2": True, "deq": True}

    def decide(s1, s2, flat=flat):
        return rules.c4_classification({"s1": s1, "s2": s2, "deq": deq}, "deq", flat)

    assert decide([0.91, 0.92, 0.90], [0.95, 0.96, 0.95]).verdict == claims.SUPPORTED
    assert decide([0.80, 0.81, 0.82], [0.70, 0.71, 0.72]).verdict == claims.NOT_SUPPORTED
    assert decide([0.91, 0.92, 0.90], [0.70, 0.71, 0.72]).verdict == claims.MIXED
    few = decide([0.91], [0.92, 0.91, 0.90])
    assert few.verdict == claims.NOT_DECIDABLE and "1 seed" in few.reason
    chance = decide([0.12, 0.13, 0.11], [0.92, 0.91, 0.90])
    assert chance.verdict == claims.NOT_DECIDABLE and "chance" in chance.reason
    unflat = decide([0.91, 0.92, 0.90], [0.92, 0.91, 0.90], {**flat, "s2": False})
    assert unflat.verdict == claims.NOT_DECIDABLE and "s2" in unflat.reason
    assert f"{rules.ACC_MARGIN:.2f}" in unflat.rule


def test_c4_regression_and_copy_memory_rules_reach_every_verdict() -> None:
    from deqode.book import claims

    rules = exp.rules
    deq = [20.0, 20.1, 19.9]
    good, bad = [21.0, 21.1, 20.9], [18.0, 18.1, 17.9]
    flat = {"x": True}
    reg = rules.c4_regression
    assert reg({("n", "s"): good, ("n", "d"): deq}, "d", flat).verdict == claims.SUPPORTED
    assert reg({("n", "s"): bad, ("n", "d"): deq}, "d", flat).verdict == claims.NOT_SUPPORTED
    mixed = {("n", "s"): good, ("t", "s"): bad, ("n", "d"): deq, ("t", "d"): deq}
    assert reg(mixed, "d", flat).verdict == claims.MIXED
    assert reg({("n", "s"): good, ("n", "d"): deq}, "d", {"x": False}).verdict == \
        claims.NOT_DECIDABLE
    learned = {"s": [99.0, 98.0, 99.5], "d": [99.0, 99.0, 98.0]}
    cm = rules.c4_copy_memory
    low, high, dq = [0.02, 0.021, 0.019], [0.2, 0.21, 0.19], [0.05, 0.051, 0.049]
    assert cm({"s": low, "d": dq}, learned, "d").verdict == claims.SUPPORTED
    assert cm({"s": high, "d": dq}, learned, "d").verdict == claims.NOT_SUPPORTED
    assert cm({"s": low, "t": high, "d": dq}, {**learned, "t": [99.0] * 3}, "d").verdict == \
        claims.MIXED
    blank = cm({"s": low, "d": dq}, {**learned, "s": [0.0, 99.0, 12.0]}, "d")
    assert blank.verdict == claims.NOT_DECIDABLE
    assert "s: 2 of 3 seeds not beyond chance" in blank.reason
    unflat = cm({"s": low, "d": dq}, learned, "d", {"s": False, "d": True})
    assert unflat.verdict == claims.NOT_DECIDABLE and "not flat: s" in unflat.reason


def test_plateau_checks() -> None:
    rules = exp.rules
    assert rules.flattened([0.5, 0.9, 0.95, 0.951, 0.952], 3, 0.01)
    assert not rules.flattened([0.5, 0.9, 0.95, 0.97, 0.99], 3, 0.01)
    assert not rules.flattened([0.95], 3, 0.01)  # too short to tell
    assert rules.plateau_change([1.0, 3.0, 2.0], 2) == pytest.approx(1.0)
    oscillating = [20.0, 21.0] * 10  # a large range but no trend
    assert rules.window_trend(oscillating, 4) == pytest.approx(0.0)
    assert rules.window_trend(list(range(20)), 4) == pytest.approx(4.0)
    assert rules.window_trend([1.0, 2.0], 4) == math.inf


def test_observed_contraction_rate_of_a_geometric_sequence() -> None:
    k = torch.arange(40, dtype=F64)
    dist = torch.stack([0.5**k, 0.3**k], 1)
    rates = exp.observed_contraction_rates(dist)
    assert torch.allclose(rates, torch.tensor([0.5, 0.3], dtype=F64))
    assert exp.rates_match_spectral_radius(rates, torch.tensor([0.52, 0.3], dtype=F64))
    assert not exp.rates_match_spectral_radius(rates, torch.tensor([0.9, 0.3], dtype=F64))


def test_sim_loops_honour_rehearsal(monkeypatch) -> None:
    monkeypatch.setenv("DEQODE_REHEARSAL_STEPS", "2")
    x = torch.randn(64, 1, 8, 8)
    y = torch.randint(0, 10, (64,))
    data = torch.utils.data.TensorDataset(x, y)
    model = sim.build("sim-single-digits")
    history = exp.train_classifier(model, data, data, epochs=5, batch_size=8, lr=1e-2)
    assert len(history["epochs"]) == 1 and len(history["steps"]) == 2
    from deqode.data import load_dataset

    train = load_dataset("copy-memory", split="train", profile="smoke", T=5, n_samples=40)
    out = exp.train_copy_memory(sim.build("sim-single-cpmem-smoke"), train, train, epochs=3,
                                batch_size=10, lr=0.01, track_positions=True)
    assert len(out["steps"]) == 2 and len(out["epochs"]) == 1
    _, fit_losses = exp.fit_sim_regressor(torch.randn(8, 2), torch.randn(8), steps=50)
    assert len(fit_losses) == 2


def test_cpu_profile_setups_run_three_seeds_on_mnist8k() -> None:
    cls = exp.classification_setup("cpu")
    assert cls.datasets == ("mnist-8k",) and len(cls.seeds) >= exp.rules.MIN_SEEDS
    assert len(exp.regression_setup("cpu").run_seeds) >= exp.rules.MIN_SEEDS
    assert len(exp.copy_memory_setup("cpu").run_seeds) >= exp.rules.MIN_SEEDS
    assert exp.copy_memory_setup("smoke").run_seeds == (0,)
    assert "mnist-8k" in exp.needed_datasets("cpu")


def test_runs_go_through_fit_and_are_read_back_not_retrained(tmp_path, monkeypatch) -> None:
    import dataclasses

    setup = dataclasses.replace(exp.copy_memory_setup("smoke"), n_train=20, n_test=10,
                                models=exp.copy_memory_setup("smoke").models[:1])
    first = exp.run_copy_memory(setup, epochs=2, results_dir=tmp_path)
    (run,) = list((tmp_path / "smoke").iterdir())  # fit's records of the run
    assert run.name == "sim-t3-single-tier-ep2-seed0"  # an override is named apart
    assert json.loads((run / "status.json").read_text())["state"] == "completed"
    stamp = (run / "checkpoint.pt").stat().st_mtime_ns
    monkeypatch.setattr("deqode.train.loop.Trainer.train_step",
                        lambda *a, **k: pytest.fail("a finished run was retrained"))
    again = exp.run_copy_memory(setup, epochs=2, results_dir=tmp_path)
    label = setup.models[0].label
    assert again[label]["cached"] and not first[label]["cached"]
    assert (run / "checkpoint.pt").stat().st_mtime_ns == stamp
    for key in ("steps", "epochs", "test_loss", "test_acc", "position_accuracy", "params"):
        assert again[label][key] == first[label][key], key
    assert len(first[label]["epochs"]) == 2 and len(first[label]["steps"]) == 4


def test_copy_memory_task_splits_the_test_accuracy_by_position() -> None:
    from deqode.chapters.sim.experiments import CopyMemoryTask
    from deqode.metrics import Accumulator

    targets = torch.tensor([[0] * 12 + [3] * 5 + [0] * 5, [0] * 22])
    acc = Accumulator()
    CopyMemoryTask().evaluate(_ConstantPredictor(cls=0), (torch.zeros(2, 1, 22), targets), acc)
    assert acc.mean("test_blank_acc") == 100.0 and acc.mean("test_digit_acc") == 75.0
    assert acc.mean("test_digit_blank") == 100.0 and acc.mean("test_acc") == pytest.approx(
        100 * 39 / 44)


def test_every_run_of_the_three_tasks_is_a_cli_experiment() -> None:
    from deqode import chapters

    paper = [n for n in chapters.experiment_names("paper") if n.startswith("sim-")]
    cls, reg, cpm = (exp.classification_setup("paper"), exp.regression_setup("paper"),
                     exp.copy_memory_setup("paper"))
    assert len(paper) == (sum(len(m) for m in cls.models.values()) * len(cls.seeds)
                          + len(reg.images) * len(reg.models) + len(cpm.models))
    config = chapters.get("sim-t1-mnist-mondeq-seed1555", "paper")
    assert (config.model, config.epochs, config.seed, config.schedule, config.step_size) == (
        "mondeq-conv-mnist", 40, 1555, "steplr", 10)
    config = chapters.get("sim-t3-deq-tcn-seed1554", "paper")
    assert (config.model_kwargs["levels"], config.adam_eps, config.data_order) == (
        8, 1e-5, "in_order")
    config = chapters.get("sim-t2-tancik-text-3-two-tier-seed2331", "paper")
    assert (config.dataset_kwargs, config.epochs, config.lr) == ({"image": 3}, 2000, 1e-4)


def test_a_stored_search_sets_the_final_runs_and_a_missing_one_says_how_to_run_it(
        tmp_path, monkeypatch) -> None:
    import dataclasses

    from deqode.chapters.sim import search

    def one_trial(objective, task, variant, **kwargs):
        config = {"train_batch_size": 64, "epochs": 1, "max_lr": 0.01, "lr_mode": "constant",
                  "steplr_step": 10, "seed": 5}
        return exp.SearchResult(config, 0.5, [exp.TrialRecord(config, [(1, 0.5)])], "random",
                                exp.SEARCH_SETTINGS[task])

    monkeypatch.setattr(search, "run_search", one_trial)
    setup = exp.classification_setup("smoke")
    with pytest.raises(FileNotFoundError, match="python -m deqode search classification"):
        exp.run_classification(setup, "digits", tune=True, results_dir=tmp_path)
    path = exp.classification_search("digits", "single-tier", "smoke", results_dir=tmp_path)
    assert exp.load_search(path)["best_config"]["seed"] == 5
    single = dataclasses.replace(setup, models={"digits": setup.models["digits"][:1]})
    res = exp.run_classification(single, "digits", tune=True, results_dir=tmp_path)
    (record,) = res.values()
    assert record["seeds"] == [5] and record["config"]["source"] == "searched"
    assert len(record["histories"][0]["epochs"]) == 1
    assert (tmp_path / "smoke" / "sim-t1-digits-single-tier-searched-seed5").is_dir()
