"""Processes and random states of a run: the DDP process group, seeding, and RNG states that a
checkpoint can hold (tensors and plain types, loadable with ``weights_only=True``)."""

from __future__ import annotations

import os
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from deqode.devices import resolve_device


@dataclass
class Dist:
    """This process's rank in the run, the world size, and whether the run created the group."""

    rank: int = 0
    world: int = 1
    created: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str | torch.device) -> tuple[Dist, torch.device]:
    """Device and process group: under torchrun one process per ``LOCAL_RANK``."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    dev = resolve_device(device)
    if world == 1:
        return Dist(), dev
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank)
        torch.cuda.set_device(dev)
    created = not dist.is_initialized()
    if created:
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), created), dev


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's global and torch's RNGs."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the global RNG others may use)
    torch.manual_seed(seed)


def rng_state(device: torch.device) -> dict[str, Any]:
    """RNG states as tensors and plain types, loadable with ``weights_only=True``."""
    _, keys, pos, has_gauss, cached = np.random.get_state()  # noqa: NPY002
    version, py_state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "numpy": [torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "python": [int(version), torch.tensor(py_state, dtype=torch.int64), gauss],
    }


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] is not None and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)
    keys, pos, has_gauss, cached = state["numpy"]
    keys = keys.numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, pos, has_gauss, cached))  # noqa: NPY002
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(int(v) for v in py_state.tolist()), gauss))
