"""Anderson and Broyden reproduce their recorded solves: iterates, NFE, residuals, best iterate.

``tests/data/fixed_point_solves_v1.pt`` holds what the solvers returned before their speed-ups
(written by :func:`write_fixture` from that code): the returned state, the integer fields of
:class:`SolverInfo` and both residual traces, for small seeded float64 problems (a contraction
that converges, a non-contractive map that uses the whole budget, a shaped state with the absolute
stop rule, a map that overflows). Integers and flags must match exactly; floats to 1e-9 relative
(the solves go through BLAS and a small linear solve, whose last bits may differ between CPUs).
Regenerate (``python tests/test_fixed_point_frozen.py``) only for an intended change of a rule.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from deqode.solvers import fixed_point

FIXTURE = Path(__file__).parent / "data" / "fixed_point_solves_v1.pt"
F64 = torch.float64
INTEGER_FIELDS = ("iterations", "nfe", "best_iteration", "converged", "diverged")
TRACES = ("abs_residuals", "rel_residuals")


def _problems() -> dict[str, tuple]:
    """name -> (f, z0, tol, max_iter, stop_mode)."""
    gen = torch.Generator().manual_seed(7)
    dim, batch = 24, 5
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen, dtype=F64))
    sym = (q * torch.linspace(-0.95, 0.95, dim, dtype=F64)) @ q.T
    x = 0.5 * torch.randn(batch, dim, generator=gen, dtype=F64)
    wild = torch.randn(dim, dim, generator=gen, dtype=F64)
    wild = 1.6 * wild / torch.linalg.matrix_norm(wild, 2)
    shaped = 0.4 * torch.randn(3, 2, 3, 4, generator=gen, dtype=F64)
    mix = torch.randn(24, 24, generator=gen, dtype=F64) / 24**0.5 * 0.6
    return {
        "contraction": (lambda z: torch.tanh(z @ sym.T + x), torch.zeros(batch, dim, dtype=F64),
                        1e-10, 60, "rel"),
        "expanding": (lambda z: torch.tanh(z @ wild.T + x), torch.zeros(batch, dim, dtype=F64),
                      1e-8, 25, "rel"),
        "shaped_abs": (lambda z: torch.tanh((z.reshape(3, -1) @ mix.T).reshape(z.shape) + shaped),
                       torch.zeros(3, 2, 3, 4, dtype=F64), 1e-9, 40, "abs"),
        "overflow": (lambda z: torch.exp(3.0 * z), torch.full((4, 3), 0.5, dtype=F64), 1e-8, 20,
                     "rel"),
    }


#: name -> (problem, method, options)
SOLVES: dict[str, tuple[str, str, dict]] = {
    "anderson_contraction": ("contraction", "anderson", {}),
    "anderson_small_memory": ("contraction", "anderson", {"m": 3, "lam": 1e-3, "beta": 0.8}),
    "anderson_expanding": ("expanding", "anderson", {}),
    "anderson_shaped_abs": ("shaped_abs", "anderson", {"m": 4}),
    "anderson_overflow": ("overflow", "anderson", {}),
    "broyden_contraction": ("contraction", "broyden", {}),
    "broyden_restart": ("contraction", "broyden", {"m": 4}),
    "broyden_expanding": ("expanding", "broyden", {}),
    "broyden_line_search": ("expanding", "broyden", {"line_search": True}),
    "broyden_shaped_abs": ("shaped_abs", "broyden", {"m": 6}),
}


def compute_records() -> dict[str, torch.Tensor]:
    problems = _problems()
    out: dict[str, torch.Tensor] = {}
    for name, (problem, method, options) in SOLVES.items():
        f, z0, tol, max_iter, stop_mode = problems[problem]
        z, info = fixed_point(f, z0, method, tol, max_iter, stop_mode, **options)
        out[f"{name}/z"] = z
        out[f"{name}/integers"] = torch.tensor([int(getattr(info, k)) for k in INTEGER_FIELDS])
        for key in TRACES:
            out[f"{name}/{key}"] = torch.tensor(getattr(info, key), dtype=F64)
        out[f"{name}/final_residual"] = torch.tensor(info.final_residual, dtype=F64)
    return out


def write_fixture() -> None:
    FIXTURE.parent.mkdir(exist_ok=True)
    torch.save(compute_records(), FIXTURE)


@pytest.fixture(scope="module")
def records() -> tuple[dict, dict]:
    return torch.load(FIXTURE, weights_only=True), compute_records()


@pytest.mark.parametrize("name", list(SOLVES))
def test_solve_is_unchanged(name: str, records) -> None:
    frozen, now = records
    assert {k for k in now if k.startswith(f"{name}/")} == {
        k for k in frozen if k.startswith(f"{name}/")}
    assert torch.equal(now[f"{name}/integers"], frozen[f"{name}/integers"]), (
        dict(zip(INTEGER_FIELDS, now[f"{name}/integers"].tolist(), strict=True)))
    for key in ("z", "final_residual", *TRACES):
        torch.testing.assert_close(now[f"{name}/{key}"], frozen[f"{name}/{key}"], rtol=1e-9,
                                   atol=1e-12, equal_nan=True, msg=f"{name}/{key} changed")


def test_the_fixture_covers_both_outcomes() -> None:
    """The recorded solves include converged, budget-limited and diverged ones."""
    frozen = torch.load(FIXTURE, weights_only=True)
    flags = {n: frozen[f"{n}/integers"].tolist()[-2:] for n in SOLVES}
    assert [1, 0] in flags.values() and [0, 1] in flags.values() and [0, 0] in flags.values()


if __name__ == "__main__":
    write_fixture()
