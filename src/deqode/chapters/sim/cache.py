"""Finished runs are read, not retrained: an atomic on-disk cache keyed by the full configuration.

Each run (one model, one seed, one data set) is stored as ``<folder>/<name>-<key>.pt`` where
``key`` hashes everything that determines its result: the configuration passed in, the rehearsal
step cap and :data:`CACHE_VERSION` (bumped when a loop changes what it computes). Writes go to a
temporary file in the same folder and are renamed into place, so an interrupted run leaves no
half-written entry; the next execution retrains only what is missing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from deqode import rehearsal
from deqode.results import torch_load_record, torch_save_atomic

CACHE_VERSION = 2  # 2: records hold state dicts, read with weights_only=True
T = TypeVar("T")


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float | int | str | bool) or value is None:
        return value
    return repr(value)


def config_key(config: Mapping[str, Any]) -> str:
    """A stable hash of ``config`` (with the rehearsal cap and cache version) as 16 hex digits."""
    full = {"config": _plain(config), "rehearsal": rehearsal.step_cap(), "version": CACHE_VERSION}
    text = json.dumps(full, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def cached(folder: str | os.PathLike | None, name: str, config: Mapping[str, Any],
           compute: Callable[[], T]) -> T:
    """``compute()``'s result, read from ``folder`` if this configuration already finished there.

    ``folder=None`` disables the cache (always computes)."""
    if folder is None:
        return compute()
    folder = Path(folder)
    path = folder / f"{name}-{config_key(config)}.pt"
    if path.exists():
        return torch_load_record(path)
    result = compute()
    torch_save_atomic(result, path)
    return result


__all__ = ["CACHE_VERSION", "cached", "config_key"]
