"""Preprocessing recipes: each paper's augmentation and normalisation, as :class:`Preprocessing`.

A *recipe* names the paper (or released script) whose preprocessing is reproduced. Every
(dataset, recipe) pair is one :class:`Preprocessing` record, registered with its data set in
:mod:`deqode.data.catalog` (each record's ``source`` names where its numbers come from); this
module holds the record type, the recipe names and the normalisation statistics.

Recipes:

- ``plain``: ``ToTensor`` only (pixels in [0, 1]); no augmentation, no normalisation.
- ``homoode``: the HomoODE release scripts (wadx2019/homoode ``scripts/homoinit_*.py``), exact,
  quirks included: CIFAR-10 flips with probability **0.2** (CIFAR-100 and Tiny-ImageNet 0.5),
  the CIFAR scripts normalise with **ImageNet** statistics and the Tiny-ImageNet script with
  **CIFAR** statistics. On ``digits`` it is the book's smoke analogue (pixels in [0, 1]).
- ``nag``: torchdiffeq's ``examples/odenet_mnist.py``: train ``RandomCrop(28, padding=4)``, no
  normalisation; on ``digits`` the smoke setting ([0, 1]).
- ``sim``: SIM's ``run_imgcl.py`` (uswodce/sim): ``Normalize`` only, no augmentation; on
  ``digits`` standardised with the train split's pixel mean and std.
- ``cdeq``: Continuous DEQ (Pal et al., arXiv 2201.12240), CIFAR-10 small and MNIST-FC
  (SciML/DeepEquilibriumNetworks.jl ``experiments/cifar10/tiny.yml``): CIFAR-10 normalised with
  (0.4914, 0.4822, 0.4465) / (0.2023, 0.1994, 0.2010), no augmentation; MNIST raw in [0, 1] (the
  code computes but never applies its statistics); ``digits`` in [0, 1]; ImageNet as
  ``experiments/imagenet/small.yml``: train resize to 256x256, flip 0.5, random crop 224, test
  resize to 224x224 (no centre crop), ImageNet statistics.
- ``cdeq-large``: Continuous DEQ, CIFAR-10 large (``experiments/cifar10/large.yml``): train flip
  0.5, resize to 42x42, random crop 32, then the ``cdeq`` normalisation. The Julia code
  normalises before the geometric ops; normalisation is per channel affine and commutes with
  flip, crop and (weights summing to one) bilinear resizing, so normalising last is equivalent up
  to interpolation details.

The default recipe of a dataset is ``homoode`` where HomoODE defines one (``cifar10``,
``cifar100``, ``tiny-imagenet``, ``digits``) and ``plain`` otherwise (``mnist``, ``mnist-8k``,
``svhn``). ``mnist-8k`` has exactly MNIST's recipes.
Augmentation applies to the train split by default (``augment=None``); test transforms are
deterministic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

# Normalisation statistics, named by where they come from.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
# The widely copied CIFAR-10 "std" (used by HomoODE's Tiny script and by Continuous DEQ).
CIFAR10_STD_COMMON = (0.2023, 0.1994, 0.2010)
# The per-pixel standard deviation over the CIFAR-10 training set (used by SIM).
CIFAR10_STD_PIXEL = (0.2470, 0.2435, 0.2616)
MNIST_MEAN = (0.1307,)
MNIST_STD = (0.3081,)
SVHN_MEAN = (0.4377, 0.4438, 0.4728)
SVHN_STD = (0.1980, 0.2010, 0.1970)

RECIPES: dict[str, str] = {
    "plain": "ToTensor only: pixels in [0, 1], no augmentation, no normalisation",
    "homoode": "HomoODE release scripts (official code `scripts/homoinit_*.py`), quirks included",
    "nag": "torchdiffeq examples/odenet_mnist.py (a companion choice for the Nesterov chapter)",
    "sim": "SIM run_imgcl.py: Normalize only, no augmentation (official code)",
    "cdeq": "Continuous DEQ, CIFAR-10 small / MNIST-FC / ImageNet (official code "
    "`cifar10/tiny.yml`, v1 `mnist_fc.jl`, `imagenet/small.yml`)",
    "cdeq-large": "Continuous DEQ, CIFAR-10 large: flip, resize 42, crop 32 "
    "(official code `cifar10/large.yml`)",
}


@dataclass(frozen=True)
class Preprocessing:
    """How one recipe turns one dataset's images into tensors.

    Train augmentation, in this order: ``RandomHorizontalFlip(flip_p)`` (if ``flip_p > 0``),
    ``Resize((resize, resize))`` (if set), ``RandomCrop(crop, padding=crop_padding)`` (if set).
    Without augmentation ``Resize((eval_resize, eval_resize))`` (if set; images of varying
    size, ImageNet). Then ``ToTensor`` and ``Normalize(mean, std)`` (if ``mean`` is set), with
    or without augmentation.
    """

    dataset: str
    recipe: str
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    flip_p: float = 0.0
    resize: int | None = None
    crop: int | None = None
    crop_padding: int = 0
    eval_resize: int | None = None
    source: str = ""

    @property
    def has_augmentation(self) -> bool:
        """Whether the recipe defines any train-time augmentation for this dataset."""
        return self.flip_p > 0 or self.resize is not None or self.crop is not None

    def image_transform(self, augment: bool) -> Callable:
        """The torchvision transform for PIL images (``augment`` adds the train augmentation)."""
        from torchvision import transforms  # imported here: torchvision takes seconds to import

        steps: list = []
        if augment:
            if self.flip_p > 0:
                steps.append(transforms.RandomHorizontalFlip(p=self.flip_p))
            if self.resize is not None:
                steps.append(transforms.Resize((self.resize, self.resize)))
            if self.crop is not None:
                steps.append(transforms.RandomCrop(self.crop, padding=self.crop_padding))
        elif self.eval_resize is not None:
            steps.append(transforms.Resize((self.eval_resize, self.eval_resize)))
        steps.append(transforms.ToTensor())
        if self.mean is not None:
            steps.append(transforms.Normalize(self.mean, self.std))
        return transforms.Compose(steps)

    def tensor_augmentation(self) -> Callable:
        """The train augmentation for ``(C, H, W)`` tensors (sets held in memory as tensors)."""
        from torchvision import transforms

        steps: list = []
        if self.flip_p > 0:
            steps.append(transforms.RandomHorizontalFlip(p=self.flip_p))
        if self.resize is not None:
            steps.append(transforms.Resize((self.resize, self.resize), antialias=True))
        if self.crop is not None:
            steps.append(transforms.RandomCrop(self.crop, padding=self.crop_padding))
        return transforms.Compose(steps)

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """Normalise a batch ``(N, C, H, W)`` of [0, 1] images (identity without statistics)."""
        if self.mean is None:
            return images
        mean = torch.tensor(self.mean, dtype=images.dtype).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=images.dtype).view(1, -1, 1, 1)
        return (images - mean) / std


def plain(dataset: str) -> Preprocessing:
    """The ``plain`` recipe of ``dataset``: ``ToTensor`` only."""
    return Preprocessing(dataset, "plain", source="no preprocessing beyond ToTensor")


def default_recipe_of(recipes: tuple[str, ...]) -> str | None:
    """``homoode`` where HomoODE defines the dataset, else ``plain``; None without recipes."""
    if not recipes:
        return None
    return "homoode" if "homoode" in recipes else "plain"
