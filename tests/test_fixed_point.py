"""Fixed-point solvers: closed-form answers of affine maps, flags on failure, argument checks."""

from __future__ import annotations

import math

import pytest
import torch

from deqode.choices import UnknownChoiceError
from deqode.solvers import SolverInfo, fixed_point

F64 = torch.float64
METHODS = ("picard", "anderson", "broyden")


def affine(a: torch.Tensor, b: torch.Tensor):
    """``f(z) = A_s z + b_s`` per sample ``s`` and its fixed points ``(I - A_s)^{-1} b_s``."""
    eye = torch.eye(a.shape[-1], dtype=a.dtype)
    return (
        lambda z: torch.einsum("sij,sj->si", a, z) + b,
        torch.linalg.solve(eye - a, b),
    )


def scaled(batch: int, dim: int, norms: list[float], seed: int = 0) -> torch.Tensor:
    """Random non-symmetric matrices with the given spectral norms."""
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(batch, dim, dim, generator=gen, dtype=F64)
    return (
        a
        / torch.linalg.matrix_norm(a, 2)[:, None, None]
        * torch.tensor(norms, dtype=F64)[:, None, None]
    )


def slow_contraction(dim: int = 20, top: float = 0.97) -> torch.Tensor:
    """A symmetric map whose eigenvalues spread over [-top, top]: Picard contracts at rate top."""
    gen = torch.Generator().manual_seed(1)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=F64))
    return (q * torch.linspace(-top, top, dim, dtype=F64)) @ q.T


@pytest.mark.parametrize("method", METHODS)
def test_batched_affine_map_reaches_closed_form(method: str) -> None:
    a = scaled(3, 10, [0.3, 0.5, 0.6])
    b = torch.randn(3, 10, generator=torch.Generator().manual_seed(2), dtype=F64)
    f, z_exact = affine(a, b)
    z, info = fixed_point(f, torch.zeros_like(b), method, tol=1e-13, max_iter=300, stop_mode="abs")
    assert info.converged and not info.diverged
    assert (z - z_exact).abs().max() < 1e-10
    assert z.dtype == F64 and z.shape == b.shape
    assert len(info.residuals) == info.iterations + 1 == info.nfe
    assert info.residuals is info.abs_residuals and info.method == method
    assert info.final_residual <= 1e-13 and info.best_iteration == info.iterations


@pytest.mark.parametrize("method", ["anderson", "broyden"])
def test_quasi_newton_methods_beat_picard_on_slow_contraction(method: str) -> None:
    a = slow_contraction()[None]
    b = torch.ones(1, 20, dtype=F64)
    f, z_exact = affine(a, b)
    kwargs = dict(tol=1e-11, max_iter=2000, stop_mode="abs")
    _, picard = fixed_point(f, torch.zeros_like(b), "picard", **kwargs)
    z, fast = fixed_point(f, torch.zeros_like(b), method, **kwargs)
    assert picard.converged and fast.converged
    assert (z - z_exact).abs().max() < 1e-9
    # Picard needs about log(1e-11)/log(0.97) ≈ 830 steps; Broyden/Anderson a small multiple of dim
    assert picard.iterations > 600
    assert 4 * fast.iterations < picard.iterations


@pytest.mark.parametrize("method", ["anderson", "broyden"])
def test_quasi_newton_finds_a_repelling_fixed_point(method: str) -> None:
    """``z -> 2 z + b`` repels Picard, but its root ``z* = -b`` is found by secant methods."""
    b = torch.tensor([[1.0, -2.0, 0.5]], dtype=F64)
    z, info = fixed_point(
        lambda z: 2 * z + b, torch.zeros_like(b), method, tol=1e-12, stop_mode="abs", max_iter=100
    )
    assert info.converged and (z + b).abs().max() < 1e-10


def test_picard_on_expanding_map_flags_and_returns_best_iterate() -> None:
    b = torch.ones(2, 4, dtype=F64)
    z0 = torch.full_like(b, 0.5)
    z, info = fixed_point(lambda z: 2 * z + b, z0, "picard", tol=1e-8, max_iter=30, stop_mode="abs")
    assert not info.converged and not info.diverged
    assert info.abs_residuals[-1] > 1e6 * info.abs_residuals[0]
    assert torch.equal(z, z0) and info.best_iteration == 0
    assert info.final_residual == info.residuals[0]


def test_best_iterate_is_chosen_per_sample() -> None:
    """Sample 0 contracts, sample 1 expands: each keeps its own best iterate."""
    eye = torch.eye(3, dtype=F64)
    a = torch.stack([0.5 * eye, 2.0 * eye])
    b = torch.ones(2, 3, dtype=F64)
    _, z_exact = affine(a[:1], b[:1])
    z, info = fixed_point(
        lambda z: torch.einsum("sij,sj->si", a, z) + b,
        torch.zeros_like(b),
        "picard",
        tol=1e-10,
        max_iter=40,
        stop_mode="abs",
    )
    assert (z[0] - z_exact[0]).abs().max() < 1e-10
    assert torch.equal(z[1], torch.zeros(3, dtype=F64))
    assert info.final_residual == pytest.approx(math.sqrt(3))  # ||f(0) - 0|| of sample 1
    assert not info.converged


@pytest.mark.parametrize("method", METHODS)
def test_map_without_fixed_point_does_not_raise(method: str) -> None:
    z, info = fixed_point(lambda z: z + 1.0, torch.zeros(2, 3, dtype=F64), method, max_iter=20)
    assert not info.converged and torch.isfinite(z).all()
    assert info.final_residual == pytest.approx(min(info.residuals))


@pytest.mark.parametrize("method", METHODS)
def test_nan_producing_map_is_flagged_diverged(method: str) -> None:
    """``sqrt(z) - 2`` from z0 = 1 gives f(1) = -1, then sqrt(-1) = NaN."""
    z0 = torch.ones(2, 3, dtype=F64)
    z, info = fixed_point(lambda z: torch.sqrt(z) - 2.0, z0, method, max_iter=20)
    assert info.diverged and not info.converged
    assert torch.isfinite(z).all() and info.final_residual == pytest.approx(info.residuals[0])
    assert info.iterations < 20


@pytest.mark.parametrize("method", METHODS)
def test_sample_already_at_its_fixed_point(method: str) -> None:
    """A zero residual (degenerate Anderson/Broyden systems) must not produce NaNs."""
    b = torch.tensor([[0.0, 0.0], [1.0, 2.0]], dtype=F64)
    z, info = fixed_point(
        lambda z: 0.5 * z + b, torch.zeros_like(b), method, tol=1e-12, stop_mode="abs", max_iter=100
    )
    assert info.converged and torch.allclose(z, 2 * b, atol=1e-11, rtol=0)


def test_residual_definitions() -> None:
    b = torch.tensor([[3.0, 4.0], [0.0, 1.0]], dtype=F64)
    _, info = fixed_point(lambda z: b.clone(), torch.zeros_like(b), "picard", tol=1e-12)
    assert info.abs_residuals[0] == pytest.approx(5.0)
    assert info.rel_residuals[0] == pytest.approx(5.0 / (5.0 + 1e-9))
    assert info.residuals is info.rel_residuals
    assert info.converged and info.iterations == 1 and info.final_residual == 0.0


@pytest.mark.parametrize("shape", [(5,), (), (2, 3, 4, 4)])
@pytest.mark.parametrize("method", METHODS)
def test_shapes_are_preserved(method: str, shape: tuple[int, ...]) -> None:
    b = torch.linspace(-1, 1, math.prod(shape), dtype=F64).reshape(shape)
    z, info = fixed_point(
        lambda z: 0.5 * torch.tanh(z) + b, torch.zeros_like(b), method, tol=1e-12, max_iter=100
    )
    assert z.shape == b.shape and info.converged
    assert torch.allclose(z, 0.5 * torch.tanh(z) + b, atol=1e-11, rtol=0)


def test_no_graph_and_float32() -> None:
    w = torch.tensor(0.5, requires_grad=True)
    z, info = fixed_point(lambda z: w * z + 1.0, torch.zeros(4, 2), "anderson", tol=1e-5)
    assert not z.requires_grad and z.dtype == torch.float32 and info.converged
    assert torch.allclose(z, torch.full_like(z, 2.0), atol=1e-4)


@pytest.mark.parametrize("method", ["anderson", "picard"])
def test_options_change_the_iteration(method: str) -> None:
    b = torch.ones(1, 3, dtype=F64)
    f = lambda z: 0.5 * z + b  # noqa: E731
    base = fixed_point(f, torch.zeros_like(b), method, tol=1e-10, max_iter=200)[1]
    damped = fixed_point(f, torch.zeros_like(b), method, tol=1e-10, max_iter=200, beta=0.5)[1]
    assert damped.converged and damped.iterations > base.iterations


def test_broyden_line_search_and_small_memory() -> None:
    a = slow_contraction(dim=10, top=0.9)[None]
    b = torch.ones(1, 10, dtype=F64)
    f, z_exact = affine(a, b)
    for opts in ({"line_search": True}, {"m": 3}):  # m=3: restarts of the memory
        z, info = fixed_point(
            f, torch.zeros_like(b), tol=1e-12, stop_mode="abs", max_iter=300, **opts
        )
        assert info.converged and (z - z_exact).abs().max() < 1e-10


def test_bad_arguments_name_the_valid_choices() -> None:
    z0 = torch.zeros(2, 2)
    with pytest.raises(UnknownChoiceError, match="'picard', 'anderson', 'broyden'"):
        fixed_point(lambda z: z, z0, method="newton")
    with pytest.raises(UnknownChoiceError, match="'m', 'lam', 'beta'"):
        fixed_point(lambda z: z, z0, method="anderson", memory=3)
    with pytest.raises(UnknownChoiceError, match="'beta'"):
        fixed_point(lambda z: z, z0, method="picard", m=3)
    with pytest.raises(UnknownChoiceError, match="'abs', 'rel'"):
        fixed_point(lambda z: z, z0, stop_mode="max")
    with pytest.raises(ValueError, match="f returned shape"):
        fixed_point(lambda z: z[:1], z0)
    assert isinstance(fixed_point(lambda z: z, z0)[1], SolverInfo)
