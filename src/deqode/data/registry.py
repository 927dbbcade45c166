"""The registry of data sets by name: info, availability checks, downloads and loading."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

from torch.utils.data import Dataset

from deqode.choices import check_choice, check_profile
from deqode.data import images, synthetic, vision
from deqode.data.recipes import dataset_recipes, default_recipe, preprocessing
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


_TV = "torchvision {cls}, files under <root>/{name}/ (download=True fetches them)"
_GENERATED_OPTIONS = {
    "density": ("n_samples", "seed"),
    "spirals": ("n_spirals", "n_total", "n_sample", "noise_std", "a", "b", "stop", "seed"),
    "copy-memory": ("T", "n_samples", "seed"),
    "image": ("size",),
    "tancik": ("image", "size"),
}


def _image_info(name, shape, classes, source, sizes, folder=None, options=()) -> DatasetInfo:
    """An image classification set with train and test splits."""
    return DatasetInfo(
        name,
        "classification",
        shape,
        classes,
        source,
        folder=folder,
        options=options,
        sizes=sizes,
    )


def _pixel_regression_info(name, source, options_kind, folder=None) -> DatasetInfo:
    """An image fitted pixel by pixel: 2-D coordinates in, RGB out; train/val/test pixels."""
    return DatasetInfo(
        name,
        "regression",
        (2,),
        None,
        f"{source}; pixel coordinates -> RGB",
        folder=folder,
        splits=("train", "val", "test"),
        options=_GENERATED_OPTIONS[options_kind],
    )


#: The torchvision sets: name, item shape, classes, torchvision class (with notes), split sizes.
_TORCHVISION_INFO = (
    ("mnist", (1, 28, 28), 10, "MNIST", {"train": 60_000, "test": 10_000}),
    ("svhn", (3, 32, 32), 10, "SVHN (train and test; 'extra' unused)",
     {"train": 73_257, "test": 26_032}),
    ("cifar10", (3, 32, 32), 10, "CIFAR10", {"train": 50_000, "test": 10_000}),
    ("cifar100", (3, 32, 32), 100, "CIFAR100 (fine labels)", {"train": 50_000, "test": 10_000}),
)
_STATIC: dict[str, DatasetInfo] = {
    name: _image_info(name, shape, classes, _TV.format(cls=cls, name=name), sizes, folder=name)
    for name, shape, classes, cls, sizes in _TORCHVISION_INFO
}
_STATIC.update({
    "tiny-imagenet": _image_info(
        "tiny-imagenet",
        (3, 64, 64),
        200,
        f"Kaggle tiny-imagenet ({vision.KAGGLE_TINY_URL}), placed by hand under "
        "<root>/tiny-imagenet/; test split = the official val set, labels = sorted wnids",
        {"train": 100_000, "test": 10_000},
        folder="tiny-imagenet",
    ),
    "mnist-8k": _image_info(
        "mnist-8k",
        (1, 28, 28),
        10,
        f"{vision.MNIST8K_LABEL}: the first 8,000 digits of the official MNIST test set, "
        "versioned in data/mnist-8k/ (CC BY-SA 3.0, LeCun, Cortes, Burges); test = every fourth "
        "image from index 3",
        {"train": 6000, "test": 2000},
        folder="mnist-8k",
        options=("check_md5",),
    ),
    "digits": _image_info(
        "digits",
        (1, 8, 8),
        10,
        "sklearn.datasets.load_digits (bundled, offline): pixels / 16, stratified split "
        "(test_fraction 0.2, seed 0)",
        {"train": 1437, "test": 360},
        options=("seed", "test_fraction"),
    ),
})
for _density in synthetic.DENSITY_NAMES:
    _STATIC[_density] = DatasetInfo(
        _density,
        "density",
        (2,),
        None,
        f"generated: {synthetic.DENSITY_DESCRIPTIONS[_density]}",
        options=_GENERATED_OPTIONS["density"],
    )
_STATIC["spirals"] = DatasetInfo(
    "spirals",
    "time-series",
    (20, 2),
    None,
    "generated: noisy windows of two spirals (torchdiffeq examples/latent_ode.py, "
    "nag-solver.md §3.5)",
    options=_GENERATED_OPTIONS["spirals"],
)
_STATIC["copy-memory"] = DatasetInfo(
    "copy-memory",
    "sequence",
    (1, 30),
    10,
    "generated: TCN copy-memory task as SIM generates it (sim.md §3.4)",
    options=_GENERATED_OPTIONS["copy-memory"],
)
for _img, _src in (
    ("sample-china", "sklearn load_sample_image('china.jpg') (bundled), square, resized"),
    ("sample-flower", "sklearn load_sample_image('flower.jpg') (bundled), square, resized"),
    ("rendered-text", "Pillow-rendered coloured text on white (bundled font)"),
):
    _STATIC[_img] = _pixel_regression_info(_img, f"generated: {_src}", "image")
for _img, _file in images.TANCIK_FILES.items():
    _STATIC[_img] = _pixel_regression_info(
        _img,
        f"Tancik et al. Fourier-features {_file} (Google Drive id "
        f"{images.TANCIK_DRIVE_IDS[_img]}) under <root>/{images.TANCIK_FOLDER}/",
        "tancik",
        folder=images.TANCIK_FOLDER,
    )


def dataset_names() -> list[str]:
    """Every registered data set name, in registry order."""
    return list(_STATIC)


def _check_name(name: str) -> None:
    check_choice("dataset", name, dataset_names())


def dataset_info(name: str, profile: str = "smoke") -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name`` (shapes and sizes at ``profile``'s defaults)."""
    _check_name(name)
    check_profile(profile)
    info = _STATIC[name]
    recipe = default_recipe(name)
    if recipe is not None:
        prep = preprocessing(name, recipe)
        info = replace(
            info,
            recipes=dataset_recipes(name),
            default_recipe=recipe,
            mean=prep.mean,
            std=prep.std,
        )
    if info.task == "density":
        info = replace(info, sizes=dict(synthetic.DENSITY_SIZES[profile]))
    elif name == "spirals":
        s = synthetic.SPIRAL_SIZES[profile]
        info = replace(
            info,
            input_shape=(s["n_sample"], 2),
            sizes={"train": s["n_spirals"], "test": s["n_spirals"]},
        )
    elif name == "copy-memory":
        s = synthetic.COPY_MEMORY_SIZES[profile]
        sizes = {"train": s["train"], "test": s["test"]}
        info = replace(info, input_shape=(1, s["T"] + 20), sizes=sizes)
    elif info.task == "regression":
        side = images.DEFAULT_SIZE[profile] if info.folder is None else 512
        info = replace(info, sizes={k: (side // 2) ** 2 for k in info.splits})
    return info


# ---------------------------------------------------------------------------------------------
# availability


def _folder(name: str, root: str | os.PathLike) -> Path:
    return resolve(root) / _STATIC[name].folder


def _required_files(name: str) -> tuple[str, ...]:
    if name in images.TANCIK_FILES:
        return (images.TANCIK_FILES[name],)
    return vision.REQUIRED_FILES[name]


def _missing(name: str, root: str | os.PathLike) -> list[str]:
    """Missing files of a file-backed set (empty when present or generated)."""
    info = _STATIC[name]
    if info.folder is None:
        return []
    folder = _folder(name, root)
    if name in images.TANCIK_FILES:
        file = images.TANCIK_FILES[name]
        return [] if (folder / file).is_file() else [file]
    return vision.missing_files(name, folder)


def _howto(name: str, folder: Path) -> str:
    if name in vision.TORCHVISION_SETS:
        return vision.torchvision_howto(name, folder)
    if name == "tiny-imagenet":
        return vision.tiny_imagenet_howto(folder)
    if name == "mnist-8k":
        return (f"it is versioned in the repository: restore it with `git checkout -- "
                f"data/mnist-8k/`, or copy the two files of data/mnist-8k/README.md into {folder}/")
    file, drive = images.TANCIK_FILES[name], images.TANCIK_DRIVE_IDS[name]
    return (
        f"download it (network needed) with download=True or "
        f"`pip install gdown; gdown --id {drive} -O {folder / file}` "
        f"(https://drive.google.com/uc?id={drive}; the files of Tancik et al., Fourier Features)"
    )


def _missing_message(name: str, root: str | os.PathLike, missing: list[str]) -> str:
    folder = _folder(name, root)
    required = _required_files(name)
    if len(missing) == len(required):
        where = f"none of {', '.join(required)} found under {folder}/"
    else:
        where = (
            f"under {folder}/ these are missing: {', '.join(missing)} (of {', '.join(required)})"
        )
    return f"dataset {name!r} is missing: {where}. How to get it: {_howto(name, folder)}"


def check_available(names: Iterable[str], root: str | os.PathLike = "data") -> None:
    """Raise one :class:`DatasetMissingError` listing every set of ``names`` not on disk.

    Generated and bundled sets are always available; unknown names raise UnknownChoiceError.
    """
    names = list(names)
    for name in names:
        _check_name(name)
    problems = [
        _missing_message(name, root, missing) for name in names if (missing := _missing(name, root))
    ]
    if problems:
        header = f"{len(problems)} dataset(s) missing under {resolve(root)}:"
        raise DatasetMissingError("\n".join([header, *(f"- {p}" for p in problems)]))


def download_dataset(name: str, root: str | os.PathLike = "data") -> None:
    """Download a set into ``<root>/<folder>/`` (both splits); a no-op when it is present.

    Works for the torchvision sets and the Tancik files (network needed). Tiny-ImageNet needs a
    Kaggle account and is placed by hand; generated sets need nothing. Failures raise
    :class:`DatasetMissingError` with the manual instructions.
    """
    _check_name(name)
    if not _missing(name, root):
        return
    folder = _folder(name, root)
    if name in ("tiny-imagenet", "mnist-8k"):
        raise DatasetMissingError(
            f"dataset {name!r} cannot be downloaded automatically. {_howto(name, folder)}"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if name in vision.TORCHVISION_SETS:
            vision.download_torchvision(name, folder)
        else:
            from torchvision.datasets.utils import download_file_from_google_drive

            download_file_from_google_drive(
                images.TANCIK_DRIVE_IDS[name], str(folder), images.TANCIK_FILES[name]
            )
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


def _load_images(name, root, split, augment, recipe, options) -> Dataset:
    prep = preprocessing(name, recipe)
    use_aug = _resolve_augment(name, split, augment, prep.has_augmentation)
    if name == "digits":
        dataset = vision.DigitsDataset(split, prep, **options)
    elif name == "mnist-8k":
        dataset = vision.Mnist8k(_folder(name, root), split, prep, use_aug, **options)
    elif name == "tiny-imagenet":
        dataset = vision.TinyImageNet(_folder(name, root), split, prep.image_transform(use_aug))
    else:
        dataset = vision.load_torchvision(name, _folder(name, root), split, prep, use_aug)
    dataset.preprocessing = prep
    dataset.augment = use_aug
    return dataset


def _load_generated(name, root, split, profile, options) -> Dataset:
    if name in synthetic.DENSITY_NAMES:
        return synthetic.density_dataset(name, split, profile, **options)
    if name == "spirals":
        return synthetic.SpiralDataset(split, profile, **options)
    if name == "copy-memory":
        return synthetic.copy_memory_dataset(split, profile, **options)
    size = options.get("size", images.DEFAULT_SIZE[profile])
    if name in images.TANCIK_FILES:
        path = _folder(name, root) / images.TANCIK_FILES[name]
        image = images.tancik_image(path, int(options.get("image", 0)), options.get("size"))
    elif name == "rendered-text":
        image = images.rendered_text_image(int(size))
    else:
        image = images.sample_image(name, int(size))
    return images.PixelRegressionDataset(image, split)


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
    - ``profile``: ``"smoke"`` or ``"paper"``; selects the default sizes of generated sets. Files
      on disk are read the same way in both profiles.
    - ``augment``: None = the recipe's train augmentation on the train split only; True/False
      forces it (True where the recipe has none is an error).
    - ``download``: fetch missing torchvision/Tancik files first (network needed).
    - ``recipe``: whose preprocessing to use (see :mod:`deqode.data.recipes`); None = the
      dataset's default (``homoode`` where defined, else ``plain``). Image classification only.
    - ``options``: generator/split arguments listed in ``dataset_info(name).options``.

    A missing file-backed set raises :class:`DatasetMissingError` naming the folder, the files
    and how to get them; there is never a fallback to other data. Image classification sets carry
    ``.preprocessing`` and ``.augment`` attributes.
    """
    _check_name(name)
    check_profile(profile)
    info = _STATIC[name]
    check_choice(f"split of dataset {name!r}", split, info.splits)
    for key in options:
        check_choice(f"option of dataset {name!r}", key, info.options)
    if info.folder is not None:
        if download:
            download_dataset(name, root)
        check_available([name], root)
    if info.task == "classification":
        return _load_images(name, root, split, augment, recipe, options)
    if recipe is not None:
        check_choice(f"recipe of dataset {name!r} (it has none)", recipe, [None])
    if augment:
        raise ValueError(f"dataset {name!r} is generated and has no augmentation")
    return _load_generated(name, root, split, profile, options)
