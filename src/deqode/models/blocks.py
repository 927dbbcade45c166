"""The blocks of the implicit classifiers: the vector field, its dropout, stems, heads, init points.

Every model of this package has the same skeleton (``HomoNet`` of the official HomoODE code,
``models/homonet.py``)::

    x  --stem-->  x̃ (N, C, H', W')  --implicit core-->  z (N, S, H', W')  --head-->  logits

The blocks here are its parts: :class:`DownsamplingStem` and :class:`ClassificationHead`, the
vector field :class:`ConvField` whose flags are exactly the differences between Chen et al.'s ODE
function (``torchdiffeq/examples/odenet_mnist.py``) and HomoODE's ``F_θ(z; x̃)``, its
:class:`VariationalDropout2d` (``VariationalHidDropout2d`` of ``locuslab/deq``) and HomoODE's
initial points. The skeletons that wire them into models are in :mod:`deqode.models.bases`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deqode.choices import check_choice

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


# --------------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------------


class VariationalDropout2d(nn.Module):
    """Channel ("variational") dropout whose mask is sampled once per solve.

    ``resample(reference)`` draws ``m ~ Bernoulli(1 - p)^(N, C, 1, 1) / (1 - p)`` in training mode
    (and clears the mask in eval mode); ``forward`` multiplies by the stored mask, so every function
    evaluation of one solve, forward and backward/adjoint alike, sees the same mask (as
    ``VariationalHidDropout2d`` of locuslab/deq, as the released HomoODE code).
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
    """HomoODE's shared learnable initial point (the paper's acceleration method; released
    ``create_init``).

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
    * HomoODE's ``F_θ(z; x̃) = GN_3(m ⊙ Conv_2(ReLU(GN_2(Conv_1 z)) + x̃))`` (released
      ``model/homoode.py``): no pre-activation, autonomous, injected.

    ``state_channels`` S is the width of z, ``hidden_channels`` W (default S) the width between the
    two convolutions; the injected condition x̃ must have W channels. ``activation`` (default
    ``"relu"``, as in both papers) may be ``"softplus"`` or ``"tanh"`` for smooth-field checks.
    The condition is an attribute set by :meth:`prepare` (so that torchdiffeq's adjoint can list it
    in ``adjoint_params``). With a condition, on the CPU, ``act(GN_2(·)) + x̃`` is recomputed in
    the backward pass rather than kept (one state tensor less per evaluation, the same bits:
    :class:`_NormActivateInject`).
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
        h = self.conv1(t, h)
        if self.injected:
            if self.condition is None:
                raise RuntimeError("call prepare(reference, condition) before evaluating the field")
            # On the CPU only: on a GPU the step is bound by kernel launches, and the node's
            # Python work cost more time (~10 % of a HomoODE step on an H200) than its memory
            # is worth there.
            if (h.device.type == "cpu" and torch.is_grad_enabled()
                    and not torch._C._are_functorch_transforms_active()):
                h = _NormActivateInject.apply(h, self.condition, self.norm2.weight,
                                              self.norm2.bias, self)
            else:
                h = self._inject(h, self.condition, self.norm2.weight, self.norm2.bias)
        else:
            h = self._activate(h, self.norm2.weight, self.norm2.bias)
        return self.norm3(self.dropout(self.conv2(t, h)))

    def _activate(self, h: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        norm = self.norm2
        h = F.group_norm(h, norm.num_groups, weight, bias, norm.eps)
        # in place: GroupNorm's backward needs its input, not this output (one state less)
        return F.relu_(h) if self.activation is F.relu else self.activation(h)

    def _inject(self, h: Tensor, condition: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        return self._activate(h, weight, bias) + condition


class _NormActivateInject(torch.autograd.Function):
    """``act(GN_2(h)) + x̃`` of an injected :class:`ConvField`, recomputed in the backward pass.

    Saves GN_2's input (which GroupNorm saves anyway) instead of also keeping the activation's
    output: one state tensor less per evaluation. With ReLU the backward pass repeats GroupNorm's
    forward kernel (for the mask and the statistics) and calls the two backward kernels autograd
    would call; otherwise, and under ``create_graph=True`` (the Jacobian regulariser), autograd
    differentiates a recomputation, itself differentiable. Values and gradients are bit for bit
    those of the plain graph.
    """

    @staticmethod
    def forward(ctx: Any, h: Tensor, condition: Tensor, weight: Tensor, bias: Tensor,
                field: ConvField) -> Tensor:
        ctx.field = field
        ctx.save_for_backward(h, weight, bias)
        return field._inject(h, condition, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        saved = ctx.saved_tensors  # h, weight, bias; x̃'s gradient is ``grad`` itself
        needed = (ctx.needs_input_grad[0], *ctx.needs_input_grad[2:4])
        if torch.is_grad_enabled() or ctx.field.activation is not F.relu:
            grads = _recomputed_gradients(ctx.field, saved, needed, grad)
        else:
            grads = _relu_group_norm_gradients(ctx.field.norm2, *saved, needed, grad)
        h, weight, bias = grads
        return h, grad if ctx.needs_input_grad[1] else None, weight, bias, None


def _recomputed_gradients(field: ConvField, saved: tuple[Tensor, ...],
                          needed: tuple[bool, ...], grad: Tensor) -> list[Tensor | None]:
    """Gradients of ``act(GN_2(h))`` by autograd over a recomputation; differentiable again
    under ``create_graph=True`` (then built on the saved tensors, which carry their graph)."""
    create_graph = torch.is_grad_enabled()
    with torch.enable_grad():
        inputs = saved if create_graph else [
            x.detach().requires_grad_(need) for x, need in zip(saved, needed, strict=True)]
        out = field._activate(*inputs)
        wanted = [x for x, need in zip(inputs, needed, strict=True) if need]
        found = iter(torch.autograd.grad(out, wanted, grad, create_graph=create_graph)
                     if wanted else ())
    return [next(found) if need else None for need in needed]


def _relu_group_norm_gradients(norm: nn.GroupNorm, h: Tensor, weight: Tensor, bias: Tensor,
                               needed: tuple[bool, ...], grad: Tensor) -> list[Tensor | None]:
    """Gradients of ``relu(GN(h))`` by the kernels autograd itself calls (ReLU's mask, GroupNorm's
    backward), after one GroupNorm forward that recovers the mask and the statistics: the same
    bits, without a recorded graph."""
    h = h.contiguous()
    n, c = h.shape[:2]
    spatial = h[0, 0].numel()
    out, mean, rstd = torch.ops.aten.native_group_norm(h, weight, bias, n, c, spatial,
                                                       norm.num_groups, norm.eps)
    grad = torch.ops.aten.threshold_backward(grad, out, 0)  # ReLU's backward, on its output
    return list(torch.ops.aten.native_group_norm_backward(
        grad, h, mean, rstd, weight, n, c, spatial, norm.num_groups, list(needed)))


class DownsamplingStem(nn.Sequential):
    """HomoNet's feature extractor D (released classes).

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
    """HomoNet's head (released classes).

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


@dataclass(frozen=True)
class ConvBackbone:
    """The settings of the HomoNet skeleton shared by HomoODE, the Neural ODE, ANODE and the DEQ.

    Widths and regularisation of the official ``HomoNet`` (``models/homonet.py``; the per-dataset
    values are the table of :mod:`deqode.models.zoo`): input channels, classes, state width C
    (``channels``), head width K (``final_channels``), the GroupNorm cap, the field's dropout and
    activation, and the stride of the stem's first convolution. The three builders make the
    skeleton's parts; a model calls them field first, then stem, then head (the order in which
    their parameters draw from the random generator).
    """

    in_channels: int = 3
    num_classes: int = 10
    channels: int = 64
    final_channels: int = 256
    max_groups: int = 32
    dropout: float = 0.1
    activation: str = "relu"
    first_stride: int = 1

    def field(self, state_channels: int | None = None, hidden_channels: int | None = None, *,
              time_dependent: bool = False, pre_activation: bool = False,
              injected: bool = False) -> ConvField:
        """The :class:`ConvField` on ``state_channels`` (default C) with this dropout."""
        return ConvField(
            self.channels if state_channels is None else state_channels, hidden_channels,
            max_groups=self.max_groups, time_dependent=time_dependent,
            pre_activation=pre_activation, injected=injected, dropout=self.dropout,
            activation=self.activation)

    def stem(self) -> DownsamplingStem:
        return DownsamplingStem(self.in_channels, self.channels, self.first_stride)

    def head(self, state_channels: int | None = None) -> ClassificationHead:
        """The head reading ``state_channels`` (default C) channels."""
        state = self.channels if state_channels is None else state_channels
        return ClassificationHead(state, self.final_channels, self.num_classes, self.max_groups)


__all__ = [
    "ACTIVATIONS",
    "AlternatingInit",
    "ClassificationHead",
    "ConcatConv2d",
    "ConvBackbone",
    "ConvField",
    "DownsamplingStem",
    "InitLayer",
    "VariationalDropout2d",
    "group_norm",
    "num_groups",
]
