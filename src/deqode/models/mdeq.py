"""Multiscale DEQ (MDEQ) blocks of the Continuous DEQ paper's code (``construct.jl``).

The paper's CIFAR-10 and ImageNet models are MDEQs (Bai et al. 2020) as built by the Julia code
(``experiments/src/construct.jl``); this module is a PyTorch description of that construction,
which reproduces the paper's parameter counts exactly (163,546 / 10,631,958 / 17,912,456 and
+36,576 / +554,816 for the Skip predictors). Every count is a unit test.

* **Stem**: conv3×3(3 → c₁) [stride 2 if downsample ≥ 1] → BN → ReLU, conv3×3(c₁ → c₁)
  [stride 2 if downsample ≥ 2] → BN → ReLU, further stride-2 conv blocks for downsample ≥ 3, then
  conv1×1 → BN → ReLU unless (downsample = 0 and branches ≤ 2).
* **DEQ function** ``f((z_1..z_B), x)``: a :class:`ResidualBlock` per branch (the stem output x is
  injected into branch 1 only), multiscale fusion ``z_j ← Σ_i M_ij(z_i)`` (:class:`Downsample`
  for i < j, :class:`Upsample` for i > j, identity for i = j), then conv1×1 → ReLU → BN per branch.
* **Head**: an HRNet bottleneck per branch (:class:`Bottleneck`), pairwise stride-2 fusion, a
  1×1 conv to ``final`` channels, global average pooling and a linear classifier.
* **Skip predictor** (Skip DEQ's ``g_φ``): a ResidualBlock (expansion 3) for scale 1 and a
  :class:`Downsample` from c₁ for every other scale, all applied to the stem output.

Conventions of the Julia code kept on purpose (a companion choice): convolutions without bias unless
stated, initialised N(0, 0.01²); linear layers Glorot-uniform with zero bias; BatchNorm with
affine parameters and **batch statistics always** (``track_running_stats=False``) in the stem,
the DEQ function and the predictor — also in evaluation, so predictions depend on the batch —
and running statistics only in the head; weight norm (``dim=0``: one gain per output channel) on
the residual-block and post-fusion convolutions when enabled; variational dropout with one
(N, C, 1, 1) mask per solve; the residual adds the block's conv output ``h``, not its input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrizations

from deqode.models.blocks import VariationalDropout2d

CONV_INIT_STD = 0.01


# --------------------------------------------------------------------------------------------------
# configurations
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MDEQConfig:
    """One multiscale architecture (a ``*.yml`` of the Julia experiments, or a smoke analogue)."""

    name: str
    in_channels: int
    image_size: int
    num_classes: int
    channels: tuple[int, ...]  # c_i per branch
    head_channels: tuple[int, ...]  # h_i per branch (bottleneck width; outputs 4 h_i)
    expansion: int  # residual-block expansion e
    final_channels: int
    downsample_times: int
    weight_norm: bool
    dropout: float
    skip_expansion: int = 3
    source: str = ""

    @property
    def branches(self) -> int:
        return len(self.channels)

    def branch_shapes(self, height: int, width: int) -> list[tuple[int, int, int]]:
        """(C, H, W) of every branch for a stem output of size ``height × width``."""
        shapes = []
        for i, c in enumerate(self.channels):
            shapes.append((c, _downsampled(height, i), _downsampled(width, i)))
        return shapes

    def state_size(self) -> int:
        """Entries of the DEQ state per image (the ODE dimension per sample)."""
        side = self.image_size
        for _ in range(self.downsample_times):
            side = _downsampled(side, 1)
        return sum(c * h * w for c, h, w in self.branch_shapes(side, side))


def _downsampled(size: int, times: int) -> int:
    """Spatial size after ``times`` stride-2 3×3 convolutions with padding 1."""
    for _ in range(times):
        size = (size - 1) // 2 + 1
    return size


MDEQ_CONFIGS: dict[str, MDEQConfig] = {
    "cifar10-small": MDEQConfig(
        "cifar10-small", 3, 32, 10, (24, 24), (8, 16), 5, 200, 0, False, 0.2,
        source="experiments/cifar10/tiny.yml (official code)"),
    "cifar10-large": MDEQConfig(
        "cifar10-large", 3, 32, 10, (32, 64, 128, 256), (14, 28, 56, 112), 4, 1680, 0, True, 0.3,
        source="experiments/cifar10/large.yml (official code)"),
    "imagenet-small": MDEQConfig(
        "imagenet-small", 3, 224, 1000, (32, 64, 128, 256), (24, 48, 96, 192), 5, 2048, 2, True,
        0.0, source="experiments/imagenet/small.yml (official code)"),
    # smoke analogues on sklearn digits (1×8×8) [reconstruction, a companion choice]
    "digits-small": MDEQConfig(
        "digits-small", 1, 8, 10, (4, 8), (2, 4), 2, 16, 0, False, 0.2,
        source="digits-MDEQ, the CIFAR-10 small analogue [reconstruction]"),
    "digits-large": MDEQConfig(
        "digits-large", 1, 8, 10, (4, 8, 16, 32), (2, 4, 8, 16), 2, 32, 0, True, 0.3,
        source="4-branch digits-MDEQ, the CIFAR-10 large analogue [reconstruction]"),
}
# variants of the digits-small analogue, written as what they change
MDEQ_CONFIGS["digits-ds"] = replace(
    MDEQ_CONFIGS["digits-small"], name="digits-ds", downsample_times=1, weight_norm=True,
    dropout=0.0,
    source="digits-MDEQ whose stem downsamples by 2 (8×8 → 4×4; with weight norm and the 1×1 "
    "stem conv of the ImageNet config), the ImageNet analogue [reconstruction]")
# cpu-profile analogues on MNIST-8k (1×28×28): narrowed MDEQs whose stem downsamples to 14×14 so
# that a row trains to its plateau in a minute of one CPU thread [reconstruction]
MDEQ_CONFIGS["mnist8k-small"] = replace(
    MDEQ_CONFIGS["digits-small"], name="mnist8k-small", image_size=28, downsample_times=1,
    source="narrowed 2-branch MDEQ on MNIST-8k (stem 28×28 → 14×14), the CIFAR-10 small "
    "analogue of the cpu profile [reconstruction]")
MDEQ_CONFIGS["mnist8k-large"] = replace(
    MDEQ_CONFIGS["mnist8k-small"], name="mnist8k-large", channels=(8, 16), head_channels=(4, 8),
    final_channels=32, weight_norm=True, dropout=0.3,
    source="narrowed MDEQ on MNIST-8k, twice the channels of mnist8k-small, with the large "
    "model's weight norm and dropout 0.3 (stem 28×28 → 14×14), the CIFAR-10 large analogue of "
    "the cpu profile [reconstruction]")


# --------------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------------


def conv3x3(c_in: int, c_out: int, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=bias)


def conv1x1(c_in: int, c_out: int, bias: bool = False) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 1, bias=bias)


def batch_norm(channels: int, track: bool = False) -> nn.BatchNorm2d:
    """BatchNorm with affine parameters; ``track=False``: batch statistics also in eval mode."""
    return nn.BatchNorm2d(channels, track_running_stats=track)


def init_weights(module: nn.Module) -> None:
    """Julia-code initialisation: convs N(0, 0.01²) with zero bias, linear layers Glorot-uniform
    with zero bias. Call before weight norm is applied (its gain then equals ``‖v‖``)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, CONV_INIT_STD)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def maybe_weight_norm(conv: nn.Conv2d, enabled: bool) -> nn.Module:
    """``weight_norm(conv, dim=0)`` (one gain per output channel: + c_out parameters) if enabled."""
    return parametrizations.weight_norm(conv, dim=0) if enabled else conv


class ResidualBlock(nn.Module):
    """MDEQ residual block of the Julia code (BN instead of the original GroupNorm)::

        h = conv3×3(e·c → c)(ReLU(BN(conv3×3(c → e·c)(z))))
        y = BN(dropout(h) + injection);  out = BN(ReLU(y + h))

    ``injection`` is the stem output for branch 1 and absent (zero) otherwise. Parameters:
    ``18 e c² + 2ec + 4c`` (+ ``ec + c`` gains with weight norm).
    """

    def __init__(self, channels: int, expansion: int, weight_norm: bool, dropout: float) -> None:
        super().__init__()
        inner = expansion * channels
        conv1, conv2 = conv3x3(channels, inner), conv3x3(inner, channels)
        init_weights(conv1)
        init_weights(conv2)
        self.conv1 = maybe_weight_norm(conv1, weight_norm)
        self.bn1 = batch_norm(inner)
        self.conv2 = maybe_weight_norm(conv2, weight_norm)
        self.dropout = VariationalDropout2d(dropout)
        self.bn2 = batch_norm(channels)
        self.bn3 = batch_norm(channels)

    def forward(self, z: Tensor, injection: Tensor | None = None) -> Tensor:
        h = self.conv2(F.relu(self.bn1(self.conv1(z))))
        y = self.dropout(h)
        if injection is not None:
            y = y + injection
        y = F.relu(self.bn2(y) + h)
        return self.bn3(y)


class Downsample(nn.Sequential):
    """Branch i → j (i < j): ``j − i`` stages of conv3×3 stride 2 → BN → ReLU.

    Channels double at every stage when ``c_j = c_i · 2^(j−i)``; otherwise they stay ``c_i`` and
    the last stage maps to ``c_j``. ``track`` chooses running statistics (never in the DEQ)."""

    def __init__(self, c_in: int, c_out: int, stages: int, track: bool = False) -> None:
        if stages < 1:
            raise ValueError(f"a downsampling path needs at least one stage, got {stages}")
        doubling = c_out == c_in * 2**stages
        layers: list[nn.Module] = []
        c = c_in
        for s in range(stages):
            nxt = c * 2 if doubling else (c_out if s == stages - 1 else c_in)
            layers += [conv3x3(c, nxt, stride=2), batch_norm(nxt, track), nn.ReLU()]
            c = nxt
        super().__init__(*layers)
        init_weights(self)


class Upsample(nn.Sequential):
    """Branch i → j (i > j): conv3×3(c_i → c_j) → BN → ReLU → nearest upsampling × 2^(i−j)."""

    def __init__(self, c_in: int, c_out: int, levels: int) -> None:
        super().__init__(conv3x3(c_in, c_out), batch_norm(c_out), nn.ReLU(),
                         nn.Upsample(scale_factor=2**levels, mode="nearest"))
        init_weights(self)


class PostFuse(nn.Sequential):
    """conv1×1(c → c) [weight norm if enabled] → ReLU → BN."""

    def __init__(self, channels: int, weight_norm: bool) -> None:
        conv = conv1x1(channels, channels)
        init_weights(conv)
        super().__init__(maybe_weight_norm(conv, weight_norm), nn.ReLU(), batch_norm(channels))


class MultiscaleFunction(nn.Module):
    """The MDEQ's ``f((z_1..z_B), x)``: residual block per branch, fusion, post-fusion.

    Works on the flat state ``u`` of shape (N, Σ c_i H_i W_i) (branches flattened and
    concatenated, the ODE / root-finding vector of the paper's code); :meth:`split` and
    :meth:`merge` convert. ``prepare(x)`` stores the branch shapes for this batch and samples the
    dropout masks (one per solve).
    """

    def __init__(self, cfg: MDEQConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.channels
        self.blocks = nn.ModuleList(
            ResidualBlock(ci, cfg.expansion, cfg.weight_norm, cfg.dropout) for ci in c)
        self.fuse = nn.ModuleList()
        for j in range(cfg.branches):
            row = nn.ModuleList()
            for i in range(cfg.branches):
                if i == j:
                    row.append(nn.Identity())
                elif i < j:
                    row.append(Downsample(c[i], c[j], j - i))
                else:
                    row.append(Upsample(c[i], c[j], i - j))
            self.fuse.append(row)
        self.post = nn.ModuleList(PostFuse(ci, cfg.weight_norm) for ci in c)
        self.shapes: list[tuple[int, int, int]] = []

    def prepare(self, x: Tensor) -> None:
        """Start a solve for the injected stem output ``x`` (N, c₁, H, W)."""
        self.shapes = self.cfg.branch_shapes(x.shape[-2], x.shape[-1])
        for block, shape in zip(self.blocks, self.shapes, strict=True):
            block.dropout.resample(x.new_empty(x.shape[0], *shape))

    def state_size(self) -> int:
        return sum(math.prod(s) for s in self.shapes)

    def zero_state(self, x: Tensor) -> Tensor:
        return x.new_zeros(x.shape[0], self.state_size())

    def split(self, u: Tensor) -> list[Tensor]:
        """Flat state (N, S) → branch tensors [(N, c_i, H_i, W_i)]."""
        sizes = [math.prod(s) for s in self.shapes]
        return [p.reshape(u.shape[0], *s) for p, s in zip(u.split(sizes, 1), self.shapes,
                                                          strict=True)]

    @staticmethod
    def merge(parts: Sequence[Tensor]) -> Tensor:
        return torch.cat([p.flatten(1) for p in parts], dim=1)

    def forward(self, u: Tensor, x: Tensor) -> Tensor:
        zs = self.split(u)
        outs = [blk(z, x if i == 0 else None) for i, (blk, z) in enumerate(zip(self.blocks, zs,
                                                                                strict=True))]
        fused = []
        for j, row in enumerate(self.fuse):
            total = outs[j]
            for i, path in enumerate(row):
                if i != j:
                    total = total + path(outs[i])
            fused.append(self.post[j](total))
        return self.merge(fused)


class MDEQStem(nn.Sequential):
    """The stem of §3.2 (BN with batch statistics)."""

    def __init__(self, cfg: MDEQConfig) -> None:
        c = cfg.channels[0]
        ds = cfg.downsample_times
        layers: list[nn.Module] = [
            conv3x3(cfg.in_channels, c, stride=2 if ds >= 1 else 1), batch_norm(c), nn.ReLU(),
            conv3x3(c, c, stride=2 if ds >= 2 else 1), batch_norm(c), nn.ReLU(),
        ]
        for _ in range(3, ds + 1):
            layers += [conv3x3(c, c, stride=2), batch_norm(c), nn.ReLU()]
        if not (ds == 0 and cfg.branches <= 2):
            layers += [conv1x1(c, c), batch_norm(c), nn.ReLU()]
        super().__init__(*layers)
        init_weights(self)


class Bottleneck(nn.Module):
    """HRNet bottleneck c → 4h of the head (BN with running statistics)::

        main = BN(conv1×1(h → 4h)(ReLU(BN(conv3×3(h → h)(ReLU(BN(conv1×1(c → h))))))))
        out = ReLU(main + rescale),  rescale = BN(conv1×1(c → 4h)) if c ≠ 4h else identity
    """

    def __init__(self, c_in: int, width: int) -> None:
        super().__init__()
        out = 4 * width
        self.main = nn.Sequential(
            conv1x1(c_in, width), batch_norm(width, True), nn.ReLU(),
            conv3x3(width, width), batch_norm(width, True), nn.ReLU(),
            conv1x1(width, out), batch_norm(out, True),
        )
        self.rescale = (nn.Sequential(conv1x1(c_in, out), batch_norm(out, True)) if c_in != out
                        else nn.Identity())
        init_weights(self)

    def forward(self, z: Tensor) -> Tensor:
        return F.relu(self.main(z) + self.rescale(z))


class MDEQHead(nn.Module):
    """Classification head of §3.2 on the branch outputs of ``z* = f(u*, x)``."""

    def __init__(self, cfg: MDEQConfig) -> None:
        super().__init__()
        widths = [4 * h for h in cfg.head_channels]
        self.bottlenecks = nn.ModuleList(
            Bottleneck(c, h) for c, h in zip(cfg.channels, cfg.head_channels, strict=True))
        self.downs = nn.ModuleList(
            nn.Sequential(conv3x3(widths[i], widths[i + 1], stride=2, bias=True),
                          batch_norm(widths[i + 1], True), nn.ReLU())
            for i in range(cfg.branches - 1))
        self.final = nn.Sequential(conv1x1(widths[-1], cfg.final_channels, bias=True),
                                   batch_norm(cfg.final_channels, True), nn.ReLU())
        self.classifier = nn.Linear(cfg.final_channels, cfg.num_classes)
        init_weights(self)

    def forward(self, branches: Sequence[Tensor]) -> Tensor:
        ys = [b(z) for b, z in zip(self.bottlenecks, branches, strict=True)]
        y = ys[0]
        for i, down in enumerate(self.downs):
            y = ys[i + 1] + down(y)
        y = self.final(y)
        return self.classifier(y.mean(dim=(2, 3)))


class SkipPredictor(nn.Module):
    """Skip DEQ's explicit predictor ``g_φ(x)`` of the initial state (Pal et al. 2022, Skip DEQ).

    Scale 1: a :class:`ResidualBlock` (expansion ``cfg.skip_expansion``, weight norm as the
    model, no injection, no dropout [the dropout rate of the predictor is not stated]); scale
    i+1: a :class:`Downsample` from c₁ to c_{i+1} with i stages. All applied to the stem output.
    """

    def __init__(self, cfg: MDEQConfig) -> None:
        super().__init__()
        c = cfg.channels
        self.block = ResidualBlock(c[0], cfg.skip_expansion, cfg.weight_norm, 0.0)
        self.downs = nn.ModuleList(Downsample(c[0], c[i], i) for i in range(1, cfg.branches))

    def forward(self, x: Tensor) -> Tensor:
        parts = [self.block(x)] + [down(x) for down in self.downs]
        return MultiscaleFunction.merge(parts)


# --------------------------------------------------------------------------------------------------
# fully connected analogue (MNIST-FC, Table 1)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FCConfig:
    """The MNIST-FC model of the v1 code (``mnist_fc.jl``) or its digits analogue."""

    name: str
    in_features: int
    width: int
    num_classes: int
    input_shape: tuple[int, ...]
    source: str = ""


FC_CONFIGS: dict[str, FCConfig] = {
    "mnist-fc": FCConfig("mnist-fc", 784, 128, 10, (1, 28, 28),
                         "experiments/mnist/mnist_fc.jl at 067b1fc"),
    "digits-fc": FCConfig("digits-fc", 64, 32, 10, (1, 8, 8),
                          "digits-FC smoke analogue [reconstruction]"),
}


class FCStem(nn.Sequential):
    """Flatten → Dense(in → w) → ReLU."""

    def __init__(self, cfg: FCConfig) -> None:
        super().__init__(nn.Flatten(), nn.Linear(cfg.in_features, cfg.width), nn.ReLU())
        init_weights(self)


class FCFunction(nn.Module):
    """``f(z, x) = ReLU(W₁ z) + ReLU(W₂ x)`` with bias-free W₁, W₂ ∈ ℝ^{w×w} (2w² parameters).

    Same interface as :class:`MultiscaleFunction` (flat state = z itself)."""

    def __init__(self, cfg: FCConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.state_weight = nn.Linear(cfg.width, cfg.width, bias=False)
        self.input_weight = nn.Linear(cfg.width, cfg.width, bias=False)
        init_weights(self)

    def prepare(self, x: Tensor) -> None:
        """Nothing to prepare (no dropout)."""

    def zero_state(self, x: Tensor) -> Tensor:
        return torch.zeros_like(x)

    def split(self, u: Tensor) -> Tensor:
        return u

    def forward(self, u: Tensor, x: Tensor) -> Tensor:
        return F.relu(self.state_weight(u)) + F.relu(self.input_weight(x))


class FCHead(nn.Linear):
    """Dense(w → classes)."""

    def __init__(self, cfg: FCConfig) -> None:
        super().__init__(cfg.width, cfg.num_classes)
        init_weights(self)


class FCPredictor(nn.Sequential):
    """Skip DEQ's predictor for the FC model: Dense(w → w) → ReLU (w² + w parameters)."""

    def __init__(self, cfg: FCConfig) -> None:
        super().__init__(nn.Linear(cfg.width, cfg.width), nn.ReLU())
        init_weights(self)


__all__ = [
    "FC_CONFIGS",
    "MDEQ_CONFIGS",
    "Bottleneck",
    "Downsample",
    "FCConfig",
    "FCFunction",
    "FCHead",
    "FCPredictor",
    "FCStem",
    "MDEQConfig",
    "MDEQHead",
    "MDEQStem",
    "MultiscaleFunction",
    "ResidualBlock",
    "SkipPredictor",
    "Upsample",
]
