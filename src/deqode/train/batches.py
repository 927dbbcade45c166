"""Batches in dataset order (``TrainConfig.data_order`` ``in_order`` and ``full_batch``): slices
of the dataset's ``inputs`` / ``targets`` tensors when it has them (no per-item collation; the
same values), else a ``DataLoader`` without shuffling."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader, Dataset


class TensorBatches:
    """``batch_size`` consecutive samples at a time; the last batch is short unless
    ``drop_last``."""

    def __init__(self, dataset: Dataset, batch_size: int, drop_last: bool = False) -> None:
        self.dataset, self.batch_size, self.drop_last = dataset, batch_size, drop_last
        self.tensors = (dataset.inputs, dataset.targets) if (
            hasattr(dataset, "inputs") and hasattr(dataset, "targets")) else None
        self.loader = None if self.tensors is not None else DataLoader(
            dataset, batch_size=batch_size, shuffle=False, drop_last=drop_last)

    def __len__(self) -> int:
        if self.loader is not None:
            return len(self.loader)
        n = len(self.tensors[0])
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[Any]:
        if self.loader is not None:
            yield from self.loader
            return
        x, y = self.tensors
        for i in range(len(self)):
            yield x[i * self.batch_size:(i + 1) * self.batch_size], \
                y[i * self.batch_size:(i + 1) * self.batch_size]


__all__ = ["TensorBatches"]
