"""Updates a model asks the training loop for besides the main step.

A model may define ``separate_update(lr=None, freq=None)`` returning a :class:`SeparateUpdate`:
parameters that the main loss does not train, an auxiliary loss that does, and how often and how
fast. HomoODE's shared initial point is one (Ding et al. 2023, §3.3; ``train.py`` of
``wadx2019/homoode``): :meth:`deqode.models.homoode.HomoODE.separate_update`.

The loop (:func:`deqode.train.fit`) owns the optimiser: plain SGD (no momentum, no weight decay)
at ``lr`` over ``parameters``, stepped after the main step on iterations with
``iteration % every == 0`` (counted over the whole run, iteration 0 included), with its own
``CosineAnnealingLR(T_max = total_iterations / scheduler_divisor, eta_min)`` stepped only on
those iterations (:class:`~deqode.train.InitPointConfig`). The parameters are left out of the
main optimiser and of DDP; their gradients are averaged over ranks before the step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor, nn


@dataclass
class SeparateUpdate:
    """``name`` prefixes what the loop records (``<name>_loss``, ``lr_<name>``, checkpoint keys
    ``<name>_optimizer`` / ``<name>_scheduler``)."""

    name: str
    parameters: list[nn.Parameter]
    loss: Callable[[], Tensor]
    lr: float
    every: int

    def __post_init__(self) -> None:
        if self.every < 1 or self.lr <= 0:
            raise ValueError(f"separate update {self.name!r} needs every >= 1 and lr > 0, got "
                             f"every={self.every}, lr={self.lr}")


def separate_update(model: nn.Module, lr: float | None, freq: int | None) -> SeparateUpdate | None:
    """The model's separate update (None if it has none, or an empty one)."""
    make = getattr(model, "separate_update", None)
    update = make(lr=lr, freq=freq) if callable(make) else None
    return update if update is not None and update.parameters else None


__all__ = ["SeparateUpdate", "separate_update"]
