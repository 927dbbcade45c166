"""Task runners (what the notebooks call): every model of a setup, per seed, read from the cache
when a finished run with the same configuration exists.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from deqode.experiments.sim.configs import (
    ClassificationSetup,
    CopyMemorySetup,
    ModelSpec,
    RegressionSetup,
    build_model,
)
from deqode.experiments.sim.loops import (
    _stack,
    final_run_seeds,
    seed_all,
    train_classifier,
    train_copy_memory,
    train_regression,
)
from deqode.experiments.sim.search import (
    _sim_overrides,
    run_search,
    search_objective,
    split_train_val,
)

# --------------------------------------------------------------------------------------------------
# task runners (what the notebooks call)
# --------------------------------------------------------------------------------------------------


def _train_settings(setup: ClassificationSetup, spec: ModelSpec) -> dict[str, Any]:
    base = dict(epochs=setup.epochs, batch_size=setup.batch_size, lr=setup.lr,
                lr_mode=setup.lr_mode, steplr_step=setup.steplr_step)
    return {**base, **spec.train}


def run_classification(
    setup: ClassificationSetup,
    dataset: str,
    data_root: str = "data",
    device: torch.device | str = "cpu",
    tune: bool = False,
    n_trials: int | None = None,
    backend: str = "optuna",
    epochs: int | None = None,
) -> dict[str, dict[str, Any]]:
    """T1 for one dataset: every model of the setup, one run per seed (paper: 3), optionally
    after a random search (SIM variants only; final seeds ``best, best + 1, best + 3``).

    Returns, per model label: ``histories``, ``models`` (the trained modules of the last seed),
    ``test_acc`` (mean over runs), ``test_acc_std``, ``params`` and ``config`` with its
    ``source`` (``smoke`` / ``non-tuned defaults`` / ``searched`` / ``monDEQ schedule``).
    """
    from deqode.data import load_dataset

    opts = dict(setup.data_options)
    train = load_dataset(dataset, root=data_root, split="train", profile=setup.profile,
                         recipe="sim", **opts)
    test = load_dataset(dataset, root=data_root, split="test", profile=setup.profile,
                        recipe="sim", **opts)
    results: dict[str, dict[str, Any]] = {}
    for spec in setup.models[dataset]:
        settings = _train_settings(setup, spec)
        if epochs is not None:
            settings["epochs"] = epochs
        seeds, overrides = list(setup.seeds), {}
        source = "smoke" if setup.profile == "smoke" else (
            "monDEQ schedule" if spec.train else "non-tuned defaults")
        if tune and spec.kind == "sim":
            fit_part, val_part = split_train_val(train)
            search = run_search(search_objective("classification", spec, fit_part, val_part,
                                                 device), "classification", spec.variant,
                                n_trials=n_trials, backend=backend)
            best = search.best_config
            settings.update(epochs=best["epochs"], batch_size=best["train_batch_size"],
                            lr=best["max_lr"], lr_mode=best["lr_mode"],
                            steplr_step=best["steplr_step"])
            overrides = _sim_overrides("classification", spec.variant, best)
            seeds, source = final_run_seeds(int(best["seed"]), len(setup.seeds)), "searched"
        histories, model = [], None
        for seed in seeds:
            seed_all(seed)
            model = build_model(spec, **overrides)
            histories.append(train_classifier(model, train, test, device=device,
                                              test_batch_size=setup.test_batch_size,
                                              **settings))
        accs = [h["test_acc"] for h in histories]
        results[spec.label] = {
            "histories": histories, "model": model, "params": histories[0]["params"],
            "test_acc": float(np.mean(accs)), "test_acc_std": float(np.std(accs)),
            "seeds": seeds, "config": {**settings, **overrides, "source": source},
        }
    return results


def run_regression(
    setup: RegressionSetup,
    data_root: str = "data",
    device: torch.device | str = "cpu",
    iterations: int | None = None,
) -> list[dict[str, Any]]:
    """T2: every model on every image of the setup (one run each, seed ``setup.seed``).

    Returns one record per (image, model): ``set`` (natural / text), ``image``, ``model``,
    ``train_psnr``, ``test_psnr`` (after the last iteration), the PSNR curves, ``prediction``
    and ``target`` grids, ``params``, ``nfe_forward`` (DEQ: f evaluations of the last step)."""
    from deqode.data import load_dataset

    records = []
    for name, opts in setup.images:
        train = load_dataset(name, root=data_root, split="train", profile=setup.profile, **opts)
        test = load_dataset(name, root=data_root, split="test", profile=setup.profile, **opts)
        for spec in setup.models:
            seed_all(setup.seed)
            model = build_model(spec)
            lr = spec.train.get("lr", setup.lr)
            out = train_regression(model, train, test, iterations=iterations or setup.iterations,
                                   lr=lr, device=device)
            records.append({
                "set": setup.set_names[name], "dataset": name, "image": opts.get("image", 0),
                "model": spec.label, "params": out["params"], "lr": lr,
                "train_psnr": out["final_train_psnr"], "test_psnr": out["final_test_psnr"],
                "train_curve": out["train_psnr"], "test_curve": out["test_psnr"],
                "prediction": out["prediction"], "target": out["target"],
                "median_step_ms": 1e3 * float(np.median(out["step_times"])),
                "nfe_forward": int(getattr(model, "nfe_forward", 0) or 0),
            })
    return records


def run_copy_memory(
    setup: CopyMemorySetup,
    data_root: str = "data",
    device: torch.device | str = "cpu",
    epochs: int | None = None,
) -> dict[str, dict[str, Any]]:
    """T3: every model of the setup on the generated copy-memory data (one run, seed
    ``setup.seed``). Returns per model label the :func:`train_copy_memory` record, plus
    ``position_accuracy`` (:func:`copy_memory_position_accuracy` on the test set) and ``model``."""
    from deqode.data import load_dataset

    train = load_dataset("copy-memory", root=data_root, split="train", profile=setup.profile,
                         T=setup.T)
    test = load_dataset("copy-memory", root=data_root, split="test", profile=setup.profile,
                        T=setup.T)
    results = {}
    for spec in setup.models:
        seed_all(setup.seed)
        model = build_model(spec)
        results[spec.label] = train_copy_memory(
            model, train, test, epochs=epochs or setup.epochs, batch_size=setup.batch_size,
            lr=setup.lr, adam_eps=setup.adam_eps, device=device)
        results[spec.label]["position_accuracy"] = copy_memory_position_accuracy(
            model, test, setup.batch_size, device)
        results[spec.label]["model"] = model
    return results


@torch.no_grad()
def copy_memory_position_accuracy(
    model: nn.Module, dataset: Dataset, batch_size: int = 50, device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Test accuracy (%) split by position, to read the official all-position accuracy (spec §5
    item 9): on the ``T + 10`` blank positions, on the last 10 (the digits to recall; chance is
    12.5 % over the 8 digit values), and the share of those last 10 predicted as a blank. A model
    that predicts a blank everywhere scores ``100 (T + 10) / (T + 20)`` % overall."""
    x, y = (t.to(device) for t in _stack(dataset))
    if y.dim() != 2 or y.shape[1] <= 10:
        raise ValueError(f"copy-memory targets must be (N, T + 20), got {tuple(y.shape)}")
    was_training = model.training
    model.eval()
    preds = torch.cat([model(x[i : i + batch_size]).argmax(-1)
                       for i in range(0, len(x), batch_size)])
    model.train(was_training)
    blank, digit = slice(None, -10), slice(-10, None)
    return {
        "blank positions": 100.0 * (preds[:, blank] == y[:, blank]).float().mean().item(),
        "digit positions": 100.0 * (preds[:, digit] == y[:, digit]).float().mean().item(),
        "digit positions predicted blank": 100.0 * (preds[:, digit] == 0).float().mean().item(),
    }


def memoryless_loss(T: int) -> float:
    """Cross-entropy of the best predictor that remembers nothing: exact zeros on the ``T + 10``
    blank positions, uniform over the 8 digit values on the last 10: ``10 ln 8 / (T + 20)``."""
    return 10 * math.log(8) / (T + 20)


def always_blank_accuracy(T: int) -> float:
    """Accuracy (%) of predicting a blank everywhere: right on the ``T + 10`` blank positions of
    the ``T + 20``, wrong on the 10 digits to recall."""
    return 100 * (T + 10) / (T + 20)


