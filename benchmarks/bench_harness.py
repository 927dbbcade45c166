"""Per-step overhead of the training harness (``deqode.train.fit``) over a bare training loop.

The same model, data, optimiser and schedule, trained for the same steps two ways:

* **harness**: ``deqode.train.fit`` (one epoch, batches in dataset order, Adam with the cosine
  schedule, the saved-tensor meter off as by default), with everything it does per step: the
  failure checks, the gradient norm, the metrics, the NFE counters, the phase timers;
* **bare**: a hand-written loop: ``zero_grad``, cross-entropy, ``backward``, ``step``, the
  scheduler's ``step``, and nothing else.

The model notes the clock at every training forward, so a step is the time between two forwards
(everything the loop does in between, the data slicing included), and set-up, evaluation and
checkpoint are left out. Reported: the median step over the steps after a warm-up, as the
median of alternating repeats (harness, bare, bare, harness, ...), in thread CPU time (what the
loop itself spent: on a shared machine much steadier than wall time) and in wall time, and the
overhead harness / bare - 1. Both loops start from the same seed; the table says whether they
end with the same parameters (bit for bit). Cases: a small MLP (where a fixed per-step cost shows
most) and a small conv net.

    python benchmarks/bench_harness.py --profile smoke --out results/smoke/benchmarks

writes ``harness.md``, ``harness.png`` and ``harness.json``; ``--quick`` is a tiny configuration
for tests.
"""

from __future__ import annotations

import itertools
import statistics
import tempfile
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from deqode.book import benchmarking
from deqode.train import TrainConfig, fit
from deqode.train.rng import seed_everything

NAME = "harness"
TITLE = "Training harness: per-step overhead of deqode.train.fit over a bare loop"
SMOKE_NOTE = "Smoke profile: small models on a shared CPU, not a paper-scale measurement."
SETTINGS = {
    "smoke": {"steps": 60, "warmup": 10, "repeats": 5, "threads": 1, "device": "cpu",
              "mlp": (128, 256), "conv": (64, 16, 16)},
    "paper": {"steps": 200, "warmup": 20, "repeats": 9, "threads": None, "device": "auto",
              "mlp": (128, 1024), "conv": (128, 32, 32)},
    "quick": {"steps": 6, "warmup": 1, "repeats": 1, "threads": 1, "device": "cpu",
              "mlp": (8, 16), "conv": (4, 4, 8)},
}
CLASSES = 10


class Stamped(nn.Module):
    """``body`` that notes (thread CPU time, wall time) at every training forward."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body
        self.stamps: list[tuple[float, float]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.stamps.append((time.thread_time(), time.perf_counter()))
        return self.body(x)


def mlp(hidden: int) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(64, hidden), nn.ReLU(),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, CLASSES))


def convnet(width: int, size: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.GroupNorm(min(8, width), width), nn.ReLU(),
        nn.Conv2d(width, width, 3, padding=1), nn.GroupNorm(min(8, width), width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, CLASSES))


class Batches:
    """Random inputs and labels as ``inputs`` / ``targets`` tensors (the harness slices them
    in order, ``data_order="in_order"``; the bare loop slices them the same way)."""

    def __init__(self, shape: tuple[int, ...], n: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.inputs = torch.randn(n, *shape, generator=gen)
        self.targets = torch.randint(0, CLASSES, (n,), generator=gen)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.inputs[i], self.targets[i]


class Case:
    """One benchmarked model: its factory, input shape and batch size."""

    def __init__(self, name: str, build: Callable[[], nn.Module], shape: tuple[int, ...],
                 batch: int, steps: int) -> None:
        self.name, self.build, self.shape, self.batch, self.steps = name, build, shape, batch, steps
        self.models: list[Stamped] = []

    def model(self) -> Stamped:
        model = Stamped(self.build())
        self.models.append(model)
        return model

    def dataset(self, split: str) -> Batches:
        n = self.batch * (self.steps if split == "train" else 1)
        return Batches(self.shape, n, 0 if split == "train" else 1)

    def config(self, seed: int) -> TrainConfig:
        return TrainConfig(name=f"bench-harness-{self.name}", model=self.model,
                           dataset=self.dataset, batch_size=self.batch,
                           test_batch_size=self.batch, data_order="in_order", lr=1e-3,
                           schedule="cosine", seed=seed)


def cases(setting: dict) -> list[Case]:
    batch, hidden = setting["mlp"]
    conv_batch, width, size = setting["conv"]
    steps = setting["steps"]
    return [Case(f"mlp 64-{hidden}-{hidden}-10, batch {batch}", lambda: mlp(hidden), (64,),
                 batch, steps),
            Case(f"conv 2x{width}ch on 3x{size}x{size}, batch {conv_batch}",
                 lambda: convnet(width, size), (3, size, size), conv_batch, steps)]


def run_harness(case: Case, device: torch.device, seed: int, folder: str) -> Stamped:
    result = fit(case.config(seed), profile="smoke", device=device, results_dir=folder,
                 progress=False, quiet=True)
    if result.state != "completed":
        raise RuntimeError(f"harness run {case.name} {result.state}: {result.reason}")
    return case.models[-1]


def run_bare(case: Case, device: torch.device, seed: int) -> Stamped:
    """The loop ``fit`` runs, written out: seeded as ``fit`` seeds, Adam, cosine schedule."""
    config = case.config(seed)
    seed_everything(seed)
    model = case.model().to(device)
    seed_everything(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, case.steps,
                                                          eta_min=config.eta_min)
    data = case.dataset("train")
    model.train()
    for i in range(case.steps):
        rows = slice(i * case.batch, (i + 1) * case.batch)
        x, y = data.inputs[rows].to(device), data.targets[rows].to(device)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        schedule.step()
    benchmarking.synchronize(device)
    return model


def step_times(model: Stamped, warmup: int) -> tuple[float, float]:
    """Median (CPU, wall) seconds between consecutive training forwards after ``warmup``."""
    steps = list(itertools.pairwise(model.stamps[warmup:]))
    return (statistics.median(b[0] - a[0] for a, b in steps),
            statistics.median(b[1] - a[1] for a, b in steps))


def same_parameters(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p.detach().cpu(), q.detach().cpu())
               for p, q in zip(a.parameters(), b.parameters(), strict=True))


def measure(setting: dict, device: torch.device, seed: int) -> list[dict[str, object]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-harness-") as folder:
        for case in cases(setting):
            run_harness(case, device, seed, folder)  # warm-up of both
            run_bare(case, device, seed)
            times: dict[str, list[tuple[float, float]]] = {"harness": [], "bare": []}
            same = True
            for repeat in range(setting["repeats"]):
                order = ("harness", "bare") if repeat % 2 == 0 else ("bare", "harness")
                models = {}
                for kind in order:
                    models[kind] = (run_harness(case, device, seed, folder) if kind == "harness"
                                    else run_bare(case, device, seed))
                    times[kind].append(step_times(models[kind], setting["warmup"]))
                same = same and same_parameters(models["harness"], models["bare"])
                case.models.clear()
            row: dict[str, object] = {"case": case.name, "steps": case.steps,
                                      "same_parameters": same}
            for clock, index in (("cpu", 0), ("wall", 1)):
                harness = statistics.median(t[index] for t in times["harness"])
                bare = statistics.median(t[index] for t in times["bare"])
                row.update({f"bare_{clock}_ms": 1e3 * bare, f"harness_{clock}_ms": 1e3 * harness,
                            f"overhead_{clock}_pct": 100.0 * (harness / bare - 1.0)})
            rows.append(row)
    return rows


def markdown(rows: list[dict[str, object]], setting: dict, profile: str, device: torch.device,
             seconds: float) -> str:
    lines = benchmarking.introduction(TITLE, profile, SMOKE_NOTE, (
        f"One epoch of {setting['steps']} steps through `deqode.train.fit` against a bare loop "
        "(zero_grad, cross-entropy, backward, Adam step, cosine-schedule step) on the same "
        "model, data and seed. A step is the time between two training forwards; median over "
        f"the steps after {setting['warmup']} warm-up steps, then over {setting['repeats']} "
        "alternating repeats. CPU is the loop thread's CPU time (steady on a shared machine), "
        "wall the wall clock; overhead = harness / bare - 1. What the harness does per step "
        "besides the bare loop: the logit and loss checks, the gradient norm (a check and a "
        "recorded metric), the training accuracy, the NFE counters and the phase timers."),
        benchmarking.machine(device), seconds)
    lines += [
        "| case | bare CPU (ms/step) | harness CPU (ms/step) | overhead CPU | "
        "bare wall (ms/step) | harness wall (ms/step) | overhead wall | same parameters |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['bare_cpu_ms']:.3f} | {r['harness_cpu_ms']:.3f} | "
            f"{r['overhead_cpu_pct']:+.1f} % | {r['bare_wall_ms']:.3f} | "
            f"{r['harness_wall_ms']:.3f} | {r['overhead_wall_pct']:+.1f} % | "
            f"{'yes' if r['same_parameters'] else 'no'} |")
    return "\n".join(lines) + "\n"


def figure(rows: list[dict[str, object]], profile: str) -> bytes:
    fig, ax = benchmarking.subplots(figsize=(7.0, 0.6 * len(rows) + 1.4))
    y = range(len(rows))
    ax.barh([i - 0.2 for i in y], [r["overhead_cpu_pct"] for r in rows], 0.4, label="CPU time",
            color="#2166ac")
    ax.barh([i + 0.2 for i in y], [r["overhead_wall_pct"] for r in rows], 0.4,
            label="wall time", color="#b2182b")
    ax.axvline(0.0, color="k", lw=0.8)
    ax.axvline(2.0, color="k", lw=0.8, ls="--")
    ax.set_yticks(list(y), [str(r["case"]) for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("per-step overhead of deqode.train.fit over a bare loop (%)")
    ax.legend(fontsize=7)
    return benchmarking.png_bytes(fig, profile)


def main(argv: list[str] | None = None) -> int:
    run = benchmarking.start(argv, __doc__.splitlines()[0], SETTINGS, smoke_time="< 1 min")
    clock_started = time.perf_counter()
    rows = measure(run.setting, run.device, run.seed)
    took = time.perf_counter() - clock_started
    benchmarking.write_report(
        run.out, NAME,
        {"profile": run.profile, "setting": run.setting, "rows": rows, "seconds": took,
         "machine": benchmarking.machine(run.device)},
        markdown(rows, run.setting, run.profile, run.device, took), figure(rows, run.profile),
        took)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
