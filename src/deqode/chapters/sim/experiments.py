"""SIM's runs as :class:`deqode.train.TrainConfig` s, registered as CLI experiments.

Every (task, data, model, seed) run of a setup is one configuration, the same for ``python -m
deqode train NAME --profile P`` and for the notebooks (:mod:`.runs`, which read a finished run
by :func:`deqode.train.fit_or_reuse`). Names: ``sim-t1-<dataset>-<model>-seed<s>``,
``sim-t2-<image>[-<i>]-<model>-seed<s>``, ``sim-t3-<model>-seed<s>``; ``<model>`` is the SIM
variant (``single-tier``, ``two-tier``, ``rff-only``) or the baseline's kind. A run that departs
from the registered one (an ``epochs`` / ``iterations`` override, a searched configuration) gets
a tag in its name, so that it never meets a registered run's records.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from torch import Tensor, nn

from deqode.chapters import register_experiment
from deqode.chapters.sim.configs import (
    ClassificationSetup,
    CopyMemorySetup,
    ModelSpec,
    RegressionSetup,
    classification_setup,
    copy_memory_setup,
    regression_setup,
)
from deqode.choices import PROFILES
from deqode.metrics import Accumulator
from deqode.models import implicit2, mondeq, sim
from deqode.train.tasks import Sequence

#: lr mode of the SIM setups -> the schedule of deqode.train (StepLR per epoch, constant, 1cycle)
SCHEDULE_OF_LR_MODE = {"step": "steplr", "constant": "constant", "1cycle": "1cycle"}


def basis_mondeq(basis: dict[str, Any], **kwargs: Any) -> nn.Module:
    """The monDEQ over SIM's convolutional basis (the classification baseline of the smoke and
    cpu profiles)."""
    features = sim.ConvBasis(**basis)
    return mondeq.BasisMonDEQ(features, features.out_dim, **kwargs)


#: model factories of the kinds without a named build
_FACTORIES = {"basis-mondeq": basis_mondeq, "deq-mfn": implicit2.DEQMFN,
              "deq-tcn": sim.TemporalDEQ}


def model_of(spec: ModelSpec, **overrides: Any) -> dict[str, Any]:
    """``model`` and ``model_kwargs`` of a TrainConfig for ``spec`` (a named build, or a
    factory of :data:`_FACTORIES`)."""
    kwargs = {**spec.kwargs, **overrides}
    return {"model": spec.build if spec.build else _FACTORIES[spec.kind], "model_kwargs": kwargs}


def model_key(spec: ModelSpec) -> str:
    return spec.variant if spec.kind == "sim" else spec.kind


def classification_config(setup: ClassificationSetup, dataset: str, spec: ModelSpec, seed: int,
                          *, settings: dict[str, Any] | None = None,
                          overrides: dict[str, Any] | None = None, tag: str = "") -> Any:
    """T1 run: monDEQ's ``train.py`` as SIM uses it (Adam, cross-entropy, no augmentation, the
    loader shuffled by its own generator seeded 0, the setup's lr mode), every step recorded.
    ``settings`` (epochs, batch_size, lr, lr_mode, steplr_step) default to the setup's with the
    spec's own training overrides; ``overrides`` change the model's constructor arguments."""
    from deqode.train import TrainConfig

    s = {"epochs": setup.epochs, "batch_size": setup.batch_size, "lr": setup.lr,
         "lr_mode": setup.lr_mode, "steplr_step": setup.steplr_step, **spec.train,
         **(settings or {})}
    return TrainConfig(
        name=f"sim-t1-{dataset}-{model_key(spec)}{tag}-seed{seed}",
        **model_of(spec, **(overrides or {})), dataset=dataset,
        dataset_kwargs={"recipe": "sim", **setup.data_options}, epochs=s["epochs"],
        batch_size=s["batch_size"], test_batch_size=setup.test_batch_size, drop_last=False,
        lr=s["lr"], schedule=SCHEDULE_OF_LR_MODE[s["lr_mode"]], step_size=s["steplr_step"],
        gamma=0.1, seed=seed, data_order="shuffle", shuffle_seed=0, record_steps=True,
        measure_memory=False, description=f"SIM T1, {spec.label}")


def pixel_count(name: str, options: dict[str, Any], profile: str) -> int:
    """Pixels in each split of an image-regression set: the ``(S/2)²`` grid of an S×S image."""
    from deqode.data import images

    default = 512 if name.startswith("tancik") else images.DEFAULT_SIZE[profile]
    return (int(options.get("size", default)) // 2) ** 2


def regression_config(setup: RegressionSetup, name: str, options: dict[str, Any],
                      spec: ModelSpec, seed: int, *, iterations: int | None = None) -> Any:
    """T2 run: full-batch Adam on MSE at a constant lr, one iteration per epoch, every step
    recorded; a checkpoint every tenth of the run."""
    from deqode.train import TrainConfig

    n_iter = iterations or setup.iterations
    tag = "" if iterations in (None, setup.iterations) else f"-it{n_iter}"
    image = f"-{options['image']}" if "image" in options else ""
    pixels = pixel_count(name, options, setup.profile)
    return TrainConfig(
        name=f"sim-t2-{name}{image}-{model_key(spec)}{tag}-seed{seed}", **model_of(spec),
        dataset=name, dataset_kwargs=dict(options), task="regression", epochs=n_iter,
        batch_size=pixels, test_batch_size=pixels, drop_last=False,
        lr=spec.train.get("lr", setup.lr), schedule="constant", seed=seed,
        data_order="full_batch", record_steps=True, measure_memory=False,
        checkpoint_every=max(n_iter // 10, 1), description=f"SIM T2, {spec.label}")


class CopyMemoryTask(Sequence):
    """Copy memory (:class:`~deqode.train.tasks.Sequence`) whose evaluation also splits the test
    accuracy by position: ``test_blank_acc`` on the ``T + 10`` blank positions,
    ``test_digit_acc`` on the last 10 (the digits to recall) and ``test_digit_blank``, the share
    of those predicted as a blank (all in percent)."""

    name = "copy-memory"

    def evaluate(self, model: nn.Module, batch: Any, acc: Accumulator) -> None:
        x, y = batch
        predicted = model(x)
        super().evaluate(lambda _: predicted, batch, acc)  # loss and accuracy, one forward pass
        labels: Tensor = predicted.argmax(-1)
        blank, digit = (labels[:, :-10], y[:, :-10]), (labels[:, -10:], y[:, -10:])
        acc.add("test_blank_acc", 100.0 * float((blank[0] == blank[1]).sum()), blank[1].numel())
        acc.add("test_digit_acc", 100.0 * float((digit[0] == digit[1]).sum()), digit[1].numel())
        acc.add("test_digit_blank", 100.0 * float((digit[0] == 0).sum()), digit[1].numel())


#: history keys of :class:`CopyMemoryTask` -> the chapter's names of the position accuracies
POSITION_KEYS = {"test_blank_acc": "blank positions", "test_digit_acc": "digit positions",
                 "test_digit_blank": "digit positions predicted blank"}


class CopyMemoryData:
    """The copy-memory splits of a setup whose sizes differ from the profile's (a dataset
    factory: split -> data set)."""

    def __init__(self, setup: CopyMemorySetup, data_root: str = "data") -> None:
        self.setup, self.data_root = setup, data_root
        self.__name__ = self.__qualname__ = "copy_memory"  # as TrainConfig records a factory

    def __call__(self, split: str) -> Any:
        from deqode.data import load_dataset

        size = self.setup.n_train if split == "train" else self.setup.n_test
        return load_dataset("copy-memory", root=self.data_root, split=split,
                            profile=self.setup.profile, T=self.setup.T,
                            **({"n_samples": size} if size else {}))


def copy_memory_config(setup: CopyMemorySetup, spec: ModelSpec, seed: int, *,
                       epochs: int | None = None) -> Any:
    """T3 run: Adam (``eps`` 1e-5) at a constant lr on mini-batches in order, every step
    recorded, the test set evaluated (with the position accuracies) after every epoch."""
    from deqode.train import TrainConfig

    n_epochs = epochs or setup.epochs
    tag = "" if n_epochs == setup.epochs else f"-ep{n_epochs}"
    sizes = {"n_train": setup.n_train, "n_test": setup.n_test}
    data: dict[str, Any] = {"dataset": "copy-memory", "dataset_kwargs": {"T": setup.T}}
    if any(sizes.values()):
        data = {"dataset": CopyMemoryData(setup), "dataset_kwargs": {"T": setup.T, **sizes}}
    return TrainConfig(
        name=f"sim-t3-{model_key(spec)}{tag}-seed{seed}", **model_of(spec), **data,
        task=CopyMemoryTask(), epochs=n_epochs, batch_size=setup.batch_size,
        test_batch_size=setup.batch_size, drop_last=False, lr=setup.lr,
        adam_eps=setup.adam_eps, schedule="constant", seed=seed, data_order="in_order",
        record_steps=True, measure_memory=False, description=f"SIM T3, {spec.label}")


def experiment_configs(profile: str) -> dict[str, Callable[[], Any]]:
    """Every run of the three tasks in ``profile``, by name: a factory of its TrainConfig."""
    factories = []
    cls = classification_setup(profile)
    factories += [partial(classification_config, cls, dataset, spec, seed)
                  for dataset in cls.datasets for spec in cls.models[dataset]
                  for seed in cls.seeds]
    reg = regression_setup(profile)
    factories += [partial(regression_config, reg, name, options, spec, seed)
                  for name, options in reg.images for spec in reg.models
                  for seed in reg.run_seeds]
    cpm = copy_memory_setup(profile)
    factories += [partial(copy_memory_config, cpm, spec, seed)
                  for spec in cpm.models for seed in cpm.run_seeds]
    return {factory().name: factory for factory in factories}


for _profile in PROFILES:
    for _name, _factory in experiment_configs(_profile).items():
        register_experiment(_name, _profile, _factory)


__all__ = ["POSITION_KEYS", "SCHEDULE_OF_LR_MODE", "CopyMemoryData", "CopyMemoryTask",
           "basis_mondeq", "classification_config", "copy_memory_config", "experiment_configs",
           "model_key", "model_of", "pixel_count", "regression_config"]
