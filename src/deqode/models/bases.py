"""The skeletons of the implicit classifiers: stem → implicit core → head, and the ODE solve.

Every model of this package poses its *implicit core* on the same skeleton (``HomoNet`` of the
official HomoODE code) and differs only in the problem it poses and where x̃ enters:

* Neural ODE: z(0) = x̃, dz/dt = F(t, z), output z(1)        (input = initial point)
* ANODE:      z(0) = [x̃; 0], dz/dt = F(t, z), output z(1)   (input = initial point, augmented)
* HomoODE:    z(0) = z0 (shared), dz/dt = F(z; x̃), output z(1)  (input = condition)
* DEQ:        z* = f(z*; x̃) with f(z; x̃) = GN(ReLU(z + F(z; x̃)))  (input = condition)

The ODE models share :class:`ODEClassifier` (solve with torchdiffeq, gradient modes, NFE
counting through :class:`CountingField`, step cap); the DEQ shares :class:`ImplicitClassifier`
only. The blocks (field, stem, head) are in :mod:`deqode.models.blocks`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

from deqode.choices import ODE_GRAD_MODES
from deqode.errors import SolverFailure
from deqode.models.blocks import ConvBackbone, ConvField
from deqode.models.nfe import CountsNFE
from deqode.models.settings import ODESolve, ODESolverAttributes, reject_unknown, take_settings
from deqode.solvers.dopri5 import odeint_dopri5

# --------------------------------------------------------------------------------------------------
# input check and solver errors
# --------------------------------------------------------------------------------------------------


def check_image_batch(x: Tensor, channels: int, model: str) -> None:
    """Raise a ValueError unless ``x`` is an image batch (N, channels, H, W)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{model} expects a torch.Tensor of shape (N, C, H, W), got {type(x)!r}")
    if x.dim() != 4 or x.shape[1] != channels:
        raise ValueError(
            f"{model} expects an input of shape (N, C, H, W) with C={channels}, "
            f"got shape {tuple(x.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"{model} expects a floating-point input, got dtype {x.dtype}")


@contextlib.contextmanager
def solver_errors_as_failure(what: str) -> Iterator[None]:
    """Turn torchdiffeq's assertions (step cap, dt underflow, non-finite state) into
    :class:`SolverFailure`."""
    try:
        yield
    except AssertionError as err:
        message = str(err)
        if any(key in message for key in ("max_num_steps", "underflow", "non-finite")):
            raise SolverFailure(f"{what}: the ODE solver failed ({message})") from err
        raise


# --------------------------------------------------------------------------------------------------
# counting and the step cap
# --------------------------------------------------------------------------------------------------


class CountingField:
    """A callable ``(t, z) -> F(t, z)`` that counts evaluations and solver steps.

    ``nfe`` counts every evaluation since :meth:`reset` (forward and backward; the model splits them
    at the end of its forward solve). torchdiffeq calls ``callback_step`` at each (accepted or
    rejected) step of a forward solve and ``callback_step_adjoint`` at each step of the adjoint
    solve; when a solve takes more than ``max_num_steps`` steps a :class:`SolverFailure` is raised
    from inside the solver, in the forward and in the backward pass alike (an exception raised in a
    backward keeps its type). A plain object, not an ``nn.Module``: the field's parameters stay
    registered once, under the model.
    """

    def __init__(self, field: Callable[[Any, Tensor], Tensor], max_num_steps: int | None) -> None:
        if max_num_steps is not None and max_num_steps < 1:
            raise ValueError(f"max_num_steps must be positive or None, got {max_num_steps}")
        self.field = field
        self.max_num_steps = max_num_steps
        self.reset()

    def reset(self) -> None:
        self.nfe = 0
        self.steps = {"forward": 0, "backward": 0}

    def __call__(self, t: Any, z: Tensor) -> Tensor:
        self.nfe += 1
        return self.field(t, z)

    def count_step(self, phase: str) -> None:
        self.steps[phase] += 1
        if self.max_num_steps is not None and self.steps[phase] > self.max_num_steps:
            raise SolverFailure(
                f"{phase} ODE solve exceeded max_num_steps={self.max_num_steps} "
                f"({self.nfe} function evaluations so far); the dynamics are too stiff for the "
                "tolerance: loosen rtol/atol, raise max_num_steps, or lower the learning rate"
            )

    def callback_step(self, t0: Tensor, y0: Any, dt: Tensor) -> None:
        self.count_step("forward")

    def callback_step_adjoint(self, t0: Tensor, y0: Any, dt: Tensor) -> None:
        self.count_step("backward")


# --------------------------------------------------------------------------------------------------
# model skeletons
# --------------------------------------------------------------------------------------------------


class ImplicitClassifier(CountsNFE, nn.Module):
    """stem → implicit core → head, with an input check and NFE counters.

    Subclasses implement :meth:`solve` (x̃ → z) and :attr:`nfe_backward`; ``nfe_forward`` is the
    number of evaluations of the core's function in the last forward pass.
    """

    def __init__(self, stem: nn.Module, head: nn.Module, in_channels: int) -> None:
        super().__init__()
        self.stem = stem
        self.head = head
        self.in_channels = in_channels
        self.nfe_forward = 0

    def forward(self, x: Tensor) -> Tensor:
        check_image_batch(x, self.in_channels, type(self).__name__)
        return self.head(self.solve(self.stem(x)))

    def solve(self, x_tilde: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def nfe_backward(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def reset_nfe(self) -> None:
        """Set both counters to zero (they are also reset by every forward pass)."""
        self.nfe_forward = 0

    def init_parameters(self) -> list[nn.Parameter]:
        """Parameters trained by a separate optimiser (HomoODE's initial point); none by default."""
        return []

    def main_parameters(self) -> list[nn.Parameter]:
        """Parameters for the main optimiser: all except :meth:`init_parameters`."""
        separate = {id(p) for p in self.init_parameters()}
        return [p for p in self.parameters() if id(p) not in separate]


class ODEClassifier(ODESolverAttributes, ImplicitClassifier):
    """An implicit classifier whose core integrates ``dz/dt = F(t, z)`` over [0, 1].

    Subclasses choose the initial state z(0) and the condition x̃ given to ``F`` (:meth:`start`).
    Gradient modes: ``backprop`` (autograd through every solver stage; exact for the discretised
    solve; memory grows with NFE) and ``adjoint`` (torchdiffeq's ``odeint_adjoint``, with the
    condition listed in ``adjoint_params``; constant memory). Solver (``solve``, an
    :class:`~deqode.models.settings.ODESolve`): torchdiffeq ``method`` (default dopri5) with
    ``rtol``/``atol`` and ``options``; more than ``max_num_steps`` steps in a forward or backward
    solve raises :class:`SolverFailure` (as do dt underflow and a non-finite state). Backprop
    through dopri5 goes through :func:`deqode.solvers.dopri5.odeint_dopri5` (torchdiffeq's steps
    and values with fewer passes over the state), for every ODE model alike. NFE:
    ``nfe_forward`` and ``nfe_backward`` count evaluations of F for the last batch.
    """

    def __init__(
        self,
        stem: nn.Module,
        head: nn.Module,
        field: ConvField,
        in_channels: int,
        *,
        solve: ODESolve | None = None,
        max_num_steps: int | None = 1000,
    ) -> None:
        super().__init__(stem, head, in_channels)
        self.field = field
        self.use_solver(ODESolve() if solve is None else solve)
        self.func = CountingField(field, max_num_steps)

    @property
    def max_num_steps(self) -> int | None:
        return self.func.max_num_steps

    @max_num_steps.setter
    def max_num_steps(self, value: int | None) -> None:
        self.func.max_num_steps = value

    # solve ----------------------------------------------------------------------------------------
    def start(self, x_tilde: Tensor) -> tuple[Tensor, Tensor | None]:
        """(z(0), condition) for this batch."""  # pragma: no cover - abstract
        raise NotImplementedError

    def solve(self, x_tilde: Tensor) -> Tensor:
        z0, condition = self.start(x_tilde)
        self.field.prepare(z0, condition)
        self.func.reset()
        times = torch.tensor([0.0, 1.0], dtype=z0.dtype, device=z0.device)
        z1 = self.integrate(z0, condition, times)
        self.nfe_forward = self.func.nfe
        if not torch.isfinite(z1).all():
            raise SolverFailure(
                f"{type(self).__name__}: the ODE state z(1) is not finite "
                f"(method={self.method}, {self.nfe_forward} evaluations)"
            )
        return z1

    def integrate(self, z0: Tensor, condition: Tensor | None, times: Tensor) -> Tensor:
        """z(1) by the configured gradient mode."""
        name = f"{type(self).__name__} forward"
        kwargs = self.solver_kwargs()
        with solver_errors_as_failure(name):
            if self.grad_mode == "backprop" and self.method == "dopri5":
                # torchdiffeq's dopri5 step for step, fewer passes (tests/test_dopri5.py)
                return odeint_dopri5(self.func, z0, times, rtol=self.rtol, atol=self.atol,
                                     options=self.options)[-1]
            if self.grad_mode == "backprop":
                return odeint(self.func, z0, times, **kwargs)[-1]
            params: tuple[Tensor, ...] = tuple(self.field.parameters())
            if condition is not None:
                params = (*params, condition)  # without it x̃ silently gets no gradient (G2)
            return odeint_adjoint(self.func, z0, times, adjoint_params=params, **kwargs)[-1]

    @property
    def nfe_backward(self) -> int:
        """Evaluations of F in the backward pass of the last batch (0 for ``backprop``)."""
        return self.func.nfe - self.nfe_forward

    def reset_nfe(self) -> None:
        super().reset_nfe()
        self.func.reset()


def conv_ode_settings(model: type, args: tuple[Any, ...], kwargs: dict[str, Any],
                      **backbone_defaults: Any) -> tuple[ConvBackbone, ODESolve]:
    """The backbone and solver settings of an ODE classifier on the HomoNet skeleton.

    ``args`` and ``kwargs`` are the model's positional and remaining keyword arguments; a keyword
    that is neither a :class:`ConvBackbone` nor an :class:`ODESolve` field raises a TypeError.
    """
    net = take_settings(ConvBackbone, kwargs, *args, **backbone_defaults)
    solve = take_settings(ODESolve, kwargs)
    reject_unknown(kwargs, model)
    return net, solve


def count_parameters(parameters: Sequence[Tensor] | Iterator[Tensor]) -> int:
    """Total number of scalar entries."""
    return sum(math.prod(p.shape) for p in parameters)


__all__ = [
    "ODE_GRAD_MODES",
    "CountingField",
    "ImplicitClassifier",
    "ODEClassifier",
    "check_image_batch",
    "conv_ode_settings",
    "count_parameters",
    "solver_errors_as_failure",
]
