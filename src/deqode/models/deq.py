"""Deep Equilibrium Model (Bai et al. 2019; MDEQ-style cell): input = condition, z* = f(z*; x̃)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from deqode.choices import check_choice
from deqode.models.bases import ImplicitClassifier
from deqode.models.blocks import ConvBackbone, ConvField, group_norm
from deqode.models.settings import reject_unknown, take_settings
from deqode.solvers import SolverInfo
from deqode.solvers.fixed_point import METHODS, STOP_MODES
from deqode.solvers.implicit import (
    ADJOINT_METHODS,
    BACKWARD_MODES,
    Equilibrium,
    solve_equilibrium,
)


class DEQCell(nn.Module):
    """The DEQ's layer ``f(z; x̃) = GN_4(ReLU(z + F(z; x̃)))`` with HomoODE's field F.

    Written out, ``f(z; x̃) = GN_4(ReLU(z + GN_3(m ⊙ Conv_2(ReLU(GN_2(Conv_1 z)) + x̃))))``: the
    residual block of MDEQ (``locuslab/mdeq`` ``BasicBlock``: conv-GN-ReLU-conv-GN, + z, ReLU, GN)
    with HomoODE's injection point (x̃ added after the first ReLU, before ``Conv_2``; MDEQ adds it
    after ``Conv_2``). Sharing F makes the link explicit: HomoODE integrates ``dz/dt = F(z; x̃)``,
    the DEQ solves ``z = GN_4(ReLU(z + F(z; x̃)))``. Parameters: those of F plus 2C.
    """

    def __init__(self, field: ConvField, max_groups: int = 32) -> None:
        super().__init__()
        if not field.injected:
            raise ValueError("a DEQ cell needs an injected field (the input is its condition)")
        self.field = field
        self.norm = group_norm(field.state_channels, max_groups)

    def prepare(self, condition: Tensor) -> None:
        """Start a new solve: store x̃ and sample the dropout mask for this batch."""
        self.field.prepare(condition, condition)

    def forward(self, z: Tensor) -> Tensor:
        return self.norm(self.field.activation(z + self.field(None, z)))


class DEQ(ImplicitClassifier):
    """DEQ classifier: stem → equilibrium layer → head.

    ::

        x̃ = D(x),   z* = f(z*; x̃)  (solved from z = 0),   logits = head(f(z*; x̃))

    with ``f`` the :class:`DEQCell`. Forward: :func:`deqode.solvers.fixed_point` without autograd
    (``solver`` in broyden | anderson | picard, ``tol`` on the relative residual
    ``||f(z) − z|| / (||f(z)|| + eps)`` per sample, max over the batch, at most ``max_iter``
    iterations); then f is applied once with autograd at z*. Backward
    (:func:`deqode.solvers.implicit_fixed_point`): ``backward="ift"`` solves the adjoint system
    ``u = Jᵀu + ∂L/∂z*`` by ``backward_solver`` (GMRES by default) and returns ``uᵀ ∂f/∂(θ, x̃)``
    (the implicit function theorem); ``backward="one_step"`` is the Jacobian-free / phantom gradient
    (differentiate only the last application of f).

    Variational dropout inside F: one mask (N, C, 1, 1) per forward solve, used by every iteration,
    the final application and the backward solve. A non-finite residual raises
    :class:`~deqode.errors.SolverFailure`; hitting ``max_iter`` without reaching ``tol`` does not,
    unless ``require_convergence`` (MDEQ trains with fixed iteration thresholds), but it is recorded
    in :attr:`last_solver_info`. Counters: ``nfe_forward`` (evaluations of f in the forward pass,
    solver + applications with grad), ``nfe_backward`` (vector-Jacobian products in the adjoint
    solve). A baseline of the HomoODE comparison and a reconstruction (no baseline code is
    released): MDEQ's multiscale branches, weight norm and Jacobian regularisation are not
    included. Like MDEQ's, this cell is not a contraction at
    initialisation (the normalised identity path keeps the Jacobian's spectral radius near 1), so
    the forward solve usually stops at ``max_iter``. ``self.cell`` may be replaced by any module
    with ``prepare(x̃)`` and ``forward(z)`` that does not mix samples.

    The skeleton's settings are the fields of :class:`~deqode.models.blocks.ConvBackbone`
    (``in_channels``, ``num_classes``, ``channels``, ``final_channels`` by position or keyword;
    ``max_groups``, ``dropout`` = 0.1, ``activation``, ``first_stride`` by keyword).
    """

    keyword_settings = (ConvBackbone,)

    def __init__(
        self,
        *args: Any,
        solver: str = "broyden",
        tol: float = 1e-3,
        max_iter: int = 30,
        stop_mode: str = "rel",
        solver_options: dict[str, Any] | None = None,
        backward: str = "ift",
        backward_solver: str = "gmres",
        backward_tol: float = 1e-6,
        backward_max_iter: int = 30,
        require_convergence: bool = False,
        **backbone: Any,
    ) -> None:
        net = take_settings(ConvBackbone, backbone, *args)
        reject_unknown(backbone, type(self))
        field = net.field(injected=True)
        super().__init__(net.stem(), net.head(), net.in_channels)
        self.backbone = net
        self.cell = DEQCell(field, net.max_groups)
        check_choice("fixed-point solver", solver, METHODS)
        check_choice("stop_mode", stop_mode, STOP_MODES)
        check_choice("DEQ backward", backward, BACKWARD_MODES)
        check_choice("adjoint solver", backward_solver, ADJOINT_METHODS)
        self.solver = solver
        self.tol = tol
        self.max_iter = max_iter
        self.stop_mode = stop_mode
        self.solver_options = dict(solver_options or {})
        self.backward = backward
        self.backward_solver = backward_solver
        self.backward_tol = backward_tol
        self.backward_max_iter = backward_max_iter
        self.require_convergence = require_convergence
        self.last_solver_info: SolverInfo | None = None
        self._equilibrium: Equilibrium | None = None

    def solve(self, x_tilde: Tensor) -> Tensor:
        self.cell.prepare(x_tilde)
        eq = solve_equilibrium(
            self.cell, torch.zeros_like(x_tilde), "DEQ forward", solver=self.solver,
            tol=self.tol, max_iter=self.max_iter, stop_mode=self.stop_mode,
            solver_options=self.solver_options, require_convergence=self.require_convergence,
            on_solve=self._keep_info,
            backward=self.backward, backward_solver=self.backward_solver,
            backward_tol=self.backward_tol, backward_max_iter=self.backward_max_iter,
        )
        self.nfe_forward, self._equilibrium = eq.evaluations, eq
        return eq.z

    def _keep_info(self, info: SolverInfo) -> None:
        self.last_solver_info = info

    @property
    def nfe_backward(self) -> int:
        """Vector-Jacobian products of the last backward (adjoint) solve; 0 for ``one_step``."""
        return 0 if self._equilibrium is None else self._equilibrium.backward_nfe

    @property
    def last_backward_info(self) -> SolverInfo | None:
        """The adjoint solver's record of the last backward pass (None before any backward)."""
        eq = self._equilibrium
        return None if eq is None else eq.backward.get("backward_info")

    def reset_nfe(self) -> None:
        super().reset_nfe()
        self._equilibrium = None
