"""The built-in data sets, each registered once with everything about it (:class:`DatasetEntry`).

The order here is the order of :func:`~deqode.data.dataset_names`. Readers and generators live in
:mod:`deqode.data.vision` (files on disk), :mod:`deqode.data.digits` (bundled),
:mod:`deqode.data.synthetic` and :mod:`deqode.data.images` (generated); recipes' numbers come
from the sources each :class:`Preprocessing` names.
"""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from deqode.data import digits, images, integrity, synthetic, vision
from deqode.data.recipes import (
    CIFAR10_MEAN,
    CIFAR10_STD_COMMON,
    CIFAR10_STD_PIXEL,
    IMAGENET_MEAN,
    IMAGENET_STD,
    MNIST_MEAN,
    MNIST_STD,
    SVHN_MEAN,
    SVHN_STD,
    Preprocessing,
    plain,
)
from deqode.data.registry import DatasetEntry, LoadRequest, register_dataset

# ---------------------------------------------------------------------------------------------
# recipes of the image classification sets (see deqode.data.recipes for what each recipe is)

_HOMOODE = "HomoODE official code"
_MNIST_RECIPES = {
    "plain": plain("mnist"),
    "nag": Preprocessing("mnist", "nag", crop=28, crop_padding=4,
                         source="torchdiffeq examples/odenet_mnist.py (a companion "
                                "choice): no normalisation"),
    "sim": Preprocessing("mnist", "sim", MNIST_MEAN, MNIST_STD,
                         source="SIM official code `run_imgcl.py`"),
    "cdeq": Preprocessing("mnist", "cdeq",
                          source="Continuous DEQ v1 code `mnist_fc.jl`: statistics computed but "
                                 "never applied (code bug)"),
}
RECIPES = {
    "mnist": _MNIST_RECIPES,
    "svhn": {
        "plain": plain("svhn"),
        "sim": Preprocessing("svhn", "sim", SVHN_MEAN, SVHN_STD,
                             source="SIM official code `run_imgcl.py`"),
    },
    "cifar10": {
        "plain": plain("cifar10"),
        "homoode": Preprocessing(
            "cifar10", "homoode", IMAGENET_MEAN, IMAGENET_STD, flip_p=0.2, crop=32,
            crop_padding=4,
            source=f"{_HOMOODE}, homoinit_cifar10.py: flip p=0.2 and ImageNet statistics (quirks)",
        ),
        "sim": Preprocessing("cifar10", "sim", CIFAR10_MEAN, CIFAR10_STD_PIXEL,
                             source="SIM official code `run_imgcl.py`"),
        "cdeq": Preprocessing("cifar10", "cdeq", CIFAR10_MEAN, CIFAR10_STD_COMMON,
                              source="Continuous DEQ official code `cifar10/tiny.yml`: no "
                                     "augmentation"),
        "cdeq-large": Preprocessing("cifar10", "cdeq-large", CIFAR10_MEAN, CIFAR10_STD_COMMON,
                                    flip_p=0.5, resize=42, crop=32,
                                    source="Continuous DEQ official code `cifar10/large.yml`"),
    },
    "cifar100": {
        "plain": plain("cifar100"),
        "homoode": Preprocessing("cifar100", "homoode", IMAGENET_MEAN, IMAGENET_STD, flip_p=0.5,
                                 crop=32, crop_padding=4,
                                 source=f"{_HOMOODE}, homoinit_cifar100.py: ImageNet statistics"),
    },
    "tiny-imagenet": {
        "plain": plain("tiny-imagenet"),
        "homoode": Preprocessing("tiny-imagenet", "homoode", CIFAR10_MEAN, CIFAR10_STD_COMMON,
                                 flip_p=0.5, crop=64, crop_padding=8,
                                 source=f"{_HOMOODE}, homoinit_tiny.py: CIFAR statistics (quirk)"),
    },
    "imagenet": {
        "plain": Preprocessing("imagenet", "plain", eval_resize=224,
                               source="resize to 224x224 (the images differ in size), ToTensor"),
        "cdeq": Preprocessing("imagenet", "cdeq", IMAGENET_MEAN, IMAGENET_STD, flip_p=0.5,
                              resize=256, crop=224, eval_resize=224,
                              source="Continuous DEQ official code `imagenet/small.yml`: train "
                                     "resize 256x256, flip, crop 224; test resize 224x224"),
    },
    # MNIST-8k (a subset of MNIST's test set) takes MNIST's recipes unchanged.
    "mnist-8k": {
        recipe: replace(record, dataset="mnist-8k", source=f"{record.source} (as for mnist)")
        for recipe, record in _MNIST_RECIPES.items()
    },
    "digits": {**{recipe: Preprocessing("digits", recipe, source=source)
                  for recipe, source in digits.RECIPE_SOURCES.items() if recipe != "sim"},
               "sim": digits.sim_preprocessing},
}

# ---------------------------------------------------------------------------------------------
# image classification


def _load_torchvision(request: LoadRequest):
    return vision.load_torchvision(request.name, request.folder, request.split,
                                   request.preprocessing, request.augment)


_TV = "torchvision {cls}, files under <root>/{name}/ (download=True fetches them)"
for _name, _shape, _classes, _cls, _sizes in (
    ("mnist", (1, 28, 28), 10, "MNIST", {"train": 60_000, "test": 10_000}),
    ("svhn", (3, 32, 32), 10, "SVHN (train and test; 'extra' unused)",
     {"train": 73_257, "test": 26_032}),
    ("cifar10", (3, 32, 32), 10, "CIFAR10", {"train": 50_000, "test": 10_000}),
    ("cifar100", (3, 32, 32), 100, "CIFAR100 (fine labels)", {"train": 50_000, "test": 10_000}),
):
    register_dataset(DatasetEntry(
        _name, "classification", _shape, _classes, _TV.format(cls=_cls, name=_name),
        _load_torchvision, sizes=_sizes, recipes=RECIPES[_name], folder=_name,
        required_files=vision.REQUIRED_FILES[_name],
        howto=partial(vision.torchvision_howto, _name),
        download=partial(vision.download_torchvision, _name),
        locate=partial(integrity.torchvision_folder, _name),  # or a torchvision folder as it is
    ))

register_dataset(DatasetEntry(
    "tiny-imagenet", "classification", (3, 64, 64), 200,
    f"Kaggle tiny-imagenet ({vision.KAGGLE_TINY_URL}), placed by hand under "
    "<root>/tiny-imagenet/; test split = the official val set, labels = sorted wnids",
    lambda r: vision.TinyImageNet(r.folder, r.split, r.preprocessing.image_transform(r.augment)),
    sizes={"train": 100_000, "test": 10_000}, recipes=RECIPES["tiny-imagenet"],
    folder="tiny-imagenet", required_files=vision.REQUIRED_FILES["tiny-imagenet"],
    locate=vision.tiny_imagenet_dir, howto=vision.tiny_imagenet_howto,
))
register_dataset(DatasetEntry(
    "imagenet", "classification", (3, 224, 224), 1000,
    f"ImageNet ILSVRC2012 ({vision.IMAGENET_URL}), placed by hand under <root>/imagenet/ and "
    "read by torchvision ImageNet; test split = the official val set, labels = sorted wnids",
    lambda r: vision.load_imagenet(r.folder, r.split, r.preprocessing, r.augment),
    sizes={"train": 1_281_167, "test": 50_000}, recipes=RECIPES["imagenet"], folder="imagenet",
    required_files=vision.REQUIRED_FILES["imagenet"], howto=vision.imagenet_howto,
))
register_dataset(DatasetEntry(
    "mnist-8k", "classification", (1, 28, 28), 10,
    f"{vision.MNIST8K_LABEL}: the first 8,000 digits of the official MNIST test set, "
    "versioned in data/mnist-8k/ (CC BY-SA 3.0, LeCun, Cortes, Burges); test = every fourth "
    "image from index 3",
    lambda r: vision.Mnist8k(r.folder, r.split, r.preprocessing, r.augment, **r.options),
    sizes={"train": 6000, "test": 2000}, options=("check_md5",), recipes=RECIPES["mnist-8k"],
    folder="mnist-8k", required_files=vision.REQUIRED_FILES["mnist-8k"],
    howto=vision.mnist8k_howto,
))
register_dataset(DatasetEntry(
    "digits", "classification", (1, 8, 8), 10,
    "sklearn.datasets.load_digits (bundled, offline): pixels / 16, stratified split "
    "(test_fraction 0.2, seed 0)",
    lambda r: digits.DigitsDataset(r.split, r.preprocessing, **r.options),
    sizes={"train": 1437, "test": 360}, options=("seed", "test_fraction"),
    recipes=RECIPES["digits"],
))

# ---------------------------------------------------------------------------------------------
# generated: densities (CNF), spirals (latent ODE), copy memory (sequence models)

for _density in synthetic.DENSITY_NAMES:
    register_dataset(DatasetEntry(
        _density, "density", (2,), None,
        f"generated: {synthetic.DENSITY_DESCRIPTIONS[_density]}",
        lambda r: synthetic.density_dataset(r.name, r.split, r.profile, **r.options),
        options=("n_samples", "seed"),
        at_profile=lambda p: {"sizes": dict(synthetic.DENSITY_SIZES[p])},
    ))


def _spirals_at(profile: str) -> dict:
    s = synthetic.SPIRAL_SIZES[profile]
    return {"input_shape": (s["n_sample"], 2),
            "sizes": {"train": s["n_spirals"], "test": s["n_spirals"]}}


register_dataset(DatasetEntry(
    "spirals", "time-series", (20, 2), None,
    "generated: noisy windows of two spirals (torchdiffeq examples/latent_ode.py)",
    lambda r: synthetic.SpiralDataset(r.split, r.profile, **r.options),
    options=("n_spirals", "n_total", "n_sample", "noise_std", "a", "b", "stop", "seed"),
    at_profile=_spirals_at,
))


def _copy_memory_at(profile: str) -> dict:
    s = synthetic.COPY_MEMORY_SIZES[profile]
    return {"input_shape": (1, s["T"] + 20), "sizes": {"train": s["train"], "test": s["test"]}}


register_dataset(DatasetEntry(
    "copy-memory", "sequence", (1, 30), 10,
    "generated: TCN copy-memory task as SIM generates it (official code `run_cpmem.py`)",
    lambda r: synthetic.copy_memory_dataset(r.split, r.profile, **r.options),
    options=("T", "n_samples", "seed"), at_profile=_copy_memory_at,
))

# ---------------------------------------------------------------------------------------------
# image regression: pixel coordinates -> RGB, train/val/test pixels

_PIXEL_SPLITS = ("train", "val", "test")


def _load_generated_image(request: LoadRequest):
    size = int(request.options.get("size", images.DEFAULT_SIZE[request.profile]))
    if request.name == "rendered-text":
        image = images.rendered_text_image(size)
    else:
        image = images.sample_image(request.name, size)
    return images.PixelRegressionDataset(image, request.split)


for _img, _src in (
    ("sample-china", "sklearn load_sample_image('china.jpg') (bundled), square, resized"),
    ("sample-flower", "sklearn load_sample_image('flower.jpg') (bundled), square, resized"),
    ("rendered-text", "Pillow-rendered coloured text on white (bundled font)"),
):
    register_dataset(DatasetEntry(
        _img, "regression", (2,), None, f"generated: {_src}; pixel coordinates -> RGB",
        _load_generated_image, splits=_PIXEL_SPLITS, options=("size",),
        at_profile=lambda p: {"sizes": {k: (images.DEFAULT_SIZE[p] // 2) ** 2
                                        for k in _PIXEL_SPLITS}},
    ))


def _load_tancik(request: LoadRequest):
    path = request.folder / images.TANCIK_FILES[request.name]
    image = images.tancik_image(path, int(request.options.get("image", 0)),
                                request.options.get("size"))
    return images.PixelRegressionDataset(image, request.split)


for _img, _file in images.TANCIK_FILES.items():
    register_dataset(DatasetEntry(
        _img, "regression", (2,), None,
        f"Tancik et al. Fourier-features {_file} (Google Drive id "
        f"{images.TANCIK_DRIVE_IDS[_img]}) under <root>/{images.TANCIK_FOLDER}/; "
        "pixel coordinates -> RGB",
        _load_tancik, splits=_PIXEL_SPLITS, sizes={k: 256 ** 2 for k in _PIXEL_SPLITS},
        options=("image", "size"), folder=images.TANCIK_FOLDER, required_files=(_file,),
        howto=partial(images.tancik_howto, _img), download=partial(images.download_tancik, _img),
    ))
