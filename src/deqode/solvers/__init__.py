"""Numerics: fixed-point solvers and homotopy continuation (no nn.Module models)."""

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
from deqode.solvers.implicit import implicit_fixed_point, solve_adjoint
from deqode.solvers.linear import gmres

__all__ = [
    "HomotopyPath",
    "SolverInfo",
    "Trajectory",
    "arclength_path",
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
]
