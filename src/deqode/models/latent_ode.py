"""A latent ODE for irregular-free time series, as in torchdiffeq's ``examples/latent_ode.py``.

Used by the Nesterov-solver chapter (task C, spirals). Described, not copied:

* **Recognition RNN** (tanh cell): ``h ← tanh(Linear(obs + hidden → hidden)([x_t, h]))`` run
  over the observations in **reverse** time, then ``Linear(hidden → 2·latent)`` gives the mean and
  log-variance of ``q(z_0 | x)``.
* **Latent field** ``dz/dt = MLP(z)``: ``latent → H → H → latent`` with ELU (autonomous).
* **Decoder** ``latent → H → obs`` with ReLU.
* **Loss**: the negative ELBO averaged over trajectories,
  ``-log N(x | dec(z_t), σ²)`` summed over time and dimensions plus ``KL(q(z_0) ‖ N(0, I))``
  (analytic), with a reparameterised sample ``z_0 = μ + ε·exp(logvar/2)``; σ = 0.3.

The ODE is solved with torchdiffeq on the shared time stamps of the batch; with a fixed grid the
outputs come from torchdiffeq's linear interpolation between grid points. The solver is an
attribute (``method``, ``options``, ``rtol``, ``atol``, ``grad_mode``), as in :mod:`.cnf`
(both build on :class:`~deqode.models.solved_field.SolvedFieldModel`).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from deqode.models.settings import ODESolve, reject_unknown, take_settings
from deqode.models.solved_field import GRAD_MODES, SolvedFieldModel


class RecognitionRNN(nn.Module):
    """Encoder: a tanh RNN over the reversed sequence → (mean, logvar) of q(z_0)."""

    def __init__(self, latent_dim: int = 4, obs_dim: int = 2, hidden: int = 25) -> None:
        super().__init__()
        self.hidden = hidden
        self.i2h = nn.Linear(obs_dim + hidden, hidden)
        self.h2o = nn.Linear(hidden, 2 * latent_dim)

    def forward(self, observed: Tensor) -> tuple[Tensor, Tensor]:
        """``observed`` (N, T, obs) → mean, logvar (N, latent)."""
        h = observed.new_zeros(observed.shape[0], self.hidden)
        for step in reversed(range(observed.shape[1])):
            h = torch.tanh(self.i2h(torch.cat([observed[:, step], h], dim=1)))
        mean, logvar = self.h2o(h).chunk(2, dim=1)
        return mean, logvar


class LatentField(nn.Module):
    """``dz/dt = fc3(elu(fc2(elu(fc1(z)))))`` with an evaluation counter ``nfe``."""

    def __init__(self, latent_dim: int = 4, hidden: int = 20) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.ELU(), nn.Linear(hidden, hidden), nn.ELU(),
            nn.Linear(hidden, latent_dim),
        )
        self.nfe = 0

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        self.nfe += 1
        return self.net(z)


class Decoder(nn.Module):
    """``latent → hidden (ReLU) → obs``."""

    def __init__(self, latent_dim: int = 4, obs_dim: int = 2, hidden: int = 20) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, obs_dim))

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


def gaussian_log_likelihood(x: Tensor, mean: Tensor, std: float) -> Tensor:
    """Elementwise log N(x; mean, std²)."""
    return -0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)


def kl_to_standard_normal(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) ‖ N(0, I)), summed over the last dimension."""
    return 0.5 * (mean * mean + logvar.exp() - 1.0 - logvar).sum(dim=-1)


class LatentODE(SolvedFieldModel):
    """Recognition RNN → z_0 → ODE in latent space → decoder (see the module docstring).

    Defaults are the example's: latent 4, observations 2-D, field and decoder width 20, RNN 25,
    observation noise σ = 0.3; solver keywords: the fields of
    :class:`~deqode.models.settings.ODESolve`, here with rtol = 1e-7 and atol = 1e-9.
    """

    keyword_settings = (ODESolve,)

    def __init__(
        self,
        latent_dim: int = 4,
        obs_dim: int = 2,
        hidden: int = 20,
        rnn_hidden: int = 25,
        *,
        noise_std: float = 0.3,
        **solver: Any,
    ) -> None:
        super().__init__()
        if noise_std <= 0:
            raise ValueError(f"noise_std must be positive, got {noise_std}")
        self._set_solver(take_settings(ODESolve, solver, rtol=1e-7, atol=1e-9))
        reject_unknown(solver, type(self))
        self.latent_dim, self.obs_dim = latent_dim, obs_dim
        self.encoder = RecognitionRNN(latent_dim, obs_dim, rnn_hidden)
        self.field = LatentField(latent_dim, hidden)
        self.decoder = Decoder(latent_dim, obs_dim, hidden)
        self.noise_std = float(noise_std)

    def integrate(self, z0: Tensor, times: Tensor) -> Tensor:
        """Latent states at ``times`` (len(times), N, latent); times may decrease."""
        return self._solve(z0, times)

    def reconstruct(self, observed: Tensor, times: Tensor, sample: bool = True,
                    generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """Predictions (N, len(times), obs) and q(z_0)'s mean and logvar.

        ``sample=False`` decodes from the posterior mean (evaluation).
        """
        if observed.dim() != 3 or observed.shape[2] != self.obs_dim:
            raise ValueError(
                f"LatentODE expects observations (N, T, {self.obs_dim}), "
                f"got {tuple(observed.shape)}"
            )
        mean, logvar = self.encoder(observed)
        z0 = mean
        if sample:
            noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
            z0 = mean + noise * torch.exp(0.5 * logvar)
        z = self.integrate(z0, times)  # (T, N, latent)
        return self.decoder(z.transpose(0, 1)), mean, logvar

    def negative_elbo(self, observed: Tensor, times: Tensor,
                      generator: torch.Generator | None = None) -> Tensor:
        """Mean over trajectories of -[log p(x | z) summed over time and dims] + KL (nats)."""
        pred, mean, logvar = self.reconstruct(observed, times, sample=True, generator=generator)
        log_px = gaussian_log_likelihood(observed, pred, self.noise_std).sum(dim=(1, 2))
        return (-log_px + kl_to_standard_normal(mean, logvar)).mean()

    def forward(self, observed: Tensor, times: Tensor) -> Tensor:
        return self.negative_elbo(observed, times)


__all__ = [
    "GRAD_MODES",
    "Decoder",
    "LatentField",
    "LatentODE",
    "RecognitionRNN",
    "gaussian_log_likelihood",
    "kl_to_standard_normal",
]
