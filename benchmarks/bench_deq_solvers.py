"""DEQ forward solve: deqode's Broyden and Anderson against torchdeq's, on the same maps.

Both libraries solve ``z = f(z)`` from ``z0 = 0`` on the same ``f`` (float32, no autograd graph),
with the same tolerance on the same relative residual ``||f(z) - z|| / (||f(z)|| + 1e-9)`` (per
sample, batch value = max over samples) and the same budget of function evaluations:

* ``tanh``: a synthetic contraction ``f(z) = tanh(W z + x)`` per sample, ``W`` symmetric with
  eigenvalues spread over [-0.95, 0.95] (Lipschitz constant 0.95), ``x`` random; both methods
  converge, so the comparison is evaluations and time *to the tolerance*;
* ``deq-digits`` / ``deq-cifar10`` cell: the DEQ layer ``GN(ReLU(z + F(z; x̃)))`` of
  :func:`deqode.models.build` at its initial weights (eval mode), x̃ from the stem on random
  images; like MDEQ's cell it is not a contraction at initialisation, so both libraries stop at the
  model's budget (30 updates, tol 1e-3) and the comparison is time for the budget and the residual
  reached.

Settings: Broyden memory 30 on both sides (torchdeq ``LBFGS_thres=30``, ``ls=False``); Anderson
memory 5, regularisation 1e-4, mixing 1 (torchdeq ``m=5, lam=1e-4, tau=1``). Differences of the
stopping rules that remain (documented in the table's notes): deqode stops when every sample's
*best* iterate meets ``tol`` (``<=``), torchdeq when the *latest* iterate's batch residual is
``< tol`` (its Broyden also stops after 30 steps without progress within 3 tol); torchdeq's
``max_iter`` counts evaluations for Anderson (the first two are Picard steps) and updates for
Broyden, so its Anderson gets ``max_iter + 1``; its Anderson returns ``f(z)`` of the best iterate
instead of the iterate; its ``lam`` is absolute while deqode's is relative to the residuals' scale
(deqode normalises them). Evaluations are counted by the same wrapper around ``f`` on both sides,
and the residual in the table is recomputed from the returned state with one more (untimed)
evaluation.

Times: wall clock, the two libraries alternating (order flipped every repeat), one warm-up; the
ratio is the median over repeats of (deqode / torchdeq) within a repeat.

    python benchmarks/bench_deq_solvers.py --profile smoke --out results/smoke/benchmarks

writes ``deq_solvers.md``, ``deq_solvers.png`` (residual against evaluations for every case) and
``deq_solvers.json``. ``--quick`` runs a tiny configuration for tests.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import Tensor

from deqode.book import benchmarking
from deqode.models import build
from deqode.models.zoo import entry
from deqode.solvers import fixed_point
from deqode.solvers.fixed_point import REL_EPS

NAME = "deq_solvers"
TITLE = "DEQ forward solve: deqode's Broyden and Anderson against torchdeq"
SMOKE_NOTE = "Smoke profile: small batches on a shared CPU, not a paper-scale measurement."
METHODS = ("broyden", "anderson")
BROYDEN_MEMORY = 30
ANDERSON = {"m": 5, "lam": 1e-4, "beta": 1.0}
#: Per profile: cases as (kind, size, batch, tol, max_iter), repeats, intra-op threads, device.
#: For ``tanh`` the size is the state dimension; for a DEQ cell it is the model name.
SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": {
        "cases": (("tanh", 256, 64, 1e-5, 100), ("cell", "deq-digits", 64, 1e-3, 30),
                  ("cell", "deq-cifar10", 8, 1e-3, 30)),
        "repeats": 5, "threads": 1, "device": "cpu",
    },
    "paper": {
        "cases": (("tanh", 4096, 64, 1e-5, 100), ("cell", "deq-digits", 64, 1e-3, 30),
                  ("cell", "deq-cifar10", 64, 1e-3, 30)),
        "repeats": 9, "threads": None, "device": "auto",
    },
    "quick": {
        "cases": (("tanh", 32, 4, 1e-5, 60), ("cell", "deq-digits", 4, 1e-3, 8)),
        "repeats": 2, "threads": 1, "device": "cpu",
    },
}


# --------------------------------------------------------------------------------------------------
# the maps
# --------------------------------------------------------------------------------------------------


@dataclass
class Case:
    """One fixed-point problem: ``f``, the start ``z0``, the tolerance and the update budget."""

    name: str
    f: Callable[[Tensor], Tensor]
    z0: Tensor
    tol: float
    max_iter: int


def tanh_case(dim: int, batch: int, device: torch.device, seed: int) -> Case:
    """``f(z) = tanh(W z + x)``, ``W = Q diag(linspace(-0.95, 0.95)) Qᵀ``: a 0.95-contraction."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen))
    weight = ((q * torch.linspace(-0.95, 0.95, dim)) @ q.T).to(device)
    x = (0.5 * torch.randn(batch, dim, generator=gen)).to(device)

    def f(z: Tensor) -> Tensor:
        return torch.tanh(z @ weight.T + x)

    return Case(f"tanh map, d={dim}, batch {batch}", f, torch.zeros(batch, dim, device=device),
                0.0, 0)


def cell_case(model_name: str, batch: int, device: torch.device, seed: int) -> Case:
    """The DEQ cell of ``model_name`` at its initial weights, conditioned on random images."""
    spec = entry(model_name)
    torch.manual_seed(seed)
    model = build(model_name).to(device).eval()
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, *spec.input_shape, generator=gen).to(device)
    with torch.no_grad():
        x_tilde = model.stem(images)
    model.cell.prepare(x_tilde)
    state = "x".join(str(s) for s in x_tilde.shape[1:])

    def f(z: Tensor) -> Tensor:
        return model.cell(z)

    return Case(f"{model_name} cell, state {state}, batch {batch}", f, torch.zeros_like(x_tilde),
                0.0, 0)


def make_cases(setting: dict[str, Any], device: torch.device, seed: int) -> list[Case]:
    cases = []
    for kind, size, batch, tol, max_iter in setting["cases"]:
        case = (tanh_case(size, batch, device, seed) if kind == "tanh"
                else cell_case(size, batch, device, seed))
        case.tol, case.max_iter = tol, max_iter
        cases.append(case)
    return cases


# --------------------------------------------------------------------------------------------------
# the two libraries behind one call
# --------------------------------------------------------------------------------------------------


class Counted:
    """``f`` with an evaluation counter; with ``trace`` it also records each evaluation's residual.

    The residual is the batch value (max over samples) of ``||f(z) - z|| / (||f(z)|| + eps)`` at the
    point where ``f`` is evaluated, the same definition for both libraries.
    """

    def __init__(self, f: Callable[[Tensor], Tensor], trace: bool = False) -> None:
        self.f, self.trace, self.calls = f, trace, 0
        self.residuals: list[float] = []

    def __call__(self, z: Tensor) -> Tensor:
        self.calls += 1
        fz = self.f(z)
        if self.trace:
            self.residuals.append(relative_residual(z, fz))
        return fz


def relative_residual(z: Tensor, fz: Tensor) -> float:
    """Batch value (max over samples) of ``||f(z) - z|| / (||f(z)|| + eps)``."""
    z, fz = z.reshape(z.shape[0], -1), fz.reshape(fz.shape[0], -1)
    return ((fz - z).norm(dim=1) / (fz.norm(dim=1) + REL_EPS)).max().item()


def solve_deqode(method: str, f: Callable[[Tensor], Tensor], case: Case) -> Tensor:
    options = {"m": BROYDEN_MEMORY} if method == "broyden" else dict(ANDERSON)
    z, _ = fixed_point(f, case.z0, method, case.tol, case.max_iter, "rel", **options)
    return z


def solve_torchdeq(method: str, f: Callable[[Tensor], Tensor], case: Case) -> Tensor:
    from torchdeq.solver import get_solver

    if method == "broyden":  # max_iter updates after the initial evaluation, as deqode's
        kwargs: dict[str, Any] = {"max_iter": case.max_iter, "LBFGS_thres": BROYDEN_MEMORY,
                                  "ls": False}
    else:  # torchdeq's Anderson counts evaluations: max_iter + 1 matches deqode's budget
        kwargs = {"max_iter": case.max_iter + 1, "m": ANDERSON["m"], "lam": ANDERSON["lam"],
                  "tau": ANDERSON["beta"]}
    with torch.no_grad():
        z, _, _ = get_solver(method)(f, case.z0, tol=case.tol, stop_mode="rel", **kwargs)
    return z


SOLVERS = {"deqode": solve_deqode, "torchdeq": solve_torchdeq}


def _timed(library: str, method: str, case: Case, device: torch.device) -> tuple[float, int]:
    counted = Counted(case.f)
    benchmarking.synchronize(device)
    started = time.perf_counter()
    SOLVERS[library](method, counted, case)
    benchmarking.synchronize(device)
    return time.perf_counter() - started, counted.calls


@dataclass
class Row:
    """One (case, method): both libraries' evaluations, residual reached and times."""

    case: str
    method: str
    tol: float
    max_iter: int
    nfe: dict[str, int] = field(default_factory=dict)
    residual: dict[str, float] = field(default_factory=dict)
    time_s: dict[str, float] = field(default_factory=dict)
    ratio: float = float("nan")
    traces: dict[str, list[float]] = field(default_factory=dict)


def measure(setting: dict[str, Any], device: torch.device, seed: int = 0) -> list[Row]:
    rows = []
    for case in make_cases(setting, device, seed):
        for method in METHODS:
            row = Row(case.name, method, case.tol, case.max_iter)
            for library in SOLVERS:  # untimed run: residual trace and the returned state
                counted = Counted(case.f, trace=True)
                with torch.no_grad():
                    z = SOLVERS[library](method, counted, case)
                    row.residual[library] = relative_residual(z, case.f(z))
                row.traces[library] = counted.residuals
                row.nfe[library] = counted.calls
            for library in SOLVERS:  # warm-up
                _timed(library, method, case, device)
            times: dict[str, list[float]] = {library: [] for library in SOLVERS}
            for repeat in range(setting["repeats"]):
                order = list(SOLVERS) if repeat % 2 == 0 else list(SOLVERS)[::-1]
                for library in order:
                    seconds, calls = _timed(library, method, case, device)
                    if calls != row.nfe[library]:
                        raise RuntimeError(f"{library} {method} on {case.name}: {calls} "
                                           f"evaluations, {row.nfe[library]} in the first run")
                    times[library].append(seconds)
            row.time_s = {library: statistics.median(t) for library, t in times.items()}
            row.ratio = statistics.median(
                a / b for a, b in zip(times["deqode"], times["torchdeq"], strict=True))
            rows.append(row)
            print(f"[{NAME}] {case.name} {method}: NFE {row.nfe}, ratio {row.ratio:.2f}",
                  file=sys.stderr)
    return rows


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------


def markdown(rows: list[Row], setting: dict[str, Any], profile: str, device: torch.device,
             seconds: float) -> str:
    lines = benchmarking.introduction(TITLE, profile, SMOKE_NOTE, (
        "Forward fixed-point solves `z = f(z)` from `z0 = 0` by `deqode.solvers.fixed_point` and "
        "by `torchdeq.solver` on the same `f`, tolerance and evaluation budget (relative residual "
        "`||f(z) - z|| / (||f(z)|| + 1e-9)`, max over the batch; Broyden memory "
        f"{BROYDEN_MEMORY}, Anderson m={ANDERSON['m']}, lam={ANDERSON['lam']:g}, mixing 1). NFE: "
        "evaluations of f counted by one wrapper for both; residual: recomputed on the returned "
        f"state. Time: median of {setting['repeats']} alternating repeats after a warm-up; "
        "ratio: median over repeats of deqode / torchdeq (below 1: deqode faster)."),
        benchmarking.machine(device, "torchdeq"), seconds)
    lines += [
        "| case | method, tol / budget | NFE, deqode / torchdeq | residual, deqode / torchdeq | "
        "time (ms), deqode / torchdeq | time ratio deqode/torchdeq |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.case} | {r.method}, {r.tol:.0e} / {r.max_iter} | {r.nfe['deqode']} / "
            f"{r.nfe['torchdeq']} | {r.residual['deqode']:.2e} / {r.residual['torchdeq']:.2e} | "
            f"{1e3 * r.time_s['deqode']:.1f} / {1e3 * r.time_s['torchdeq']:.1f} | "
            f"**{r.ratio:.2f}** |")
    lines += [
        "",
        "Stopping rules that still differ: deqode stops when every sample's best iterate meets "
        "tol (`<=`), torchdeq when the latest iterate's batch residual is `< tol`, and its "
        "Broyden also stops after 30 steps without progress within 3 tol; a full Broyden memory "
        "restarts from the identity in deqode and overwrites the oldest update in torchdeq (no "
        "difference within 30 updates); torchdeq's Anderson takes two Picard steps first, uses "
        "an absolute `lam` (deqode normalises the residuals, so its `lam` is relative) and "
        "returns `f(z)` of its best iterate. The DEQ cells at initialisation are not contractions "
        "(MDEQ's cell neither): both libraries use the whole budget there.",
    ]
    return "\n".join(lines) + "\n"


def figure(rows: list[Row], profile: str) -> bytes:
    cases = list(dict.fromkeys(r.case for r in rows))
    fig, axes = benchmarking.subplots(1, len(cases), figsize=(3.3 * len(cases), 3.3),
                                      squeeze=False)
    styles = {("broyden", "deqode"): ("#1b7837", "-"), ("broyden", "torchdeq"): ("#1b7837", "--"),
              ("anderson", "deqode"): ("#2166ac", "-"), ("anderson", "torchdeq"): ("#2166ac", "--")}
    for ax, case in zip(axes[0], cases, strict=True):
        for r in (r for r in rows if r.case == case):
            for library, trace in r.traces.items():
                color, dash = styles[(r.method, library)]
                ax.semilogy(range(1, len(trace) + 1), trace, dash, color=color, lw=1.3,
                            label=f"{r.method}, {library}")
        ax.axhline(rows[[r.case for r in rows].index(case)].tol, color="k", lw=0.6, ls=":")
        ax.set_title(case, fontsize=8)
        ax.set_xlabel("evaluations of f")
    axes[0][0].set_ylabel("relative residual at the evaluated point")
    axes[0][0].legend(fontsize=6)
    return benchmarking.png_bytes(fig, profile)


def main(argv: list[str] | None = None) -> int:
    run = benchmarking.start(argv, __doc__.splitlines()[0], SETTINGS)
    try:
        import torchdeq  # noqa: F401
    except ImportError:
        print("bench_deq_solvers needs torchdeq==0.1.0: pip install -e '.[bench]' (it is also in "
              "the dev extra that `make` installs)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    rows = measure(run.setting, run.device, run.seed)
    seconds = time.perf_counter() - started
    record = {"profile": run.profile, "setting": run.setting,
              "machine": benchmarking.machine(run.device, "torchdeq"),
              "rows": [asdict(r) for r in rows], "seconds": seconds}
    text = markdown(rows, run.setting, run.profile, run.device, seconds)
    benchmarking.write_report(run.out, NAME, record, text, figure(rows, run.profile), seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
