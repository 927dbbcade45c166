"""sklearn's 8x8 digits (bundled with scikit-learn: always offline), the smoke profile's images.

Pixels are the 0..16 counts divided by 16 (range [0, 1]); the split is stratified (20 % test,
seed 0: 1437 train / 360 test images). The ``sim`` recipe standardises with the train split's
pixel mean and std (:func:`sim_preprocessing`), computed on first use.
"""

from __future__ import annotations

from functools import cache, lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

from deqode.data.recipes import Preprocessing

DIGITS_TEST_FRACTION = 0.2
DIGITS_SEED = 0


@lru_cache(maxsize=8)
def _digits_split(seed: int, test_fraction: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)[:, None, :, :]  # (1797, 1, 8, 8) in [0, 1]
    x_tr, x_te, y_tr, y_te = train_test_split(
        images, bunch.target, test_size=test_fraction, stratify=bunch.target, random_state=seed
    )
    return {"train": (x_tr, y_tr.astype(np.int64)), "test": (x_te, y_te.astype(np.int64))}


def digits_train_statistics() -> tuple[float, float]:
    """Pixel mean and std of the default digits train split (seed 0, 20 % test), in [0, 1] units."""
    x, _ = _digits_split(DIGITS_SEED, DIGITS_TEST_FRACTION)["train"]
    return float(x.mean(dtype=np.float64)), float(x.std(dtype=np.float64))


class DigitsDataset(Dataset):
    """sklearn's 8x8 digits as ``(1, 8, 8)`` float32 tensors and int labels.

    Pixels are the 0..16 counts divided by 16 (range [0, 1]), then normalised by the recipe. The
    split is stratified with ``train_test_split(test_size=test_fraction, random_state=seed)``:
    1437 train / 360 test images at the defaults (seed 0, 20 %).
    """

    def __init__(
        self,
        split: str,
        prep: Preprocessing,
        seed: int = DIGITS_SEED,
        test_fraction: float = DIGITS_TEST_FRACTION,
    ) -> None:
        if not 0.0 < test_fraction < 1.0:
            raise ValueError(f"digits: test_fraction must lie in (0, 1), got {test_fraction}")
        x, y = _digits_split(int(seed), float(test_fraction))[split]
        self.images = prep.normalise(torch.from_numpy(x.copy()))
        self.targets = torch.from_numpy(y.copy())
        self.preprocessing = prep

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        return self.images[index], int(self.targets[index])


@cache
def sim_preprocessing() -> Preprocessing:
    """The ``sim`` recipe on digits: standardised with the default train split's statistics."""
    mean, std = digits_train_statistics()
    return Preprocessing("digits", "sim", (mean,), (std,), source=RECIPE_SOURCES["sim"])


#: The recipes on digits: tensors in [0, 1]; none of them augments.
RECIPE_SOURCES = {
    "plain": "pixels / 16, in [0, 1]",
    "homoode": "HomoODE smoke analogue [reconstruction]: pixels in [0, 1]",
    "nag": "Nesterov-solver smoke classification [companion choice]: pixels in [0, 1]",
    "cdeq": "Continuous DEQ smoke analogue (digits-FC / digits-MDEQ) [reconstruction]: "
    "pixels in [0, 1]",
    "sim": "SIM T1 smoke analogue [companion choice]: standardised with the train split's "
    "pixel mean and std",
}
