"""GMRES, the adjoint solve and the implicit (IFT) gradient against direct solves and unrolling;
the shared entry of the DEQ-like models and the NFE protocol."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from deqode import metrics
from deqode.choices import UnknownChoiceError
from deqode.errors import SolverFailure
from deqode.models.nfe import CountsNFE
from deqode.solvers import (
    SolverInfo,
    fixed_point,
    gmres,
    implicit_fixed_point,
    solve_adjoint,
    solve_equilibrium,
)
from deqode.solvers.implicit import ADJOINT_METHODS

F64 = torch.float64


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).norm() / b.norm()).item()


def batched_matvec(a: torch.Tensor):
    return lambda x: torch.einsum("sij,sj->si", a, x.reshape(a.shape[0], -1)).reshape(x.shape)


@pytest.mark.parametrize("restart", [None, 5, 40])
def test_gmres_matches_direct_solve(restart: int | None) -> None:
    """Random non-symmetric, well-conditioned systems, one per sample, trailing shape (2, 4, 5)."""
    batch, n = 4, 40
    noise = torch.randn(batch, n, n, generator=gen(0), dtype=F64)
    a = torch.eye(n, dtype=F64) + 0.4 * noise / n**0.5
    b = torch.randn(batch, 2, 4, 5, generator=gen(1), dtype=F64)
    x, info = gmres(batched_matvec(a), b, tol=1e-13, max_iter=200, restart=restart)
    x_exact = torch.linalg.solve(a, b.reshape(batch, n)).reshape(b.shape)
    assert x.shape == b.shape and info.converged and rel_err(x, x_exact) < 1e-10
    assert info.final_residual <= 1e-13 and info.method == "gmres"
    assert info.nfe >= info.iterations and info.residuals is info.rel_residuals


def test_full_gmres_solves_harder_system_within_dimension_steps() -> None:
    batch, n = 3, 30
    a = torch.randn(batch, n, n, generator=gen(2), dtype=F64) + 6 * torch.eye(n, dtype=F64)
    b = torch.randn(batch, n, generator=gen(3), dtype=F64)
    x0 = torch.randn(batch, n, generator=gen(4), dtype=F64)
    x, info = gmres(batched_matvec(a), b, x0=x0, tol=1e-12, restart=n)
    assert info.converged and info.iterations <= n
    assert rel_err(x, torch.linalg.solve(a, b)) < 1e-10


def test_gmres_zero_rhs_sample_unbatched_and_cap() -> None:
    a = torch.eye(6, dtype=F64)[None].repeat(2, 1, 1) + 0.1 * torch.randn(
        2, 6, 6, generator=gen(5), dtype=F64
    )
    b = torch.stack([torch.zeros(6, dtype=F64), torch.ones(6, dtype=F64)])
    x, info = gmres(batched_matvec(a), b, tol=1e-12)
    assert info.converged and torch.equal(x[0], torch.zeros(6, dtype=F64))
    x1, _ = gmres(lambda v: a[1] @ v, b[1], tol=1e-12)  # 1-D: one system
    assert x1.shape == (6,) and torch.allclose(x1, x[1], atol=1e-12)
    _, capped = gmres(batched_matvec(a), b, tol=1e-15, max_iter=2)
    assert not capped.converged and capped.iterations == 2


@pytest.mark.parametrize("method", ADJOINT_METHODS)
def test_solve_adjoint_matches_direct_solve(method: str) -> None:
    """``u = u^T J + g`` per sample, i.e. ``(I - J^T) u = g``, with ``||J||_2 = 0.8``."""
    batch, n = 3, 12
    jac = torch.randn(batch, n, n, generator=gen(6), dtype=F64)
    jac = 0.8 * jac / torch.linalg.matrix_norm(jac, 2)[:, None, None]
    grad = torch.randn(batch, n, generator=gen(7), dtype=F64)
    u, info = solve_adjoint(
        lambda u: torch.einsum("si,sij->sj", u, jac), grad, method, tol=1e-13, max_iter=400
    )
    u_exact = torch.linalg.solve(torch.eye(n, dtype=F64) - jac.transpose(1, 2), grad)
    assert info.converged and rel_err(u, u_exact) < 1e-10


class TanhEquilibrium:
    """``f(z) = tanh(W z + U x)`` with ``||W||_2 = 0.9``, a contraction in z."""

    def __init__(self, dim: int = 8, in_dim: int = 5, batch: int = 4) -> None:
        w = torch.randn(dim, dim, generator=gen(8), dtype=F64)
        self.w = (0.9 * w / torch.linalg.matrix_norm(w, 2)).requires_grad_()
        self.u = torch.randn(dim, in_dim, generator=gen(9), dtype=F64).requires_grad_()
        self.x = torch.randn(batch, in_dim, generator=gen(10), dtype=F64).requires_grad_()
        self.target = torch.randn(batch, dim, generator=gen(11), dtype=F64)
        self.leaves = (self.w, self.u, self.x)

    def f(self, z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(z @ self.w.T + self.x @ self.u.T)

    def loss(self, z: torch.Tensor) -> torch.Tensor:
        return ((z - self.target) ** 2).sum() + z.sin().sum()

    def unrolled_grads(self, steps: int = 400) -> tuple[torch.Tensor, ...]:
        """Autograd through ``steps`` Picard iterations from 0 (0.9^400 ≈ 5e-19)."""
        z = torch.zeros_like(self.target)
        for _ in range(steps):
            z = self.f(z)
        return torch.autograd.grad(self.loss(z), self.leaves)

    def implicit_grads(self, **kwargs) -> tuple[torch.Tensor, ...]:
        z_star, info = fixed_point(
            self.f, torch.zeros_like(self.target), tol=1e-14, stop_mode="abs", max_iter=200
        )
        assert info.converged
        z = implicit_fixed_point(self.f, z_star, **kwargs)
        return torch.autograd.grad(self.loss(z), self.leaves)


@pytest.mark.parametrize("solver", ADJOINT_METHODS)
def test_ift_gradient_equals_unrolled_autograd(solver: str) -> None:
    problem = TanhEquilibrium()
    stats: dict[str, object] = {}
    implicit = problem.implicit_grads(solver=solver, tol=1e-12, max_iter=500, stats=stats)
    for got, want in zip(implicit, problem.unrolled_grads(), strict=True):
        assert rel_err(got, want) < 1e-6
    assert stats["backward_info"].converged and stats["backward_nfe"] > 0
    assert stats["backward_iterations"] == stats["backward_info"].iterations


def test_one_step_gradient_differs_from_ift() -> None:
    problem = TanhEquilibrium()
    one_step = problem.implicit_grads(backward="one_step")
    exact = problem.unrolled_grads()
    assert all(rel_err(got, want) > 0.05 for got, want in zip(one_step, exact, strict=True))


def test_ift_gradient_conv_shaped_state() -> None:
    """``f(z) = tanh(conv(z) + x)`` on (B, C, H, W); sum |K| = 0.8 makes f contract."""
    kernel = torch.randn(3, 3, 3, 3, generator=gen(12), dtype=F64)
    kernel = (0.8 * kernel / kernel.abs().sum()).requires_grad_()
    x = torch.randn(2, 3, 5, 5, generator=gen(13), dtype=F64).requires_grad_()

    def f(z: torch.Tensor) -> torch.Tensor:
        return torch.tanh(F.conv2d(z, kernel, padding=1) + x)

    def loss(z: torch.Tensor) -> torch.Tensor:
        return (z * torch.linspace(-1, 1, z.numel(), dtype=F64).reshape(z.shape)).sum()

    z = torch.zeros_like(x)
    for _ in range(200):
        z = f(z)
    want = torch.autograd.grad(loss(z), (kernel, x))
    z_star, info = fixed_point(
        f, torch.zeros_like(x), "anderson", tol=1e-14, stop_mode="abs", max_iter=200
    )
    assert info.converged
    got = torch.autograd.grad(loss(implicit_fixed_point(f, z_star, tol=1e-12)), (kernel, x))
    for g, w in zip(got, want, strict=True):
        assert rel_err(g, w) < 1e-6


def test_no_grad_and_bad_arguments() -> None:
    problem = TanhEquilibrium()
    z_star = torch.zeros_like(problem.target)
    with torch.no_grad():
        assert not implicit_fixed_point(problem.f, z_star).requires_grad
    with pytest.raises(UnknownChoiceError, match="'ift', 'one_step'"):
        implicit_fixed_point(problem.f, z_star, backward="phantom")
    with pytest.raises(UnknownChoiceError, match="'gmres', 'picard', 'anderson', 'broyden'"):
        implicit_fixed_point(problem.f, z_star, solver="cg")
    with pytest.raises(UnknownChoiceError, match="'x0', 'restart'"):
        implicit_fixed_point(problem.f, z_star, m=5)
    with pytest.raises(UnknownChoiceError, match="'stop_mode', 'm', 'lam', 'beta'"):
        solve_adjoint(lambda u: u, torch.ones(2, 2), "anderson", memory=5)


# --------------------------------------------------------------------------------------------------
# the shared entry of the DEQ-like models
# --------------------------------------------------------------------------------------------------


def test_solve_equilibrium_is_fixed_point_then_implicit_fixed_point() -> None:
    """Same iterate, same gradient and the evaluation count of the two calls it stands for."""
    problem = TanhEquilibrium()
    z0 = torch.zeros_like(problem.target)
    eq = solve_equilibrium(problem.f, z0, "tanh", solver="anderson", tol=1e-10, max_iter=200,
                           backward_tol=1e-12)
    z_star, info = fixed_point(problem.f, z0, "anderson", 1e-10, 200)
    assert torch.equal(eq.z_star, z_star) and eq.info.nfe == info.nfe
    assert eq.evaluations == info.nfe + 2  # + the output and the VJP graph applications
    want = torch.autograd.grad(problem.loss(implicit_fixed_point(problem.f, z_star, tol=1e-12)),
                               problem.leaves)
    got = torch.autograd.grad(problem.loss(eq.z), problem.leaves)
    for g, w in zip(got, want, strict=True):
        assert torch.equal(g, w)
    assert eq.backward_nfe == eq.backward["backward_info"].nfe > 0


def test_solve_equilibrium_failures_and_custom_backward() -> None:
    problem = TanhEquilibrium()
    z0 = torch.zeros_like(problem.target)
    seen: list[SolverInfo] = []
    with pytest.raises(SolverFailure, match="did not reach tol"):
        solve_equilibrium(problem.f, z0, "tanh", solver="picard", tol=1e-12, max_iter=3,
                          require_convergence=True, on_solve=seen.append)
    assert len(seen) == 1 and seen[0].iterations == 3  # the record of the failed solve is kept
    with pytest.raises(SolverFailure, match="tanh: the picard solve diverged"):
        solve_equilibrium(lambda z: z * float("nan"), z0, "tanh", solver="picard")
    scale = torch.full_like(z0, 3.0)

    def scaled(z_star: torch.Tensor, f) -> torch.Tensor:
        z = f(z_star)
        z.register_hook(lambda grad: grad * scale)
        return z

    eq = solve_equilibrium(problem.f, z0, "tanh", tol=1e-10, max_iter=100, backward=scaled)
    assert eq.evaluations == eq.info.nfe + 1  # one application, no VJP graph
    grad = torch.autograd.grad(eq.z.sum(), problem.x)[0]
    want = torch.autograd.grad(problem.f(eq.z_star).mul(scale).sum(), problem.x)[0]
    assert torch.equal(grad, want)


def test_nfe_protocol_reads_none_for_an_uncounted_backward() -> None:
    class Counted(CountsNFE, torch.nn.Module):
        pass

    class CountedBoth(CountsNFE, torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.nfe_forward, self.nfe_backward = 3, 4

    model, both = Counted(), CountedBoth()
    model.nfe_forward = 5
    assert metrics.read_nfe(model) == (5.0, None)
    assert metrics.read_nfe(both) == (3.0, 4.0)
    metrics.reset_nfe(model)
    metrics.reset_nfe(both)
    assert metrics.read_nfe(model) == (0.0, None) and metrics.read_nfe(both) == (0.0, 0.0)
