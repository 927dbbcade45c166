"""Task runners (what the notebooks call): every model of a setup, per seed, read from the cache
when a finished run with the same configuration exists.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch

from deqode.chapters.sim.cache import cached, config_key
from deqode.chapters.sim.configs import (
    ClassificationSetup,
    CopyMemorySetup,
    ModelSpec,
    RegressionSetup,
    build_model,
)
from deqode.chapters.sim.loops import (
    copy_memory_position_accuracy,
    final_run_seeds,
    train_classifier,
    train_copy_memory,
    train_regression,
)
from deqode.chapters.sim.search import (
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


def _rebuilt(spec: ModelSpec, overrides: dict[str, Any], state: dict[str, Any]) -> Any:
    """The trained model from its cached state dict, built without drawing from the global RNG
    (so that what runs next sees the same random numbers whether the run was cached or not)."""
    with torch.random.fork_rng(devices=[]):
        model = build_model(spec, **overrides)
    model.load_state_dict(state)
    return model


def run_classification(
    setup: ClassificationSetup,
    dataset: str,
    data_root: str = "data",
    device: torch.device | str = "cpu",
    tune: bool = False,
    n_trials: int | None = None,
    backend: str = "optuna",
    epochs: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, dict[str, Any]]:
    """T1 for one dataset: every model of the setup, one run per seed, optionally after a random
    search (SIM variants only; final seeds ``best, best + 1, best + 3``).

    Each (model, seed) run is read from ``cache_dir`` when the same configuration finished
    there before (:func:`deqode.chapters.sim.cache.cached`); the search itself is not cached.
    The runs train through :func:`deqode.train.fit`, which writes their records under
    ``<cache_dir>/<profile>/`` (and resumes an interrupted one).
    Returns, per model label: ``histories``, ``model`` (the trained module of the last seed),
    ``accs`` (final test accuracy per seed), ``test_acc`` (mean), ``test_acc_std`` (sample
    std), ``params``, ``seeds`` and ``config`` with its ``source`` (``smoke`` / ``cpu`` /
    ``non-tuned defaults`` / ``searched`` / ``monDEQ schedule``).
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
        source = setup.profile if setup.profile != "paper" else (
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
            config = {"task": "classification", "profile": setup.profile, "dataset": dataset,
                      "data_options": opts, "spec": spec, "overrides": overrides,
                      "settings": settings, "seed": seed,
                      "test_batch_size": setup.test_batch_size}
            name = f"t1-{dataset}-{spec.kind}-{seed}"

            def one_run(seed: int = seed, spec: ModelSpec = spec,
                        overrides: dict[str, Any] = overrides,
                        settings: dict[str, Any] = settings,
                        run_name: str = f"{name}-{config_key(config)}") -> dict[str, Any]:
                torch.manual_seed(seed)
                model = build_model(spec, **overrides)
                history = train_classifier(
                    model, train, test, device=device, test_batch_size=setup.test_batch_size,
                    results_dir=cache_dir, profile=setup.profile, name=run_name, **settings)
                return {"history": history, "model": model.cpu().state_dict()}

            out = cached(cache_dir, name, config, one_run)
            histories.append(out["history"])
            model = _rebuilt(spec, overrides, out["model"])
        accs = [h["test_acc"] for h in histories]
        results[spec.label] = {
            "histories": histories, "model": model, "params": histories[0]["params"],
            "accs": accs, "test_acc": float(np.mean(accs)),
            "test_acc_std": float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0,
            "seeds": seeds, "config": {**settings, **overrides, "source": source},
        }
    return results


def run_regression(
    setup: RegressionSetup,
    data_root: str = "data",
    device: torch.device | str = "cpu",
    iterations: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """T2: every model on every image of the setup, one run per seed of ``setup.run_seeds``
    (each read from ``cache_dir`` when it finished there before; trained through
    :func:`deqode.train.fit`, records under ``<cache_dir>/<profile>/``).

    Returns one record per (image, model, seed): ``set`` (natural / text), ``image``,
    ``model``, ``seed``, ``train_psnr``, ``test_psnr`` (after the last iteration), the PSNR
    curves, ``prediction`` and ``target`` grids, ``params``, ``nfe_forward`` (DEQ: f
    evaluations of the last step)."""
    from deqode.data import load_dataset

    records = []
    for name, opts in setup.images:
        train = load_dataset(name, root=data_root, split="train", profile=setup.profile, **opts)
        test = load_dataset(name, root=data_root, split="test", profile=setup.profile, **opts)
        for spec in setup.models:
            lr = spec.train.get("lr", setup.lr)
            n_iter = iterations or setup.iterations
            for seed in setup.run_seeds:
                config = {"task": "regression", "profile": setup.profile, "image": name,
                          "options": opts, "spec": spec, "lr": lr, "iterations": n_iter,
                          "seed": seed}
                run_name = f"t2-{name}-{spec.kind}-{spec.variant}-{seed}"

                def one_run(seed: int = seed, spec: ModelSpec = spec, lr: float = lr,
                            n_iter: int = n_iter, train: Any = train, test: Any = test,
                            key: str = f"{run_name}-{config_key(config)}") -> dict[str, Any]:
                    torch.manual_seed(seed)
                    model = build_model(spec)
                    out = train_regression(model, train, test, iterations=n_iter, lr=lr,
                                           device=device, results_dir=cache_dir,
                                           profile=setup.profile, name=key)
                    out["nfe_forward"] = int(getattr(model, "nfe_forward", 0) or 0)
                    return out

                out = cached(cache_dir, run_name, config, one_run)
                records.append({
                    "set": setup.set_names[name], "dataset": name,
                    "image": opts.get("image", 0), "model": spec.label, "seed": seed,
                    "params": out["params"], "lr": lr,
                    "train_psnr": out["final_train_psnr"], "test_psnr": out["final_test_psnr"],
                    "train_curve": out["train_psnr"], "test_curve": out["test_psnr"],
                    "prediction": out["prediction"], "target": out["target"],
                    "median_step_ms": 1e3 * float(np.median(out["step_times"])),
                    "nfe_forward": out["nfe_forward"],
                })
    return records


def run_copy_memory(
    setup: CopyMemorySetup,
    data_root: str = "data",
    device: torch.device | str = "cpu",
    epochs: int | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> dict[str, dict[str, Any]]:
    """T3: every model of the setup on the generated copy-memory data, one run per seed of
    ``setup.run_seeds`` (each read from ``cache_dir`` when it finished there before).

    Trained through :func:`deqode.train.fit` (records under ``<cache_dir>/<profile>/``).
    Returns per model label the :func:`train_copy_memory` record of the first seed, plus
    ``position_accuracy`` (:func:`copy_memory_position_accuracy` on the test set) and ``runs``:
    one such record per seed (with ``seed``), each with the per-epoch position accuracies."""
    from deqode.data import load_dataset

    sizes = {"T": setup.T} | ({"n_samples": setup.n_train} if setup.n_train else {})
    train = load_dataset("copy-memory", root=data_root, split="train", profile=setup.profile,
                         **sizes)
    sizes = {"T": setup.T} | ({"n_samples": setup.n_test} if setup.n_test else {})
    test = load_dataset("copy-memory", root=data_root, split="test", profile=setup.profile,
                        **sizes)
    n_epochs = epochs or setup.epochs
    results = {}
    for spec in setup.models:
        runs = []
        for seed in setup.run_seeds:
            config = {"task": "copy-memory", "profile": setup.profile, "T": setup.T,
                      "n_train": len(train), "n_test": len(test), "spec": spec,
                      "epochs": n_epochs, "batch_size": setup.batch_size, "lr": setup.lr,
                      "adam_eps": setup.adam_eps, "seed": seed}
            name = f"t3-{spec.kind}-{spec.variant}-{seed}"

            def one_run(seed: int = seed, spec: ModelSpec = spec,
                        run_name: str = f"{name}-{config_key(config)}") -> dict[str, Any]:
                torch.manual_seed(seed)
                model = build_model(spec)
                out = train_copy_memory(
                    model, train, test, epochs=n_epochs, batch_size=setup.batch_size,
                    lr=setup.lr, adam_eps=setup.adam_eps, device=device, track_positions=True,
                    results_dir=cache_dir, profile=setup.profile, name=run_name)
                out["position_accuracy"] = copy_memory_position_accuracy(
                    model, test, setup.batch_size, device)
                return out

            out = cached(cache_dir, name, config, one_run)
            runs.append({**out, "seed": seed})
        results[spec.label] = {**runs[0], "runs": runs}
    return results
