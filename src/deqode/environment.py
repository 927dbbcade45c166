"""What a run depends on: the checkout's commit and the versions and hardware of this process,
the GPU settings that change its numbers, the installed packages (:data:`PACKAGES_FILE`) and the
versions of the packages a notebook imported (:func:`track_imported_packages`)."""

from __future__ import annotations

import atexit
import functools
import json
import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch

from deqode.devices import describe_device
from deqode.paths import repo_root
from deqode.results import write_json_atomic, write_text_atomic

#: The ``pip freeze``-like list of installed packages written beside each run's records.
PACKAGES_FILE = "packages.txt"
#: Mixed precision: the training loop has no autocast option, so every run is in its
#: ``TrainConfig.dtype`` throughout.
AMP = "off"
NO_GPU = "no GPU"
#: The entry of a run record that lists the distributions its process imported.
IMPORTED_KEY = "imported_packages"


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo_root(), capture_output=True, text=True,
                          check=True, timeout=10).stdout.strip()


def git_commit() -> str:
    """The checkout's commit (with ``-dirty`` if it has uncommitted changes), or ``unknown``."""
    try:
        sha = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{sha}-dirty" if dirty else sha


def gpu_record(device: torch.device) -> dict[str, Any]:
    """CUDA and cuDNN versions, the GPUs, and the settings that change numbers on a GPU: TF32
    (matmul, cuDNN, ``float32_matmul_precision``), ``cudnn.benchmark`` and determinism. The
    versions are those torch was built with (``None`` for a CPU-only build or no cuDNN); the
    settings are recorded as set, although they act only on CUDA devices."""
    cuda = torch.cuda.is_available()
    count = torch.cuda.device_count() if cuda else 0
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        gpu_name = torch.cuda.get_device_name(index)
    else:
        gpu_name = NO_GPU
    cudnn = torch.backends.cudnn
    return {
        "cuda": torch.version.cuda,
        "cudnn": cudnn.version() if cudnn.is_available() else None,
        "gpu_name": gpu_name,
        "gpu_count": count,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": cudnn.allow_tf32,
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "cudnn_benchmark": cudnn.benchmark,
        "cudnn_deterministic": cudnn.deterministic,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
        "amp": AMP,
    }


@functools.cache
def package_list() -> str:
    """Every installed distribution as ``name==version``, one a line, sorted by name (what
    ``pip freeze`` lists, without running pip); read once per process."""
    found = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.setdefault(name.lower(), f"{name}=={dist.version}")
    return "".join(f"{found[key]}\n" for key in sorted(found))


def write_package_list(folder: str | os.PathLike) -> Path:
    """Write :func:`package_list` to ``<folder>/packages.txt`` (atomically)."""
    header = f"# installed packages (python {platform.python_version()})\n"
    return write_text_atomic(Path(folder) / PACKAGES_FILE, header + package_list())


def environment_record(device: torch.device) -> dict[str, Any]:
    """Versions and hardware a run depends on, with :func:`gpu_record`; the package list goes
    to its own file (:func:`write_package_list`)."""
    import torchdiffeq

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchdiffeq": getattr(torchdiffeq, "__version__", "unknown"),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "device": describe_device(device),
        "cpu_threads": torch.get_num_threads(),
        "git_commit": git_commit(),
        **gpu_record(device),
        "packages": PACKAGES_FILE,
    }


@functools.cache
def _module_owners() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def imported_packages(modules: list[str] | None = None) -> dict[str, str]:
    """``{distribution: version}`` of every installed distribution that provides one of
    ``modules`` (default: every module this process has imported), sorted by name; the standard
    library and modules no distribution provides (the editable ``deqode``) are left out."""
    names = list(sys.modules) if modules is None else modules
    owners = _module_owners()
    found = {}
    for top in {name.partition(".")[0] for name in names}:
        for dist in owners.get(top, ()):
            try:
                found[dist] = metadata.version(dist)
            except metadata.PackageNotFoundError:  # a stale entry of packages_distributions
                continue
    return dict(sorted(found.items(), key=lambda item: item[0].lower()))


class _ImportTracker:
    """Keeps ``record[IMPORTED_KEY]`` (a JSON file) current: rewritten whenever the number of
    imported modules has changed, checked after every IPython cell and at exit."""

    def __init__(self, record: Path) -> None:
        self.record, self.seen = record, -1

    def update(self, *_: Any) -> None:
        if len(sys.modules) == self.seen or not self.record.is_file():
            return
        self.seen = len(sys.modules)
        data = json.loads(self.record.read_text(encoding="utf-8"))
        data[IMPORTED_KEY] = imported_packages()
        write_json_atomic(self.record, data)


_tracker: _ImportTracker | None = None


def track_imported_packages(record: str | os.PathLike) -> None:
    """List in the JSON run record ``record`` (under :data:`IMPORTED_KEY`) the exact version of
    every package the process imported: now, after each cell when run in IPython (a notebook's
    kernel), and at exit. A later call moves the tracking to its record."""
    global _tracker
    first = _tracker is None
    if first:
        atexit.register(lambda: _tracker and _tracker.update())
    _tracker = _ImportTracker(Path(record))
    _tracker.update()
    shell = sys.modules.get("IPython") and sys.modules["IPython"].get_ipython()
    if shell is not None and first:
        shell.events.register("post_run_cell", lambda *args: _tracker.update(*args))
