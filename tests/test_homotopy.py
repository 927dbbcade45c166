"""Homotopy continuation solvers: known answers on linear maps, a circle and a 1-D quadratic."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from deqode.choices import UnknownChoiceError
from deqode.errors import SolverFailure
from deqode.solvers import homotopy
from deqode.solvers.homotopy import (
    CallableHomotopy,
    Homotopy,
    arclength_path,
    batch_jacobian,
    homotopy_path,
    oriented_tangent,
)

DT = torch.float64


@dataclass
class Linear:
    """``f(z) = A z + b`` with ``||A||_2 < 1``; closed-form fixed point ``(I - A)^{-1} b``."""

    A: torch.Tensor
    b: torch.Tensor
    z0: torch.Tensor

    @property
    def eye(self) -> torch.Tensor:
        return torch.eye(self.A.shape[0], dtype=DT)

    @property
    def z_star(self) -> torch.Tensor:
        return torch.linalg.solve(self.eye - self.A, self.b)

    def f(self, z: torch.Tensor) -> torch.Tensor:
        return z @ self.A.T + self.b

    def jac(self, z: torch.Tensor) -> torch.Tensor:
        return self.A.expand(z.shape[0], *self.A.shape)


def linear_problem(n: int = 4, seed: int = 0, norm: float = 0.8) -> Linear:
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(n, n, generator=gen, dtype=DT)
    A = A * norm / torch.linalg.matrix_norm(A, ord=2)
    b = torch.randn(n, generator=gen, dtype=DT)
    return Linear(A, b, torch.randn(n, generator=gen, dtype=DT))


# ------------------------------------------------------------------ λ-parameterised paths


def test_fixed_point_homotopy_follows_the_closed_form_path_on_a_linear_map():
    p = linear_problem()
    path = homotopy_path(p.f, p.z0, "fixed_point", jac=p.jac)  # RK4, 400 steps
    assert path.states.shape == (401, 4) and path.lambdas.shape == (401,)
    assert path.reached_end and path.kind == "fixed_point" and path.param == "lambda"
    # H_fp = z - λ(Az + b) - (1 - λ) z0 = 0  =>  z(λ) = (I - λA)^{-1} (λ b + (1 - λ) z0)
    for lam, z in zip(path.lambdas[::50], path.states[::50], strict=True):
        exact = torch.linalg.solve(p.eye - lam * p.A, lam * p.b + (1 - lam) * p.z0)
        assert torch.allclose(z, exact, atol=1e-12, rtol=0)
    assert torch.allclose(path.end_state, p.z_star, atol=1e-12, rtol=0)
    assert path.end_residual < 1e-12
    assert path.residuals[0] == pytest.approx(float((p.z0 - p.f(p.z0)).norm()))
    assert float(path.path_residuals.max()) < 1e-12
    assert path.nfe == 4 * 400


def test_newton_homotopy_is_a_straight_line_on_a_linear_map():
    p = linear_problem(seed=1)
    path = homotopy_path(p.f, p.z0, "newton", jac=p.jac)
    # g(z) = (I - A) z - b is affine, so z(λ) = z0 - λ (I - A)^{-1} g(z0)
    direction = torch.linalg.solve(p.eye - p.A, p.z0 - p.f(p.z0))
    exact = p.z0 - path.lambdas[:, None] * direction
    assert torch.allclose(path.states, exact, atol=1e-13, rtol=0)
    g0 = float((p.z0 - p.f(p.z0)).norm())
    assert torch.allclose(path.residuals, (1 - path.lambdas) * g0, atol=1e-12, rtol=0)


def test_fig1_field_ends_at_g_equal_z0_and_equals_fixed_point_homotopy_from_zero():
    p = linear_problem(seed=2)
    fig1 = homotopy_path(p.f, p.z0, "fig1", jac=p.jac)
    # conserved z - λ f(z) = z0: the end point solves (I - A) z - b = z0
    assert torch.allclose(fig1.end_state, torch.linalg.solve(p.eye - p.A, p.b + p.z0), atol=1e-12)
    assert fig1.end_residual == pytest.approx(float(p.z0.norm()), abs=1e-12)
    zero = torch.zeros_like(p.z0)
    from_zero = homotopy_path(p.f, zero, "fig1", jac=p.jac)
    fixed = homotopy_path(p.f, zero, "fixed_point", jac=p.jac)
    assert torch.equal(from_zero.states, fixed.states)


def test_autograd_jacobian_matches_the_closed_form_and_gives_the_same_path():
    gen = torch.Generator().manual_seed(3)
    W = 0.5 * torch.randn(3, 3, generator=gen, dtype=DT)
    x = torch.randn(2, 3, generator=gen, dtype=DT)  # a per-sample condition, batch of 2

    def f(z):
        return torch.tanh(z @ W.T + x)

    def jac(z):
        return (1 - torch.tanh(z @ W.T + x) ** 2).unsqueeze(-1) * W

    z = torch.randn(2, 3, generator=gen, dtype=DT)
    assert torch.allclose(batch_jacobian(f, z), jac(z), atol=1e-14)
    closed = homotopy_path(f, z, "fixed_point", steps=20, jac=jac)
    auto = homotopy_path(f, z, "fixed_point", steps=20)
    assert torch.allclose(closed.states, auto.states, atol=1e-13)


def test_batched_paths_equal_the_single_ones():
    p = linear_problem(seed=4)
    starts = torch.stack([p.z0, -p.z0, 2 * p.z0])
    batch = homotopy_path(p.f, starts, "fixed_point", steps=100, jac=p.jac)
    assert batch.states.shape == (101, 3, 4) and batch.residuals.shape == (101, 3)
    for i in range(3):
        single = homotopy_path(p.f, starts[i], "fixed_point", steps=100, jac=p.jac)
        assert torch.allclose(batch.states[:, i], single.states, atol=1e-14)


def test_dopri5_path_reaches_the_fixed_point_and_counts_evaluations():
    p = linear_problem(seed=5)
    path = homotopy_path(p.f, p.z0, "fixed_point", method="dopri5", rtol=1e-10, atol=1e-10,
                         jac=p.jac, n_points=11)
    assert path.states.shape == (11, 4)
    assert path.end_residual < 1e-8
    assert 6 < path.nfe < 1000


def test_a_schedule_reparameterises_without_moving_the_end_point():
    p = linear_problem(seed=6)
    linear = homotopy_path(p.f, p.z0, "fixed_point", jac=p.jac)
    quadratic = homotopy_path(p.f, p.z0, "fixed_point", jac=p.jac, schedule=lambda t: t**2)
    stretched = homotopy_path(p.f, p.z0, "fixed_point", jac=p.jac, t_span=(0.0, 2.0))
    assert torch.allclose(quadratic.end_state, p.z_star, atol=1e-10)
    assert torch.allclose(stretched.end_state, p.z_star, atol=1e-12)
    assert float(stretched.params[-1]) == 2.0 and float(stretched.lambdas[-1]) == 1.0
    assert torch.allclose(quadratic.lambdas, quadratic.params**2)
    assert torch.allclose(linear.end_state, quadratic.end_state, atol=1e-10)


def test_exponential_schedule_of_the_newton_homotopy_decays_like_exp_minus_t():
    p = linear_problem(seed=7)
    T = 3.0
    path = homotopy_path(p.f, p.z0, "newton", jac=p.jac, schedule=lambda t: 1 - torch.exp(-t),
                         t_span=(0.0, T), steps=1200)
    assert not path.reached_end  # λ(T) = 1 - e^{-T} < 1
    ratio = path.residuals / path.residuals[0]
    assert torch.allclose(ratio, torch.exp(-path.params), atol=1e-12)


def test_invalid_arguments_name_the_valid_choices():
    p = linear_problem()
    f, z0 = p.f, p.z0
    with pytest.raises(UnknownChoiceError, match="'fixed_point', 'newton', 'fig1'"):
        homotopy_path(f, z0, kind="secant")
    with pytest.raises(UnknownChoiceError, match="'lambda', 'arclength'"):
        homotopy_path(f, z0, param="time")
    with pytest.raises(UnknownChoiceError, match="'rk4'"):
        homotopy_path(f, z0, method="leapfrog")
    with pytest.raises(UnknownChoiceError, match="'linear'"):
        homotopy_path(f, z0, schedule="cosine")
    with pytest.raises(ValueError, match=r"shape \[n\] or \[B, n\]"):
        homotopy_path(f, z0.reshape(2, 2, 1))


# ------------------------------------------------------------------ arc length


def circle(z, lam):
    """Zero set: the unit circle around (x, λ) = (0, 1/2); from x0 = √0.75 at λ = 0."""
    return z**2 + (lam.unsqueeze(-1) - 0.5) ** 2 - 1.0


def test_arclength_on_a_circle_reaches_lambda_one_after_a_sixth_of_the_circle():
    x0 = torch.tensor([math.sqrt(0.75)], dtype=DT)
    path = arclength_path(circle, x0, s_max=3.0)
    assert path.reached_end
    assert float(path.end_params) == pytest.approx(math.pi / 3, abs=1e-8)  # 60 degrees
    assert float(path.end_state[0]) == pytest.approx(math.sqrt(0.75), abs=1e-8)
    assert float(path.lambdas[-1]) == pytest.approx(1.0, abs=1e-9)
    assert float(path.path_residuals.max()) < 1e-8
    assert path.turning_points == []  # the turning point (λ = 1.5) lies beyond λ = 1


def test_arclength_finds_the_turning_point_and_keeps_the_orientation():
    x0 = torch.tensor([math.sqrt(0.75)], dtype=DT)
    path = arclength_path(circle, x0, s_max=4.0, lam_end=2.0)  # never reached
    assert not path.reached_end and math.isinf(float(path.end_params))
    (turn,) = path.turning_points
    assert turn.s == pytest.approx(2 * math.pi / 3, abs=1e-7)
    assert turn.lam == pytest.approx(1.5, abs=1e-9)
    assert float(turn.z[0]) == pytest.approx(0, abs=1e-7)
    # the tracer kept going round the circle: at s = 4 the angle from the start is 4 rad
    angle = -math.pi / 6 + 4.0
    assert float(path.states[-1, 0]) == pytest.approx(math.cos(angle), abs=1e-7)
    assert float(path.lambdas[-1]) == pytest.approx(0.5 + math.sin(angle), abs=1e-7)
    # continuity: consecutive tangents never flip
    h = CallableHomotopy(circle)
    tangents = torch.stack([
        oriented_tangent(*h.partials(z.reshape(1, 1), lam.reshape(1)))[0]
        for z, lam in zip(path.states, path.lambdas, strict=True)
    ])
    assert float((tangents[1:] * tangents[:-1]).sum(-1).min()) > 0.9


def test_arclength_path_of_the_fixed_point_homotopy_matches_the_lambda_path():
    p = linear_problem(seed=8)
    starts = torch.stack([p.z0, -p.z0])
    arc = homotopy_path(p.f, starts, "fixed_point", param="arclength", jac=p.jac, s_max=12.0,
                        n_points=121)
    assert arc.reached_end and arc.param == "arclength"
    assert torch.allclose(arc.end_state, p.z_star.expand(2, 4), atol=1e-8)
    assert torch.isfinite(arc.end_params).all()
    assert arc.lambdas.shape == (121, 2) and float(arc.lambdas[-1].min()) == pytest.approx(1.0)


class Quadratic(Homotopy):
    """The author's 1-D toy with a = -2 (closed-form partials): turning point at (5 - 2√3)/13."""

    def __call__(self, z, lam):
        lam = lam.unsqueeze(-1)
        return lam * (z**2 - 1) + (1 - lam) * (z + 2)

    def partials(self, z, lam):
        lam = lam.unsqueeze(-1)
        return (2 * lam * z + 1 - lam).unsqueeze(-1), z**2 - z - 3


def test_lambda_integration_fails_at_a_turning_point_with_a_clear_error():
    with pytest.raises(SolverFailure, match=r"furthest t = 0\.118") as err:
        homotopy.davidenko_path(Quadratic(), torch.tensor([-2.0], dtype=DT), method="dopri5")
    assert err.value.furthest_t == pytest.approx((5 - 2 * math.sqrt(3)) / 13, abs=1e-5)
    # arc length passes the same turning point and heads back towards λ = 0
    path = arclength_path(Quadratic(), torch.tensor([-2.0], dtype=DT), s_max=5.0)
    assert not path.reached_end and len(path.turning_points) == 1
    assert path.turning_points[0].lam == pytest.approx((5 - 2 * math.sqrt(3)) / 13, abs=1e-8)


# ------------------------------------------------------------------ Newton and naive flows


def test_newton_step_solves_a_linear_problem_in_one_step():
    p = linear_problem(seed=9)
    assert torch.allclose(homotopy.newton_step(p.f, p.z0, p.jac), p.z_star, atol=1e-14)
    assert torch.allclose(homotopy.newton_step(p.f, p.z0), p.z_star, atol=1e-14)  # autograd J
    result = homotopy.newton_method(p.f, p.z0, tol=1e-13, jac=p.jac)
    assert result.converged and result.iterations == 1


def test_newton_method_converges_quadratically_on_tanh():
    gen = torch.Generator().manual_seed(10)
    W = torch.randn(5, 5, generator=gen, dtype=DT)
    W = 0.9 * W / torch.linalg.matrix_norm(W, ord=2)

    def f(z):
        return torch.tanh(z @ W.T + 0.1)

    result = homotopy.newton_method(f, torch.ones(5, dtype=DT), tol=1e-14)
    assert result.converged and result.iterations <= 6
    r = result.residuals
    assert all(r[k + 1] <= 10 * r[k] ** 2 for k in range(1, len(r) - 2))


def test_newton_flow_on_a_linear_map_is_an_exponential_approach():
    p = linear_problem(seed=11)
    traj = homotopy.newton_flow(p.f, p.z0, T=2.0, jac=p.jac)  # 800 RK4 steps
    exact = p.z_star + torch.exp(-traj.times)[:, None] * (p.z0 - p.z_star)
    assert torch.allclose(traj.states, exact, atol=1e-12)
    ratio = traj.residuals / traj.residuals[0]
    assert torch.allclose(ratio, torch.exp(-traj.times), atol=1e-12)


def test_naive_flow_on_a_linear_map_matches_the_matrix_exponential():
    p = linear_problem(seed=12)
    traj = homotopy.naive_flow(p.f, p.z0, T=2.0, steps=400)
    exact = p.z_star + torch.linalg.matrix_exp(-(p.eye - p.A) * 2.0) @ (p.z0 - p.z_star)
    assert torch.allclose(traj.end_state, exact, atol=1e-10)
    one_euler_step = homotopy.naive_flow(p.f, p.z0, T=1.0, steps=1, method="euler").end_state
    assert torch.allclose(one_euler_step, p.f(p.z0), atol=1e-15)


def test_make_homotopy_fields_agree_with_the_davidenko_formula():
    p = linear_problem(seed=13)
    z, lam = torch.randn(2, 4, dtype=DT), torch.tensor([0.3, 0.7], dtype=DT)
    starts = torch.stack([p.z0, p.z0])
    for kind in ("fixed_point", "newton", "fig1"):
        h = homotopy.make_homotopy(p.f, starts, kind, p.jac)
        auto = CallableHomotopy(h)  # same H, partials by autograd
        assert torch.allclose(h.field(z, lam), auto.field(z, lam), atol=1e-13)
    fp = homotopy.make_homotopy(p.f, starts, "fixed_point", p.jac)
    expected = torch.linalg.solve(p.eye - 0.3 * p.A, p.f(z[:1])[0] - p.z0)
    assert torch.allclose(fp.field(z, lam)[0], expected, atol=1e-14)
