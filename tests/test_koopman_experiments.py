"""The Koopman experiments of notebook 14 (chapters.sim.koopman_edmd / koopman_hopf / figures)."""

from __future__ import annotations

import math

import matplotlib
import pytest
import torch

from deqode.chapters.sim import koopman, koopman_edmd, koopman_figures, koopman_hopf
from deqode.models import sim

matplotlib.use("Agg")
F64 = torch.float64
OMEGA, H = 1.0, 0.5

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _n_axes(fig) -> int:
    import matplotlib.pyplot as plt

    n = len(fig.axes)
    plt.close(fig)
    return n


def test_linearisation_study_of_a_contractive_deq() -> None:
    torch.manual_seed(0)
    deq = sim.ContractiveTanhDEQ(64, 16, 10, max_norm=0.9, solver="anderson", tol=1e-10,
                                 max_iter=200).double()
    x = torch.randn(12, 1, 8, 8, dtype=F64)
    k1 = koopman_edmd.linearisation_study(deq, x, traced=4, steps=30)
    assert k1["jacobian"].shape == (12, 16, 16)
    assert k1["w_norm"] <= 0.9 + 1e-9
    assert (k1["rho"] <= k1["w_norm"] + 1e-9).all()  # rho(J) <= ||J|| <= ||W||
    assert k1["distances"].shape == (31, 4) and k1["rates"].shape == (4,)
    assert torch.equal(k1["rho_traced"], k1["rho"][:4])
    assert _n_axes(koopman_figures.jacobian_spectrum_figure(k1)) == 2


def test_depth_powers_keep_one_unit_singular_value() -> None:
    jac = 0.5 * torch.eye(3, dtype=F64)
    k2 = koopman_edmd.depth_powers(jac, depths=[0, 2, 4])
    assert k2["depths"] == [0, 2, 4] and k2["j_norm"] == pytest.approx(0.5)
    assert torch.allclose(k2["singular_values"][:, 0], torch.ones(3, dtype=F64))
    assert torch.allclose(k2["singular_values"][:, 1], torch.tensor([1.0, 0.25, 0.0625], dtype=F64))
    assert _n_axes(koopman_figures.powers_figure(k2)) == 1


def test_joint_edmd_recovers_the_input_only_ring_and_the_fixed_point_map() -> None:
    k3 = koopman_edmd.joint_edmd(0, samples=2000, degree=5)
    # x-only monomials are invariant: eigenvalue 1 once per power of x, P is a projector
    assert k3["n_unit"] == 6 and k3["rank"] == 6 and k3["dictionary_size"] == 21
    assert torch.allclose(k3["projector"] @ k3["projector"], k3["projector"], atol=1e-8)
    assert (k3["others"] < 1).all()
    z = koopman_edmd.scalar_deq_fixed_points(k3["x_grid"])
    assert torch.allclose(z, torch.tanh(0.7 * z + k3["x_grid"]), atol=1e-12)
    assert k3["z_pred"].shape == k3["z_true"].shape == (201,)
    assert _n_axes(koopman_figures.edmd_figure(k3)) == 2


def test_rff_kernel_study_follows_the_global_seed_and_converges() -> None:
    first, second = (koopman_edmd.rff_kernel_study(3, points=10) for _ in range(2))
    assert first["errors"] == second["errors"]
    assert list(first["errors"]) == list(koopman_edmd.RFF_FEATURES)
    assert first["errors"][4096] < first["errors"][16]
    assert list(first["panels"]) == [1e3, 1.5, 1e-3]
    assert first["panels"][1e3]["off_diagonal"].min() > 0.99
    assert first["panels"][1e3]["off_diagonal"].numel() == 10 * 9
    assert _n_axes(koopman_figures.rff_figure(first)) == 4


def test_hopf_solver_table_root_solvers_find_the_origin_iteration_the_cycle() -> None:
    rows, checks = koopman_hopf.solver_table(OMEGA, H, mus=(0.5,), steps=200)
    assert [r["solver"] for r in rows] == ["broyden", "anderson", "newton (exact Jacobian)",
                                          "forward iteration (200 steps)"]
    assert checks["origin_repels"] and checks["chord_gap"] < 1e-9
    assert checks["converged_root_norm"] < 1e-8
    assert rows[-1]["|z*|"] == f"{math.sqrt(0.5):.3f} = sqrt(mu)"
    assert koopman_hopf.below(1e-12) == "< 1e-09" and koopman_hopf.below(0.5) == "5.0e-01"


def test_hopf_draws_consume_the_generator_in_order() -> None:
    gen = torch.Generator().manual_seed(0)
    assert koopman_hopf.flow_check(gen, OMEGA, H, samples=8) < 1e-8
    lam, worst = koopman_hopf.eigenpair_gap(gen, 1.0, OMEGA, H, p_max=2, m_max=3, samples=8)
    assert lam.shape == (3, 7) and worst < 1e-9
    eig = koopman_hopf.cycle_edmd(gen, 1.0, OMEGA, H, samples=500, degree=4)
    assert eig.shape == (len(koopman.monomial_exponents(4)),)
    sv = koopman_hopf.ring_powers(lam, [0, 4])
    assert torch.allclose(sv[:, :7], torch.ones(2, 7, dtype=F64))  # the p = 0 ring survives
    replay = torch.Generator().manual_seed(0)  # the same draws, in the same order
    torch.randn(8, 2, generator=replay, dtype=F64)
    torch.rand(8, generator=replay, dtype=F64)
    torch.randn(8, 2, generator=replay, dtype=F64)
    torch.rand(500, generator=replay, dtype=F64)
    torch.rand(500, generator=replay, dtype=F64)
    assert torch.equal(gen.get_state(), replay.get_state())
    assert _n_axes(koopman_figures.hopf_spectrum_figure(lam, eig, [0, 4], sv)) == 3


def test_readouts_and_the_deq_root_of_the_hopf_map() -> None:
    gen = torch.Generator().manual_seed(1)
    data = koopman_hopf.readout_data(gen, 16, OMEGA, H)
    assert data["inputs"].shape == (16, 2)
    assert ((data["time_average"] - data["mu"] / 2).abs() < 0.01).all()
    root, info, prediction = koopman_hopf.deq_readout(data["mu"], data["theta"], OMEGA, H)
    assert info.converged and root.norm(dim=1).max() < 1e-8  # the repelling origin
    assert torch.equal(prediction, root[:, 0] ** 2)


def test_fixed_point_figure_and_contrast_figure_draw() -> None:
    assert _n_axes(koopman_figures.fixed_point_vs_invariant_set_figure(OMEGA, H)) == 2
    rho = torch.linspace(0.1, 0.9, 20, dtype=F64)
    assert _n_axes(koopman_figures.contrast_figure(rho, 1.2 * rho)) == 1
