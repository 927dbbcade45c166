"""Rehearsal mode: every training loop stops after a few optimiser steps.

``make rehearse-cpu`` executes every notebook of the ``cpu`` profile with the environment variable
``DEQODE_REHEARSAL_STEPS=N`` set. Every training and evaluation loop then takes at most ``N``
batches per epoch and at most :data:`REHEARSAL_EPOCHS` epochs, so that a broken configuration fails
in minutes; the numbers it produces are not results (figures and tables are labelled so, and the
outputs go to a separate results folder). Loops outside :func:`deqode.train.fit` use
:func:`capped` and :func:`epochs` the same way.

``DEQODE_REHEARSAL_BATCH=B`` (only together with the step cap) also caps the batches that
:func:`deqode.train.fit` feeds, training and evaluation, at ``B`` items: ``make rehearse`` runs
the paper profile's full-size models on 2 CPU cores, where one batch of 128 images takes minutes
through a large DEQ. The configuration itself is unchanged (a notebook finds the CLI's run).
With the batch cap, a loader's worker processes are capped at one (:func:`loader_workers`): the
multi-process loading path still runs, without starting eight processes per loader for two
batches on two cores.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

ENV = "DEQODE_REHEARSAL_STEPS"
BATCH_ENV = "DEQODE_REHEARSAL_BATCH"
REHEARSAL_EPOCHS = 1
T = TypeVar("T")


def _positive(name: str) -> int | None:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {raw!r}")
    return value


def step_cap() -> int | None:
    """``N`` when rehearsing (``DEQODE_REHEARSAL_STEPS=N``, N ≥ 1), else None."""
    return _positive(ENV)


def batch_cap() -> int | None:
    """``B`` when rehearsing with ``DEQODE_REHEARSAL_BATCH=B`` (B ≥ 1), else None."""
    cap = _positive(BATCH_ENV)
    if cap is not None and step_cap() is None:
        raise ValueError(f"{BATCH_ENV} caps batches only in a rehearsal: set {ENV} as well")
    return cap


def active() -> bool:
    return step_cap() is not None


def capped(iterable: Iterable[T]) -> Iterator[T]:
    """``iterable`` itself, or its first ``N`` items when rehearsing."""
    cap = step_cap()
    return iter(iterable) if cap is None else itertools.islice(iterable, cap)


def epochs(n: int) -> int:
    """``n``, or at most :data:`REHEARSAL_EPOCHS` when rehearsing."""
    return n if step_cap() is None else min(n, REHEARSAL_EPOCHS)


def steps(n: int) -> int:
    """A step budget ``n``, or at most ``N`` when rehearsing."""
    cap = step_cap()
    return n if cap is None else min(n, cap)


def loader_workers(n: int) -> int:
    """``n`` data-loader worker processes, or at most one when rehearsing with a batch cap."""
    return n if batch_cap() is None else min(n, 1)


def batch_size(n: int) -> int:
    """A batch size ``n``, or at most ``B`` when rehearsing with a batch cap."""
    cap = batch_cap()
    return n if cap is None else min(n, cap)


def first(*batches: Any) -> tuple[Any, ...]:
    """Evaluation batches of one length (e.g. inputs and labels) as they are, or their first
    ``B`` items when rehearsing with a batch cap: a probe on a paper batch of 128 images costs
    minutes per model on a CPU core."""
    if not batches:
        return ()
    n = batch_size(len(batches[0]))
    return tuple(b[:n] for b in batches)


def record() -> dict[str, int] | None:
    """The caps a run was trained under (``{"steps": N, "batch": B}``, ``batch`` only with the
    batch cap), or None outside a rehearsal. Recorded with a run's configuration, so that a
    rehearsal run is never read back or resumed by a real run (:mod:`deqode.train.reuse`)."""
    cap = step_cap()
    if cap is None:
        return None
    batch = batch_cap()
    return {"steps": cap, **({} if batch is None else {"batch": batch})}


def stop_reason(max_epochs: int | None) -> str:
    """Why :func:`deqode.train.fit` stopped a run before its last epoch: the rehearsal caps when
    rehearsing, else ``max_epochs``."""
    caps = record()
    if caps is None:
        return f"max_epochs={max_epochs} reached; continue with resume=True / --resume"
    batch = f", batches of at most {caps['batch']} ({BATCH_ENV})" if "batch" in caps else ""
    return (f"rehearsal cap reached: {REHEARSAL_EPOCHS} epoch(s) of at most {caps['steps']} "
            f"steps ({ENV}={caps['steps']}){batch}; a rehearsal run is not a result and no real "
            f"run resumes it")
