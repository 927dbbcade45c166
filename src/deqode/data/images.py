"""Image regression: fit an image from pixel coordinates (SIM, arXiv 2207.07475; uswodce/sim).

One data set is one image. Coordinates are ``linspace(0, 1, S, endpoint=False)`` on both axes,
combined with numpy's default ``'xy'`` meshgrid, so pixel ``(row i, column j)`` has input
``(x_j, y_i)``; targets are RGB in [0, 1]. The splits interleave pixels:
train ``[::2, ::2]``, val ``[::2, 1::2]`` (tuning only), test ``[1::2, 1::2]``; items are
``(coords (2,), rgb (3,))`` in row-major order of the ``(S/2, S/2)`` split grid (``grid_shape``).

Images:

- ``tancik-natural`` / ``tancik-text``: the Fourier-features files of Tancik et al.
  (``data_div2k.npz`` / ``data_2d_text.npz``, key ``test_data``, 16 images of 512x512x3 uint8),
  option ``image`` = 0..15. Paper profile data; files under ``<root>/tancik/``.
- ``sample-china`` / ``sample-flower``: sklearn's bundled sample photographs (427x640), centre
  cropped to a square and resized (bicubic) to ``size`` (smoke stand-in for "natural").
- ``rendered-text``: text drawn with Pillow's bundled font in several colours on white, rendered
  at 512x512 and resized to ``size`` (smoke stand-in for "text"; pixel values depend on the
  Pillow/FreeType version, not on any random draw).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch.utils.data import Dataset

TANCIK_FILES = {"tancik-natural": "data_div2k.npz", "tancik-text": "data_2d_text.npz"}
TANCIK_DRIVE_IDS = {
    "tancik-natural": "1TtwlEDArhOMoH18aUyjIMSZ3WODFmUab",
    "tancik-text": "1V-RQJcMuk9GD4JCUn70o7nwQE0hEzHoT",
}
TANCIK_FOLDER = "tancik"
SPLIT_SLICES = {
    "train": (slice(0, None, 2), slice(0, None, 2)),
    "val": (slice(0, None, 2), slice(1, None, 2)),
    "test": (slice(1, None, 2), slice(1, None, 2)),
}
DEFAULT_SIZE = {"smoke": 64, "cpu": 96, "paper": 512}
_TEXT_LINES = (
    ("deqode", (200, 30, 30)),
    ("z* = f(z*, x)", (20, 90, 200)),
    ("dz/dt = f(z)", (30, 150, 60)),
    ("DEQ ~ ODE", (150, 60, 170)),
)


class PixelRegressionDataset(Dataset):
    """One RGB image as a regression set from pixel coordinates (see the module docstring)."""

    def __init__(self, image: np.ndarray, split: str) -> None:
        if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] != image.shape[1]:
            raise ValueError(f"expected a square (S, S, 3) image, got shape {image.shape}")
        if image.shape[0] % 2:
            raise ValueError(f"the image side must be even for the split grids: {image.shape[0]}")
        side = image.shape[0]
        axis = np.arange(side, dtype=np.float64) / side  # linspace(0, 1, side, endpoint=False)
        grid = np.stack(np.meshgrid(axis, axis, indexing="xy"), axis=-1)  # grid[i, j] = (x_j, y_i)
        rows, cols = SPLIT_SLICES[split]
        coords, rgb = grid[rows, cols], image[rows, cols]
        self.grid_shape = tuple(coords.shape[:2])
        self.image = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        self.inputs = torch.from_numpy(coords.reshape(-1, 2).astype(np.float32))
        self.targets = torch.from_numpy(rgb.reshape(-1, 3).astype(np.float32))

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int):
        return self.inputs[index], self.targets[index]


def _square_resize(image: np.ndarray, size: int | None) -> np.ndarray:
    """Centre-crop a uint8 (H, W, 3) image to a square, resize (bicubic), scale to [0, 1]."""
    h, w = image.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    square = image[top : top + side, left : left + side]
    if size is not None and size != side:
        pil = Image.fromarray(square).resize((size, size), Image.Resampling.BICUBIC)
        square = np.asarray(pil)
    return square.astype(np.float64) / 255.0


def sample_image(name: str, size: int) -> np.ndarray:
    """sklearn's ``china.jpg`` or ``flower.jpg`` as a (size, size, 3) float image in [0, 1]."""
    from sklearn.datasets import load_sample_image

    return _square_resize(load_sample_image(f"{name.removeprefix('sample-')}.jpg"), size)


def rendered_text_image(size: int) -> np.ndarray:
    """Coloured text lines on white, drawn at 512x512 and resized to ``size``."""
    canvas = Image.new("RGB", (512, 512), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=64)
    for k, (text, colour) in enumerate(_TEXT_LINES):
        draw.text((24, 40 + 115 * k), text, fill=colour, font=font)
    return _square_resize(np.asarray(canvas), size)


def tancik_image(path: Path, image: int, size: int | None) -> np.ndarray:
    """Image ``image`` of a Tancik et al. npz file (key ``test_data``), in [0, 1]."""
    with np.load(path) as npz:
        if "test_data" not in npz:
            raise ValueError(f"{path} has no 'test_data' array (keys: {sorted(npz.files)})")
        stack = npz["test_data"]
    if stack.ndim != 4 or stack.shape[-1] != 3:
        raise ValueError(f"{path}: test_data must be (N, H, W, 3), got {stack.shape}")
    if not 0 <= image < len(stack):
        raise ValueError(f"{path}: image must be in 0..{len(stack) - 1}, got {image}")
    picked = np.asarray(stack[image])
    if picked.dtype != np.uint8:
        picked = np.clip(np.rint(picked), 0, 255).astype(np.uint8)
    return _square_resize(picked, size)


def tancik_howto(name: str, folder: Path) -> str:
    """How to get a Tancik et al. file into ``folder`` (Google Drive)."""
    file, drive = TANCIK_FILES[name], TANCIK_DRIVE_IDS[name]
    return (
        f"download it (network needed) with download=True or "
        f"`pip install gdown; gdown --id {drive} -O {folder / file}` "
        f"(https://drive.google.com/uc?id={drive}; the files of Tancik et al., Fourier Features)"
    )


def download_tancik(name: str, folder: Path) -> None:
    """Fetch a Tancik et al. file from Google Drive into ``folder``."""
    from torchvision.datasets.utils import download_file_from_google_drive

    download_file_from_google_drive(TANCIK_DRIVE_IDS[name], str(folder), TANCIK_FILES[name])
