"""HomoODE (Ding, Cui, Wang, Shi, NeurIPS 2023): a Neural ODE with the input as the condition.

The model of the official code (``wadx2019/homoode``), without its torchdiffeq fork:
exact gradients come from stock torchdiffeq (backprop or ``odeint_adjoint`` with x̃ among the
``adjoint_params``); the fork's approximate "frozen adjoint" is re-implemented here as a custom
autograd Function, :class:`FrozenAdjoint`.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchdiffeq import odeint

from deqode.choices import GRAD_MODES as HOMOODE_GRAD_MODES
from deqode.models.bases import (
    CountingField,
    ODEClassifier,
    conv_ode_settings,
    solver_errors_as_failure,
)
from deqode.models.blocks import AlternatingInit, ConvBackbone, ConvField, InitLayer
from deqode.models.settings import ODESolve


class _BackwardDynamics:
    """Right-hand side of the frozen-adjoint backward system (t runs from 1 down to 0).

    State (z, g_x̃, g_θ...): ż = F(z), ġ = −(∂F/∂(x̃, θ))ᵀ a(1), with the adjoint *frozen* at a(1).
    Starting from g(1) = 0, g(0) = ∫₀¹ (∂F/∂(x̃, θ))ᵀ a(1) dt.
    """

    def __init__(
        self, func: CountingField, field: ConvField, condition: Tensor, params: tuple[Tensor, ...],
        a1: Tensor,
    ) -> None:
        self.func = func
        self.field = field
        self.condition = condition
        self.params = params
        self.a1 = a1

    def __call__(self, t: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        z = state[0].detach()
        condition = self.condition.detach().requires_grad_(True)
        saved = self.field.condition
        self.field.condition = condition
        try:
            with torch.enable_grad():
                velocity = self.func(t, z)
                grads = torch.autograd.grad(
                    velocity, (condition, *self.params), self.a1, allow_unused=True
                )
        finally:
            self.field.condition = saved
        rates = tuple(
            torch.zeros_like(x) if g is None else -g
            for x, g in zip((condition, *self.params), grads, strict=True)
        )
        return (velocity.detach(), *rates)

    def callback_step(self, t0: Tensor, y0: Any, dt: Tensor) -> None:
        self.func.count_step("backward")


class FrozenAdjoint(torch.autograd.Function):
    """The official code's approximate adjoint (``homoint_adjoint``; the book's gradient
    chapter, mode C).

    Forward: z(1) of ``dz/dt = F(z; x̃, θ)`` from z(0) without building a graph. Backward: the
    adjoint is frozen at a(1) = ∂L/∂z(1) (the fork takes the VJP with respect to a tensor that is
    not in the graph of the evaluation, so ``ȧ = −(∂F/∂z)ᵀ a`` becomes 0), hence

        ∂L/∂θ  ≈ ∫₀¹ (∂F/∂θ)ᵀ a(1) dt,    ∂L/∂x̃ ≈ ∫₀¹ (∂F/∂x̃)ᵀ a(1) dt,    ∂L/∂z(0) ≈ a(1),

    i.e. the state-transition Jacobian ∂z(1)/∂z(t) is replaced by I (exact only if ∂F/∂z ≡ 0).
    The integrals are computed by integrating [z, g_x̃, g_θ] backwards from t = 1 with the same
    solver and tolerances (spec option (i)); z is re-integrated with F, so the backward pass costs
    about as many evaluations as an exact adjoint's. Not exactly as many (the spec's "equals" is
    too strong): the step-size control sees a different augmented state ([z, g] here, [z, a, g]
    there), so the two backward NFE differ (notebook 04 shows both per tolerance). Used by
    HomoODE's ``grad_mode="frozen_adjoint"``.

    ``apply(func, field, z0, condition, times, solver_kwargs, *params)`` → z(1).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        func: CountingField,
        field: ConvField,
        z0: Tensor,
        condition: Tensor,
        times: Tensor,
        solver_kwargs: dict[str, Any],
        *params: Tensor,
    ) -> Tensor:
        with torch.no_grad(), solver_errors_as_failure("HomoODE forward (frozen_adjoint)"):
            z1 = odeint(func, z0, times, **solver_kwargs)[-1]
        ctx.func = func
        ctx.field = field
        ctx.solver_kwargs = solver_kwargs
        ctx.save_for_backward(z1, condition, times, *params)
        return z1

    @staticmethod
    def backward(ctx: Any, a1: Tensor) -> tuple[Tensor | None, ...]:
        z1, condition, times, *params = ctx.saved_tensors
        dynamics = _BackwardDynamics(ctx.func, ctx.field, condition, tuple(params), a1)
        state0 = (z1, torch.zeros_like(condition), *(torch.zeros_like(p) for p in params))
        with torch.no_grad(), solver_errors_as_failure("HomoODE backward (frozen_adjoint)"):
            state = odeint(dynamics, state0, times.flip(0), **ctx.solver_kwargs)
        grad_condition, *grad_params = (s[-1] for s in state[1:])
        return (None, None, a1, grad_condition, None, None, *grad_params)


class HomoODE(ODEClassifier):
    """HomoNet of the official code: stem D → HomoODE block → head (released classes, instantiated).

    ::

        x̃ = D(x)                                         (condition, C × 16 × 16 on CIFAR)
        z(0) = z0 = InitLayer(x̃)  (used detached)        (shared learnable initial point)
        dz/dt = F(z; x̃) = GN_3(m ⊙ Conv_2(ReLU(GN_2(Conv_1 z)) + x̃)),   t ∈ [0, 1]
        logits = head(z(1))

    ``F`` is autonomous (no time channel) and has no ``−z`` term; x̃ is added after the first ReLU
    and before ``Conv_2``; ``m`` is channel dropout, one mask (N, C, 1, 1) per forward solve, reused
    in the backward/adjoint pass, off in eval mode. Solver: torchdiffeq dopri5, rtol = atol = 1e-3;
    in backprop mode through :func:`deqode.solvers.dopri5.odeint_dopri5` (torchdiffeq's steps and
    values with fewer passes over the state; ``tests/test_homoode_equivalence.py``).

    Gradient modes (``grad_mode``; the book's gradient chapter):

    * ``"backprop"``: autograd through the solver (Mode A; exact for the discretised solve).
    * ``"adjoint"``: ``odeint_adjoint`` with x̃ among ``adjoint_params`` (Mode B; exact).
    * ``"frozen_adjoint"``: the official fork's approximation (Mode C, :class:`FrozenAdjoint`).

    Mode B tracks Mode A only as well as the adaptive solver resolves the adjoint: with a smooth
    field (``activation="softplus"``) they agree to ~1e-8 at tol 1e-10, with the papers' ReLU only
    to ~1e-2 at tol 1e-6, since the kinks defeat the error control (and the adjoint solve then
    takes many more steps than the forward one); see ``tests/test_homoode_gradients.py``.

    Shared initial point: ``InitLayer(C)`` when ``use_init_layer`` (else the fixed alternating ±1
    start of ``create_init``). It is not trained by the classification loss; :meth:`init_loss` is
    ``SmoothL1(z0, stopgrad(z(1)))`` for z(1) of the last *training* forward, stepped by a separate
    SGD optimiser over :meth:`init_parameters` with learning rate ``lr_init`` every ``freq``
    iterations (the training loop does that, through :meth:`separate_update`; defaults per dataset
    are set by the builds).

    Departures from the official code: stock torchdiffeq instead of the fork; a step cap
    (``max_num_steps``, default 1000, raising :class:`~deqode.errors.SolverFailure`; the official
    solve has none); the init layer is a submodule, so it is saved with the model (the official
    checkpoint loses it) and is excluded from :meth:`main_parameters`.
    """

    grad_modes = HOMOODE_GRAD_MODES
    keyword_settings = (ConvBackbone, ODESolve)

    def __init__(
        self,
        *args: Any,
        max_num_steps: int | None = 1000,
        use_init_layer: bool = True,
        lr_init: float = 0.02,
        freq: int = 20,
        **settings: Any,
    ) -> None:
        net, solve = conv_ode_settings(type(self), args, settings)
        field = net.field(injected=True)
        super().__init__(net.stem(), net.head(), field, net.in_channels, solve=solve,
                         max_num_steps=max_num_steps)
        self.backbone = net
        self.init_layer: nn.Module = (
            InitLayer(net.channels, net.max_groups) if use_init_layer else AlternatingInit()
        )
        self.use_init_layer = use_init_layer
        if freq < 1 or lr_init <= 0:
            raise ValueError(f"need freq >= 1 and lr_init > 0, got freq={freq}, lr_init={lr_init}")
        self.lr_init = lr_init
        self.freq = freq
        self._last_endpoint: Tensor | None = None

    def start(self, x_tilde: Tensor) -> tuple[Tensor, Tensor | None]:
        """z(0) = z0 (detached, shared by all samples); the condition is x̃."""
        with torch.no_grad():
            z0 = self.init_layer(x_tilde)
        return z0, x_tilde

    def solve(self, x_tilde: Tensor) -> Tensor:
        z1 = super().solve(x_tilde)
        if self.training:
            self._last_endpoint = z1.detach()
        return z1

    def integrate(self, z0: Tensor, condition: Tensor | None, times: Tensor) -> Tensor:
        if self.grad_mode != "frozen_adjoint":
            return super().integrate(z0, condition, times)
        kwargs = dict(rtol=self.rtol, atol=self.atol, method=self.method, options=self.options)
        params = tuple(self.field.parameters())
        return FrozenAdjoint.apply(self.func, self.field, z0, condition, times, kwargs, *params)

    # the shared initial point ---------------------------------------------------------------------
    def init_parameters(self) -> list[nn.Parameter]:
        """The init layer's parameters (3C; empty with ``use_init_layer=False``)."""
        return list(self.init_layer.parameters())

    def initial_point(self, reference: Tensor) -> Tensor:
        """z0 broadcast to the state shape of ``reference`` (N, C, H, W), with gradient."""
        return self.init_layer(reference)

    def separate_update(self, lr: float | None = None, freq: int | None = None) -> Any:
        """The training loop's hook for the shared initial point (Ding et al. 2023, §3.3;
        ``train.py`` of ``wadx2019/homoode``): :meth:`init_loss` trains :meth:`init_parameters`
        by SGD at ``lr`` (default ``lr_init``) every ``freq`` iterations (default ``freq``); see
        :mod:`deqode.train.hooks`. None without an init layer."""
        from deqode.train.hooks import SeparateUpdate

        if not self.use_init_layer:
            return None
        return SeparateUpdate("init", self.init_parameters(), self.init_loss,
                              self.lr_init if lr is None else lr,
                              int(self.freq if freq is None else freq))

    def init_loss(self) -> Tensor:
        """``SmoothL1(z0, stopgrad(z(1)))`` (β = 1, mean) for the last training forward
        (released ``train.py``).

        Not part of the classification loss: back-propagate it separately and step an optimiser
        over :meth:`init_parameters` only.
        """
        if not self.use_init_layer:
            raise RuntimeError("this HomoODE has no init layer (use_init_layer=False)")
        if self._last_endpoint is None:
            raise RuntimeError("init_loss() needs a forward pass in training mode first")
        target = self._last_endpoint
        return F.smooth_l1_loss(self.initial_point(target), target)
