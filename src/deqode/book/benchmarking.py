"""Shared plumbing of the scripts in ``benchmarks/``: command line, machine line, report files.

Every script measures something different; what they share is how they start (``--profile``,
``--out``, ``--device``, ``--seed``, ``--quick`` and a per-profile setting), how they name the
machine under their table, and how they write ``NAME.json``, ``NAME.png`` and ``NAME.md`` (in that
order: the markdown is make's target, so it is written last).
"""

from __future__ import annotations

import argparse
import io
import platform
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

from deqode import metrics
from deqode.choices import check_profile
from deqode.devices import describe_device, resolve_device
from deqode.metrics import cpu_model
from deqode.results import write_bytes_atomic, write_json_atomic, write_text_atomic

__all__ = [
    "BenchmarkRun",
    "heading",
    "machine",
    "png_bytes",
    "start",
    "subplots",
    "synchronize",
    "write_report",
]


@dataclass(frozen=True)
class BenchmarkRun:
    """What a benchmark script was asked to do, after :func:`start` checked it."""

    profile: str
    #: The entry of the script's settings table: ``"quick"`` with ``--quick``, else the profile's.
    setting: Mapping[str, Any]
    device: torch.device
    out: Path
    seed: int


def start(argv: Sequence[str] | None, description: str,
          settings: Mapping[str, Mapping[str, Any]], *, smoke_time: str = "< 1 min",
          quick_help: str = "tiny configuration to test the script") -> BenchmarkRun:
    """Parse a benchmark's command line, validate the profile and apply its setting.

    ``settings`` maps ``"smoke"``, ``"paper"`` and ``"quick"`` (and optionally ``"cpu"``; without
    it the cpu profile measures the smoke setting) to the script's configuration; each
    entry names at least its default ``"device"`` and its intra-op ``"threads"`` (``None``: torch's
    default). The chosen entry's thread count is set here, before anything is measured. The output
    folder defaults to ``results/<profile>/benchmarks``.

    Raises :class:`deqode.choices.UnknownChoiceError` for an unknown profile.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--profile", default="smoke",
                        help=f"smoke (CPU, {smoke_time}), cpu or paper")
    parser.add_argument("--out", default=None, help="folder (default results/<profile>/benchmarks)")
    parser.add_argument("--device", default=None,
                        help="auto, cpu, cuda[:N] (default: the profile's setting)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    args = parser.parse_args(argv)
    check_profile(args.profile)
    key = "quick" if args.quick else args.profile
    if key == "cpu" and "cpu" not in settings:
        key = "smoke"
    setting = settings[key]
    device = resolve_device(args.device or setting["device"])
    if setting["threads"]:  # small tensors on a shared CPU: fewer threads, less noise
        torch.set_num_threads(setting["threads"])
    return BenchmarkRun(profile=args.profile, setting=setting, device=device,
                        out=Path(args.out or f"results/{args.profile}/benchmarks"),
                        seed=args.seed)


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA), so that a wall-clock reading is complete."""
    metrics.synchronize(device)


def machine(device: torch.device, *packages: str) -> str:
    """Device, CPU model, intra-op threads and versions (torch, ``packages``, Python), one line."""
    where = f"{describe_device(device)}, host " if device.type == "cuda" else ""
    versions = "".join(f", {package} {version(package)}" for package in packages)
    return (f"{where}CPU {cpu_model()}, {torch.get_num_threads()} intra-op thread(s), "
            f"torch {torch.__version__}{versions}, Python {platform.python_version()}")


def heading(title: str, profile: str, smoke_note: str) -> list[str]:
    """The first markdown lines of a report: ``### title``, then on the CPU profiles the note."""
    lines = [f"### {title}", ""]
    if profile in ("smoke", "cpu"):
        lines += [f"*{smoke_note}*", ""]
    return lines


def introduction(title: str, profile: str, smoke_note: str, method: str, machine_line: str,
                 seconds: float, took_note: str = "") -> list[str]:
    """The heading (:func:`heading`) and the methods paragraph of a report, which ends with the
    machine and the benchmark's own run time."""
    return [*heading(title, profile, smoke_note),
            f"{method} Machine: {machine_line}. The benchmark took {seconds:.0f} s{took_note}.", ""]


def subplots(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """``matplotlib.pyplot.subplots`` on the file-only Agg backend, in the book's style."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deqode.book import plots

    plots.use_book_style()
    return plt.subplots(*args, **kwargs)


def png_bytes(fig: Any, profile: str, dpi: int = 130) -> bytes:
    """Stamp a CPU-profile figure with its label, lay it out, render it as PNG and close it."""
    import matplotlib.pyplot as plt

    from deqode.book import plots
    from deqode.book.notebook import profile_label

    if profile != "paper":
        plots.stamp(fig, profile_label(profile))
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def write_report(out: Path, name: str, record: Mapping[str, Any], text: str, png: bytes,
                 seconds: float) -> None:
    """Write ``name``.json, .png and .md (last) atomically into ``out``; print the table."""
    write_json_atomic(out / f"{name}.json", record)
    write_bytes_atomic(out / f"{name}.png", png)
    write_text_atomic(out / f"{name}.md", text)
    print(text)
    print(f"[{name}] {seconds:.1f} s -> {out / (name + '.md')}", file=sys.stderr)
