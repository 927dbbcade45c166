"""The registry of data sets: one :class:`DatasetEntry` per name, with everything about the set.

An entry holds what the set is (task, item shape, classes, splits, sizes, source), its
preprocessing recipes, where its files go and how to get them (the on-disk check, the how-to
message, a download) and its loader. :func:`register_dataset` adds one; the built-in sets are
registered in :mod:`deqode.data.catalog`. Everything else here reads the entries: information
(:func:`dataset_info`), availability (:func:`check_available`, :func:`download_dataset`),
recipes (:func:`preprocessing`) and loading (:func:`load_dataset`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from deqode.choices import Registry, UnknownChoiceError, check_choice, check_profile
from deqode.data.recipes import RECIPES, Preprocessing, default_recipe_of
from deqode.errors import DatasetMissingError
from deqode.paths import resolve

TASKS = ("classification", "density", "time-series", "sequence", "regression")


@dataclass(frozen=True)
class DatasetInfo:
    """What a data set is and where it comes from.

    ``input_shape`` is one item's input: ``(C, H, W)`` for images, ``(D,)`` for vectors,
    ``(steps, D)`` for spirals, ``(1, T + 20)`` for copy memory; for generated sets it is the
    shape at the profile's default sizes. ``mean``/``std`` are the normalisation of the default
    recipe (None: none). ``folder`` is the sub-folder of the data root holding the files (None:
    generated or bundled, always available). ``sizes`` maps split to number of items at the
    profile's defaults (None where it depends on the files).
    """

    name: str
    task: str
    input_shape: tuple[int, ...]
    num_classes: int | None
    source: str
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    folder: str | None = None
    splits: tuple[str, ...] = ("train", "test")
    recipes: tuple[str, ...] = ()
    default_recipe: str | None = None
    options: tuple[str, ...] = ()
    sizes: dict[str, int | None] = field(default_factory=dict)


@dataclass(frozen=True)
class LoadRequest:
    """What a loader gets: the set's ``name``, the ``split`` and ``profile``, its ``folder`` under
    the data root (None for generated sets), the caller's ``options`` (checked against the
    entry's), and for sets with recipes the chosen ``preprocessing`` and whether to ``augment``."""

    name: str
    split: str
    profile: str
    folder: Path | None
    options: dict[str, Any]
    preprocessing: Preprocessing | None = None
    augment: bool = False


@dataclass(frozen=True)
class DatasetEntry:
    """Everything about one data set; register it with :func:`register_dataset`.

    - ``name``, ``task`` (one of :data:`TASKS`), ``input_shape``, ``num_classes`` (None: not a
      classification set), ``source`` (where it comes from), ``splits``, ``sizes`` (items per
      split at the default sizes), ``options`` (keyword arguments its loader accepts).
    - ``at_profile``: the :class:`DatasetInfo` fields that depend on the profile (e.g. the sizes
      of a generated set), as a function of the profile.
    - ``recipes``: recipe name → :class:`Preprocessing` (or a function returning it, computed on
      first use); a set with recipes gets ``preprocessing`` and ``augment`` in its
      :class:`LoadRequest`, and the returned dataset carries both as attributes.
    - ``folder`` (under the data root; None: generated or bundled, always available),
      ``required_files`` (relative to it; a trailing ``/`` marks a folder), ``locate`` (where the
      files are, given that folder, e.g. inside an unpacked archive's own folder; default: the
      folder itself), ``howto`` (how to get the files into the folder), ``download`` (fetch
      them into the folder; None: placed by hand).
    - ``loader``: ``LoadRequest`` → a ``Dataset`` of ``(input, target)`` items.
    """

    name: str
    task: str
    input_shape: tuple[int, ...]
    num_classes: int | None
    source: str
    loader: Callable[[LoadRequest], Dataset]
    splits: tuple[str, ...] = ("train", "test")
    sizes: Mapping[str, int | None] = field(default_factory=dict)
    options: tuple[str, ...] = ()
    at_profile: Callable[[str], dict[str, Any]] | None = None
    recipes: Mapping[str, Preprocessing | Callable[[], Preprocessing]] = field(
        default_factory=dict)
    folder: str | None = None
    required_files: tuple[str, ...] = ()
    locate: Callable[[Path], Path] | None = None
    howto: Callable[[Path], str] | None = None
    download: Callable[[Path], None] | None = None


#: Every registered data set, in registration order.
DATASETS: Registry[DatasetEntry] = Registry("dataset")


def register_dataset(entry: DatasetEntry) -> DatasetEntry:
    """Add a data set (its name must be new); returns ``entry``. Checks the entry's fields."""
    check_choice(f"task of dataset {entry.name!r}", entry.task, TASKS)
    for recipe in entry.recipes:
        check_choice(f"recipe of dataset {entry.name!r}", recipe, RECIPES)
    if entry.folder is not None and (not entry.required_files or entry.howto is None):
        raise ValueError(f"dataset {entry.name!r} has a folder: give its required_files and a "
                         "howto message saying how to get them")
    return DATASETS.register(entry.name, entry)


def unregister_dataset(name: str) -> DatasetEntry:
    """Remove a registered data set (e.g. one a test added); returns its entry."""
    return DATASETS.unregister(name)


def dataset_names() -> list[str]:
    """Every registered data set name, in registry order."""
    return DATASETS.names()


def dataset_info(name: str, profile: str = "smoke") -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name`` (shapes and sizes at ``profile``'s defaults)."""
    entry = DATASETS[name]
    check_profile(profile)
    info = DatasetInfo(entry.name, entry.task, entry.input_shape, entry.num_classes,
                       entry.source, folder=entry.folder, splits=entry.splits,
                       options=entry.options, sizes=dict(entry.sizes))
    recipe = default_recipe(name)
    if recipe is not None:
        prep = preprocessing(name, recipe)
        info = replace(info, recipes=dataset_recipes(name), default_recipe=recipe,
                       mean=prep.mean, std=prep.std)
    if entry.at_profile is not None:
        info = replace(info, **entry.at_profile(profile))
    return info


# ---------------------------------------------------------------------------------------------
# recipes


def dataset_recipes(dataset: str) -> tuple[str, ...]:
    """The recipes defined for ``dataset`` (empty for generated data sets)."""
    return tuple(DATASETS[dataset].recipes)


def default_recipe(dataset: str) -> str | None:
    """``homoode`` where HomoODE defines the dataset, else ``plain``; None without recipes."""
    return default_recipe_of(dataset_recipes(dataset))


def preprocessing(dataset: str, recipe: str | None = None) -> Preprocessing:
    """The preprocessing record of ``dataset`` under ``recipe`` (None: the dataset's default)."""
    recipes = dataset_recipes(dataset)
    if not recipes:
        raise UnknownChoiceError(
            f"dataset {dataset!r} has no preprocessing recipes (it is generated or not an image "
            f"set); pass recipe=None"
        )
    name = default_recipe(dataset) if recipe is None else recipe
    if name not in RECIPES:
        check_choice("recipe", name, RECIPES)
    check_choice(f"recipe for dataset {dataset!r}", name, recipes)
    record = DATASETS[dataset].recipes[name]
    return record if isinstance(record, Preprocessing) else record()


def preprocessing_table() -> list[Preprocessing]:
    """Every (dataset, recipe) record, e.g. for the book's hyperparameter table."""
    return [preprocessing(d, r) for d in dataset_names() for r in dataset_recipes(d)]


# ---------------------------------------------------------------------------------------------
# availability


def _folder(name: str, root: str | os.PathLike) -> Path:
    return resolve(root) / DATASETS[name].folder


def _missing(name: str, root: str | os.PathLike) -> list[str]:
    """Missing files of a file-backed set (empty when present or generated)."""
    entry = DATASETS[name]
    if entry.folder is None:
        return []
    folder = _folder(name, root)
    if entry.locate is not None:
        folder = entry.locate(folder)
    return [rel for rel in entry.required_files
            if not ((folder / rel).is_dir() if rel.endswith("/") else (folder / rel).is_file())]


def _missing_message(name: str, root: str | os.PathLike, missing: list[str]) -> str:
    folder = _folder(name, root)
    required = DATASETS[name].required_files
    if len(missing) == len(required):
        where = f"none of {', '.join(required)} found under {folder}/"
    else:
        where = (
            f"under {folder}/ these are missing: {', '.join(missing)} (of {', '.join(required)})"
        )
    return f"dataset {name!r} is missing: {where}. How to get it: {DATASETS[name].howto(folder)}"


def check_available(names: Iterable[str], root: str | os.PathLike = "data") -> None:
    """Raise one :class:`DatasetMissingError` listing every set of ``names`` not on disk.

    Generated and bundled sets are always available; unknown names raise UnknownChoiceError.
    """
    names = [DATASETS.check(name) for name in names]
    problems = [
        _missing_message(name, root, missing) for name in names if (missing := _missing(name, root))
    ]
    if problems:
        header = f"{len(problems)} dataset(s) missing under {resolve(root)}:"
        raise DatasetMissingError("\n".join([header, *(f"- {p}" for p in problems)]))


def download_dataset(name: str, root: str | os.PathLike = "data") -> None:
    """Download a set into ``<root>/<folder>/`` (both splits); a no-op when it is present.

    Works for the sets whose entry has a ``download`` (torchvision's, the Tancik files; network
    needed). Tiny-ImageNet needs a Kaggle account and is placed by hand; generated sets need
    nothing. Failures raise :class:`DatasetMissingError` with the manual instructions.
    """
    entry = DATASETS[name]
    if not _missing(name, root):
        return
    folder = _folder(name, root)
    if entry.download is None:
        raise DatasetMissingError(
            f"dataset {name!r} cannot be downloaded automatically. {entry.howto(folder)}"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        entry.download(folder)
    except Exception as exc:  # network, HTTP, checksum, or disk errors: all mean "not there"
        raise DatasetMissingError(
            f"downloading dataset {name!r} into {folder}/ failed "
            f"({type(exc).__name__}: {exc}). {_missing_message(name, root, _missing(name, root))}"
        ) from exc
    missing = _missing(name, root)
    if missing:
        raise DatasetMissingError(
            f"download of {name!r} finished but files are still missing. "
            f"{_missing_message(name, root, missing)}"
        )


# ---------------------------------------------------------------------------------------------
# loading


def _resolve_augment(name: str, split: str, augment: bool | None, has_aug: bool) -> bool:
    if augment is None:
        return split == "train" and has_aug
    if augment and not has_aug:
        raise ValueError(
            f"dataset {name!r} has no augmentation under this recipe; pass augment=None or False"
        )
    return bool(augment)


def load_dataset(
    name: str,
    root: str | os.PathLike = "data",
    split: str = "train",
    profile: str = "smoke",
    augment: bool | None = None,
    download: bool = False,
    recipe: str | None = None,
    **options,
) -> Dataset:
    """Load a data set by name; items are ``(input tensor, target)``.

    - ``root``: the data folder (relative paths resolve against the repository root).
    - ``split``: ``"train"`` or ``"test"`` (image regression also ``"val"``).
    - ``profile``: ``"smoke"``, ``"cpu"`` or ``"paper"``; selects the default sizes of generated
      sets. Files on disk are read the same way in every profile.
    - ``augment``: None = the recipe's train augmentation on the train split only; True/False
      forces it (True where the recipe has none is an error).
    - ``download``: fetch missing torchvision/Tancik files first (network needed).
    - ``recipe``: whose preprocessing to use (see :mod:`deqode.data.recipes`); None = the
      dataset's default (``homoode`` where defined, else ``plain``). Sets with recipes only.
    - ``options``: generator/split arguments listed in ``dataset_info(name).options``.

    A missing file-backed set raises :class:`DatasetMissingError` naming the folder, the files
    and how to get them; there is never a fallback to other data. Sets with recipes carry
    ``.preprocessing`` and ``.augment`` attributes.
    """
    entry = DATASETS[name]
    check_profile(profile)
    check_choice(f"split of dataset {name!r}", split, entry.splits)
    for key in options:
        check_choice(f"option of dataset {name!r}", key, entry.options)
    folder = None
    if entry.folder is not None:
        if download:
            download_dataset(name, root)
        check_available([name], root)
        folder = _folder(name, root)
        folder = entry.locate(folder) if entry.locate is not None else folder
    if entry.recipes:
        prep = preprocessing(name, recipe)
        use_aug = _resolve_augment(name, split, augment, prep.has_augmentation)
        dataset = entry.loader(LoadRequest(name, split, profile, folder, options, prep, use_aug))
        dataset.preprocessing = prep
        dataset.augment = use_aug
        return dataset
    if recipe is not None:
        check_choice(f"recipe of dataset {name!r} (it has none)", recipe, [None])
    if augment:
        raise ValueError(f"dataset {name!r} has no recipes and so no augmentation")
    return entry.loader(LoadRequest(name, split, profile, folder, options))
