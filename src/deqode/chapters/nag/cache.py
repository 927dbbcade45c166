"""Finished runs are read, not retrained: an atomic cache keyed by the full configuration.

A run's record (metrics, history, timings, and the trained model's state) is saved with
:func:`deqode.results.torch_save_atomic` as ``<folder>/<name>-<hash>.pt``, where the hash covers
every setting that changes the result (the task setup, the solver, the seed, dtype and device,
the rehearsal step cap and :data:`CACHE_VERSION`). A rerun of the notebook finds the file and
returns its record; an interrupted run left no file and is trained again from the start.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from deqode import rehearsal
from deqode.results import torch_load_record, torch_save_atomic

CACHE_VERSION = 1  # bump when the training code changes what a record means


def config_key(config: dict[str, Any]) -> str:
    """A short stable hash of ``config`` plus the rehearsal step cap and the cache version."""
    payload = {"config": config, "rehearsal_steps": rehearsal.step_cap(),
               "version": CACHE_VERSION}
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached(folder: str | Path | None, name: str, config: dict[str, Any],
           compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """``compute()``'s record, read from ``folder`` when this exact ``config`` finished before.

    ``folder`` None: no cache. The record must be picklable (tensors, arrays, numbers); a
    ``"cached"`` flag is set True on a record read from disk, False on a fresh one.
    """
    if folder is None:
        return {**compute(), "cached": False}
    path = Path(folder) / f"{name}-{config_key(config)}.pt"
    if path.is_file():
        return {**torch_load_record(path), "cached": True}
    record = compute()
    torch_save_atomic(record, path)
    return {**record, "cached": False}


def cached_model_run(folder: str | Path | None, name: str, config: dict[str, Any],
                     train: Callable[[str], dict[str, Any]],
                     build: Callable[[dict[str, Any]], torch.nn.Module]) -> dict[str, Any]:
    """A training run's record with its trained model, read from ``folder`` when this ``config``
    finished before. ``train(run_name)`` trains (its :func:`deqode.train.fit` records go under
    ``run_name``, which carries the configuration's key) and returns a record whose ``"model"``
    is the module; the cache keeps its state dict, and ``build(record)`` makes the module that
    the state is loaded into."""

    def compute() -> dict[str, Any]:
        record = train(f"{name}-{config_key(config)}")
        return {**record, "model": record["model"].state_dict()}

    record = cached(folder, name, config, compute)
    model = build(record)
    model.load_state_dict(record["model"])
    return {**record, "model": model}


__all__ = ["CACHE_VERSION", "cached", "cached_model_run", "config_key"]
