"""Chen et al.'s MNIST ODE-Net and its ResNet baseline (torchdiffeq ``examples/odenet_mnist.py``).

Used by the Nesterov-solver chapter (task A). Described, not copied:

* **Downsampling** (``"conv"``, MNIST 28×28): Conv2d(1, 64, 3, 1) → GN → ReLU →
  Conv2d(64, 64, 4, 2, 1) → GN → ReLU → Conv2d(64, 64, 4, 2, 1), giving 64×6×6.
  ``"small"`` (the smoke setting on 8×8 digits): Conv2d(1, w, 3, padding 1) → GN → ReLU.
* **Feature part**: one ODE block over t ∈ [0, 1] whose field is GN → ReLU → ConcatConv 3×3 →
  GN → ReLU → ConcatConv 3×3 → GN (time as an extra input channel;
  :class:`~deqode.models.layers.ConvField` with ``pre_activation`` and ``time_dependent``), or,
  for the ResNet, ``n_blocks`` pre-activation residual blocks with separate weights
  (GN → ReLU → conv 3×3 → GN → ReLU → conv 3×3, bias-free convolutions, identity shortcut).
* **Head**: GN → ReLU → AdaptiveAvgPool(1) → flatten → Linear(w, classes).

GroupNorm uses ``min(max_groups, w)`` groups (``max_groups`` = 32 as in the example). A narrow
model with one channel per group is an instance norm: every channel is normalised over the image,
so the head's average pool sees almost the same value for every input and training stalls; the
cpu profile therefore uses fewer groups (``max_groups``). Parameter counts at width 64 on
MNIST: ODE-Net 208,266, ResNet-6 576,778 (Chen et al. quote about 0.22M and 0.6M).

Solver: the ODE-Net integrates with torchdiffeq ``method`` (default ``dopri5``, rtol = atol =
1e-3 as the example's ``--tol``). For fixed-grid methods give ``n_steps``: the grid is then
:func:`deqode.solvers.nesterov.step_grid` ``(1 / n_steps)`` (exactly ``n_steps`` equal steps),
and ``solver_options`` (e.g. ``{"beta": 0.5}``) are passed to the solver. Counters:
``nfe_forward`` / ``nfe_backward`` (ODE-Net: evaluations of the field; ResNet: its block
evaluations, ``n_blocks`` forward and 0 backward, to sit in the same NFE tables).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from deqode.models.bases import ODEClassifier, check_image_batch
from deqode.models.blocks import ConvField, group_norm
from deqode.models.nfe import CountsNFE
from deqode.models.settings import ODESolve, reject_unknown, take_settings
from deqode.solvers.nesterov import step_grid

DOWNSAMPLING = ("conv", "small")
ADAPTIVE_METHODS = ("dopri5", "dopri8", "bosh3", "fehlberg2", "adaptive_heun")


def downsampling(kind: str, in_channels: int, width: int, max_groups: int = 32) -> nn.Sequential:
    """The example's ``conv`` downsampling (28×28 → 6×6) or the smoke ``small`` stem."""
    if kind == "conv":
        return nn.Sequential(
            nn.Conv2d(in_channels, width, 3, 1), group_norm(width, max_groups), nn.ReLU(),
            nn.Conv2d(width, width, 4, 2, 1), group_norm(width, max_groups), nn.ReLU(),
            nn.Conv2d(width, width, 4, 2, 1),
        )
    if kind == "small":
        return nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1),
                             group_norm(width, max_groups), nn.ReLU())
    raise ValueError(f"unknown downsampling {kind!r}; valid choices: {DOWNSAMPLING}")


def head(width: int, num_classes: int, max_groups: int = 32) -> nn.Sequential:
    return nn.Sequential(group_norm(width, max_groups), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(width, num_classes))


def solver_options(method: str, n_steps: int | None,
                   extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """torchdiffeq options: an ``n_steps`` uniform grid on [0, 1] for fixed-grid methods."""
    extra = dict(extra or {})
    if method in ADAPTIVE_METHODS:
        if n_steps is not None:
            raise ValueError(f"n_steps is for fixed-grid methods, not the adaptive {method!r}")
        return extra
    if n_steps is None:
        raise ValueError(f"fixed-grid method {method!r} needs n_steps")
    return {"grid_constructor": step_grid(1.0 / n_steps), **extra}


@dataclass(frozen=True)
class ODENetBackbone:
    """The settings that the ODE-Net and its ResNet baseline share: input channels, classes, width
    w, the downsampling (``"conv"`` or ``"small"``) and the GroupNorm cap."""

    in_channels: int = 1
    num_classes: int = 10
    width: int = 64
    downsampling_kind: str = "conv"
    max_groups: int = 32

    def stem(self) -> nn.Sequential:
        return downsampling(self.downsampling_kind, self.in_channels, self.width, self.max_groups)

    def head(self) -> nn.Sequential:
        return head(self.width, self.num_classes, self.max_groups)


def _backbone(model: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ODENetBackbone:
    net = take_settings(ODENetBackbone, kwargs, *args)
    reject_unknown(kwargs, model)
    return net


class ODENet(ODEClassifier):
    """Chen et al.'s ODE-Net classifier (see the module docstring).

    Keywords besides those named: the fields of :class:`ODENetBackbone` (the first three also by
    position).
    """

    keyword_settings = (ODENetBackbone,)

    def __init__(
        self,
        *args: Any,
        method: str = "dopri5",
        n_steps: int | None = None,
        solver_kwargs: dict[str, Any] | None = None,
        rtol: float = 1e-3,
        atol: float = 1e-3,
        grad_mode: str = "backprop",
        max_num_steps: int | None = 1000,
        **backbone: Any,
    ) -> None:
        net = _backbone(type(self), args, backbone)
        field = ConvField(net.width, max_groups=net.max_groups, time_dependent=True,
                          pre_activation=True)
        solve = ODESolve(method, rtol, atol, solver_options(method, n_steps, solver_kwargs),
                         grad_mode)
        super().__init__(net.stem(), net.head(), field, net.in_channels, solve=solve,
                         max_num_steps=max_num_steps)
        self.n_steps = n_steps

    def set_solver(self, method: str, n_steps: int | None = None,
                   solver_kwargs: dict[str, Any] | None = None, rtol: float = 1e-3,
                   atol: float = 1e-3) -> None:
        """Switch the ODE solver (e.g. to ``dopri5`` for the solver-transfer check)."""
        self.use_solver(ODESolve(method, rtol, atol, solver_options(method, n_steps, solver_kwargs),
                                 self.grad_mode))
        self.n_steps = n_steps

    def start(self, x_tilde: Tensor) -> tuple[Tensor, None]:
        return x_tilde, None


class ResBlock(nn.Module):
    """Pre-activation residual block: x + conv(ReLU(GN(conv(ReLU(GN(x)))))), bias-free convs."""

    def __init__(self, width: int, max_groups: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            group_norm(width, max_groups), nn.ReLU(),
            nn.Conv2d(width, width, 3, 1, 1, bias=False),
            group_norm(width, max_groups), nn.ReLU(), nn.Conv2d(width, width, 3, 1, 1, bias=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ResNet(CountsNFE, nn.Module):
    """The discrete baseline: the same downsampling and head around ``n_blocks`` ResBlocks
    (keywords: ``n_blocks`` and the fields of :class:`ODENetBackbone`)."""

    keyword_settings = (ODENetBackbone,)

    def __init__(self, *args: Any, n_blocks: int = 6, **backbone: Any) -> None:
        super().__init__()
        if n_blocks < 1:
            raise ValueError(f"n_blocks must be >= 1, got {n_blocks}")
        net = _backbone(type(self), args, backbone)
        self.in_channels = net.in_channels
        self.stem = net.stem()
        self.blocks = nn.Sequential(*(ResBlock(net.width, net.max_groups) for _ in range(n_blocks)))
        self.head = net.head()
        self.n_blocks = n_blocks
        self.nfe_forward = n_blocks
        self.nfe_backward = 0

    def reset_nfe(self) -> None:
        """Block evaluations are constant: n_blocks forward, 0 backward."""
        self.nfe_forward, self.nfe_backward = self.n_blocks, 0

    def forward(self, x: Tensor) -> Tensor:
        check_image_batch(x, self.in_channels, type(self).__name__)
        return self.head(self.blocks(self.stem(x)))


__all__ = ["DOWNSAMPLING", "ODENet", "ResBlock", "ResNet", "downsampling", "head",
           "solver_options"]
