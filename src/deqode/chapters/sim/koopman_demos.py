"""Koopman demos of the book chapter 14_sim_koopman (K1, K4): small training helpers.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from deqode.chapters.sim.loops import train_classifier
from deqode.choices import check_profile
from deqode.models import sim

# --------------------------------------------------------------------------------------------------
# Koopman demos (K1, K4): small training helpers, no logic in the notebooks
# --------------------------------------------------------------------------------------------------


def smoke_threads(profile: str) -> int:
    """Use one CPU thread in the smoke profile (the models are tiny: intra-op threading only adds
    overhead, and heavily so on a shared 2-core machine); returns the thread count in use."""
    if check_profile(profile) == "smoke":
        torch.set_num_threads(1)
    return torch.get_num_threads()


def digits_tensors(split: str, data_root: str = "data") -> tuple[Tensor, Tensor]:
    """sklearn digits as stacked tensors ``(N, 1, 8, 8)``, labels ``(N,)`` (SIM recipe, 90/10)."""
    from deqode.data import load_dataset

    data = load_dataset("digits", root=data_root, split=split, profile="smoke", recipe="sim",
                        test_fraction=0.1, seed=0)
    return data.images, data.targets


def train_tanh_deq(
    max_norm: float | None,
    epochs: int = 5,
    lr: float = 1e-2,
    batch_size: int = 64,
    hidden: int = 16,
    seed: int = 0,
    data_root: str = "data",
) -> tuple[sim.ContractiveTanhDEQ, dict[str, Any]]:
    """K1: train ``z* = tanh(W z* + U x + b)`` (``z ∈ R^16``) on digits with Adam; ``max_norm``
    bounds ``||W||₂`` (None: unconstrained). Returns the model and its history."""
    torch.manual_seed(seed)
    x_tr, y_tr = digits_tensors("train", data_root)
    x_te, y_te = digits_tensors("test", data_root)
    train = torch.utils.data.TensorDataset(x_tr, y_tr)
    test = torch.utils.data.TensorDataset(x_te, y_te)
    model = sim.ContractiveTanhDEQ(64, hidden, 10, max_norm=max_norm, solver="anderson",
                                   tol=1e-4, max_iter=50, backward_tol=1e-6)
    history = train_classifier(model, train, test, epochs=epochs, batch_size=batch_size, lr=lr,
                               lr_mode="constant", shuffle_seed=seed)
    return model, history


def r_squared(prediction: Tensor, target: Tensor) -> float:
    """Coefficient of determination ``1 − SS_res / SS_tot``."""
    prediction, target = prediction.flatten(), target.flatten()
    ss_tot = (target - target.mean()).square().sum()
    return float(1 - (prediction - target).square().sum() / ss_tot)


def hopf_readouts(
    mu: Tensor, theta0: Tensor, omega: float = 1.0, h: float = 0.5, radius0: float = 0.3,
    burn_in: int = 100, n_average: int = 400,
) -> dict[str, Tensor]:
    """Readouts of ``g(z) = x₁²`` along forward iteration of the Hopf flow map ``S_h`` from
    ``z₀ = radius0 · (cos θ₀, sin θ₀)``: the time average over ``n_average`` steps after
    ``burn_in`` (the λ = 1 / invariant-measure part; → ``μ/2`` for irrational ``ωh/2π``) and the
    value at the finite depth ``burn_in`` (phase-dependent)."""
    from deqode.chapters.sim import koopman

    z0 = radius0 * torch.stack([torch.cos(theta0), torch.sin(theta0)], -1)
    traj = koopman.iterate(lambda z: koopman.hopf_flow(z, mu, omega, h), z0,
                           burn_in + n_average)
    g = traj[..., 0] ** 2
    return {"time_average": g[burn_in + 1:].mean(0), "depth_readout": g[burn_in],
            "final_state": traj[-1]}


def fit_sim_regressor(
    inputs: Tensor, targets: Tensor, steps: int = 400, lr: float = 1e-2, width: int = 16,
    seed: int = 0,
) -> tuple[sim.SIM, list[float]]:
    """Full-batch Adam fit (MSE) of a small single-tier SIM (MLP basis, out = targets' width),
    ``steps`` iterations through :func:`deqode.train.fit` (one epoch of a constant stream of
    the whole set, in a temporary folder). Returns the model and the loss of every step."""
    import tempfile

    from deqode.train import TrainConfig, fit
    from deqode.train.batches import Stream
    from deqode.train.tasks import FunctionTask

    torch.manual_seed(seed)
    out_dim = 1 if targets.dim() == 1 else targets.shape[1]
    model = sim.sim_mlp(width, width, width, out_dim=out_dim, in_dim=inputs.shape[1])
    model.to(inputs.dtype)
    batch = (inputs, targets.reshape(len(targets), out_dim))

    def mse(net: torch.nn.Module, pair: tuple[Tensor, Tensor]) -> Tensor:
        return F.mse_loss(net(pair[0]), pair[1])

    task = FunctionTask("regression", mse, lambda: {"mse": mse(model, batch).item()}, "mse")
    config = TrainConfig(
        name="sim-regressor", model=lambda: model, task=task, data_order="stream",
        dataset=lambda split: Stream(lambda _: batch), iterations=steps, batch_size=steps,
        epochs=1, lr=lr, schedule="constant", seed=None, dtype=str(inputs.dtype).split(".")[-1],
        record_steps=True, measure_memory=False)
    with tempfile.TemporaryDirectory(prefix="deqode-sim-") as scratch:
        result = fit(config, profile="smoke", device=inputs.device, results_dir=scratch,
                     quiet=True, progress=False)
    if result.failed:
        raise RuntimeError(f"fit_sim_regressor failed: {result.reason}")
    model.train()
    return model, [step["loss"] for h in result.history for step in h["steps"]]


#: K1: the observed asymptotic contraction rate of forward iteration must match the spectral
#: radius of the Jacobian at the fixed point within this relative tolerance (measured on the
#: smoke DEQ: within 9 %).
RATE_TOL = 0.15


def observed_contraction_rates(dist: Tensor, floor: float = 1e-9, start: int = 10) -> Tensor:
    """Per column of ``dist`` (``‖z_k − z*‖`` over iterations ``k``): the geometric-mean
    contraction per step between iteration ``min(start, k_last − 5)`` and ``k_last``, the last
    iteration still above ``floor`` (the solve accuracy). Linearisation predicts ``ρ(J(x))``."""
    rates = []
    for column in dist.T:
        above = (column > floor).nonzero().flatten()
        k_last = int(above.max()) if len(above) else 0
        k_first = max(0, min(start, k_last - 5))
        if k_last <= k_first:
            rates.append(float("nan"))
            continue
        rates.append(float((column[k_last] / column[k_first]) ** (1.0 / (k_last - k_first))))
    return torch.tensor(rates, dtype=dist.dtype)


def rates_match_spectral_radius(rates: Tensor, rho: Tensor, tol: float = RATE_TOL) -> bool:
    """True when every observed rate is within ``tol`` (relative) of the spectral radius."""
    return bool(torch.all((rates - rho).abs() <= tol * rho).item())
