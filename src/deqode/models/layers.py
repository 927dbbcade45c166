"""Shared pieces of the implicit classifiers: stem, head, vector fields, dropout, counting, solving.

Every model in this package has the same skeleton (``HomoNet`` of the HomoODE code, spec §3.3)::

    x  --stem-->  x̃ (N, C, H', W')  --implicit core-->  z (N, S, H', W')  --head-->  logits

and differs only in its *implicit core*, i.e. in the problem it poses and where x̃ enters:

* Neural ODE: z(0) = x̃, dz/dt = F(t, z), output z(1)        (input = initial point)
* ANODE:      z(0) = [x̃; 0], dz/dt = F(t, z), output z(1)   (input = initial point, augmented)
* HomoODE:    z(0) = z0 (shared), dz/dt = F(z; x̃), output z(1)  (input = condition)
* DEQ:        z* = f(z*; x̃) with f(z; x̃) = GN(ReLU(z + F(z; x̃)))  (input = condition)

The vector field ``F`` is one class, :class:`ConvField`; its flags are exactly the differences
between Chen et al.'s ODE function and HomoODE's (spec §2.3). The ODE models share
:class:`ODEClassifier` (solve, gradient modes, NFE counting, step cap); the DEQ shares
:class:`ImplicitClassifier` only.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

from deqode.choices import ODE_GRAD_MODES, check_choice
from deqode.errors import SolverFailure

#: Activations of :class:`ConvField`; the papers use ReLU, the smooth ones serve gradient checks
#: (an adaptive solver does not control the error of the adjoint across ReLU kinks).
ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "softplus": F.softplus,
    "tanh": torch.tanh,
}


# --------------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------------


def num_groups(channels: int, max_groups: int) -> int:
    """GroupNorm group count: the largest divisor of ``channels`` that is at most ``max_groups``.

    Equals the official ``min(max_groups, channels)`` whenever that divides ``channels`` (every
    HomoODE width); other widths (ANODE's augmented state) get the nearest valid count below.
    """
    if channels < 1 or max_groups < 1:
        raise ValueError(f"channels and max_groups must be positive, got {channels}, {max_groups}")
    return max(g for g in range(1, min(channels, max_groups) + 1) if channels % g == 0)


def group_norm(channels: int, max_groups: int) -> nn.GroupNorm:
    """``GroupNorm(num_groups(channels, max_groups), channels)`` with affine parameters (2C)."""
    return nn.GroupNorm(num_groups(channels, max_groups), channels)


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
# layers
# --------------------------------------------------------------------------------------------------


class VariationalDropout2d(nn.Module):
    """Channel ("variational") dropout whose mask is sampled once per solve.

    ``resample(reference)`` draws ``m ~ Bernoulli(1 - p)^(N, C, 1, 1) / (1 - p)`` in training mode
    (and clears the mask in eval mode); ``forward`` multiplies by the stored mask, so every function
    evaluation of one solve, forward and backward/adjoint alike, sees the same mask (as
    ``VariationalHidDropout2d`` of locuslab/deq, spec §2.3).
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        self.mask: Tensor | None = None

    def resample(self, reference: Tensor) -> None:
        """Sample the mask for a batch shaped like ``reference`` (N, C, H, W); none in eval mode."""
        if not self.training or self.p == 0.0:
            self.mask = None
            return
        keep = torch.full(
            (reference.shape[0], reference.shape[1], 1, 1), 1.0 - self.p,
            dtype=reference.dtype, device=reference.device,
        )
        self.mask = torch.bernoulli(keep) / (1.0 - self.p)

    def forward(self, h: Tensor) -> Tensor:
        if self.mask is None:
            return h
        if self.mask.shape[:2] != h.shape[:2]:
            raise RuntimeError(
                f"dropout mask of shape {tuple(self.mask.shape)} does not fit a tensor of shape "
                f"{tuple(h.shape)}; call resample() at the start of each solve"
            )
        return h * self.mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


class InitLayer(nn.Module):
    """HomoODE's shared learnable initial point (spec §2.4).

    ``z0 = GN(Conv1x1_{1→C, no bias}(1_{(N,1,H,W)}))``: the input is used only for its shape, so
    the output is identical for every sample and constant over positions (a per-channel learnable
    constant). With two channels per group (C = 64, 32 groups) the normalised values are ±1, so
    ``z0[c] = β_c ± γ_c``. Parameters: C (conv) + 2C (GN) = 3C.
    """

    def __init__(self, channels: int, max_groups: int = 32) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, channels, kernel_size=1, bias=False)
        self.norm = group_norm(channels, max_groups)

    def forward(self, reference: Tensor) -> Tensor:
        n, _, h, w = reference.shape
        ones = torch.ones(n, 1, h, w, dtype=reference.dtype, device=reference.device)
        return self.norm(self.conv(ones))


class AlternatingInit(nn.Module):
    """The fixed start of the official ``create_init``: −1 on even channels, +1 on odd ones.

    Used by HomoODE with ``use_init_layer=False`` (the init-point ablation). No parameters.
    """

    def forward(self, reference: Tensor) -> Tensor:
        z = torch.ones_like(reference)
        z[:, ::2] = -1.0
        return z


class ConcatConv2d(nn.Module):
    """3×3 convolution (stride 1, padding 1, bias); with ``time_dependent`` a constant t channel is
    concatenated to the input first (Chen et al.'s ``ConcatConv2d``)."""

    def __init__(self, in_channels: int, out_channels: int, time_dependent: bool) -> None:
        super().__init__()
        self.time_dependent = time_dependent
        extra = 1 if time_dependent else 0
        self.conv = nn.Conv2d(in_channels + extra, out_channels, kernel_size=3, padding=1)

    def forward(self, t: Tensor | float | None, h: Tensor) -> Tensor:
        if self.time_dependent:
            if t is None:
                raise ValueError("a time-dependent ConcatConv2d needs t")
            tt = torch.ones_like(h[:, :1]) * t
            h = torch.cat([tt, h], dim=1)
        return self.conv(h)


class ConvField(nn.Module):
    """The convolutional vector field shared by every model of this package.

    ::

        h = ReLU(GN_1(z))               if pre_activation   (Chen et al.)
        h = ReLU(GN_2(Conv_1(t, h)))
        h = h + x̃                        if injected         (HomoODE, DEQ)
        F = GN_3(m ⊙ Conv_2(t, h))                           m: variational dropout mask

    * Chen et al.'s ODE function (``torchdiffeq/examples/odenet_mnist.py``): ``pre_activation``,
      ``time_dependent``, not injected (their code has no dropout; ours may, see the builds).
    * HomoODE's ``F_θ(z; x̃) = GN_3(m ⊙ Conv_2(ReLU(GN_2(Conv_1 z)) + x̃))`` (spec §2.3): no
      pre-activation, autonomous, injected.

    ``state_channels`` S is the width of z, ``hidden_channels`` W (default S) the width between the
    two convolutions; the injected condition x̃ must have W channels. ``activation`` (default
    ``"relu"``, as in both papers) may be ``"softplus"`` or ``"tanh"`` for smooth-field checks.
    The condition is an attribute set by :meth:`prepare` (so that torchdiffeq's adjoint can list it
    in ``adjoint_params``).
    Parameters: [2S] + 9(S+τ)W + W + 2W + 9(W+τ)S + S + 2S, with τ = 1 if time-dependent.
    """

    def __init__(
        self,
        state_channels: int,
        hidden_channels: int | None = None,
        *,
        max_groups: int = 32,
        time_dependent: bool = False,
        pre_activation: bool = False,
        injected: bool = False,
        dropout: float = 0.0,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        check_choice("activation", activation, ACTIVATIONS)
        self.activation_name = activation
        self.activation = ACTIVATIONS[activation]
        hidden = state_channels if hidden_channels is None else hidden_channels
        self.state_channels = state_channels
        self.hidden_channels = hidden
        self.injected = injected
        self.norm1 = group_norm(state_channels, max_groups) if pre_activation else None
        self.conv1 = ConcatConv2d(state_channels, hidden, time_dependent)
        self.norm2 = group_norm(hidden, max_groups)
        self.conv2 = ConcatConv2d(hidden, state_channels, time_dependent)
        self.dropout = VariationalDropout2d(dropout)
        self.norm3 = group_norm(state_channels, max_groups)
        self.condition: Tensor | None = None

    def prepare(self, reference: Tensor, condition: Tensor | None = None) -> None:
        """Start a new solve: store the condition x̃ and sample the dropout mask for this batch."""
        if self.injected:
            if condition is None or condition.shape[1] != self.hidden_channels:
                got = None if condition is None else tuple(condition.shape)
                raise ValueError(
                    f"an injected ConvField needs a condition with {self.hidden_channels} "
                    f"channels, got {got}"
                )
        elif condition is not None:
            raise ValueError("this ConvField is not injected; it takes no condition")
        self.condition = condition
        self.dropout.resample(reference)

    def forward(self, t: Tensor | float | None, z: Tensor) -> Tensor:
        h = z if self.norm1 is None else self.activation(self.norm1(z))
        h = self.activation(self.norm2(self.conv1(t, h)))
        if self.injected:
            if self.condition is None:
                raise RuntimeError("call prepare(reference, condition) before evaluating the field")
            h = h + self.condition
        return self.norm3(self.dropout(self.conv2(t, h)))


class DownsamplingStem(nn.Sequential):
    """HomoNet's feature extractor D (spec §3.3).

    Conv(3×3, stride s₁)-BN-ReLU-Conv(3×3, stride 2)-BN-ReLU, all convolutions with bias.

    Parameters: (9·c_in·C + C) + 2C + (9C² + C) + 2C (BN running statistics are buffers).
    """

    def __init__(self, in_channels: int, channels: int, first_stride: int = 1) -> None:
        super().__init__(
            nn.Conv2d(in_channels, channels, kernel_size=3, stride=first_stride, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
        )


class ClassificationHead(nn.Sequential):
    """HomoNet's head (spec §3.3).

    GN(C)-ReLU-Conv1×1(C→K)-BN(K)-ReLU-global average pool-Linear(K→classes).

    Parameters: 2C + (CK + K) + 2K + (K·classes + classes).
    """

    def __init__(
        self, channels: int, final_channels: int, num_classes: int, max_groups: int = 32
    ) -> None:
        super().__init__(
            group_norm(channels, max_groups),
            nn.ReLU(),
            nn.Conv2d(channels, final_channels, kernel_size=1),
            nn.BatchNorm2d(final_channels),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(final_channels, num_classes),
        )


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


class ImplicitClassifier(nn.Module):
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


class ODEClassifier(ImplicitClassifier):
    """An implicit classifier whose core integrates ``dz/dt = F(t, z)`` over [0, 1].

    Subclasses choose the initial state z(0) and the condition x̃ given to ``F`` (:meth:`start`).
    Gradient modes: ``backprop`` (autograd through every solver stage; exact for the discretised
    solve; memory grows with NFE) and ``adjoint`` (torchdiffeq's ``odeint_adjoint``, with the
    condition listed in ``adjoint_params``; constant memory). Solver: torchdiffeq ``method``
    (default dopri5) with ``rtol``/``atol`` and ``options``; more than ``max_num_steps`` steps in a
    forward or backward solve raises :class:`SolverFailure` (as do dt underflow and a non-finite
    state). NFE: ``nfe_forward`` and ``nfe_backward`` count evaluations of F for the last batch.
    """

    grad_modes: tuple[str, ...] = ODE_GRAD_MODES

    def __init__(
        self,
        stem: nn.Module,
        head: nn.Module,
        field: ConvField,
        in_channels: int,
        *,
        grad_mode: str = "backprop",
        method: str = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-3,
        options: dict[str, Any] | None = None,
        max_num_steps: int | None = 1000,
    ) -> None:
        super().__init__(stem, head, in_channels)
        self.field = field
        self.grad_mode = grad_mode
        self.method = method
        self.rtol = rtol
        self.atol = atol
        self.options = dict(options or {})
        self.func = CountingField(field, max_num_steps)

    # configuration ---------------------------------------------------------------------------
    @property
    def grad_mode(self) -> str:
        return self._grad_mode

    @grad_mode.setter
    def grad_mode(self, mode: str) -> None:
        check_choice("gradient mode", mode, self.grad_modes)
        self._grad_mode = mode

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
        kwargs = dict(rtol=self.rtol, atol=self.atol, method=self.method, options=self.options)
        with solver_errors_as_failure(name):
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


def count_parameters(parameters: Sequence[Tensor] | Iterator[Tensor]) -> int:
    """Total number of scalar entries."""
    return sum(math.prod(p.shape) for p in parameters)
