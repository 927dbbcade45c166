"""Cell tags of executed notebooks that shape the rendered page (myst-nb honours them).

papermill adds a cell tagged ``injected-parameters`` after a notebook's ``parameters`` cell; it
holds the values of that run (e.g. ``profile = "cpu"``). The page shows the profile in the run
banner of the next cell and in the reproducibility appendix, so the injected cell is removed from
the HTML (tag ``remove-cell``); it stays in the ``.ipynb`` that readers download.
"""

from __future__ import annotations

from pathlib import Path

INJECTED = "injected-parameters"
REMOVE_CELL = "remove-cell"


def hide_injected_parameters(nb) -> int:
    """Tag papermill's injected-parameters cells of ``nb`` (a notebook node) ``remove-cell``;
    return how many cells carry the tag."""
    count = 0
    for cell in nb.cells:
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if INJECTED in tags:
            if REMOVE_CELL not in tags:
                tags.append(REMOVE_CELL)
            count += 1
    return count


def tag_executed(path: str | Path) -> int:
    """:func:`hide_injected_parameters` on the notebook file ``path``, rewritten in place
    (atomically); return the number of injected cells."""
    import nbformat

    from deqode.results import write_text_atomic

    path = Path(path)
    nb = nbformat.read(str(path), as_version=4)
    count = hide_injected_parameters(nb)
    write_text_atomic(path, nbformat.writes(nb) + "\n")
    return count


def stage_executed(src: str | Path, dest: str | Path) -> int:
    """Copy the executed notebook ``src`` to ``dest`` with its injected cells tagged (notebooks
    executed before the tagging existed are cleaned when the book is assembled)."""
    import shutil

    shutil.copy2(src, dest)
    return tag_executed(dest)
