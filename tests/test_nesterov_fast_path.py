"""The Nesterov solver's fast loop (times without gradient) against its general step.

``NesterovODE.integrate`` takes every step after the first through ``_momentum_step``
(precomputed step scalars; scratch buffers without autograd) unless the times require grad, when
every step goes through ``_step_func``, the rule as written. Both must give the same bits, on
states wide enough for the vectorised kernels (odd sizes for their tails), with and without
autograd, for outputs and for gradients with respect to the initial state and the parameters.
The general path itself is pinned by ``test_solver_gradients.py``'s frozen iterates.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchdiffeq import odeint

import deqode  # noqa: F401  (registers method="nesterov")
from deqode.solvers import nesterov

pytestmark = pytest.mark.usefixtures("one_torch_thread")

OPTIONS = {
    "float32_grid": {"beta": 0.5, "grid_constructor": nesterov.step_grid(1 / 40)},
    "clipped": {"beta": 0.7, "step_size": 0.03},
    "textbook": {"beta": 0.3, "scale": False, "start": "zero", "step_size": 0.05},
    "equal": {"beta": 0.9, "step_size": 0.125},
    "cubic": {"beta": 0.6, "step_size": 0.07, "interp": "cubic"},
}


def _fields(dtype: torch.dtype) -> dict[str, tuple[nn.Module, torch.Tensor]]:
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    mlp = nn.Sequential(nn.Linear(7, 16), nn.Tanh(), nn.Linear(16, 7)).to(dtype)

    class Field(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, t, y):
            return self.net(y) * (1 + t)

    return {"mlp": (Field(mlp), torch.randn(33, 7, generator=gen, dtype=dtype)),
            "wide": (Field(nn.Identity()), torch.randn(1001, generator=gen, dtype=dtype))}


def _solve(field, y0, options, dtype, time_grad, graph):
    t = torch.tensor([0.0, 0.3, 1.0], dtype=dtype).requires_grad_(time_grad)
    if not graph:
        with torch.no_grad():
            return [odeint(field, y0, t, method="nesterov", options=options)]
    start = y0.clone().requires_grad_(True)
    ys = odeint(field, start, t, method="nesterov", options=options)
    params = list(field.parameters())
    grads = torch.autograd.grad(ys.pow(2).sum(), [start, *params])
    return [ys.detach(), *grads]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", list(OPTIONS))
def test_fast_loop_matches_the_general_step_bitwise(case, dtype):
    for name, (field, y0) in _fields(dtype).items():
        for graph in (False, True):
            fast = _solve(field, y0, OPTIONS[case], dtype, time_grad=False, graph=graph)
            general = _solve(field, y0, OPTIONS[case], dtype, time_grad=True, graph=graph)
            for a, b in zip(fast, general, strict=True):
                assert torch.equal(a, b), (name, graph, (a - b).abs().max().item())


def test_the_fast_loop_is_taken(monkeypatch):
    """Only the first step goes through the general step when the times need no gradient."""
    calls = []
    general = nesterov.NesterovODE._step_func

    def counted(self, *args):
        calls.append(1)
        return general(self, *args)

    monkeypatch.setattr(nesterov.NesterovODE, "_step_func", counted)
    field, y0 = _fields(torch.float32)["wide"]
    _solve(field, y0, OPTIONS["float32_grid"], torch.float32, time_grad=False, graph=False)
    assert len(calls) == 1
    _solve(field, y0, OPTIONS["float32_grid"], torch.float32, time_grad=True, graph=True)
    assert len(calls) == 1 + 40
