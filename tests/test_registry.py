"""The one registry pattern (deqode.choices.Registry): models, data sets and experiments.

A toy data set is added through the public API only (no other file touched) and trained on with
``deqode.train.fit``; unknown names list the valid choices; every name is registered once; the
facts that used to live twice (gradient modes, HomoODE's lr_init/freq/grad_mode) live once.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.data import TensorDataset

from deqode import chapters, choices, data, models
from deqode.choices import Registry, UnknownChoiceError
from deqode.train import TrainConfig, fit

TOY = "toy-blobs"
TOY_SIZES = {"train": 96, "test": 48}


def load_toy(request: data.LoadRequest) -> TensorDataset:
    """Three classes of 1x8x8 images: noise around a class-dependent level."""
    seed = int(request.options.get("seed", 0))
    gen = torch.Generator().manual_seed(seed * 2 + (request.split == "test"))
    n = TOY_SIZES[request.split]
    labels = torch.arange(n) % 3
    images = labels.view(-1, 1, 1, 1).float() + 0.3 * torch.randn(n, 1, 8, 8, generator=gen)
    return TensorDataset(images, labels)


@pytest.fixture
def toy():
    entry = data.register_dataset(data.DatasetEntry(
        TOY, "classification", (1, 8, 8), 3, "generated: three noisy grey levels (test toy)",
        load_toy, sizes=TOY_SIZES, options=("seed",),
    ))
    yield entry
    data.unregister_dataset(TOY)


def test_a_toy_dataset_registers_loads_and_trains(toy, tmp_path):
    assert TOY in data.dataset_names()
    info = data.dataset_info(TOY)
    assert (info.input_shape, info.num_classes, info.sizes) == ((1, 8, 8), 3, TOY_SIZES)
    data.check_available([TOY], root=tmp_path)  # generated: always available
    train = data.load_dataset(TOY, seed=1)
    assert len(train) == 96 and train[0][0].shape == (1, 8, 8)
    with pytest.raises(UnknownChoiceError, match=r"option of dataset 'toy-blobs'.*'seed'"):
        data.load_dataset(TOY, size=3)
    with pytest.raises(ValueError, match="no augmentation"):
        data.load_dataset(TOY, augment=True)

    config = TrainConfig(name="toy-run", model="node-digits", dataset=TOY,
                         model_kwargs={"num_classes": 3}, epochs=1, batch_size=32,
                         test_batch_size=48, lr=1e-2)
    result = fit(config, profile="smoke", device="cpu", results_dir=tmp_path, quiet=True,
                 threads=1)
    assert result.state == "completed", result.reason
    assert len(result.history) == 1 and result.out_dir == tmp_path / "smoke" / "toy-run"
    assert 0.0 <= result.history[0]["test_acc"] <= 1.0


def test_the_toy_is_gone_after_unregistering():
    assert TOY not in data.dataset_names()
    with pytest.raises(UnknownChoiceError, match=r"unknown dataset 'toy-blobs'"):
        data.unregister_dataset(TOY)


def test_a_dataset_entry_is_checked_when_registered():
    with pytest.raises(UnknownChoiceError, match=r"task of dataset 'x'.*'classification'"):
        data.register_dataset(data.DatasetEntry("x", "images", (1,), None, "s", load_toy))
    with pytest.raises(UnknownChoiceError, match=r"recipe of dataset 'x'.*'homoode'"):
        data.register_dataset(data.DatasetEntry("x", "classification", (1,), 2, "s", load_toy,
                                                recipes={"mine": None}))
    with pytest.raises(ValueError, match="required_files and a howto"):
        data.register_dataset(data.DatasetEntry("x", "classification", (1,), 2, "s", load_toy,
                                                folder="x"))
    assert "x" not in data.dataset_names()


# ------------------------------------------------------------------------------------------------
# unknown names list the valid choices


def test_unknown_model_lists_the_valid_models():
    with pytest.raises(UnknownChoiceError) as err:
        models.build("homoode-imagenet")
    msg = str(err.value)
    assert msg.startswith("unknown model 'homoode-imagenet'; valid choices: ")
    assert all(repr(name) in msg for name in models.names())
    with pytest.raises(UnknownChoiceError, match=r"unknown model 'x'.*'sim-two-mnist'"):
        models.entry("x")


@pytest.mark.parametrize("call", [
    lambda: data.load_dataset("imagenet-21k"),
    lambda: data.dataset_info("imagenet-21k"),
    lambda: data.check_available(["digits", "imagenet-21k"]),
    lambda: data.download_dataset("imagenet-21k"),
    lambda: data.preprocessing("imagenet-21k"),
])
def test_unknown_dataset_lists_the_valid_datasets(call):
    with pytest.raises(UnknownChoiceError) as err:
        call()
    msg = str(err.value)
    assert msg.startswith("unknown dataset 'imagenet-21k'; valid choices: ")
    assert all(repr(name) in msg for name in data.dataset_names())


def test_unknown_experiment_lists_the_valid_experiments():
    with pytest.raises(UnknownChoiceError, match=r"unknown experiment 'x' for profile 'smoke'; "
                                                 r"valid choices: 'anode-digits'"):
        chapters.get("x", "smoke")


# ------------------------------------------------------------------------------------------------
# every name registered exactly once


def test_each_model_is_registered_exactly_once():
    listed = models.names()
    assert len(listed) == len(set(listed)) == len(models.REGISTRY)
    from deqode.models import continuous_deq, mondeq, sim

    families = [*sim.names(), *mondeq.names(), *continuous_deq.build_names()]
    families += [f"{m}-{d}" for m in models.zoo.HOMONET_MODELS for d in models.DATASETS]
    assert sorted(families) == listed  # each family's builds, and nothing twice
    with pytest.raises(ValueError, match="model 'homoode-digits' is already registered"):
        models.register_model(models.entry("homoode-digits"))


def test_each_dataset_is_registered_exactly_once():
    listed = data.dataset_names()
    assert len(listed) == len(set(listed))
    with pytest.raises(ValueError, match="dataset 'digits' is already registered"):
        data.register_dataset(data.registry.DATASETS["digits"])


def test_each_experiment_is_registered_once_per_profile():
    with pytest.raises(ValueError, match="'homoode-digits' is already registered for profile"):
        chapters.register_experiment("homoode-digits", "smoke", lambda: None)


def test_registry_basics():
    reg: Registry[int] = Registry("thing", sort=True)
    reg.register("b", 2)
    reg.register("a", 1)
    assert reg.names() == ["a", "b"] and list(reg) == ["a", "b"] and reg["b"] == 2
    assert "a" in reg and len(reg) == 2 and reg.items() == [("a", 1), ("b", 2)]
    with pytest.raises(UnknownChoiceError, match="unknown thing 'c'; valid choices: 'a', 'b'"):
        reg["c"]
    assert reg.unregister("a") == 1 and reg.names() == ["b"]


# ------------------------------------------------------------------------------------------------
# facts that live once


def test_gradient_modes_are_defined_once():
    from deqode.chapters.homoode import configs
    from deqode.models import continuous_deq, layers, solved_field

    assert models.HOMOODE_GRAD_MODES is choices.GRAD_MODES is configs.GRAD_MODES
    for alias in (layers.ODE_GRAD_MODES, solved_field.GRAD_MODES, continuous_deq.NODE_GRAD_MODES):
        assert alias is choices.ODE_GRAD_MODES
    assert choices.GRAD_MODES == ("backprop", "adjoint", "frozen_adjoint")


def test_homoode_init_settings_live_in_the_model_builds():
    from deqode.chapters.homoode import configs

    fields = {f.name for f in dataclasses.fields(configs.ReleasedScript)}
    assert fields == {"key", "dataset", "seed"}
    for key, script in configs.PAPER_SCRIPTS.items():
        arch = models.DATASETS[key]
        cfg = chapters.get(f"homoode-{key}", "paper")
        assert (cfg.init_point.lr, cfg.init_point.freq) == (arch.lr_init, arch.freq)
        assert cfg.model_kwargs["grad_mode"] == arch.homoode_grad_mode
        assert script.build is arch
        assert models.entry(f"homoode-{key}").kwargs["lr_init"] == arch.lr_init
