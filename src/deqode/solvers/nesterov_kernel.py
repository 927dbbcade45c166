"""A fused CPU kernel for the Nesterov solver's fast step: one pass over the state where the
torch operations take five to eight.

On a cheap field the NAG step's cost is its memory passes: on a 100,000-number state without
autograd the update ``u' = β u + c f``, ``Δ = [s +] c h f + β H u'``, ``x' = x + Δ`` (with the
shift ``s = β (h - H) u`` of a step of another length, and the next step's look-ahead ``x' + s'``)
takes five to eight elementwise torch calls, each a pass over the state, where Euler takes two.
This kernel does the same arithmetic in one loop: every element goes through **the same
roundings in the same order** as those torch calls. A product rounds, then a sum rounds, except
where the torch kernel itself fuses them into one rounding (an FMA): ``add`` with ``alpha`` and
``addcmul``, whose vectorised CPU kernels compute ``fma``. The C source is compiled with
``-ffp-contract=off``, so no other product and sum are fused.

Whether this reproduces torch's bits is not taken on trust. On first use in a process, the kernel
is checked against the torch calls on random states of several sizes (odd sizes too, for the
vector kernels' scalar tails) and both float dtypes. If any bit differs, or the loop is not built
(:mod:`deqode.native`: no C compiler, or ``DEQODE_NATIVE=0``), :func:`available` is False and
the solver keeps its torch calls. Tests compare the two paths bit for bit as well.

The kernel is single-threaded: it is used where torch's elementwise calls would be too (one
intra-op thread, or a state under torch's parallel grain), contiguous float32/float64 CPU
tensors, without autograd.

The C source (``nag_step_float`` / ``nag_step_double``) is in :data:`deqode.native.SOURCE`.
"""

from __future__ import annotations

import ctypes

import torch
from torch import Tensor

from deqode import native

#: torch's elementwise kernels split work over threads only above this many elements.
PARALLEL_GRAIN = 32768
_FUNCTIONS = {torch.float32: ("nag_step_float", ctypes.c_float),
              torch.float64: ("nag_step_double", ctypes.c_double)}
_state: dict[str, object] = {}


def _bind(library: ctypes.CDLL) -> dict[torch.dtype, object]:
    functions = {}
    for dtype, (name, scalar) in _FUNCTIONS.items():
        function = getattr(library, name)
        function.restype = None
        function.argtypes = ([ctypes.c_int64] + [ctypes.c_void_p] * 6
                             + [scalar] * 4 + [ctypes.c_int, scalar, scalar, ctypes.c_int])
        functions[dtype] = function
    return functions


def reference_step(y: Tensor, u: Tensor, f: Tensor, beta: float, c: float, ch: Tensor,
                   phi: Tensor | None, bh: Tensor, phi_next: Tensor | None
                   ) -> tuple[Tensor, Tensor, Tensor | None]:
    """(u', x', look-ahead or None) by the torch calls the solver makes (the kernel's
    definition): ``NesterovODE._momentum_step`` and ``_MomentumUpdate.forward``."""
    un = torch.mul(u, beta).add_(f, alpha=c)
    d = torch.mul(f, ch)
    if phi is not None:
        d = torch.add(torch.mul(u, phi), d)
    d.addcmul_(un, bh)
    yn = torch.add(y, d)
    return un, yn, None if phi_next is None else torch.add(yn, torch.mul(un, phi_next))


def _agrees(functions: dict) -> bool:
    """Whether the kernel gives the bits of :func:`reference_step` on random states (sizes with
    and without a vector tail, both dtypes), with and without shifts, for the scalars of a float
    grid (shifts of an ulp) and of a clipped last step (shifts of a third of a step)."""
    gen = torch.Generator().manual_seed(0)
    _state["functions"] = functions
    try:
        for dtype in _FUNCTIONS:
            grid = torch.linspace(0, 1, 41, dtype=dtype)
            float_grid = grid[1:] - grid[:-1]
            clipped = torch.tensor([0.03, 0.03, 0.03, 0.01, 0.02], dtype=dtype)
            for n in (1, 7, 16, 33, 257, 1001, 4099):
                y, u, f = (torch.randn(n, generator=gen, dtype=dtype) * s
                           for s in (1.0, 3.0, 0.7))
                for steps, k, shifted in ((float_grid, 3, True), (float_grid, 5, False),
                                          (clipped, 2, True), (clipped, 3, True)):
                    ch, bh = 0.5 * steps[k], 0.5 * steps[0]
                    phi = 0.5 * (steps[k] - steps[0]) if shifted else None
                    nxt = 0.5 * (steps[k + 1] - steps[0]) if shifted else None
                    want = reference_step(y, u, f, 0.5, 0.5, ch, phi, bh, nxt)
                    u_out, y_out = torch.empty_like(u), torch.empty_like(y)
                    ahead = torch.empty_like(y) if nxt is not None else None
                    step(y, u, f, u_out, y_out, ahead, 0.5, 0.5, ch.item(),
                         None if phi is None else phi.item(), bh.item(),
                         None if nxt is None else nxt.item())
                    got = (u_out, y_out, ahead)
                    if not all((a is None and b is None) or torch.equal(a, b)
                               for a, b in zip(got, want, strict=True)):
                        return False
        return True
    finally:
        _state.pop("functions", None)


def available() -> bool:
    """Whether the kernel is built and reproduces torch's bits here (checked once per process;
    ``DEQODE_NATIVE=0`` turns it off)."""
    return native.checked(_state, _bind, _agrees, "the fused Nesterov kernel does not reproduce "
                          "torch's bits on this machine; the solver uses torch's elementwise "
                          "calls") is not None


def usable(*tensors: Tensor) -> bool:
    """Whether :func:`step` may take these tensors: the kernel is available, the tensors are
    contiguous CPU float32/float64 tensors of one dtype and size, autograd is off, and torch
    would run its elementwise calls on one thread too."""
    first = tensors[0]
    if (first.device.type != "cpu" or first.dtype not in _FUNCTIONS
            or torch.is_grad_enabled()):
        return False
    if first.numel() > PARALLEL_GRAIN and torch.get_num_threads() != 1:
        return False
    if not all(t.is_contiguous() and t.dtype == first.dtype and t.device == first.device
               and t.numel() == first.numel() for t in tensors):
        return False
    return available()


def step(y: Tensor, u: Tensor, f: Tensor, u_out: Tensor, y_out: Tensor, ahead: Tensor | None,
         beta: float, c: float, ch: float, phi: float | None, bh: float,
         phi_next: float | None) -> None:
    """One fused step into ``u_out`` (may be ``u``), ``y_out`` and ``ahead`` (the next
    look-ahead, when ``phi_next`` is given): the values of :func:`reference_step`. The caller
    checks :func:`usable` and that the outputs overlap no input (``u_out`` may be ``u``)."""
    function = _state["functions"][y.dtype]
    function(y.numel(), y.data_ptr(), u.data_ptr(), f.data_ptr(), u_out.data_ptr(),
             y_out.data_ptr(), 0 if ahead is None else ahead.data_ptr(), beta, c, ch,
             0.0 if phi is None else phi, phi is not None, bh,
             0.0 if phi_next is None else phi_next, phi_next is not None)


def overlaps(a: Tensor, b: Tensor) -> bool:
    """Whether the memory of two contiguous tensors overlaps."""
    start_a, start_b = a.data_ptr(), b.data_ptr()
    end_a = start_a + a.numel() * a.element_size()
    end_b = start_b + b.numel() * b.element_size()
    return start_a < end_b and start_b < end_a


__all__ = ["available", "overlaps", "reference_step", "step", "usable"]
