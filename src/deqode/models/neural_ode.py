"""Neural ODE (Chen et al. 2018) and Augmented Neural ODE (Dupont et al. 2019).

In both, the input is the initial point of the ODE; the field never sees it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from deqode.models.bases import ODEClassifier, conv_ode_settings
from deqode.models.blocks import ConvBackbone
from deqode.models.settings import ODESolve


class NeuralODE(ODEClassifier):
    """Neural ODE classifier: the feature-extractor output is the initial point.

    ::

        x̃ = D(x),   z(0) = x̃,   dz/dt = F(t, z),  t ∈ [0, 1],   logits = head(z(1))
        F(t, z) = GN_3(m ⊙ Conv_2(t, ReLU(GN_2(Conv_1(t, ReLU(GN_1 z))))))

    ``F`` is Chen et al.'s ODE function (``rtqichen/torchdiffeq:examples/odenet_mnist.py``:
    pre-activation GN-ReLU, time-concatenated 3×3 convolutions, GroupNorm) on the HomoNet stem and
    head (a reconstruction: no baseline code is released). The input enters only through
    z(0); F never sees it. Departures from Chen et al.: optional hidden width
    (``hidden_channels``, default C) and optional variational dropout (mask (N, C, 1, 1) sampled
    once per solve), both used to match HomoODE's parameter count and regularisation.

    Solver and gradients: see :class:`~deqode.models.bases.ODEClassifier` (dopri5,
    rtol = atol = 1e-3, ``grad_mode`` in {"backprop", "adjoint"}). Keyword arguments besides
    those named: the fields of :class:`~deqode.models.blocks.ConvBackbone` (here ``dropout``
    defaults to 0; the first four also by position) and of
    :class:`~deqode.models.settings.ODESolve`.
    """

    keyword_settings = (ConvBackbone, ODESolve)

    def __init__(
        self,
        *args: Any,
        hidden_channels: int | None = None,
        augment_channels: int = 0,
        max_num_steps: int | None = 1000,
        **settings: Any,
    ) -> None:
        if augment_channels < 0:
            raise ValueError(f"augment_channels must be >= 0, got {augment_channels}")
        net, solve = conv_ode_settings(type(self), args, settings, dropout=0.0)
        state = net.channels + augment_channels
        field = net.field(state, hidden_channels, time_dependent=True, pre_activation=True)
        super().__init__(net.stem(), net.head(state), field, net.in_channels, solve=solve,
                         max_num_steps=max_num_steps)
        self.backbone = net
        self.augment_channels = augment_channels

    def start(self, x_tilde: Tensor) -> tuple[Tensor, Tensor | None]:
        """z(0) = x̃ (with ``augment_channels`` zero channels appended); no condition."""
        if self.augment_channels == 0:
            return x_tilde, None
        n, _, h, w = x_tilde.shape
        zeros = x_tilde.new_zeros(n, self.augment_channels, h, w)
        return torch.cat([x_tilde, zeros], dim=1), None


class AugmentedNeuralODE(NeuralODE):
    """Augmented Neural ODE: the Neural ODE on the state [x̃; 0] with k zero channels appended.

    ::

        z(0) = [x̃; 0_k],   dz/dt = F(t, z) on C + k channels,   logits = head(z(1))

    (Dupont et al. 2019; reference code ``EmilienDupont/augmented-neural-odes``.) The
    head reads all C + k channels, as in ANODE. Read as homotopy continuation, the
    augmented block is the unknown started from a shared point (0) and the original block acts as a
    condition that, unlike HomoODE's x̃, itself evolves in time. The field's hidden width
    (``hidden_channels``) is narrowed in the builds so that the parameter count matches HomoODE's.
    """

    def __init__(self, *args: Any, augment_channels: int = 16, **kwargs: Any) -> None:
        if augment_channels < 1:
            raise ValueError(
                f"an augmented Neural ODE needs augment_channels >= 1, got {augment_channels}"
            )
        super().__init__(*args, augment_channels=augment_channels, **kwargs)
