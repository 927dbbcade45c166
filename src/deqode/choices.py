"""Closed sets of names: validation with errors that list the valid choices, and registries.

A :class:`Registry` is the one pattern for named things (model builds, data sets, experiments):
each name is registered once, and looking up an unknown name raises
:class:`UnknownChoiceError` listing every registered one.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

PROFILES = ("smoke", "cpu", "paper")
#: Profiles whose runs take one torch thread on the CPU by default (small models; the book runs
#: two notebooks at a time on two cores).
ONE_THREAD_PROFILES = ("smoke", "cpu")

#: How an ODE model's gradient is computed: ``backprop`` differentiates through the solver's
#: steps, ``adjoint`` solves the adjoint ODE backwards (Chen et al. 2018, "Neural Ordinary
#: Differential Equations", Sec. 2), ``frozen_adjoint`` is HomoODE's approximation that holds
#: the state adjoint at a(1) (wadx2019/homoode ``homoint_adjoint``, the CIFAR-100 and
#: Tiny-ImageNet scripts' ``--adjoint True``). Only HomoODE implements the third.
GRAD_MODES = ("backprop", "adjoint", "frozen_adjoint")
#: The gradient modes of every other ODE model.
ODE_GRAD_MODES = GRAD_MODES[:2]

T = TypeVar("T")


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


class Registry(Generic[T]):
    """Items of one ``kind`` by name, each registered once.

    ``names()`` lists them in registration order, or sorted with ``sort=True`` (the order error
    messages list them in). ``registry[name]`` raises :class:`UnknownChoiceError` naming the valid
    choices; registering a name twice raises ``ValueError``. ``scope`` follows the name in both
    messages (e.g. ``"for profile 'smoke'"``).
    """

    def __init__(self, kind: str, *, sort: bool = False, scope: str = "") -> None:
        self.kind = kind
        self.sort = sort
        self.scope = f" {scope}" if scope else ""
        self._items: dict[str, T] = {}

    def register(self, name: str, item: T) -> T:
        """Add ``item`` as ``name`` and return it."""
        if name in self._items:
            raise ValueError(f"{self.kind} {name!r} is already registered{self.scope}")
        self._items[name] = item
        return item

    def unregister(self, name: str) -> T:
        """Remove ``name`` (e.g. an item a test registered) and return its item."""
        self.check(name)
        return self._items.pop(name)

    def names(self) -> list[str]:
        return sorted(self._items) if self.sort else list(self._items)

    def check(self, name: str) -> str:
        """``name`` if it is registered; otherwise :class:`UnknownChoiceError` listing
        :meth:`names`."""
        if name not in self._items:
            listed = ", ".join(repr(n) for n in self.names())
            raise UnknownChoiceError(
                f"unknown {self.kind} {name!r}{self.scope}; valid choices: {listed}")
        return name

    def __getitem__(self, name: str) -> T:
        return self._items[self.check(name)]

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, T]]:
        return [(name, self._items[name]) for name in self.names()]
