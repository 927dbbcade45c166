"""Continuous vs discrete DEQ forward cost on one trained model (Continuous DEQ chapter).

One smoke model is trained first — the vanilla DEQ on ``digits-fc`` with the discrete solver
(the ``cdeq-t1-vanilla-code`` configuration of :mod:`deqode.chapters.continuous_deq`, into a
temporary folder). This fully connected model has an attracting equilibrium that every solver
below reaches; the multiscale smoke models, trained for seconds with capped solves, do not
(their solves at the caps are compared in the chapter's notebooks instead). Its forward pass on
the digits test set is then solved by:

* ``discrete``: per-sample limited-memory Broyden (the paper's discrete DEQ);
* ``continuous vcab3``: our VCAB3-like integrator of ``du/dt = f(u) − u`` at the step-size
  tolerances the paper's code effectively uses (1e-6 / 1e-3);
* ``continuous vcab3 @tol``: the same with the step-size tolerances set to the termination
  tolerance (what the paper's text reads as "relative tolerance 0.05");
* ``continuous bs3``: Bogacki–Shampine 3(2) throughout (3 evaluations per step).

All stop on the same batch-global ``rel_norm`` rule (``‖f(u) − u‖ ≤ tol ‖f(u)‖``) at two
tolerances, with a generous cap (200 steps) so that the cost *to the tolerance* is compared.
Reported per test batch: evaluations of f (solver + the extra application), wall time (median
over repeats), the relative residual reached, whether the tolerance was met, and the accuracy.

    python benchmarks/bench_cdeq.py --profile smoke --out results/smoke/benchmarks

writes ``cdeq.md``, ``cdeq.png`` (termination objective against evaluations) and ``cdeq.json``.
``--quick`` trains for one epoch and times once (for tests). The model is the smoke one in every
profile; ``--seed`` seeds its training.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any

import torch

from deqode.book import benchmarking
from deqode.chapters import continuous_deq as cd

NAME = "cdeq"
TITLE = "Continuous vs discrete DEQ: forward cost on one trained smoke model"
SMOKE_NOTE = ("Smoke profile: a digits-FC DEQ trained for seconds on one CPU thread of a shared "
              "machine; compare ratios within this run, not absolute times.")
ROW = cd.Row("T1", "vanilla", "discrete", False, "code")
SOLVERS: dict[str, dict[str, Any]] = {
    "discrete (L-Broyden)": {"solver": "discrete"},
    "continuous vcab3 (1e-6 / 1e-3)": {"solver": "continuous", "method": "vcab3",
                                       "abstol": 1e-6, "reltol": 1e-3},
    "continuous vcab3 (step tol = tol)": {"solver": "continuous", "method": "vcab3",
                                          "step_tol": True},
    "continuous bs3 (1e-6 / 1e-3)": {"solver": "continuous", "method": "bs3",
                                     "abstol": 1e-6, "reltol": 1e-3},
}
TOLERANCES = (0.05, 5e-3)
MAX_STEPS = 200
#: Per profile: training epochs, test batch size, timing repeats, intra-op threads and the default
#: device. The paper profile measures the same smoke model. Three epochs rather than the smoke
#: experiment's two: measured with seed 0, after two epochs continuous VCAB3 (1e-6 / 1e-3) met
#: the loose tolerance on neither test batch within :data:`MAX_STEPS` steps (a table of caps),
#: after three on one of the two.
SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": {"epochs": 3, "batch": 180, "repeats": 3, "threads": 1, "device": "cpu"},
    "paper": {"epochs": 3, "batch": 180, "repeats": 3, "threads": 1, "device": "cpu"},
    "quick": {"epochs": 1, "batch": 180, "repeats": 1, "threads": 1, "device": "cpu"},
}


def configure(model: Any, spec: dict[str, Any], tol: float) -> None:
    """Set the forward solver of ``model`` in place."""
    model.solver = spec["solver"]
    model.termination, model.tol, model.max_steps = "rel_norm", tol, MAX_STEPS
    if spec["solver"] == "continuous":
        model.method = spec["method"]
        if spec.get("step_tol"):
            model.abstol = model.reltol = tol
        else:
            model.abstol, model.reltol = spec["abstol"], spec["reltol"]


@torch.no_grad()
def measure(model: Any, batches: list[tuple[torch.Tensor, torch.Tensor]], repeats: int
            ) -> dict[str, Any]:
    """Per-batch NFE, median time, residual, converged fraction, rejected step attempts,
    integration time reached, accuracy; one objective trace."""
    nfe, times, residuals, converged, correct, total = [], [], [], 0, 0, 0
    rejected, t_reached = [], []
    trace: list[tuple[int, float]] = []
    for k, (x, y) in enumerate(batches):
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            logits = model(x)
            runs.append(time.perf_counter() - start)
        info = model.last_stats["solver_info"]
        times.append(statistics.median(runs))
        nfe.append(model.nfe_forward)
        residuals.append(info.final_residual)
        rejected.append(info.rejected)
        t_reached.append(info.t)
        converged += int(info.converged)
        correct += int((logits.argmax(1) == y).sum())
        total += y.numel()
        if k == 0:
            trace = list(zip(_cumulative_nfe(info), info.residuals, strict=False))
    return {"nfe": statistics.mean(nfe), "time_s": statistics.mean(times),
            "residual": max(residuals), "converged": f"{converged}/{len(batches)}",
            "rejected": statistics.mean(rejected), "t": statistics.mean(t_reached),
            "accuracy": 100.0 * correct / total, "trace": trace}


def _cumulative_nfe(info: Any) -> list[int]:
    """Evaluations spent up to each recorded objective (approximate for the integrator)."""
    n = len(info.residuals)
    if info.method == "broyden":
        return list(range(1, n + 1))
    per_step = (info.nfe - 2) / max(n, 1)
    return [round(2 + per_step * (k + 1)) for k in range(n)]


def train_model(epochs: int | None, seed: int, device: torch.device) -> tuple[Any, dict[str, Any]]:
    """Train the smoke model in a temporary folder: the trained model and a summary of the run."""
    from deqode.train import fit

    changes = {} if epochs is None else {"epochs": epochs}
    config = cd.train_config(ROW, "smoke", seed=seed, **changes)
    with tempfile.TemporaryDirectory() as tmp:
        result = fit(config, profile="smoke", device=device, results_dir=tmp, quiet=True,
                     progress=False, threads=1)
        if result.failed:
            raise RuntimeError(f"training failed: {result.reason}")
        model = cd.load_trained(ROW, "smoke", tmp).to(device)
    return model, {"experiment": config.name, "epochs": config.epochs,
                   "test_acc": result.summary["last_test_acc"]}


def digits_test_batches(size: int, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The digits test set (the chapter's recipe) in batches of ``size``."""
    from deqode import data

    test = data.load_dataset("digits", root="data", split="test", profile="smoke",
                             recipe="cdeq")
    xs = torch.stack([test[i][0] for i in range(len(test))]).to(device)
    ys = torch.tensor([int(test[i][1]) for i in range(len(test))], device=device)
    return [(xs[i:i + size], ys[i:i + size]) for i in range(0, len(xs), size)]


def compare_solvers(model: Any, batches: list[tuple[torch.Tensor, torch.Tensor]], repeats: int
                    ) -> list[dict[str, Any]]:
    """One row per (tolerance, solver) of :data:`SOLVERS`, each after a warm-up call."""
    rows = []
    for tol in TOLERANCES:
        for label, spec in SOLVERS.items():
            configure(model, spec, tol)
            model(batches[0][0])  # warm-up
            rows.append({"tol": tol, "solver": label, **measure(model, batches, repeats)})
    return rows


def markdown(record: dict[str, Any]) -> str:
    rows = record["rows"]
    lines = benchmarking.introduction(TITLE, record["profile"], SMOKE_NOTE, (
        f"Model: `{record['trained']['experiment']}` ({record['trained']['epochs']} epochs), "
        f"test batches of {record['batch']}, cap {record['max_steps']} steps, `rel_norm` "
        "termination on the whole batch. NFE = evaluations of f per batch (solver + the extra "
        "application)."), record["machine"], record["seconds"], " (training included)")
    lines += [
        "| tol | solver | NFE | ms / batch | residual, met tol | rejected, t reached "
        "| accuracy (%) |",
        "|---|---|---:|---:|---|---|---:|",
    ]
    for r in rows:
        discrete = r["solver"].startswith("discrete")
        steps = "-" if discrete else f"{r['rejected']:.1f}, {r['t']:.2f}"
        lines.append(f"| {r['tol']:g} | {r['solver']} | {r['nfe']:.1f} | "
                     f"{1e3 * r['time_s']:.1f} | {r['residual']:.2e}, {r['converged']} | "
                     f"{steps} | {r['accuracy']:.1f} |")
    base = {r["tol"]: r for r in rows if r["solver"].startswith("discrete")}
    lines += ["", "Residual: the largest final objective over the batches; rejected and t reached: "
              "means per batch. A \"met tol\" below the number of batches means the solver ran "
              f"into the cap of {record['max_steps']} step attempts, rejected attempts included "
              "(as OrdinaryDiffEq's maxiters). At step-size tolerances 1e-6 / 1e-3 the VCAB3 "
              "rows are still converging there: their steps are kept small by the error estimate "
              "(the difference between the 3rd- and 2nd-order Adams–Bashforth formulas, as in "
              "OrdinaryDiffEq's VCAB3), so they reach a smaller integration time t per attempt "
              "than bs3. With the step-size tolerances at the termination tolerance the steps "
              "grow until stability limits them, and an explicit integrator can hover at that "
              "bound instead of converging.",
              "", "Continuous ÷ discrete at each tolerance (NFE, time): " + "; ".join(
        f"{r['solver']} @ {r['tol']:g}: {r['nfe'] / base[r['tol']]['nfe']:.2f}×, "
        f"{r['time_s'] / base[r['tol']]['time_s']:.2f}×"
        for r in rows if not r["solver"].startswith("discrete")) + ".", ""]
    return "\n".join(lines)


def figure(record: dict[str, Any]) -> bytes:
    fig, axes = benchmarking.subplots(1, len(TOLERANCES), figsize=(10, 3.6), sharey=True)
    for ax, tol in zip(axes, TOLERANCES, strict=True):
        for r in record["rows"]:
            if r["tol"] != tol or not r["trace"]:
                continue
            n, obj = zip(*r["trace"], strict=True)
            ax.semilogy(n, obj, marker=".", label=r["solver"])
        ax.axhline(tol, color="0.4", ls="--", lw=0.8)
        ax.set(title=f"rel_norm tol {tol:g}", xlabel="evaluations of f (first test batch)")
    axes[0].set_ylabel("‖f(u) − u‖ / ‖f(u)‖")
    axes[0].legend(fontsize=7)
    return benchmarking.png_bytes(fig, record["profile"])


def main(argv: list[str] | None = None) -> int:
    run = benchmarking.start(argv, __doc__.splitlines()[0], SETTINGS,
                          quick_help="one training epoch and one timing repeat, to test the script")
    started = time.perf_counter()
    model, trained = train_model(run.setting["epochs"], run.seed, run.device)
    batches = digits_test_batches(run.setting["batch"], run.device)
    rows = compare_solvers(model, batches, run.setting["repeats"])
    seconds = time.perf_counter() - started
    record = {"title": TITLE, "profile": run.profile, "setting": run.setting,
              "machine": benchmarking.machine(run.device), "trained": trained,
              "batch": run.setting["batch"], "max_steps": MAX_STEPS, "rows": rows,
              "seconds": seconds}
    benchmarking.write_report(run.out, NAME, record, markdown(record), figure(record), seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
