"""HomoODE training step: our ``homoode-cifar10`` against the official code, side by side.

The peer is the authors' released code (wadx2019/homoode, commit 37df358; a copy with its
``PEER.md`` in ``../shared/peers/homoode-official``). Its scripts ship a modified torchdiffeq, so
it is never installed or imported here: each side runs in its own worker process (this file with
``--worker``), the peer's with its folder first on ``sys.path``. Both workers start from the same
weights (ours, mapped onto the peer's parameter names) and see the same random batch of 3x32x32
images; both integrate with dopri5 at rtol = atol = tol, backprop through the solver, Adam. The
peer's dropout mask (one Bernoulli draw per channel and sample per forward pass, as ours) is drawn
with our sampling call from the same seed, so the two sides draw the same masks, train the same
weights and take the same solver steps: equal NFE at every step by construction.

The parent alternates single training steps between the two live workers (zero_grad, forward,
cross-entropy, backward, Adam step; HomoODE's separate init-point update, every ``freq`` steps in
both codes, is left out on both sides), so both see the same machine load. Per step: wall and CPU
time and the forward NFE. Then memory steps, also alternating: the peak growth of the process RSS
(:class:`deqode.metrics.RSSPeakMeter`) and the autograd saved-tensor peak
(:class:`deqode.metrics.SavedTensorMeter`), both measured on both sides. Before training, one
eval-mode forward on each side checks that the two codes compute the same function from the same
weights (logit difference and NFE).

    python benchmarks/bench_homoode_official.py --profile cpu --out results/cpu/benchmarks \\
        [--peer ../shared/peers/homoode-official]

writes ``homoode_official.md``, ``.png`` (time per step, both sides) and ``.json``. Without the
peer at the default path the script writes a table that says the comparison was not run and
exits 0 (``make book`` runs every benchmark and must not fail where the peer is absent); a
``--peer`` path that holds no peer is an error (exit 2).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

NAME = "homoode_official"
PEER_REPO, PEER_COMMIT = "wadx2019/homoode", "37df358"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PEER = REPO_ROOT.parent / "shared" / "peers" / "homoode-official"
PEER_SCRIPT = Path("scripts") / "homoinit_cifar10.py"
MODEL = "homoode-cifar10"
#: Per profile: batch, timed steps after ``warmup`` discarded ones (per side), memory steps, dopri5
#: tolerance, intra-op threads (None: torch's default) and the default device.
SETTINGS: dict[str, dict[str, Any]] = {
    "smoke": {"batch": 16, "warmup": 2, "steps": 4, "memory_steps": 1, "tol": 1e-3,
              "threads": 1, "device": "cpu"},
    "cpu": {"batch": 64, "warmup": 2, "steps": 8, "memory_steps": 2, "tol": 1e-3,
            "threads": None, "device": "cpu"},
    "paper": {"batch": 64, "warmup": 3, "steps": 20, "memory_steps": 2, "tol": 1e-3,
              "threads": None, "device": "auto"},
    "quick": {"batch": 2, "warmup": 1, "steps": 2, "memory_steps": 1, "tol": 1e-3,
              "threads": 1, "device": "cpu"},
}
TITLE = "HomoODE training step: this project against the official code"
SMOKE_NOTE = ("CPU profile: a shared CPU; the smoke profile also uses a small batch. Compare the "
              "ratios of one run, not absolute times.")
RESULT = "@@result "  # prefix of the workers' answer lines (anything else on stdout is ignored)
#: Our parameter names → the peer's (``HomoNet`` of the released script and its ``InitLayer``).
PEER_NAMES = {"stem.": "model.downsampling_layers.",
              "field.conv1.conv.": "model.feature_layers.odefunc.conv1._layer.",
              "field.conv2.conv.": "model.feature_layers.odefunc.conv2._layer.",
              "field.norm": "model.feature_layers.odefunc.norm",
              "head.": "model.fc_layers.", "init_layer.conv.": "init.init.0.",
              "init_layer.norm.": "init.init.1."}
SIDES = ("ours", "official")
#: glibc's initial mmap threshold, fixed for the second memory measurement (see FIXED_NOTE).
FIXED_MMAP_ENV = {"MALLOC_MMAP_THRESHOLD_": "131072"}
FIXED_NOTE = (
    "RSS peak growth is the peak RSS of the process over one step minus its RSS before it "
    "(after `malloc_trim`). With glibc's default the mmap threshold rises as large blocks are "
    "freed, after which tensors come from the heap and the growth depends on the process's "
    "allocation history: on the 2-core machine the default-allocator ratio moved from below 1 "
    "to above 1 between runs. The second RSS row therefore comes from two fresh workers (one "
    "warm-up step each, not timed) in which the threshold is fixed at glibc's initial 128 KiB "
    "(`MALLOC_MMAP_THRESHOLD_=131072`), so every tensor above it is mapped on allocation and "
    "returned when freed, and RSS follows what the step holds. That row was added after seeing "
    "the default row vary; both are shown.")


# --------------------------------------------------------------------------------------------------
# the workers (one process per side)
# --------------------------------------------------------------------------------------------------


def batch(config: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The random batch both sides train on."""
    gen = torch.Generator().manual_seed(config["seed"])
    x = torch.randn(config["batch"], 3, 32, 32, generator=gen)
    y = torch.randint(0, 10, (config["batch"],), generator=gen)
    return x.to(device), y.to(device)


def peer_state(ours: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Our state dict split into the peer's ``model`` and ``init`` state dicts."""
    out: dict[str, dict[str, torch.Tensor]] = {"model": {}, "init": {}}
    for name, value in ours.items():
        prefix = next((p for p in PEER_NAMES if name.startswith(p)), None)
        if prefix is None:
            raise KeyError(f"no peer parameter for {name!r}")
        part, _, rest = (PEER_NAMES[prefix] + name[len(prefix):]).partition(".")
        out[part][rest] = value
    return out


def our_side(config: dict[str, Any], device: torch.device) -> tuple[Any, Callable[[], int]]:
    from deqode.models import build

    model = build(MODEL, grad_mode="backprop", tol=config["tol"])
    model.load_state_dict(torch.load(config["weights"], weights_only=True))
    model.to(device)
    x, y = batch(config, device)

    def evaluate() -> tuple[torch.Tensor, int]:
        model.eval()
        with torch.no_grad():
            return model(x), model.nfe_forward

    optimizer = torch.optim.Adam(model.main_parameters(), lr=1e-3)

    def step() -> int:
        model.train()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
        return model.nfe_forward

    return (model, evaluate), step


def official_side(config: dict[str, Any],
                  device: torch.device) -> tuple[Any, Callable[[], int]]:
    """The released ``homoinit_cifar10.py`` imported as a module, its torchdiffeq fork first on
    ``sys.path`` (the stock torchdiffeq that deqode loaded is dropped from ``sys.modules``)."""
    import importlib.util

    peer = Path(config["peer"])
    for name in [n for n in sys.modules if n == "torchdiffeq" or n.startswith("torchdiffeq.")]:
        del sys.modules[name]
    sys.path.insert(0, str(peer))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    argv, sys.argv = sys.argv, [str(peer / PEER_SCRIPT), "--tol", str(config["tol"])]
    try:  # the script parses its arguments and sets CUDA_VISIBLE_DEVICES=1 when imported
        spec = importlib.util.spec_from_file_location("homoinit_cifar10", peer / PEER_SCRIPT)
        assert spec is not None and spec.loader is not None
        script = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(script)
    finally:
        sys.argv = argv
        if visible is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = visible
    if not str(Path(sys.modules["torchdiffeq"].__file__).resolve()).startswith(str(peer.resolve())):
        raise RuntimeError("the peer's torchdiffeq fork was not the one imported")
    model = script.HomoNet(hidden_dim=64, final_dim=256, use_init_bp=True, use_adjoint=False)
    init = script.InitLayer(64)
    state = peer_state(torch.load(config["weights"], weights_only=True))
    model.load_state_dict(state["model"])
    init.load_state_dict(state["init"])
    model.to(device)
    init.to(device)
    x, y = batch(config, device)
    counter = model.feature_layers
    drop = counter.odefunc.drop

    def our_draw(bsz: int, d: int, device: Any, **spatial: int) -> torch.Tensor:
        """The peer's channel mask (same shape and law) drawn with our sampling call, so that
        both sides draw the same mask from the same seed and take the same solver steps."""
        keep = torch.full((bsz, d, 1, 1), 1.0 - drop.dropout, device=device)
        drop.mask = torch.bernoulli(keep) / (1.0 - drop.dropout)
        return drop.mask

    drop.reset_mask = our_draw

    def evaluate() -> tuple[torch.Tensor, int]:
        model.eval()
        counter.nfe = 0
        with torch.no_grad():
            logits = model(x, "s", init)[0]
        return logits, counter.nfe

    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> int:
        model.train()
        counter.nfe = 0
        optimizer.zero_grad()
        logits = model(x, "s", init)[0]
        nfe = counter.nfe
        F.cross_entropy(logits, y).backward()
        optimizer.step()
        return nfe

    return (model, evaluate), step


def worker(side: str, config: dict[str, Any]) -> None:
    """Answer ``step``/``memory`` lines on stdin with one ``@@result`` JSON line each."""
    from deqode.devices import resolve_device
    from deqode.metrics import (
        MB,
        RSSPeakMeter,
        SavedTensorMeter,
        cuda_peak_mb,
        cuda_peak_reset,
        synchronize,
    )

    torch.set_num_threads(config["threads"])
    device = resolve_device(config["device"])
    (model, evaluate), step = (our_side if side == "ours" else official_side)(config, device)
    logits, nfe = evaluate()
    reply({"eval_logits": logits.cpu().tolist(), "eval_nfe": int(nfe)})
    for line in sys.stdin:
        command = line.strip()
        if command == "quit":
            return
        torch.manual_seed(config["seed"] + 1)  # the dropout mask: the same draw at every step
        if command == "memory":
            meter = SavedTensorMeter()
            cuda_peak_reset(device)
            with RSSPeakMeter() as rss, meter.track(exclude=list(model.parameters())):
                nfe = step()
                synchronize(device)
            growth = None if rss.growth_bytes is None else rss.growth_bytes / MB
            reply({"nfe": nfe, "rss_growth_mb": growth, "saved_peak_mb": meter.peak_bytes / MB,
                   "cuda_peak_mb": cuda_peak_mb(device)})
            continue
        synchronize(device)
        wall, cpu = time.perf_counter(), time.process_time()
        nfe = step()
        synchronize(device)
        reply({"nfe": nfe, "wall_s": time.perf_counter() - wall,
               "cpu_s": time.process_time() - cpu})


def reply(record: dict[str, Any]) -> None:
    print(RESULT + json.dumps(record), flush=True)


# --------------------------------------------------------------------------------------------------
# the parent: start both workers, alternate, summarise
# --------------------------------------------------------------------------------------------------


class Worker:
    """One side's worker process; :meth:`ask` sends a command and waits for its result line."""

    def __init__(self, side: str, config: dict[str, Any],
                 env: dict[str, str] | None = None) -> None:
        self.side = side
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--worker", side, "--config", json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO_ROOT,
            env=None if env is None else {**os.environ, **env})

    def read(self) -> dict[str, Any]:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(RESULT):
                return json.loads(line[len(RESULT):])
        code = self.process.wait()
        raise RuntimeError(f"the {self.side} worker stopped (exit {code}); its error is above")

    def ask(self, command: str) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.write("quit\n")
            self.process.stdin.close()
            self.process.wait(timeout=60)


def measure(setting: dict[str, Any], device: torch.device, peer: Path, seed: int,
            weights: Path) -> dict[str, Any]:
    """Both workers, alternating step by step; the raw per-step records of each side. On the
    CPU, then a second pair of workers with glibc's mmap threshold fixed, for memory only."""
    config = {**setting, "seed": seed, "peer": str(peer), "weights": str(weights),
              "device": str(device), "threads": torch.get_num_threads()}
    rounds = [("step", i) for i in range(setting["warmup"] + setting["steps"])]
    rounds += [("memory", i) for i in range(setting["memory_steps"])]
    ready, steps, memory = alternate(config, rounds, setting["warmup"])
    raw = {"ready": ready, "steps": steps, "memory": memory}
    if device.type == "cpu":
        rounds = [("step", 0)] + [("memory", i) for i in range(setting["memory_steps"])]
        raw["memory_fixed_mmap"] = alternate(config, rounds, 1, FIXED_MMAP_ENV, "fixed mmap")[2]
    return raw


def alternate(config: dict[str, Any], rounds: list[tuple[str, int]], warmup: int,
              env: dict[str, str] | None = None, label: str = "") -> tuple[dict, dict, dict]:
    """Run ``rounds`` on a fresh pair of workers, alternating which side goes first; the ready
    records, the timed steps after ``warmup`` and the memory steps, per side."""
    workers = {side: Worker(side, config, env) for side in SIDES}
    try:
        ready = {side: w.read() for side, w in workers.items()}
        steps: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
        memory: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
        for command, i in rounds:
            for side in (SIDES if i % 2 == 0 else SIDES[::-1]):
                record = workers[side].ask(command)
                if command == "memory":
                    memory[side].append(record)
                elif i >= warmup:
                    steps[side].append(record)
                print(f"[{NAME}] {label + ' ' if label else ''}{command} {i} {side:>8s}: "
                      f"NFE {record['nfe']}"
                      + (f", {record['wall_s']:.2f} s" if "wall_s" in record else ""),
                      file=sys.stderr)
    finally:
        for w in workers.values():
            w.close()
    return ready, steps, memory


def summary(raw: dict[str, Any]) -> dict[str, Any]:
    """Medians per side and the ours ÷ official ratios."""
    out: dict[str, Any] = {}
    for side in SIDES:
        steps, memory = raw["steps"][side], raw["memory"][side]
        growth = [m["rss_growth_mb"] for m in memory if m["rss_growth_mb"] is not None]
        fixed = [m["rss_growth_mb"] for m in raw.get("memory_fixed_mmap", {}).get(side, [])
                 if m["rss_growth_mb"] is not None]
        out[side] = {
            "wall_s": statistics.median(s["wall_s"] for s in steps),
            "cpu_s": statistics.median(s["cpu_s"] for s in steps),
            "nfe": sorted({s["nfe"] for s in steps}),
            "rss_growth_mb": statistics.median(growth) if growth else None,
            "rss_growth_fixed_mmap_mb": statistics.median(fixed) if fixed else None,
            "saved_peak_mb": max(m["saved_peak_mb"] for m in memory),
            "cuda_peak_mb": max((m.get("cuda_peak_mb") or 0.0) for m in memory) or None,
            "eval_nfe": raw["ready"][side]["eval_nfe"],
        }
    ours, official = out["ours"], out["official"]
    pairs = zip(raw["steps"]["ours"], raw["steps"]["official"], strict=True)
    ratio = {key: ours[key] / official[key] for key in ("wall_s", "cpu_s", "saved_peak_mb")}
    ratio["wall_s_pairs"] = statistics.median(a["wall_s"] / b["wall_s"] for a, b in pairs)
    for key in ("rss_growth_mb", "rss_growth_fixed_mmap_mb", "cuda_peak_mb"):
        ratio[key] = (None if None in (ours[key], official[key]) else ours[key] / official[key])
    out["ratio"] = ratio
    logits = [torch.tensor(raw["ready"][side]["eval_logits"]) for side in SIDES]
    out["eval_logit_difference"] = float((logits[0] - logits[1]).abs().max())
    out["equal_nfe"] = all(a["nfe"] == b["nfe"] for a, b in zip(
        raw["steps"]["ours"], raw["steps"]["official"], strict=True))
    return out


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown(result: dict[str, Any], setting: dict[str, Any], profile: str, machine: str,
             seconds: float) -> str:
    s = result
    ratio = s["ratio"]
    lines = [*_heading(profile), (
        f"One training step of `{MODEL}` (backprop through dopri5, rtol = atol = "
        f"{setting['tol']:g}, Adam; batch of {setting['batch']} random 3×32×32 images) against "
        f"the official code ([{PEER_REPO}](https://github.com/{PEER_REPO}) at commit "
        f"`{PEER_COMMIT}`, `scripts/homoinit_cifar10.py`: `HomoNet(64, 256)` with its "
        "`InitLayer(64)` and its torchdiffeq fork), each in its own process, from the same "
        "weights and batch. Steps alternate between the two processes; times are medians of "
        f"{setting['steps']} steps per side after {setting['warmup']} discarded, memory the "
        f"median (RSS) or largest (saved tensors) of {setting['memory_steps']} further step(s). "
        "The init-point update of both codes is not part of the step. "
        f"Machine: {machine}. The benchmark took {seconds:.0f} s."), ""]
    lines += [
        "| | ours | official | ours ÷ official |",
        "|---|---:|---:|---:|",
        f"| time per step, wall (s) | {s['ours']['wall_s']:.3f} | {s['official']['wall_s']:.3f} "
        f"| **{ratio['wall_s']:.2f}** (per pair: {ratio['wall_s_pairs']:.2f}) |",
        f"| time per step, CPU (s) | {s['ours']['cpu_s']:.3f} | {s['official']['cpu_s']:.3f} | "
        f"{ratio['cpu_s']:.2f} |",
        f"| RSS peak growth (MB) | {_fmt(s['ours']['rss_growth_mb'], 0)} | "
        f"{_fmt(s['official']['rss_growth_mb'], 0)} | **{_fmt(ratio['rss_growth_mb'])}** |",
        *([f"| RSS peak growth, mmap threshold fixed (MB) | "
           f"{_fmt(s['ours']['rss_growth_fixed_mmap_mb'], 0)} | "
           f"{_fmt(s['official']['rss_growth_fixed_mmap_mb'], 0)} | "
           f"**{_fmt(ratio['rss_growth_fixed_mmap_mb'])}** |"]
          if ratio["rss_growth_fixed_mmap_mb"] is not None else []),
        f"| autograd saved-tensor peak (MB) | {s['ours']['saved_peak_mb']:.0f} | "
        f"{s['official']['saved_peak_mb']:.0f} | {ratio['saved_peak_mb']:.2f} |",
        *([f"| CUDA peak allocated (MB) | {s['ours']['cuda_peak_mb']:.0f} | "
           f"{s['official']['cuda_peak_mb']:.0f} | **{ratio['cuda_peak_mb']:.2f}** |"]
          if ratio["cuda_peak_mb"] is not None else []),
        f"| forward NFE per step | {_nfe(s['ours']['nfe'])} | {_nfe(s['official']['nfe'])} | "
        f"{'equal at every step' if s['equal_nfe'] else 'not equal at every step'} |",
        "",
        f"Same function: in eval mode, from the same weights and batch, the two codes' logits "
        f"differ by at most {s['eval_logit_difference']:.1e} (forward NFE "
        f"{s['ours']['eval_nfe']} and {s['official']['eval_nfe']}). Wall time on a shared "
        "machine follows its load; the CPU time of the process is steadier.",
        *(["", FIXED_NOTE] if ratio["rss_growth_fixed_mmap_mb"] is not None else []),
    ]
    return "\n".join(lines) + "\n"


def _heading(profile: str) -> list[str]:
    from deqode.book.benchmarking import heading

    return heading(TITLE, profile, SMOKE_NOTE)


def _nfe(values: list[int]) -> str:
    return "–".join(str(v) for v in (values[0], values[-1])) if len(values) > 1 else str(values[0])


def figure(raw: dict[str, Any], profile: str) -> bytes:
    from deqode.book import benchmarking

    fig, ax = benchmarking.subplots(figsize=(6.0, 3.2))
    for side, color in zip(SIDES, ("#b2182b", "#4d4d4d"), strict=True):
        walls = [s["wall_s"] for s in raw["steps"][side]]
        ax.plot(range(1, len(walls) + 1), walls, "o-", color=color, label=side)
    ax.set_xlabel("timed step (alternating sides)")
    ax.set_ylabel("wall time per step (s)")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return benchmarking.png_bytes(fig, profile)


def not_run(out: Path, profile: str, peer: Path) -> None:
    """The report where the peer is absent: says so, and how to run the comparison."""
    from deqode.book.benchmarking import heading
    from deqode.results import write_json_atomic, write_text_atomic

    text = "\n".join([*heading(TITLE, profile, SMOKE_NOTE), (
        f"**Not run**: the official code ({PEER_REPO}, commit `{PEER_COMMIT}`) was not found at "
        f"`{peer}`. Put an unchanged copy there (or pass `--peer PATH`) and rerun "
        f"`benchmarks/bench_{NAME}.py`.")]) + "\n"
    (out / f"{NAME}.png").unlink(missing_ok=True)
    write_json_atomic(out / f"{NAME}.json", {"profile": profile, "run": False, "peer": str(peer)})
    write_text_atomic(out / f"{NAME}.md", text)
    print(text)


def peer_problem(peer: Path) -> str | None:
    """Why ``peer`` is not the official code's folder; None if it is."""
    missing = [p for p in (PEER_SCRIPT, Path("torchdiffeq") / "__init__.py")
               if not (peer / p).is_file()]
    return (f"no official HomoODE code at {peer} (missing {', '.join(map(str, missing))})"
            if missing else None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--peer", type=Path, default=None)
    parser.add_argument("--worker", choices=SIDES)
    parser.add_argument("--config")
    own, rest = parser.parse_known_args(argv)
    if own.worker:
        worker(own.worker, json.loads(own.config))
        return 0
    from deqode.book import benchmarking
    from deqode.models import build

    run = benchmarking.start(rest, __doc__.splitlines()[0], SETTINGS,
                             smoke_time="< 2 min", quick_help="tiny batch, to test the script")
    peer = (own.peer or DEFAULT_PEER).resolve()
    problem = peer_problem(peer)
    if problem and own.peer is not None:
        print(f"[{NAME}] {problem}; pass --peer PATH to the folder of the official code "
              f"(its PEER.md)", file=sys.stderr)
        return 2
    run.out.mkdir(parents=True, exist_ok=True)
    if problem:
        print(f"[{NAME}] {problem}: the comparison is not run", file=sys.stderr)
        not_run(run.out, run.profile, peer)
        return 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "weights.pt"
        torch.manual_seed(run.seed)
        torch.save(build(MODEL).state_dict(), weights)
        raw = measure(dict(run.setting), run.device, peer, run.seed, weights)
    result = summary(raw)
    seconds = time.perf_counter() - started
    machine = benchmarking.machine(run.device)
    record = {"profile": run.profile, "setting": run.setting, "machine": machine,
              "peer": {"repo": PEER_REPO, "commit": PEER_COMMIT, "path": str(peer)},
              "summary": result, "raw": raw, "seconds": seconds}
    text = markdown(result, run.setting, run.profile, machine, seconds)
    benchmarking.write_report(run.out, NAME, record, text, figure(raw, run.profile), seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
