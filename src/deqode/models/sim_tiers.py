"""The tiers of a Stable Invariant Model (SIM; Konishi & Kawahara, arXiv 2207.07475, §4).

First tiers (learned bases ``Φ_θ``: :class:`ConvBasis`, :class:`MLPBasis`, :class:`TCNBasis`),
the frozen second tier (:class:`RandomFourierFeatures` ``ξ_σ``, Rahimi & Recht 2007) and the
reverse tier ``M`` (:class:`ReverseTier`), as in the official code ``uswodce/sim``
(``src/sim/net.py``). :class:`deqode.models.sim.SIM` composes them.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from deqode.choices import check_choice
from deqode.models.bases import count_parameters

RFF_FEATURES = ("cossin", "cosbias")
RFF_KERNELS = ("gauss", "laplace")


def count_trainable(module: nn.Module) -> int:
    """Number of trainable scalars (``requires_grad``), as the official ``count_parameters``."""
    return count_parameters(p for p in module.parameters() if p.requires_grad)


# --------------------------------------------------------------------------------------------------
# the second tier: frozen random Fourier features
# --------------------------------------------------------------------------------------------------


class RandomFourierFeatures(nn.Module):
    """Frozen random Fourier features ``ξ_σ``: Monte-Carlo feature map of a shift-invariant kernel.

    ``feature="cossin"`` (SIM's default): ``Ω ∈ R^{(m/2)×d}`` and
    ``ξ_σ(h) = [cos(Ω h); sin(Ω h)] / sqrt(m/2)`` (cos half first, both halves share ``Ω``; ``m``
    must be even). ``feature="cosbias"``: ``Ω ∈ R^{m×d}``, ``b ~ U[0, 2π)`` and
    ``ξ_σ(h) = cos(Ω h + b) / sqrt(m/2)``. ``kernel="gauss"`` draws ``Ω`` i.i.d. ``N(0, 1/σ²)``, so
    ``ξ(a)ᵀξ(b) → exp(−||a − b||² / (2σ²))`` (error ``O(m^{-1/2})``); ``kernel="laplace"`` draws
    Cauchy entries of scale ``1/σ`` (the kernel ``∏ exp(−|a_i − b_i| / σ)``).

    ``Ω`` (and ``b``) are buffers: frozen, saved in the state dict, never parameters; they follow
    ``.to(dtype)`` like any buffer and the input's dtype at call time. Acts on the last dimension.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bandwidth: float,
        feature: str = "cossin",
        kernel: str = "gauss",
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_choice("RFF feature", feature, RFF_FEATURES)
        check_choice("RFF kernel", kernel, RFF_KERNELS)
        if out_dim < 2 or (feature == "cossin" and out_dim % 2):
            raise ValueError(f"RFF width must be an even number >= 2 for 'cossin', got {out_dim}")
        if not bandwidth > 0:
            raise ValueError(f"RFF bandwidth must be positive, got {bandwidth}")
        self.in_dim, self.out_dim, self.bandwidth = in_dim, out_dim, float(bandwidth)
        self.feature, self.kernel = feature, kernel
        rows = out_dim // 2 if feature == "cossin" else out_dim
        if kernel == "gauss":
            omega = torch.randn(rows, in_dim, generator=generator) / bandwidth
        else:  # standard Cauchy by inverse CDF, scale 1/bandwidth
            uniform = torch.rand(rows, in_dim, generator=generator)
            omega = torch.tan(math.pi * (uniform - 0.5)) / bandwidth
        self.register_buffer("omega", omega)
        if feature == "cosbias":
            self.register_buffer("phase", 2 * math.pi * torch.rand(rows, generator=generator))
        else:
            self.phase: Tensor | None = None
        self.scale = 1.0 / math.sqrt(out_dim / 2)

    def forward(self, h: Tensor) -> Tensor:
        proj = h @ self.omega.to(h.dtype).T
        if self.feature == "cosbias":
            return torch.cos(proj + self.phase.to(h.dtype)) * self.scale
        return torch.cat([torch.cos(proj), torch.sin(proj)], dim=-1) * self.scale

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, out_dim={self.out_dim}, bandwidth={self.bandwidth:g}, "
            f"feature={self.feature!r}, kernel={self.kernel!r}, frozen"
        )


# --------------------------------------------------------------------------------------------------
# first tiers (bases)
# --------------------------------------------------------------------------------------------------


class ConvBasis(nn.Module):
    """Image basis: [Conv3×3 → BN → ReLU] ×2 → MaxPool2 → [Conv3×3 → BN → ReLU] ×2 → MaxPool2 →
    Flatten → Lin(C·(H//4)² → n1). All four convolutions have ``C`` channels, padding 1."""

    def __init__(self, in_channels: int, image_size: int, channels: int, out_dim: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for k in range(4):
            layers += [
                nn.Conv2d(in_channels if k == 0 else channels, channels, 3, padding=1),
                nn.BatchNorm2d(channels),
                nn.ReLU(),
            ]
            if k % 2 == 1:
                layers.append(nn.MaxPool2d(2))
        self.convs = nn.Sequential(*layers, nn.Flatten())
        self.linear = nn.Linear(channels * (image_size // 4) ** 2, out_dim)
        self.in_channels, self.image_size, self.out_dim = in_channels, image_size, out_dim

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1:] != (self.in_channels, self.image_size, self.image_size):
            raise ValueError(
                f"ConvBasis expects (N, {self.in_channels}, {self.image_size}, {self.image_size}),"
                f" got {tuple(x.shape)}"
            )
        return self.linear(self.convs(x))


class MLPBasis(nn.Module):
    """Coordinate basis: Lin(d → b) → ReLU → Lin(b → b) → ReLU → Lin(b → n1)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, out_dim),
        )
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class CausalConv1d(nn.Module):
    """Dilated causal 1-D convolution: pad ``(k − 1)·d`` on both sides, drop the trailing pad."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, dilation: int, normed: bool) -> None:
        super().__init__()
        self.trim = (kernel - 1) * dilation
        conv = nn.Conv1d(in_ch, out_ch, kernel, padding=self.trim, dilation=dilation)
        self.conv = weight_norm(conv) if normed else conv

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        return y[..., : -self.trim] if self.trim else y


class TemporalBlock(nn.Module):
    """TCN residual block: two [weight-normed causal conv → ReLU → Dropout], residual, ReLU.

    The residual path is a 1×1 convolution when the channel count changes (block 0), else the
    identity. Initialisation: PyTorch defaults for the weight-normed convolutions (``weight_v``
    default, ``weight_g`` = per-channel norm of ``weight_v``) — which is the *effective*
    initialisation of the official code, whose ``N(0, 0.01)`` write is undone by the weight-norm
    hook (locuslab/TCN issue 1); the 1×1 residual convolution gets ``N(0, 0.01)`` as there.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = CausalConv1d(in_ch, out_ch, kernel, dilation, normed=True)
        self.conv2 = CausalConv1d(out_ch, out_ch, kernel, dilation, normed=True)
        self.dropout = nn.Dropout(dropout)
        self.downsample = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else None
        if self.downsample is not None:
            nn.init.normal_(self.downsample.weight, 0.0, 0.01)

    def forward(self, x: Tensor) -> Tensor:
        out = self.dropout(F.relu(self.conv1(x)))
        out = self.dropout(F.relu(self.conv2(out)))
        res = x if self.downsample is None else self.downsample(x)
        return F.relu(out + res)


class TCNBasis(nn.Module):
    """Sequence basis: a TCN (``levels`` blocks, dilation ``2^i``) then Lin(C → n1) per time step.

    Input ``(B, in_channels, L)`` (copy memory: the raw digit as one float channel); output
    ``(B, L, n1)``. Receptive field ``1 + 2 (k − 1)(2^levels − 1)``.
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        levels: int,
        kernel: int,
        out_dim: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.tcn = nn.Sequential(
            *[
                TemporalBlock(in_channels if i == 0 else channels, channels, kernel, 2**i, dropout)
                for i in range(levels)
            ]
        )
        self.linear = nn.Linear(channels, out_dim)
        self.receptive_field = 1 + 2 * (kernel - 1) * (2**levels - 1)
        self.out_dim = out_dim

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 3:
            raise ValueError(f"TCNBasis expects (B, channels, L), got {tuple(x.shape)}")
        return self.linear(self.tcn(x).transpose(1, 2))


class ReverseTier(nn.Module):
    """The reverse tier ``M``: Lin(n → R) → ReLU → Lin(R → R) → ReLU → Lin(R → R), no final ReLU."""

    def __init__(self, in_dim: int, rev_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, rev_dim), nn.ReLU(),
            nn.Linear(rev_dim, rev_dim), nn.ReLU(),
            nn.Linear(rev_dim, rev_dim),
        )

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)


__all__ = [
    "RFF_FEATURES",
    "RFF_KERNELS",
    "CausalConv1d",
    "ConvBasis",
    "MLPBasis",
    "RandomFourierFeatures",
    "ReverseTier",
    "TCNBasis",
    "TemporalBlock",
    "count_trainable",
]
