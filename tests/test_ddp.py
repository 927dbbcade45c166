"""DistributedDataParallel: two CPU processes (gloo) end where one process ends.

The two workers are started with the environment ``torchrun`` would give them (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and call the same
:func:`deqode.train.fit` as a single process. With the global batch fixed, each rank takes half of
every global batch, so the averaged gradients, and hence the weights, must agree — including the
shared initial point, whose gradient the harness averages outside DDP.
"""

from __future__ import annotations

import json
import os
import socket

import torch
import torch.multiprocessing as mp
from test_train import TinyNet, blobs

from deqode.train import InitPointConfig, TrainConfig, fit

CONFIG = TrainConfig(name="ddp", model=TinyNet, dataset=blobs, epochs=2, batch_size=32,
                     test_batch_size=50, lr=0.02, dtype="float64",
                     init_point=InitPointConfig(freq=2))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world: int, port: int, results_dir: str) -> None:
    os.environ.update({"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    torch.set_num_threads(1)
    result = fit(CONFIG, profile="smoke", device="cpu", results_dir=results_dir, progress=False,
                 quiet=True)
    assert result.state == "completed", result.reason


def test_two_gloo_processes_match_one_process(tmp_path):
    single = fit(CONFIG, profile="smoke", device="cpu", results_dir=tmp_path / "single",
                 progress=False, quiet=True)
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "ddp")), nprocs=2, join=True)

    out = tmp_path / "ddp" / "smoke" / "ddp"
    a = torch.load(single.out_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    b = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert set(a["model"]) == set(b["model"]) and "init_layer.weight" in a["model"]
    diff = max(float((a["model"][k] - b["model"][k]).abs().max()) for k in a["model"])
    assert diff < 1e-5, diff
    init_moved = float((a["model"]["init_layer.weight"] - b["model"]["init_layer.weight"]).abs()
                       .max())
    assert init_moved < 1e-5 and b["init_scheduler"]["last_epoch"] == 7  # iterations 0,2,...,12

    record = json.loads((out / "metrics.json").read_text())
    summary = record["summary"]
    assert summary["world_size"] == 2 and summary["per_rank_batch_size"] == 16
    assert summary["global_batch_size"] == 32 and summary["iterations_per_epoch"] == 7
    assert len(b["rng"]) == 2  # every rank's RNG state is in the checkpoint
    for ours, ref in zip(record["history"], single.history, strict=True):
        for key in ("train_loss", "train_acc", "test_loss", "test_acc", "nfe_forward"):
            assert abs(ours[key] - ref[key]) < 1e-9, key
