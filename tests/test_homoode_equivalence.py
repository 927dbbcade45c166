"""Pins one seeded training step of HomoODE (and of the other users of its field) to a saved
reference, so that a speed-up cannot change a result.

``tests/data/homoode_step_v1.pt`` was written by ``python tests/test_homoode_equivalence.py`` on
the code of commit 0659ec8, before the HomoODE step was optimised (issue 14). Each case builds a
model of the CIFAR-10 HomoNet family from seed 0, draws a small random batch, and runs one forward
pass in training mode (dropout mask included) and one backward pass of a fixed loss; it records
the logits, the gradients of the input and of every parameter, and the NFE counters as
:func:`deqode.metrics.read_nfe` reads them. To keep the file small a gradient is stored as its
:func:`fingerprint`: at most 512 of its entries, evenly spaced, plus its sum and its sum of
absolute values.

What "equal" means here: the NFE counts exactly; the tensors within round-off, i.e. within
``rtol`` relative plus ``atol`` times the largest entry of their kind (the logits; all parameter
gradients of the model together; the input gradient). float32: rtol 1e-4, atol 1e-5. Between one
and two intra-op threads (another order of the additions in the convolutions) the float32 results
moved by at most 3e-7 of that scale on the machine that wrote the fixture (the gradients of the
biases in front of a BatchNorm are pure round-off, ~1e-7 of the scale, hence the absolute part);
a changed formula, step-size decision or gradient path moves them by far more (the last test).
float64: rtol 1e-10, atol 1e-12 (bit-equal between thread counts).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deqode import metrics
from deqode.models import build

FIXTURE = Path(__file__).parent / "data" / "homoode_step_v1.pt"
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # as the fixture was written


def _cifar(name: str, dtype: torch.dtype = torch.float32, batch: int = 2,
           **kw: object) -> tuple[nn.Module, Tensor]:
    model = build(name, **kw).to(dtype).train()
    x = torch.randn(batch, 3, 32, 32, dtype=dtype, generator=torch.Generator().manual_seed(1))
    return model, x


CASES: dict[str, Callable[[], tuple[nn.Module, Tensor]]] = {
    "homoode-backprop": lambda: _cifar("homoode-cifar10"),
    "homoode-backprop-float64": lambda: _cifar("homoode-cifar10", torch.float64, tol=1e-5),
    "homoode-adjoint": lambda: _cifar("homoode-cifar10", grad_mode="adjoint"),
    "homoode-frozen_adjoint": lambda: _cifar("homoode-cifar10", grad_mode="frozen_adjoint"),
    "homoode-no-init-layer": lambda: _cifar("homoode-cifar10", use_init_layer=False),
    "node-backprop": lambda: _cifar("node-cifar10"),
    "anode-backprop": lambda: _cifar("anode-cifar10"),
}

#: Relative and absolute (times the scale) tolerances per dtype; see the module docstring.
TOLERANCE = {torch.float64: (1e-10, 1e-12), torch.float32: (1e-4, 1e-5)}


def fingerprint(tensor: Tensor, entries: int = 512) -> Tensor:
    """Up to ``entries`` evenly spaced entries of ``tensor``, then its sum and its L1 norm."""
    flat = tensor.detach().flatten()
    step = -(-flat.numel() // entries)
    return torch.cat([flat[::step], flat.sum().reshape(1), flat.abs().sum().reshape(1)])


def run_case(name: str) -> dict[str, object]:
    """One seeded forward and backward of a case."""
    torch.manual_seed(0)
    model, x = CASES[name]()
    x = x.clone().requires_grad_()
    metrics.reset_nfe(model)
    torch.manual_seed(2)  # the dropout mask
    logits = model(x)
    target = torch.arange(logits.shape[0]) % logits.shape[1]
    loss = F.cross_entropy(logits, target) + 0.1 * logits.pow(2).mean()
    loss.backward()
    grads = {n: fingerprint(p.grad) for n, p in model.named_parameters() if p.grad is not None}
    return {"out": logits.detach().clone(), "input_grad": fingerprint(x.grad), "grads": grads,
            "nfe": metrics.read_nfe(model)}


def assert_equal_within_round_off(got: Tensor, want: Tensor, what: str,
                                  scale: float | None = None) -> None:
    """``got`` equals ``want`` within rtol plus atol times ``scale`` (default: max |want|)."""
    rtol, atol = TOLERANCE[want.dtype]
    scale = float(want.abs().max()) if scale is None else scale
    torch.testing.assert_close(got, want, rtol=rtol, atol=atol * scale,
                               msg=lambda m: f"{what}: {m}")


@pytest.fixture(scope="module")
def reference() -> dict[str, dict[str, object]]:
    return torch.load(FIXTURE, weights_only=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_step_matches_the_saved_reference(name: str, reference) -> None:
    got, want = run_case(name), reference[name]
    assert got["nfe"] == tuple(want["nfe"]), "NFE counts changed"
    assert_equal_within_round_off(got["out"], want["out"], "logits")
    assert_equal_within_round_off(got["input_grad"], want["input_grad"], "input gradient")
    assert got["grads"].keys() == want["grads"].keys()
    scale = max(float(grad.abs().max()) for grad in want["grads"].values())
    for key, grad in want["grads"].items():
        assert_equal_within_round_off(got["grads"][key], grad, key, scale)


def test_every_case_is_in_the_reference(reference) -> None:
    assert set(reference) == set(CASES)


def test_the_tolerance_detects_a_changed_step() -> None:
    """A different solver tolerance (one changed decision of the adaptive solve) fails the check,
    so the round-off tolerance is not loose enough to let a real change through."""
    want = run_case("homoode-backprop")
    torch.manual_seed(0)
    model, x = CASES["homoode-backprop"]()
    model.rtol = model.atol = 2e-3
    torch.manual_seed(2)
    logits = model(x)
    with pytest.raises(AssertionError):
        assert_equal_within_round_off(logits.detach(), want["out"], "logits")


if __name__ == "__main__":  # regenerate (only when a result is meant to change)
    torch.set_num_threads(1)
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else FIXTURE
    torch.save({name: run_case(name) for name in CASES}, path)
    print(f"wrote {len(CASES)} cases to {path}")
