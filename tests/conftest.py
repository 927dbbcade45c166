"""Test-wide settings: DEQODE_THREADS (set by `make unit`) fixes torch's CPU threads per worker."""

import os

import pytest
import torch

if os.environ.get("DEQODE_THREADS"):
    torch.set_num_threads(int(os.environ["DEQODE_THREADS"]))


@pytest.fixture(scope="module")
def one_torch_thread():
    """One intra-op thread for a module of tiny-tensor tests (faster, and steadier on a shared
    2-core machine); the previous count is restored afterwards. Use it with
    ``pytestmark = pytest.mark.usefixtures("one_torch_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
