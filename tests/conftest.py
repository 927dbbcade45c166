"""Test-wide settings: DEQODE_THREADS (set by `make unit`) fixes torch's CPU threads per worker."""

import os

import torch

if os.environ.get("DEQODE_THREADS"):
    torch.set_num_threads(int(os.environ["DEQODE_THREADS"]))
