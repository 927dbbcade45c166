"""Stable Invariant Models (SIM; Konishi & Kawahara, arXiv 2207.07475) and the small DEQs they meet.

SIM is the closed-form infinite-depth limit of a weight-tied network read through the spectra of
the Koopman / Perron–Frobenius operators (spec ``sim.md`` §2.2, a reconstruction). What is left
after infinitely many layers is a rank-``r`` linear map ``U V`` applied to a feature map of the
input alone, so the model is an explicit feedforward composition (spec §2.4, the official code
``uswodce/sim:src/sim/net.py``)::

    h = Φ_θ(x)                          first tier: learned basis (CNN / MLP / TCN), width n1
    h = ξ_σ(h)          [two-tier]      second tier: frozen random Fourier features, width n2
    h = U V h                           V: Lin(n → n//2, no bias), U: Lin(n//2 → n, no bias)
    h = M(h)                            reverse tier: Lin(n→R) ReLU Lin(R→R) ReLU Lin(R→R)
    y = W_out h                         Lin(R → out)

single-tier ``y = W_out M(U V Φ_θ(x))``; two-tier ``y = W_out M(U V ξ_σ(Φ_θ(x)))``; RFF-only
``y = W_out M(U V ξ_σ(x))``. There is no solver, no eigenvalue parameter and no constraint on
``U V``: a forward pass is one sweep through the layers (``nfe_forward`` is always 0).

The random Fourier features are buffers (``requires_grad=False``): they are drawn once at
construction from the global torch RNG (or a given generator), stored in the state dict and never
counted as parameters. Deviation from the official code: the code keeps two identical copies of
``Ω`` (one per cos/sin half); we keep one, so a state dict of ours holds ``Ω`` once.

Named builds (:func:`build`, :func:`names`) give the paper's parameter budgets (spec §3.2–§3.4,
counts [derived] from the layer shapes and checked by the tests) and the smoke-profile sizes.

The module also holds the two small DEQs of the SIM chapter that are not monotone operators:
:class:`ContractiveTanhDEQ` (the Koopman demo K1/K2 of spec §2.6) and :class:`TemporalDEQ`
(the copy-memory baseline, a DEQ over a causal convolution; the paper's baseline is unknown,
spec §3.5). Fixed-point convention: ``z* = f(z*)``, residual ``g(z) = z − f(z)``, relative residual
``||f(z) − z|| / (||f(z)|| + eps)`` per sample, batch value = max over samples.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from deqode.choices import UnknownChoiceError, check_choice
from deqode.errors import SolverFailure
from deqode.solvers import SolverInfo, fixed_point, implicit_fixed_point

RFF_FEATURES = ("cossin", "cosbias")
RFF_KERNELS = ("gauss", "laplace")
VARIANTS = ("single-tier", "two-tier", "rff-only")


def count_trainable(module: nn.Module) -> int:
    """Number of trainable scalars (``requires_grad``), as the official ``count_parameters``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


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
    hook (spec §5 item 5); the 1×1 residual convolution gets ``N(0, 0.01)`` as there.
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


# --------------------------------------------------------------------------------------------------
# SIM
# --------------------------------------------------------------------------------------------------


class SIM(nn.Module):
    """Stable Invariant Model: ``y = W_out M(U V T(Φ(x)))`` with ``T`` = identity or frozen RFF.

    Args:
        basis: the first tier ``Φ`` (any module ending in width ``basis_dim`` on the last axis),
            or ``None`` for the RFF-only variant, whose ``second_tier`` then acts on the raw input.
        basis_dim: width of ``Φ``'s output (the raw input width for RFF-only).
        out_dim, rev_dim: output width and reverse-tier width ``R``.
        second_tier: frozen :class:`RandomFourierFeatures` (two-tier and RFF-only) or ``None``.

    ``n`` = width fed to ``U V`` (``basis_dim``, or the RFF width), ``r = n // 2`` (hard-coded in
    the official code). Every linear layer acts on the last axis, so sequence bases
    (``(B, L, n1)``) give per-step outputs ``(B, L, out)``. ``features(x)`` is the dictionary at
    the initial state (``T(Φ(x))``), ``koopman_matrix()`` the learned ``U V`` (n × n, rank ≤ r).
    """

    nfe_forward = 0  # no solver: a forward pass evaluates no implicit function
    nfe_backward = 0

    def __init__(
        self,
        basis: nn.Module | None,
        basis_dim: int,
        out_dim: int,
        rev_dim: int,
        second_tier: RandomFourierFeatures | None = None,
    ) -> None:
        super().__init__()
        if basis is None and second_tier is None:
            raise ValueError("SIM needs a learned basis, a second tier, or both")
        if second_tier is not None and second_tier.in_dim != basis_dim:
            raise ValueError(
                f"second tier expects width {second_tier.in_dim}, basis gives {basis_dim}"
            )
        self.basis = basis
        self.second_tier = second_tier
        self.tier_dim = second_tier.out_dim if second_tier is not None else basis_dim
        self.rank = self.tier_dim // 2
        self.v = nn.Linear(self.tier_dim, self.rank, bias=False)
        self.u = nn.Linear(self.rank, self.tier_dim, bias=False)
        self.reverse_tier = ReverseTier(self.tier_dim, rev_dim)
        self.w_out = nn.Linear(rev_dim, out_dim)

    @property
    def variant(self) -> str:
        """``single-tier``, ``two-tier`` or ``rff-only``."""
        if self.second_tier is None:
            return "single-tier"
        return "rff-only" if self.basis is None else "two-tier"

    def features(self, x: Tensor) -> Tensor:
        """The tier fed to ``U V``: ``Φ(x)``, ``ξ_σ(Φ(x))`` or ``ξ_σ(x)``."""
        h = x if self.basis is None else self.basis(x)
        return h if self.second_tier is None else self.second_tier(h)

    def head(self, h: Tensor) -> Tensor:
        """``W_out M(U V h)`` for a tier ``h``."""
        return self.w_out(self.reverse_tier(self.u(self.v(h))))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def koopman_matrix(self) -> Tensor:
        """The learned ``U V`` (n × n), detached."""
        return (self.u.weight @ self.v.weight).detach()

    def reset_nfe(self) -> None:
        """Nothing to reset (kept for the NFE-counting protocol of deqode.metrics)."""

    def parameter_breakdown(self) -> dict[str, int]:
        """Trainable parameters per component; the bases' sub-modules are listed separately."""
        parts: dict[str, int] = {}
        if isinstance(self.basis, ConvBasis):
            parts["convs + BN"] = count_trainable(self.basis.convs)
            parts["basis linear"] = count_trainable(self.basis.linear)
        elif isinstance(self.basis, TCNBasis):
            parts["TCN"] = count_trainable(self.basis.tcn)
            parts["basis linear"] = count_trainable(self.basis.linear)
        elif self.basis is not None:
            parts["basis"] = count_trainable(self.basis)
        parts["U,V"] = count_trainable(self.u) + count_trainable(self.v)
        parts["reverse tier"] = count_trainable(self.reverse_tier)
        parts["W_out"] = count_trainable(self.w_out)
        return parts


def _init_small(model: SIM) -> SIM:
    """The TCN models' head initialisation: weights ``N(0, 0.01)``, biases PyTorch default."""
    linears = [model.v, model.u, model.w_out, *model.reverse_tier.net]
    if isinstance(model.basis, TCNBasis):
        linears.append(model.basis.linear)
    for layer in linears:
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0.0, 0.01)
    return model


def sim_conv(
    in_channels: int,
    image_size: int,
    channels: int,
    first_tier_dim: int,
    rev_dim: int,
    num_classes: int = 10,
    second_tier_dim: int | None = None,
    bandwidth: float = 1.0,
) -> SIM:
    """Image classifier (``SingleTierConvNet`` / ``TwoTierConvNet``): conv basis [+ RFF]."""
    basis = ConvBasis(in_channels, image_size, channels, first_tier_dim)
    rff = None
    if second_tier_dim is not None:
        rff = RandomFourierFeatures(first_tier_dim, second_tier_dim, bandwidth)
    return SIM(basis, first_tier_dim, num_classes, rev_dim, rff)


def sim_mlp(
    basis_dim: int,
    first_tier_dim: int,
    rev_dim: int,
    out_dim: int = 3,
    in_dim: int = 2,
    second_tier_dim: int | None = None,
    bandwidth: float = 1.0,
) -> SIM:
    """Image regressor (``SingleTierFcNet`` / ``TwoTierFcNet``): MLP basis on coordinates [+ RFF].

    The single-tier model's ``tier_dim`` is ``first_tier_dim``."""
    basis = MLPBasis(in_dim, basis_dim, first_tier_dim)
    rff = None
    if second_tier_dim is not None:
        rff = RandomFourierFeatures(first_tier_dim, second_tier_dim, bandwidth)
    return SIM(basis, first_tier_dim, out_dim, rev_dim, rff)


def sim_rff(
    tier_dim: int, bandwidth: float, rev_dim: int, out_dim: int = 3, in_dim: int = 2
) -> SIM:
    """RFF-only SIM (``SingleTierFourierNet``): frozen RFF of the raw input, no learned basis."""
    return SIM(None, in_dim, out_dim, rev_dim, RandomFourierFeatures(in_dim, tier_dim, bandwidth))


def sim_tcn(
    first_tier_dim: int,
    rev_dim: int,
    channels: int = 10,
    levels: int = 8,
    kernel: int = 8,
    num_classes: int = 10,
    in_channels: int = 1,
    second_tier_dim: int | None = None,
    bandwidth: float = 1.0,
    dropout: float = 0.0,
) -> SIM:
    """Copy-memory model (``SingleTierTempConvNet`` / ``TwoTierTempConvNet``): TCN basis [+ RFF].

    Output ``(B, L, num_classes)`` per time step (the official code flattens it to
    ``(B·L, classes)``; the loss does that here). Head weights ``N(0, 0.01)`` as in the code."""
    basis = TCNBasis(in_channels, channels, levels, kernel, first_tier_dim, dropout)
    rff = None
    if second_tier_dim is not None:
        rff = RandomFourierFeatures(first_tier_dim, second_tier_dim, bandwidth)
    return _init_small(SIM(basis, first_tier_dim, num_classes, rev_dim, rff))


# --------------------------------------------------------------------------------------------------
# named builds
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SIMBuild:
    """One named build: constructor, arguments, the budget it must meet and where it comes from."""

    name: str
    factory: Callable[..., SIM]
    kwargs: dict[str, Any]
    task: str
    variant: str
    params: int | None = None
    breakdown: dict[str, int] = field(default_factory=dict)
    source: str = ""


_CONV_MNIST = dict(in_channels=1, image_size=28, num_classes=10, rev_dim=32, first_tier_dim=50)
_CONV_RGB = dict(in_channels=3, image_size=32, num_classes=10, rev_dim=32, first_tier_dim=50)
_HEAD_1T = {"U,V": 2_500, "reverse tier": 3_744, "W_out": 330}
_HEAD_2T = {"U,V": 10_816, "reverse tier": 5_472, "W_out": 330}
_REG_HEAD = {"U,V": 65_536, "reverse tier": 197_376, "W_out": 771}
_CPMEM = dict(first_tier_dim=32, rev_dim=32, channels=10, levels=8, kernel=8)
_CPMEM_PARTS = {"TCN": 12_420, "basis linear": 352, "U,V": 1_024, "reverse tier": 3_168,
                "W_out": 330}
_S32 = "sim.md §3.2"


def _builds() -> dict[str, SIMBuild]:
    b: list[SIMBuild] = []
    for ds, base, c1, c2, conv1, lin1, conv2, lin2 in (
        ("mnist", _CONV_MNIST, 24, 21, 16_056, 58_850, 12_348, 51_500),
        ("cifar10", _CONV_RGB, 38, 36, 40_470, 121_650, 36_396, 115_250),
        ("svhn", _CONV_RGB, 38, 36, 40_470, 121_650, 36_396, 115_250),
    ):
        bw = 10.0 if ds == "mnist" else 100.0  # non-tuned default bandwidth (spec §3.2)
        parts1 = {"convs + BN": conv1, "basis linear": lin1, **_HEAD_1T}
        parts2 = {"convs + BN": conv2, "basis linear": lin2, **_HEAD_2T}
        b.append(SIMBuild(f"sim-single-{ds}", sim_conv, {**base, "channels": c1},
                          "classification", "single-tier", sum(parts1.values()), parts1, _S32))
        b.append(SIMBuild(f"sim-two-{ds}", sim_conv,
                          {**base, "channels": c2, "second_tier_dim": 104, "bandwidth": bw},
                          "classification", "two-tier", sum(parts2.values()), parts2, _S32))
    reg = {"basis": 132_352, **_REG_HEAD}
    b += [
        SIMBuild("sim-single-imgreg", sim_mlp,
                 dict(basis_dim=256, first_tier_dim=256, rev_dim=256, out_dim=3),
                 "regression", "single-tier", 396_035, reg, "sim.md §3.3 (non-tuned default)"),
        SIMBuild("sim-two-imgreg", sim_mlp,
                 dict(basis_dim=256, first_tier_dim=256, second_tier_dim=256, bandwidth=0.005,
                      rev_dim=256, out_dim=3),
                 "regression", "two-tier", 396_035, reg, "sim.md §3.3 (non-tuned default)"),
        SIMBuild("sim-rff-imgreg", sim_rff, dict(tier_dim=256, bandwidth=0.005, rev_dim=256),
                 "regression", "rff-only", 263_683, dict(_REG_HEAD),
                 "sim.md §3.3 (non-tuned default)"),
        SIMBuild("sim-single-cpmem", sim_tcn, dict(_CPMEM), "copy-memory", "single-tier",
                 17_294, dict(_CPMEM_PARTS), "sim.md §3.4"),
        SIMBuild("sim-two-cpmem", sim_tcn,
                 {**_CPMEM, "second_tier_dim": 32, "bandwidth": 500.0}, "copy-memory",
                 "two-tier", 17_294, dict(_CPMEM_PARTS), "sim.md §3.4 (bandwidth: non-tuned)"),
    ]
    # smoke sizes (spec §6, widened for digits): digits 8×8, C = 4, n1 = 16, n2 = 32, R = 16
    # (spec: n1 = 8, n2 = 16, R = 8, whose rank-4 U V barely learns 10 classes in a smoke run);
    # regression widths 32; copy memory TCN 4 levels × 8 channels, kernel 3, n1 = n2 = 16,
    # R = 16. Counts: whatever these builds have (no paper budget).
    smoke = "sim.md §6 smoke sizes [companion choice]"
    digits = dict(in_channels=1, image_size=8, channels=4, first_tier_dim=16, rev_dim=16)
    mnist8k = dict(in_channels=1, image_size=28, channels=4, first_tier_dim=32, rev_dim=32)
    cpu = "cpu profile sizes [companion choice]"
    b += [
        SIMBuild("sim-single-digits", sim_conv, dict(digits), "classification", "single-tier",
                 source=smoke),
        SIMBuild("sim-two-digits", sim_conv, {**digits, "second_tier_dim": 32, "bandwidth": 3.0},
                 "classification", "two-tier", source=smoke),
        # cpu profile (MNIST-8k, 28×28): C = 4, n1 = 32, n2 = 64, R = 32 [companion choice]
        SIMBuild("sim-single-mnist8k-cpu", sim_conv, dict(mnist8k), "classification",
                 "single-tier", source=cpu),
        SIMBuild("sim-two-mnist8k-cpu", sim_conv,
                 {**mnist8k, "second_tier_dim": 64, "bandwidth": 3.0}, "classification",
                 "two-tier", source=cpu),
        SIMBuild("sim-single-imgreg-smoke", sim_mlp,
                 dict(basis_dim=32, first_tier_dim=32, rev_dim=32), "regression", "single-tier",
                 source=smoke),
        SIMBuild("sim-two-imgreg-smoke", sim_mlp,
                 dict(basis_dim=32, first_tier_dim=32, second_tier_dim=32, bandwidth=0.1,
                      rev_dim=32), "regression", "two-tier", source=smoke),
        SIMBuild("sim-rff-imgreg-smoke", sim_rff, dict(tier_dim=32, bandwidth=0.1, rev_dim=32),
                 "regression", "rff-only", source=smoke),
        SIMBuild("sim-single-cpmem-smoke", sim_tcn,
                 dict(first_tier_dim=16, rev_dim=16, channels=8, levels=4, kernel=3),
                 "copy-memory", "single-tier", source=smoke),
        SIMBuild("sim-two-cpmem-smoke", sim_tcn,
                 dict(first_tier_dim=16, second_tier_dim=16, bandwidth=10.0, rev_dim=16,
                      channels=8, levels=4, kernel=3),
                 "copy-memory", "two-tier", source=smoke),
    ]
    return {x.name: x for x in b}


BUILDS: dict[str, SIMBuild] = _builds()


def names() -> list[str]:
    """Every named SIM build, sorted (``sim-<variant>-<task or dataset>[-smoke]``)."""
    return sorted(BUILDS)


def build(name: str, **overrides: Any) -> SIM:
    """Instantiate a named build; ``overrides`` replace its constructor arguments.

    ``build("sim-two-mnist", bandwidth=3.0)``. Unknown names or arguments raise
    :class:`~deqode.choices.UnknownChoiceError` listing the valid ones.
    """
    check_choice("SIM build", name, names())
    spec = BUILDS[name]
    import inspect

    valid = [p for p in inspect.signature(spec.factory).parameters]
    for key in overrides:
        if key not in valid:
            raise UnknownChoiceError(
                f"unknown argument {key!r} for SIM build {name!r}; valid choices: "
                + ", ".join(repr(v) for v in valid)
            )
    return spec.factory(**{**spec.kwargs, **overrides})


# --------------------------------------------------------------------------------------------------
# layer listing (architecture figure F2)
# --------------------------------------------------------------------------------------------------


def describe_layers(model: SIM, example: Tensor) -> list[dict[str, Any]]:
    """The SIM's stages with output shapes and trainable / frozen counts, from one forward pass.

    Rows: ``basis`` (if any), ``second tier`` (if any), ``V``, ``U``, ``reverse tier``,
    ``W_out``; each ``{"stage", "module", "shape", "trainable", "frozen"}`` (shape without batch).
    """
    stages: list[tuple[str, nn.Module]] = []
    if model.basis is not None:
        stages.append(("basis Φ", model.basis))
    if model.second_tier is not None:
        stages.append(("second tier ξ_σ", model.second_tier))
    stages += [("V", model.v), ("U", model.u), ("reverse tier M", model.reverse_tier),
               ("W_out", model.w_out)]
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        module.register_forward_hook(
            lambda _m, _i, out, key=key: shapes.__setitem__(key, tuple(out.shape[1:]))
        )
        for key, module in stages
    ]
    try:
        with torch.no_grad():
            was_training = model.training
            model.eval()
            model(example)
            model.train(was_training)
    finally:
        for hook in hooks:
            hook.remove()
    return [
        {
            "stage": key,
            "module": type(module).__name__,
            "shape": shapes[key],
            "trainable": count_trainable(module),
            "frozen": sum(b.numel() for b in module.buffers() if b.is_floating_point())
            if isinstance(module, RandomFourierFeatures) else 0,
        }
        for key, module in stages
    ]


# --------------------------------------------------------------------------------------------------
# small DEQs of the chapter (Koopman demo, copy-memory baseline)
# --------------------------------------------------------------------------------------------------


def _check_solve(info: SolverInfo, z: Tensor, what: str) -> None:
    if info.diverged or not torch.isfinite(z).all():
        raise SolverFailure(f"{what}: the {info.method} solve diverged after {info.iterations} "
                            f"iterations (last residuals {info.residuals[-3:]})")


class ContractiveTanhDEQ(nn.Module):
    """``z* = tanh(W z* + U x + b)``, ``z ∈ R^d``, logits ``= W_out z*`` (spec §2.6, K1).

    With ``max_norm`` set, the layer uses ``W = W̃ · max_norm / max(max_norm, ||W̃||₂)`` (exact
    spectral norm), so ``||W||₂ ≤ max_norm`` and ``J(x) = diag(1 − z*∘z*) W`` has
    ``ρ(J) ≤ ||J||₂ ≤ max_norm`` for every input; ``max_norm=None`` leaves ``W`` free.
    Forward: :func:`deqode.solvers.fixed_point` (``solver``, ``tol`` on the relative residual,
    ``max_iter``) from ``z = 0``; backward: the implicit function theorem
    (:func:`deqode.solvers.implicit_fixed_point`, GMRES to ``backward_tol``). Inputs are
    flattened per sample. :meth:`solve` and :meth:`jacobian` (analysis) solve to 1e-12.
    """

    def __init__(
        self,
        in_dim: int,
        hidden: int = 16,
        num_classes: int = 10,
        max_norm: float | None = 0.9,
        solver: str = "anderson",
        tol: float = 1e-4,
        max_iter: int = 100,
        backward_tol: float = 1e-6,
    ) -> None:
        super().__init__()
        self.inject = nn.Linear(in_dim, hidden)
        self.weight = nn.Parameter(torch.randn(hidden, hidden) / math.sqrt(hidden))
        self.readout = nn.Linear(hidden, num_classes)
        self.max_norm, self.solver, self.tol, self.max_iter = max_norm, solver, tol, max_iter
        self.backward_tol = backward_tol
        self.last_solver_info: SolverInfo | None = None
        self.nfe_forward = 0

    def recurrent_weight(self) -> Tensor:
        """``W`` after the optional spectral-norm rescaling."""
        if self.max_norm is None:
            return self.weight
        norm = torch.linalg.matrix_norm(self.weight, ord=2)
        return self.weight * (self.max_norm / torch.clamp(norm, min=self.max_norm))

    def cell(self, x: Tensor) -> Callable[[Tensor], Tensor]:
        """The map ``z ↦ f(z, x)`` for a batch ``x``."""
        injection, w = self.inject(x.flatten(1)), self.recurrent_weight()
        return lambda z: torch.tanh(z @ w.T + injection)

    def solve(self, x: Tensor, tol: float = 1e-12, max_iter: int = 500) -> Tensor:
        """``z*(x)`` to ``tol`` without autograd (analysis)."""
        with torch.no_grad():
            f = self.cell(x)
            z0 = x.new_zeros(x.shape[0], self.weight.shape[0])
            z_star, info = fixed_point(f, z0, self.solver, tol, max_iter)
            _check_solve(info, z_star, "ContractiveTanhDEQ")
        return z_star

    def forward(self, x: Tensor) -> Tensor:
        f = self.cell(x)
        z0 = x.new_zeros(x.shape[0], self.weight.shape[0])
        z_star, info = fixed_point(f, z0, self.solver, self.tol, self.max_iter)
        _check_solve(info, z_star, "ContractiveTanhDEQ")
        self.last_solver_info, self.nfe_forward = info, info.nfe
        z = implicit_fixed_point(f, z_star, backward="ift", solver="gmres", tol=self.backward_tol)
        return self.readout(z)

    def jacobian(self, x: Tensor) -> Tensor:
        """``∂f/∂z`` at ``z*(x)``: ``diag(1 − z*²) W``, shape ``(B, d, d)``, detached."""
        z_star = self.solve(x)
        with torch.no_grad():
            return (1 - z_star**2)[:, :, None] * self.recurrent_weight()[None]

    def reset_nfe(self) -> None:
        self.nfe_forward = 0


class TemporalDEQ(nn.Module):
    """Copy-memory DEQ baseline: a TCN basis as input injection, an implicit causal convolution.

    ``h = TCN(x)`` (channels ``C``, the SIM basis without its linear layer), then per sequence

        z* = tanh(W ⋆ z* + V h + b),     logits = Lin(z*) per time step,

    with ``W ⋆`` a causal 1-D convolution (kernel ``k``, dilation 1) whose weight is rescaled so
    that ``Σ_taps ||W_tap||_F ≤ max_norm`` (the sum over the kernel taps of the Frobenius norms
    of the ``hidden × hidden`` tap matrices bounds the operator 2-norm of the convolution, so the
    map is a contraction). Forward: ``solver`` (Anderson by default) with
    relative ``tol`` and ``max_iter``; backward: IFT with GMRES. This is a [companion choice]: the
    paper's copy-memory DEQ is not transcribed (spec §3.5).
    """

    def __init__(
        self,
        hidden: int = 16,
        channels: int = 8,
        levels: int = 4,
        kernel: int = 3,
        num_classes: int = 10,
        in_channels: int = 1,
        cell_kernel: int = 3,
        max_norm: float = 0.9,
        solver: str = "anderson",
        tol: float = 1e-3,
        max_iter: int = 30,
    ) -> None:
        super().__init__()
        self.tcn = nn.Sequential(
            *[TemporalBlock(in_channels if i == 0 else channels, channels, kernel, 2**i, 0.0)
              for i in range(levels)]
        )
        self.inject = nn.Conv1d(channels, hidden, 1)
        self.cell_weight = nn.Parameter(torch.randn(hidden, hidden, cell_kernel) * 0.1)
        self.readout = nn.Linear(hidden, num_classes)
        self.max_norm, self.solver, self.tol, self.max_iter = max_norm, solver, tol, max_iter
        self.cell_kernel = cell_kernel
        self.last_solver_info: SolverInfo | None = None
        self.nfe_forward = 0
        self._stats: dict[str, Any] = {}

    def _weight(self) -> Tensor:
        # ||conv||_2 <= sum_k ||W_k||_2 <= sum_k ||W_k||_F; rescale that bound to max_norm
        bound = self.cell_weight.pow(2).sum(dim=(0, 1)).sqrt().sum()
        return self.cell_weight * (self.max_norm / torch.clamp(bound, min=self.max_norm))

    def forward(self, x: Tensor) -> Tensor:
        injection = self.inject(self.tcn(x))  # (B, hidden, L)
        w, pad = self._weight(), self.cell_kernel - 1

        def f(z: Tensor) -> Tensor:
            return torch.tanh(F.conv1d(F.pad(z, (pad, 0)), w) + injection)

        z_star, info = fixed_point(f, torch.zeros_like(injection), self.solver, self.tol,
                                   self.max_iter)
        _check_solve(info, z_star, "TemporalDEQ")
        self.last_solver_info, self.nfe_forward = info, info.nfe
        self._stats = {}
        z = implicit_fixed_point(f, z_star, backward="ift", solver="gmres", tol=1e-6,
                                 max_iter=30, stats=self._stats)
        return self.readout(z.transpose(1, 2))

    @property
    def nfe_backward(self) -> int:
        return int(self._stats.get("backward_nfe", 0))

    def reset_nfe(self) -> None:
        self.nfe_forward, self._stats = 0, {}


__all__ = [
    "BUILDS",
    "RFF_FEATURES",
    "RFF_KERNELS",
    "SIM",
    "VARIANTS",
    "CausalConv1d",
    "ContractiveTanhDEQ",
    "ConvBasis",
    "MLPBasis",
    "RandomFourierFeatures",
    "ReverseTier",
    "SIMBuild",
    "TCNBasis",
    "TemporalBlock",
    "TemporalDEQ",
    "build",
    "count_trainable",
    "describe_layers",
    "names",
    "sim_conv",
    "sim_mlp",
    "sim_rff",
    "sim_tcn",
]
