"""Task runners (what the notebooks call): every model of a setup, per seed, each run read,
resumed or trained by :func:`deqode.train.fit_or_reuse` under ``<results_dir>/<profile>/<name>/``
with the configuration :mod:`.experiments` registers, so that a run finished by ``python -m
deqode train NAME`` is read, not retrained.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from deqode.chapters.sim.configs import ClassificationSetup, CopyMemorySetup, RegressionSetup
from deqode.chapters.sim.experiments import (
    POSITION_KEYS,
    classification_config,
    copy_memory_config,
    regression_config,
)
from deqode.chapters.sim.loops import (
    classifier_record,
    copy_memory_steps,
    final_run_seeds,
    regression_record,
)
from deqode.chapters.sim.search import _sim_overrides, load_search, search_path
from deqode.models.sim import count_trainable


def read_or_train(config: Any, profile: str, *, device: torch.device | str = "cpu",
                  results_dir: str | os.PathLike = "results", data_root: str = "data") -> Any:
    """The run of ``config`` by :func:`deqode.train.fit_or_reuse` (model in training mode on
    ``device``); a failed run raises ``RuntimeError`` with its reason."""
    from deqode.train import fit_or_reuse

    result = fit_or_reuse(config, profile=profile, device=device, results_dir=results_dir,
                          data_root=data_root, quiet=True, progress=False)
    if result.failed:
        raise RuntimeError(f"{config.name} failed: {result.reason}")
    result.model = result.model.to(device).train()
    return result


def _searched(setup: ClassificationSetup, dataset: str, variant: str,
              results_dir: str | os.PathLike) -> dict[str, Any]:
    path = search_path(results_dir, setup.profile, "classification", dataset, variant)
    stored = load_search(path)
    if stored is None:
        raise FileNotFoundError(
            f"tune=True reads the stored search of {variant} SIM on {dataset}, but {path} does "
            f"not exist; run it first: python -m deqode search classification --dataset "
            f"{dataset} --variant {variant} --profile {setup.profile}")
    return stored["best_config"]


def run_classification(
    setup: ClassificationSetup,
    dataset: str,
    data_root: str = "data",
    device: torch.device | str = "cpu",
    tune: bool = False,
    epochs: int | None = None,
    results_dir: str | os.PathLike = "results",
) -> dict[str, dict[str, Any]]:
    """T1 for one dataset: every model of the setup, one run per seed.

    ``tune``: the SIM variants take the best configuration of the stored search (``python -m
    deqode search classification ...``; final seeds ``best, best + 1, best + 3``). ``epochs``
    overrides every model's epochs (such runs, and searched ones, are named apart from the
    registered runs). Returns, per model label: ``histories``, ``model`` (the trained module of
    the last seed, on the CPU), ``accs`` (final test accuracy per seed), ``test_acc`` (mean),
    ``test_acc_std`` (sample std), ``params``, ``seeds``, ``cached`` (runs read back) and
    ``config`` with its ``source`` (``smoke`` / ``cpu`` / ``non-tuned defaults`` /
    ``searched`` / ``monDEQ schedule``).
    """
    results: dict[str, dict[str, Any]] = {}
    for spec in setup.models[dataset]:
        settings = {"epochs": setup.epochs, "batch_size": setup.batch_size, "lr": setup.lr,
                    "lr_mode": setup.lr_mode, "steplr_step": setup.steplr_step, **spec.train}
        tag, seeds, overrides = "", list(setup.seeds), {}
        source = setup.profile if setup.profile != "paper" else (
            "monDEQ schedule" if spec.train else "non-tuned defaults")
        if tune and spec.kind == "sim":
            best = _searched(setup, dataset, spec.variant, results_dir)
            settings.update(epochs=best["epochs"], batch_size=best["train_batch_size"],
                            lr=best["max_lr"], lr_mode=best["lr_mode"],
                            steplr_step=best["steplr_step"])
            overrides = _sim_overrides("classification", spec.variant, best)
            seeds, source, tag = final_run_seeds(int(best["seed"]), len(setup.seeds)), \
                "searched", "-searched"
        if epochs is not None and epochs != settings["epochs"]:
            settings["epochs"], tag = epochs, f"{tag}-ep{epochs}"
        histories, model, reused = [], None, 0
        for seed in seeds:
            config = classification_config(setup, dataset, spec, seed, settings=settings,
                                           overrides=overrides, tag=tag)
            result = read_or_train(config, setup.profile, device=device,
                                   results_dir=results_dir, data_root=data_root)
            histories.append(classifier_record(result, count_trainable(result.model)))
            model, reused = result.model.cpu(), reused + result.reused
        accs = [h["test_acc"] for h in histories]
        results[spec.label] = {
            "histories": histories, "model": model, "params": histories[0]["params"],
            "accs": accs, "test_acc": float(np.mean(accs)),
            "test_acc_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
            "seeds": seeds, "cached": reused, "config": {**settings, **overrides,
                                                         "source": source},
        }
    return results


def run_regression(
    setup: RegressionSetup,
    data_root: str = "data",
    device: torch.device | str = "cpu",
    iterations: int | None = None,
    results_dir: str | os.PathLike = "results",
) -> list[dict[str, Any]]:
    """T2: every model on every image of the setup, one run per seed of ``setup.run_seeds``.

    Returns one record per (image, model, seed): ``set`` (natural / text), ``image``,
    ``model``, ``seed``, ``train_psnr``, ``test_psnr`` (after the last iteration), the PSNR
    curves, ``prediction`` and ``target`` grids, ``params``, ``nfe_forward`` (DEQ: f
    evaluations of the test-grid prediction), ``cached`` (read back)."""
    from deqode.data import load_dataset

    records = []
    for name, opts in setup.images:
        test = load_dataset(name, root=data_root, split="test", profile=setup.profile, **opts)
        for spec in setup.models:
            for seed in setup.run_seeds:
                config = regression_config(setup, name, opts, spec, seed, iterations=iterations)
                result = read_or_train(config, setup.profile, device=device,
                                       results_dir=results_dir, data_root=data_root)
                out = regression_record(result, result.model, test,
                                        count_trainable(result.model), device)
                records.append({
                    "set": setup.set_names[name], "dataset": name,
                    "image": opts.get("image", 0), "model": spec.label, "seed": seed,
                    "params": out["params"], "lr": config.lr,
                    "train_psnr": out["final_train_psnr"], "test_psnr": out["final_test_psnr"],
                    "train_curve": out["train_psnr"], "test_curve": out["test_psnr"],
                    "prediction": out["prediction"], "target": out["target"],
                    "median_step_ms": 1e3 * float(np.median(out["step_times"])),
                    "nfe_forward": int(getattr(result.model, "nfe_forward", 0) or 0),
                    "cached": result.reused,
                })
    return records


def run_copy_memory(
    setup: CopyMemorySetup,
    data_root: str = "data",
    device: torch.device | str = "cpu",
    epochs: int | None = None,
    results_dir: str | os.PathLike = "results",
) -> dict[str, dict[str, Any]]:
    """T3: every model of the setup on the generated copy-memory data, one run per seed of
    ``setup.run_seeds``.

    Returns per model label the record of the first seed — ``steps`` (per batch: loss,
    accuracy, cumulative time, NFE), ``epochs`` (per epoch the test accuracy by position),
    ``test_loss`` and ``test_acc`` (after the last epoch, all positions), ``params``,
    ``position_accuracy`` (the last epoch's) and ``cached`` — plus ``runs``: one such record
    per seed (with ``seed``)."""
    results = {}
    for spec in setup.models:
        runs = []
        for seed in setup.run_seeds:
            config = copy_memory_config(setup, spec, seed, epochs=epochs)
            result = read_or_train(config, setup.profile, device=device,
                                   results_dir=results_dir, data_root=data_root)
            history = result.history
            positions = [{"epoch": h["epoch"], **{POSITION_KEYS[k]: h[k] for k in POSITION_KEYS}}
                         for h in history]
            runs.append({"steps": copy_memory_steps(history), "epochs": positions,
                         "test_loss": history[-1]["test_loss"],
                         "test_acc": history[-1]["test_acc"],
                         "params": count_trainable(result.model),
                         "position_accuracy": {k: v for k, v in positions[-1].items()
                                               if k != "epoch"},
                         "cached": result.reused, "seed": seed})
        results[spec.label] = {**runs[0], "runs": runs}
    return results
