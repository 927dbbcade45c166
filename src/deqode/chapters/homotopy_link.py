"""Chapter "Two sides of one coin: the homotopy link": the toy problems and the checks H1-H10.

Every check is a function that runs in well under a few seconds on a CPU and returns a small record
(a dataclass) holding the measured numbers, the paths needed for the plots and the conditions the
book asserts (:meth:`CheckRecord.conditions`). The notebook ``01_homotopy_link`` prints and asserts
them next to the text; ``tests/test_homotopy_link.py`` asserts the same conditions.

Common toy (spec HomoODE §2.2.7) [derived; thresholds and the input scale are reconstruction]:
``f(z) = tanh(W z + U x)``, ``n = 5``, ``U = I``, ``W`` Gaussian rescaled to ``||W||_2 = 0.9`` (a
contraction, so every homotopy path below exists and has no turning point), float64, seeded.
The input is drawn as ``x ~ N(0, x_scale² I)`` with ``x_scale = 0.1`` (our choice): a small input
keeps ``tanh`` near its linear range, so ``J_f(z*) ≈ W`` and the spectrum that sets the rate of
the Picard iteration and of the naive flow is that of ``W``, not of a saturated ``tanh``.

Conventions: fixed point ``z* = f(z*)``; residual ``g(z) = z - f(z)``; norms are 2-norms. The
toys do not depend on the run profile: the chapter is identical in ``smoke`` and ``paper``.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor
from torchdiffeq import odeint

from deqode.errors import SolverFailure
from deqode.solvers.fixed_point import fixed_point
from deqode.solvers.homotopy import (
    Homotopy,
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

DTYPE = torch.float64
SPECTRAL_NORM = 0.9

# --------------------------------------------------------------------------------------------
# Toy problems
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TanhToy:
    """``f(z) = tanh(W z + U x)`` on ``z [..., n]`` with a condition ``x [..., m]`` (or ``[m]``).

    ``jacobian(z) = diag(1 - tanh²(W z + U x)) W``, ``[B, n, n]``; ``||J_f|| <= ||W||_2``.
    """

    W: Tensor
    U: Tensor
    x: Tensor

    @property
    def n(self) -> int:
        return self.W.shape[0]

    @functools.cached_property
    def bias(self) -> Tensor:
        """The injected input ``U x`` (computed once)."""
        return self.x @ self.U.T

    def preactivation(self, z: Tensor) -> Tensor:
        return z @ self.W.T + self.bias

    def __call__(self, z: Tensor) -> Tensor:
        return torch.tanh(self.preactivation(z))

    def jacobian(self, z: Tensor) -> Tensor:
        slope = 1 - torch.tanh(self.preactivation(z)) ** 2
        return slope.unsqueeze(-1) * self.W

    def with_condition(self, x: Tensor) -> TanhToy:
        """The same weights with another condition ``x`` (e.g. a batch ``[B, m]``)."""
        return TanhToy(self.W, self.U, x)

    def fixed_point(self, z0: Tensor | None = None) -> Tensor:
        """``z*`` by Newton's method to machine precision (from ``z0``, default 0)."""
        start = torch.zeros(self.n, dtype=self.W.dtype) if z0 is None else z0
        result = newton_method(self, start, tol=1e-15, max_iter=50, jac=self.jacobian)
        if result.residuals[-1] > 1e-13:
            raise SolverFailure(f"toy fixed point not found: residual {result.residuals[-1]:.2e}")
        return result.z


@dataclass(frozen=True)
class Setup:
    """The common toy with its random start point ``z0`` and the reference fixed point."""

    toy: TanhToy
    z0: Tensor
    z_star: Tensor
    seed: int


def make_toy(
    seed: int = 0, n: int = 5, m: int | None = None, x_scale: float = 0.1,
    spectral_norm: float = SPECTRAL_NORM,
) -> Setup:
    """The seeded common toy: ``W`` Gaussian with ``||W||_2 = spectral_norm``, ``U = I`` (``m = n``)
    or Gaussian ``[n, m]``, ``x ~ N(0, x_scale²)``, ``z0 ~ N(0, I)``; ``z*`` by Newton's method."""
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(n, n, generator=gen, dtype=DTYPE)
    W = W * (spectral_norm / torch.linalg.matrix_norm(W, ord=2))
    if m is None:
        U, m = torch.eye(n, dtype=DTYPE), n
    else:
        U = torch.randn(n, m, generator=gen, dtype=DTYPE) / math.sqrt(m)
    x = x_scale * torch.randn(m, generator=gen, dtype=DTYPE)
    z0 = torch.randn(n, generator=gen, dtype=DTYPE)
    toy = TanhToy(W, U, x)
    return Setup(toy=toy, z0=z0, z_star=toy.fixed_point(), seed=seed)


class QuadraticHomotopy(Homotopy):
    """The author's 1-D MATLAB toy ``H(x, λ) = λ(x² - 1) + (1 - λ)(x - a)``, closed-form partials.

    For fixed ``λ`` the zero set is the quadratic ``λx² + (1 - λ)x - λ - (1 - λ)a = 0``; its
    target ``H(·, 1) = x² - 1`` has the roots ``±1``.
    """

    kind = "quadratic"

    def __init__(self, a: float):
        self.a = a

    def __call__(self, z: Tensor, lam: Tensor) -> Tensor:
        lam = lam.unsqueeze(-1)
        return lam * (z**2 - 1) + (1 - lam) * (z - self.a)

    def partials(self, z: Tensor, lam: Tensor) -> tuple[Tensor, Tensor]:
        lam_ = lam.unsqueeze(-1)
        h_x = 2 * lam_ * z + (1 - lam_)
        h_lam = (z**2 - 1) - (z - self.a)
        return h_x.unsqueeze(-1), h_lam

    def zero_set(self, x: Tensor) -> Tensor:
        """``λ(x)`` on the zero set: ``λ = (x - a) / ((x - a) - (x² - 1))``."""
        return (x - self.a) / ((x - self.a) - (x**2 - 1))


def turning_point_closed_form(a: float = -2.0) -> tuple[float, float]:
    """``(λ*, x*)`` of the first turning point for ``a = -2``.

    The discriminant ``13λ² - 10λ + 1`` vanishes at ``λ* = (5 - 2√3)/13``, where the double root is
    ``x* = -(1 - λ*)/(2λ*) = -(2 + √3)``.
    """
    if a != -2.0:
        raise ValueError("the closed form is derived for a = -2 only")
    lam = (5 - 2 * math.sqrt(3)) / 13
    return lam, -(1 - lam) / (2 * lam)


# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


def fmt(value: float) -> str:
    """Numbers as the book prints them: 1 significant digit at round-off level, else 4."""
    if isinstance(value, bool):
        return str(value)
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    return f"{value:.0e}" if abs(value) < 1e-6 else f"{value:.4g}"


@dataclass(frozen=True)
class Condition:
    """One asserted comparison ``value op bound`` (a yes/no fact when ``bound`` is a bool)."""

    name: str
    value: float | bool
    op: str
    bound: float | bool

    @property
    def ok(self) -> bool:
        ops: dict[str, Callable[[float, float], bool]] = {
            "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "==": lambda a, b: a == b,
        }
        return bool(ops[self.op](self.value, self.bound))

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        if isinstance(self.bound, bool):
            return f"{self.name}: {bool(self.value)} (expected {self.bound}): {verdict}"
        return f"{self.name} = {fmt(self.value)} {self.op} {fmt(self.bound)}: {verdict}"


class CheckRecord:
    """Base of the check records: ``conditions()`` lists what the book asserts."""

    check_id: ClassVar[str] = ""
    claim: ClassVar[str] = ""

    def conditions(self) -> list[Condition]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.conditions())

    def assert_passed(self) -> None:
        failed = [str(c) for c in self.conditions() if not c.ok]
        if failed:
            raise AssertionError(f"{self.check_id} failed: " + "; ".join(failed))

    def numbers(self) -> dict[str, object]:
        """The measured numbers (the dataclass fields shown in ``repr``), for a JSON record."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.repr}

    def report(self) -> str:
        """The rounded numbers, one condition per line, for a checked notebook cell."""
        lines = [f"{self.check_id}: {self.claim}"]
        lines += [f"  {c}" for c in self.conditions()]
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# H1-H3: fixed-point homotopy and the z0 correction of Fig. 1
# --------------------------------------------------------------------------------------------


@dataclass
class H1Record(CheckRecord):
    check_id: ClassVar[str] = "H1"
    claim: ClassVar[str] = "the fixed-point homotopy from z0 ends at the fixed point"
    residual_rk4: float
    residual_dopri5: float
    nfe_rk4: int
    nfe_dopri5: int
    max_path_residual: float
    error_to_newton: float
    path: HomotopyPath = field(repr=False)

    def conditions(self) -> list[Condition]:
        return [
            Condition("||g(z(1))||, RK4 400 steps", self.residual_rk4, "<", 1e-10),
            Condition("||g(z(1))||, dopri5 1e-10", self.residual_dopri5, "<", 1e-8),
            Condition("max ||H(z(λ), λ)|| on the RK4 path", self.max_path_residual, "<", 1e-10),
            Condition("||z(1) - z*_Newton||", self.error_to_newton, "<", 1e-10),
        ]


def check_h1(setup: Setup, steps: int = 400) -> H1Record:
    """H1: fixed-point homotopy ``dz/dλ = (I - λJ_f)^{-1}(f(z) - z0)`` from a random ``z0``."""
    toy = setup.toy
    rk4 = homotopy_path(toy, setup.z0, "fixed_point", steps=steps, jac=toy.jacobian)
    dopri = homotopy_path(toy, setup.z0, "fixed_point", method="dopri5", rtol=1e-10, atol=1e-10,
                          jac=toy.jacobian)
    return H1Record(
        residual_rk4=rk4.end_residual,
        residual_dopri5=dopri.end_residual,
        nfe_rk4=rk4.nfe,
        nfe_dopri5=dopri.nfe,
        max_path_residual=float(rk4.path_residuals.max()),
        error_to_newton=float((rk4.end_state - setup.z_star).norm()),
        path=rk4,
    )


@dataclass
class H2Record(CheckRecord):
    check_id: ClassVar[str] = "H2"
    claim: ClassVar[str] = "Fig. 1's field (I - λJ_f)^{-1} f from z0 = 0 ends at the fixed point"
    residual: float
    max_difference_to_fixed_point_homotopy: float
    path: HomotopyPath = field(repr=False)

    def conditions(self) -> list[Condition]:
        return [
            Condition("||g(z(1))||", self.residual, "<", 1e-8),
            Condition("max |z_fig1 - z_fixed-point| (z0 = 0)",
                      self.max_difference_to_fixed_point_homotopy, "<", 1e-12),
        ]


def check_h2(setup: Setup, steps: int = 400) -> H2Record:
    """H2: Fig. 1's field from ``z0 = 0`` is the fixed-point homotopy with ``z0 = 0``."""
    toy, zero = setup.toy, torch.zeros_like(setup.z0)
    fig1 = homotopy_path(toy, zero, "fig1", steps=steps, jac=toy.jacobian)
    fp = homotopy_path(toy, zero, "fixed_point", steps=steps, jac=toy.jacobian)
    return H2Record(
        residual=fig1.end_residual,
        max_difference_to_fixed_point_homotopy=float((fig1.states - fp.states).abs().max()),
        path=fig1,
    )


@dataclass
class H3Record(CheckRecord):
    check_id: ClassVar[str] = "H3"
    claim: ClassVar[str] = "Fig. 1's field from z0 != 0 misses the fixed point; z - λf(z) = z0"
    residual: float
    norm_z0: float
    conserved_end: float
    conserved_max: float
    path: HomotopyPath = field(repr=False)

    def conditions(self) -> list[Condition]:
        return [
            Condition("||g(z(1))||", self.residual, ">", 1e-2),
            Condition("||z(1) - f(z(1)) - z0||", self.conserved_end, "<", 1e-8),
            Condition("max_λ ||z(λ) - λ f(z(λ)) - z0||", self.conserved_max, "<", 1e-8),
            Condition("| ||g(z(1))|| - ||z0|| |", abs(self.residual - self.norm_z0), "<", 1e-8),
        ]


def check_h3(setup: Setup, steps: int = 400) -> H3Record:
    """H3: Fig. 1's field from ``z0 != 0`` conserves ``z - λ f(z)``, so ``g(z(1)) = z0``."""
    toy, z0 = setup.toy, setup.z0
    path = homotopy_path(toy, z0, "fig1", steps=steps, jac=toy.jacobian)
    z1 = path.end_state
    conserved = torch.stack(
        [(z - lam * toy(z) - z0).norm() for z, lam in zip(path.states, path.lambdas, strict=True)]
    )
    return H3Record(
        residual=path.end_residual,
        norm_z0=float(z0.norm()),
        conserved_end=float((z1 - toy(z1) - z0).norm()),
        conserved_max=float(conserved.max()),
        path=path,
    )


# --------------------------------------------------------------------------------------------
# H4-H7: Newton homotopy, continuous Newton flow, naive flow
# --------------------------------------------------------------------------------------------


@dataclass
class H4Record(CheckRecord):
    check_id: ClassVar[str] = "H4"
    claim: ClassVar[str] = "the Newton homotopy (λ = t) reaches the root with g(z(t)) = (1-t) g(z0)"
    residual: float
    max_linear_decay_error: float
    error_to_newton: float
    path: HomotopyPath = field(repr=False)

    def conditions(self) -> list[Condition]:
        return [
            Condition("||g(z(1))||", self.residual, "<", 1e-8),
            Condition("max_t ||g(z(t)) - (1-t) g(z0)|| / ||g(z0)||",
                      self.max_linear_decay_error, "<", 1e-8),
            Condition("||z(1) - z*_Newton||", self.error_to_newton, "<", 1e-10),
        ]


def check_h4(setup: Setup, steps: int = 400) -> H4Record:
    """H4: Newton homotopy ``dz/dt = -(I - J_f)^{-1} g(z0)`` on ``[0, 1]`` (linear schedule)."""
    toy, z0 = setup.toy, setup.z0
    path = homotopy_path(toy, z0, "newton", steps=steps, jac=toy.jacobian)
    g0 = z0 - toy(z0)
    err = torch.stack([
        (z - toy(z) - (1 - lam) * g0).norm()
        for z, lam in zip(path.states, path.lambdas, strict=True)
    ])
    return H4Record(
        residual=path.end_residual,
        max_linear_decay_error=float(err.max() / g0.norm()),
        error_to_newton=float((path.end_state - setup.z_star).norm()),
        path=path,
    )


@dataclass
class H5Record(CheckRecord):
    check_id: ClassVar[str] = "H5"
    claim: ClassVar[str] = "the continuous Newton flow decays as ||g(z(T))|| = e^{-T} ||g(z0)||"
    horizons: tuple[float, ...]
    ratios: tuple[float, ...]
    relative_errors: tuple[float, ...]
    trajectory: Trajectory = field(repr=False)

    def conditions(self) -> list[Condition]:
        out = [
            Condition(f"|ratio/e^-T - 1| at T = {T:g} (ratio {fmt(r)})", e, "<", 1e-6)
            for T, r, e in zip(self.horizons, self.ratios, self.relative_errors, strict=True)
        ]
        out.append(Condition("ratio at T = 1 (still O(1))", self.ratios[0], ">", 0.3))
        return out


def check_h5(
    setup: Setup, horizons: Sequence[float] = (1, 5, 20), steps_per_unit: int = 400
) -> H5Record:
    """H5: Newton flow with RK4 (``steps_per_unit`` steps per unit time) up to ``max(horizons)``.

    The flow is autonomous and RK4 runs on a uniform grid, so one run to ``T = 20`` read off at
    ``T = 1, 5, 20`` gives exactly the numbers of three runs with ``400 T`` steps each.
    """
    toy = setup.toy
    horizons = tuple(float(T) for T in horizons)
    T_max = max(horizons)
    traj = newton_flow(toy, setup.z0, T_max, steps=round(steps_per_unit * T_max), jac=toy.jacobian)
    r0 = float(traj.residuals[0])
    ratios, errors = [], []
    for T in horizons:
        index = round(T * steps_per_unit)
        ratio = float(traj.residuals[index]) / r0
        ratios.append(ratio)
        errors.append(abs(ratio / math.exp(-T) - 1))
    return H5Record(horizons, tuple(ratios), tuple(errors), traj)


@dataclass
class H6Record(CheckRecord):
    check_id: ClassVar[str] = "H6"
    claim: ClassVar[str] = "one forward-Euler step of size 1 of the Newton flow is one Newton step"
    max_difference: float
    batch: int
    error_before: float
    error_after: float

    def conditions(self) -> list[Condition]:
        return [
            Condition(f"max |Euler(h=1) - Newton step| over {self.batch} starts",
                      self.max_difference, "<=", 1e-14),
            Condition("||z1 - z*|| / ||z0 - z*||² (quadratic step)",
                      self.error_after / self.error_before**2, "<", 10.0),
        ]


def check_h6(setup: Setup, batch: int = 8) -> H6Record:
    """H6: torchdiffeq's Euler with one step of size 1 vs :func:`newton_step`, on a batch of starts.

    Starts ``z* + 0.3 v`` (unit ``v``); the last condition shows the Newton step is quadratic there.
    """
    gen = torch.Generator().manual_seed(setup.seed + 1)
    toy = setup.toy
    directions = torch.randn(batch, toy.n, generator=gen, dtype=DTYPE)
    starts = setup.z_star + 0.3 * directions / directions.norm(dim=-1, keepdim=True)
    euler = newton_flow(toy, starts, 1.0, steps=1, method="euler", jac=toy.jacobian).end_state
    newton = newton_step(toy, starts, jac=toy.jacobian)
    return H6Record(
        max_difference=float((euler - newton).abs().max()),
        batch=batch,
        error_before=float((starts - setup.z_star).norm(dim=-1).max()),
        error_after=float((newton - setup.z_star).norm(dim=-1).max()),
    )


@dataclass
class H7Record(CheckRecord):
    check_id: ClassVar[str] = "H7"
    claim: ClassVar[str] = "naive flow dz/dt = f(z) - z: Euler(h=1) = Picard; converges as t → ∞"
    euler_picard_difference: float
    picard_history_difference: float
    ratio_T1: float
    T_large: float
    residual_T_large: float
    lower_bound_T1: float
    upper_bound_T1: float
    contraction_bound: float
    trajectory: Trajectory = field(repr=False)
    picard_residuals: list[float] = field(repr=False)

    def conditions(self) -> list[Condition]:
        return [
            Condition("max |Euler(h=1) step - f(z0)|", self.euler_picard_difference, "<", 1e-15),
            Condition("max rel. diff. of ||g|| (k Euler steps vs k Picard iterations)",
                      self.picard_history_difference, "<", 1e-12),
            Condition("||g(z(1))|| / ||g(z0)|| (far from 0: bound e^{-(1+L)})", self.ratio_T1,
                      ">", self.lower_bound_T1),
            Condition("||g(z(1))|| / ||g(z0)|| (contraction bound e^{-(1-L)})", self.ratio_T1,
                      "<", self.upper_bound_T1),
            Condition(f"||g(z(T))|| at T = {self.T_large:g}", self.residual_T_large, "<", 1e-8),
        ]


def check_h7(setup: Setup, T_large: float = 60.0, steps_per_unit: int = 20,
             picard_iterations: int = 10) -> H7Record:
    """H7: naive flow vs Picard iteration.

    Along the flow ``dg/dt = -(I - J_f) g``, so ``e^{-(1+L)t} <= ||g(t)||/||g(0)|| <= e^{-(1-L)t}``
    with ``L = sup ||J_f|| <= ||W||_2`` [derived]: at ``t = 1`` the residual has fallen by at most
    ``e^{-1.9}``. RK4 with ``steps_per_unit`` steps per unit time up to ``T_large``.
    """
    toy, z0 = setup.toy, setup.z0
    one_step = naive_flow(toy, z0, 1.0, steps=1, method="euler").end_state
    euler_k = naive_flow(toy, z0, float(picard_iterations), steps=picard_iterations, method="euler")
    _, info = fixed_point(toy, z0, method="picard", tol=0.0, max_iter=picard_iterations,
                          stop_mode="abs")
    picard = torch.tensor(info.abs_residuals, dtype=DTYPE)
    history_diff = float(((euler_k.residuals - picard) / picard).abs().max())
    traj = naive_flow(toy, z0, T_large, steps=round(steps_per_unit * T_large))
    r = traj.residuals
    L = float(torch.linalg.matrix_norm(toy.W, ord=2))
    return H7Record(
        euler_picard_difference=float((one_step - toy(z0)).abs().max()),
        picard_history_difference=history_diff,
        ratio_T1=float(r[steps_per_unit] / r[0]),
        T_large=T_large,
        residual_T_large=float(r[-1]),
        lower_bound_T1=math.exp(-(1 + L)),
        upper_bound_T1=math.exp(-(1 - L)),
        contraction_bound=L,
        trajectory=traj,
        picard_residuals=info.abs_residuals,
    )


# --------------------------------------------------------------------------------------------
# Broyden as quasi-Newton
# --------------------------------------------------------------------------------------------


@dataclass
class QuasiNewtonRecord(CheckRecord):
    check_id: ClassVar[str] = "Broyden"
    claim: ClassVar[str] = "Newton < Broyden (quasi-Newton) < Picard in iterations to ||g|| <= tol"
    tol: float
    residuals: dict[str, list[float]] = field(repr=False)
    iterations: dict[str, int] = field(default_factory=dict)
    converged: dict[str, bool] = field(default_factory=dict)

    def conditions(self) -> list[Condition]:
        it = self.iterations
        return [
            *(Condition(f"{m} converged", self.converged[m], "==", True) for m in it),
            Condition("iterations Newton", it["newton"], "<", it["broyden"]),
            Condition("iterations Broyden", it["broyden"], "<", it["picard"]),
        ]

    def report(self) -> str:
        lines = [super().report(), "  iterations to ||g|| <= " + fmt(self.tol) + ": "
                 + ", ".join(f"{m} {k}" for m, k in self.iterations.items())]
        return "\n".join(lines)


def check_quasi_newton(setup: Setup, tol: float = 1e-12, max_iter: int = 200) -> QuasiNewtonRecord:
    """Newton's method (exact ``(I - J_f)^{-1}``), Broyden (low-rank approximation of it, started at
    ``I``, so its first step is a Picard step) and Picard, from the same ``z0``; absolute residuals.
    """
    toy, z0 = setup.toy, setup.z0
    newton = newton_method(toy, z0, tol=tol, max_iter=max_iter, jac=toy.jacobian)
    record = QuasiNewtonRecord(tol=tol, residuals={"newton": newton.residuals})
    record.iterations["newton"] = newton.iterations
    record.converged["newton"] = newton.converged
    for method in ("broyden", "picard"):
        _, info = fixed_point(toy, z0, method=method, tol=tol, max_iter=max_iter, stop_mode="abs")
        record.residuals[method] = info.abs_residuals
        record.iterations[method] = info.iterations
        record.converged[method] = info.converged
    return record


# --------------------------------------------------------------------------------------------
# H8-H9: the Neural-ODE and ANODE readings
# --------------------------------------------------------------------------------------------


@dataclass
class H8Record(CheckRecord):
    check_id: ClassVar[str] = "H8"
    claim: ClassVar[str] = "Fig. 1's field started at h(x) ends at z = f(z) + h(x)"
    batch: int
    additive_residual: float
    distance_to_additive_deq: float
    plain_residual_min: float

    def conditions(self) -> list[Condition]:
        return [
            Condition(f"max_x ||z(1) - f(z(1)) - h(x)|| ({self.batch} inputs)",
                      self.additive_residual, "<", 1e-8),
            Condition("max_x ||z(1) - z*_DEQ(h(x))|| (additive-injection DEQ)",
                      self.distance_to_additive_deq, "<", 1e-8),
            Condition("min_x ||z(1) - f(z(1))|| (not a fixed point of f)",
                      self.plain_residual_min, ">", 1e-2),
        ]


def check_h8(setup: Setup, batch: int = 4, input_dim: int = 3, steps: int = 400) -> H8Record:
    """H8: a Neural ODE whose field has Fig. 1's form, ``f`` input-independent
    (``f(z) = tanh(W z + b)``), started at the feature-extractor output ``h(x) = tanh(V x)``.

    The field conserves ``z - λ f(z) = h(x)``, so ``z(1)`` solves ``z = f(z) + h(x)``: the
    equilibrium of a DEQ with additive input injection [derived; our observation, not the paper's].
    """
    gen = torch.Generator().manual_seed(setup.seed + 2)
    toy = setup.toy  # b = U x of the common toy plays the input-independent bias
    V = torch.randn(toy.n, input_dim, generator=gen, dtype=DTYPE)
    inputs = torch.randn(batch, input_dim, generator=gen, dtype=DTYPE)
    h = torch.tanh(inputs @ V.T)  # [B, n]
    path = homotopy_path(toy, h, "fig1", steps=steps, jac=toy.jacobian)
    z1 = path.end_state

    def additive(z: Tensor) -> Tensor:
        return toy(z) + h

    deq = newton_method(additive, h, tol=1e-14, jac=toy.jacobian).z
    return H8Record(
        batch=batch,
        additive_residual=float((z1 - toy(z1) - h).norm(dim=-1).max()),
        distance_to_additive_deq=float((z1 - deq).norm(dim=-1).max()),
        plain_residual_min=float((z1 - toy(z1)).norm(dim=-1).min()),
    )


@dataclass
class H9Record(CheckRecord):
    check_id: ClassVar[str] = "H9"
    claim: ClassVar[str] = "ANODE [h; a], a(0) = 0: frozen h: a(1) = fixed point; drifting h: not"
    frozen_residual: float
    drifting_residual_final_h: float
    drifting_residual_initial_h: float

    def conditions(self) -> list[Condition]:
        return [
            Condition("(i) dh/dt = 0: ||a(1) - f(a(1); h)||", self.frozen_residual, "<", 1e-8),
            Condition("(ii) dh/dt = -h: ||a(1) - f(a(1); h(1))||",
                      self.drifting_residual_final_h, ">", 1e-2),
        ]

    def report(self) -> str:
        return (super().report() + "\n  (ii) residual for the initial condition h(0): "
                + fmt(self.drifting_residual_initial_h))


def check_h9(setup: Setup, steps: int = 400) -> H9Record:
    """H9: ANODE read as homotopy continuation.

    State ``[h; a]``: ``h(0) = h(x)`` (here a Gaussian feature vector), ``a(0) = 0`` shared by all
    inputs, ``da/dt`` the fixed-point-homotopy field of ``f(·; h) = tanh(W · + h)`` from
    ``a(0) = 0`` at ``λ = t``. (i) ``dh/dt = 0``: ``a(1)`` is the fixed point for ``h``.
    (ii) ``dh/dt = -h``: the condition drifts, and ``a(1)`` is not the fixed point for the final
    ``h(1) = e^{-1} h(0)``.
    """
    gen = torch.Generator().manual_seed(setup.seed + 3)
    toy = setup.toy
    h0 = torch.randn(1, toy.n, generator=gen, dtype=DTYPE)
    a0 = torch.zeros_like(h0)
    grid = torch.linspace(0.0, 1.0, steps + 1, dtype=DTYPE)

    def field_for(drift: float) -> Callable[[Tensor, Tensor], Tensor]:
        def rhs(t: Tensor, state: Tensor) -> Tensor:
            h, a = state[..., : toy.n], state[..., toy.n :]
            f_h = toy.with_condition(h)
            homotopy = make_homotopy(f_h, a0, "fixed_point", jac=f_h.jacobian)
            da = homotopy.field(a, t.expand(a.shape[0]))
            return torch.cat([-drift * h, da], dim=-1)

        return rhs

    out = {}
    for name, drift in (("frozen", 0.0), ("drifting", 1.0)):
        end = odeint(field_for(drift), torch.cat([h0, a0], -1), grid, method="rk4")[-1]
        out[name] = (end[..., : toy.n], end[..., toy.n :])

    def residual(a: Tensor, h: Tensor) -> float:
        return float((a - toy.with_condition(h)(a)).norm())

    (h_f, a_f), (h_d, a_d) = out["frozen"], out["drifting"]
    return H9Record(
        frozen_residual=residual(a_f, h_f),
        drifting_residual_final_h=residual(a_d, h_d),
        drifting_residual_initial_h=residual(a_d, h0),
    )


# --------------------------------------------------------------------------------------------
# H10: start-point distance vs cost
# --------------------------------------------------------------------------------------------


@dataclass
class H10Record(CheckRecord):
    check_id: ClassVar[str] = "H10"
    claim: ClassVar[str] = ("a start closer to z* gives a shorter path; for ε > 0 the nearest "
                            "start costs fewer steps than the farthest (ε = 0 pays a warm-up)")
    epsilons: tuple[float, ...]
    nfe: dict[str, tuple[int, ...]]
    end_residuals: dict[str, tuple[float, ...]]
    path_lengths: dict[str, tuple[float, ...]]
    path_deviation_at_zero: float
    rtol: float

    def conditions(self) -> list[Condition]:
        fp = self.nfe["fixed_point"]
        # the smallest positive ε (ε = 0 pays the step-size warm-up, see check_h10)
        first = min(i for i, e in enumerate(self.epsilons) if e > 0)
        eps_min, eps_max = self.epsilons[first], self.epsilons[-1]
        return [
            Condition("max_λ ||z(λ) - z*|| at ε = 0", self.path_deviation_at_zero, "<", 1e-12),
            Condition(f"NFE at ε = 0 (bound: NFE at ε = {eps_max:g})", fp[0], "<=", fp[-1]),
            *(Condition(f"NFE {kind} at ε = {eps_min:g} (bound: NFE at ε = {eps_max:g})",
                        nfe[first], "<", nfe[-1]) for kind, nfe in self.nfe.items()),
            Condition("path length in z grows strictly with ε (both homotopies)",
                      all(a < b for lengths in self.path_lengths.values()
                          for a, b in itertools.pairwise(lengths)), "==", True),
            Condition("max endpoint residual (dopri5 1e-6)",
                      max(max(v) for v in self.end_residuals.values()), "<", 1e-4),
        ]

    def report(self) -> str:
        lines = [super().report(), "  ε:            " + " ".join(f"{e:>7g}" for e in self.epsilons)]
        for kind, values in self.nfe.items():
            lines.append(f"  NFE {kind:<11s}" + " ".join(f"{v:>7d}" for v in values))
        return "\n".join(lines)


def check_h10(
    setup: Setup,
    epsilons: Sequence[float] = (0.0, 1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0),
    tol: float = 1e-6,
) -> H10Record:
    """H10: ``z0 = z* + ε v`` (unit ``v``), dopri5 at ``rtol = atol = tol``; NFE per ``ε`` for the
    fixed-point and Newton homotopies, and the length ``∫ ||dz/dλ|| dλ`` of the path in ``z``
    (polygon through 101 dense outputs). At ``ε = 0`` the fixed-point path is constant
    (``H(z*, λ) = λ g(z*) = 0``).

    At ``ε = 0`` the field is round-off (~1e-16). Its norm in units of the tolerance is below
    1e-5, for which torchdiffeq's initial-step heuristic falls back to a first step of at most
    1e-4; the step then grows by at most 10x per accepted step, so NFE(0) is not the smallest
    value: the warm-up is a solver artefact.
    """
    toy, z_star = setup.toy, setup.z_star
    gen = torch.Generator().manual_seed(setup.seed + 4)
    v = torch.randn(toy.n, generator=gen, dtype=DTYPE)
    v = v / v.norm()
    nfe: dict[str, list[int]] = {"fixed_point": [], "newton": []}
    residuals: dict[str, list[float]] = {"fixed_point": [], "newton": []}
    lengths: dict[str, list[float]] = {"fixed_point": [], "newton": []}
    deviation = math.nan
    for eps in epsilons:
        for kind in nfe:
            path = homotopy_path(toy, z_star + eps * v, kind, method="dopri5", rtol=tol, atol=tol,
                                 jac=toy.jacobian)
            nfe[kind].append(path.nfe)
            residuals[kind].append(path.end_residual)
            lengths[kind].append(float(path.states.diff(dim=0).norm(dim=-1).sum()))
            if eps == 0 and kind == "fixed_point":
                deviation = float((path.states - z_star).norm(dim=-1).max())
    return H10Record(
        epsilons=tuple(float(e) for e in epsilons),
        nfe={k: tuple(v_) for k, v_ in nfe.items()},
        end_residuals={k: tuple(v_) for k, v_ in residuals.items()},
        path_lengths={k: tuple(v_) for k, v_ in lengths.items()},
        path_deviation_at_zero=deviation,
        rtol=tol,
    )


# --------------------------------------------------------------------------------------------
# The 1-D turning-point toy (author's MATLAB prototype)
# --------------------------------------------------------------------------------------------


@dataclass
class TurningPointRecord(CheckRecord):
    check_id: ClassVar[str] = "Turning point"
    claim: ClassVar[str] = (
        "a = -2: λ-parameterisation breaks down at the turning point and the path never reaches "
        "λ = 1; a = 2: it reaches x = 1"
    )
    lam_turn: float
    x_turn: float
    lam_turn_exact: float
    x_turn_exact: float
    fail_reached_end: bool
    fail_lam_at_s_max: float
    fail_x_at_s_max: float
    fail_max_path_residual: float
    dopri5_failure: str
    dopri5_furthest_lam: float
    rk4_lambda_end_x: float
    rk4_lambda_max_path_residual: float
    success_reached_end: bool
    success_end_x: float
    success_end_s: float
    success_max_path_residual: float
    success_lambda_end_x: float
    arc_fail: HomotopyPath = field(repr=False)
    arc_success: HomotopyPath = field(repr=False)
    lambda_fail: HomotopyPath = field(repr=False)
    lambda_success: HomotopyPath = field(repr=False)

    def conditions(self) -> list[Condition]:
        return [
            Condition("a = -2: |λ_turn - (5 - 2√3)/13|", abs(self.lam_turn - self.lam_turn_exact),
                      "<", 1e-7),
            Condition("a = -2: |x_turn + 2 + √3|", abs(self.x_turn - self.x_turn_exact), "<", 1e-5),
            Condition("a = -2: arc length reaches λ = 1", self.fail_reached_end, "==", False),
            Condition("a = -2: λ at s_max (heading back to 0)", self.fail_lam_at_s_max, "<",
                      self.lam_turn_exact),
            Condition("a = -2: dopri5 in λ fails with a step-size underflow",
                      "underflow" in self.dopri5_failure, "==", True),
            Condition("a = -2: dopri5 in λ stalls at the turning point: |λ_stall - λ_turn|",
                      abs(self.dopri5_furthest_lam - self.lam_turn_exact), "<", 1e-5),
            Condition("a = -2: RK4 in λ leaves H = 0 (max ||H||)",
                      self.rk4_lambda_max_path_residual, ">", 1e-2),
            Condition("a = 2: arc length reaches λ = 1", self.success_reached_end, "==", True),
            Condition("a = 2: |x(1) - 1| (arc length)", abs(self.success_end_x - 1), "<", 1e-7),
            Condition("a = 2: |x(1) - 1| (RK4 in λ)", abs(self.success_lambda_end_x - 1), "<",
                      1e-8),
        ]


def check_turning_point(s_max: float = 10.0, rtol: float = 1e-10) -> TurningPointRecord:
    """The 1-D toy ``H(x, λ) = λ(x² - 1) + (1 - λ)(x - a)`` from ``x = a``, for ``a = ∓2``.

    Arc length with dopri5 (``rtol = atol``) on ``s ∈ [0, s_max]``; λ-parameterised Davidenko ODE
    with dopri5 (fails with a step-size underflow at the turning point) and with RK4 400 steps
    (steps over the singularity and ends off the zero set).
    """
    lam_exact, x_exact = turning_point_closed_form(-2.0)
    start_fail, start_ok = (torch.tensor([a], dtype=DTYPE) for a in (-2.0, 2.0))
    fail_h, ok_h = QuadraticHomotopy(-2.0), QuadraticHomotopy(2.0)

    arc_fail = arclength_path(fail_h, start_fail, s_max, rtol=rtol, atol=rtol)
    arc_ok = arclength_path(ok_h, start_ok, s_max, rtol=rtol, atol=rtol)
    turn = arc_fail.turning_points[0]
    try:
        davidenko_path(fail_h, start_fail, method="dopri5", rtol=rtol, atol=rtol)
        failure, furthest = "no failure", 1.0
    except SolverFailure as err:
        failure = str(err)
        furthest = float(err.furthest_t)  # linear schedule on [0, 1]: t = λ
    lam_fail = davidenko_path(fail_h, start_fail, steps=400)
    lam_ok = davidenko_path(ok_h, start_ok, steps=400)
    return TurningPointRecord(
        lam_turn=turn.lam,
        x_turn=float(turn.z[0]),
        lam_turn_exact=lam_exact,
        x_turn_exact=x_exact,
        fail_reached_end=arc_fail.reached_end,
        fail_lam_at_s_max=float(arc_fail.lambdas[-1]),
        fail_x_at_s_max=float(arc_fail.states[-1, 0]),
        fail_max_path_residual=float(arc_fail.path_residuals.max()),
        dopri5_failure=failure,
        dopri5_furthest_lam=furthest,
        rk4_lambda_end_x=float(lam_fail.end_state[0]),
        rk4_lambda_max_path_residual=float(lam_fail.path_residuals.max()),
        success_reached_end=arc_ok.reached_end,
        success_end_x=float(arc_ok.end_state[0]),
        success_end_s=float(arc_ok.end_params),
        success_max_path_residual=float(arc_ok.path_residuals.max()),
        success_lambda_end_x=float(lam_ok.end_state[0]),
        arc_fail=arc_fail,
        arc_success=arc_ok,
        lambda_fail=lam_fail,
        lambda_success=lam_ok,
    )


# --------------------------------------------------------------------------------------------
# Paths for plot P1
# --------------------------------------------------------------------------------------------


def p1_paths(setup: Setup, steps: int = 400) -> dict[str, HomotopyPath]:
    """The three paths of plot P1 from the same ``z0``: fixed-point homotopy, Newton homotopy
    (both end at ``z*``) and Fig. 1's field (ends at the solution of ``z - f(z) = z0``)."""
    toy = setup.toy
    return {
        kind: homotopy_path(toy, setup.z0, kind, steps=steps, jac=toy.jacobian)
        for kind in ("fixed_point", "newton", "fig1")
    }


__all__ = [
    "CheckRecord",
    "Condition",
    "QuadraticHomotopy",
    "Setup",
    "TanhToy",
    "check_h1",
    "check_h2",
    "check_h3",
    "check_h4",
    "check_h5",
    "check_h6",
    "check_h7",
    "check_h8",
    "check_h9",
    "check_h10",
    "check_quasi_newton",
    "check_turning_point",
    "fmt",
    "make_toy",
    "p1_paths",
    "plot_p1",
    "plot_p2",
    "plot_p3",
    "plot_p4",
    "plot_quasi_newton",
    "turning_point_closed_form",
]


# --------------------------------------------------------------------------------------------
# Figures (profile-independent: no stamp)
# --------------------------------------------------------------------------------------------

KIND_LABELS = {
    "fixed_point": "fixed-point homotopy",
    "newton": r"Newton homotopy ($\lambda = t$)",
    "fig1": r"Fig. 1 field from $z_0 \neq 0$",
}


def plot_p1(paths: dict[str, HomotopyPath], z_star: Tensor):
    """P1: components ``z_i(λ)`` of the three paths from the same ``z0``; dotted lines at ``z*``."""
    import matplotlib.pyplot as plt

    from deqode.book.plots import PALETTE

    fig, axes = plt.subplots(1, 3, figsize=(11.5, 3.8), sharey=True)
    colours = plt.cm.viridis(torch.linspace(0.0, 0.9, z_star.numel()).numpy())
    for ax, (kind, path) in zip(axes, paths.items(), strict=True):
        lam = path.lambdas.numpy()
        for i, colour in enumerate(colours):
            ax.plot(lam, path.states[:, i].numpy(), color=colour, linewidth=1.6,
                    label=f"$z_{i + 1}$")
            ax.axhline(float(z_star[i]), color=colour, linestyle=":", linewidth=1.0)
        ax.plot([1.0] * z_star.numel(), path.end_state.numpy(), "o", color=PALETTE[kind],
                markersize=5, label=r"$z(1)$")
        ax.set_title(KIND_LABELS[kind], color=PALETTE[kind])
        ax.set_xlabel(r"$\lambda$")
        ax.set_xlim(0, 1.04)
    axes[0].set_ylabel(r"$z_i(\lambda)$")
    handles, labels = axes[0].get_legend_handles_labels()
    handles.append(plt.Line2D([], [], color="0.3", linestyle=":"))
    labels.append(r"$z^*_i$ (fixed point)")
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return fig


def plot_p2(h1: H1Record, h4: H4Record, h5: H5Record, h7: H7Record, newton_residuals: list[float]):
    """P2: residual decay. Left: ``||g||/||g(z0)||`` against ``1 - λ`` (log-log) for the two
    homotopies. Right: against ``t`` for the Newton flow (``e^{-t}``), the naive flow (inside its
    bounds ``e^{-(1±L)t}``) and their Euler(h = 1) discretisations: Newton's method and Picard."""
    import matplotlib.pyplot as plt

    from deqode.book.plots import PALETTE

    fig, (left, right) = plt.subplots(1, 2, figsize=(13.0, 4.0))
    for kind, path in (("fixed_point", h1.path), ("newton", h4.path)):
        one_minus = (1 - path.lambdas[:-1]).numpy()
        ratio = (path.residuals[:-1] / path.residuals[0]).numpy()
        left.loglog(one_minus, ratio, color=PALETTE[kind], linewidth=2, label=KIND_LABELS[kind])
    grid = (1 - h4.path.lambdas[:-1]).numpy()
    left.loglog(grid, grid, color="black", linestyle="--", linewidth=1, label=r"$1 - \lambda$")
    left.invert_xaxis()
    left.set_xlabel(r"$1 - \lambda$ (path runs left to right)")
    left.set_ylabel(r"$\|g(z(\lambda))\| \,/\, \|g(z_0)\|$")
    left.set_title(r"homotopies on $\lambda \in [0, 1]$")
    left.legend()

    T_max = float(h5.trajectory.times[-1])
    t = h5.trajectory.times.numpy()
    r = (h5.trajectory.residuals / h5.trajectory.residuals[0]).numpy()
    right.semilogy(t, r, color=PALETTE["newton"], linewidth=2.5, label="continuous Newton flow")
    right.semilogy(t, torch.exp(-h5.trajectory.times).numpy(), color="black", linestyle="--",
                   linewidth=1, label=r"$e^{-t}$")
    naive = h7.trajectory
    keep = naive.times <= T_max
    tn = naive.times[keep]
    right.semilogy(tn.numpy(), (naive.residuals[keep] / naive.residuals[0]).numpy(),
                   color=PALETTE["picard"], linewidth=2, label=r"naive flow $\dot z = f(z) - z$")
    L = h7.contraction_bound
    right.fill_between(tn.numpy(), torch.exp(-(1 + L) * tn).numpy(),
                       torch.exp(-(1 - L) * tn).numpy(), color=PALETTE["picard"], alpha=0.08,
                       label=r"bounds $e^{-(1\pm L)t}$, $L = \|W\|_2$")
    newton = torch.tensor(newton_residuals) / newton_residuals[0]
    right.semilogy(range(len(newton)), newton.numpy(), "s", color=PALETTE["newton"],
                   markerfacecolor="white",
                   label="Newton's method = Euler ($h = 1$) on Newton flow")
    picard = torch.tensor(h7.picard_residuals) / h7.picard_residuals[0]
    right.semilogy(range(len(picard)), picard.numpy(), "o", color=PALETTE["picard"],
                   markerfacecolor="white", label="Picard = Euler ($h = 1$) on naive flow")
    right.set_ylim(1e-17, 2)
    right.set_xlim(0, T_max)
    right.set_xlabel("$t$ (iteration $k$ for the markers)")
    right.set_ylabel(r"$\|g(z(t))\| \,/\, \|g(z_0)\|$")
    right.set_title("flows on $t \\in [0, \\infty)$ and their Euler steps")
    right.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fig.tight_layout()
    return fig


def plot_quasi_newton(record: QuasiNewtonRecord):
    """Residual histories of Newton's method, Broyden and Picard from the same start."""
    import matplotlib.pyplot as plt

    from deqode.book.plots import PALETTE

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    styles = {
        "newton": ("Newton (exact $(I - J_f)^{-1}$)", PALETTE["newton"], "s"),
        "broyden": ("Broyden (low-rank inverse, starts at $I$)", PALETTE["deq"], "D"),
        "picard": ("Picard $z \\leftarrow f(z)$", PALETTE["picard"], "o"),
    }
    for method, history in record.residuals.items():
        label, colour, marker = styles[method]
        ax.semilogy(range(len(history)), history, marker=marker, color=colour, markersize=4,
                    linewidth=1.5, label=f"{label}: {record.iterations[method]} it.")
    ax.axhline(record.tol, color="0.4", linestyle=":", linewidth=1, label=f"tol = {record.tol:g}")
    ax.set_xlabel("iteration $k$")
    ax.set_ylabel(r"$\|z_k - f(z_k)\|$")
    ax.set_title("Broyden as quasi-Newton on the toy DEQ")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _zero_set_curve(h: QuadraticHomotopy, x_range: tuple[float, float]) -> tuple[Tensor, Tensor]:
    """``(λ, x)`` points of the real zero set with ``λ ∈ [0, 1.05]``; NaN breaks at the poles."""
    x = torch.linspace(*x_range, 20001, dtype=DTYPE)
    lam = h.zero_set(x)
    lam = torch.where((lam >= 0) & (lam <= 1.05), lam, torch.nan)
    jump = torch.cat([torch.zeros(1, dtype=torch.bool), (lam.diff().abs() > 0.05)])
    lam = torch.where(jump, torch.nan, lam)
    return lam, x


def plot_p3(record: TurningPointRecord):
    """P3: the 1-D toy in the ``(λ, x)`` plane for ``a = -2`` (turning point, never reaches
    ``λ = 1``) and ``a = 2`` (reaches ``x = 1``): zero set, arc-length path, RK4-in-λ path."""
    import matplotlib.pyplot as plt

    from deqode.book.plots import PALETTE

    fig, axes = plt.subplots(1, 2, figsize=(11.5, 4.2))
    cases = (
        (-2.0, record.arc_fail, record.lambda_fail, (-13.0, 2.5)),
        (2.0, record.arc_success, record.lambda_success, (-4.0, 3.0)),
    )
    for ax, (a, arc, lam_path, x_range) in zip(axes, cases, strict=True):
        lam0, x0 = _zero_set_curve(QuadraticHomotopy(a), x_range)
        ax.plot(lam0.numpy(), x0.numpy(), color="0.75", linewidth=5, solid_capstyle="round",
                label="zero set $H(x, \\lambda) = 0$ (closed form)")
        ax.plot(arc.lambdas.numpy(), arc.states[:, 0].numpy(), color=PALETTE["fixed_point"],
                linewidth=2, label=f"arc length $s \\in [0, {float(arc.params[-1]):g}]$")
        ax.plot(lam_path.lambdas.numpy(), lam_path.states[:, 0].numpy(), color=PALETTE["fig1"],
                linestyle="--", linewidth=1.5, label="Davidenko ODE in $\\lambda$ (RK4)")
        ax.plot([0], [a], "o", color="black", label=f"start $x = a = {a:g}$")
        ax.axvline(1.0, color="0.4", linestyle=":", linewidth=1)
        ax.plot([1, 1], [-1, 1], "x", color="black", markersize=8, label="roots of $x^2 - 1$")
        ax.set_xlim(-0.02, 1.05)
        ax.set_ylim(*x_range)
        ax.set_xlabel(r"$\lambda$")
        ax.set_ylabel("$x$")
    axes[0].plot([record.lam_turn], [record.x_turn], "*", color=PALETTE["newton"], markersize=14,
                 label=f"turning point $\\lambda = {record.lam_turn:.4f}$")
    axes[0].set_title("$a = -2$: turning point, $\\lambda = 1$ never reached")
    axes[1].set_title("$a = 2$: monotone path to $x = 1$")
    axes[0].legend(fontsize=7.5, loc="lower right")
    axes[1].legend(fontsize=7.5, loc="lower right")
    fig.tight_layout()
    return fig


def plot_p4(record: H10Record):
    """P4: NFE of dopri5 (rtol = atol = 1e-6) against the start distance ``||z0 - z*|| = ε``.

    ``ε = 0`` is drawn at a symbolic position left of the smallest positive ``ε`` (tick "0")."""
    import matplotlib.pyplot as plt

    from deqode.book.plots import PALETTE

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    eps = torch.tensor(record.epsilons, dtype=DTYPE)
    positive = eps > 0
    zero_at = float(eps[positive].min()) / 10
    position = torch.where(positive, eps, torch.full_like(eps, zero_at))
    for kind, nfe in record.nfe.items():
        values = torch.tensor(nfe, dtype=DTYPE)
        ax.semilogx(position[positive].numpy(), values[positive].numpy(), marker="o",
                    color=PALETTE[kind], label=KIND_LABELS[kind].split(" (")[0])
        if not bool(positive.all()):
            ax.plot(position[~positive].numpy(), values[~positive].numpy(), marker="o",
                    markerfacecolor="white", color=PALETTE[kind], linestyle="none",
                    markersize=7 if kind == "fixed_point" else 4)
    ticks = [zero_at] + [10.0**k for k in range(round(math.log10(float(eps[positive].min()))),
                                                 round(math.log10(float(eps.max()))) + 1)]
    ax.set_xticks(ticks, ["0"] + [f"$10^{{{round(math.log10(t))}}}$" for t in ticks[1:]])
    ax.minorticks_off()
    if not bool(positive.all()):
        ax.axvline(math.sqrt(zero_at * float(eps[positive].min())), color="0.5", linewidth=0.8,
                   linestyle=(0, (2, 2)))
        ax.annotate("$z_0 = z^*$: constant path;\nNFE = step-size warm-up", (zero_at,
                    float(record.nfe["fixed_point"][0])), xytext=(8, -30),
                    textcoords="offset points", fontsize=8, color="0.3")
    ax.set_xlabel(r"start distance $\|z_0 - z^*\| = \varepsilon$")
    ax.set_ylabel(f"NFE (dopri5, rtol = atol = {record.rtol:g})")
    ax.set_title("a start closer to the fixed point costs fewer evaluations")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig
