"""Generated data sets: 2-D densities (CNF), spirals (latent ODE), copy memory (sequence models).

All generators are deterministic given their seed; the train and test splits use different,
independent streams (``numpy.random.default_rng([seed, split_index])``, except copy memory, which
keeps the TCN/SIM seeding scheme). Sizes are arguments; the defaults depend on the profile
(``smoke``: seconds on a CPU; ``paper``: the sizes of the official code or torchdiffeq example).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from deqode.choices import check_choice

SPLIT_INDEX = {"train": 0, "test": 1}


def split_rng(seed: int, split: str) -> np.random.Generator:
    """The independent random stream of ``split`` for ``seed``."""
    return np.random.default_rng([int(seed), SPLIT_INDEX[split]])


class TensorPairDataset(Dataset):
    """Inputs and targets held as tensors; item ``i`` is ``(inputs[i], targets[i])``."""

    def __init__(self, inputs: torch.Tensor, targets: torch.Tensor) -> None:
        if len(inputs) != len(targets):
            raise ValueError(f"{len(inputs)} inputs but {len(targets)} targets")
        self.inputs = inputs
        self.targets = targets

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int):
        return self.inputs[index], self.targets[index]


# ---------------------------------------------------------------------------------------------
# 2-D densities for continuous normalizing flows (the Nesterov chapter's density task, after
# torchdiffeq examples/cnf.py)

DENSITY_NAMES = ("circles", "two-moons", "8gaussians", "pinwheel", "checkerboard")
DENSITY_DESCRIPTIONS = {
    "circles": "sklearn make_circles(noise=0.06, factor=0.5): radii 1 and 0.5 (torchdiffeq "
    "examples/cnf.py); component 0 outer, 1 inner",
    "two-moons": "sklearn make_moons(noise=0.05) shifted by (-0.5, -0.25) into [-1.5, 1.5]^2; "
    "component = moon",
    "8gaussians": "8 Gaussians, std 0.1, centred on the unit circle at angles k*pi/4; "
    "component = k",
    "pinwheel": "5 arms: radial 1 + 0.3 e1, tangential 0.1 e2, rotated by 2*pi*k/5 + "
    "0.25*exp(radial), scaled by 0.6; component = arm",
    "checkerboard": "uniform on the 8 dark cells of a 4x4 board tiling [-1.5, 1.5]^2; "
    "component = cell",
}
DENSITY_SIZES = {
    "smoke": {"train": 2048, "test": 512},
    "cpu": {"train": 2048, "test": 512},
    "paper": {"train": 512_000, "test": 30_000},
}


def sample_2d_density(
    name: str, n: int, rng: np.random.Generator | int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points of a 2-D density and their generating component.

    Returns ``(points, component)``: float32 ``(n, 2)`` and int64 ``(n,)``. All densities lie
    essentially inside [-1.5, 1.5]^2, the plotting window of torchdiffeq's CNF example. Use a
    fresh ``rng`` per call for the "new batch every iteration" protocol of that example.
    """
    check_choice("2-D density", name, DENSITY_NAMES)
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    rng = np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng
    if name in ("circles", "two-moons"):
        from sklearn.datasets import make_circles, make_moons

        state = int(rng.integers(2**31 - 1))
        if name == "circles":
            points, comp = make_circles(n_samples=n, noise=0.06, factor=0.5, random_state=state)
        else:
            points, comp = make_moons(n_samples=n, noise=0.05, random_state=state)
            points = points - np.array([0.5, 0.25])
    elif name == "8gaussians":
        comp = rng.integers(8, size=n)
        angle = comp * np.pi / 4
        centres = np.stack([np.cos(angle), np.sin(angle)], axis=1)
        points = centres + 0.1 * rng.standard_normal((n, 2))
    elif name == "pinwheel":
        comp = rng.integers(5, size=n)
        radial = 1.0 + 0.3 * rng.standard_normal(n)
        tangential = 0.1 * rng.standard_normal(n)
        angle = 2 * np.pi * comp / 5 + 0.25 * np.exp(radial)
        cos, sin = np.cos(angle), np.sin(angle)
        rotated = [cos * radial - sin * tangential, sin * radial + cos * tangential]
        points = 0.6 * np.stack(rotated, axis=1)
    else:  # checkerboard: dark cells are those with (row + col) even
        comp = rng.integers(8, size=n)
        row = comp // 2
        col = 2 * (comp % 2) + row % 2
        cell = 0.75
        offset = rng.random((n, 2))
        points = -1.5 + cell * np.stack([col + offset[:, 0], row + offset[:, 1]], axis=1)
    return (
        torch.from_numpy(np.asarray(points, dtype=np.float32)),
        torch.from_numpy(np.asarray(comp, dtype=np.int64)),
    )


def density_dataset(
    name: str, split: str, profile: str, n_samples: int | None = None, seed: int = 0
) -> TensorPairDataset:
    """A fixed sample of a 2-D density: items ``(point (2,), component)``.

    Default sizes: smoke 2048 train / 512 test; paper 512,000 train (= 1000 iterations x 512
    fresh points of the CNF example) / 30,000 test (the example's target panel).
    """
    n = DENSITY_SIZES[profile][split] if n_samples is None else int(n_samples)
    points, comp = sample_2d_density(name, n, split_rng(seed, split))
    return TensorPairDataset(points, comp)


# ---------------------------------------------------------------------------------------------
# Spirals for the latent ODE (torchdiffeq examples/latent_ode.py)

SPIRAL_SIZES = {
    "smoke": {"n_spirals": 64, "n_total": 200, "n_sample": 20},
    "cpu": {"n_spirals": 128, "n_total": 300, "n_sample": 30},
    "paper": {"n_spirals": 1000, "n_total": 1000, "n_sample": 100},
}


class SpiralDataset(Dataset):
    """Noisy windows of two 2-D spirals, the latent-ODE toy of Chen et al. (torchdiffeq example).

    Geometry (as ``generate_spiral2d`` in torchdiffeq's ``examples/latent_ode.py``): on the grid
    ``full_times = linspace(0, stop, n_total)``,

    - counter-clockwise: Archimedean ``r = a + b*theta`` with ``theta = t``, centred at (+5, 0);
    - clockwise: ``theta = stop + 1 - t`` (decreasing) and ``r = a + 50*b/theta``, centred at
      (-5, 0). Note: this is not the Archimedean ``r = a + b*theta`` the example's docstring names;
      we follow the code.

    Each item picks a direction with probability 1/2 and a start index uniformly in
    ``[n_sample, n_total - n_sample)``, and observes the ``n_sample`` consecutive points from
    there with i.i.d. Gaussian noise ``noise_std``. Sampling is regular in time; every window is
    modelled on the shared stamps ``times = full_times[:n_sample]`` (time-invariant dynamics).

    Items: ``(observed (n_sample, 2), clean (n_sample, 2))``. Also: ``times``, ``full_times``,
    ``start_index``, ``clockwise`` and :meth:`trajectory` (the clean full spiral of an item, for
    extrapolation errors).
    """

    def __init__(
        self,
        split: str,
        profile: str,
        n_spirals: int | None = None,
        n_total: int | None = None,
        n_sample: int | None = None,
        noise_std: float = 0.3,
        a: float = 0.0,
        b: float = 0.3,
        stop: float = 6 * np.pi,
        seed: int = 0,
    ) -> None:
        sizes = SPIRAL_SIZES[profile]
        n_spirals = sizes["n_spirals"] if n_spirals is None else int(n_spirals)
        n_total = sizes["n_total"] if n_total is None else int(n_total)
        n_sample = sizes["n_sample"] if n_sample is None else int(n_sample)
        if n_total <= 2 * n_sample:
            raise ValueError(f"spirals need n_total > 2 * n_sample, got {n_total} and {n_sample}")
        full_t = np.linspace(0.0, stop, n_total)
        theta_cc = full_t
        r_cc = a + b * theta_cc
        ccw = np.stack([r_cc * np.cos(theta_cc) + 5.0, r_cc * np.sin(theta_cc)], axis=1)
        theta_cw = stop + 1.0 - full_t
        r_cw = a + 50.0 * b / theta_cw
        cw = np.stack([r_cw * np.cos(theta_cw) - 5.0, r_cw * np.sin(theta_cw)], axis=1)

        rng = split_rng(seed, split)
        start = rng.integers(n_sample, n_total - n_sample, size=n_spirals)
        clockwise = rng.random(n_spirals) <= 0.5
        window = start[:, None] + np.arange(n_sample)[None, :]
        clean = np.where(clockwise[:, None, None], cw[window], ccw[window])
        observed = clean + noise_std * rng.standard_normal(clean.shape)

        self.base = torch.from_numpy(np.stack([ccw, cw]).astype(np.float32))  # (2, n_total, 2)
        self.full_times = torch.from_numpy(full_t.astype(np.float32))
        self.times = self.full_times[:n_sample].clone()
        self.start_index = torch.from_numpy(start.astype(np.int64))
        self.clockwise = torch.from_numpy(clockwise)
        self.observed = torch.from_numpy(observed.astype(np.float32))
        self.clean = torch.from_numpy(clean.astype(np.float32))
        self.noise_std = float(noise_std)

    def trajectory(self, index: int) -> torch.Tensor:
        """The clean full spiral ``(n_total, 2)`` that item ``index`` is a window of."""
        return self.base[int(self.clockwise[index])]

    def __len__(self) -> int:
        return len(self.observed)

    def __getitem__(self, index: int):
        return self.observed[index], self.clean[index]


# ---------------------------------------------------------------------------------------------
# Copy memory (SIM official code `cpmem.sh` / `run_cpmem.py`; the TCN benchmark generator)

COPY_MEMORY_SIZES = {
    "smoke": {"T": 10, "train": 200, "test": 50},
    "cpu": {"T": 10, "train": 1000, "test": 200},
    "paper": {"T": 500, "train": 5000, "test": 500},
}


def copy_memory_dataset(
    split: str,
    profile: str,
    T: int | None = None,
    n_samples: int | None = None,
    seed: int | None = None,
) -> TensorPairDataset:
    """The copy-memory task of the TCN benchmark, as SIM generates it.

    Input (length ``T + 20``): 10 digits drawn uniformly from 1..8, then ``T - 1`` zeros, then 11
    markers 9. Target: ``T + 10`` zeros, then the 10 digits. Items: input float32 ``(1, T + 20)``
    (one channel for a 1-D convolution, as the TCN feeds it) and target int64 ``(T + 20,)``;
    10 classes (targets only use 0..8, as in TCN).

    Seeds follow SIM: ``numpy.random.RandomState(base + 100)`` for train and ``base + 200`` for
    test, with ``base = 1111 + T`` (1711 / 1811 for T = 500) unless ``seed`` replaces ``base``.
    Sizes: smoke T = 10, 200 / 50; paper T = 500, 5000 (train + validation) / 500.
    """
    sizes = COPY_MEMORY_SIZES[profile]
    T = sizes["T"] if T is None else int(T)
    if T < 1:
        raise ValueError(f"copy memory needs T >= 1, got {T}")
    n = sizes[split] if n_samples is None else int(n_samples)
    base = 1111 + T if seed is None else int(seed)
    rng = np.random.RandomState(base + (100 if split == "train" else 200))
    digits = rng.randint(1, 9, size=(n, 10))
    inputs = np.concatenate(
        [digits, np.zeros((n, T - 1), dtype=digits.dtype), np.full((n, 11), 9)], axis=1
    )
    targets = np.concatenate([np.zeros((n, T + 10), dtype=digits.dtype), digits], axis=1)
    return TensorPairDataset(
        torch.from_numpy(inputs.astype(np.float32))[:, None, :],
        torch.from_numpy(targets.astype(np.int64)),
    )
