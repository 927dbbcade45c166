"""Learning-rate schedules of the training loop (``TrainConfig.schedule``).

The run's length is ``TrainConfig.budget``: ``epochs · iterations per epoch`` optimiser steps, or
the step budget ``iterations``.

* ``cosine``: ``CosineAnnealingLR(T_max = the run's optimiser steps, eta_min)``, stepped every
  iteration (HomoODE's released ``train.py``);
* ``constant``;
* ``step``: ``lr · gamma^k`` after the k-th of ``milestones`` (epochs; optimiser steps under a
  step budget), stepped every iteration;
* ``steplr``: torch's ``StepLR(step_size, gamma)`` stepped after every epoch (monDEQ's
  ``train.py``, used by SIM; Winston & Kolter 2020, App. E);
* ``1cycle``: monDEQ's one-cycle policy, set before every iteration (:func:`one_cycle`).

``adamw`` with ``lr_scaled_decay=False``: before every step the weight decay of each parameter
group is set to ``weight_decay / lr``, so that torch's AdamW (which shrinks the weights by
``lr · weight_decay``) decays by ``weight_decay`` at every learning rate of the schedule.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def one_cycle(t: float, epochs: int, max_lr: float) -> tuple[float, float]:
    """monDEQ's ``1cycle``: (lr, Adam β1) at fractional epoch ``t`` (piecewise linear through the
    knots ``[0, (E−5)//2, E−5, E]``: lr ``[1e-3, max_lr, 1e-3, 1e-3]``, β1
    ``[0.95, 0.85, 0.95, 0.95]``; ``train.py`` of ``locuslab/monotone_op_net``)."""
    knots = [0, (epochs - 5) // 2, epochs - 5, epochs]
    return (float(np.interp(t, knots, [1e-3, max_lr, 1e-3, 1e-3])),
            float(np.interp(t, knots, [0.95, 0.85, 0.95, 0.95])))


class Schedule:
    """The main optimiser's schedule: the loop calls :meth:`before_step` before every iteration
    (``epoch`` counted from 0, ``batch`` the index within the epoch), :meth:`after_step` after
    every optimiser step and :meth:`after_epoch` after every epoch."""

    def __init__(self, config: Any, optimizer: torch.optim.Optimizer, iters_per_epoch: int):
        self.config, self.optimizer, self.iters_per_epoch = config, optimizer, iters_per_epoch
        lr_sched = torch.optim.lr_scheduler
        name = config.schedule
        total, self.epochs = config.budget(iters_per_epoch)
        self.per_epoch = name == "steplr"
        self.torch: Any = None
        if name == "cosine":
            self.torch = lr_sched.CosineAnnealingLR(optimizer, total, eta_min=config.eta_min)
        elif name == "step":
            per = 1 if config.iterations is not None else iters_per_epoch
            bounds = [m * per for m in config.milestones]
            self.torch = lr_sched.LambdaLR(
                optimizer, lambda it: config.gamma ** sum(it >= b for b in bounds))
        elif name == "steplr":
            self.torch = lr_sched.StepLR(optimizer, config.step_size, config.gamma)
        elif name == "constant":
            self.torch = lr_sched.LambdaLR(optimizer, lambda _: 1.0)

    def before_step(self, epoch: int, batch: int) -> None:
        if self.config.schedule == "1cycle":
            lr, beta1 = one_cycle(epoch + batch / self.iters_per_epoch, self.epochs,
                                  self.config.lr)
            for group in self.optimizer.param_groups:
                group["lr"], group["betas"] = lr, (beta1, group["betas"][1])
        if not self.config.lr_scaled_decay:  # decay by weight_decay whatever the rate
            for group in self.optimizer.param_groups:
                lr = float(group["lr"])
                group["weight_decay"] = self.config.weight_decay / lr if lr > 0 else 0.0

    def after_step(self) -> None:
        if self.torch is not None and not self.per_epoch:
            self.torch.step()

    def after_epoch(self) -> None:
        if self.torch is not None and self.per_epoch:
            self.torch.step()

    def state_dict(self) -> dict[str, Any]:
        return {} if self.torch is None else self.torch.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.torch is not None:
            self.torch.load_state_dict(state)


def initial_lr(config: Any) -> float:
    """The optimiser's starting learning rate (``1cycle`` starts at 1e-3 and sets it itself)."""
    return 1e-3 if config.schedule == "1cycle" else config.lr


__all__ = ["Schedule", "initial_lr", "one_cycle"]
