"""Settings that several models take as keyword arguments, each group one frozen dataclass.

A model that accepts a group takes its fields as plain keyword arguments (``HomoODE(channels=8,
rtol=1e-5)``, as the registry's flat build arguments need) and sorts them into the dataclasses
with :func:`take_settings`; the group is then written and checked in one place. The ODE solver's
group is :class:`ODESolve`, stored on the model as the attributes of :class:`ODESolverAttributes`
(torchdiffeq's ``method``, ``rtol``, ``atol``, ``options`` and the gradient mode), which stay
assignable so that a trained model can be re-evaluated with another solver.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from deqode.choices import ODE_GRAD_MODES, check_choice

Settings = TypeVar("Settings")


def setting_names(*kinds: type) -> list[str]:
    """The field names of the dataclasses ``kinds`` (the keyword arguments they stand for)."""
    return [f.name for kind in kinds for f in fields(kind)]


def take_settings(kind: type[Settings], kwargs: dict[str, Any], *args: Any,
                  **defaults: Any) -> Settings:
    """``kind(*args, **given)``: the given keywords that are fields of ``kind`` are popped from
    ``kwargs``; ``defaults`` replace the dataclass's own defaults for this model."""
    given = {name: kwargs.pop(name) for name in setting_names(kind) if name in kwargs}
    return kind(*args, **{**defaults, **given})


def keyword_arguments(cls: type) -> list[str]:
    """The keyword arguments of ``cls``'s constructor, sorted.

    A constructor's named parameters; where it also takes ``**kwargs``, the fields of the
    dataclasses its class lists in ``keyword_settings``, or else its base's constructor's (and
    where no base has one, the ``keyword_settings`` that ``cls`` inherits).
    """
    keys: list[str] = []
    for klass in cls.__mro__:
        if "__init__" not in vars(klass) or klass.__module__.split(".")[0] in ("torch", "builtins"):
            continue
        params = inspect.signature(klass.__init__).parameters.values()
        keys += [p.name for p in params if p.name != "self" and p.kind not in (
            inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            break
        if "keyword_settings" in vars(klass):
            keys += setting_names(*vars(klass)["keyword_settings"])
            break
    else:
        keys += setting_names(*getattr(cls, "keyword_settings", ()))
    return sorted(set(keys))


def reject_unknown(kwargs: dict[str, Any], model: type) -> None:
    """Raise a TypeError naming the keywords left in ``kwargs`` and the valid ones."""
    if kwargs:
        raise TypeError(f"{model.__name__} got unknown keyword arguments {sorted(kwargs)}; valid "
                        f"choices: {', '.join(keyword_arguments(model))}")


@dataclass(frozen=True)
class ODESolve:
    """torchdiffeq's solver arguments and the gradient mode of one ODE model.

    ``grad_mode``: ``"backprop"`` (autograd through the solver's steps) or ``"adjoint"``
    (``odeint_adjoint``); a model may allow more (HomoODE's ``"frozen_adjoint"``).
    """

    method: str = "dopri5"
    rtol: float = 1e-3
    atol: float = 1e-3
    options: dict[str, Any] | None = None
    grad_mode: str = "backprop"


class ODESolverAttributes:
    """Mixin: the solver of an :class:`ODESolve`, held as assignable attributes.

    ``grad_mode`` is checked against the class's ``grad_modes`` on every assignment.
    """

    grad_modes: tuple[str, ...] = ODE_GRAD_MODES
    method: str
    rtol: float
    atol: float
    options: dict[str, Any]

    def use_solver(self, solve: ODESolve) -> None:
        """Store the settings of ``solve`` (``options`` copied; ``grad_mode`` checked)."""
        self.grad_mode = solve.grad_mode
        self.method, self.rtol, self.atol = solve.method, solve.rtol, solve.atol
        self.options = dict(solve.options or {})

    @property
    def grad_mode(self) -> str:
        return self._grad_mode

    @grad_mode.setter
    def grad_mode(self, mode: str) -> None:
        check_choice("gradient mode", mode, self.grad_modes)
        self._grad_mode = mode

    def solver_kwargs(self) -> dict[str, Any]:
        """``method``, ``rtol``, ``atol`` and ``options`` as torchdiffeq's keyword arguments."""
        return dict(rtol=self.rtol, atol=self.atol, method=self.method, options=self.options)


__all__ = [
    "ODESolve",
    "ODESolverAttributes",
    "keyword_arguments",
    "reject_unknown",
    "setting_names",
    "take_settings",
]
