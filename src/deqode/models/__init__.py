"""Models: Neural ODE, ANODE, DEQ and HomoODE on one skeleton (stem → implicit core → head).

``build(name, **overrides)`` instantiates a named architecture (``names()`` lists them, e.g.
``homoode-cifar10``, ``deq-digits``); the classes can also be constructed directly.
"""

from deqode.models.continuous_deq import (
    ContinuousDEQ,
    MultiscaleNeuralODE,
    SkipDEQ,
    SkipRegDEQ,
)
from deqode.models.deq import DEQ, DEQCell
from deqode.models.homoode import HOMOODE_GRAD_MODES, FrozenAdjoint, HomoODE
from deqode.models.layers import (
    AlternatingInit,
    ClassificationHead,
    ConvField,
    CountingField,
    DownsamplingStem,
    ImplicitClassifier,
    InitLayer,
    ODEClassifier,
    VariationalDropout2d,
    count_parameters,
)
from deqode.models.neural_ode import AugmentedNeuralODE, NeuralODE
from deqode.models.zoo import DATASETS, REGISTRY, ModelEntry, build, entry, names, register_model

__all__ = [
    "DATASETS",
    "DEQ",
    "HOMOODE_GRAD_MODES",
    "REGISTRY",
    "AlternatingInit",
    "AugmentedNeuralODE",
    "ClassificationHead",
    "ContinuousDEQ",
    "ConvField",
    "CountingField",
    "DEQCell",
    "DownsamplingStem",
    "FrozenAdjoint",
    "HomoODE",
    "ImplicitClassifier",
    "InitLayer",
    "ModelEntry",
    "MultiscaleNeuralODE",
    "NeuralODE",
    "ODEClassifier",
    "SkipDEQ",
    "SkipRegDEQ",
    "VariationalDropout2d",
    "build",
    "count_parameters",
    "entry",
    "names",
    "register_model",
]
