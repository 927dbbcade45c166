"""deqode.models: named builds, parameter counts, shapes, gradients, counters, DEQ gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deqode.choices import UnknownChoiceError
from deqode.errors import SolverFailure
from deqode.models import (
    DATASETS,
    DEQ,
    AlternatingInit,
    AugmentedNeuralODE,
    HomoODE,
    InitLayer,
    NeuralODE,
    VariationalDropout2d,
    build,
    count_parameters,
    entry,
    names,
)
from deqode.solvers import fixed_point

DT = torch.float64
SMOKE = ["homoode-digits", "node-digits", "anode-digits", "deq-digits"]


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors: one thread


def n_params(module: nn.Module) -> int:
    return count_parameters(module.parameters())


def digits_batch(n: int = 4, seed: int = 0, dtype: torch.dtype = torch.float32) -> Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed), dtype=dtype)


# --------------------------------------------------------------------------------------------------
# registry and parameter counts
# --------------------------------------------------------------------------------------------------


def test_names_cover_every_model_and_dataset():
    listed = names()
    for model in ("homoode", "node", "anode", "deq"):
        for dataset in ("cifar10", "cifar100", "tiny", "digits", "mnist", "svhn"):
            assert f"{model}-{dataset}" in listed
    assert listed == sorted(listed)


# name: (total without init layer, init layer, C, K, classes, in_channels, stem, ODE func, head)
PAPER_COUNTS = {
    "homoode-cifar10": (132_938, 192, 64, 256, 10, 3, 38_976, 74_112, 19_850),
    "homoode-cifar100": (565_988, 384, 128, 512, 100, 3, 151_680, 295_680, 118_628),
    "homoode-tiny": (617_288, 384, 128, 512, 200, 3, 151_680, 295_680, 169_928),
}


@pytest.mark.parametrize("name", list(PAPER_COUNTS))
def test_homoode_parameter_counts_match_spec_and_closed_forms(name):
    total, init, c, k, classes, c_in, stem, func, head = PAPER_COUNTS[name]
    model = build(name)
    # the counts of the released classes (wadx2019/homoode scripts/homoinit_*.py, instantiated)
    assert count_parameters(model.main_parameters()) == total
    assert count_parameters(model.init_parameters()) == init
    assert n_params(model) == total + init
    assert (n_params(model.stem), n_params(model.field), n_params(model.head)) == (stem, func, head)
    # their closed forms, from the layer shapes of the released classes
    assert stem == (9 * c_in * c + c) + 2 * c + (9 * c * c + c) + 2 * c
    assert func == 2 * (9 * c * c + c) + 2 * 2 * c
    assert head == 2 * c + (c * k + k) + 2 * k + (k * classes + classes)
    assert init == c + 2 * c
    assert total == stem + func + head


@pytest.mark.parametrize("name, size", [("homoode-cifar10", 32), ("homoode-tiny", 64)])
def test_paper_feature_map_is_c_by_16_by_16(name, size):
    model = build(name).eval()
    with torch.no_grad():
        x_tilde = model.stem(torch.zeros(1, 3, size, size))
    assert x_tilde.shape == (1, model.field.state_channels, 16, 16)


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_baselines_match_homoode_parameter_count_within_5_percent(dataset):
    target = count_parameters(build(f"homoode-{dataset}").main_parameters())
    for model in ("node", "anode", "deq"):
        count = n_params(build(f"{model}-{dataset}"))
        assert abs(count / target - 1) < 0.05, (model, dataset, count, target)


def test_smoke_homonet_is_the_spec_architecture():
    model = build("homoode-digits")
    assert model.field.state_channels == 8 and model.field.dropout.p == 0.1
    assert model.field.norm2.num_groups == 4 and model.head[2].out_channels == 32
    x_tilde = model.stem(digits_batch())
    assert x_tilde.shape == (4, 8, 4, 4)  # 8 -> 8 -> 4, state 8x4x4
    assert entry("homoode-digits").input_shape == (1, 8, 8)


def test_homoode_builds_carry_the_scripts_settings():
    expected = {  # name: (lr_init, freq, grad_mode, dropout, GN groups)
        "homoode-cifar10": (0.02, 20, "backprop", 0.1, 32),
        "homoode-cifar100": (0.01, 5, "frozen_adjoint", 0.15, 32),
        "homoode-tiny": (0.05, 20, "frozen_adjoint", 0.15, 8),
    }
    for name, (lr_init, freq, mode, p, groups) in expected.items():
        model = build(name)
        got = (model.lr_init, model.freq, model.grad_mode, model.field.dropout.p,
               model.field.norm3.num_groups)
        assert got == (lr_init, freq, mode, p, groups), name
        assert (model.method, model.rtol, model.atol) == ("dopri5", 1e-3, 1e-3)


def test_build_overrides():
    model = build("homoode-digits", grad_mode="adjoint", tol=1e-5, method="rk4",
                  options={"step_size": 0.25})
    assert (model.grad_mode, model.rtol, model.atol, model.method) == ("adjoint", 1e-5, 1e-5, "rk4")
    assert build("deq-digits", tol=1e-4, solver="anderson").tol == 1e-4
    assert build("anode-cifar10", augment_channels=8).field.state_channels == 72


# --------------------------------------------------------------------------------------------------
# bad input
# --------------------------------------------------------------------------------------------------


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(UnknownChoiceError, match=r"model 'homoode-cifar11'.*'homoode-cifar10'"):
        build("homoode-cifar11")


def test_unknown_override_is_rejected():
    with pytest.raises(UnknownChoiceError, match=r"unknown override 'grad' .*'grad_mode'"):
        build("homoode-digits", grad="adjoint")
    with pytest.raises(ValueError, match="either tol or rtol/atol"):
        build("node-digits", tol=1e-3, rtol=1e-4)


def test_unknown_gradient_mode_lists_the_modes():
    with pytest.raises(UnknownChoiceError, match="'backprop', 'adjoint', 'frozen_adjoint'"):
        build("homoode-digits", grad_mode="semi")
    with pytest.raises(UnknownChoiceError, match="gradient mode 'frozen_adjoint'"):
        build("node-digits", grad_mode="frozen_adjoint")
    with pytest.raises(UnknownChoiceError, match="fixed-point solver 'newton'"):
        build("deq-digits", solver="newton")


@pytest.mark.parametrize("name", SMOKE)
def test_wrong_input_shape_raises_a_clear_error(name):
    model = build(name)
    with pytest.raises(ValueError, match=r"with C=1, got shape \(2, 3, 8, 8\)"):
        model(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"expects an input of shape \(N, C, H, W\)"):
        model(torch.randn(2, 8, 8))


# --------------------------------------------------------------------------------------------------
# shapes, gradients, counters for every smoke model
# --------------------------------------------------------------------------------------------------


SMOKE_CONFIGS = [
    ("homoode-digits", {"grad_mode": "backprop"}),
    ("homoode-digits", {"grad_mode": "adjoint"}),
    ("homoode-digits", {"grad_mode": "frozen_adjoint"}),
    ("homoode-digits", {"use_init_layer": False}),
    ("node-digits", {}),
    ("node-digits", {"grad_mode": "adjoint"}),
    ("anode-digits", {}),
    ("deq-digits", {}),
    ("deq-digits", {"backward": "one_step"}),
]


@pytest.mark.parametrize("name, overrides", SMOKE_CONFIGS)
def test_forward_shape_and_finite_gradients(name, overrides):
    torch.manual_seed(0)
    model = build(name, **overrides).train()
    logits = model(digits_batch())
    assert logits.shape == (4, 10) and torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.arange(4)).backward()
    for pname, p in model.named_parameters():
        if pname.startswith("init_layer"):
            assert p.grad is None, "the initial point is used detached"
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), pname
    assert model.nfe_forward > 0
    adjoint_like = overrides.get("grad_mode") in ("adjoint", "frozen_adjoint") or (
        name.startswith("deq") and overrides.get("backward") != "one_step")
    assert (model.nfe_backward > 0) == adjoint_like
    model.reset_nfe()
    assert model.nfe_forward == model.nfe_backward == 0


def test_float64_follows_the_input():
    model = build("homoode-digits").to(DT).eval()
    assert model(digits_batch(dtype=DT)).dtype == DT


def test_anode_appends_zero_channels_and_head_reads_them():
    model = build("anode-digits")
    assert isinstance(model, AugmentedNeuralODE)
    x_tilde = model.stem(digits_batch())
    z0, condition = model.start(x_tilde)
    assert condition is None and z0.shape == (4, 10, 4, 4)
    assert torch.equal(z0[:, :8], x_tilde) and not z0[:, 8:].any()
    assert model.head[0].num_channels == 10


def test_neural_ode_input_is_the_initial_point():
    model = build("node-digits")
    x_tilde = model.stem(digits_batch())
    z0, condition = model.start(x_tilde)
    assert z0 is x_tilde and condition is None
    assert not model.field.injected and model.field.conv1.time_dependent


def test_forward_step_cap_raises_solver_failure():
    model = build("node-digits", max_num_steps=1)
    with pytest.raises(SolverFailure, match="forward ODE solve exceeded max_num_steps=1"):
        model(digits_batch())
    # torchdiffeq's own dopri5 option is translated as well
    model = build("homoode-digits", max_num_steps=None, options={"max_num_steps": 1})
    with pytest.raises(SolverFailure, match="max_num_steps exceeded"):
        model(digits_batch())


def test_non_finite_ode_raises_solver_failure():
    model = build("homoode-digits")
    with torch.no_grad():
        model.field.conv2.conv.bias.fill_(float("nan"))
    with pytest.raises(SolverFailure):
        model(digits_batch())


# --------------------------------------------------------------------------------------------------
# the shared initial point
# --------------------------------------------------------------------------------------------------


def test_init_layer_is_identical_across_samples_and_positions():
    torch.manual_seed(0)
    layer = InitLayer(16, max_groups=4)
    z0 = layer(torch.randn(3, 16, 5, 7))
    assert z0.shape == (3, 16, 5, 7)
    assert torch.equal(z0, z0[:1, :, :1, :1].expand_as(z0))
    assert n_params(layer) == 3 * 16


def test_init_layer_gives_plus_minus_one_for_64_channels_in_32_groups():
    """Two channels per group: the normalised values are ±d/sqrt(d² + eps), d = (w_a − w_b)/2."""
    torch.manual_seed(0)
    layer = InitLayer(64, max_groups=32).to(DT)
    z0 = layer(torch.zeros(2, 64, 3, 3, dtype=DT))[0, :, 0, 0]
    w = layer.conv.weight.detach().flatten()
    d = (w[0::2] - w[1::2]) / 2
    expected = d / torch.sqrt(d**2 + layer.norm.eps)
    assert torch.allclose(z0[0::2], expected, atol=1e-12)
    assert torch.allclose(z0[1::2], -expected, atol=1e-12)
    clear = d.abs() > 0.05
    assert clear.sum() > 20 and torch.allclose(z0[0::2][clear].abs(), torch.ones(1, dtype=DT),
                                               atol=5e-3)


def test_alternating_init_is_create_init():
    z = AlternatingInit()(torch.randn(2, 4, 3, 3))
    assert torch.equal(z[:, 0::2], -torch.ones(2, 2, 3, 3))
    assert torch.equal(z[:, 1::2], torch.ones(2, 2, 3, 3))
    model = build("homoode-digits", use_init_layer=False)
    assert model.init_parameters() == [] and n_params(model) == 2594
    with pytest.raises(RuntimeError, match="no init layer"):
        model.init_loss()


def test_init_loss_regresses_z0_on_the_detached_endpoint():
    torch.manual_seed(0)
    model: HomoODE = build("homoode-digits")
    with pytest.raises(RuntimeError, match="training mode first"):
        model.init_loss()
    x = digits_batch()
    model.train()(x)
    endpoint = model._last_endpoint
    assert endpoint is not None and not endpoint.requires_grad
    z0 = model.init_layer(endpoint)
    loss = model.init_loss()
    assert torch.equal(loss, F.smooth_l1_loss(z0, endpoint))
    loss.backward()
    assert all(p.grad is not None for p in model.init_parameters())
    assert all(p.grad is None for p in model.main_parameters())
    with torch.no_grad():
        model.eval()(digits_batch(seed=1))
    assert model._last_endpoint is endpoint  # eval passes do not move the target
    main_ids = {id(p) for p in model.main_parameters()}
    assert not main_ids & {id(p) for p in model.init_parameters()}


# --------------------------------------------------------------------------------------------------
# variational dropout
# --------------------------------------------------------------------------------------------------


def test_variational_dropout_mask_is_per_channel_fixed_and_off_in_eval():
    torch.manual_seed(0)
    drop = VariationalDropout2d(0.25)
    h = torch.ones(64, 6, 3, 3, dtype=DT)
    drop.resample(h)
    assert drop.mask.shape == (64, 6, 1, 1)
    assert set(drop.mask.unique().tolist()) == {0.0, 1 / 0.75}
    first = drop(h)
    assert torch.equal(first, drop(h))  # the same mask at every evaluation
    assert torch.equal(first, first[:, :, :1, :1].expand_as(first))
    drop.eval()
    drop.resample(h)
    assert drop.mask is None and torch.equal(drop(h), h)
    with pytest.raises(ValueError, match="dropout probability"):
        VariationalDropout2d(1.0)


# --------------------------------------------------------------------------------------------------
# DEQ
# --------------------------------------------------------------------------------------------------


class ContractiveCell(nn.Module):
    """``f(z; x̃) = tanh(0.3·m ⊙ Conv(z) + x̃)``: a small conv DEQ layer that is a contraction."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.dropout = VariationalDropout2d(0.2)
        self.condition: Tensor | None = None

    def prepare(self, condition: Tensor) -> None:
        self.condition = condition
        self.dropout.resample(condition)

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh(0.3 * self.dropout(self.conv(z)) + self.condition)


def contractive_deq(**overrides) -> DEQ:
    torch.manual_seed(0)
    settings = dict(tol=1e-13, max_iter=100, backward_tol=1e-13, backward_max_iter=200)
    model = build("deq-digits", **{**settings, **overrides}).to(DT).train()
    model.cell = ContractiveCell(8).to(DT).train()
    return model


def test_deq_implicit_gradient_equals_unrolled_autograd():
    model = contractive_deq()
    x, c = digits_batch(3, dtype=DT), torch.randn(3, 10, dtype=DT)
    torch.manual_seed(1)
    loss = (model(x) * c).sum()
    params = model.main_parameters()
    implicit = torch.autograd.grad(loss, params)
    info = model.last_solver_info
    assert info.converged and model.last_backward_info.converged
    mask = model.cell.dropout.mask
    # long unrolled Picard iteration with autograd through every step, same dropout mask
    x_tilde = model.stem(x)
    model.cell.condition = x_tilde
    z = torch.zeros_like(x_tilde)
    for _ in range(120):
        z = model.cell(z)
    assert model.cell.dropout.mask is mask
    unrolled = torch.autograd.grad((model.head(z) * c).sum(), params)
    for got, want in zip(implicit, unrolled, strict=True):
        assert (got - want).norm() <= 1e-6 * want.norm() + 1e-12


def test_deq_one_step_gradient_differentiates_only_the_last_application():
    model = contractive_deq(backward="one_step")
    x, c = digits_batch(3, dtype=DT), torch.randn(3, 10, dtype=DT)
    torch.manual_seed(1)
    one_step = torch.autograd.grad((model(x) * c).sum(), model.main_parameters())
    assert model.nfe_backward == 0
    x_tilde = model.stem(x)
    model.cell.condition = x_tilde
    with torch.no_grad():
        z_star, _ = fixed_point(model.cell, torch.zeros_like(x_tilde), "broyden", 1e-13, 100)
    reference = torch.autograd.grad((model.head(model.cell(z_star)) * c).sum(),
                                    model.main_parameters())
    for got, want in zip(one_step, reference, strict=True):
        assert (got - want).norm() <= 1e-8 * want.norm() + 1e-12
    exact = contractive_deq()
    torch.manual_seed(1)
    ift = torch.autograd.grad((exact(x) * c).sum(), exact.main_parameters())
    assert (one_step[0] - ift[0]).norm() > 1e-3 * ift[0].norm()  # the stem's gradient differs


def test_deq_real_cell_implicit_gradient_equals_dense_linear_solve():
    """The MDEQ-style cell is not a contraction; check its IFT gradient against (I − Jᵀ)⁻¹ g."""
    torch.manual_seed(0)
    model = build("deq-digits", tol=1e-12, max_iter=400, backward_tol=1e-12,
                  backward_max_iter=300).to(DT).eval()
    x = digits_batch(2, dtype=DT)
    z_out = model.solve(model.stem(x))
    assert model.last_solver_info.converged
    g = torch.randn_like(z_out)
    params = list(model.cell.parameters())
    implicit = torch.autograd.grad(z_out, params, g)
    assert model.last_backward_info.converged
    z_star = z_out.detach()
    jac = torch.autograd.functional.jacobian(model.cell, z_star)  # (2, 8, 4, 4, 2, 8, 4, 4)
    n = z_star[0].numel()
    u = torch.stack([
        torch.linalg.solve(torch.eye(n, dtype=DT) - jac[b, ..., b, :, :, :].reshape(n, n).T,
                           g[b].reshape(n))
        for b in range(2)
    ]).reshape_as(z_star)
    dense = torch.autograd.grad(model.cell(z_star), params, u)
    for got, want in zip(implicit, dense, strict=True):
        assert (got - want).norm() <= 1e-6 * want.norm() + 1e-12


def test_deq_counters_and_solver_info():
    torch.manual_seed(0)
    model = build("deq-digits", max_iter=7)
    model(digits_batch()).sum().backward()
    info = model.last_solver_info
    assert info.iterations == 7 and not info.converged  # MDEQ-like: stops at the threshold
    assert model.nfe_forward == info.nfe + 2  # + the output and the VJP graph applications
    assert model.nfe_backward == model.last_backward_info.nfe > 0


def test_deq_failures():
    model = build("deq-digits", max_iter=3, require_convergence=True)
    with pytest.raises(SolverFailure, match="did not reach tol"):
        model(digits_batch())
    model = build("deq-digits")
    with torch.no_grad():
        model.cell.field.conv1.conv.weight.fill_(float("nan"))
    with pytest.raises(SolverFailure, match="diverged"):
        model(digits_batch())


def test_model_classes_can_be_built_directly():
    assert isinstance(NeuralODE(1, 10, 8, 32, max_groups=4), NeuralODE)
    assert isinstance(HomoODE(1, 10, 8, 32, max_groups=4), HomoODE)
    assert isinstance(DEQ(1, 10, 8, 32, max_groups=4), DEQ)


def test_build_covers_the_sim_and_mondeq_families():
    from deqode.models import mondeq, sim

    assert set(sim.names()) | set(mondeq.names()) <= set(names())
    assert count_parameters(build("sim-two-mnist").parameters()) == 80_466
    assert count_parameters(build("mondeq-fc-mnist").parameters()) == 84_313
    with pytest.raises(UnknownChoiceError, match="sim-two-mnist"):
        build("sim-three-mnist")


def test_keyword_settings_are_sorted_into_their_groups_and_unknown_ones_rejected() -> None:
    """Models take the ODE-solver and backbone settings as plain keywords (the registry's flat
    build arguments); an unknown keyword names itself and the valid ones."""
    from deqode.models.cnf import CNF
    from deqode.models.homoode import HomoODE

    model = HomoODE(in_channels=1, channels=8, final_channels=16, rtol=1e-5, method="rk4")
    assert (model.rtol, model.atol, model.method) == (1e-5, 1e-3, "rk4")
    with pytest.raises(TypeError, match=r"unknown keyword arguments \['rtl'\].*rtol"):
        CNF(rtl=1e-3)
    with pytest.raises(UnknownChoiceError, match="gradient mode"):
        CNF(grad_mode="reverse")
