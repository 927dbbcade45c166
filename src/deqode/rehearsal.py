"""Rehearsal mode: every training loop stops after a few optimiser steps.

``make rehearse-cpu`` executes every notebook of the ``cpu`` profile with the environment variable
``DEQODE_REHEARSAL_STEPS=N`` set. Every training and evaluation loop then takes at most ``N``
batches per epoch and at most :data:`REHEARSAL_EPOCHS` epochs, so that a broken configuration fails
in minutes; the numbers it produces are not results (figures and tables are labelled so, and the
outputs go to a separate results folder). Loops outside :func:`deqode.train.fit` use
:func:`capped` and :func:`epochs` the same way.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

ENV = "DEQODE_REHEARSAL_STEPS"
REHEARSAL_EPOCHS = 1
T = TypeVar("T")


def step_cap() -> int | None:
    """``N`` when rehearsing (``DEQODE_REHEARSAL_STEPS=N``, N ≥ 1), else None."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return None
    try:
        steps = int(raw)
    except ValueError:
        raise ValueError(f"{ENV} must be a positive integer, got {raw!r}") from None
    if steps < 1:
        raise ValueError(f"{ENV} must be a positive integer, got {raw!r}")
    return steps


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
