"""Batch sources besides the ``DataLoader`` of ``TrainConfig.data_order``: in dataset order
(``in_order``, ``full_batch``; slices of the dataset's ``inputs`` / ``targets`` tensors when it
has them, no per-item collation, the same values) and endless streams (``stream``)."""

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


class Stream:
    """An endless source of batches, ``draw(rng)`` each, from its own random generator (a NumPy
    ``Generator`` or a ``torch.Generator``; ``None``: the same batch every time), whose state
    a checkpoint keeps (``TrainConfig.data_order="stream"``)."""

    def __init__(self, draw: Any, rng: Any = None) -> None:
        self.draw, self.rng = draw, rng

    def __iter__(self) -> Iterator[Any]:
        while True:
            yield self.draw(self.rng)

    def state_dict(self) -> dict[str, Any]:
        if self.rng is None:
            return {}
        if hasattr(self.rng, "bit_generator"):
            return {"numpy": self.rng.bit_generator.state}
        return {"torch": self.rng.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "numpy" in state:
            self.rng.bit_generator.state = state["numpy"]
        elif "torch" in state:
            self.rng.set_state(state["torch"])


class StreamEpochs:
    """``per_epoch`` batches of a :class:`Stream` per epoch, ``total`` in all (the last epoch
    takes what is left)."""

    def __init__(self, stream: Stream, per_epoch: int, total: int) -> None:
        self.stream, self.per_epoch, self.total = stream, per_epoch, total
        self.epoch = 0

    def __len__(self) -> int:
        return self.per_epoch

    def __iter__(self) -> Iterator[Any]:
        left = self.total - self.epoch * self.per_epoch
        source = iter(self.stream)
        for _ in range(min(self.per_epoch, max(left, 0))):
            yield next(source)


__all__ = ["Stream", "StreamEpochs", "TensorBatches"]
