"""What a run depends on: the checkout's commit and the versions and hardware of this process."""

from __future__ import annotations

import platform
import subprocess
from typing import Any

import numpy as np
import torch

from deqode.devices import describe_device
from deqode.paths import repo_root


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


def environment_record(device: torch.device) -> dict[str, Any]:
    """Versions and hardware a run depends on."""
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
    }
