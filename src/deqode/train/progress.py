"""Training progress as one-line messages on the logger ``deqode.progress``.

:func:`deqode.train.fit` reports the start of a run, every epoch, a line every
:data:`STEP_EVERY_S` seconds within a long epoch, and the run's end: run name, epoch (and step)
of total, training loss and accuracy (or the task's metrics), NFE, elapsed time and ETA. The
logger has no output of its own (a ``NullHandler``, no propagation), so a run prints nothing
unless a reader attaches one: :func:`log_to_file` (what the book's notebooks do under the
``cpu`` and ``paper`` profiles), or any ``logging`` handler.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path

LOGGER_NAME = "deqode.progress"
logger = logging.getLogger(LOGGER_NAME)
logger.addHandler(logging.NullHandler())
logger.propagate = False

#: Seconds between two step lines within one epoch (an epoch shorter than this has none).
STEP_EVERY_S = 60.0


def duration(seconds: float) -> str:
    """``42s``, ``5m07s``, ``3h12m`` or ``2d04h``."""
    s = max(round(seconds), 0)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def nfe_text(forward: float | None, backward: float | None) -> str:
    """``  nfe F/B`` (mean function evaluations per step), or nothing for a model without."""
    return "" if forward is None else f"  nfe {forward:.1f}/{backward or 0:.1f}"


class Progress:
    """The progress of one run: where it started, where it stops and how fast it goes.

    ``epochs``: the planned total; :meth:`begin` sets the epoch this session starts from and the
    one it stops at (the ETA is to that one); ``steps_per_epoch``: iterations in one epoch.
    """

    def __init__(self, name: str, epochs: int, steps_per_epoch: int, *,
                 every_s: float = STEP_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.name, self.epochs, self.steps_per_epoch = name, epochs, max(steps_per_epoch, 1)
        self.every_s, self.clock = every_s, clock
        self.first_epoch, self.stop_at = 0, epochs
        self.started = self.last_line = clock()

    def begin(self, first_epoch: int, stop_at: int) -> None:
        """Start the clock for epochs ``first_epoch + 1 … stop_at``; logs the start line."""
        self.first_epoch, self.stop_at = first_epoch, stop_at
        self.started = self.last_line = self.clock()
        if stop_at <= first_epoch:  # e.g. a rehearsal reading its capped run: nothing to train
            logger.info("[%s] nothing to train: %d of %d epochs done, this session stops at %d",
                        self.name, first_epoch, self.epochs, stop_at)
            return
        resumed = f", resumed after epoch {first_epoch}" if first_epoch else ""
        logger.info("[%s] training epochs %d-%d of %d, %d steps per epoch%s", self.name,
                    first_epoch + 1, stop_at, self.epochs, self.steps_per_epoch, resumed)

    def timing(self, epochs_done: float) -> str:
        """``elapsed … eta …`` once ``epochs_done`` epochs (a fraction within an epoch) of this
        session are complete."""
        elapsed = self.clock() - self.started
        planned = self.stop_at - self.first_epoch
        done = epochs_done - self.first_epoch
        if planned <= 0 or done <= 0:
            return f"elapsed {duration(elapsed)}  eta ?"
        left = elapsed / done * max(planned - done, 0.0)
        return f"elapsed {duration(elapsed)}  eta {duration(left)}"

    def due(self) -> bool:
        """Whether a step line is due: progress is being logged and :attr:`every_s` have passed
        since the last line."""
        return logger.isEnabledFor(logging.INFO) and self.clock() - self.last_line >= self.every_s

    def step(self, epoch: int, step: int, means: Mapping[str, float | None]) -> None:
        """The line after ``step`` iterations of epoch ``epoch + 1``; ``means``: the epoch's
        running means so far (``train_*`` and ``nfe_*`` are shown)."""
        self.last_line = self.clock()
        shown = " ".join(f"{k.removeprefix('train_').replace('_', ' ')} {v:.4f}"
                         for k, v in sorted(means.items(), key=lambda kv: (kv[0] != "train_loss",
                                                                           kv[0]))
                         if k.startswith("train_") and v is not None)
        logger.info("[%s] epoch %d/%d step %d/%d  train %s%s  %s", self.name, epoch + 1,
                    self.epochs, step, self.steps_per_epoch, shown,
                    nfe_text(means.get("nfe_forward"), means.get("nfe_backward")),
                    self.timing(epoch + step / self.steps_per_epoch))

    def epoch_line(self, record: Mapping, metrics: str) -> str:
        """The line of a finished epoch (``record``: its history record; ``metrics``: the task's
        text of it); logged and returned."""
        self.last_line = self.clock()
        line = (f"[{self.name}] epoch {record['epoch']}/{self.epochs}  {metrics}"
                f"{nfe_text(record.get('nfe_forward'), record.get('nfe_backward'))}"
                f"  {record['epoch_time_s']:.1f}s  {self.timing(record['epoch'])}")
        logger.info(line)
        return line

    def end(self, state: str, reason: str = "") -> None:
        """The run's end (``completed``, ``stopped`` or ``failed``, with the reason)."""
        level = logging.WARNING if state == "failed" else logging.INFO
        logger.log(level, "[%s] %s%s after %s", self.name, state, f" ({reason})" if reason else "",
                   duration(self.clock() - self.started))


def log_to_file(path: str | os.PathLike) -> Path:
    """Append the progress lines to ``path`` (timestamped, flushed line by line), replacing the
    file this process attached before; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in [h for h in logger.handlers if getattr(h, "deqode_progress_file", False)]:
        logger.removeHandler(old)
        old.close()
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.deqode_progress_file = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return path


__all__ = ["LOGGER_NAME", "STEP_EVERY_S", "Progress", "duration", "log_to_file", "logger",
           "nfe_text"]
