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

import argparse
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torchdiffeq import odeint

import deqode  # noqa: F401  (registers method="nesterov")
from deqode.choices import check_profile
from deqode.devices import describe_device, resolve_device
from deqode.metrics import cpu_model
from deqode.models.layers import ConvField
from deqode.results import write_bytes_atomic, write_json_atomic, write_text_atomic
from deqode.solvers.nesterov import step_grid

NAME = "nesterov"
TITLE = "Nesterov solver: per-step cost against euler at equal step count"
SMOKE_NOTE = "Smoke profile: small sizes on a shared CPU, not a paper-scale measurement."
SETTINGS = {
    "smoke": {"steps": 40, "repeats": 5, "threads": 1, "device": "cpu",
              "linear": (1_000, 100_000), "mlp": (64, 1024), "conv": ((16, 8, 64),)},
    "paper": {"steps": 100, "repeats": 15, "threads": None, "device": "auto",
              "linear": (1_000, 100_000, 1_000_000), "mlp": (64, 1024, 16384),
              "conv": ((16, 8, 64), (64, 6, 128))},
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


def cases(setting: dict, device: torch.device) -> list[tuple[str, nn.Module, torch.Tensor]]:
    """(description, field, initial state) for every benchmarked size."""
    out: list[tuple[str, nn.Module, torch.Tensor]] = []
    for n in setting["linear"]:
        out.append((f"linear, n={n:,}", LinearField(), torch.randn(n, device=device)))
    for batch in setting["mlp"]:
        out.append((f"mlp, batch {batch}x32", MLPField().to(device),
                    torch.randn(batch, 32, device=device)))
    for width, size, batch in setting["conv"]:
        field = ConvField(width, max_groups=min(32, width), time_dependent=True,
                          pre_activation=True).to(device)
        field.prepare(torch.zeros(batch, width, size, size, device=device))
        out.append((f"conv, {batch}x{width}x{size}x{size}", field,
                    torch.randn(batch, width, size, size, device=device)))
    return out


def time_solve(field: nn.Module, x0: torch.Tensor, method: str, steps: int, backward: bool,
               device: torch.device) -> float:
    """Seconds for one solve of ``steps`` equal steps on [0, 1] (plus backward if asked)."""
    t = torch.tensor([0.0, 1.0], device=device)
    options = {"grid_constructor": step_grid(1.0 / steps)}
    if method == "nesterov":
        options["beta"] = 0.5
    x = x0.detach().requires_grad_(backward)
    sync: Callable[[], None] = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    if backward:
        out = odeint(field, x, t, method=method, options=options)[-1]
        out.square().mean().backward()
    else:
        with torch.no_grad():
            odeint(field, x, t, method=method, options=options)
    sync()
    return time.perf_counter() - start


def measure(setting: dict, device: torch.device) -> list[dict[str, object]]:
    steps, repeats = setting["steps"], setting["repeats"]
    rows = []
    for name, field, x0 in cases(setting, device):
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


def machine(device: torch.device) -> str:
    """Device, CPU model, threads and versions, for the table's caption."""
    where = f"{describe_device(device)}, host " if device.type == "cuda" else ""
    return (f"{where}CPU {cpu_model()}, {torch.get_num_threads()} intra-op thread(s), "
            f"torch {torch.__version__}, Python {platform.python_version()}")


def markdown(rows: list[dict[str, object]], setting: dict, profile: str, device: torch.device,
             seconds: float) -> str:
    lines = [f"### {TITLE}", ""]
    if profile == "smoke":
        lines += [f"*{SMOKE_NOTE}*", ""]
    lines += [
        f"Both methods take one evaluation of f per step, so the ratio is the cost of the NAG "
        f"momentum update (a few elementwise operations on the state, and their backward) and its "
        f"Python overhead; it tends to 1 as f gets more expensive. {setting['steps']} equal steps "
        f"per solve on [0, 1] (beta = 0.5), median of {setting['repeats']} alternating repeats "
        f"after a warm-up, one run. Machine: {machine(device)}. The benchmark took "
        f"{seconds:.0f} s.",
        "",
        "| case | pass | euler (ms/step) | nesterov (ms/step) | ratio nesterov/euler |",
        "|---|---|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['case']} | {r['pass']} | {r['euler_ms']:.4f} | "
                     f"{r['nesterov_ms']:.4f} | {r['ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def figure(rows: list[dict[str, object]], profile: str) -> bytes:
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deqode import plots

    plots.use_book_style()
    labels = [f"{r['case']}\n{r['pass']}" for r in rows]
    fig, ax = plt.subplots(figsize=(7.0, 0.42 * len(rows) + 1.2))
    ax.barh(range(len(rows)), [r["ratio"] for r in rows], color="#2166ac")
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("time per step, nesterov / euler")
    ax.set_title("Nesterov vs euler at equal step count", fontsize=10)
    if profile == "smoke":
        from deqode.notebook import SMOKE_LABEL

        plots.stamp(fig, SMOKE_LABEL)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=130)
    plt.close(fig)
    return buffer.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke", help="smoke (CPU, < 30 s) or paper")
    parser.add_argument("--out", default=None,
                        help="folder (default results/<profile>/benchmarks)")
    parser.add_argument("--device", default=None,
                        help="auto, cpu, cuda[:N] (default: cpu for smoke, auto for paper)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true",
                        help="tiny configuration to test the script")
    args = parser.parse_args(argv)
    check_profile(args.profile)
    setting = SETTINGS["quick" if args.quick else args.profile]
    device = resolve_device(args.device or setting["device"])
    out = Path(args.out or f"results/{args.profile}/benchmarks")
    if setting["threads"]:  # small tensors on a shared CPU: one thread, less noise
        torch.set_num_threads(setting["threads"])
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    rows = measure(setting, device)
    seconds = time.perf_counter() - started
    text = markdown(rows, setting, args.profile, device, seconds)
    write_json_atomic(out / f"{NAME}.json", {"profile": args.profile, "setting": setting,
                                              "machine": machine(device), "rows": rows,
                                              "seconds": seconds})
    write_bytes_atomic(out / f"{NAME}.png", figure(rows, args.profile))
    write_text_atomic(out / f"{NAME}.md", text)
    print(text)
    print(f"[bench_{NAME}] {seconds:.1f} s -> {out / (NAME + '.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
