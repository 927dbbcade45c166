"""Result records: atomic writes, loading, and paper-vs-ours tables.

Every file a run produces is written to a temporary sibling and renamed into place, so an
interrupted run never leaves a half-written result behind.
"""

from __future__ import annotations

import csv
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from deqode.paths import reference_dir

NOT_TRANSCRIBED = "not transcribed"
REFERENCE_COLUMNS = ("paper", "table", "row", "column", "value", "source")


def _atomic_write(path: Path, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    return _atomic_write(Path(path), lambda h: h.write(data))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return _jsonable(obj.item())
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json_atomic(path: str | os.PathLike, record: Any) -> Path:
    """Write ``record`` as indented JSON; non-finite floats become strings ("nan", "inf")."""
    return write_text_atomic(path, json.dumps(_jsonable(record), indent=2, sort_keys=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def torch_save_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through a temporary file and an atomic rename."""
    import torch

    return _atomic_write(Path(path), lambda h: torch.save(obj, h))


def torch_load_record(path: str | os.PathLike) -> Any:
    """A record written by :func:`torch_save_atomic`, read with ``weights_only=True``: tensors,
    numbers, strings, containers and NumPy arrays, never arbitrary pickled objects. A file that
    holds anything else (an ``nn.Module``, say) raises ``pickle.UnpicklingError``."""
    import numpy as np
    import torch

    core = getattr(np, "_core", None) or np.core  # numpy 2 renamed numpy.core
    arrays = [np.ndarray, np.dtype, core.multiarray._reconstruct]
    arrays += [type(np.dtype(kind)) for kind in ("f4", "f8", "i8", "i4", "b1", "c8", "c16")]
    with torch.serialization.safe_globals(arrays):
        return torch.load(path, map_location="cpu", weights_only=True)


def load_reference(paper: str) -> list[dict[str, str]]:
    """Rows of ``data/reference/<paper>.csv``: paper, table, row, column, value, source."""
    path = reference_dir() / f"{paper}.csv"
    if not path.is_file():
        available = sorted(p.stem for p in reference_dir().glob("*.csv"))
        raise FileNotFoundError(
            f"no reference table for paper {paper!r} at {path}; available: {', '.join(available)}"
        )
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    missing = [c for c in REFERENCE_COLUMNS if rows and c not in rows[0]]
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}; expected {list(REFERENCE_COLUMNS)}")
    return rows


def reference_value(rows: Sequence[Mapping[str, str]], table: str, row: str, column: str) -> str:
    """The paper's cell (as text) or ``not transcribed`` when the reference does not hold it."""
    for r in rows:
        if r["table"] == table and r["row"] == row and r["column"] == column:
            return r["value"] or NOT_TRANSCRIBED
    return NOT_TRANSCRIBED
