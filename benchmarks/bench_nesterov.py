"""Per-step cost of the Nesterov solver against torchdiffeq's ``euler`` at equal step count.

Both methods take one evaluation of f per step, so any difference is the solver's own work (the
momentum update: a few extra tensor operations per step) and its Python overhead. Measured in one
run, on the same machine, fields and grids, alternating the two methods and reporting the median
over repeats of the time per step and the ratio nesterov / euler:

* ``linear``: f(t, x) = -x on a state of n numbers (f almost free: the worst case for the ratio),
* ``mlp``: a 2-layer tanh MLP on (batch, 32) states (a cheap learned field),
* ``conv``: the ODE-Net field of the classification task (GN-ReLU-ConcatConv x2, width 16 on 8x8
  maps in smoke; width 64 on 6x6 maps in the paper profile),

each as a forward solve and as forward + backward (direct backpropagation through the solver).
The smoke profile uses one intra-op thread (small tensors on a shared CPU; the table says so).

    python benchmarks/bench_nesterov.py --profile smoke --out results/smoke/benchmarks

writes ``nesterov.md`` (a markdown table with the machine description), ``nesterov.png`` and
``nesterov.json``; ``--quick`` is a tiny configuration for tests.
"""

from __future__ import annotations

import statistics
import time

import torch
from torch import nn
from torchdiffeq import odeint

import deqode  # noqa: F401  (registers method="nesterov")
from deqode.book import benchmarking
from deqode.models.layers import ConvField
from deqode.solvers import nesterov_kernel
from deqode.solvers.nesterov import step_grid

NAME = "nesterov"
TITLE = "Nesterov solver: per-step cost against euler at equal step count"
SMOKE_NOTE = "Smoke profile: small sizes on a shared CPU, not a paper-scale measurement."
SETTINGS = {
    "smoke": {"steps": 40, "repeats": 15, "threads": 1, "device": "cpu",
              "linear": (1_000, 100_000), "mlp": (64, 1024), "conv": ((16, 8, 64),),
              "exact": {"steps": 32, "linear": (1_000, 100_000)}},
    "paper": {"steps": 100, "repeats": 15, "threads": None, "device": "auto",
              "linear": (1_000, 100_000, 1_000_000), "mlp": (64, 1024, 16384),
              "conv": ((16, 8, 64), (64, 6, 128)),
              "exact": {"steps": 128, "linear": (100_000, 1_000_000)}},
    "quick": {"steps": 4, "repeats": 1, "threads": 1, "device": "cpu",
              "linear": (100,), "mlp": (8,), "conv": ((4, 4, 2),)},
}


class MLPField(nn.Module):
    def __init__(self, dim: int = 32, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, dim))

    def forward(self, t, x):
        return self.net(x)


class LinearField(nn.Module):
    def forward(self, t, x):
        return -x


def cases(setting: dict, device: torch.device
          ) -> list[tuple[str, nn.Module, torch.Tensor, int]]:
    """(description, field, initial state, steps) for every benchmarked size; the ``exact``
    rows (added after the first measurements, see the table text) take a power-of-two number
    of steps, whose float grid on [0, 1] has exactly equal steps."""
    steps = setting["steps"]
    out: list[tuple[str, nn.Module, torch.Tensor, int]] = []
    for n in setting["linear"]:
        out.append((f"linear, n={n:,}", LinearField(), torch.randn(n, device=device), steps))
    for batch in setting["mlp"]:
        out.append((f"mlp, batch {batch}x32", MLPField().to(device),
                    torch.randn(batch, 32, device=device), steps))
    for width, size, batch in setting["conv"]:
        field = ConvField(width, max_groups=min(32, width), time_dependent=True,
                          pre_activation=True).to(device)
        field.prepare(torch.zeros(batch, width, size, size, device=device))
        out.append((f"conv, {batch}x{width}x{size}x{size}", field,
                    torch.randn(batch, width, size, size, device=device), steps))
    exact = setting.get("exact", {})
    for n in exact.get("linear", ()):
        out.append((f"linear, n={n:,}, {exact['steps']} exact steps", LinearField(),
                    torch.randn(n, device=device), exact["steps"]))
    return out


def clock(device: torch.device):
    """The clock of a measurement: the calling thread's CPU time where all the work runs on it
    (CPU, one intra-op thread: the time other processes take on a shared machine is not
    counted), else the wall clock."""
    if device.type == "cpu" and torch.get_num_threads() == 1:
        return time.thread_time
    return time.perf_counter


def time_solve(field: nn.Module, x0: torch.Tensor, method: str, steps: int, backward: bool,
               device: torch.device) -> float:
    """Seconds for one solve of ``steps`` steps on [0, 1] (plus backward if asked)."""
    t = torch.tensor([0.0, 1.0], device=device)
    options = {"grid_constructor": step_grid(1.0 / steps)}
    if method == "nesterov":
        options["beta"] = 0.5
    x = x0.detach().requires_grad_(backward)
    now = clock(device)
    benchmarking.synchronize(device)
    started = now()
    if backward:
        out = odeint(field, x, t, method=method, options=options)[-1]
        out.square().mean().backward()
    else:
        with torch.no_grad():
            odeint(field, x, t, method=method, options=options)
    benchmarking.synchronize(device)
    return now() - started


def measure(setting: dict, device: torch.device) -> list[dict[str, object]]:
    repeats = setting["repeats"]
    rows = []
    for name, field, x0, steps in cases(setting, device):
        for backward in (False, True):
            for method in ("euler", "nesterov"):  # warm-up
                time_solve(field, x0, method, steps, backward, device)
            timings: dict[str, list[float]] = {"euler": [], "nesterov": []}
            for _ in range(repeats):
                for method in ("euler", "nesterov"):  # alternate: same load for both
                    timings[method].append(time_solve(field, x0, method, steps, backward,
                                                      device))
            euler = statistics.median(timings["euler"]) / steps
            nag = statistics.median(timings["nesterov"]) / steps
            rows.append({"case": name, "pass": "forward + backward" if backward else "forward",
                         "euler_ms": 1e3 * euler, "nesterov_ms": 1e3 * nag,
                         "ratio": nag / euler})
    return rows


def markdown(rows: list[dict[str, object]], setting: dict, profile: str, device: torch.device,
             seconds: float) -> str:
    clock_name = ("the thread's CPU time (one intra-op thread: what other processes take of a "
                  "shared machine is not counted; its caches still are)." if
                  clock(device) is time.thread_time else "the wall clock.")
    exact = setting.get("exact")
    kernel_note = (" (built and bitwise on this machine)" if nesterov_kernel.available() else
                   " (not on this machine: no C compiler, switched off, or not bitwise here)")
    exact_note = "" if not exact else (
        f" The rows marked exact steps (added after the first runs, to show the equal-step "
        f"path) take {exact['steps']} steps, a power of two: that float grid is exactly "
        "uniform.")
    lines = benchmarking.introduction(TITLE, profile, SMOKE_NOTE, (
        f"Both methods take one evaluation of f per step, so the ratio is the cost of the NAG "
        f"momentum update (a few elementwise operations on the state, and their backward) and its "
        f"Python overhead; it tends to 1 as f gets more expensive. {setting['steps']} steps of "
        f"1/{setting['steps']} per solve on [0, 1] (beta = 0.5), median of "
        f"{setting['repeats']} alternating repeats after a warm-up, one run, timed by "
        f"{clock_name} Both are called through torchdiffeq's `odeint`; nesterov runs "
        "its own copy of torchdiffeq's fixed-grid loop (same calls, callbacks and "
        "interpolation) that computes the step scalars once per solve and calls the field below "
        "torchdiffeq's per-call wrapper. On the CPU (one thread) the momentum update and the "
        f"next look-ahead are one fused C loop{kernel_note}, instead of five to eight "
        "elementwise torch calls (the same roundings: a self-check and the tests compare the "
        "bits); under autograd each step's update is one graph node with a hand-written "
        "backward (iterates bitwise, gradients equal to rounding). The float32 grid of "
        f"{setting['steps']} steps on [0, 1] has steps unequal by an ulp, so nearly every "
        "nesterov step takes the unequal-step rule (the shift, the look-ahead and the shift's "
        "share of the increment: three more passes without the kernel)." + exact_note),
        benchmarking.machine(device), seconds)
    lines += [
        "| case | pass | euler (ms/step) | nesterov (ms/step) | ratio nesterov/euler |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['case']} | {r['pass']} | {r['euler_ms']:.4f} | "
                     f"{r['nesterov_ms']:.4f} | {r['ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def figure(rows: list[dict[str, object]], profile: str) -> bytes:
    labels = [f"{r['case']}\n{r['pass']}" for r in rows]
    fig, ax = benchmarking.subplots(figsize=(7.0, 0.42 * len(rows) + 1.2))
    ax.barh(range(len(rows)), [r["ratio"] for r in rows], color="#2166ac")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("time per step, nesterov / euler")
    ax.set_title("Nesterov vs euler at equal step count", fontsize=10)
    return benchmarking.png_bytes(fig, profile)


def main(argv: list[str] | None = None) -> int:
    run = benchmarking.start(argv, __doc__.splitlines()[0], SETTINGS, smoke_time="< 30 s")
    torch.manual_seed(run.seed)
    started = time.perf_counter()
    rows = measure(run.setting, run.device)
    seconds = time.perf_counter() - started
    record = {"profile": run.profile, "setting": run.setting,
              "machine": benchmarking.machine(run.device), "rows": rows, "seconds": seconds}
    text = markdown(rows, run.setting, run.profile, run.device, seconds)
    benchmarking.write_report(run.out, NAME, record, text, figure(rows, run.profile), seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
