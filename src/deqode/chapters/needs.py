"""Which datasets each chapter needs, by chapter package name (``homoode``, ``nag``, ...), for
``python -m deqode download CHAPTER``: the needs the chapters register
(:func:`deqode.chapters.register_dataset_needs`), read through
:func:`deqode.chapters.required_datasets`."""

from __future__ import annotations

from deqode import chapters
from deqode.chapters import chapter_names


def chapter_of(name: str) -> str | None:
    """``name`` as a chapter package name (``continuous-deq`` is ``continuous_deq``), or None."""
    normal = name.replace("-", "_")
    return normal if normal in chapter_names() else None


def chapter_datasets(chapter: str, profile: str) -> list[str]:
    """The datasets ``chapter`` needs in ``profile``, sorted."""
    return chapters.required_datasets(profile, [chapter.replace("-", "_")])


__all__ = ["chapter_datasets", "chapter_names", "chapter_of"]
