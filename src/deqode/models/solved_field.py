"""A model that integrates one counted field with a solver held in attributes (CNF, latent ODE).

The solver is a set of plain attributes, ``method``, ``options``, ``rtol``, ``atol`` (torchdiffeq's
arguments) and ``grad_mode`` in :data:`GRAD_MODES` (``"backprop"``: autograd through the solver's
steps; ``"adjoint"``: torchdiffeq's ``odeint_adjoint``), so that a trained model can be
re-evaluated with another solver by setting them; the constructor takes them as keyword arguments
(the fields of :class:`~deqode.models.settings.ODESolve`). The counters ``nfe_forward`` /
``nfe_backward`` hold the field's evaluations in the last solve and in its backward pass
(non-zero only under the adjoint, after :meth:`SolvedFieldModel.sync_nfe`).
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torchdiffeq import odeint, odeint_adjoint

from deqode.choices import ODE_GRAD_MODES
from deqode.models.nfe import CountsNFE
from deqode.models.settings import ODESolve, ODESolverAttributes

GRAD_MODES = ODE_GRAD_MODES


class SolvedFieldModel(ODESolverAttributes, CountsNFE, nn.Module):
    """Base of models that integrate ``self.field`` (a module counting its calls in ``nfe``)."""

    field: nn.Module

    def _set_solver(self, solve: ODESolve) -> None:
        """Store the solver attributes (``grad_mode`` is checked) and zero the counters."""
        self.use_solver(solve)
        self.nfe_forward = 0
        self.nfe_backward = 0

    def reset_nfe(self) -> None:
        self.field.nfe = 0
        self.nfe_forward = self.nfe_backward = 0

    def sync_nfe(self) -> None:
        """After a backward pass: the evaluations since the last solve are backward ones."""
        self.nfe_backward = self.field.nfe - self.nfe_forward

    def _solve(self, state: Any, times: Tensor) -> Any:
        """``field`` integrated from ``state`` (a tensor or a tuple of tensors) at ``times``.

        Sets ``nfe_forward`` to the evaluations of this solve and ``nfe_backward`` to 0.
        """
        solve = odeint_adjoint if self.grad_mode == "adjoint" else odeint
        self.field.nfe = 0
        out = solve(self.field, state, times, **self.solver_kwargs())
        self.nfe_forward, self.nfe_backward = self.field.nfe, 0
        return out


__all__ = ["GRAD_MODES", "SolvedFieldModel"]
