"""Exceptions with messages that say what is wrong and what to do."""

from __future__ import annotations

from deqode.choices import UnknownChoiceError


class SolverFailure(RuntimeError):
    """A solver diverged, produced NaN/inf, or hit its iteration or NFE cap where that is fatal.

    The training loop catches it, marks the run failed with this message and keeps the last good
    checkpoint.
    """


class DatasetMissingError(FileNotFoundError):
    """A dataset is not on disk and cannot be downloaded; the message says where to put it."""


class DatasetDamagedError(ValueError):
    """A dataset file is on disk but its content is wrong (checksum or format); says how to fix."""


class CheckpointDamagedError(ValueError):
    """A run's checkpoint cannot be read and no earlier good one can stand in; the message names
    the file and says how to start afresh."""


__all__ = ["CheckpointDamagedError", "DatasetDamagedError", "DatasetMissingError", "SolverFailure",
           "UnknownChoiceError"]
