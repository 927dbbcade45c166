"""Validation of names against a closed set of choices, with errors that list the valid ones."""

from __future__ import annotations

from collections.abc import Iterable

PROFILES = ("smoke", "cpu", "paper")
#: Profiles whose runs take one torch thread on the CPU by default (small models; the book runs
#: two notebooks at a time on two cores).
ONE_THREAD_PROFILES = ("smoke", "cpu")


class UnknownChoiceError(ValueError):
    """A name (profile, model, dataset, parameter, ...) outside its valid set."""


def check_choice(kind: str, value: object, choices: Iterable[object]) -> object:
    """Return ``value`` if it is one of ``choices``; otherwise raise naming every valid choice."""
    options = list(choices)
    if value not in options:
        listed = ", ".join(repr(o) for o in options)
        raise UnknownChoiceError(f"unknown {kind} {value!r}; valid choices: {listed}")
    return value


def check_profile(profile: str) -> str:
    """The run profile: ``smoke`` (does the code run? minutes, CI), ``cpu`` (the evidence that two
    CPU cores give in about an hour; the site readers get) or ``paper`` (GPU, the papers' scale)."""
    check_choice("profile", profile, PROFILES)
    return profile
