"""Data sets by name: ``load_dataset(name, root, split, profile, ...)`` yields ``(input, target)``.

Registered names: ``dataset_names()``; ``dataset_info(name, profile)`` gives one item's shape,
the classes, splits, sizes and source. The built-in sets (:mod:`deqode.data.catalog`): the
torchvision sets ``mnist``, ``svhn``, ``cifar10``, ``cifar100`` (under ``<root>/<name>/``),
``tiny-imagenet`` (Kaggle, placed by hand), ``mnist-8k`` (versioned in ``data/mnist-8k/``),
``digits`` (sklearn, bundled); generated 2-D densities for CNFs (``circles``, ``two-moons``,
``8gaussians``, ``pinwheel``, ``checkerboard``), latent-ODE ``spirals``, ``copy-memory``; image
regression (``sample-china``, ``sample-flower``, ``rendered-text``; ``tancik-natural`` and
``tancik-text`` from files in ``<root>/tancik/``).

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
