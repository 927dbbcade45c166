"""The configurations of every run, one module per paper, in profiles ``smoke`` and ``paper``.

Each experiment module registers what it needs; :func:`preflight` checks, before any notebook of
a profile runs, that all datasets that profile needs are on disk.

Training runs are registered by name per profile (:func:`register_experiment`); :func:`get`
returns the configuration that ``python -m deqode train NAME --profile P`` trains and
:func:`experiment_names` lists them. Every module of this package is imported on first use, so a
module only has to call the ``register_*`` functions at import time.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any

from deqode.choices import PROFILES, Registry, UnknownChoiceError, check_profile

# Callables returning the dataset names a profile needs; filled by the experiment modules.
_DATASET_NEEDS: list[Callable[[str], list[str]]] = []


def register_dataset_needs(fn: Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    _DATASET_NEEDS.append(fn)
    return fn


def required_datasets(profile: str) -> list[str]:
    """Every dataset name some experiment needs in ``profile``, sorted, without repeats."""
    check_profile(profile)
    _load_modules()
    names: set[str] = set()
    for fn in _DATASET_NEEDS:
        names.update(fn(profile))
    return sorted(names)


def preflight(profile: str, data_root: str = "data") -> None:
    """Raise ``DatasetMissingError`` (how to get each dataset) if ``profile`` lacks one."""
    needed = required_datasets(profile)
    if not needed:
        return
    from deqode import data

    data.check_available(needed, root=data_root)


# Training-run configurations (factories), by profile and name; filled by the experiment modules.
_EXPERIMENTS: dict[str, Registry[Callable[[], Any]]] = {
    p: Registry("experiment", sort=True, scope=f"for profile {p!r}") for p in PROFILES
}
_LOADED = False


def _load_modules() -> None:
    """Import every module of this package once, so that their registrations have run."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True  # set first: a module may itself ask the registry while it is imported
    try:
        for info in pkgutil.iter_modules(__path__):
            importlib.import_module(f"{__name__}.{info.name}")
    except BaseException:
        _LOADED = False  # surface the import error again next time, never a partial registry
        raise


def register_experiment(name: str, profile: str, factory: Callable[[], Any]) -> None:
    """Register ``factory`` (returning a fresh :class:`deqode.train.TrainConfig`) as ``name``."""
    check_profile(profile)
    _EXPERIMENTS[profile].register(name, factory)


def experiment_names(profile: str | None = None) -> list[str]:
    """Sorted experiment names of ``profile`` (of every profile when ``None``)."""
    _load_modules()
    if profile is not None:
        check_profile(profile)
        return _EXPERIMENTS[profile].names()
    return sorted({n for by_name in _EXPERIMENTS.values() for n in by_name})


def get(name: str, profile: str) -> Any:
    """The training configuration ``name`` in ``profile``.

    Raises :class:`UnknownChoiceError` for an unknown profile or name, listing the valid names
    (and the profiles where ``name`` does exist, if any).
    """
    check_profile(profile)
    _load_modules()
    elsewhere = [p for p in PROFILES if name in _EXPERIMENTS[p]]
    if name not in _EXPERIMENTS[profile] and elsewhere:
        listed = ", ".join(repr(n) for n in _EXPERIMENTS[profile])
        raise UnknownChoiceError(
            f"unknown experiment {name!r} for profile {profile!r} ({name!r} exists in profile "
            f"{', '.join(map(repr, elsewhere))}); valid choices: {listed}"
        )
    return _EXPERIMENTS[profile][name]()
