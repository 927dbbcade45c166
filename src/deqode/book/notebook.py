"""The notebook contract: validate the papermill parameters, seed, pick the device, save figures.

Every notebook's first code cell (tagged ``parameters``) sets at least ``profile``, ``seed``,
``device`` and ``results_dir``; the next cell calls :func:`start`, which fails at once on an
unknown profile or device, naming the valid choices.

Under the ``cpu`` and ``paper`` profiles the training progress of :func:`deqode.train.fit`
(:mod:`deqode.train.progress`) goes to a log file, never into the notebook's outputs:
``python -m deqode.book execute`` names the file (``<executed notebook>.log``) in
:data:`PROGRESS_LOG_ENV` and echoes its new lines to the console (:func:`follow_progress`).
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from deqode.choices import ONE_THREAD_PROFILES, check_profile
from deqode.devices import resolve_device
from deqode.environment import environment_record, track_imported_packages, write_package_list
from deqode.paths import resolve
from deqode.paths import results_dir as _results_dir
from deqode.results import write_json_atomic
from deqode.train import progress
from deqode.train.rng import seed_everything

SMOKE_LABEL = "smoke profile — not a reproduction of the paper's numbers"
CPU_LABEL = "cpu profile — narrowed models on 2 CPU cores, not the paper's scale"
PROFILE_LABELS = {"smoke": SMOKE_LABEL, "cpu": CPU_LABEL, "paper": "paper profile"}
#: Profiles whose notebooks log their training progress.
PROGRESS_PROFILES = ("cpu", "paper")
#: The progress log a notebook's kernel writes to (set by ``python -m deqode.book execute``).
PROGRESS_LOG_ENV = "DEQODE_PROGRESS_LOG"


def profile_label(profile: str) -> str:
    """The caption stamp of figures and tables of ``profile``."""
    return PROFILE_LABELS[check_profile(profile)]


def progress_log(profile: str, out: Path) -> Path | None:
    """Where this kernel's training progress goes: the file named in :data:`PROGRESS_LOG_ENV`,
    else ``<out>/progress.log`` under the ``cpu`` and ``paper`` profiles (a notebook run by
    hand), else nowhere (None)."""
    named = os.environ.get(PROGRESS_LOG_ENV, "").strip()
    if named:
        return Path(named)
    return out / "progress.log" if profile in PROGRESS_PROFILES else None


class _Follower(threading.Thread):
    """Echoes the complete lines appended to a file after ``offset``, polling every ``every_s``."""

    def __init__(self, path: Path, prefix: str, offset: int, every_s: float) -> None:
        super().__init__(name=f"follow {path.name}", daemon=True)
        self.path, self.prefix, self.offset, self.every_s = path, prefix, offset, every_s
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(self.every_s):
            self.drain()

    def drain(self) -> None:
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return
        complete = chunk[:chunk.rfind(b"\n") + 1]
        self.offset += len(complete)
        for line in complete.decode("utf-8", errors="replace").splitlines():
            line = re.sub(r"^\d{4}-\d\d-\d\d ", "", line)  # the console shows the time only
            print(f"{self.prefix} {line}", flush=True)


@contextmanager
def follow_progress(path: str | os.PathLike, name: str, every_s: float = 1.0) -> Iterator[Path]:
    """While the block runs, kernels started in it log their progress to ``path`` (appended;
    :data:`PROGRESS_LOG_ENV`) and its new lines are printed as ``[name] HH:MM:SS line``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    before = os.environ.get(PROGRESS_LOG_ENV)
    follower = _Follower(path, f"[{name}]", path.stat().st_size if path.exists() else 0,
                         every_s)
    os.environ[PROGRESS_LOG_ENV] = str(path)
    follower.start()
    try:
        yield path
    finally:
        follower.stopped.set()
        follower.join()
        follower.drain()
        if before is None:
            os.environ.pop(PROGRESS_LOG_ENV, None)
        else:
            os.environ[PROGRESS_LOG_ENV] = before



@dataclass
class Run:
    """One notebook execution: its profile, device, output folder and helpers."""

    name: str
    profile: str
    seed: int
    device: torch.device
    out: Path
    data_root: Path
    started: float = field(default_factory=time.time)

    @property
    def is_smoke(self) -> bool:
        return self.profile == "smoke"

    @property
    def is_cpu(self) -> bool:
        return self.profile == "cpu"

    @property
    def is_rehearsal(self) -> bool:
        """True under ``make rehearse-cpu``: loops stop after a few steps; not results."""
        from deqode import rehearsal

        return rehearsal.active()

    @property
    def label(self) -> str:
        """The caption stamp every figure and table carries."""
        if self.is_rehearsal:
            return f"{self.profile} rehearsal — a few steps per run, not results"
        return profile_label(self.profile)

    @property
    def results_root(self) -> Path:
        """The results folder that holds ``<profile>/<notebook>/`` (``results/`` by default)."""
        return self.out.parent.parent

    def claim(self, claim_id: str, *, ran: str, measured: str, rule: str, verdict: str,
              section: str, reason: str = "", values: dict | None = None) -> Path:
        """Write this notebook's evidence for ``claim_id`` to the claims ledger (see
        :mod:`deqode.book.claims`); the verdict must come from a rule in code, never typed here."""
        from deqode.book import claims

        evidence = claims.Evidence(
            claim_id=claim_id, profile=self.profile, ran=ran, measured=measured, rule=rule,
            verdict=verdict, notebook=self.name, section=section, reason=reason,
            values=dict(values or {}),
        )
        return claims.record(evidence, results_dir=self.results_root)

    def savefig(self, fig, name: str, **kwargs) -> Path:
        """Save ``fig`` atomically as ``results/<profile>/<notebook>/<name>.png``; return it."""
        import io

        from deqode.results import write_bytes_atomic

        kwargs.setdefault("dpi", 150)
        kwargs.setdefault("bbox_inches", "tight")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", **kwargs)
        return write_bytes_atomic(self.out / f"{name}.png", buffer.getvalue())

    def show(self, fig, name: str, *, stamp: bool | str = True) -> None:
        """Stamp ``fig``, save it (:meth:`savefig`), display it and close it.

        Returns nothing, so that a cell ending in ``run.show(...)`` shows only the figure.

        ``stamp``: ``True`` writes the profile label (:attr:`label`), a string writes that caption
        instead, ``False`` leaves the figure unstamped (profile-independent figures).
        """
        import matplotlib.pyplot as plt

        from deqode.book import plots

        if stamp:
            plots.stamp(fig, self.label if stamp is True else stamp)
        self.savefig(fig, name)
        plt.show()
        plt.close(fig)

    def save_json(self, name: str, record: Any) -> Path:
        return write_json_atomic(self.out / f"{name}.json", record)


def _plain(value: Any) -> Any:
    """A Python scalar for a NumPy or torch scalar (whose repr myst-nb could not format)."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


def glue_values(values: dict[str, Any]) -> None:
    """Glue each value under its name for the page's ``{glue:text}`name:.1f``` roles (myst-nb),
    without showing it in the notebook. Values are strings or numbers."""
    from myst_nb import glue

    for name, value in values.items():
        value = _plain(value)
        if not isinstance(value, str | int | float):
            raise TypeError(f"glue value {name!r} must be a str, int or float, got "
                            f"{type(value).__name__}")
        glue(name, value, display=False)


def glue_markdown(name: str, text: str) -> None:
    """Glue the Markdown ``text`` under ``name`` for a ``{glue:md}`` directive (an empty text
    renders nothing: a paragraph for one profile only)."""
    from IPython.display import Markdown
    from myst_nb import glue

    glue(name, Markdown(text), display=False)


def start(
    name: str,
    *,
    profile: str,
    seed: int = 0,
    device: str = "auto",
    results_dir: str | os.PathLike = "results",
    data_root: str | os.PathLike = "data",
    float64: bool = False,
) -> Run:
    """Validate the notebook parameters and set the run up.

    Raises at once for an unknown profile or device. Relative folders are taken relative to the
    repository root, so the notebook gives the same result wherever its kernel was started.
    Torch's CPU threads: ``DEQODE_THREADS`` if set (the Makefile sets it when notebooks run side by
    side), else one thread for the smoke and cpu profiles on the CPU (small models; two notebooks
    share two cores, and more threads per process oversubscribe them), else torch's default.
    """
    check_profile(profile)
    if not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {seed!r}")
    dev = resolve_device(device)
    threads = os.environ.get("DEQODE_THREADS") or (
        1 if profile in ONE_THREAD_PROFILES and dev.type == "cpu" else 0
    )
    if int(threads):
        torch.set_num_threads(int(threads))
    seed_everything(seed)
    if float64:
        torch.set_default_dtype(torch.float64)
    out = _results_dir(profile, name, root=results_dir)
    run = Run(
        name=name, profile=profile, seed=seed, device=dev, out=out, data_root=resolve(data_root)
    )
    write_json_atomic(
        out / "run.json",
        {
            "notebook": name,
            "profile": profile,
            "seed": seed,
            **environment_record(dev),
            "argv": sys.argv[:1],
        },
    )
    write_package_list(out)
    track_imported_packages(out / "run.json")  # the versions of what the notebook imports
    log = progress_log(profile, out)
    if log is not None:
        progress.log_to_file(log)
    from deqode.book import plots

    plots.use_book_style()
    return run
