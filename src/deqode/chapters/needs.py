"""Which datasets each chapter needs, by chapter package name (``homoode``, ``nag``, ...).

Read from the dataset needs the chapters register (:func:`deqode.chapters.register_dataset_needs`):
a need belongs to the chapter package whose module registered it. Used by
``python -m deqode download CHAPTER``.
"""

from __future__ import annotations

import pkgutil

from deqode import chapters
from deqode.choices import check_choice, check_profile


def chapter_names() -> list[str]:
    """The chapter packages, sorted (``continuous_deq``, ``homoode``, ...)."""
    return sorted(info.name for info in pkgutil.iter_modules(chapters.__path__) if info.ispkg)


def chapter_of(name: str) -> str | None:
    """``name`` as a chapter package name (``continuous-deq`` is ``continuous_deq``), or None."""
    normal = name.replace("-", "_")
    return normal if normal in chapter_names() else None


def chapter_datasets(chapter: str, profile: str) -> list[str]:
    """The datasets ``chapter`` needs in ``profile``, in the order registered, without repeats."""
    check_profile(profile)
    check_choice("chapter", chapter.replace("-", "_"), chapter_names())
    chapters.required_datasets(profile)  # imports every chapter module: all needs registered
    prefix = f"{chapters.__name__}.{chapter.replace('-', '_')}"
    names: list[str] = []
    for need in chapters._DATASET_NEEDS:
        if need.__module__ == prefix or need.__module__.startswith(prefix + "."):
            names.extend(n for n in need(profile) if n not in names)
    return names


__all__ = ["chapter_datasets", "chapter_names", "chapter_of"]
