"""The configurations of every run, one module per paper, in profiles ``smoke`` and ``paper``.

Each experiment module registers what it needs; :func:`preflight` checks, before any notebook of
a profile runs, that all datasets that profile needs are on disk. A chapter is a package of
this one (:func:`chapter_names`: ``homotopy_link``, ``homoode``, ``continuous_deq``, ``nag``,
``sim``); its needs are those its modules register, so one chapter can be checked, and built,
alone (:func:`book_plan`; each chapter's notebooks: ``deqode.book.build.CHAPTER_NOTEBOOKS``).

Training runs are registered by name per profile (:func:`register_experiment`); :func:`get`
returns the configuration that ``python -m deqode train NAME --profile P`` trains and
:func:`experiment_names` lists them. Every module of this package is imported on first use, so a
module only has to call the ``register_*`` functions at import time.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable, Iterable
from typing import Any

from deqode.choices import PROFILES, Registry, UnknownChoiceError, check_choice, check_profile

# Callables returning the dataset names a profile needs, by chapter (the package that registered
# them); filled by the experiment modules.
_DATASET_NEEDS: list[tuple[str, Callable[[str], list[str]]]] = []


def _chapter_of(module: str) -> str:
    """``homoode`` for ``deqode.chapters.homoode.configs``."""
    prefix = f"{__name__}."
    if not module.startswith(prefix):
        raise ValueError(f"dataset needs must be registered by a chapter package under "
                         f"{__name__}, not by {module!r}")
    return module[len(prefix):].split(".")[0]


def register_dataset_needs(fn: Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    """Register ``fn(profile) -> dataset names`` for the chapter whose module defines it."""
    _DATASET_NEEDS.append((_chapter_of(fn.__module__), fn))
    return fn


# Per chapter: fn(profile, present datasets) -> notebook parameters that run the chapter on the
# present datasets only (None: it cannot), e.g. HomoODE's ``datasets`` subset.
_PARTIAL_DATA: dict[str, Callable[[str, list[str]], dict[str, Any] | None]] = {}


def register_partial_data(fn: Callable[[str, list[str]], dict[str, Any] | None]):
    """Register how the chapter defining ``fn`` runs when only some of its datasets are on disk:
    ``fn(profile, present)`` returns its notebooks' parameters for that, or None."""
    _PARTIAL_DATA[_chapter_of(fn.__module__)] = fn
    return fn


def chapter_names() -> list[str]:
    """The chapters: the packages of this one, sorted."""
    return sorted(info.name for info in pkgutil.iter_modules(__path__) if info.ispkg)


def check_chapters(chapters: Iterable[str]) -> list[str]:
    """``chapters`` as a list, each checked against :func:`chapter_names`."""
    valid = chapter_names()
    return [check_choice("chapter", name, valid) for name in chapters]


def required_datasets(profile: str, chapters: Iterable[str] | None = None) -> list[str]:
    """Every dataset name the experiments of ``chapters`` (default: all) need in ``profile``,
    sorted, without repeats."""
    check_profile(profile)
    _load_modules()
    wanted = None if chapters is None else set(check_chapters(chapters))
    names: set[str] = set()
    for chapter, fn in _DATASET_NEEDS:
        if wanted is None or chapter in wanted:
            names.update(fn(profile))
    return sorted(names)


def preflight(profile: str, data_root: str = "data",
              chapters: Iterable[str] | None = None) -> None:
    """Raise ``DatasetMissingError`` (how to get each dataset) if ``chapters`` (default: all)
    lack one in ``profile``."""
    needed = required_datasets(profile, chapters)
    if not needed:
        return
    from deqode import data

    data.check_available(needed, root=data_root)


def book_plan(profile: str, chapters: Iterable[str] | None = None,
              data_root: str | os.PathLike = "data") -> dict[str, Any]:
    """Which chapters a book of ``profile`` builds, which it leaves out and why.

    ``chapters`` given: those; the rest are left out as not asked for. ``chapters`` None: every
    chapter. A chapter whose datasets are all on disk is built; one that lacks some is built on
    those present when it registered how (:func:`register_partial_data`: its notebooks'
    parameters; the rows left out are listed), else left out with the missing names, or, when
    it was asked for, :class:`DatasetMissingError` (as :func:`preflight`) is raised.
    Returns ``{"profile", "chapters": [built], "not_built": {chapter: reason}, "notebooks":
    [the built chapters' notebooks, in book order], "parameters": {notebook: {name: value}}}``.
    """
    from deqode.book.build import CHAPTER_NOTEBOOKS, declared_parameters
    from deqode.paths import repo_root

    _load_modules()
    asked = None if chapters is None else check_chapters(chapters)
    built, not_built, parameters = [], {}, {}
    for chapter in chapter_names():
        if asked is not None and chapter not in asked:
            not_built[chapter] = f"not built: CHAPTERS={' '.join(asked)}"
            continue
        needed = required_datasets(profile, [chapter])
        missing = [n for n in needed if _is_missing(n, data_root)]
        if missing:
            present = [n for n in needed if n not in missing]
            partial = _PARTIAL_DATA.get(chapter)
            params = partial(profile, present) if partial and present else None
            why = f"dataset {', '.join(missing)} missing under {data_root}"
            if params is None:
                if asked is not None:
                    preflight(profile, str(data_root), [chapter])
                not_built[chapter] = why
                continue
            not_built[f"{chapter} (the rows on {', '.join(missing)})"] = why
            for nb in CHAPTER_NOTEBOOKS[chapter]:
                declared = declared_parameters(repo_root() / "notebooks" / f"{nb}.ipynb")
                if mine := {k: v for k, v in params.items() if k in declared}:
                    parameters[nb] = mine
        built.append(chapter)
    notebooks = sorted(nb for c in built for nb in CHAPTER_NOTEBOOKS[c])
    return {"profile": profile, "chapters": built, "not_built": not_built,
            "notebooks": notebooks, "parameters": parameters}


def _is_missing(name: str, data_root: str | os.PathLike) -> bool:
    from deqode import data
    from deqode.errors import DatasetMissingError

    try:
        data.check_available([name], root=data_root)
    except DatasetMissingError:
        return True
    return False


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
            if info.name == "__main__":  # the command line, not a chapter
                continue
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
