"""HomoODE training step: memory and time of the three gradient modes as the tolerance tightens.

One training step (forward, cross-entropy loss, backward, SGD step) of the CIFAR-10 HomoNet
(``deqode.models.build("homoode-cifar10", grad_mode=..., tol=...)``, dopri5 with rtol = atol = tol)
on a fixed batch of random 3x32x32 images, for each gradient mode

* ``backprop``: autograd through every dopri5 stage (memory expected to grow with the NFE),
* ``adjoint``: torchdiffeq's ``odeint_adjoint`` (exact; memory expected to stay flat),
* ``frozen_adjoint``: the official code's approximate adjoint (also flat),

and each tolerance. Every (mode, tol) starts from the same weights, batch and dropout mask, so the
three modes see the same forward solve. Measured per step: forward and backward NFE (the model's
counters), forward and backward-plus-step wall time (median over repeats), and memory:

* saved-tensor peak: the most bytes autograd held for backward at any moment of the step
  (:class:`deqode.metrics.SavedTensorMeter`; deterministic, includes stem and head),
* on the CPU, the peak growth of the process RSS over the step
  (:class:`deqode.metrics.RSSPeakMeter`),
* on CUDA, ``torch.cuda.max_memory_allocated`` above the memory allocated at the step's start.

The init-point update of HomoODE (every ``freq`` iterations) is not part of the step.

    python benchmarks/bench_homoode_memory.py --profile smoke --out results/smoke/benchmarks

writes ``homoode_memory.md`` (machine, table, verdict), ``homoode_memory.png`` (memory and time
against the forward NFE) and ``homoode_memory.json`` (the raw records). ``--quick`` runs a tiny
configuration (the digits HomoNet, two tolerances, one repeat) for tests.
"""

from __future__ import annotations

import itertools
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from deqode.book import benchmarking
from deqode.metrics import MB, RSSPeakMeter, SavedTensorMeter
from deqode.models import HOMOODE_GRAD_MODES, build
from deqode.models.zoo import entry

NAME = "homoode_memory"
#: Per profile: model, batch, tolerances (loosest first), repeats per (mode, tol), intra-op threads
#: (None: torch's default) and the default device.
SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": {"model": "homoode-cifar10", "batch": 4, "tols": (1e-1, 1e-3, 1e-4, 1e-5, 1e-6),
              "repeats": 2, "threads": 1, "device": "cpu"},
    "paper": {"model": "homoode-cifar10", "batch": 64,
              "tols": (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6), "repeats": 3, "threads": None,
              "device": "auto"},
    "quick": {"model": "homoode-digits", "batch": 2, "tols": (1e-1, 1e-3), "repeats": 1,
              "threads": 1, "device": "cpu"},
}
TITLE = "HomoODE training step: memory and time of backprop, adjoint and frozen adjoint"
SMOKE_NOTE = "Smoke profile: a small batch on a shared CPU, not a paper-scale measurement."
#: "Flat" means: the saved-tensor peak varies by less than this fraction over the tolerances.
FLAT_SPREAD = 0.05
COLORS = {"backprop": "#b2182b", "adjoint": "#2166ac", "frozen_adjoint": "#7f7f7f"}
MARKERS = {"backprop": "o", "adjoint": "o", "frozen_adjoint": "^"}


@dataclass
class StepRecord:
    """One (mode, tol) configuration: NFE, median times and memory of a training step."""

    mode: str
    tol: float
    nfe_forward: int
    nfe_backward: int
    forward_s: float
    backward_s: float
    saved_peak_mb: float
    rss_growth_mb: float | None
    cuda_growth_mb: float | None

    @property
    def step_s(self) -> float:
        return self.forward_s + self.backward_s


def train_step(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, device: torch.device
) -> dict[str, Any]:
    """One SGD step of ``model`` on ``(x, y)`` with its time, NFE and memory measured."""
    optimizer = torch.optim.SGD(model.main_parameters(), lr=0.05, momentum=0.9)
    meter = SavedTensorMeter()
    cuda_start = 0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        cuda_start = torch.cuda.memory_allocated(device)
    with RSSPeakMeter() as rss, meter.track(exclude=list(model.parameters())):
        benchmarking.synchronize(device)
        started = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        benchmarking.synchronize(device)
        forward_done = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        benchmarking.synchronize(device)
        done = time.perf_counter()
    cuda_growth = None
    if device.type == "cuda":
        cuda_growth = (torch.cuda.max_memory_allocated(device) - cuda_start) / MB
    return {
        "nfe_forward": int(model.nfe_forward),
        "nfe_backward": int(model.nfe_backward),
        "forward_s": forward_done - started,
        "backward_s": done - forward_done,
        "saved_peak_mb": meter.peak_bytes / MB,
        "rss_growth_mb": None if rss.growth_bytes is None else rss.growth_bytes / MB,
        "cuda_growth_mb": cuda_growth,
    }


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def measure(setting: dict[str, Any], device: torch.device, seed: int = 0) -> list[StepRecord]:
    """Every (mode, tol) of ``setting``, each repeat from the same weights, batch and mask."""
    spec = entry(setting["model"])
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(setting["batch"], *spec.input_shape, generator=gen).to(device)
    y = torch.randint(0, spec.num_classes, (setting["batch"],), generator=gen).to(device)
    torch.manual_seed(seed)
    weights = build(setting["model"]).state_dict()

    def fresh(mode: str, tol: float) -> nn.Module:
        model = build(setting["model"], grad_mode=mode, tol=tol)
        model.load_state_dict(weights)
        return model.to(device).train()

    torch.manual_seed(seed + 1)
    train_step(fresh("backprop", setting["tols"][0]), x, y, device)  # warm-up, discarded
    records = []
    for tol in setting["tols"]:
        for mode in HOMOODE_GRAD_MODES:
            runs = []
            for _ in range(setting["repeats"]):
                model = fresh(mode, tol)
                torch.manual_seed(seed + 1)  # the same dropout mask in every mode and repeat
                runs.append(train_step(model, x, y, device))
            first = runs[0]
            records.append(StepRecord(
                mode=mode, tol=tol,
                nfe_forward=first["nfe_forward"], nfe_backward=first["nfe_backward"],
                forward_s=statistics.median(r["forward_s"] for r in runs),
                backward_s=statistics.median(r["backward_s"] for r in runs),
                saved_peak_mb=max(r["saved_peak_mb"] for r in runs),
                rss_growth_mb=_median([r["rss_growth_mb"] for r in runs]),
                cuda_growth_mb=_median([r["cuda_growth_mb"] for r in runs]),
            ))
            print(f"[{NAME}] {mode:>14s} tol {tol:.0e}: NFE {first['nfe_forward']}/"
                  f"{first['nfe_backward']}, {records[-1].step_s:.2f} s, "
                  f"saved peak {records[-1].saved_peak_mb:.1f} MB", file=sys.stderr)
    return records


def verdict(records: list[StepRecord]) -> dict[str, Any]:
    """Does the adjoint's memory stay flat while backprop's grows with the forward NFE?

    Flat: the saved-tensor peak over the tolerances varies by less than :data:`FLAT_SPREAD` of its
    maximum. Grows: the peak never decreases as the forward NFE increases and rises overall.
    Backprop's least-squares slope (MB per forward evaluation) is reported too.
    """
    out: dict[str, Any] = {}
    for mode in HOMOODE_GRAD_MODES:
        rows = sorted((r for r in records if r.mode == mode), key=lambda r: r.nfe_forward)
        peaks = [r.saved_peak_mb for r in rows]
        nfes = [r.nfe_forward for r in rows]
        spread = (max(peaks) - min(peaks)) / max(peaks) if max(peaks) > 0 else 0.0
        monotone = all(b >= a for a, b in itertools.pairwise(peaks))
        slope = statistics.linear_regression(nfes, peaks).slope if len(set(nfes)) > 1 else 0.0
        out[mode] = {"nfe": (min(nfes), max(nfes)), "peak_mb": (min(peaks), max(peaks)),
                     "spread": spread, "flat": spread < FLAT_SPREAD,
                     "grows": monotone and max(peaks) > min(peaks) * (1 + FLAT_SPREAD),
                     "slope_mb_per_nfe": slope}
    out["holds"] = (out["adjoint"]["flat"] and out["frozen_adjoint"]["flat"]
                    and out["backprop"]["grows"] and out["backprop"]["nfe"][1]
                    > out["backprop"]["nfe"][0])
    return out


def _span(low_high: tuple[float, float]) -> str:
    low, high = low_high
    return f"is {low:.2f} MB throughout" if f"{low:.2f}" == f"{high:.2f}" else \
        f"stays within {low:.2f}–{high:.2f} MB"


def _fmt(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown(records: list[StepRecord], setting: dict[str, Any], profile: str,
             device: torch.device, check: dict[str, Any], seconds: float) -> str:
    memory = "CUDA peak growth (MB)" if device.type == "cuda" else "RSS peak growth (MB)"
    lines = benchmarking.introduction(TITLE, profile, SMOKE_NOTE, (
        f"One training step (forward, loss, backward, SGD step) of `{setting['model']}` on "
        f"a batch of {setting['batch']} random images, dopri5 with rtol = atol = tol, for each "
        f"gradient mode; every row starts from the same weights, batch and dropout mask. Times "
        f"are medians of {setting['repeats']} repeat(s); the saved-tensor peak is the most bytes "
        "autograd held for backward during the step (stem and head included; deterministic), the "
        f"{memory.split(' (')[0]} a process measurement (noisier). Backprop's backward NFE is 0: "
        "autograd replays the saved stages without evaluating the field again."),
        benchmarking.machine(device), seconds)
    lines += [
        f"| mode | tol | NFE forward | NFE backward | forward (s) | backward + step (s) | "
        f"saved-tensor peak (MB) | {memory} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        growth = r.cuda_growth_mb if device.type == "cuda" else r.rss_growth_mb
        lines.append(f"| {r.mode} | {r.tol:.0e} | {r.nfe_forward} | {r.nfe_backward} | "
                     f"{r.forward_s:.3f} | {r.backward_s:.3f} | {r.saved_peak_mb:.2f} | "
                     f"{_fmt(growth)} |")
    b, a, fa = check["backprop"], check["adjoint"], check["frozen_adjoint"]
    ratios = [r.nfe_backward / r.nfe_forward for r in records
              if r.mode == "adjoint" and r.nfe_forward > 0]
    lines += [
        "",
        f"Expectation (adjoint memory flat, backprop memory growing with the NFE): "
        f"**{'holds' if check['holds'] else 'does not hold'}** in this run. Over forward NFE "
        f"{b['nfe'][0]}–{b['nfe'][1]}, the backprop saved-tensor peak goes from "
        f"{b['peak_mb'][0]:.2f} to {b['peak_mb'][1]:.2f} MB (least-squares slope "
        f"{b['slope_mb_per_nfe']:.2f} MB per forward evaluation), the adjoint's "
        f"{_span(a['peak_mb'])} and the frozen adjoint's {_span(fa['peak_mb'])} (flat: spread "
        f"below {FLAT_SPREAD:.0%}). The adjoint's backward solve took "
        f"{min(ratios):.2f}–{max(ratios):.2f} times the forward NFE at these weights.",
    ]
    return "\n".join(lines) + "\n"


def figure(records: list[StepRecord], profile: str, device: torch.device) -> bytes:
    fig, (mem_ax, time_ax) = benchmarking.subplots(1, 2, figsize=(9.0, 3.6))
    for mode in HOMOODE_GRAD_MODES:
        rows = sorted((r for r in records if r.mode == mode), key=lambda r: r.nfe_forward)
        nfe = [r.nfe_forward for r in rows]
        color = COLORS[mode]
        marker = MARKERS[mode]
        mem_ax.plot(nfe, [r.saved_peak_mb for r in rows], f"{marker}-", color=color,
                    ms=7 if mode == "adjoint" else 5, label=f"{mode} (saved tensors)")
        growth = [r.cuda_growth_mb if device.type == "cuda" else r.rss_growth_mb for r in rows]
        if all(g is not None for g in growth):
            mem_ax.plot(nfe, growth, f"{marker}--", color=color, alpha=0.6, ms=4,
                        label=f"{mode} ({'CUDA' if device.type == 'cuda' else 'RSS'} growth)")
        time_ax.plot(nfe, [r.step_s for r in rows], f"{marker}-", color=color, label=mode)
    mem_ax.set_xlabel("forward NFE")
    mem_ax.set_ylabel("peak memory of the step (MB)")
    mem_ax.set_title("memory vs forward NFE", fontsize=10)
    mem_ax.legend(fontsize=6)
    time_ax.set_xlabel("forward NFE")
    time_ax.set_ylabel("time per training step (s)")
    time_ax.set_title("time vs forward NFE", fontsize=10)
    time_ax.legend(fontsize=7)
    for ax in (mem_ax, time_ax):
        ax.set_ylim(bottom=0)
    return benchmarking.png_bytes(fig, profile)


def main(argv: list[str] | None = None) -> int:
    run = benchmarking.start(
        argv, __doc__.splitlines()[0], SETTINGS,
        quick_help="tiny configuration (digits model, 2 tolerances) to test the script")
    started = time.perf_counter()
    records = measure(run.setting, run.device, run.seed)
    check = verdict(records)
    seconds = time.perf_counter() - started
    record = {"profile": run.profile, "setting": run.setting,
              "machine": benchmarking.machine(run.device),
              "records": [asdict(r) for r in records], "verdict": check, "seconds": seconds}
    text = markdown(records, run.setting, run.profile, run.device, check, seconds)
    png = figure(records, run.profile, run.device)
    benchmarking.write_report(run.out, NAME, record, text, png, seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
