"""The training harness keeps results equal: ``fit`` against a bare loop, the saved-tensor meter
on and off, and the meter's place outside a run's identity; a tiny run of bench_harness.py."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from deqode.results import read_json
from deqode.train import TrainConfig, fit
from deqode.train.checkpoints import DOCUMENTATION_FIELDS
from deqode.train.reuse import changed_fields, finished_run
from deqode.train.rng import seed_everything

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_harness.py"
STEPS, BATCH = 12, 16


class Data:
    """Inputs and labels as tensors (batches in dataset order, no loader)."""

    def __init__(self, n: int, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        self.inputs = torch.randn(n, 6, generator=gen)
        self.targets = torch.randint(0, 3, (n,), generator=gen)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        return self.inputs[i], self.targets[i]


def dataset(split: str) -> Data:
    return Data(BATCH * STEPS if split == "train" else BATCH, 0 if split == "train" else 1)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Dropout(0.1), nn.Linear(32, 3))


def config(**changes) -> TrainConfig:
    settings = {"record_steps": True, **changes}
    return TrainConfig(name="equal", model=mlp, dataset=dataset, batch_size=BATCH,
                       test_batch_size=BATCH, data_order="in_order", lr=0.01, seed=3,
                       **settings)


def train(tmp_path: Path, cfg: TrainConfig):
    return fit(cfg, profile="smoke", device="cpu", results_dir=tmp_path, progress=False,
               quiet=True)


def bare_loop(cfg: TrainConfig) -> tuple[nn.Module, list[float]]:
    """The same training written out: seeded as fit seeds, Adam, the cosine schedule."""
    seed_everything(cfg.seed)
    model = mlp()
    seed_everything(cfg.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, STEPS, eta_min=cfg.eta_min)
    data, losses = dataset("train"), []
    model.train()
    for i in range(STEPS):
        rows = slice(i * BATCH, (i + 1) * BATCH)
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(data.inputs[rows]), data.targets[rows])
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return model, losses


def test_fit_trains_bit_for_bit_as_a_bare_loop(tmp_path: Path) -> None:
    cfg = config()
    result = train(tmp_path, cfg)
    model, losses = bare_loop(cfg)
    assert [s["loss"] for s in result.history[0]["steps"]] == losses
    for mine, bare in zip(result.model.parameters(), model.parameters(), strict=True):
        assert torch.equal(mine, bare)
    grads = [p.grad for p in result.model.parameters()]
    # the gradient norm the loop records is torch's get_total_norm of the last step's gradients
    assert result.history[0]["grad_norm"] > 0 and all(g is not None for g in grads)


def test_the_saved_tensor_meter_measures_without_changing_the_run(tmp_path: Path) -> None:
    off = train(tmp_path / "off", config())
    on = train(tmp_path / "on", config(measure_memory=True))
    assert off.history[0]["saved_tensor_peak_mb"] is None  # opt-in: off by default
    assert on.history[0]["saved_tensor_peak_mb"] > 0
    for a, b in zip(off.model.parameters(), on.model.parameters(), strict=True):
        assert torch.equal(a, b)
    skip = ("time", "cpu_time")
    assert ([{k: v for k, v in s.items() if k not in skip} for s in off.history[0]["steps"]]
            == [{k: v for k, v in s.items() if k not in skip} for s in on.history[0]["steps"]])


def test_the_meter_is_not_part_of_a_runs_identity(tmp_path: Path) -> None:
    assert "measure_memory" in DOCUMENTATION_FIELDS
    cfg = config(record_steps=False)
    assert "measure_memory" not in cfg.to_dict()  # the default: recorded configs unchanged
    assert cfg.replace(measure_memory=True).to_dict()["measure_memory"] is True
    # runs recorded while the meter was on by default (key absent) or set off explicitly
    for recorded in (cfg.to_dict(), {**cfg.to_dict(), "measure_memory": False}):
        for current in (cfg, cfg.replace(measure_memory=True)):
            assert changed_fields(recorded, current) == []
    # a stopped run resumes, and a finished one is read back, whatever the meter's setting
    on = cfg.replace(epochs=2, measure_memory=True)
    stopped = fit(on, profile="smoke", device="cpu", results_dir=tmp_path, progress=False,
                  quiet=True, max_epochs=1)
    assert stopped.state == "stopped"
    off = cfg.replace(epochs=2)
    resumed = fit(off, profile="smoke", device="cpu", results_dir=tmp_path, progress=False,
                  quiet=True, resume=True)
    assert resumed.state == "completed" and resumed.history[0]["saved_tensor_peak_mb"] > 0
    assert resumed.history[1]["saved_tensor_peak_mb"] is None
    assert finished_run(on, "smoke", tmp_path) is not None
    recorded = read_json(tmp_path / "smoke" / cfg.name / "config.json")["config"]
    assert changed_fields(recorded, off.replace(lr=0.5)) == ["lr"]  # other fields still count


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_bench_harness_quick_run_writes_its_files(tmp_path: Path, restore_threads) -> None:
    spec = importlib.util.spec_from_file_location("bench_harness", BENCH)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    spec.loader.exec_module(bench)
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "harness.md").read_text()
    # same parameters in every case; judged (✓): the book's row, not the micro ones
    table = [line for line in text.splitlines() if line.startswith("| micro") or " ✓ |" in line]
    assert text.startswith("### ") and len(table) == 3
    assert all(line.endswith("| yes |") for line in table)
    assert [" ✓ |" in line for line in table] == [False, False, True]
    rows = read_json(tmp_path / "harness.json")["rows"]
    # the two micro cases and HomoODE (its initial-point update in both loops)
    assert [r["steps"] for r in rows] == [6, 6, 3]
    assert all(r["same_parameters"] for r in rows)
    assert [r["judged"] for r in rows] == [False, False, True]
    assert all(r["bare_cpu_ms"] > 0 and r["harness_cpu_ms"] > 0 for r in rows)
    assert (tmp_path / "harness.png").read_bytes()[:4] == b"\x89PNG"
