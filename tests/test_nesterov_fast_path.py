"""The Nesterov solver's fast loop (times without gradient) against its general step.

``NesterovODE.integrate`` takes every step after the first through ``_momentum_step``
(precomputed step scalars; scratch buffers without autograd, one graph node per step with it)
unless the times require grad, when every step goes through ``_step_func``, the rule as written.
The outputs must be the same bits, on states wide enough for the vectorised kernels (odd sizes
for their tails), with and without autograd. The gradients with respect to the initial state
and the parameters are equal to rounding, not bitwise (relaxed): the fast step's backward
(``nesterov._MomentumUpdate``) sums in another order than the step-by-step graph; measured
2.2e-7 (float32) and 3.8e-16 (float64) relative to the largest entry, tolerance :data:`RTOL`.
The general path itself is pinned by ``test_solver_gradients.py``'s frozen iterates.
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from torch import nn
from torchdiffeq import odeint

import deqode  # noqa: F401  (registers method="nesterov")
from deqode.solvers import nesterov, nesterov_kernel

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: dtype -> tolerance of the fast gradients, relative to the largest entry (~3x measured).
RTOL = {torch.float32: 1e-6, torch.float64: 1.5e-15}
OPTIONS = {
    "float32_grid": {"beta": 0.5, "grid_constructor": nesterov.step_grid(1 / 40)},
    "clipped": {"beta": 0.7, "step_size": 0.03},
    "textbook": {"beta": 0.3, "scale": False, "start": "zero", "step_size": 0.05},
    "equal": {"beta": 0.9, "step_size": 0.125},
    "cubic": {"beta": 0.6, "step_size": 0.07, "interp": "cubic"},
    # unequal steps, the output 0.3 on a grid point: that state is read by the loop as well
    # (the grid follows t, so that it requires grad, and the general step runs, where t does)
    "ragged": {"beta": 0.6, "grid_constructor": lambda func, y0, t: t[0] + (t[-1] - t[0])
               * torch.tensor([0.0, 0.1, 0.2, 0.3, 0.35, 0.5, 0.55, 0.8, 1.0], dtype=t.dtype)},
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


def _mismatches(case: str, dtype: torch.dtype) -> list[tuple]:
    """(field, graph, what, difference) for every fast result that differs from the general
    step's: an output at all, a gradient beyond RTOL of its largest entry."""
    found = []
    for name, (field, y0) in _fields(dtype).items():
        for graph in (False, True):
            fast = _solve(field, y0, OPTIONS[case], dtype, time_grad=False, graph=graph)
            general = _solve(field, y0, OPTIONS[case], dtype, time_grad=True, graph=graph)
            for i, (a, b) in enumerate(zip(fast, general, strict=True)):
                gap = (a - b).abs().max().item()
                if (not torch.equal(a, b)) if i == 0 else gap > RTOL[dtype] * b.abs().max():
                    found.append((name, graph, "output" if i == 0 else f"gradient {i}", gap))
    return found


@pytest.fixture(params=["fused kernel", "torch calls"])
def step_path(request, monkeypatch):
    """The fast steps' values by the fused kernel (where this machine builds it), or by torch's
    elementwise calls (its fallback)."""
    if request.param == "torch calls":
        monkeypatch.setattr(nesterov_kernel, "usable", lambda *tensors: False)
    elif not nesterov_kernel.available():
        pytest.skip("no C compiler: the fused kernel is not built here")
    return request.param


@pytest.mark.usefixtures("step_path")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("case", list(OPTIONS))
def test_fast_loop_matches_the_general_step(case, dtype):
    """Outputs bitwise, gradients to RTOL."""
    assert not _mismatches(case, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_wrong_backward_is_caught(monkeypatch, dtype):
    """The comparison fails for a fast backward that drops the derivative of the shift
    β (h_k - H) u_k (the smallest term: it matters on the clipped last step) or that is off by
    a relative 1e-5 in the look-ahead scale β H."""
    plan_init = nesterov._StepPlan.__init__

    def without_shift(self, *args):
        plan_init(self, *args)
        self.factor_floats = [0.0] * len(self.factor_floats)

    def off_scale(self, *args):
        plan_init(self, *args)
        self.scale_float *= 1 + 1e-5

    for wrong in (without_shift, off_scale):
        monkeypatch.setattr(nesterov._StepPlan, "__init__", wrong)
        found = _mismatches("clipped", dtype)
        assert found and all(what.startswith("gradient") for _, _, what, _ in found)


def test_a_wrong_pairing_is_caught(monkeypatch):
    """The backward pairs the two derivatives of a shift only where the state before it is
    read by nothing else; taking the output state at 0.3 for unread is caught."""
    assert not _mismatches("ragged", torch.float64)
    monkeypatch.setattr(nesterov, "_states_read", lambda *args: set())
    found = _mismatches("ragged", torch.float64)
    assert found and all(what.startswith("gradient") for _, _, what, _ in found)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_states_seen_by_a_callback_get_their_gradient(dtype):
    """A field with ``callback_step`` sees every state; a loss on them gets the same gradient
    from the fast loop as from the general step."""
    field, y0 = _fields(dtype)["mlp"]

    class Watched(nn.Module):
        def __init__(self):
            super().__init__()
            self.field, self.seen = field, []

        def forward(self, t, y):
            return self.field(t, y)

        def callback_step(self, t0, y0, dt):
            self.seen.append(y0)

    results = []
    for time_grad in (False, True):
        watched = Watched()
        start = y0.clone().requires_grad_(True)
        t = torch.tensor([0.0, 1.0], dtype=dtype).requires_grad_(time_grad)
        ys = odeint(watched, start, t, method="nesterov", options=OPTIONS["ragged"])
        loss = ys[-1].pow(2).sum() + sum(y.pow(2).sum() for y in watched.seen[2:])
        results.append(torch.autograd.grad(loss, start))
    gap = (results[0][0] - results[1][0]).abs().max()
    assert gap <= RTOL[dtype] * results[1][0].abs().max()


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


def test_the_fused_kernel_takes_the_fast_steps(monkeypatch):
    """With a C compiler at hand the kernel is built, agrees with torch's calls, and takes every
    fast step (39 of 40), with and without autograd; a field whose output is not contiguous
    (or has another dtype) sends the steps back to torch's calls, with the same bits."""
    if shutil.which(os.environ.get("CC", "cc")) is None:
        pytest.skip("no C compiler")
    assert nesterov_kernel.available()
    calls = []
    fused = nesterov_kernel.step
    monkeypatch.setattr(nesterov_kernel, "step", lambda *args: calls.append(1) or fused(*args))
    field, y0 = _fields(torch.float32)["wide"]
    for graph in (False, True):
        calls.clear()
        _solve(field, y0, OPTIONS["float32_grid"], torch.float32, time_grad=False, graph=graph)
        assert len(calls) == 39

    class Strided(nn.Module):  # f(t, y) = -y, returned as a view with stride 2
        def forward(self, t, y):
            return torch.neg(y.unsqueeze(-1).expand(*y.shape, 2))[..., 0]

    class Alternating(nn.Module):  # f(t, y) = -y, every other call in transposed memory order
        def __init__(self):
            super().__init__()
            self.calls = 0

        def forward(self, t, y):
            self.calls += 1
            f = torch.neg(y)
            return f.contiguous() if self.calls % 2 else f.t().contiguous().t()

    y0 = torch.randn(1000)
    for graph in (False, True):
        calls.clear()
        fast = _solve(Strided(), y0, OPTIONS["float32_grid"], torch.float32, False, graph)
        general = _solve(Strided(), y0, OPTIONS["float32_grid"], torch.float32, True, graph)
        assert not calls and torch.equal(fast[0], general[0])
        calls.clear()  # the kernel where all three are contiguous, torch's calls where not
        square = torch.randn(40, 25)
        fast = _solve(Alternating(), square, OPTIONS["float32_grid"], torch.float32, False, graph)
        general = _solve(Alternating(), square, OPTIONS["float32_grid"], torch.float32, True,
                         graph)
        # (with autograd, a step after a transposed f leaves a transposed state; next to a
        # contiguous f that state is read by torch's calls, not the kernel)
        assert (0 if graph else 1) <= len(calls) < 39 and torch.equal(fast[0], general[0])


@pytest.mark.parametrize("case", ["clipped", "ragged", "cubic"])
def test_fast_backward_passes_gradcheck(case):
    """The fast steps' own backward against finite differences (float64), and its backward."""
    torch.manual_seed(0)
    w = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    y0 = torch.randn(3, dtype=torch.float64, requires_grad=True)
    t = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)

    def solve(y0, w):
        return odeint(lambda t, y: torch.tanh(y @ w), y0, t, method="nesterov",
                      options=OPTIONS[case])

    def solve_blind(y0, w):  # a field that ignores the state: no gradient at the look-ahead
        return odeint(lambda t, y: torch.tanh(w.sum(0) * (1 + t)).expand_as(y), y0, t,
                      method="nesterov", options=OPTIONS[case])

    for function in (solve, solve_blind):
        assert torch.autograd.gradcheck(function, (y0, w))
        assert torch.autograd.gradgradcheck(function, (y0, w))
