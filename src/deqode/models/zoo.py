"""Named architectures: ``<model>-<dataset>``, e.g. ``homoode-cifar10``, ``deq-digits``.

Per dataset one HomoNet configuration (spec §3.3, §2.4, §3.4; the smoke HomoNet of §6 for digits):

=========  =====  =====  ====  =====  ======  =====  =======  ====  ==============  ===============
dataset    input  class  C     K      groups  p      s₁       lr₀   freq            HomoODE grad
=========  =====  =====  ====  =====  ======  =====  =======  ====  ==============  ===============
cifar10    3×32²  10     64    256    32      0.1    1        0.02  20              backprop
cifar100   3×32²  100    128   512    32      0.15   1        0.01  5               frozen_adjoint
tiny       3×64²  200    128   512    8       0.15   2        0.05  20              frozen_adjoint
digits     1×8²   10     8     32     4       0.1    1        0.02  5               backprop
mnist      1×28²  10     64    256    32      0.1    1        0.02  20              backprop
svhn       3×32²  10     64    256    32      0.1    1        0.02  20              backprop
=========  =====  =====  ====  =====  ======  =====  =======  ====  ==============  ===============

(C: state width ``hidden_dim``, K: head width ``final_dim``, p: dropout, s₁: stride of the first
stem convolution, lr₀/freq: the init point's SGD learning rate and period. cifar10, cifar100 and
tiny are the released scripts, and their default gradient modes are the scripts' (spec §3.4);
digits is the spec's smoke HomoNet; mnist and svhn have no released script and reuse the CIFAR-10
configuration [reconstruction].)

Baselines [reconstruction, spec §3.7] share the stem, head, dropout and GN rule and are matched to
HomoODE's parameter count (without the init layer) within 5 %:

* ``node-*``: Chen et al.'s field (pre-activation, time-concat convs) on C channels, hidden width
  C (digits: 7, since C = 8 would be +6 %).
* ``anode-*``: the same field on C + k channels, k = C/4 zero channels appended, hidden width
  narrowed to W = 48 (C = 64), 96 (C = 128), 5 (digits); the head reads all C + k channels.
* ``deq-*``: the MDEQ-style cell ``GN(ReLU(z + F(z; x̃)))`` with HomoODE's F (width C); Broyden,
  tol 1e-3, 30 iterations; IFT backward by GMRES (30 iterations) as MDEQ's thresholds.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from deqode.choices import UnknownChoiceError, check_choice
from deqode.models.deq import DEQ
from deqode.models.homoode import HomoODE
from deqode.models.layers import ODEClassifier
from deqode.models.neural_ode import AugmentedNeuralODE, NeuralODE


@dataclass(frozen=True)
class DatasetArch:
    """The HomoNet configuration for one dataset."""

    in_channels: int
    image_size: int
    num_classes: int
    channels: int
    final_channels: int
    max_groups: int
    dropout: float
    first_stride: int
    lr_init: float
    freq: int
    homoode_grad_mode: str
    node_hidden: int
    anode_augment: int
    anode_hidden: int
    source: str


DATASETS: dict[str, DatasetArch] = {
    "cifar10": DatasetArch(3, 32, 10, 64, 256, 32, 0.1, 1, 0.02, 20, "backprop", 64, 16, 48,
                           "wadx2019/homoode scripts/homoinit_cifar10.py (spec §3.3)"),
    "cifar100": DatasetArch(3, 32, 100, 128, 512, 32, 0.15, 1, 0.01, 5, "frozen_adjoint", 128, 32,
                            96, "wadx2019/homoode scripts/homoinit_cifar100.py (spec §3.3)"),
    "tiny": DatasetArch(3, 64, 200, 128, 512, 8, 0.15, 2, 0.05, 20, "frozen_adjoint", 128, 32, 96,
                        "wadx2019/homoode scripts/homoinit_tiny.py (spec §3.3)"),
    "digits": DatasetArch(1, 8, 10, 8, 32, 4, 0.1, 1, 0.02, 5, "backprop", 7, 2, 5,
                          "smoke HomoNet [reconstruction] (spec §6)"),
    "mnist": DatasetArch(1, 28, 10, 64, 256, 32, 0.1, 1, 0.02, 20, "backprop", 64, 16, 48,
                         "CIFAR-10 configuration on 1×28×28 [reconstruction]"),
    "svhn": DatasetArch(3, 32, 10, 64, 256, 32, 0.1, 1, 0.02, 20, "backprop", 64, 16, 48,
                        "CIFAR-10 configuration [reconstruction]"),
}

MODELS: dict[str, type[nn.Module]] = {
    "homoode": HomoODE,
    "node": NeuralODE,
    "anode": AugmentedNeuralODE,
    "deq": DEQ,
}


@dataclass(frozen=True)
class ModelEntry:
    """One named build: the class, its keyword arguments and the input it expects."""

    name: str
    model: str
    dataset: str
    cls: type[nn.Module]
    kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        arch = DATASETS[self.dataset]
        return (arch.in_channels, arch.image_size, arch.image_size)

    @property
    def num_classes(self) -> int:
        return DATASETS[self.dataset].num_classes


def _kwargs(model: str, arch: DatasetArch) -> dict[str, Any]:
    common = dict(
        in_channels=arch.in_channels,
        num_classes=arch.num_classes,
        channels=arch.channels,
        final_channels=arch.final_channels,
        max_groups=arch.max_groups,
        dropout=arch.dropout,
        first_stride=arch.first_stride,
    )
    if model == "homoode":
        return {**common, "grad_mode": arch.homoode_grad_mode, "lr_init": arch.lr_init,
                "freq": arch.freq}
    if model == "node":
        return {**common, "hidden_channels": arch.node_hidden}
    if model == "anode":
        return {**common, "augment_channels": arch.anode_augment,
                "hidden_channels": arch.anode_hidden}
    return common


REGISTRY: dict[str, ModelEntry] = {
    f"{model}-{dataset}": ModelEntry(
        f"{model}-{dataset}", model, dataset, cls, _kwargs(model, arch)
    )
    for model, cls in MODELS.items()
    for dataset, arch in DATASETS.items()
}


def _families() -> dict[str, Any]:
    """Model families with their own build tables (SIM, monDEQ): name -> module with build()."""
    from deqode.models import mondeq, sim

    return {**dict.fromkeys(sim.names(), sim), **dict.fromkeys(mondeq.names(), mondeq)}


def names() -> list[str]:
    """Every build name :func:`build` accepts, sorted."""
    return sorted([*REGISTRY, *_families()])


def entry(name: str) -> ModelEntry:
    """The registry entry of ``name`` (raises UnknownChoiceError listing :func:`names`)."""
    check_choice("model", name, names())
    if name not in REGISTRY:
        raise ValueError(f"{name!r} is built by its family's own table; use build({name!r})")
    return REGISTRY[name]


def valid_overrides(cls: type[nn.Module]) -> list[str]:
    """Keyword arguments :func:`build` accepts for ``cls`` (its constructor's, through **kwargs)."""
    keys: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass is nn.Module:
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        keys += [p.name for p in params if p.name != "self" and p.kind not in (
            inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            break
    if issubclass(cls, ODEClassifier):
        keys.append("tol")  # alias: rtol = atol = tol
    return sorted(set(keys))


def build(name: str, **overrides: Any) -> nn.Module:
    """Instantiate the named architecture, optionally overriding constructor arguments.

    ``build("homoode-cifar10", grad_mode="adjoint", tol=1e-5)``; for ODE models ``tol`` sets
    ``rtol = atol``. Unknown names or keywords raise :class:`UnknownChoiceError` listing the valid
    ones.
    """
    check_choice("model", name, names())
    family = _families().get(name)
    if family is not None:
        return family.build(name, **overrides)
    spec = entry(name)
    valid = valid_overrides(spec.cls)
    for key in overrides:
        if key not in valid:
            listed = ", ".join(repr(k) for k in valid)
            raise UnknownChoiceError(
                f"unknown override {key!r} for model {name!r}; valid choices: {listed}"
            )
    kwargs = {**spec.kwargs, **overrides}
    if issubclass(spec.cls, ODEClassifier) and "tol" in kwargs:
        tol = kwargs.pop("tol")
        if "rtol" in overrides or "atol" in overrides:
            raise ValueError("give either tol or rtol/atol, not both")
        kwargs["rtol"] = kwargs["atol"] = tol
    return spec.cls(**kwargs)


# Continuous DEQ / Skip DEQ / Skip Reg. DEQ and the multiscale Neural ODE baseline
# (continuous-deq.md §3): ``cdeq-<arch>``, ``skipdeq-<arch>``, ``skipregdeq-<arch>``,
# ``msnode-<arch>``; the discrete DEQ rows are the same builds with ``solver="discrete"``.
@dataclass(frozen=True)
class ShapedEntry(ModelEntry):
    """A build whose input shape and class count come from the model class, not DATASETS."""

    shape: tuple[int, ...] = ()
    classes: int = 10

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.shape

    @property
    def num_classes(self) -> int:
        return self.classes


def _register_continuous_deq() -> None:
    from deqode.models.continuous_deq import arch_config, build_names

    for name, (cls, dataset, kwargs) in build_names().items():
        cfg = arch_config(kwargs["arch"])
        shape = getattr(cfg, "input_shape", None) or (cfg.in_channels, cfg.image_size,
                                                      cfg.image_size)
        REGISTRY[name] = ShapedEntry(name, name.split("-")[0], dataset, cls, kwargs, shape,
                                     cfg.num_classes)


_register_continuous_deq()
