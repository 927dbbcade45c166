"""Pins every DEQ-like model's forward, backward and NFE counts to a saved reference.

``tests/data/implicit_reference_v1.pt`` was written by ``python tests/test_implicit_reference.py``
on the code of commit 6caea3c, before the solve / failure check / implicit backward of the models
moved into :func:`deqode.solvers.implicit.solve_equilibrium` (issue 11). Each case runs one model
in float64 on fixed inputs, one forward and one backward, and records the output, the gradients
of every parameter and of the input, and the NFE counters as :func:`deqode.metrics.read_nfe`
reads them.
On the machine that wrote the fixture the tensors are bit-for-bit equal; the test allows 1e-12
relative to absorb another BLAS, and compares the NFE counts exactly.
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
from deqode.models import DEQ, ContinuousDEQ, SkipDEQ, SkipRegDEQ, mondeq, sim
from deqode.models.implicit2 import DEQMFN

FIXTURE = Path(__file__).parent / "data" / "implicit_reference_v1.pt"
D64 = torch.float64


def _digits(n: int = 4, channels: int = 1, side: int = 8, seed: int = 1) -> Tensor:
    return torch.rand(n, channels, side, side, dtype=D64,
                      generator=torch.Generator().manual_seed(seed))


def _deq(**kw) -> tuple[nn.Module, Tensor]:
    model = DEQ(1, 10, 4, 8, max_groups=2, max_iter=12, backward_max_iter=12, **kw)
    return model.double().train(), _digits()


def _mondeq_fc(**kw) -> tuple[nn.Module, Tensor]:
    model = mondeq.MonDEQFCNet(in_dim=64, hidden=12, max_iter=60, tol=1e-6, **kw)
    return model.double(), _digits()


def _mondeq_conv(**kw) -> tuple[nn.Module, Tensor]:
    model = mondeq.MonDEQConvNet(in_channels=1, channels=3, image_size=6, max_iter=40, tol=1e-5,
                                 **kw)
    return model.double(), _digits(side=6)


def _mfn(**kw) -> tuple[nn.Module, Tensor]:
    coords = torch.rand(16, 2, dtype=D64, generator=torch.Generator().manual_seed(3))
    return DEQMFN(width=8, input_scale=4.0, **kw).double(), coords


def _tanh() -> tuple[nn.Module, Tensor]:
    return sim.ContractiveTanhDEQ(64, hidden=8).double(), _digits()


def _temporal() -> tuple[nn.Module, Tensor]:
    x = torch.rand(3, 1, 10, dtype=D64, generator=torch.Generator().manual_seed(4))
    return sim.TemporalDEQ(hidden=6, channels=4, levels=2).double(), x


def _cdeq(cls: type = ContinuousDEQ, **kw) -> tuple[nn.Module, Tensor]:
    return cls("digits-fc", max_steps=8, **kw).double().train(), _digits()


CASES: dict[str, Callable[[], tuple[nn.Module, Tensor]]] = {
    "deq-broyden-ift": lambda: _deq(),
    "deq-anderson-one_step": lambda: _deq(solver="anderson", backward="one_step"),
    "deq-picard-ift-anderson": lambda: _deq(solver="picard", backward_solver="anderson"),
    "mondeq-fc-splitting": lambda: _mondeq_fc(),
    "mondeq-fc-fb-ift": lambda: _mondeq_fc(solver="forward_backward", alpha=0.5, backward="ift"),
    "mondeq-fc-one_step": lambda: _mondeq_fc(backward="one_step"),
    "mondeq-conv-splitting": lambda: _mondeq_conv(),
    "mfn-one_step": lambda: _mfn(),
    "mfn-ift": lambda: _mfn(backward="ift", warm_start=False),
    "tanh-deq": _tanh,
    "temporal-deq": _temporal,
    "cdeq-continuous": lambda: _cdeq(),
    "cdeq-discrete-implicit-stem": lambda: _cdeq(solver="discrete", stem_gradient="implicit"),
    "skipreg-discrete-jac": lambda: _cdeq(SkipRegDEQ, solver="discrete", jac_weight=1.0),
    "skip-continuous": lambda: _cdeq(SkipDEQ),
    "cdeq-discrete-jfb": lambda: _cdeq(solver="discrete", backward="jfb"),
}


def run_case(name: str) -> dict[str, object]:
    """One forward and backward (twice for warm-started models) of a case, seeded."""
    torch.manual_seed(0)
    model, x = CASES[name]()
    x = x.clone().requires_grad_()
    metrics.reset_nfe(model)
    out = model(x)
    if isinstance(model, DEQMFN) and model.warm_start:  # second call starts from the cache
        out = model(x)
    target = torch.linspace(-1, 1, out.numel(), dtype=D64).reshape(out.shape)
    loss = F.mse_loss(out, target) + out.pow(3).mean()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return {"out": out.detach().clone(), "input_grad": x.grad.clone(), "grads": grads,
            "nfe": metrics.read_nfe(model)}


@pytest.fixture(scope="module")
def reference() -> dict[str, dict[str, object]]:
    return torch.load(FIXTURE, weights_only=True)


@pytest.mark.parametrize("name", sorted(CASES))
def test_model_matches_the_saved_reference(name: str, reference) -> None:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        got = run_case(name)
    finally:
        torch.set_num_threads(previous)
    want = reference[name]
    assert got["nfe"] == tuple(want["nfe"]), "NFE counts changed"
    close = dict(rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(got["out"], want["out"], **close)
    torch.testing.assert_close(got["input_grad"], want["input_grad"], **close)
    assert got["grads"].keys() == want["grads"].keys()
    for key, grad in want["grads"].items():
        torch.testing.assert_close(got["grads"][key], grad, **close, msg=key)


def test_every_case_is_in_the_reference(reference) -> None:
    assert set(reference) == set(CASES)


if __name__ == "__main__":  # regenerate (only when a result is meant to change)
    torch.set_num_threads(1)
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else FIXTURE
    torch.save({name: run_case(name) for name in CASES}, path)
    print(f"wrote {len(CASES)} cases to {path}")
