"""HomoODE chapter: training the runs and reading their records back."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from deqode.chapters.homoode.configs import CPU_DATASET, CPU_KEY, PAPER_SCRIPTS, ChapterRun


def _values(history: list[dict[str, Any]], key: str) -> list[float]:
    return [h[key] for h in history if h.get(key) is not None]


def _mean(history: list[dict[str, Any]], key: str) -> float | None:
    values = _values(history, key)
    return sum(values) / len(values) if values else None


def run_record(run: ChapterRun, result: Any) -> dict[str, Any]:
    """The numbers the chapter shows for one :func:`deqode.train.fit` result.

    NFE and times are means over the epochs of the per-batch values (the test NFE per test
    batch), memory is the largest per-epoch peak, accuracies are fractions. ``best_acc`` is the
    best test accuracy over epochs (the released code's model selection, on the test set),
    ``last_acc`` the last epoch's.
    """
    history, summary, config = list(result.history), dict(result.summary), run.config
    if str(config.model).startswith("deq-"):
        gradient = f"implicit ({config.model_kwargs.get('backward', 'ift')})"
    else:
        gradient = config.model_kwargs.get("grad_mode", "backprop")
    batch_times = [h.get("time_forward_per_batch_s", 0.0) + h.get("time_backward_per_batch_s", 0.0)
                   for h in history]
    memory = _values(history, "saved_tensor_peak_mb")
    cuda = _values(history, "cuda_peak_mb")
    return {
        "label": run.label, "key": run.key, "experiment": config.name, "model": config.model,
        "dataset": config.dataset, "seed": config.seed, "gradient": gradient, "state": result.state,
        "reason": result.reason, "epochs": summary.get("epochs_completed"),
        "iterations": summary.get("iterations"),
        "iterations_per_epoch": summary.get("iterations_per_epoch"),
        "params": summary.get("num_parameters"), "init_params": summary.get("num_init_parameters"),
        "best_acc": summary.get("best_test_acc"), "best_epoch": summary.get("best_epoch"),
        "last_acc": summary.get("last_test_acc"),
        "nfe_forward": _mean(history, "nfe_forward"),
        "nfe_backward": _mean(history, "nfe_backward"),
        "test_nfe": _mean(history, "test_nfe_forward"),
        "saved_mb": max(memory) if memory else None, "cuda_mb": max(cuda) if cuda else None,
        "epoch_s": _mean(history, "epoch_time_s"),
        "batch_s": sum(batch_times) / len(batch_times) if batch_times else None,
        "history": history, "out_dir": str(result.out_dir),
    }


def train_runs(runs: Sequence[ChapterRun], profile: str, *, device: str = "auto",
               results_dir: str = "results", data_root: str = "data",
               threads: int | None = None) -> list[dict[str, Any]]:
    """Train every run with :func:`deqode.train.fit`; one :func:`run_record` per run.

    A finished run of the same configuration (e.g. of ``python -m deqode train``) is read, an
    unfinished one resumed (:func:`deqode.train.fit_or_reuse`). A failed run is recorded
    (``state="failed"``, with the reason), not raised; a missing dataset raises
    :class:`~deqode.errors.DatasetMissingError` at once.
    """
    from deqode.train import fit_or_reuse

    return [
        run_record(run, fit_or_reuse(run.config, profile=profile, device=device,
                                     results_dir=results_dir, data_root=data_root, quiet=True,
                                     progress=False, threads=threads, load_model=False))
        for run in runs
    ]


def load_trained(record: dict[str, Any], **overrides: Any) -> nn.Module:
    """The model of a run rebuilt from its ``checkpoint.pt`` (last epoch), in eval mode on the CPU.

    ``overrides`` go to :func:`deqode.models.build` on top of the run's ``model_kwargs`` (e.g.
    ``tol``, ``grad_mode`` or ``activation``); they must not change parameter shapes.
    """
    from deqode import models
    from deqode.paths import resolve
    from deqode.train import DTYPES

    checkpoint = torch.load(resolve(record["out_dir"]) / "checkpoint.pt", map_location="cpu",
                            weights_only=True)
    config = checkpoint["config"]
    kwargs = {**config["model_kwargs"], **overrides}
    if "tol" in kwargs:
        kwargs.pop("rtol", None)
        kwargs.pop("atol", None)
    model = models.build(config["model"], **kwargs)
    model.load_state_dict(checkpoint["model"])
    return model.to(DTYPES[config["dtype"]]).eval()


def eval_batch(key: str, profile: str, *, data_root: str = "data", size: int | None = None
               ) -> tuple[Tensor, Tensor]:
    """The first ``size`` test items of the dataset of ``key`` (all when ``None``), stacked."""
    from deqode import data
    from deqode.paths import resolve

    name = ("digits" if key == "digits" else CPU_DATASET if key == CPU_KEY
            else PAPER_SCRIPTS[key].dataset)
    dataset = data.load_dataset(name, root=resolve(data_root), split="test", profile=profile,
                                augment=False)
    count = len(dataset) if size is None else min(size, len(dataset))
    items = [dataset[i] for i in range(count)]
    return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])


def trained_config(record: dict[str, Any]) -> dict[str, Any]:
    """The configuration a run recorded in its ``config.json``."""
    from deqode.paths import resolve
    from deqode.results import read_json

    return read_json(resolve(record["out_dir"]) / "config.json")["config"]
