"""Device selection: ``auto`` means CUDA when present, else the CPU."""

from __future__ import annotations

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Map a device name to a ``torch.device``; ``auto`` prefers CUDA.

    Raises a clear error for an unknown name or a CUDA device that is not available.
    """
    if isinstance(device, torch.device):
        name = str(device)
    else:
        name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    kind = name.split(":", 1)[0]
    if kind not in {"cpu", "cuda"}:
        raise ValueError(
            f"unknown device {device!r}; valid choices: 'auto', 'cpu', 'cuda', 'cuda:N'"
        )
    dev = torch.device(name)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(
                f"device {device!r} requested but CUDA is not available on this machine; "
                "use device='auto' or 'cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(
                f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) "
                "are visible (check CUDA_VISIBLE_DEVICES)"
            )
    return dev


def describe_device(device: torch.device) -> str:
    """A human-readable device description for run records."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        return f"cuda:{index} ({torch.cuda.get_device_name(index)})"
    from deqode.metrics import cpu_model

    return f"cpu ({cpu_model()}, {torch.get_num_threads()} torch thread(s))"
