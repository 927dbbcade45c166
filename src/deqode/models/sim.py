"""Stable Invariant Models (SIM; Konishi & Kawahara, arXiv 2207.07475): the model and its builds.

SIM is the closed-form infinite-depth limit of a weight-tied network read through the spectra of
the Koopman / Perron–Frobenius operators (the book's reconstruction of the argument; the
official code computes only the limit). What is left after infinitely many layers is a rank-``r``
linear map ``U V`` applied to a feature map of the input alone, so the model is an explicit
feedforward composition (the official code ``uswodce/sim``, ``src/sim/net.py``)::

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

Named builds (:func:`build`, :func:`names`) give the parameter budgets of the official runs
(``uswodce/sim``, ``src/{imgcl,imgreg,cpmem}.sh``; counts derived from the layer shapes and
checked by the tests) and the smoke-profile sizes.

The tiers are in :mod:`deqode.models.sim_tiers`; the two small DEQs the chapter compares SIM
with (:class:`ContractiveTanhDEQ`, :class:`TemporalDEQ`) in :mod:`deqode.models.sim_baselines`.
Both are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from deqode.choices import UnknownChoiceError, check_choice
from deqode.models.nfe import CountsNFE
from deqode.models.sim_baselines import ContractiveTanhDEQ, TemporalDEQ
from deqode.models.sim_tiers import (
    RFF_FEATURES,
    RFF_KERNELS,
    CausalConv1d,
    ConvBasis,
    MLPBasis,
    RandomFourierFeatures,
    ReverseTier,
    TCNBasis,
    TemporalBlock,
    count_trainable,
)
from deqode.solvers import fixed_point  # noqa: F401 (tests check that SIM never calls it)

VARIANTS = ("single-tier", "two-tier", "rff-only")


# --------------------------------------------------------------------------------------------------
# SIM
# --------------------------------------------------------------------------------------------------


class SIM(CountsNFE, nn.Module):
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
_S32 = "official code run_imgcl.py (non-tuned default)"
_REG_SOURCE = "official code run_imgreg.py (non-tuned default)"


def _builds() -> dict[str, SIMBuild]:
    b: list[SIMBuild] = []
    for ds, base, c1, c2, conv1, lin1, conv2, lin2 in (
        ("mnist", _CONV_MNIST, 24, 21, 16_056, 58_850, 12_348, 51_500),
        ("cifar10", _CONV_RGB, 38, 36, 40_470, 121_650, 36_396, 115_250),
        ("svhn", _CONV_RGB, 38, 36, 40_470, 121_650, 36_396, 115_250),
    ):
        bw = 10.0 if ds == "mnist" else 100.0  # non-tuned default bandwidth (``run_imgcl.py``)
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
                 "regression", "single-tier", 396_035, reg, _REG_SOURCE),
        SIMBuild("sim-two-imgreg", sim_mlp,
                 dict(basis_dim=256, first_tier_dim=256, second_tier_dim=256, bandwidth=0.005,
                      rev_dim=256, out_dim=3),
                 "regression", "two-tier", 396_035, reg, _REG_SOURCE),
        SIMBuild("sim-rff-imgreg", sim_rff, dict(tier_dim=256, bandwidth=0.005, rev_dim=256),
                 "regression", "rff-only", 263_683, dict(_REG_HEAD),
                 _REG_SOURCE),
        SIMBuild("sim-single-cpmem", sim_tcn, dict(_CPMEM), "copy-memory", "single-tier",
                 17_294, dict(_CPMEM_PARTS), "official code run_cpmem.py (non-tuned default)"),
        SIMBuild("sim-two-cpmem", sim_tcn,
                 {**_CPMEM, "second_tier_dim": 32, "bandwidth": 500.0}, "copy-memory",
                 "two-tier", 17_294, dict(_CPMEM_PARTS),
                 "official code run_cpmem.py (bandwidth: non-tuned)"),
    ]
    # smoke sizes (a companion choice, widened for digits): digits 8×8, C = 4, n1 = 16, n2 = 32,
    # R = 16 (first planned: n1 = 8, n2 = 16, R = 8, whose rank-4 U V barely learns 10 classes in
    # a smoke run); regression widths 32; copy memory TCN 4 levels × 8 channels, kernel 3,
    # n1 = n2 = 16, R = 16. Counts: whatever these builds have (no paper budget).
    smoke = "smoke sizes [companion choice]"
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
