"""The fused Nesterov kernel against the torch calls it replaces, and its self-check.

The kernel (``deqode.solvers.nesterov_kernel``) must give the bits of
:func:`~deqode.solvers.nesterov_kernel.reference_step` (the solver's own torch calls). On first
use it checks that on random states and refuses itself if a bit differs; these tests check the
same on other seeds, sizes and scalars, and that the self-check rejects a kernel that rounds
once more or once less than torch does.
"""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from deqode import native
from deqode.solvers import nesterov_kernel

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None,
                                 reason="no C compiler")]


@pytest.fixture
def fresh_kernel(monkeypatch, tmp_path):
    """A kernel state of its own, built into ``tmp_path`` (the process's kernel is restored)."""
    monkeypatch.setattr(nesterov_kernel, "_state", {})
    monkeypatch.setattr(native, "_cache", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path


def _run(dtype, n, shifted, ahead, seed):
    gen = torch.Generator().manual_seed(seed)
    y, u, f = (torch.randn(n, generator=gen, dtype=dtype) * s for s in (2.0, 0.5, 4.0))
    grid = torch.linspace(0.0, 3.0, 61, dtype=dtype)
    steps = grid[1:] - grid[:-1]
    beta, c = 0.7, 0.3
    scalars = dict(ch=c * steps[9], bh=beta * steps[0],
                   phi=beta * (steps[9] - steps[0]) if shifted else None,
                   phi_next=beta * (steps[10] - steps[0]) if ahead else None)
    want = nesterov_kernel.reference_step(y, u, f, beta, c, **scalars)
    u_out, y_out = torch.empty_like(u), torch.empty_like(y)
    ahead_out = torch.empty_like(y) if ahead else None
    floats = {k: None if v is None else v.item() for k, v in scalars.items()}
    nesterov_kernel.step(y, u, f, u_out, y_out, ahead_out, beta, c, floats["ch"],
                         floats["phi"], floats["bh"], floats["phi_next"])
    return (u_out, y_out, ahead_out), want


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [3, 64, 1000, 100_003])
def test_the_kernel_gives_torchs_bits(dtype, n):
    assert nesterov_kernel.available()
    for shifted, ahead in ((False, False), (True, False), (False, True), (True, True)):
        got, want = _run(dtype, n, shifted, ahead, seed=n + shifted + 2 * ahead)
        for a, b in zip(got, want, strict=True):
            assert (a is None and b is None) or torch.equal(a, b)


def test_the_kernel_updates_the_velocity_in_place():
    assert nesterov_kernel.available()
    gen = torch.Generator().manual_seed(1)
    y, u, f = (torch.randn(999, generator=gen) for _ in range(3))
    want_u, want_y, _ = nesterov_kernel.reference_step(y, u, f, 0.5, 0.5, torch.tensor(0.1),
                                                       None, torch.tensor(0.05), None)
    y_out = torch.empty_like(y)
    nesterov_kernel.step(y, u, f, u, y_out, None, 0.5, 0.5, 0.1, None, 0.05, None)
    assert torch.equal(u, want_u) and torch.equal(y_out, want_y)


@pytest.mark.parametrize("change", [
    ("d = FMA(un, bh, d);", "d = un * bh + d;"),  # two roundings where torch's addcmul has one
    ("if (shift) d = ui * phi + d;", "if (shift) d = FMA(ui, phi, d);"),  # one where torch has two
])
def test_the_self_check_rejects_other_roundings(fresh_kernel, monkeypatch, change):
    monkeypatch.setattr(native, "SOURCE", native.SOURCE.replace(*change))
    with pytest.warns(RuntimeWarning, match="does not reproduce torch's bits"):
        assert not nesterov_kernel.available()
    assert not nesterov_kernel.usable(torch.zeros(8), torch.zeros(8))


def test_the_kernel_is_built_once_and_cached(fresh_kernel):
    assert nesterov_kernel.available()
    built = list(native.cache_dir().glob("deqode_*.so"))
    assert len(built) == 1 and native.cache_dir().is_relative_to(fresh_kernel)
    nesterov_kernel._state.clear()
    native._cache.clear()
    assert nesterov_kernel.available()
    assert list(native.cache_dir().glob("deqode_*.so")) == built


def test_the_switch_turns_it_off(fresh_kernel, monkeypatch):
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    assert not nesterov_kernel.available()
    assert not list(fresh_kernel.glob("**/*.so"))


def test_usable_only_where_torch_would_use_one_thread(monkeypatch):
    assert nesterov_kernel.available()
    small, large = torch.zeros(1000), torch.zeros(nesterov_kernel.PARALLEL_GRAIN + 1)
    with torch.no_grad():
        assert nesterov_kernel.usable(small, small) and nesterov_kernel.usable(large, large)
        assert not nesterov_kernel.usable(small, torch.zeros(1000, dtype=torch.float64))
        assert not nesterov_kernel.usable(torch.zeros(10, 2).t(), torch.zeros(2, 10))
        monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
        assert nesterov_kernel.usable(small, small) and not nesterov_kernel.usable(large, large)
    assert not nesterov_kernel.usable(small, small)  # autograd on


def test_overlaps():
    x = torch.zeros(10)
    assert nesterov_kernel.overlaps(x[2:6], x[5:9]) and not nesterov_kernel.overlaps(x[:5],
                                                                                      x[5:])


def test_a_damaged_cached_library_is_dropped_with_a_warning(fresh_kernel, monkeypatch):
    monkeypatch.setattr(native, "SOURCE", native.SOURCE + "/* a library of its own */\n")
    target = native.library_path()
    target.parent.mkdir(parents=True)
    target.write_bytes(b"not a shared library")
    with pytest.warns(RuntimeWarning, match="did not load"):
        assert native.library() is None
    assert not target.exists()
    native._cache.clear()
    assert native.library() is not None and target.exists()  # built again
