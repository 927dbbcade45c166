"""The training loop's gradient norm: the C sum of squares (CPU) against torch's foreach norm."""

from __future__ import annotations

import math
import os
import shutil

import pytest
import torch
from torch import nn

from deqode import native
from deqode.train import gradient_norm

needs_compiler = pytest.mark.skipif(shutil.which(os.environ.get("CC", "cc")) is None,
                                    reason="no C compiler")


def _grads(dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.GroupNorm(2, 8), nn.Flatten(), nn.Linear(8, 5))
    return [torch.randn(p.shape, generator=gen, dtype=dtype) * (i + 1)
            for i, p in enumerate(model.parameters())]


@needs_compiler
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_c_norm_is_torchs_norm_to_rounding(dtype):
    """Relative to the exact (float64) norm, over 50 seeds: ours at most 2.1e-16 (it sums in
    double); torch's 9.4e-8 in float32 (it rounds its per-tensor norms in float32), 2.1e-16 in
    float64. The bounds are a few times those."""
    assert gradient_norm.native_available()
    grads = _grads(dtype)
    exact = float(torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads]).double()))
    ours, torchs = gradient_norm.total_norm(grads), gradient_norm.torch_norm(grads)
    assert abs(ours - exact) <= 1e-15 * exact
    assert abs(torchs - exact) <= (4e-7 if dtype == torch.float32 else 1e-15) * exact


@needs_compiler
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_gradient_gives_a_non_finite_norm(bad):
    grads = _grads(torch.float32)
    grads[1][3] = bad
    assert not math.isfinite(gradient_norm.total_norm(grads))


def test_torchs_reduction_where_the_c_loop_does_not_apply(monkeypatch):
    """Non-contiguous gradients, another dtype, or the C loops switched off: torch's value."""
    calls = []
    monkeypatch.setattr(gradient_norm, "torch_norm",
                        lambda grads: calls.append(1) or float(torch.zeros(())))
    grads = _grads(torch.float32)
    gradient_norm.total_norm([grads[0].transpose(0, 1), *grads[1:]])
    gradient_norm.total_norm([g.half() for g in grads])
    assert len(calls) == 2
    monkeypatch.setattr(gradient_norm, "_state", {})
    monkeypatch.setenv(native.ENV_SWITCH, "0")
    gradient_norm.total_norm(grads)
    assert len(calls) == 3 and gradient_norm.total_norm([]) == 0.0


@needs_compiler
def test_the_first_use_check_rejects_a_wrong_sum(monkeypatch, tmp_path):
    """A loop that drops the last element of every buffer fails the check; torch is used."""
    monkeypatch.setattr(native, "_cache", {})
    monkeypatch.setattr(gradient_norm, "_state", {})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(native, "SOURCE", native.SOURCE.replace(
        "double v = x[i];", "double v = i + 1 < n ? x[i] : 0.0;"))
    with pytest.warns(RuntimeWarning, match="does not match torch's"):
        assert not gradient_norm.native_available()
