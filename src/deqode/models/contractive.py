"""The shared parts of the small contractive DEQs (DEQ-MFN, the tanh DEQ, the temporal DEQ).

Each bounds a norm of its recurrent weight by ``max_norm`` < 1 so that its layer is a contraction
(as (Implicit)², Huang, Bai & Kolter, NeurIPS 2021, bound ``||W||₂``), and finds the fixed point by
:func:`deqode.solvers.fixed_point` (``solver``, relative ``tol``, ``max_iter``) through
:func:`deqode.solvers.implicit.solve_equilibrium`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from deqode.choices import check_choice
from deqode.models.nfe import CountsNFE
from deqode.models.settings import reject_unknown, take_settings
from deqode.solvers import SolverInfo
from deqode.solvers.fixed_point import METHODS
from deqode.solvers.implicit import Equilibrium, solve_equilibrium


def rescaled(weight: Tensor, bound: Tensor, max_norm: float) -> Tensor:
    """``weight · max_norm / max(max_norm, bound)``: scaled so that ``bound`` (an upper bound
    on a norm of ``weight``) is at most ``max_norm``."""
    return weight * (max_norm / torch.clamp(bound, min=max_norm))


def spectrally_rescaled(weight: Tensor, max_norm: float) -> Tensor:
    """``weight`` rescaled so that its spectral norm ``||W||₂`` is at most ``max_norm``."""
    return rescaled(weight, torch.linalg.matrix_norm(weight, ord=2), max_norm)


@dataclass(frozen=True)
class ContractionSolve:
    """The norm bound ``max_norm`` (None: unbounded, where a model allows it) and the forward
    solve: :func:`deqode.solvers.fixed_point` ``solver``, relative ``tol``, ``max_iter``."""

    max_norm: float | None = 0.9
    solver: str = "anderson"
    tol: float = 1e-3
    max_iter: int = 30

    def __post_init__(self) -> None:
        check_choice("fixed-point solver", self.solver, METHODS)


class ContractiveDEQ(CountsNFE, nn.Module):
    """Base of the contractive DEQs: the norm bound and forward-solve settings, the solve record.

    The constructors take the fields of :class:`ContractionSolve` as keyword arguments, each with
    its model's defaults. ``nfe_forward`` counts the solver's evaluations of f (subclasses add
    their own applications); ``last_solver_info`` is the forward solver's record of the last batch.
    """

    keyword_settings = (ContractionSolve,)

    def set_solve(self, kwargs: dict[str, Any], **defaults: Any) -> None:
        """Store the :class:`ContractionSolve` given by ``kwargs`` (over this model's
        ``defaults``) as attributes; any other keyword raises a TypeError."""
        settings = take_settings(ContractionSolve, kwargs, **defaults)
        reject_unknown(kwargs, type(self))
        self.max_norm, self.solver = settings.max_norm, settings.solver
        self.tol, self.max_iter = settings.tol, settings.max_iter
        self.last_solver_info: SolverInfo | None = None
        self.nfe_forward = 0

    def equilibrium(self, f: Callable[[Tensor], Tensor], z0: Tensor, **backward: Any
                    ) -> Equilibrium:
        """``solve_equilibrium`` of ``f`` from ``z0`` with these settings (``backward``: the
        backward's arguments); records ``last_solver_info`` and ``nfe_forward``."""
        eq = solve_equilibrium(f, z0, type(self).__name__, solver=self.solver, tol=self.tol,
                               max_iter=self.max_iter, **backward)
        self.last_solver_info, self.nfe_forward = eq.info, eq.info.nfe
        return eq


__all__ = ["ContractionSolve", "ContractiveDEQ", "rescaled", "spectrally_rescaled"]
