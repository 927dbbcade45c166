"""Numerics: fixed-point, splitting and steady-state solvers, the implicit backward, homotopy
continuation (no nn.Module models)."""

from deqode.solvers.fixed_point import SolverInfo, fixed_point
from deqode.solvers.homotopy import (
    HomotopyPath,
    Trajectory,
    arclength_path,
    davidenko_path,
    homotopy_path,
    make_homotopy,
    naive_flow,
    newton_flow,
    newton_method,
    newton_step,
)
from deqode.solvers.implicit import (
    Equilibrium,
    check_solution,
    implicit_fixed_point,
    solve_adjoint,
    solve_equilibrium,
)
from deqode.solvers.linear import gmres
from deqode.solvers.splitting import splitting_solve

__all__ = [
    "Equilibrium",
    "HomotopyPath",
    "SolverInfo",
    "Trajectory",
    "arclength_path",
    "check_solution",
    "davidenko_path",
    "fixed_point",
    "gmres",
    "homotopy_path",
    "implicit_fixed_point",
    "make_homotopy",
    "naive_flow",
    "newton_flow",
    "newton_method",
    "newton_step",
    "solve_adjoint",
    "solve_equilibrium",
    "splitting_solve",
]
