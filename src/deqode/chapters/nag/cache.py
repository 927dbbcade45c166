"""Task A's records (a run's numbers with its dopri5 re-evaluation) are read, not recomputed:
an atomic cache keyed by the full configuration.

A record is saved with :func:`deqode.results.torch_save_atomic` as ``<folder>/<name>-<hash>.pt``,
where the hash covers every setting that changes it (the run's configuration, the profile, the
device, the rehearsal step cap and :data:`CACHE_VERSION`). The training run itself is read or
resumed by :func:`deqode.train.fit_or_reuse`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

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


__all__ = ["CACHE_VERSION", "cached", "config_key"]
