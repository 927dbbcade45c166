"""Former home of the classifiers' blocks and skeletons, kept so that old imports keep working.

The blocks (field, dropout, stem, head, initial points) are in :mod:`deqode.models.blocks`, the
skeletons (:class:`ImplicitClassifier`, :class:`ODEClassifier`, :class:`CountingField`) in
:mod:`deqode.models.bases`.
"""

from deqode.models.bases import (
    ODE_GRAD_MODES,
    CountingField,
    ImplicitClassifier,
    ODEClassifier,
    check_image_batch,
    count_parameters,
    solver_errors_as_failure,
)
from deqode.models.blocks import (
    ACTIVATIONS,
    AlternatingInit,
    ClassificationHead,
    ConcatConv2d,
    ConvField,
    DownsamplingStem,
    InitLayer,
    VariationalDropout2d,
    group_norm,
    num_groups,
)

__all__ = [
    "ACTIVATIONS",
    "ODE_GRAD_MODES",
    "AlternatingInit",
    "ClassificationHead",
    "ConcatConv2d",
    "ConvField",
    "CountingField",
    "DownsamplingStem",
    "ImplicitClassifier",
    "InitLayer",
    "ODEClassifier",
    "VariationalDropout2d",
    "check_image_batch",
    "count_parameters",
    "group_norm",
    "num_groups",
    "solver_errors_as_failure",
]
