"""Per-step overhead of the training harness (``deqode.train.fit``) over a bare training loop.

The same model, data, optimiser and schedule, trained for the same steps two ways:

* **harness**: ``deqode.train.fit`` (one epoch, batches in dataset order, Adam with the cosine
  schedule, the saved-tensor meter off as by default), with everything it does per step: the
  failure checks, the gradient norm, the metrics, the NFE counters, the phase timers, and a
  model's separate update (HomoODE's initial point);
* **bare**: a hand-written loop: ``zero_grad``, cross-entropy, ``backward``, ``step``, the
  scheduler's ``step`` (and the separate update where the model has one), and nothing else.

The two run in lockstep in one process: a forward pre-hook on the harness's model runs the bare
loop's step of the same index (on its own copy of the model, its own data and random state)
before each of the harness's training forwards, so that both meet the same load of a shared
machine. A harness step is the time between two of its training forwards (everything the loop
does in between, the data slicing included, the bare step excluded); set-up, evaluation and
checkpoint are left out. Reported: the median step over the steps after a warm-up of all
repeats, in thread CPU time (what the loop itself spent: on a shared machine much steadier than
wall time) and in wall time, and the overhead: the median over steps of harness / bare - 1, step
by step (the range of that median over the repeats shows the noise). Both loops start from the
same seed; the table says whether they end with the same parameters (bit for bit).

Cases: two micro models whose steps are shorter than any the book trains (a small MLP and a small
conv net: the harness's fixed cost per step, the worst case), and one model of each chapter at
its cpu-profile build, batch size and learning rate (:data:`BOOK_RUNS`) on random MNIST-shaped
data; the issue's target (overhead <= 2 %) is judged on the book's models (:func:`markdown`
says why).

    python benchmarks/bench_harness.py --profile smoke --out results/smoke/benchmarks

writes ``harness.md``, ``harness.png`` and ``harness.json``; ``--quick`` is a tiny configuration
for tests.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deqode.book import benchmarking
from deqode.train import InitPointConfig, TrainConfig, fit
from deqode.train.rng import rng_state, seed_everything, set_rng_state

NAME = "harness"
TITLE = "Training harness: per-step overhead of deqode.train.fit over a bare loop"
SMOKE_NOTE = "Smoke profile: small models on a shared CPU, not a paper-scale measurement."
#: One classification run of each chapter, cpu profile (``deqode.chapters.get(name, "cpu")``).
BOOK_RUNS = ("homoode-mnist8k", "cdeq-t1-vanilla-code", "nag-cls-euler-K4-seed0",
             "sim-t1-mnist-8k-single-tier-seed0")
SETTINGS = {
    "smoke": {"steps": 60, "warmup": 10, "repeats": 5, "threads": 1, "device": "cpu",
              "mlp": (128, 256), "conv": (64, 16, 16),
              "book": {"runs": BOOK_RUNS, "steps": 16, "warmup": 4, "repeats": 7}},
    "paper": {"steps": 200, "warmup": 20, "repeats": 9, "threads": None, "device": "auto",
              "mlp": (128, 1024), "conv": (128, 32, 32),
              "book": {"runs": BOOK_RUNS, "steps": 40, "warmup": 5, "repeats": 9}},
    "quick": {"steps": 6, "warmup": 1, "repeats": 1, "threads": 1, "device": "cpu",
              "mlp": (8, 16), "conv": (4, 4, 8),
              "book": {"runs": BOOK_RUNS[:1], "steps": 3, "warmup": 1, "repeats": 1}},
}
CLASSES = 10
MNIST_SHAPE = (1, 28, 28)


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
    """One benchmarked model: its factory, input shape, batch size, learning rate, separate
    update (``init_point``), step counts and whether the <= 2 % target is judged on it."""

    def __init__(self, name: str, build: Callable[[], nn.Module], shape: tuple[int, ...],
                 batch: int, counts: dict[str, Any], *, lr: float = 1e-3,
                 init_point: InitPointConfig | None = None, judged: bool = False) -> None:
        self.name, self.build, self.shape, self.batch = name, build, shape, batch
        self.steps, self.warmup, self.repeats = (counts[k] for k in ("steps", "warmup",
                                                                      "repeats"))
        self.lr, self.init_point, self.judged = lr, init_point or InitPointConfig(), judged
        self.bare: BareLoop | None = None
        self.harness_model: nn.Module | None = None

    def model(self) -> nn.Module:
        """The harness's model, which runs one step of :attr:`bare` before each training
        forward (:meth:`BareLoop.before_forward`)."""
        model = self.build()
        model.register_forward_pre_hook(
            lambda module, args: self.bare.before_forward() if module.training else None)
        self.harness_model = model
        return model

    def dataset(self, split: str) -> Batches:
        n = self.batch * (self.steps if split == "train" else 1)
        return Batches(self.shape, n, 0 if split == "train" else 1)

    def config(self, seed: int) -> TrainConfig:
        # functions, not bound methods: the record's deep copy must not copy the trained models
        return TrainConfig(name="bench-harness", model=lambda: self.model(),
                           dataset=lambda split: self.dataset(split),
                           batch_size=self.batch, test_batch_size=self.batch,
                           data_order="in_order", lr=self.lr, schedule="cosine", seed=seed,
                           init_point=self.init_point)


def book_case(run: str, counts: dict[str, Any]) -> Case:
    """The model, batch size, learning rate and separate update of chapter run ``run``."""
    from deqode import chapters, models

    config = chapters.get(run, "cpu")
    kwargs = config.model_kwargs
    build = ((lambda: config.model(**kwargs)) if callable(config.model)
             else (lambda: models.build(config.model, **kwargs)))
    return Case(f"{run} (batch {config.batch_size})", build, MNIST_SHAPE, config.batch_size,
                counts, lr=config.lr, init_point=config.init_point, judged=True)


def cases(setting: dict) -> list[Case]:
    batch, hidden = setting["mlp"]
    conv_batch, width, size = setting["conv"]
    book = setting["book"]
    micro = [Case(f"micro: mlp 64-{hidden}-{hidden}-10, batch {batch}", lambda: mlp(hidden),
                  (64,), batch, setting),
             Case(f"micro: conv 2x{width}ch on 3x{size}x{size}, batch {conv_batch}",
                  lambda: convnet(width, size), (3, size, size), conv_batch, setting)]
    return [*micro, *(book_case(run, book) for run in book["runs"])]


def clocks() -> tuple[float, float]:
    return time.thread_time(), time.perf_counter()


class BareLoop:
    """The loop ``fit`` runs, written out: seeded as ``fit`` seeds, Adam, cosine schedule, and
    the model's separate update (plain SGD every ``every`` steps, its own cosine schedule); its
    own model, data and random state. :meth:`before_forward` runs its next step and notes the
    time of that step and of the harness's step before it."""

    def __init__(self, case: Case, device: torch.device, seed: int) -> None:
        config = case.config(seed)
        self.case, self.device = case, device
        seed_everything(seed)
        self.model = case.build().to(device)
        # the same kind of forward pre-hook as the harness's model (there it runs this loop's
        # step): both calls take Module.__call__'s path for hooks, whose cost is the benchmark's
        self.model.register_forward_pre_hook(lambda module, args: None)
        seed_everything(seed)
        self.rng = rng_state(device)  # fit's state at its first step
        make = getattr(self.model, "separate_update", None)
        ip = config.init_point
        self.extra = make(lr=ip.lr, freq=ip.freq) if callable(make) else None
        own = {id(p) for p in self.extra.parameters} if self.extra is not None else set()
        self.optimizer = torch.optim.Adam(
            [p for p in self.model.parameters() if id(p) not in own], lr=config.lr)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, case.steps, eta_min=config.eta_min)
        if self.extra is not None:
            self.extra_optimizer = torch.optim.SGD(self.extra.parameters, lr=self.extra.lr,
                                                   momentum=0.0)
            self.extra_schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
                self.extra_optimizer, max(case.steps // ip.scheduler_divisor, 1),
                eta_min=ip.eta_min)
        self.data = case.dataset("train")
        self.model.train()
        self.step_index = 0
        self.bare: list[tuple[float, float]] = []  # (CPU, wall) seconds of each bare step
        self.harness: list[tuple[float, float]] = []  # of each harness step but the last
        self.harness_started: tuple[float, float] | None = None

    def step(self) -> None:
        i, batch, device = self.step_index, self.case.batch, self.device
        rows = slice(i * batch, (i + 1) * batch)
        x, y = self.data.inputs[rows].to(device), self.data.targets[rows].to(device)
        self.optimizer.zero_grad(set_to_none=True)
        if self.extra is not None:
            self.extra_optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(self.model(x), y).backward()
        self.optimizer.step()
        self.schedule.step()
        if self.extra is not None and i % self.extra.every == 0:
            self.extra.loss().backward()
            self.extra_optimizer.step()
            self.extra_schedule.step()
        self.step_index += 1

    def before_forward(self) -> None:
        """Between two harness steps: close the harness's step, run one bare step on the bare
        loop's random state, and start the harness's next step."""
        benchmarking.synchronize(self.device)
        ended = clocks()
        if self.harness_started is not None:
            self.harness.append((ended[0] - self.harness_started[0],
                                 ended[1] - self.harness_started[1]))
        harness_rng = rng_state(self.device)
        set_rng_state(self.rng, self.device)
        started = clocks()
        self.step()
        benchmarking.synchronize(self.device)
        done = clocks()
        self.bare.append((done[0] - started[0], done[1] - started[1]))
        self.rng = rng_state(self.device)
        set_rng_state(harness_rng, self.device)
        self.harness_started = clocks()


def run_lockstep(case: Case, device: torch.device, seed: int, folder: str) -> BareLoop:
    """``fit`` with the bare loop's steps interleaved (each bare step right before the
    harness's step of the same index, so that both meet the same load)."""
    case.bare = BareLoop(case, device, seed)
    result = fit(case.config(seed), profile="smoke", device=device, results_dir=folder,
                 progress=False, quiet=True)
    if result.state != "completed":
        raise RuntimeError(f"harness run {case.name} {result.state}: {result.reason}")
    if case.bare.step_index != case.steps:
        raise RuntimeError(f"{case.name}: {case.bare.step_index} bare steps, not {case.steps}")
    return case.bare


def same_parameters(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(p.detach().cpu(), q.detach().cpu())
               for p, q in zip(a.parameters(), b.parameters(), strict=True))


def measure_case(case: Case, device: torch.device, seed: int, folder: str) -> dict[str, object]:
    run_lockstep(case, device, seed, folder)  # warm-up
    pairs: list[tuple[tuple[float, float], tuple[float, float]]] = []
    per_repeat, same = [], True
    for _ in range(case.repeats):
        bare = run_lockstep(case, device, seed, folder)
        steps = list(zip(bare.harness, bare.bare[:-1], strict=True))[case.warmup:]  # step i
        pairs += steps
        per_repeat.append(100.0 * (statistics.median(h[0] / b[0] for h, b in steps) - 1.0))
        same = same and same_parameters(case.harness_model, bare.model)
    row: dict[str, object] = {"case": case.name, "steps": case.steps, "warmup": case.warmup,
                              "repeats": case.repeats, "judged": case.judged,
                              "same_parameters": same, "overhead_cpu_pct_repeats": per_repeat}
    for clock, index in (("cpu", 0), ("wall", 1)):
        harness = [h[index] for h, _ in pairs]
        bare_steps = [b[index] for _, b in pairs]
        ratios = [h[index] / b[index] for h, b in pairs]
        row.update({f"bare_{clock}_ms": 1e3 * statistics.median(bare_steps),
                    f"harness_{clock}_ms": 1e3 * statistics.median(harness),
                    f"overhead_{clock}_pct": 100.0 * (statistics.median(ratios) - 1.0)})
    return row


def measure(setting: dict, device: torch.device, seed: int) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="bench-harness-") as folder:
        return [measure_case(case, device, seed, folder) for case in cases(setting)]


def markdown(rows: list[dict[str, object]], setting: dict, profile: str, device: torch.device,
             seconds: float) -> str:
    book = setting["book"]
    lines = benchmarking.introduction(TITLE, profile, SMOKE_NOTE, (
        "One epoch through `deqode.train.fit` with a bare loop (zero_grad, cross-entropy, "
        "backward, Adam step, cosine-schedule step, and HomoODE's initial-point update where "
        "the model has one) on its own copy of the same model, data and seed run in lockstep: "
        "before each of the harness's training forwards the bare loop takes its step of the "
        "same index (on its own random state), so both meet the same load. A harness step is "
        "the time between two of its training forwards, the bare step's excluded; medians over "
        "the steps after a warm-up of all repeats: "
        f"{setting['steps']} steps, {setting['warmup']} warm-up, {setting['repeats']} repeats "
        f"for the micro rows; {book['steps']}, {book['warmup']} and {book['repeats']} for the "
        "book's. CPU is the loop thread's CPU time (steadier than wall time on a shared "
        "machine); overhead = the median over steps of harness / bare - 1, step by step; "
        "'over the repeats' gives the range of that median over the repeats, a measure of the "
        "noise. "
        "What the harness does per step besides the bare loop: the logit and loss checks, the "
        "gradient norm (a check and a recorded metric), the training accuracy, the NFE "
        "counters and the phase timers."),
        benchmarking.machine(device), seconds)
    lines += [
        "Rows: two **micro** models whose steps are shorter than any the book trains, to show that"
        " fixed cost at its largest share (the worst case, not judged), and one classification run"
        " of each chapter at its cpu-profile build, batch size and learning rate (HomoODE, "
        "Continuous DEQ, NAG, SIM; random data of MNIST's shape, Adam with the cosine schedule). "
        "The target of issue 14, an overhead of at most 2 %, is **judged on the book's rows** "
        "(marked ✓; not the micro rows): a fixed cost per step matters relative to the steps it "
        "wraps, and these are the steps the book's runs take. This choice was made before the "
        "book's rows were first measured; the micro rows had been measured before. Changed after "
        "seeing results, for their noise and not their direction: the lockstep (whole runs timed "
        "one after the other scattered the book's rows by more than the target from run to run "
        "on a loaded 2-core machine; book/developer_notes.md gives the numbers) and the book's "
        "repeats (3, then 7). Also changed after seeing results, and in the harness's favour: "
        "the bare model has a no-op forward pre-hook (added after a quiet run put one book row "
        "above the target; book/developer_notes.md gives the numbers), so that "
        "Module.__call__'s path for hooks, through which the lockstep runs, is paid by both "
        "loops instead of being charged to the harness.",
        "",
        "| case | bare (ms/step, CPU) | harness (ms/step, CPU) | overhead, CPU | over the "
        "repeats | overhead, wall | same parameters |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        spread = r["overhead_cpu_pct_repeats"]
        lines.append(
            f"| {r['case']}{' ✓' if r['judged'] else ''} | {r['bare_cpu_ms']:.3f} | "
            f"{r['harness_cpu_ms']:.3f} | {r['overhead_cpu_pct']:+.1f} % | "
            f"{min(spread):+.1f} to {max(spread):+.1f} % | {r['overhead_wall_pct']:+.1f} % | "
            f"{'yes' if r['same_parameters'] else 'no'} |")
    lines += ["", "Wall-clock step times of both loops are in `harness.json`."]
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
