"""The 2-norm of all gradients, computed once per training step (a failure check before the update,
and a recorded metric).

torch computes it as the norm of the per-tensor norms (``nn.utils.get_total_norm``: on the CPU one
reduction call per tensor, then a stack and a norm), which on a small model costs about 1 % of a
training step. On the CPU, for contiguous float32 or float64 gradients, :func:`total_norm` sums
the squares of all of them in one C loop (:mod:`deqode.native`) instead, accumulating in double;
elsewhere (a GPU, other dtypes, no C compiler, ``DEQODE_NATIVE=0``) it keeps torch's foreach
reduction. The value is the same norm up to rounding, not bitwise: the C loop adds in another
order, and in double. It is checked against torch in float64 on first use (relative 1e-12), and
NaN and infinity propagate in both, so the failure check is unchanged.
"""

from __future__ import annotations

import ctypes
import math

import torch
from torch import Tensor

from deqode import native

_FUNCTIONS = {torch.float32: "sum_of_squares_float", torch.float64: "sum_of_squares_double"}
#: relative agreement with torch's float64 norm required of the C loop on first use
CHECK_RTOL = 1e-12
_state: dict[str, object] = {}


def _bind(library: ctypes.CDLL) -> dict[torch.dtype, object]:
    functions = {}
    for dtype, name in _FUNCTIONS.items():
        function = getattr(library, name)
        function.restype = ctypes.c_double
        function.argtypes = [ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
        functions[dtype] = function
    return functions


def torch_norm(grads: list[Tensor]) -> float:
    """torch's total norm of ``grads`` (one device and dtype): the norm of the per-tensor norms."""
    return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, 2.0)), 2.0))


def _sum_of_squares(function, grads: list[Tensor]) -> float | None:
    """The C sum of squares of ``grads``; None if one of them is not contiguous."""
    pointers, sizes = [], []
    for g in grads:
        if not g.is_contiguous():
            return None
        pointers.append(g.data_ptr())
        sizes.append(g.numel())
    count = len(grads)
    return function(count, (ctypes.c_void_p * count)(*pointers), (ctypes.c_int64 * count)(*sizes))


def _agrees(functions: dict) -> bool:
    """Whether the C sums match torch's float64 norms on random gradients of several sizes, and
    propagate NaN and infinity."""
    gen = torch.Generator().manual_seed(0)
    for dtype, function in functions.items():
        grads = [torch.randn(n, generator=gen, dtype=dtype) * scale
                 for n, scale in ((1, 3.0), (7, 1e-3), (4099, 1.0), (300, 40.0))]
        want = float(torch.linalg.vector_norm(torch.cat(grads).double()))
        got = math.sqrt(_sum_of_squares(function, grads))
        if not abs(got - want) <= CHECK_RTOL * want:
            return False
        for bad in (math.nan, math.inf):
            spoiled = [g.clone() for g in grads]
            spoiled[2][17] = bad
            if math.isfinite(_sum_of_squares(function, spoiled)):
                return False
    return True


def native_available() -> bool:
    """Whether the C loop is built and agrees with torch here (checked once per process)."""
    return native.checked(_state, _bind, _agrees, "the native gradient norm does not match "
                          "torch's here; the training loop uses torch's reduction") is not None


def total_norm(grads: list[Tensor]) -> float:
    """The 2-norm of all of ``grads`` (tensors of one device and dtype), as a float: by the C loop
    where it applies, else by torch's foreach reduction. 0.0 for no gradients."""
    if not grads:
        return 0.0
    first = grads[0]
    if first.device.type == "cpu" and first.dtype in _FUNCTIONS and native_available():
        total = _sum_of_squares(_state["functions"][first.dtype], grads)
        if total is not None:
            return math.sqrt(total)
    return torch_norm(grads)


__all__ = ["CHECK_RTOL", "native_available", "torch_norm", "total_norm"]
