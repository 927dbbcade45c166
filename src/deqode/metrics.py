"""Measurements for training runs: NFE counters, per-phase timing and peak memory.

Memory is reported in two ways:

* ``cuda_peak_mb``: ``torch.cuda.max_memory_allocated`` (reset at the start of each epoch) on a
  CUDA device; ``None`` on the CPU. This is the measure the paper-scale tables use.
* ``saved_tensor_peak_mb``, "autograd saved-tensor peak (MB)": the largest number of bytes that
  autograd held for backward at any moment of a training step, counted through
  :func:`torch.autograd.graph.saved_tensors_hooks`. Every tensor an operation saves for its
  backward is counted once per storage (views and repeated saves of one storage count once),
  parameters excluded, from the moment it is saved until autograd releases it. It is
  deterministic and device-independent, so it is the CPU measure: backprop through an ODE solver
  saves every stage of every step, while the adjoint saves almost nothing, and this number shows
  exactly that. It does not count temporaries that are not saved for backward, optimizer state
  or allocator overhead, so it is a lower bound on the true peak, not a process measurement.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from deqode.models.nfe import CountsNFE

MB = 1024.0**2


def _attribute(obj: object, name: str) -> object:
    """``getattr(obj, name, None)``, without the ``AttributeError`` that a module's
    ``__getattr__`` raises (and this returns ``None`` for) on a name it does not have: every
    place a module attribute can live is looked up first (once per training step, so cheaply)."""
    if isinstance(obj, nn.Module) and name not in obj.__dict__ and not hasattr(type(obj), name) \
            and name not in obj._parameters and name not in obj._buffers \
            and name not in obj._modules:
        return None
    return getattr(obj, name, None)


def nfe_resetter(model: nn.Module) -> Callable[[], None] | None:
    """The model's ``reset_nfe`` (:class:`deqode.models.nfe.CountsNFE`, or a module outside the
    protocol with such a method), or None: what :func:`reset_nfe` calls, for a loop to look up
    once."""
    reset = _attribute(model, "reset_nfe")
    return reset if callable(reset) else None


def reset_nfe(model: nn.Module) -> None:
    """Zero the model's NFE counters (:func:`nfe_resetter`; nothing where it has none)."""
    reset = nfe_resetter(model)
    if reset is not None:
        reset()


def read_nfe(model: nn.Module) -> tuple[float | None, float | None]:
    """``(nfe_forward, nfe_backward)`` of the model since its last reset; ``None`` where not
    counted. Reads :meth:`CountsNFE.nfe_counts <deqode.models.nfe.CountsNFE.nfe_counts>`; a
    module outside the protocol is read through its ``nfe_forward`` / ``nfe_backward``
    attributes, if any."""
    if isinstance(model, CountsNFE):
        forward, backward = model.nfe_counts()
    else:
        forward = _attribute(model, "nfe_forward")
        backward = _attribute(model, "nfe_backward")
    return (
        None if forward is None else float(forward),
        None if backward is None else float(backward),
    )


def synchronize(device: torch.device | None = None) -> None:
    """Wait for the queued CUDA work of ``device`` (``None``: of the current CUDA device, when
    there is one), so that a wall-clock reading that follows is complete. No-op on the CPU."""
    if device is None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
    elif device.type == "cuda":
        torch.cuda.synchronize(device)


def clock(device: torch.device | None = None) -> float:
    """``time.perf_counter()`` after :func:`synchronize`: the one timer of every measurement."""
    synchronize(device)
    return time.perf_counter()


class PhaseTimer:
    """Accumulates wall time per named phase (``forward``, ``backward``, ``eval``, ...).

    On a CUDA device the timer synchronises before reading the clock, so a phase is charged for
    the kernels it launched rather than for the time it took to queue them.
    """

    def __init__(self, device: torch.device | None = None) -> None:
        self.device = device if device is not None and device.type == "cuda" else None
        self.seconds: dict[str, float] = defaultdict(float)
        self.counts: dict[str, int] = defaultdict(int)

    def now(self) -> float:
        """The clock (after a CUDA synchronisation on a CUDA device)."""
        return clock(self.device) if self.device is not None else time.perf_counter()

    def add(self, name: str, started: float) -> float:
        """Charge phase ``name`` with the time since ``started`` (a :meth:`now` reading);
        returns the new reading (the start of the next phase). The hot loop's form of
        :meth:`phase`, without a context manager per phase."""
        now = self.now()
        self.seconds[name] += now - started
        self.counts[name] += 1
        return now

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = self.now()
        try:
            yield
        finally:
            self.add(name, start)

    def record(self) -> dict[str, float]:
        """``time_<phase>_s`` (total) and ``time_<phase>_per_batch_s`` (mean) for every phase."""
        out: dict[str, float] = {}
        for name, total in self.seconds.items():
            out[f"time_{name}_s"] = total
            out[f"time_{name}_per_batch_s"] = total / max(self.counts[name], 1)
        return out


class _Token:
    """Kept next to a saved tensor; its deletion tells the meter that autograd released it."""

    __slots__ = ("key", "meter", "nbytes")

    def __init__(self, meter: SavedTensorMeter, key: tuple[int, str], nbytes: int) -> None:
        self.meter, self.key, self.nbytes = meter, key, nbytes

    def __del__(self) -> None:
        self.meter._release(self.key, self.nbytes)


class SavedTensorMeter:
    """Live and peak bytes of the tensors autograd saves for backward (see the module docstring).

    Use ``with meter.track(exclude=model.parameters()): loss = ...; loss.backward()``. The pack
    hook counts a storage when it is first saved; a token kept next to the saved tensor uncounts
    it when autograd frees the saved value (after backward, or when the graph is dropped).
    ``peak_bytes`` is the maximum of the live count since the last :meth:`reset_peak`.
    """

    def __init__(self) -> None:
        self.live_bytes = 0
        self.peak_bytes = 0
        self._refs: dict[tuple[int, str], int] = {}
        self._excluded: set[tuple[int, str]] = set()

    @staticmethod
    def _key(tensor: torch.Tensor) -> tuple[int, str]:
        return tensor.untyped_storage().data_ptr(), str(tensor.device)

    def _pack(self, tensor: torch.Tensor) -> tuple[torch.Tensor, _Token | None]:
        if tensor.layout != torch.strided or tensor.is_meta:
            return tensor, None
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), str(tensor.device))
        if key in self._excluded:
            return tensor, None
        nbytes = storage.nbytes()
        count = self._refs.get(key, 0)
        if count == 0:
            self.live_bytes += nbytes
            self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        self._refs[key] = count + 1
        # Keep a detached alias: a saved *output* arrives with its grad_fn, and holding it would
        # form a cycle (tensor -> grad_fn -> saved value -> tensor) that leaks every graph that
        # is never back-propagated (e.g. an adaptive solver's error estimate).
        return tensor.detach(), _Token(self, key, nbytes)

    def _release(self, key: tuple[int, str], nbytes: int) -> None:
        count = self._refs.get(key, 0) - 1
        if count <= 0:
            self._refs.pop(key, None)
            self.live_bytes -= nbytes
        else:
            self._refs[key] = count

    @staticmethod
    def _unpack(packed: tuple[torch.Tensor, _Token | None]) -> torch.Tensor:
        return packed[0]

    def reset_peak(self) -> None:
        self.peak_bytes = self.live_bytes

    @contextmanager
    def track(self, exclude: Iterable[torch.Tensor] = ()) -> Iterator[SavedTensorMeter]:
        """Count saved tensors created inside the block; tensors in ``exclude`` are not counted."""
        self._excluded = {self._key(t) for t in exclude}
        with torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack):
            yield self


def cuda_peak_reset(device: torch.device) -> None:
    """Start a new ``max_memory_allocated`` window on a CUDA device (no-op elsewhere)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def cuda_peak_mb(device: torch.device) -> float | None:
    """``torch.cuda.max_memory_allocated`` in MB since the last reset, ``None`` off CUDA."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / MB


class Accumulator:
    """Sums for one epoch's metrics, reducible across DDP ranks with a single ``all_reduce``.

    Every quantity is a (sum, count) pair so that means over ranks are exact: e.g. the loss is
    the sum of per-sample losses over the number of samples seen by all ranks.
    """

    #: deferred tensors are reduced once this many steps of a quantity are waiting
    DEFER_STEPS = 64

    def __init__(self) -> None:
        self.sums: dict[str, float] = defaultdict(float)
        self.counts: dict[str, float] = defaultdict(float)
        self._deferred: dict[str, tuple[Callable[..., torch.Tensor], list[tuple]]] = {}

    def add(self, name: str, total: float, count: float = 1.0) -> None:
        self.sums[name] += float(total)
        self.counts[name] += float(count)

    def add_deferred(self, name: str, reduce: Callable[..., torch.Tensor],
                     tensors: tuple[torch.Tensor, ...], count: float) -> None:
        """Add ``reduce(*tensors)`` (a one-element tensor) to ``name``, computed later in one go
        with the other steps' tensors (each concatenated along dim 0), so that a training step
        neither runs the reduction nor reads a device value (a synchronisation on a GPU). The
        total must be additive over the rows (a count of correct predictions is); it is read at
        :meth:`settle`, which :meth:`mean` and :meth:`all_reduce` call, or after
        :attr:`DEFER_STEPS` steps (bounded memory)."""
        self.sums[name] += 0.0
        self.counts[name] += float(count)
        entry = self._deferred.setdefault(name, (reduce, []))
        entry[1].append(tensors)
        if len(entry[1]) >= self.DEFER_STEPS:
            self.settle()

    def settle(self) -> None:
        """Reduce the deferred tensors into the sums."""
        for name, (reduce, pending) in self._deferred.items():
            if pending:
                self.sums[name] += float(reduce(*(torch.cat(c) for c in zip(*pending,
                                                                              strict=True))))
                pending.clear()

    def all_reduce(self, device: torch.device) -> None:
        """Sum every (sum, count) over the process group (no-op when not distributed)."""
        import torch.distributed as dist

        self.settle()
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return
        names = sorted(self.sums)
        packed = torch.tensor(
            [self.sums[n] for n in names] + [self.counts[n] for n in names],
            dtype=torch.float64, device=device,
        )
        dist.all_reduce(packed)
        values = packed.tolist()
        for i, name in enumerate(names):
            self.sums[name] = values[i]
            self.counts[name] = values[len(names) + i]

    def mean(self, name: str) -> float | None:
        self.settle()
        count = self.counts.get(name, 0.0)
        return self.sums[name] / count if count else None


# --------------------------------------------------------------------------------------------------
# process memory and machine description (used by the benchmarks)
# --------------------------------------------------------------------------------------------------


def _proc_status_bytes(field: str) -> int | None:
    """A memory field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``) in bytes; None if absent."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key == field:
                    number, unit = value.split()
                    if unit.lower() != "kb":
                        return None
                    return int(number) * 1024
    except (OSError, ValueError):
        return None
    return None


def _release_free_heap() -> None:
    """Hand freed heap memory back to the OS (glibc ``malloc_trim(0)``; no-op elsewhere)."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(name).malloc_trim(0)  # type: ignore[union-attr]
    except (OSError, AttributeError, TypeError):
        pass


class RSSPeakMeter:
    """Peak growth of the process's resident set size (RSS) over a block, on Linux.

    ``with RSSPeakMeter() as rss: step()`` then ``rss.growth_bytes`` is the kernel's peak-RSS
    mark (``VmHWM``) at the end minus the RSS at the start. On entry the meter returns freed heap
    memory to the OS (``malloc_trim``) and resets the peak mark (writing ``5`` to
    ``/proc/self/clear_refs``), so the number is the memory the block added at its worst moment:
    saved activations, temporaries, optimiser state, allocator overhead. Unlike
    :class:`SavedTensorMeter` it is a process measurement, hence noisier (memory the allocator kept
    from earlier blocks can be reused without RSS growth); ``growth_bytes`` is ``None`` where the
    kernel interface is missing (non-Linux) or not writable.
    """

    def __init__(self) -> None:
        self.baseline_bytes: int | None = None
        self.growth_bytes: int | None = None

    @staticmethod
    def _reset_peak_mark() -> bool:
        """Set ``VmHWM`` to the current RSS; False if the kernel interface is missing."""
        if _proc_status_bytes("VmHWM") is None:
            return False
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as handle:
                handle.write("5")
        except OSError:
            return False
        return True

    def __enter__(self) -> RSSPeakMeter:
        self.growth_bytes = None
        _release_free_heap()
        self.baseline_bytes = _proc_status_bytes("VmRSS") if self._reset_peak_mark() else None
        return self

    def __exit__(self, *exc: object) -> None:
        peak = _proc_status_bytes("VmHWM")
        if self.baseline_bytes is not None and peak is not None:
            self.growth_bytes = max(peak - self.baseline_bytes, 0)


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


__all__ = [
    "MB",
    "Accumulator",
    "PhaseTimer",
    "RSSPeakMeter",
    "SavedTensorMeter",
    "cpu_model",
    "cuda_peak_mb",
    "cuda_peak_reset",
    "read_nfe",
    "reset_nfe",
]
