"""ConvField's injected path: the recomputed ``act(GN_2(h)) + x̃`` node gives the plain graph's
values and gradients bit for bit (first and second order), keeps one state tensor less, and falls
back to the plain graph under torch.func transforms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deqode.metrics import SavedTensorMeter
from deqode.models.blocks import ConvField


def plain_field(field: ConvField, z: torch.Tensor) -> torch.Tensor:
    """The field's formula written out with autograd's own graph (no recomputation)."""
    h = field.norm2(field.conv1(None, z))
    h = field.activation(h) + field.condition
    return field.norm3(field.dropout(field.conv2(None, h)))


def make_field(dtype: torch.dtype, activation: str = "relu", seed: int = 0):
    torch.manual_seed(seed)
    field = ConvField(8, 12, max_groups=4, injected=True, dropout=0.2,
                      activation=activation).to(dtype).train()
    z = torch.randn(3, 8, 5, 5, dtype=dtype, requires_grad=True)
    condition = torch.randn(3, 12, 5, 5, dtype=dtype, requires_grad=True)
    field.prepare(z, condition)
    return field, z, condition


def gradients(field, z, condition, forward) -> list[torch.Tensor]:
    out = forward(field, z)
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1),
                          dtype=out.dtype).to(out.device)
    return [out, *torch.autograd.grad((out * weights).sum(),
                                      [z, condition, *field.parameters()])]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_recomputed_node_matches_the_plain_graph_bit_for_bit(dtype, activation):
    field, z, condition = make_field(dtype, activation)
    ours = gradients(field, z, condition, lambda f, x: f(None, x))
    reference = gradients(field, z, condition, plain_field)
    for a, b in zip(ours, reference, strict=True):
        assert torch.equal(a, b)


def test_second_order_gradients_match_the_plain_graph():
    """The Jacobian regulariser back-propagates through a vector-Jacobian product."""
    def penalty(forward):
        field, z, condition = make_field(torch.float64)
        out = forward(field, z)
        probe = torch.randn_like(out, generator=torch.Generator().manual_seed(2))
        (vjp,) = torch.autograd.grad(out, z, probe, create_graph=True)
        return torch.autograd.grad(vjp.square().sum(), [condition, *field.parameters()])

    ours, reference = penalty(lambda f, x: f(None, x)), penalty(plain_field)
    for a, b in zip(ours, reference, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert any(g.abs().sum() > 0 for g in ours)


def test_keeps_one_state_tensor_less():
    field, z, _ = make_field(torch.float32)
    state_bytes = 3 * 12 * 5 * 5 * 4  # the activation's output, float32
    statistics_bytes = 2 * 3 * 4 * 4  # GN_2's mean and 1/std per sample and group
    peaks = []
    for forward in (lambda f, x: f(None, x), plain_field):
        meter = SavedTensorMeter()
        with meter.track(exclude=field.parameters()):
            forward(field, z).sum().backward()
        peaks.append(meter.peak_bytes)
    assert peaks[1] - peaks[0] == state_bytes + statistics_bytes


def test_torch_func_transforms_take_the_plain_graph():
    field, z, _ = make_field(torch.float64)
    field.eval()
    x = z.detach()
    jacobian = torch.func.jacrev(lambda v: field(None, v))(x)
    assert jacobian.shape == (*x.shape, *x.shape)
    out = field(None, x)
    probe = torch.randn_like(out)
    (vjp,) = torch.autograd.grad(field(None, x.requires_grad_()), x, probe)
    torch.testing.assert_close(torch.einsum("...,...abcd->abcd", probe, jacobian), vjp)


def test_out_of_place_activation_is_unchanged_for_a_softplus_field():
    field, z, condition = make_field(torch.float64, "softplus")
    expected = plain_field(field, z)
    assert torch.equal(field(None, z), expected)
    assert torch.equal(expected, field.norm3(field.dropout(field.conv2(
        None, F.softplus(field.norm2(field.conv1(None, z))) + condition))))
