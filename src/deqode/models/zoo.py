"""Named builds, one registry: ``<model>-<dataset>`` → class and arguments (``homoode-cifar10``).

Every build is one :class:`ModelEntry` in :data:`REGISTRY`, added by :func:`register_model`: the
HomoNet family below (``homoode``, ``node``, ``anode``, ``deq`` on each dataset of
:data:`DATASETS`), the Continuous DEQ family (``build_names()`` of
:mod:`deqode.models.continuous_deq`), and the SIM and monDEQ tables (:mod:`deqode.models.sim`,
:mod:`deqode.models.mondeq`), whose entries keep their family's own ``build`` for defaults and
argument checks.

Per dataset one HomoNet configuration (the released scripts of wadx2019/homoode,
``scripts/homoinit_{cifar10,cifar100,tiny}.py``; digits is the book's smoke HomoNet):

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
stem convolution, lr₀/freq: the shared initial point's SGD learning rate and period. cifar10,
cifar100 and tiny are the released scripts (``--hidden_dim``, ``--lr_init``, ``--freq``,
``--adjoint``: direct backprop on CIFAR-10, the frozen adjoint on CIFAR-100 and Tiny-ImageNet);
digits is the smoke HomoNet [reconstruction]; mnist and svhn have no released script and reuse
the CIFAR-10 configuration [reconstruction].)

``lr_init``, ``freq`` and the gradient mode live here and nowhere else: they are arguments of
:class:`~deqode.models.homoode.HomoODE` (the model owns its initial point's optimiser settings,
``model.lr_init``/``model.freq``, which :func:`deqode.train.fit` falls back to), so
``build("homoode-cifar100")`` is the released script's model, and the core package cannot read a
chapter's configuration. The HomoODE chapter's run configurations (seed, epochs, optimiser) read
these three from :data:`DATASETS`.

Baselines [reconstruction: no baseline scripts are released] share the stem, head, dropout and GN
rule and are matched to HomoODE's parameter count (without the init layer) within 5 %:

* ``node-*``: the field of torchdiffeq ``examples/odenet_mnist.py`` (Chen et al. 2018;
  pre-activation, time-concat convs) on C channels, hidden width C (digits: 7, since C = 8 would
  be +6 %).
* ``anode-*``: the same field on C + k channels (Dupont et al. 2019, ``anode/conv_models.py``), k
  = C/4 zero channels appended, hidden width narrowed to W = 48 (C = 64), 96 (C = 128), 5
  (digits); the head reads all C + k channels.
* ``deq-*``: the MDEQ-style cell ``GN(ReLU(z + F(z; x̃)))`` (locuslab/mdeq) with HomoODE's F
  (width C); Broyden, tol 1e-3, 30 iterations; IFT backward by GMRES (30 iterations), MDEQ's
  thresholds (``experiments/cifar/cls_mdeq_TINY.yaml``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from deqode.choices import Registry, UnknownChoiceError
from deqode.models.deq import DEQ
from deqode.models.homoode import HomoODE
from deqode.models.layers import ODEClassifier
from deqode.models.neural_ode import AugmentedNeuralODE, NeuralODE
from deqode.models.settings import keyword_arguments


@dataclass(frozen=True)
class DatasetArch:
    """The HomoNet configuration for one dataset (the table of the module docstring)."""

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
                           "wadx2019/homoode scripts/homoinit_cifar10.py"),
    "cifar100": DatasetArch(3, 32, 100, 128, 512, 32, 0.15, 1, 0.01, 5, "frozen_adjoint", 128, 32,
                            96, "wadx2019/homoode scripts/homoinit_cifar100.py"),
    "tiny": DatasetArch(3, 64, 200, 128, 512, 8, 0.15, 2, 0.05, 20, "frozen_adjoint", 128, 32, 96,
                        "wadx2019/homoode scripts/homoinit_tiny.py"),
    "digits": DatasetArch(1, 8, 10, 8, 32, 4, 0.1, 1, 0.02, 5, "backprop", 7, 2, 5,
                          "smoke HomoNet [reconstruction]"),
    "mnist": DatasetArch(1, 28, 10, 64, 256, 32, 0.1, 1, 0.02, 20, "backprop", 64, 16, 48,
                         "CIFAR-10 configuration on 1×28×28 [reconstruction]"),
    "svhn": DatasetArch(3, 32, 10, 64, 256, 32, 0.1, 1, 0.02, 20, "backprop", 64, 16, 48,
                        "CIFAR-10 configuration [reconstruction]"),
}

#: The HomoNet family: build-name prefix → class.
HOMONET_MODELS: dict[str, type[nn.Module]] = {
    "homoode": HomoODE,
    "node": NeuralODE,
    "anode": AugmentedNeuralODE,
    "deq": DEQ,
}


@dataclass(frozen=True)
class ModelEntry:
    """One named build: its factory and keyword arguments, and the input it expects.

    ``builder``, when set, is the family's own ``build(name, **overrides)`` (SIM, monDEQ), which
    applies its defaults and checks the overrides; otherwise :func:`build` calls
    ``factory(**kwargs, **overrides)``. ``input_shape`` is one item's shape (None where the
    family does not fix it).
    """

    name: str
    model: str
    dataset: str
    factory: Callable[..., nn.Module]
    kwargs: dict[str, Any] = field(default_factory=dict)
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    builder: Callable[..., nn.Module] | None = None


#: Every named build.
REGISTRY: Registry[ModelEntry] = Registry("model", sort=True)


def register_model(entry: ModelEntry) -> ModelEntry:
    """Add a named build (a name registered twice raises ``ValueError``)."""
    return REGISTRY.register(entry.name, entry)


def _homonet_kwargs(model: str, arch: DatasetArch) -> dict[str, Any]:
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


def _register_builtin() -> None:
    from deqode.models import continuous_deq, mondeq, sim

    for model, cls in HOMONET_MODELS.items():
        for dataset, arch in DATASETS.items():
            shape = (arch.in_channels, arch.image_size, arch.image_size)
            register_model(ModelEntry(f"{model}-{dataset}", model, dataset, cls,
                                      _homonet_kwargs(model, arch), shape, arch.num_classes))
    for name, (cls, dataset, kwargs) in continuous_deq.build_names().items():
        cfg = continuous_deq.arch_config(kwargs["arch"])
        shape = getattr(cfg, "input_shape", None) or (cfg.in_channels, cfg.image_size,
                                                      cfg.image_size)
        register_model(ModelEntry(name, name.split("-")[0], dataset, cls, kwargs, shape,
                                  cfg.num_classes))
    families = [(n, b.factory, b.kwargs, sim.build) for n, b in sim.BUILDS.items()]
    families += [(n, cls, kwargs, mondeq.build)
                 for n, (cls, kwargs, _) in mondeq.MONDEQ_BUILDS.items()]
    for name, factory, kwargs, builder in families:
        shape = ((kwargs["in_channels"], kwargs["image_size"], kwargs["image_size"])
                 if "image_size" in kwargs else None)
        register_model(ModelEntry(name, name.split("-")[0], name.split("-")[2], factory, kwargs,
                                  shape, kwargs.get("num_classes"), builder))


def names() -> list[str]:
    """Every build name :func:`build` accepts, sorted."""
    return REGISTRY.names()


def entry(name: str) -> ModelEntry:
    """The registry entry of ``name`` (raises UnknownChoiceError listing :func:`names`)."""
    return REGISTRY[name]


def valid_overrides(cls: type[nn.Module]) -> list[str]:
    """Keyword arguments :func:`build` accepts for ``cls`` (its constructor's, through **kwargs)."""
    keys = keyword_arguments(cls)
    if issubclass(cls, ODEClassifier):
        keys.append("tol")  # alias: rtol = atol = tol
    return sorted(set(keys))


def build(name: str, **overrides: Any) -> nn.Module:
    """Instantiate the named architecture, optionally overriding constructor arguments.

    ``build("homoode-cifar10", grad_mode="adjoint", tol=1e-5)``; for ODE models ``tol`` sets
    ``rtol = atol``. Unknown names or keywords raise :class:`UnknownChoiceError` listing the valid
    ones.
    """
    spec = entry(name)
    if spec.builder is not None:
        return spec.builder(name, **overrides)
    valid = valid_overrides(spec.factory)
    for key in overrides:
        if key not in valid:
            listed = ", ".join(repr(k) for k in valid)
            raise UnknownChoiceError(
                f"unknown override {key!r} for model {name!r}; valid choices: {listed}"
            )
    kwargs = {**spec.kwargs, **overrides}
    if issubclass(spec.factory, ODEClassifier) and "tol" in kwargs:
        tol = kwargs.pop("tol")
        if "rtol" in overrides or "atol" in overrides:
            raise ValueError("give either tol or rtol/atol, not both")
        kwargs["rtol"] = kwargs["atol"] = tol
    return spec.factory(**kwargs)


_register_builtin()
