"""Continuous DEQ chapter: parameter counts and probes of trained models (C12, M3)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deqode import rehearsal
from deqode.chapters.continuous_deq.reference import paper_cell

# --------------------------------------------------------------------------------------------------
# parameter counts (P1)
# --------------------------------------------------------------------------------------------------


PAPER_PARAM_ARCHS = {"mnist-fc": "T1", "cifar10-small": "T2", "cifar10-large": "T3",
                     "imagenet-small": "T4"}


def parameter_counts() -> list[dict[str, Any]]:
    """P1: our counts of every paper architecture next to the paper's (instantiates them)."""
    from deqode.models.continuous_deq import ContinuousDEQ, SkipDEQ

    rows = []
    for arch, table in PAPER_PARAM_ARCHS.items():
        vanilla, skip = ContinuousDEQ(arch), SkipDEQ(arch)
        count = sum(p.numel() for p in vanilla.parameters())
        skip_count = sum(p.numel() for p in skip.parameters())
        rows.append({
            "architecture": arch, "table": table,
            "stem": sum(p.numel() for p in vanilla.stem.parameters()),
            "DEQ f": sum(p.numel() for p in vanilla.core.parameters()),
            "head": sum(p.numel() for p in vanilla.head.parameters()),
            "vanilla / Skip Reg. (ours)": count,
            "vanilla (paper)": paper_cell(table, "Vanilla DEQ" if table == "T1"
                                          else "Vanilla DEQ (discrete)", "# Params"),
            "Skip (ours)": skip_count,
            "Skip (paper)": paper_cell(table, "Skip DEQ" if table == "T1"
                                       else "Skip DEQ (discrete)", "# Params"),
            "predictor (ours)": skip_count - count,
            "predictor (text)": paper_cell("P1", "Skip predictor", "stated"),
        })
        del vanilla, skip
    return rows


# --------------------------------------------------------------------------------------------------
# analyses on trained smoke models (C12, M3)
# --------------------------------------------------------------------------------------------------


def backward_probe(model: nn.Module, x: Tensor, y: Tensor) -> dict[str, Any]:
    """One training-mode forward/backward: forward NFE, ‖v‖ and GMRES iterations (C12); when
    rehearsing, on the first items of the batch only (:func:`deqode.rehearsal.first`)."""
    x, y = rehearsal.first(x, y)
    model.train()
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    info = model.last_stats.get("solver_info")
    record = dict(model.last_backward)
    model.zero_grad(set_to_none=True)
    model.eval()
    return {"nfe_forward": model.nfe_forward, "v_norm": record.get("v_norm", 0.0),
            "gmres_iterations": record.get("iterations", 0),
            "forward_reason": info.reason if info is not None else "",
            "forward_residual": info.final_residual if info is not None else math.nan}


@torch.no_grad()
def solve_outcomes(model: nn.Module, x: Tensor, batch_size: int) -> dict[str, Any]:
    """How the test-mode forward solves of ``model`` on ``x`` (in batches of ``batch_size``)
    ended: why they stopped, how many solver steps they took (accepted integrator steps or
    Broyden updates) and the largest final termination objective, e.g. to check whether an NFE
    column is spent reaching the tolerance or running into the step cap. When rehearsing: the
    first few batches, of at most the rehearsal batch cap (:mod:`deqode.rehearsal`)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    batch_size = rehearsal.batch_size(batch_size)
    model.eval()
    infos = []
    for i in rehearsal.capped(range(0, len(x), batch_size)):
        model(x[i:i + batch_size])
        info = model.last_stats.get("solver_info")
        if info is None:
            raise ValueError(f"{type(model).__name__} with solver={model.solver!r} has no "
                             "steady-state solve to report (use 'continuous' or 'discrete')")
        infos.append(info)
    return {"stops": "/".join(sorted({i.reason for i in infos})),
            "met tol": f"{sum(i.converged for i in infos)}/{len(infos)}",
            "solver steps (mean)": float(np.mean([i.iterations for i in infos])),
            "final objective (max)": max(i.final_residual for i in infos)}


@torch.no_grad()
def topk_accuracy(model: nn.Module, dataset: Any, k: int = 5, batch_size: int = 180,
                  device: str | torch.device = "cpu", num_workers: int = 0) -> float:
    """Top-k test accuracy (%) of ``model`` (on ``device``) on ``dataset`` in batches of
    ``batch_size`` (when rehearsing: the first few batches, of at most the rehearsal batch cap;
    :mod:`deqode.rehearsal`)."""
    from torch.utils.data import DataLoader

    model.eval()
    hits, total = 0, 0
    loader = DataLoader(dataset, batch_size=rehearsal.batch_size(batch_size), shuffle=False,
                        num_workers=num_workers)
    for x, y in rehearsal.capped(loader):
        x, y = x.to(device), y.to(device)
        top = model(x).topk(k, dim=1).indices
        hits += int((top == y[:, None]).any(1).sum())
        total += y.numel()
    return 100.0 * hits / total


@torch.no_grad()
def tolerance_probe(model: nn.Module, x: Tensor, y: Tensor,
                    settings: Mapping[str, tuple[float, float]]) -> list[dict[str, Any]]:
    """M3: forward NFE, integration time reached, residual and accuracy of a trained continuous
    DEQ under different integrator step-size tolerances ``{label: (abstol, reltol)}``; when
    rehearsing, on the first items of ``x`` only (:func:`deqode.rehearsal.first`)."""
    x, y = rehearsal.first(x, y)
    model.eval()
    saved = (model.abstol, model.reltol)
    out = []
    try:
        for label, (abstol, reltol) in settings.items():
            model.abstol, model.reltol = abstol, reltol
            logits = model(x)
            info = model.last_stats["solver_info"]
            out.append({"step-size tolerances": label, "NFE": model.nfe_forward,
                        "accepted steps": info.iterations, "rejected": info.rejected,
                        "t reached": info.t, "stop": info.reason,
                        "final objective": info.final_residual,
                        "accuracy (%)": 100.0 * float((logits.argmax(1) == y).float().mean())})
    finally:
        model.abstol, model.reltol = saved
    return out


__all__ = [
    "PAPER_PARAM_ARCHS",
    "backward_probe",
    "data_label",
    "ours_header",
    "parameter_counts",
    "solve_outcomes",
    "table_dataset",
    "table_tensors",
    "tolerance_probe",
    "topk_accuracy",
]


def table_dataset(table: str, profile: str, split: str, data_root: str = "data"):
    """The whole ``split`` of the data set ``table`` trains on in ``profile``, with the table's
    recipe (the train split augmented as in training)."""
    from deqode import data
    from deqode.chapters.continuous_deq.configs import setup

    s = setup(table, profile)
    kwargs = {"profile": "smoke"} if s.dataset == "digits" else {}
    return data.load_dataset(s.dataset, root=data_root, split=split, recipe=s.recipe, **kwargs)


def table_tensors(table: str, profile: str, split: str, data_root: str = "data",
                  limit: int | None = None, indices: Any = None) -> tuple[Tensor, Tensor]:
    """Images and labels of ``split`` of the data set ``table`` trains on in ``profile`` (the
    whole split, its first ``limit`` images, or the images at ``indices``), as two tensors."""
    dataset = table_dataset(table, profile, split, data_root)
    if indices is None:
        indices = range(len(dataset) if limit is None else min(limit, len(dataset)))
    items = [dataset[int(i)] for i in indices]
    return torch.stack([x for x, _ in items]), torch.tensor([int(y) for _, y in items])


def data_label(table: str, profile: str) -> str:
    """The label of the data set ``table`` trains on in ``profile`` (MNIST-8k gets
    :data:`deqode.data.vision.MNIST8K_LABEL`)."""
    from deqode.chapters.continuous_deq.configs import setup
    from deqode.data.vision import MNIST8K_LABEL

    dataset = setup(table, profile).dataset
    return MNIST8K_LABEL if dataset == "mnist-8k" else dataset


def ours_header(table: str, profile: str) -> str:
    """The short tag of our columns: profile and data set, e.g. ``ours (cpu, MNIST-8k)``."""
    from deqode.chapters.continuous_deq.configs import setup

    dataset = setup(table, profile).dataset
    name = {"mnist-8k": "MNIST-8k", "digits": "digits", "mnist": "MNIST",
            "cifar10": "CIFAR-10"}.get(dataset, dataset)
    return f"ours ({profile}, {name})"
