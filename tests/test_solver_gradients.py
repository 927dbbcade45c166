"""Gradients of the ODE solvers we register with torchdiffeq (today: ``method="nesterov"``).

Modelled on what torchdiffeq 0.2.5's own suite checks for its fixed-grid methods (own code, not
a copy): ``torch.autograd.gradcheck`` in float64 with respect to the initial state, the output
times and the field's parameters, through ``odeint`` (backprop) and ``odeint_adjoint``; reverse
time, tuple states, the ``step_size`` and ``grid_constructor`` options, float32 and float64 and
complex states. ``euler`` runs alongside as the control wherever torchdiffeq's own solver passes.

The adjoint is the gradient of the *continuous* problem, not of the discrete forward pass, so
gradcheck (which differences the discrete forward pass) can only pass for it where the solver is
exact: torchdiffeq's "constant" problem ``y' = a + (y - (a t + b))^5`` started on its solution
``y = a t + b``, on which euler is exact on any grid and nesterov (constant beta, c = 1 - beta,
Euler start) on grids of equal steps. The backprop gradient is checked on a generic nonlinear
problem as well. torchdiffeq 0.2.5's adjoint rejects complex states (for every method), so
complex states are checked through backprop only.

The iterates are frozen: ``tests/data/nesterov_iterates_v1.pt`` holds the outputs of the solver as
it was before the time-gradient fix (written by :func:`write_fixture` from that code), and
:func:`test_iterates_are_unchanged` compares them bit for bit (``torch.equal``), with and without
``requires_grad`` on the times. The test field uses only ``+`` and ``*`` so that its values round
alike on every CPU. Regenerate the file (``python tests/test_solver_gradients.py``) only for an
intended change of the rule.

Relaxed: the backprop *gradients* in the fixture (``backprop_grad_*``, times without gradient)
are compared to a relative :data:`GRADIENT_RTOL` of the largest frozen entry, not bitwise. Since
the solver's fast steps under autograd are one graph node with their own backward
(``nesterov._MomentumUpdate``), those gradients are summed in another order and differ from the
frozen ones by rounding: measured 3.2e-7 (float32) and 8.8e-16 (float64) relative. The iterates,
and every gradient with times that require grad (the general step), stay bitwise.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torchdiffeq import odeint, odeint_adjoint

import deqode  # noqa: F401  (registers method="nesterov")
from deqode.solvers import nesterov

FIXTURE = Path(__file__).parent / "data" / "nesterov_iterates_v1.pt"
#: dtype -> relative tolerance of the backprop gradients against the fixture (~3x measured).
GRADIENT_RTOL = {torch.float32: 1e-6, torch.float64: 3e-15}
SCALAR_WARNING = "Converting a tensor with requires_grad=True to a scalar"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- frozen iterates -----------------------------------------------------------------------------


def _field(t, y):
    """A nonlinear, time-dependent field on the last axis (size 2) built from + and * only, so
    its values round identically on every CPU; works for real and complex states."""
    p, q = y[..., 0], y[..., 1]
    return torch.stack([-0.5 * p + (1 + 0.25 * t) * q - 0.1 * p * q,
                        -(1 - 0.1 * t) * p - 0.2 * q + 0.3 * t * t], dim=-1)


def _tuple_field(t, state):
    first, second = state
    return _field(t, first), -0.3 * second + 0.5 * t * first[..., :1]


_UNEQUAL = (0.0, 0.1, 0.25, 0.3, 0.7, 1.0)
_EQUAL = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
_RAGGED = (0.0, 0.05, 0.1, 0.15, 0.25, 0.3, 0.55, 0.7, 0.71, 1.0)

#: name -> (output times, options); every case runs in float32 and float64.
ITERATE_CASES: dict[str, tuple[tuple[float, ...], dict]] = {
    "default_unequal": (_UNEQUAL, {"beta": 0.5}),
    "default_equal": (_EQUAL, {"beta": 0.7}),
    "beta0": (_EQUAL, {"beta": 0.0, "step_size": 0.1}),
    "snap": ((0.0, 0.25, 0.5, 1.0), {"beta": 0.3, "step_size": 0.05}),
    "clip_cubic": ((0.0, 0.45, 1.0), {"beta": 0.9, "step_size": 0.3, "interp": "cubic"}),
    "unscaled_zero": (_UNEQUAL, {"beta": 0.6, "scale": False, "start": "zero",
                                 "step_size": 0.1}),
    "schedule": (_EQUAL, {"schedule": "nesterov", "step_size": 0.05}),
    "reverse_default": (tuple(reversed(_UNEQUAL)), {"beta": 0.5}),
    "reverse_step": ((1.0, 0.6, 0.0), {"beta": 0.4, "step_size": 0.1}),
    "reverse_clip": ((1.0, 0.0), {"beta": 0.4, "step_size": 0.3}),
    "ragged": ((0.0, 0.3, 1.0), {"beta": 0.8, "grid_constructor": "ragged"}),
}
_Y0 = (1.0, -0.5)


def _options(options: dict, dtype: torch.dtype) -> dict:
    options = dict(options)
    if options.get("grid_constructor") == "ragged":
        options["grid_constructor"] = lambda func, y0, t: torch.tensor(
            _RAGGED, dtype=t.dtype, device=t.device)
    return options


def compute_iterates(time_grad: bool = False) -> dict[str, torch.Tensor]:
    """Outputs of the fixed cases (and a few gradients with respect to y0 and a parameter, with
    times that do not require grad). ``time_grad`` marks the times ``requires_grad``."""
    out: dict[str, torch.Tensor] = {}
    for dtype in (torch.float32, torch.float64):
        tag = str(dtype).removeprefix("torch.")

        def times(values, dtype=dtype):
            return torch.tensor(values, dtype=dtype).requires_grad_(time_grad)

        y0 = torch.tensor(_Y0, dtype=dtype)
        for name, (ts, options) in ITERATE_CASES.items():
            ys = odeint(_field, y0, times(ts), method="nesterov",
                        options=_options(options, dtype))
            out[f"{name}/{tag}"] = ys.detach()
        # tuple state
        first, second = odeint(_tuple_field, (y0, y0[:1] * 2), times(_UNEQUAL), method="nesterov",
                               options={"beta": 0.6})
        out[f"tuple/{tag}"] = torch.cat([first, second], dim=-1).detach()
        # complex state
        cdtype = torch.complex64 if dtype == torch.float32 else torch.complex128
        yc = torch.tensor([1.0 + 0.5j, -0.5 + 0.25j], dtype=cdtype)
        out[f"complex/{tag}"] = odeint(_field, yc, times(_UNEQUAL), method="nesterov",
                                       options={"beta": 0.5, "step_size": 0.1}).detach()
        # gradients with respect to y0 and a parameter
        for mode, solve in (("backprop", odeint), ("adjoint", odeint_adjoint)):
            w = torch.tensor(0.8, dtype=dtype, requires_grad=True)
            start = y0.clone().requires_grad_(True)
            extra = {"adjoint_params": (w,)} if mode == "adjoint" else {}
            ys = solve(lambda t, y, w=w: w * _field(t, y), start, times(_UNEQUAL),
                       method="nesterov", options={"beta": 0.5, "step_size": 0.1}, **extra)
            ys.pow(2).sum().backward()
            out[f"{mode}/{tag}"] = ys.detach()
            out[f"{mode}_grad_y0/{tag}"] = start.grad
            out[f"{mode}_grad_w/{tag}"] = w.grad
    return out


def write_fixture() -> None:
    """(Re)write :data:`FIXTURE` from the current solver."""
    FIXTURE.parent.mkdir(exist_ok=True)
    torch.save(compute_iterates(), FIXTURE)


@pytest.fixture(autouse=True)
def no_scalar_warning():
    """Every test here fails on torch's "Converting a tensor with requires_grad=True to a scalar"
    warning: ``set_warn_always`` makes torch repeat its once-per-process warnings, and the filter
    turns this one into an error."""
    always = torch.is_warn_always_enabled()
    torch.set_warn_always(True)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=SCALAR_WARNING)
        yield
    torch.set_warn_always(always)


def test_the_warning_check_can_fail():
    for _ in range(2):  # the second time as well: torch would otherwise warn only once
        with pytest.raises(UserWarning, match=SCALAR_WARNING):
            float(torch.ones((), requires_grad=True) * 2)


def _changed(now: dict[str, torch.Tensor], frozen: dict[str, torch.Tensor]) -> list[str]:
    """Keys whose tensors differ: bitwise, except the backprop gradients (to GRADIENT_RTOL)."""
    changed = []
    for key, old in frozen.items():
        new = now[key]
        if new.dtype != old.dtype or new.shape != old.shape:
            changed.append(key)
        elif key.startswith("backprop_grad_"):
            if (new - old).abs().max() > GRADIENT_RTOL[old.dtype] * old.abs().max():
                changed.append(key)
        elif not torch.equal(new, old):
            changed.append(key)
    return changed


@pytest.mark.parametrize("time_grad", [False, True])
def test_iterates_are_unchanged(time_grad):
    """Bit for bit the outputs of the solver before the time-gradient fix (the saved fixture),
    whether or not the times require grad; the backprop gradients to rounding (module doc)."""
    frozen = torch.load(FIXTURE, weights_only=True)
    now = compute_iterates(time_grad)
    assert now.keys() == frozen.keys()
    changed = _changed(now, frozen)
    assert not changed, f"iterates changed: {changed}"


def test_the_gradient_comparison_can_fail():
    """The relaxed comparison still catches a wrong gradient: a relative error of 1e-5 in a
    gradient entry, and a change of one ulp in an iterate."""
    frozen = torch.load(FIXTURE, weights_only=True)
    for key in ("backprop_grad_y0/float32", "backprop_grad_w/float64", "beta0/float32"):
        now = dict(frozen)
        wrong = frozen[key].clone()
        flat = wrong.view(-1)
        flat[-1] = (torch.nextafter(flat[-1], flat[-1] + 1) if key.startswith("beta0")
                    else flat[-1] * (1 + 1e-5))
        now[key] = wrong
        assert _changed(now, frozen) == [key]


# ---- torchdiffeq's "constant" problem: exact for the solver, so the adjoint passes gradcheck -


def _constant_field(a, b):
    return lambda t, y: a + (y - (a * t + b)) ** 5


def _constant_problem(reverse=False, npts=6, dtype=torch.float64):
    """``y' = a + (y - (a t + b))^5`` on [1, 4] (or [4, 1]), started on the solution a t + b."""
    a = torch.tensor(0.2, dtype=dtype, requires_grad=True)
    b = torch.tensor(3.0, dtype=dtype, requires_grad=True)
    t = torch.linspace(1.0, 4.0, npts, dtype=dtype)
    if reverse:
        t = t.flip(0)
    y0 = (a * t[0] + b).detach().reshape(1)
    return y0.requires_grad_(True), t.requires_grad_(True), a, b


def _thirds_grid(func, y0, t):
    """A user grid: every solve (the forward one, and each adjoint interval) in 3 equal steps,
    from the differentiable t[0] to t[-1]."""
    fraction = torch.arange(3, dtype=t.dtype, device=t.device) / 3
    return torch.cat([t[0] + (t[-1] - t[0]) * fraction, t[-1:]])


def _ragged_grid(func, y0, t):
    """A user grid with unequal steps between the differentiable end points (forward only: it
    ignores the interval it is given)."""
    inner = torch.tensor([1.3, 1.45, 2.0, 2.1, 2.9, 3.7], dtype=t.dtype, device=t.device)
    return torch.cat([t[:1], inner if bool(t[-1] > t[0]) else inner.flip(0), t[-1:]])


#: Option sets for the constant problem: name -> (options, modes). The adjoint passes gradcheck
#: where the solver is exact on this problem: every solve (the forward one, and each adjoint
#: interval) in equal steps, constant beta, c = 1 - beta and the Euler start (on unequal steps
#: nesterov evaluates f at a shifted look-ahead, off the solution line). Backprop is checked where
#: the output times are not interior step boundaries: there torchdiffeq's linear interpolation
#: returns the step's end value, which does not depend on the output time, for every solver.
CONSTANT_OPTIONS = {
    "default": ({}, ("backprop", "adjoint")),
    "beta0.9": ({"beta": 0.9}, ("backprop", "adjoint")),
    "step_on_outputs": ({"step_size": 0.3, "beta": 0.6}, ("adjoint",)),
    "step_snap": ({"step_size": 0.25, "beta": 0.6}, ("backprop",)),
    "step_clip": ({"step_size": 0.35, "beta": 0.6}, ("backprop",)),
    "cubic": ({"beta": 0.3, "interp": "cubic", "step_size": 0.3}, ("backprop", "adjoint")),
    "grid_constructor": ({"grid_constructor": _thirds_grid, "beta": 0.7},
                         ("backprop", "adjoint")),
    "ragged_grid": ({"grid_constructor": _ragged_grid, "beta": 0.8}, ("backprop",)),
    "zero_start": ({"start": "zero"}, ("backprop",)),
    "unscaled": ({"scale": False, "beta": 0.4}, ("backprop",)),
    "schedule": ({"schedule": "nesterov"}, ("backprop",)),
}
_NESTEROV_ONLY = set(nesterov.NESTEROV_OPTIONS)
CONSTANT_CASES = [
    (method, name, mode, reverse)
    for method in ("nesterov", "euler")
    for name, (options, modes) in CONSTANT_OPTIONS.items()
    for mode in modes
    for reverse in (False, True)
    if method == "nesterov" or _NESTEROV_ONLY.isdisjoint(set(options) - {"beta"})
]


def _solve(mode, method, field, y0, t, options, params):
    if mode == "adjoint":
        return odeint_adjoint(field, y0, t, method=method, options=dict(options),
                              adjoint_params=params)
    return odeint(field, y0, t, method=method, options=dict(options))


@pytest.mark.parametrize("method, name, mode, reverse", CONSTANT_CASES)
def test_gradcheck_constant_problem(method, name, mode, reverse):
    """gradcheck in y0, t and the field's parameters (torchdiffeq's test, for our solver; euler
    is the control)."""
    options = CONSTANT_OPTIONS[name][0]
    if method != "nesterov":  # the grid options only
        options = {k: v for k, v in options.items() if k not in _NESTEROV_ONLY}
    y0, t, a, b = _constant_problem(reverse)

    def solve(y0, t, a, b):
        return _solve(mode, method, _constant_field(a, b), y0, t, options, (a, b))

    assert torch.autograd.gradcheck(solve, (y0, t, a, b))


@pytest.mark.parametrize("mode", ["backprop", "adjoint"])
def test_issue_15_default_grid_linspace(mode):
    """The failing case of the issue: torchdiffeq's gradcheck of ``odeint(f, y0, t)`` in (y0, t)
    on the default grid, 10 equally spaced times on [1, 8] (equal steps: the shift term's
    derivative used to be dropped)."""
    a = torch.tensor(0.2, dtype=torch.float64)
    b = torch.tensor(3.0, dtype=torch.float64)
    t = torch.linspace(1.0, 8.0, 10, dtype=torch.float64, requires_grad=True)
    y0 = (a * t[0] + b).detach().requires_grad_(True)
    solve = odeint if mode == "backprop" else odeint_adjoint
    kwargs = {} if mode == "backprop" else {"adjoint_params": ()}
    assert torch.autograd.gradcheck(
        lambda y0, t: solve(_constant_field(a, b), y0, t, method="nesterov", **kwargs), (y0, t))


def test_adjoint_equals_backprop_on_the_constant_problem():
    """torchdiffeq's adjoint test: the same gradients (y0, t, a, b) to 1e-12 either way."""
    grads = []
    for mode in ("backprop", "adjoint"):
        y0, t, a, b = _constant_problem(npts=10)
        ys = _solve(mode, "nesterov", _constant_field(a, b), y0, t, {"beta": 0.5}, (a, b))
        ys.backward(torch.rand(ys.shape, dtype=ys.dtype,
                               generator=torch.Generator().manual_seed(0)))
        grads.append(torch.cat([y0.grad, t.grad, a.grad.reshape(1), b.grad.reshape(1)]))
    assert torch.allclose(grads[0], grads[1], rtol=0, atol=1e-12)


# ---- a generic nonlinear problem: backprop gradcheck ------------------------------------------


def _generic_field(theta):
    def field(t, y):
        p, q = y[..., 0], y[..., 1]
        return torch.stack([-theta[0] * p + (1 + 0.25 * t) * q - 0.1 * p * q,
                            -(1 - 0.1 * t) * p - theta[1] * q + 0.3 * t * t], dim=-1)
    return field


def _generic_grid(func, y0, t):
    inner = torch.tensor([0.1, 0.15, 0.5, 0.6, 1.5], dtype=t.dtype, device=t.device)
    return torch.cat([t[:1], inner, t[-1:]])


_OFF_GRID = (0.0, 0.66, 1.14, 2.0)
#: Every option. On the step grids the interior output times avoid the step boundaries (the
#: linear interpolant has a kink there, where no solver, euler included, is differentiable in the
#: output time) and the span is 2: ``step_grid`` snaps to a uniform grid within a relative 1e-6,
#: which for a span <= 1 is narrower than gradcheck's perturbation of the end time (eps = 1e-6),
#: so the finite difference would straddle the snapped and the clipped grid.
GENERIC_CASES = {
    "default_unequal": ((0.0, 0.1, 0.25, 0.3, 0.7, 1.0), {"beta": 0.5}),
    "default_equal": ((0.0, 0.25, 0.5, 0.75, 1.0), {"beta": 0.7}),
    "beta0": ((0.0, 0.25, 0.5, 0.75, 1.0), {"beta": 0.0}),
    "unscaled_zero": ((0.0, 0.25, 0.5, 0.75, 1.0), {"beta": 0.6, "scale": False,
                                                    "start": "zero"}),
    "schedule": ((0.0, 0.25, 0.5, 0.75, 1.0), {"schedule": "nesterov"}),
    "step_snap": (_OFF_GRID, {"step_size": 0.1, "beta": 0.5}),
    "step_clip_cubic": (_OFF_GRID, {"step_size": 0.3, "beta": 0.8, "interp": "cubic"}),
    "grid_constructor": (_OFF_GRID, {"beta": 0.5, "grid_constructor": _generic_grid}),
    "reverse_default": ((1.0, 0.7, 0.3, 0.25, 0.1, 0.0), {"beta": 0.5}),
    "reverse_step": (tuple(reversed(_OFF_GRID)), {"step_size": 0.1, "beta": 0.4}),
}


@pytest.mark.parametrize("name", list(GENERIC_CASES))
def test_gradcheck_generic_backprop(name):
    ts, options = GENERIC_CASES[name]
    y0 = torch.tensor(_Y0, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(ts, dtype=torch.float64, requires_grad=True)
    theta = torch.tensor([0.5, 0.2], dtype=torch.float64, requires_grad=True)

    def solve(y0, t, theta):
        return odeint(_generic_field(theta), y0, t, method="nesterov", options=dict(options))

    assert torch.autograd.gradcheck(solve, (y0, t, theta))


def test_gradcheck_tuple_state():
    t = torch.tensor(_OFF_GRID, dtype=torch.float64, requires_grad=True)
    first = torch.tensor(_Y0, dtype=torch.float64, requires_grad=True)
    second = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    theta = torch.tensor([0.5, 0.2], dtype=torch.float64, requires_grad=True)

    def solve(first, second, t, theta):
        field = _generic_field(theta)

        def tuple_field(t, state):
            return field(t, state[0]), -theta[1] * state[1] + 0.5 * t * state[0][:1]

        return odeint(tuple_field, (first, second), t, method="nesterov",
                      options={"beta": 0.6, "step_size": 0.1})

    assert torch.autograd.gradcheck(solve, (first, second, t, theta))


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_gradcheck_tuple_state_adjoint_constant_problem(reverse):
    y0, t, a, b = _constant_problem(reverse)
    other = y0.detach().clone().requires_grad_(True)

    def solve(y0, other, t, a, b):
        field = _constant_field(a, b)
        return odeint_adjoint(lambda t, s: (field(t, s[0]), field(t, s[1])), (y0, other), t,
                              method="nesterov", options={"beta": 0.5}, adjoint_params=(a, b))

    assert torch.autograd.gradcheck(solve, (y0, other, t, a, b))


@pytest.mark.parametrize("options", [{"beta": 0.5}, {"beta": 0.5, "step_size": 0.1}])
def test_gradcheck_complex_state(options):
    """Complex states (torchdiffeq solves them as real pairs), through backprop. torchdiffeq
    0.2.5's adjoint does not take complex states (its backward pass raises for every method,
    euler and dopri5 included), so there is no adjoint case."""
    t = torch.tensor((0.0, 0.25, 0.55, 1.35, 2.0), dtype=torch.float64, requires_grad=True)
    y0 = torch.tensor([1.0 + 0.5j, -0.5 + 0.25j], dtype=torch.complex128, requires_grad=True)
    theta = torch.tensor([0.5, 0.2], dtype=torch.float64, requires_grad=True)

    def solve(y0, t, theta):
        return odeint(_generic_field(theta), y0, t, method="nesterov", options=dict(options))

    assert torch.autograd.gradcheck(solve, (y0, t, theta))


# ---- float32, and the adjoint on the generic problem -------------------------------------------


def _generic_gradients(mode, dtype, options, times=(0.0, 0.33, 0.57, 0.81, 2.0)):
    t = torch.tensor(times, dtype=dtype, requires_grad=True)
    y0 = torch.tensor(_Y0, dtype=dtype, requires_grad=True)
    theta = torch.tensor([0.5, 0.2], dtype=dtype, requires_grad=True)
    field = _generic_field(theta)
    if mode == "adjoint":
        ys = odeint_adjoint(field, y0, t, method="nesterov", options=options,
                            adjoint_params=(theta,))
    else:
        ys = odeint(field, y0, t, method="nesterov", options=options)
    ys.pow(2).sum().backward()
    return torch.cat([y0.grad, t.grad, theta.grad]).double()


@pytest.mark.parametrize("options", [{"beta": 0.5}, {"beta": 0.5, "step_size": 0.05}],
                         ids=["default", "step"])
@pytest.mark.parametrize("mode", ["backprop", "adjoint"])
def test_float32_gradients_match_float64(mode, options):
    single = _generic_gradients(mode, torch.float32, options)
    double = _generic_gradients(mode, torch.float64, options)
    assert torch.isfinite(single).all() and (single[2:7] != 0).all()  # every time has a gradient
    assert torch.allclose(single, double, rtol=1e-4, atol=1e-5)


def test_adjoint_gradient_converges_to_backprop():
    """On a generic problem the adjoint (the continuous gradient) differs from backprop (the
    discrete one) by O(h) in y0 and the parameters. Not in the times: the discrete pass carries
    the look-ahead distance beta H u with H the first step, so every output depends on t[0] and
    the first grid point, which has no continuous counterpart."""
    gaps = []
    for h in (0.05, 0.0125):
        options = {"beta": 0.5, "step_size": h}
        gap = (_generic_gradients("adjoint", torch.float64, options)
               - _generic_gradients("backprop", torch.float64, options))
        gaps.append(torch.cat([gap[:2], gap[-2:]]).abs().max())
    assert gaps[1] < gaps[0] / 3 and gaps[1] < 0.1


if __name__ == "__main__":
    torch.set_num_threads(1)
    write_fixture()
