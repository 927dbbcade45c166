"""Neural ODE (Chen et al. 2018) and Augmented Neural ODE (Dupont et al. 2019).

In both, the input is the initial point of the ODE; the field never sees it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from deqode.models.bases import ODEClassifier
from deqode.models.blocks import ClassificationHead, ConvField, DownsamplingStem


class NeuralODE(ODEClassifier):
    """Neural ODE classifier: the feature-extractor output is the initial point.

    ::

        x̃ = D(x),   z(0) = x̃,   dz/dt = F(t, z),  t ∈ [0, 1],   logits = head(z(1))
        F(t, z) = GN_3(m ⊙ Conv_2(t, ReLU(GN_2(Conv_1(t, ReLU(GN_1 z))))))

    ``F`` is Chen et al.'s ODE function (``rtqichen/torchdiffeq:examples/odenet_mnist.py``:
    pre-activation GN-ReLU, time-concatenated 3×3 convolutions, GroupNorm) on the HomoNet stem and
    head (spec §3.7, a reconstruction: no baseline code is released). The input enters only through
    z(0); F never sees it. Departures from Chen et al.: optional hidden width
    (``hidden_channels``, default C) and optional variational dropout (mask (N, C, 1, 1) sampled
    once per solve), both used to match HomoODE's parameter count and regularisation.

    Solver and gradients: see :class:`~deqode.models.layers.ODEClassifier` (dopri5,
    rtol = atol = 1e-3, ``grad_mode`` in {"backprop", "adjoint"}).
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        channels: int = 64,
        final_channels: int = 256,
        *,
        hidden_channels: int | None = None,
        max_groups: int = 32,
        dropout: float = 0.0,
        activation: str = "relu",
        first_stride: int = 1,
        grad_mode: str = "backprop",
        method: str = "dopri5",
        rtol: float = 1e-3,
        atol: float = 1e-3,
        options: dict[str, Any] | None = None,
        max_num_steps: int | None = 1000,
        augment_channels: int = 0,
    ) -> None:
        if augment_channels < 0:
            raise ValueError(f"augment_channels must be >= 0, got {augment_channels}")
        state = channels + augment_channels
        field = ConvField(
            state,
            hidden_channels,
            max_groups=max_groups,
            time_dependent=True,
            pre_activation=True,
            injected=False,
            dropout=dropout,
            activation=activation,
        )
        super().__init__(
            DownsamplingStem(in_channels, channels, first_stride),
            ClassificationHead(state, final_channels, num_classes, max_groups),
            field,
            in_channels,
            grad_mode=grad_mode,
            method=method,
            rtol=rtol,
            atol=atol,
            options=options,
            max_num_steps=max_num_steps,
        )
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

    (Dupont et al. 2019; reference code ``EmilienDupont/augmented-neural-odes``, spec §3.7.) The
    head reads all C + k channels, as in ANODE. Read as homotopy continuation (spec §2.2.6), the
    augmented block is the unknown started from a shared point (0) and the original block acts as a
    condition that, unlike HomoODE's x̃, itself evolves in time. The field's hidden width
    (``hidden_channels``) is narrowed in the builds so that the parameter count matches HomoODE's.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        channels: int = 64,
        final_channels: int = 256,
        *,
        augment_channels: int = 16,
        **kwargs: Any,
    ) -> None:
        if augment_channels < 1:
            raise ValueError(
                f"an augmented Neural ODE needs augment_channels >= 1, got {augment_channels}"
            )
        super().__init__(
            in_channels, num_classes, channels, final_channels,
            augment_channels=augment_channels, **kwargs,
        )
