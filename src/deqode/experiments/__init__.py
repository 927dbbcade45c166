"""The configurations of every run, one module per paper, in profiles ``smoke`` and ``paper``.

Each experiment module registers what it needs; :func:`preflight` checks, before any notebook of
a profile runs, that all datasets that profile needs are on disk.
"""

from __future__ import annotations

from collections.abc import Callable

from deqode.choices import check_profile

# Callables returning the dataset names a profile needs; filled by the experiment modules.
_DATASET_NEEDS: list[Callable[[str], list[str]]] = []


def register_dataset_needs(fn: Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    _DATASET_NEEDS.append(fn)
    return fn


def required_datasets(profile: str) -> list[str]:
    """Every dataset name some experiment needs in ``profile``, sorted, without repeats."""
    check_profile(profile)
    names: set[str] = set()
    for fn in _DATASET_NEEDS:
        names.update(fn(profile))
    return sorted(names)


def preflight(profile: str, data_root: str = "data") -> None:
    """Raise ``FileNotFoundError`` naming how to get each dataset that ``profile`` needs but lacks."""
    needed = required_datasets(profile)
    if not needed:
        return
    from deqode import data

    data.check_available(needed, root=data_root)
