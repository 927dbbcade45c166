"""monDEQ: monotone parametrisations, operator splitting, implicit gradients, named budgets."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deqode.choices import UnknownChoiceError
from deqode.models import mondeq
from deqode.models.mondeq import (
    MonDEQ,
    MonotoneConv,
    MonotoneLinear,
    ReLUProx,
    splitting_solve,
)

F64 = torch.float64


#: Tiny models: one intra-op thread is faster (and steadier on a shared 2-core machine).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def dense(op, shape: tuple[int, ...], transpose: bool = False) -> torch.Tensor:
    """The matrix of ``op.multiply`` (or its transpose) on flattened states of ``shape``."""
    n = int(torch.tensor(shape).prod())
    basis = torch.eye(n, dtype=F64).reshape(n, *shape)
    with torch.no_grad():
        cols = (op.multiply_transpose if transpose else op.multiply)(basis)
    return cols.reshape(n, n).T


@pytest.mark.parametrize("name", mondeq.names())
def test_named_builds_have_the_reference_parameter_counts(name: str) -> None:
    model = mondeq.build(name)
    assert sum(p.numel() for p in model.parameters()) == mondeq.expected_parameters(name)


def test_named_build_counts_match_the_spec_values() -> None:
    assert mondeq.expected_parameters("mondeq-conv-mnist") == 79_500
    assert mondeq.expected_parameters("mondeq-conv-cifar10") == 172_218
    assert mondeq.expected_parameters("mondeq-fc-mnist") == 84_313
    with pytest.raises(UnknownChoiceError, match="mondeq-fc-mnist"):
        mondeq.build("mondeq-fc-cifar")


@pytest.mark.parametrize("m", [0.05, 0.5, 1.0])
def test_fully_connected_operator_is_m_strongly_monotone(m: float) -> None:
    torch.manual_seed(0)
    op = MonotoneLinear(4, 12, m).double()
    with torch.no_grad():
        op.A.weight.mul_(3.0)
        op.B.weight.mul_(3.0)
    i_minus_w = torch.eye(12, dtype=F64) - op.weight_matrix()
    sym_min = torch.linalg.eigvalsh((i_minus_w + i_minus_w.T) / 2).min().item()
    assert sym_min >= m - 1e-10 and sym_min <= m + 10  # the AᵀA term adds on top of m


def test_conv_operator_matches_circular_convolutions_and_is_monotone() -> None:
    """The Fourier-domain W equals (1 − m)z − g ÂᵀÂz + B̂z − B̂ᵀz with circular convs."""
    torch.manual_seed(1)
    shape, channels, m = (5, 6), 3, 0.3
    op = MonotoneConv(2, channels, shape, m).double()
    with torch.no_grad():
        op.g.fill_(1.7)
        op.h.fill_(0.8)
    z = torch.randn(2, channels, *shape, dtype=F64)
    a = op.A.weight / op.A.weight.norm()
    b = op.h * op.B.weight / op.B.weight.norm()

    def conv(x, k):
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), k)

    def conv_t(x, k):  # adjoint of the circular cross-correlation
        return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), k.transpose(0, 1).flip(-1, -2))

    with torch.no_grad():
        expected = (1 - m) * z - op.g * conv_t(conv(z, a), a) + conv(z, b) - conv_t(z, b)
        assert torch.allclose(op.multiply(z), expected, atol=1e-12)
    mat, mat_t = dense(op, (channels, *shape)), dense(op, (channels, *shape), transpose=True)
    assert torch.allclose(mat.T, mat_t, atol=1e-12)
    i_minus_w = torch.eye(mat.shape[0], dtype=F64) - mat
    assert torch.linalg.eigvalsh((i_minus_w + i_minus_w.T) / 2).min().item() >= m - 1e-10
    solve, solve_t = op.resolvent(0.7)
    r = torch.randn(2, channels, *shape, dtype=F64)
    v = solve(r)
    assert torch.allclose(v + 0.7 * (v - op.multiply(v)).detach(), r, atol=1e-10)
    v_t = solve_t(r)
    assert torch.allclose(v_t + 0.7 * (v_t - op.multiply_transpose(v_t)).detach(), r, atol=1e-10)


@pytest.mark.parametrize("method", ["peaceman_rachford", "forward_backward"])
def test_splitting_converges_to_the_fixed_point_of_a_strongly_monotone_instance(method) -> None:
    torch.manual_seed(2)
    op = MonotoneLinear(5, 10, m=0.5).double()
    x = torch.randn(7, 5, dtype=F64)
    alpha = 1.0 if method == "peaceman_rachford" else 0.1
    with torch.no_grad():
        bias = op.inject(x)
        solve, _ = op.resolvent(alpha)
        z, info = splitting_solve(op.multiply, solve, F.relu, bias, method, alpha, 1e-12, 2000)
        residual = (z - F.relu(op.multiply(z) + bias)).norm(dim=1) / z.norm(dim=1)
    assert info.converged and info.iterations < 2000
    assert residual.max().item() < 1e-9
    assert info.residuals[-1] <= 1e-12 and len(info.residuals) == info.iterations


def unrolled_pr(op: MonotoneLinear, x: torch.Tensor, alpha: float, steps: int) -> torch.Tensor:
    """Peaceman–Rachford unrolled with autograd (differentiable resolvent)."""
    bias = op.inject(x)
    eye = torch.eye(op.out_dim, dtype=x.dtype)
    resolvent = torch.linalg.inv(eye + alpha * (eye - op.weight_matrix()))
    z = u = torch.zeros_like(bias)
    for _ in range(steps):
        u_half = 2 * z - u
        z_half = (u_half + alpha * bias) @ resolvent.T
        u = 2 * z_half - u_half
        z = F.relu(u)
    return z


@pytest.mark.parametrize("backward", ["splitting", "ift"])
def test_implicit_gradient_matches_unrolled_autograd_float64(backward: str) -> None:
    torch.manual_seed(3)
    op = MonotoneLinear(4, 8, m=0.5).double()
    layer = MonDEQ(op, alpha=1.0, tol=1e-13, max_iter=3000, backward=backward,
                   backward_tol=1e-13 if backward == "splitting" else 1e-12)
    x = torch.randn(6, 4, dtype=F64, requires_grad=True)
    weights = torch.randn(6, 8, dtype=F64)

    z = layer(x)
    assert layer.last_solver_info.converged
    grads = torch.autograd.grad((weights * z).sum(), [x, *op.parameters()])

    x_ref = x.detach().clone().requires_grad_()
    z_ref = unrolled_pr(op, x_ref, 1.0, 400)
    ref = torch.autograd.grad((weights * z_ref).sum(), [x_ref, *op.parameters()])
    assert torch.allclose(z, z_ref, atol=1e-10)
    for g, r in zip(grads, ref, strict=True):
        assert torch.allclose(g, r, rtol=1e-7, atol=1e-9), (g - r).abs().max()
    if backward == "splitting":
        assert layer.last_backward_info.converged and layer.nfe_backward > 0


def test_conv_mondeq_splitting_gradient_matches_ift_gradient() -> None:
    torch.manual_seed(4)
    x = torch.randn(2, 1, 4, 4, dtype=F64)
    grads = {}
    for backward in ("splitting", "ift"):
        torch.manual_seed(5)
        net = mondeq.MonDEQConvNet(1, 3, 4, num_classes=3, m=0.5, pool=2, tol=1e-12,
                                   max_iter=2000, backward=backward, backward_tol=1e-12).double()
        loss = net(x).square().sum()
        grads[backward] = torch.autograd.grad(loss, list(net.parameters()))
        assert net.mon.last_solver_info.converged
    for a, b in zip(grads["splitting"], grads["ift"], strict=True):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-9)


def test_border_relu_zeroes_the_border_and_its_derivative() -> None:
    prox = ReLUProx(border=1)
    y = torch.ones(1, 2, 4, 4)
    out, d = prox(y), prox.derivative(y)
    assert out[..., 0, :].abs().sum() == 0 and out[..., 1:3, 1:3].eq(1).all()
    assert torch.equal(out, d)


def test_invalid_settings_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="m must be positive"):
        MonotoneLinear(2, 3, m=0.0)
    with pytest.raises(UnknownChoiceError, match="peaceman_rachford"):
        MonDEQ(MonotoneLinear(2, 3), solver="broyden")
    with pytest.raises(UnknownChoiceError, match="splitting"):
        MonDEQ(MonotoneLinear(2, 3), backward="adjoint")
    with pytest.raises(ValueError, match="MonotoneConv built for"):
        MonotoneConv(1, 2, (5, 5)).inject(torch.zeros(1, 1, 4, 4))
