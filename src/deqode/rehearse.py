"""``python -m deqode.rehearse``: a profile rehearsed end to end on stand-in data (make rehearse).

Four parts, each timed, into one folder ``OUT`` (``_build/rehearsal-paper``):

1. ``data``: the stand-in data sets (:mod:`deqode.data.standins`) in ``OUT/data``;
2. ``experiments``: every experiment of ``python -m deqode list --profile P``, trained through the
   command line's own code (``python -m deqode train``) into ``OUT/results``, by a few worker
   processes that each run many experiments in-process (one start per worker, not per run);
3. ``notebooks``: every notebook executed under the profile with ``results_dir`` and
   ``data_root`` pointing there (so the notebooks read the runs of part 2), two at a time;
4. ``book``: ``python -m deqode.book assemble --label "rehearsal: not results"`` and jupyter-book.

The caps come from the environment (:mod:`deqode.rehearsal`): ``DEQODE_REHEARSAL_STEPS`` (steps
and evaluation batches) and ``DEQODE_REHEARSAL_BATCH`` (batch size). The runtime of each part and
of each experiment and notebook goes to ``OUT/timings.md``. The exit status is 1 if any
experiment or notebook failed (the book is still built from the notebooks that ran).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from deqode import rehearsal
from deqode.choices import PROFILES, check_profile
from deqode.paths import repo_root, resolve
from deqode.results import write_json_atomic, write_text_atomic

LABEL = "rehearsal: not results"
PARTS = ("data", "experiments", "notebooks", "book")


@dataclass
class Outcome:
    """One experiment or notebook of the rehearsal: did it run, how long, why not."""

    name: str
    ok: bool
    seconds: float
    detail: str = ""


# ---- experiments: worker processes running many CLI trainings each ----------------------------
def _train_one(job: tuple[str, str, str, str]) -> Outcome:
    """``python -m deqode train NAME`` in this process; any failure becomes the outcome."""
    name, profile, results, data_root = job
    from deqode import cli

    started, err = time.perf_counter(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            code = cli.main(["train", name, "--profile", profile, "--results-dir", results,
                             "--data-root", data_root, "--device", "cpu", "--no-progress",
                             "--quiet", "--threads", "1"])
        detail = "" if code == 0 else f"exit {code}: {err.getvalue().strip()[:600]}"
    except Exception as exc:  # a crash in one run must not end the others
        code, detail = 1, f"{type(exc).__name__}: {exc}"
    return Outcome(name, code == 0, time.perf_counter() - started, detail)


MARK = "@@deqode.rehearse "  # prefixes a worker's result line on its stdout


def worker_main(profile: str, results: str, data_root: str) -> int:
    """A worker: train each experiment named on stdin, answer one marked JSON line per name.

    A plain process of its own (not a multiprocessing child), so that a run's DataLoader
    workers start as they do under ``python -m deqode train``.
    """
    import torch

    torch.set_num_threads(1)
    for line in sys.stdin:
        if not (name := line.strip()):
            continue
        outcome = _train_one((name, profile, results, data_root))
        print(MARK + json.dumps(outcome.__dict__), flush=True)
    return 0


def _say(line: str) -> None:
    """One progress line, written at once (threads print side by side)."""
    sys.stdout.write(f"[rehearse] {line}\n")
    sys.stdout.flush()


def _longest_first(names: list[str], costs: dict[str, float]) -> list[str]:
    """Known-expensive jobs first (the costs of a previous rehearsal), unknown ones after."""
    return sorted(names, key=lambda n: -costs.get(n, 0.0))


class _Progress:
    """Collects outcomes from the worker threads and prints one line per finished job."""

    def __init__(self, total: int) -> None:
        self.total, self.outcomes = total, []
        self.started = time.perf_counter()
        self.lock = threading.Lock()

    def add(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)
            done = len(self.outcomes)
            elapsed = time.perf_counter() - self.started
            eta = elapsed / done * (self.total - done)
            first = (outcome.detail.splitlines() or [""])[0][:200]
            state = "ok" if outcome.ok else f"FAILED {first}"
            _say(f"experiment {done}/{self.total} {outcome.name}: {state} "
                 f"({outcome.seconds:.1f} s; elapsed {elapsed:.0f} s, eta {eta:.0f} s)")


def _drive_worker(command: list[str], jobs: list[str], lock: threading.Lock,
                  progress: _Progress, log: Path) -> None:
    """Start one worker and feed it jobs from the shared list until it is empty."""
    with log.open("w") as handle, subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=handle, text=True,
            cwd=repo_root()) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        while True:
            with lock:
                if not jobs:
                    break
                name = jobs.pop(0)
            started = time.perf_counter()
            proc.stdin.write(name + "\n")
            proc.stdin.flush()
            for line in proc.stdout:
                if line.startswith(MARK):
                    progress.add(Outcome(**json.loads(line[len(MARK):])))
                    break
                handle.write(line)
            else:  # the worker died: this job failed, the others go to the other workers
                detail = f"its worker process died (exit {proc.wait()}); log {log}"
                progress.add(Outcome(name, False, time.perf_counter() - started, detail))
                return
        proc.stdin.close()


def run_experiments(names: list[str], profile: str, results: Path, data_root: Path,
                    workers: int, costs: dict[str, float] | None = None,
                    logs: Path | None = None) -> list[Outcome]:
    """Train ``names`` with ``workers`` processes (each one torch thread), printing progress."""
    jobs = _longest_first(names, costs or {})
    progress, lock = _Progress(len(jobs)), threading.Lock()
    logs = logs or results
    logs.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "deqode.rehearse", "--profile", profile, "--worker",
               str(results), str(data_root)]
    threads = [threading.Thread(target=_drive_worker,
                                args=(command, jobs, lock, progress, logs / f"worker{k}.log"))
               for k in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return progress.outcomes


# ---- notebooks: two papermill executions at a time ---------------------------------------------
def console_log(executed: Path) -> Path:
    """Where the console of ``deqode.book execute`` goes for the notebook executed to
    ``executed``: not ``executed.log``, the progress log that it echoes to its console (one file
    for both echoed every line again and again, each time with one more prefix)."""
    return executed.with_suffix(".console.log")


def _execute_notebook(notebook: Path, profile: str, out_dir: Path, results: Path,
                      data_root: Path) -> Outcome:
    out = out_dir / f"{notebook.stem}.ipynb"
    log = console_log(out)
    command = [sys.executable, "-m", "deqode.book", "execute", str(notebook), "--profile",
               profile, "--out", str(out), "-p", "results_dir", str(results),
               "-p", "data_root", str(data_root), "-p", "device", "cpu"]
    started = time.perf_counter()
    _say(f"notebook {notebook.stem} started (log {log})")
    with log.open("w") as handle:
        code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT, cwd=repo_root())
    detail = ""
    if code:
        tail = log.read_text(errors="replace").strip().splitlines()[-12:]
        detail = "\n".join(tail)
    return Outcome(notebook.stem, code == 0, time.perf_counter() - started, detail)


def run_notebooks(notebooks: list[Path], profile: str, out_dir: Path, results: Path,
                  data_root: Path, workers: int,
                  costs: dict[str, float] | None = None) -> list[Outcome]:
    out_dir.mkdir(parents=True, exist_ok=True)
    by_name = {nb.stem: nb for nb in notebooks}
    order = _longest_first(sorted(by_name), costs or {})
    outcomes: list[Outcome] = []
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(_execute_notebook, by_name[n], profile, out_dir, results,
                               data_root) for n in order]
        for future in as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            state = "ok" if outcome.ok else \
                f"FAILED (log {console_log(out_dir / outcome.name)}):\n{outcome.detail}"
            _say(f"notebook {len(outcomes)}/{len(order)} {outcome.name}: {state} "
                 f"({outcome.seconds:.1f} s)")
    return outcomes


# ---- the book ----------------------------------------------------------------------------------
def build_book(profile: str, out: Path, executed: Path, results: Path,
               not_built: dict[str, str]) -> Outcome:
    stage, plan = out / "site", out / "plan.json"
    write_json_atomic(plan, {"profile": profile, "not_built_notebooks": not_built})
    started = time.perf_counter()
    commands = [
        [sys.executable, "-m", "deqode.book", "assemble", "--profile", profile, "--stage",
         str(stage), "--executed", str(executed), "--results", str(results), "--label", LABEL,
         "--plan", str(plan)],
        [str(Path(sys.executable).with_name("jupyter-book")), "build", str(stage), "--toc",
         str(stage / "book" / "_toc.yml"), "--config", str(stage / "_config.yml"),
         "--path-output", str(out), "-W", "-n", "--keep-going", "-q"],
    ]
    log = out / "book.log"
    with log.open("w") as handle:
        for command in commands:
            if subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT, cwd=repo_root()):
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
                return Outcome("book", False, time.perf_counter() - started, tail)
    return Outcome("book", True, time.perf_counter() - started, str(out / "_build" / "html"))


# ---- timings -----------------------------------------------------------------------------------
def timings_markdown(profile: str, parts: dict[str, float], groups: dict[str, list[Outcome]],
                     workers: int) -> str:
    caps = (f"DEQODE_REHEARSAL_STEPS={rehearsal.step_cap()}, "
            f"DEQODE_REHEARSAL_BATCH={rehearsal.batch_cap()}")
    lines = [f"# Rehearsal of the {profile} profile ({LABEL})", "",
             f"Caps: {caps}; {workers} workers, one torch thread each.", "",
             "| part | wall time (s) |", "|---|---:|"]
    lines += [f"| {part} | {seconds:.1f} |" for part, seconds in parts.items()]
    lines.append(f"| **total** | **{sum(parts.values()):.1f}** |")
    for title, outcomes in groups.items():
        failed = sum(not o.ok for o in outcomes)
        lines += ["", f"## {title}: {len(outcomes)} ({failed} failed)", "",
                  "| name | state | time (s) |", "|---|---|---:|"]
        for o in sorted(outcomes, key=lambda o: -o.seconds):
            state = "ok" if o.ok else "FAILED: " + o.detail.replace("\n", " ")[-300:].replace(
                "|", "/")
            lines.append(f"| {o.name} | {state} | {o.seconds:.1f} |")
    return "\n".join(lines) + "\n"


def _read_costs(path: Path) -> dict[str, float]:
    try:
        return {k: float(v) for k, v in json.loads(path.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


def rehearse(profile: str, out: Path, workers: int, parts: list[str],
             experiments: list[str] | None = None, notebooks: list[str] | None = None) -> int:
    """Run the chosen ``parts`` into ``out``; 0 when everything ran, 1 otherwise."""
    from deqode import chapters
    from deqode.data import standins

    if rehearsal.step_cap() is None:
        raise ValueError(f"a rehearsal needs {rehearsal.ENV} (e.g. {rehearsal.ENV}=2): without "
                         f"it every run would train at full length")
    out = resolve(out)
    data_root, results, executed = out / "data", out / "results", out / "executed"
    costs_file = out.parent / f"{out.name}-costs.json"  # kept across rehearsals: longest first
    costs = _read_costs(costs_file)
    times: dict[str, float] = {}
    groups: dict[str, list[Outcome]] = {}
    ok = True
    if "data" in parts:
        started = time.perf_counter()
        standins.write_standins(data_root)
        times["data"] = time.perf_counter() - started
        print(f"[rehearse] stand-in data written to {data_root} ({times['data']:.1f} s)",
              flush=True)
    if "experiments" in parts:
        names = experiments or chapters.experiment_names(profile)
        print(f"[rehearse] {len(names)} experiments of profile {profile}, {workers} workers",
              flush=True)
        started = time.perf_counter()
        groups["experiments"] = run_experiments(names, profile, results, data_root, workers,
                                                costs, out / "logs")
        times["experiments"] = time.perf_counter() - started
    if "notebooks" in parts:
        chosen = sorted((repo_root() / "notebooks").glob("*.ipynb"))
        if notebooks:
            chosen = [nb for nb in chosen if nb.stem in notebooks]
        started = time.perf_counter()
        groups["notebooks"] = run_notebooks(chosen, profile, executed, results, data_root,
                                            workers, costs)
        times["notebooks"] = time.perf_counter() - started
    for outcomes in groups.values():
        ok = ok and all(o.ok for o in outcomes)
    if "book" in parts:
        failed = {nb.stem: "failed in this rehearsal"
                  for nb in sorted((repo_root() / "notebooks").glob("*.ipynb"))
                  if not (executed / f"{nb.stem}.ipynb").is_file()}
        book = build_book(profile, out, executed, results, failed)
        times["book"] = book.seconds
        groups["book"] = [book]
        ok = ok and book.ok
        state = f"ok {book.detail}" if book.ok else f"FAILED:\n{book.detail}"
        print(f"[rehearse] book: {state} ({book.seconds:.1f} s)", flush=True)
    write_json_atomic(costs_file, {**costs, **{o.name: round(o.seconds, 2)
                                               for g in groups.values() for o in g}})
    text = timings_markdown(profile, times, groups, workers)
    write_text_atomic(out / "timings.md", text)
    print(text.split("\n## ")[0], flush=True)
    print(f"[rehearse] timings: {out / 'timings.md'}", flush=True)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m deqode.rehearse",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="paper", help=f"one of {', '.join(PROFILES)}")
    parser.add_argument("--out", default="_build/rehearsal-paper", help="default: %(default)s")
    parser.add_argument("--workers", type=int, default=2, help="default: %(default)s")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS,
                        help="default: all, in order")
    parser.add_argument("--experiments", nargs="+", help="only these experiments")
    parser.add_argument("--notebooks", nargs="+", help="only these notebooks (names)")
    parser.add_argument("--worker", nargs=2, metavar=("RESULTS", "DATA_ROOT"),
                        help=argparse.SUPPRESS)  # internal: one worker of run_experiments
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args.profile, *args.worker)
    try:
        check_profile(args.profile)
        if args.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {args.workers}")
        return rehearse(args.profile, Path(args.out), args.workers, args.parts,
                        args.experiments, args.notebooks)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    os.environ.setdefault("DEQODE_THREADS", "1")
    raise SystemExit(main())
