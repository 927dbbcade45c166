"""Continuous DEQ, Skip DEQ and Skip Reg. DEQ (Pal, Edelman & Rackauckas 2022; arXiv 2201.12240).

One model class with two switches (Pal et al. 2022; official ``DeepEquilibriumNetworks.jl``):

* ``solver`` — how the equilibrium ``u* = f(u*, x)`` is found:
  ``"continuous"`` integrates ``du/dt = f(u, x) − u`` to steady state
  (:func:`deqode.solvers.steady_state.steady_state`: VCAB3-like adaptive integrator, the paper's
  termination rules); ``"discrete"`` is the discrete DEQ baseline (per-sample L-Broyden with the
  same rules); ``"neural_ode"`` is the paper's *Multi-Scale Neural ODE with input injection*
  baseline, ``dz/dt = f(z, x)`` on ``t ∈ [0, 1]`` from ``z(0) = 0`` (same f, no ``−z``).
* ``init`` — where the solve starts: ``"zero"`` (vanilla), ``"skip"`` (Skip DEQ: an explicit
  predictor ``u₀ = g_φ(x)``, extra parameters) or ``"skip_reg"`` (Skip Reg. DEQ:
  ``u₀ = f(0, x)``, no extra parameters). :class:`SkipDEQ` and :class:`SkipRegDEQ` fix it.

Forward (training), as the Julia code (§2.3–§2.7)::

    x = stem(input);  u₀ = 0 | g_φ(x) | f(0, x)
    u* = solve(u ↦ f(u, x), u₀)                 # no autograd
    z* = f(u*, x)                                # the "extra application", with autograd
    logits = head(z*)
    loss = CE(logits, y) + λ_skip · mean|z* − u₀|  (Skip variants)  + λ_jac · ‖εᵀJ_f(u*)‖²/d

Backward — implicit adjoint with GMRES (§2.6): the cotangent ``v`` reaching ``u*`` from the extra
application is corrected by solving ``(I − Jᵀ) μ = v`` (``J = ∂f/∂u`` at ``u*``) by matrix-free,
unrestarted GMRES from 0 on the **whole batch vector** (``atol = rtol = 0.05``, ``itmax`` 20 or
28: stop when ``‖r‖ ≤ atol + rtol‖v‖``, so ``‖v‖ ≤ 0.05/0.95`` exits at iteration 0 with μ = 0),
then ``μᵀ ∂f/∂θ`` is added to the parameter gradient. With the explicit part this is exactly the
DEQ gradient ``(∂f/∂θ)ᵀ (I − Jᵀ)⁻¹ ∂L/∂z*``. ``stem_gradient="paper"`` reproduces the code's
quirk (the stem output ``x`` receives only the explicit gradient of the extra application, not
the implicit term); ``"implicit"`` gives ``x`` the full implicit gradient. ``backward="jfb"``
skips the solve (the Jacobian-free gradient; off in every paper config). The predictor ``g_φ``
gets no gradient through the solve, only through the skip loss.

The skip and Jacobian terms enter the gradient through :func:`deqode.models.regularizers.
attach_loss`, so any loop that minimises ``CE(model(x), y)`` — e.g. :func:`deqode.train.fit` —
trains the paper's total loss; :attr:`ContinuousDEQ.last_stats` reports their values.
Pretraining (CIFAR small: 3000 steps, §2.11): for the first ``pretrain_steps`` training forward
passes the solve is replaced by ``pretrain_depth`` = 5 unrolled applications of f from ``u₀``,
trained by plain backprop (a step counter buffer makes this resumable).

Counters: ``nfe_forward`` = every evaluation of f in the forward pass (solver + the Skip Reg.
start + the extra application + the Jacobian term; the paper counts solver + 1 (+1 with Jacobian
regularisation) and not the Skip Reg. start); ``nfe_backward`` = GMRES matrix–vector products
(VJPs of f; the GMRES implementation spends one more than its iteration count on a true
residual) or, for the Neural ODE's adjoint mode, field evaluations in the adjoint solve.

Architectures by name (``arch``): the paper's ``cifar10-small`` (163,546 parameters; Skip:
200,122), ``cifar10-large`` (10,631,958 / 11,186,774), ``imagenet-small`` (17,912,456 /
18,467,272), ``mnist-fc`` (134,538 / 151,050) and the smoke analogues ``digits-small``,
``digits-large``, ``digits-ds`` and ``digits-fc`` (:mod:`deqode.models.mdeq`). Each comes with the
solver settings of its Julia config (:data:`ARCH_DEFAULTS`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torchdiffeq import odeint_adjoint

from deqode.choices import ODE_GRAD_MODES, check_choice
from deqode.errors import SolverFailure
from deqode.models.bases import ImplicitClassifier, solver_errors_as_failure
from deqode.models.mdeq import (
    FC_CONFIGS,
    MDEQ_CONFIGS,
    FCConfig,
    FCFunction,
    FCHead,
    FCPredictor,
    FCStem,
    MDEQConfig,
    MDEQHead,
    MDEQStem,
    MultiscaleFunction,
    SkipPredictor,
)
from deqode.models.regularizers import attach_loss, jacobian_frobenius, skip_loss
from deqode.solvers.implicit import (
    Equilibrium,
    attach_implicit_correction,
    solve_equilibrium,
    solve_implicit_adjoint,
)
from deqode.solvers.steady_state import (
    INTEGRATORS,
    TERMINATION_MODES,
    SteadyStateInfo,
    broyden_steady_state,
    integrate,
    steady_state,
)

SOLVERS = ("continuous", "discrete", "neural_ode")
INITS = ("zero", "skip", "skip_reg")
BACKWARDS = ("implicit", "jfb")
STEM_GRADIENTS = ("paper", "implicit")
NODE_GRAD_MODES = ODE_GRAD_MODES
ARCHS: tuple[str, ...] = (*MDEQ_CONFIGS, *FC_CONFIGS)

def _solver_defaults(termination: str, max_steps: int, gmres_max_iter: int, tol: float = 0.05,
                     **gmres: float) -> dict[str, Any]:
    """One row of :data:`ARCH_DEFAULTS` (GMRES tolerances only where they differ from 0.05)."""
    return {"termination": termination, "tol": tol, "max_steps": max_steps,
            "gmres_max_iter": gmres_max_iter, **gmres}


def _fc_defaults() -> dict[str, Any]:
    return _solver_defaults("rel_norm", 50, 15, tol=5e-3, gmres_atol=5e-3, gmres_rtol=5e-3)


#: Solver settings per architecture: the Julia configs of the official code
#: (``SciML/DeepEquilibriumNetworks.jl``, ``experiments/{cifar10,imagenet}/*.yml`` and the v1
#: ``experiments/mnist/mnist_fc.jl``) and the smoke analogues [reconstruction]: GMRES itmax 5, and
#: a solver cap of 12 step attempts — from z(0) = 0 the adaptive steps start at 1e-4 (Hairer's
#: rule with a zero state) and 8 attempts take the Neural ODE only to t ≈ 0.02 of its [0, 1].
ARCH_DEFAULTS: dict[str, dict[str, Any]] = {
    "cifar10-small": _solver_defaults("rel_norm", 18, 20),
    "cifar10-large": _solver_defaults("rel_deq_best", 18, 20),
    "imagenet-small": _solver_defaults("abs_deq_best", 27, 28),
    "mnist-fc": _fc_defaults(),
    "digits-fc": _fc_defaults(),
    "digits-small": _solver_defaults("rel_norm", 12, 5),
    "digits-large": _solver_defaults("rel_deq_best", 12, 5),
    "digits-ds": _solver_defaults("abs_deq_best", 12, 5),
    "mnist8k-small": _solver_defaults("rel_norm", 12, 5),
    "mnist8k-large": _solver_defaults("rel_deq_best", 12, 5),
}


def arch_config(arch: str) -> MDEQConfig | FCConfig:
    """The :class:`MDEQConfig` or :class:`FCConfig` named ``arch``."""
    check_choice("Continuous DEQ architecture", arch, ARCHS)
    return MDEQ_CONFIGS[arch] if arch in MDEQ_CONFIGS else FC_CONFIGS[arch]


# --------------------------------------------------------------------------------------------------
# the Neural ODE baseline's counted field
# --------------------------------------------------------------------------------------------------


class _Field(nn.Module):
    """``(t, z) ↦ f(z, x)`` for torchdiffeq, counting evaluations."""

    def __init__(self, core: nn.Module, x: Tensor) -> None:
        super().__init__()
        self.core, self.x, self.nfe = core, x, 0

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        self.nfe += 1
        return self.core(z, self.x)


# --------------------------------------------------------------------------------------------------
# the model
# --------------------------------------------------------------------------------------------------


class ContinuousDEQ(ImplicitClassifier):
    """Continuous DEQ classifier (``init="zero"``), or Skip / Skip Reg. DEQ, or the discrete and
    Neural ODE baselines on the same skeleton — see the module docstring.

    Args:
        arch: architecture name (:data:`ARCHS`); sets the solver defaults of :data:`ARCH_DEFAULTS`.
        init: ``"zero"`` | ``"skip"`` | ``"skip_reg"``.
        solver: ``"continuous"`` | ``"discrete"`` | ``"neural_ode"``.
        termination, tol, max_steps: the termination rule (``rel_norm`` | ``rel_deq_best`` |
            ``abs_deq_best``), its tolerance and the cap on integrator step attempts / Broyden
            updates (``maxiters``). The Neural ODE ignores ``termination`` and ``tol``.
        method: integrator, ``"vcab3"`` (default) or ``"bs3"``.
        abstol, reltol: integrator step-size tolerances; ``None`` = the Julia runs' effective
            values: 1e-6 / 1e-3 for the continuous DEQ (its 0.05 is never forwarded) and 0.05
            for the Neural ODE (forwarded).
        gmres_atol, gmres_rtol, gmres_max_iter: the implicit backward's GMRES (0.05, 0.05, 20).
        backward: ``"implicit"`` (GMRES adjoint) or ``"jfb"``.
        stem_gradient: ``"paper"`` (x gets only the explicit gradient, the code's quirk) or
            ``"implicit"`` (full implicit gradient into x).
        skip_weight: λ_skip of the skip loss (Skip variants only; 0.01 in the paper).
        jac_weight: λ_jac of the Jacobian regulariser (0 = off; 1.0 in Table 1).
        pretrain_steps, pretrain_depth: unrolled pretraining (training forward passes, depth).
        broyden_memory: memory of the discrete solver (27).
        grad_mode: Neural ODE gradient, ``"backprop"`` (autograd through our VCAB3 steps) or
            ``"adjoint"`` (torchdiffeq's ``odeint_adjoint`` with bosh3: a backsolve adjoint; the
            paper used an interpolating adjoint, which torchdiffeq does not offer).
    """

    default_init = "zero"

    def __init__(
        self,
        arch: str = "digits-small",
        *,
        init: str | None = None,
        solver: str = "continuous",
        termination: str | None = None,
        tol: float | None = None,
        max_steps: int | None = None,
        method: str = "vcab3",
        abstol: float | None = None,
        reltol: float | None = None,
        gmres_atol: float | None = None,
        gmres_rtol: float | None = None,
        gmres_max_iter: int | None = None,
        backward: str = "implicit",
        stem_gradient: str = "paper",
        skip_weight: float = 0.01,
        jac_weight: float = 0.0,
        pretrain_steps: int = 0,
        pretrain_depth: int = 5,
        broyden_memory: int = 27,
        grad_mode: str = "backprop",
    ) -> None:
        cfg = arch_config(arch)
        init = self.default_init if init is None else init
        check_choice("initial state", init, INITS)
        check_choice("Continuous DEQ solver", solver, SOLVERS)
        check_choice("integrator", method, INTEGRATORS)
        check_choice("DEQ backward", backward, BACKWARDS)
        check_choice("stem gradient", stem_gradient, STEM_GRADIENTS)
        check_choice("Neural ODE gradient mode", grad_mode, NODE_GRAD_MODES)
        if solver == "neural_ode" and init != "zero":
            raise ValueError(f"the Neural ODE baseline starts at z(0) = 0; init={init!r} is only "
                             "for the DEQ solvers ('continuous', 'discrete')")
        defaults = {"gmres_atol": 0.05, "gmres_rtol": 0.05, **ARCH_DEFAULTS[arch]}
        if isinstance(cfg, MDEQConfig):
            stem, core, head = MDEQStem(cfg), MultiscaleFunction(cfg), MDEQHead(cfg)
            predictor = SkipPredictor(cfg) if init == "skip" else None
        else:
            stem, core, head = FCStem(cfg), FCFunction(cfg), FCHead(cfg)
            predictor = FCPredictor(cfg) if init == "skip" else None
        super().__init__(stem, head, cfg.in_channels if isinstance(cfg, MDEQConfig) else 1)
        self.arch, self.cfg = arch, cfg
        self.core = core
        self.predictor = predictor
        self.init, self.solver, self.method = init, solver, method
        self.termination = defaults["termination"] if termination is None else termination
        check_choice("termination mode", self.termination, TERMINATION_MODES)
        self.tol = float(defaults["tol"] if tol is None else tol)
        self.max_steps = int(defaults["max_steps"] if max_steps is None else max_steps)
        node = solver == "neural_ode"
        self.abstol = float(abstol if abstol is not None else (0.05 if node else 1e-6))
        self.reltol = float(reltol if reltol is not None else (0.05 if node else 1e-3))
        self.gmres_atol = float(defaults["gmres_atol"] if gmres_atol is None else gmres_atol)
        self.gmres_rtol = float(defaults["gmres_rtol"] if gmres_rtol is None else gmres_rtol)
        self.gmres_max_iter = int(defaults["gmres_max_iter"] if gmres_max_iter is None
                                  else gmres_max_iter)
        self.backward, self.stem_gradient, self.grad_mode = backward, stem_gradient, grad_mode
        self.skip_weight, self.jac_weight = float(skip_weight), float(jac_weight)
        if pretrain_steps < 0 or pretrain_depth < 1:
            raise ValueError(f"pretrain_steps must be >= 0 and pretrain_depth >= 1, got "
                             f"{pretrain_steps}, {pretrain_depth}")
        self.pretrain_steps, self.pretrain_depth = int(pretrain_steps), int(pretrain_depth)
        self.broyden_memory = int(broyden_memory)
        self.register_buffer("training_steps", torch.zeros((), dtype=torch.long))
        self.last_stats: dict[str, Any] = {}
        self._backward_stats: dict[str, Any] = {}
        self._node_field: _Field | None = None
        self._nfe_backward_base = 0

    # ---- description ----------------------------------------------------------------------------
    @property
    def input_shape(self) -> tuple[int, ...]:
        cfg = self.cfg
        if isinstance(cfg, MDEQConfig):
            return (cfg.in_channels, cfg.image_size, cfg.image_size)
        return cfg.input_shape

    @property
    def variant(self) -> str:
        """Row label of the paper's tables: "Vanilla DEQ", "Skip DEQ", ..., "Neural ODE"."""
        if self.solver == "neural_ode":
            return "Neural ODE"
        return {"zero": "Vanilla DEQ", "skip": "Skip DEQ", "skip_reg": "Skip Reg. DEQ"}[self.init]

    def extra_repr(self) -> str:
        return (f"arch={self.arch!r}, init={self.init!r}, solver={self.solver!r}, "
                f"termination={self.termination!r}, tol={self.tol:g}, max_steps={self.max_steps}")

    # ---- forward --------------------------------------------------------------------------------
    def _check_input(self, inputs: Tensor) -> None:
        name = type(self).__name__
        if not isinstance(inputs, Tensor) or not inputs.is_floating_point():
            raise TypeError(f"{name} expects a floating-point tensor, got {type(inputs)!r}")
        if isinstance(self.cfg, MDEQConfig):
            if inputs.dim() != 4 or inputs.shape[1] != self.cfg.in_channels:
                raise ValueError(f"{name} ({self.arch}) expects an input of shape (N, C, H, W) "
                                 f"with C={self.cfg.in_channels}, got {tuple(inputs.shape)}")
        elif inputs.dim() < 2 or math.prod(inputs.shape[1:]) != self.cfg.in_features:
            raise ValueError(f"{name} ({self.arch}) expects (N, {self.cfg.in_features}) or "
                             f"(N, {', '.join(map(str, self.cfg.input_shape))}), got "
                             f"{tuple(inputs.shape)}")

    def forward(self, inputs: Tensor) -> Tensor:
        self._check_input(inputs)
        x = self.stem(inputs)
        z, aux = self.solve_with_loss(x)
        logits = self.head(self.core.split(z))
        return logits if aux is None else attach_loss(logits, aux)

    def solve(self, x_tilde: Tensor) -> Tensor:
        """``z* = f(u*, x)`` for the stem output (the auxiliary loss, if any, is dropped)."""
        return self.solve_with_loss(x_tilde)[0]

    def _needs_grad(self) -> bool:
        return torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())

    @contextlib.contextmanager
    def _cached_weights(self) -> Iterator[None]:
        """Compute weight-normed weights once per no-grad solve instead of once per evaluation."""
        if any(parametrize.is_parametrized(m) for m in self.core.modules()):
            with parametrize.cached():
                yield
        else:
            yield

    def initial_state(self, x: Tensor) -> tuple[Tensor, int]:
        """``(u₀, evaluations of f)``: zeros, ``g_φ(x)`` or ``f(0, x)`` (with autograd)."""
        zero = self.core.zero_state(x)
        if self.init == "skip":
            assert self.predictor is not None
            return self.predictor(x), 0
        if self.init == "skip_reg":
            return self.core(zero, x), 1
        return zero, 0

    def solve_with_loss(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """``(z*, auxiliary loss or None)`` for the stem output ``x``."""
        self.core.prepare(x)
        self._backward_stats = {}
        stats: dict[str, Any] = {"pretraining": False}
        if self.solver == "neural_ode":
            z, nfe = self._neural_ode(x, stats)
            self.nfe_forward = nfe
            self.last_stats = stats
            return z, None
        u0, nfe = self.initial_state(x)
        pretraining = self.training and self.training_steps.item() < self.pretrain_steps
        if self.training and torch.is_grad_enabled():
            self.training_steps += 1
        if pretraining:
            z = u0
            for _ in range(self.pretrain_depth):
                z = self.core(z, x)
            nfe += self.pretrain_depth
            stats["pretraining"] = True
        else:
            eq = self._equilibrium(u0.detach(), x)
            stats["solver_info"] = eq.info
            stats["nfe_solver"] = eq.info.nfe
            nfe += eq.info.nfe + eq.evaluations  # solver + the extra application
            z, u_star = eq.z, eq.z_star
        aux = None
        if self.training and self._needs_grad():
            terms = []
            if self.init != "zero":
                stats["skip_loss"] = skip_loss(z, u0)
                terms.append(self.skip_weight * stats["skip_loss"])
            if self.jac_weight and not pretraining:
                penalty, _ = jacobian_frobenius(lambda u: self.core(u, x), u_star)
                stats["jacobian_loss"] = penalty
                terms.append(self.jac_weight * penalty)
                nfe += 1
            if terms:
                aux = torch.stack(terms).sum()
        self.nfe_forward = nfe
        self.last_stats = stats
        return z, aux

    def _equilibrium(self, u0: Tensor, x: Tensor) -> Equilibrium:
        """Solve from ``u0`` (no grad), check, and apply f once more with the implicit backward.

        :func:`deqode.solvers.implicit.solve_equilibrium` with this model's steady-state solve
        (a non-finite result raises :class:`~deqode.errors.SolverFailure`; a solver that kept its
        best finite iterate does not) and, when training with ``backward="implicit"``, the
        correction arrangement :func:`deqode.solvers.implicit.attach_implicit_correction`.
        """
        def solve(_f: Callable[[Tensor], Tensor], start: Tensor
                  ) -> tuple[Tensor, SteadyStateInfo]:
            return self._solve(start, x.detach())

        def correction(u_star: Tensor, f: Callable[[Tensor], Tensor]) -> Tensor:
            x_adj = x if self.stem_gradient == "implicit" else x.detach()
            return f(attach_implicit_correction(
                u_star, x_adj, self.core, atol=self.gmres_atol, rtol=self.gmres_rtol,
                max_iter=self.gmres_max_iter, record=self._backward_stats))

        implicit = self._needs_grad() and self.backward == "implicit"
        return solve_equilibrium(
            lambda u: self.core(u, x), u0, f"{type(self).__name__} ({self.solver})", solve=solve,
            best_iterate_kept=True, backward=correction if implicit else "one_step")

    def _solve(self, u0: Tensor, x: Tensor) -> tuple[Tensor, SteadyStateInfo]:
        """The no-grad forward solve from ``u0`` (checked by :meth:`_equilibrium`)."""
        def f(u: Tensor) -> Tensor:
            return self.core(u, x)

        with torch.no_grad(), self._cached_weights():
            if self.solver == "continuous":
                return steady_state(
                    f, u0, termination=self.termination, tol=self.tol, max_steps=self.max_steps,
                    method=self.method, abstol=self.abstol, reltol=self.reltol)
            return broyden_steady_state(
                f, u0, termination=self.termination, tol=self.tol, max_steps=self.max_steps,
                memory=self.broyden_memory)

    def _neural_ode(self, x: Tensor, stats: dict[str, Any]) -> tuple[Tensor, int]:
        """``z(1)`` of ``dz/dt = f(z, x)``, ``z(0) = 0``, then the extra application."""
        z0 = self.core.zero_state(x)
        x_field = x if self.stem_gradient == "implicit" else x.detach()
        self._node_field = None
        if self.grad_mode == "adjoint" and self._needs_grad():
            field = _Field(self.core, x_field)
            params = tuple(self.core.parameters())
            if x_field.requires_grad:
                params = (*params, x_field)
            times = torch.tensor([0.0, 1.0], dtype=z0.dtype, device=z0.device)
            with solver_errors_as_failure(f"{type(self).__name__} adjoint"):
                z1 = odeint_adjoint(field, z0, times, method="bosh3", rtol=self.reltol,
                                    atol=self.abstol, adjoint_params=params)[-1]
            nfe = field.nfe
            self._node_field, self._nfe_backward_base = field, field.nfe
            stats["integrator"] = {"nfe": nfe, "method": "torchdiffeq bosh3 (adjoint)"}
        else:
            def field_fn(z: Tensor) -> Tensor:
                return self.core(z, x_field)

            context = contextlib.nullcontext() if self._needs_grad() else self._cached_weights()
            with context:
                out = integrate(field_fn, z0, t_end=1.0, method=self.method, abstol=self.abstol,
                                reltol=self.reltol, max_steps=self.max_steps)
            z1, nfe = out.u, out.nfe
            stats["integrator"] = {"nfe": out.nfe, "accepted": out.accepted,
                                   "rejected": out.rejected, "t": out.t, "reason": out.reason}
        if not torch.isfinite(z1).all():
            raise SolverFailure(f"{type(self).__name__}: the Neural ODE state is not finite")
        return self.core(z1, x), nfe + 1

    # ---- counters ------------------------------------------------------------------------------
    @property
    def nfe_backward(self) -> int:
        """GMRES matrix–vector products (VJPs) of the last backward; for the Neural ODE's adjoint
        mode the field evaluations of the adjoint solve; 0 otherwise."""
        if self._node_field is not None:
            return self._node_field.nfe - self._nfe_backward_base
        return int(self._backward_stats.get("vjps", 0))

    @property
    def last_backward(self) -> dict[str, Any]:
        """The implicit backward's record of the last batch: ``v_norm``, ``iterations``,
        ``vjps``, ``converged``, ``relative_residual`` (empty before any backward)."""
        return dict(self._backward_stats)

    def reset_nfe(self) -> None:
        super().reset_nfe()
        self._backward_stats = {}
        self._node_field = None


class SkipDEQ(ContinuousDEQ):
    """Skip DEQ: ``u₀ = g_φ(x)`` from an explicit predictor (+36,576 parameters for CIFAR-10
    small, +554,816 for CIFAR-10 large and ImageNet), trained by the skip loss."""

    default_init = "skip"

    def __init__(self, arch: str = "digits-small", **kwargs: Any) -> None:
        _fixed_init(type(self).__name__, self.default_init, kwargs)
        super().__init__(arch, **kwargs)


class SkipRegDEQ(ContinuousDEQ):
    """Skip Reg. DEQ: ``u₀ = f(0, x)``, no extra parameters; the skip loss
    ``mean|f(u*, x) − f(0, x)|`` regularises f toward simple dynamics."""

    default_init = "skip_reg"

    def __init__(self, arch: str = "digits-small", **kwargs: Any) -> None:
        _fixed_init(type(self).__name__, self.default_init, kwargs)
        super().__init__(arch, **kwargs)


class MultiscaleNeuralODE(ContinuousDEQ):
    """The paper's baseline "Multi-Scale Neural ODE with input injection": ``dz/dt = f(z, x)``
    on [0, 1] from 0 with the DEQ's f (same parameters as the vanilla model), the same
    integrator at ``abstol = reltol = 0.05``, ``max_steps`` attempts, output ``f(z(1), x)``."""

    def __init__(self, arch: str = "digits-small", **kwargs: Any) -> None:
        if kwargs.pop("solver", "neural_ode") != "neural_ode":
            raise ValueError("MultiscaleNeuralODE fixes solver='neural_ode'")
        super().__init__(arch, solver="neural_ode", **kwargs)


def _fixed_init(name: str, init: str, kwargs: dict[str, Any]) -> None:
    given = kwargs.pop("init", init)
    if given != init:
        raise ValueError(f"{name} fixes init={init!r}; use ContinuousDEQ(init={given!r}) instead")


#: Build-name prefix → class (``<prefix>-<arch>``, e.g. ``skipdeq-cifar10-small``).
FAMILY: dict[str, type[ContinuousDEQ]] = {
    "cdeq": ContinuousDEQ,
    "skipdeq": SkipDEQ,
    "skipregdeq": SkipRegDEQ,
    "msnode": MultiscaleNeuralODE,
}


def build_names() -> dict[str, tuple[type[ContinuousDEQ], str, dict[str, Any]]]:
    """Every named build: ``name → (class, dataset, constructor kwargs)``.

    ``cdeq-``, ``skipdeq-``, ``skipregdeq-`` for every architecture, ``msnode-`` for the
    multiscale ones except ImageNet (the paper has no ImageNet Neural ODE). The discrete DEQ rows
    are the same builds with ``solver="discrete"``.
    """
    out: dict[str, tuple[type[ContinuousDEQ], str, dict[str, Any]]] = {}
    for prefix, cls in FAMILY.items():
        for arch in ARCHS:
            if prefix == "msnode" and (arch in FC_CONFIGS or arch == "imagenet-small"):
                continue
            out[f"{prefix}-{arch}"] = (cls, arch.split("-")[0], {"arch": arch})
    return out


def variant_model(arch: str, variant: str, **kwargs: Any) -> ContinuousDEQ:
    """A model by row: ``variant`` in ``vanilla | skip | skip_reg | neural_ode``."""
    check_choice("variant", variant, ("vanilla", "skip", "skip_reg", "neural_ode"))
    if variant == "neural_ode":
        return MultiscaleNeuralODE(arch, **kwargs)
    return ContinuousDEQ(arch, init={"vanilla": "zero"}.get(variant, variant), **kwargs)


__all__ = [
    "ARCHS",
    "ARCH_DEFAULTS",
    "BACKWARDS",
    "FAMILY",
    "INITS",
    "NODE_GRAD_MODES",
    "SOLVERS",
    "STEM_GRADIENTS",
    "ContinuousDEQ",
    "MultiscaleNeuralODE",
    "SkipDEQ",
    "SkipRegDEQ",
    "arch_config",
    "build_names",
    "solve_implicit_adjoint",
    "variant_model",
]
