"""Benchmarks: the memory measures they rely on, their pure helpers, and a tiny run of each script.

The scripts in ``benchmarks/`` are not a package; they are loaded from their files. Timings are
never asserted (they depend on the machine's load); counts, memory and files are.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from deqode.book.benchmarking import heading, machine, start
from deqode.choices import UnknownChoiceError
from deqode.metrics import MB, RSSPeakMeter, SavedTensorMeter, cpu_model

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str) -> ModuleType:
    """Import ``benchmarks/bench_<name>.py`` as a module."""
    path = BENCHMARKS / f"bench_{name}.py"
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


# --- memory measures ------------------------------------------------------------------------------


def test_rss_peak_meter_sees_a_fresh_allocation() -> None:
    with RSSPeakMeter() as rss:
        block = torch.ones(64 * 2**20 // 4)  # 64 MB, every page touched
        del block
    if rss.growth_bytes is None:
        pytest.skip("no /proc peak-RSS interface on this system")
    assert 60 * MB < rss.growth_bytes < 1024 * MB


def test_rss_peak_meter_resets_between_blocks() -> None:
    with RSSPeakMeter():
        block = torch.ones(128 * 2**20 // 4)
        del block
    with RSSPeakMeter() as rss:
        small = torch.ones(1024)
        del small
    if rss.growth_bytes is None:
        pytest.skip("no /proc peak-RSS interface on this system")
    assert rss.growth_bytes < 64 * MB  # the 128 MB of the first block are not counted again


def test_saved_tensor_peak_grows_with_the_number_of_saved_steps() -> None:
    """Backprop through n tanh steps saves n outputs of 1 MB each (float32, 2**18 entries)."""
    weight = torch.ones((), requires_grad=True)
    peaks = []
    for steps in (2, 4, 8):
        meter = SavedTensorMeter()
        with meter.track(exclude=[weight]):
            z = torch.zeros(2**18) + weight
            for _ in range(steps):
                z = torch.tanh(z)  # tanh saves its output
            z.sum().backward()
        peaks.append(meter.peak_bytes / MB)
        assert meter.live_bytes == 0
    assert peaks == pytest.approx([2.0, 4.0, 8.0])


def test_cpu_model_is_named() -> None:
    assert isinstance(cpu_model(), str) and cpu_model().strip()


# --- the scripts' shared plumbing -----------------------------------------------------------------


def test_start_benchmark_applies_the_chosen_setting(tmp_path: Path, restore_threads) -> None:
    settings = {"smoke": {"threads": 1, "device": "cpu", "size": 8},
                "paper": {"threads": None, "device": "cpu", "size": 64},
                "quick": {"threads": 2, "device": "cpu", "size": 2}}
    run = start(["--quick", "--seed", "3"], "test", settings)
    assert run.setting["size"] == 2 and run.seed == 3 and torch.get_num_threads() == 2
    assert run.out == Path("results/smoke/benchmarks") and run.device == torch.device("cpu")
    run = start(["--profile", "paper", "--out", str(tmp_path)], "test", settings)
    assert run.setting["size"] == 64 and run.out == tmp_path and run.profile == "paper"


def test_report_heading_and_machine_line() -> None:
    assert heading("T", "smoke", "note") == ["### T", "", "*note*", ""]
    assert heading("T", "paper", "note") == ["### T", ""]
    line = machine(torch.device("cpu"), "torchdiffeq")
    assert line.startswith(f"CPU {cpu_model()}, ") and ", torchdiffeq 0.2.5, Python " in line


# --- HomoODE memory benchmark ---------------------------------------------------------------------


def _record(bench: ModuleType, mode: str, nfe: int, peak: float) -> object:
    return bench.StepRecord(mode=mode, tol=1e-3, nfe_forward=nfe, nfe_backward=nfe,
                            forward_s=0.1, backward_s=0.2, saved_peak_mb=peak,
                            rss_growth_mb=None, cuda_growth_mb=None)


def test_memory_verdict_holds_only_for_flat_adjoint_and_growing_backprop() -> None:
    bench = load("homoode_memory")
    nfes = (14, 20, 32, 86)
    flat = [_record(bench, mode, n, 5.3) for n in nfes for mode in ("adjoint", "frozen_adjoint")]
    growing = [_record(bench, "backprop", n, 10.0 + 1.25 * n) for n in nfes]
    check = bench.verdict(flat + growing)
    assert check["holds"]
    assert check["adjoint"]["flat"] and not check["backprop"]["flat"]
    assert check["backprop"]["slope_mb_per_nfe"] == pytest.approx(1.25)
    assert check["backprop"]["nfe"] == (14, 86)

    constant = [_record(bench, "backprop", n, 40.0) for n in nfes]
    assert not bench.verdict(flat + constant)["holds"]
    rising_adjoint = [_record(bench, "adjoint", n, 5.0 + n) for n in nfes]
    frozen = [r for r in flat if r.mode == "frozen_adjoint"]
    assert not bench.verdict(rising_adjoint + frozen + growing)["holds"]


@pytest.mark.slow
def test_homoode_memory_quick_run_writes_its_files(tmp_path: Path, restore_threads) -> None:
    bench = load("homoode_memory")
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "homoode_memory.md").read_text()
    assert text.startswith("### ") and "| backprop |" in text and "| adjoint |" in text
    assert "Machine: " in text and "torch " in text
    assert (tmp_path / "homoode_memory.png").read_bytes()[:4] == b"\x89PNG"
    from deqode.results import read_json

    record = read_json(tmp_path / "homoode_memory.json")
    rows = record["records"]
    assert len(rows) == 2 * 3  # two tolerances, three gradient modes
    for row in rows:  # the same forward solve in every mode
        same_tol = [r for r in rows if r["tol"] == row["tol"]]
        assert {r["nfe_forward"] for r in same_tol} == {row["nfe_forward"]}
    assert all(r["nfe_backward"] == 0 for r in rows if r["mode"] == "backprop")
    assert all(r["nfe_backward"] > 0 for r in rows if r["mode"] != "backprop")
    assert not list(tmp_path.glob(".*.tmp"))  # atomic writes leave no temporaries


def test_benchmarks_reject_an_unknown_profile(tmp_path: Path) -> None:
    for name in ("homoode_memory", "deq_solvers", "nesterov", "cdeq", "harness",
                 "homoode_official"):
        with pytest.raises(UnknownChoiceError, match="'smoke', 'cpu', 'paper'"):
            load(name).main(["--profile", "full", "--out", str(tmp_path)])


# --- DEQ solver benchmark -------------------------------------------------------------------------


def test_relative_residual_and_counter() -> None:
    bench = load("deq_solvers")
    z = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    fz = torch.tensor([[0.0, 4.0], [0.0, 1.0]])  # sample 0: ||fz - z|| = 5, ||fz|| = 4
    assert bench.relative_residual(z, fz) == pytest.approx(5.0 / (4.0 + 1e-9))
    counted = bench.Counted(lambda v: 0.5 * v, trace=True)
    counted(z)
    counted(fz)
    assert counted.calls == 2 and counted.residuals == pytest.approx([1.0, 1.0])


@pytest.mark.parametrize("method", ["broyden", "anderson"])
def test_both_libraries_solve_the_synthetic_map_to_the_same_point(method: str) -> None:
    pytest.importorskip("torchdeq")
    bench = load("deq_solvers")
    case = bench.tanh_case(24, 3, torch.device("cpu"), seed=0)
    case.tol, case.max_iter = 1e-5, 60
    points = {}
    for library, solve in bench.SOLVERS.items():
        counted = bench.Counted(case.f)
        z = solve(method, counted, case)
        assert counted.calls <= case.max_iter + 1  # the same evaluation budget
        assert bench.relative_residual(z, case.f(z)) < 1e-4
        points[library] = z
    assert (points["deqode"] - points["torchdeq"]).abs().max() < 1e-4


def test_deq_solvers_quick_run_writes_its_files(tmp_path: Path, restore_threads) -> None:
    pytest.importorskip("torchdeq")
    bench = load("deq_solvers")
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "deq_solvers.md").read_text()
    assert text.startswith("### ") and "torchdeq 0.1.0" in text
    assert text.count("| broyden, ") == 2 and text.count("| anderson, ") == 2
    assert (tmp_path / "deq_solvers.png").read_bytes()[:4] == b"\x89PNG"
    from deqode.results import read_json

    rows = read_json(tmp_path / "deq_solvers.json")["rows"]
    for row in rows:
        assert row["nfe"]["deqode"] <= row["max_iter"] + 1
        assert row["nfe"]["torchdeq"] <= row["max_iter"] + 1
        assert row["ratio"] > 0
    # Broyden is the same algorithm in both libraries: on the DEQ cell within the budget (no
    # stop, no memory wrap-around) the traces agree up to float32 round-off at the first steps
    cell = next(r for r in rows if r["method"] == "broyden" and "cell" in r["case"])
    ours, theirs = cell["traces"]["deqode"][:4], cell["traces"]["torchdeq"][:4]
    assert ours == pytest.approx(theirs, rel=1e-3)


# --- continuous vs discrete DEQ benchmark ---------------------------------------------------------


@pytest.mark.slow
def test_cdeq_quick_run_writes_its_files(tmp_path: Path, restore_threads) -> None:
    bench = load("cdeq")
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "cdeq.md").read_text()
    assert text.startswith("### Continuous vs discrete DEQ") and "Machine: " in text
    assert (tmp_path / "cdeq.png").read_bytes()[:4] == b"\x89PNG"
    from deqode.results import read_json

    record = read_json(tmp_path / "cdeq.json")
    assert record["trained"]["epochs"] == 1
    assert len(record["rows"]) == len(bench.TOLERANCES) * len(bench.SOLVERS)
    for row in record["rows"]:
        assert row["nfe"] > 0 and 0.0 <= row["accuracy"] <= 100.0
    # the discrete Broyden solve meets both tolerances on this model (the benchmark's premise)
    discrete = [r for r in record["rows"] if r["solver"].startswith("discrete")]
    assert all(r["residual"] <= r["tol"] for r in discrete)
    assert not list(tmp_path.glob(".*.tmp"))
