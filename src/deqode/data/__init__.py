"""Data sets by name: ``load_dataset(name, root, split, profile, ...)`` yields ``(input, target)``.

Registered names (``dataset_names()``), with one item's input shape:

======================= ============== ====================================================
name                    input          source
======================= ============== ====================================================
``mnist``               (1, 28, 28)    torchvision, ``<root>/mnist/``
``svhn``                (3, 32, 32)    torchvision, ``<root>/svhn/`` (label 10 -> 0)
``cifar10``             (3, 32, 32)    torchvision, ``<root>/cifar10/``
``cifar100``            (3, 32, 32)    torchvision, ``<root>/cifar100/`` (fine labels)
``tiny-imagenet``       (3, 64, 64)    Kaggle, placed by hand in ``<root>/tiny-imagenet/``
``digits``              (1, 8, 8)      sklearn bundled, offline; 1437 train / 360 test
``circles`` ...         (2,)           generated 2-D densities for CNFs (also ``two-moons``,
                                       ``8gaussians``, ``pinwheel``, ``checkerboard``)
``spirals``             (n_sample, 2)  generated latent-ODE spirals (smoke 20 steps)
``copy-memory``         (1, T + 20)    generated copy-memory task (smoke T = 10)
``sample-china`` ...    (2,)           image regression (also ``sample-flower``,
                                       ``rendered-text``; ``tancik-natural`` and
                                       ``tancik-text`` from files in ``<root>/tancik/``)
======================= ============== ====================================================

Preprocessing of image classification sets is chosen by ``recipe`` (see
:mod:`deqode.data.recipes`: ``plain``, ``homoode``, ``nag``, ``sim``, ``cdeq``, ``cdeq-large``);
the default is HomoODE's where it defines one. A missing set raises
:class:`deqode.errors.DatasetMissingError` saying where the files go and how to get them; there
is no silent fallback to other data. The training harness builds the loaders.

Each set is one :class:`DatasetEntry` (what it is, its recipes, its files and how to get them,
its loader), registered once with :func:`register_dataset`: the built-in ones in
:mod:`deqode.data.catalog`.
"""

from deqode.data import catalog  # noqa: F401  (registers the built-in sets)
from deqode.data.recipes import RECIPES, Preprocessing
from deqode.data.registry import (
    DatasetEntry,
    DatasetInfo,
    LoadRequest,
    check_available,
    dataset_info,
    dataset_names,
    dataset_recipes,
    default_recipe,
    download_dataset,
    load_dataset,
    preprocessing,
    preprocessing_table,
    register_dataset,
    unregister_dataset,
)
from deqode.data.synthetic import DENSITY_NAMES, SpiralDataset, sample_2d_density
from deqode.data.vision import TinyImageNet

__all__ = [
    "DENSITY_NAMES",
    "RECIPES",
    "DatasetEntry",
    "DatasetInfo",
    "LoadRequest",
    "Preprocessing",
    "SpiralDataset",
    "TinyImageNet",
    "check_available",
    "dataset_info",
    "dataset_names",
    "dataset_recipes",
    "default_recipe",
    "download_dataset",
    "load_dataset",
    "preprocessing",
    "preprocessing_table",
    "register_dataset",
    "sample_2d_density",
    "unregister_dataset",
]
