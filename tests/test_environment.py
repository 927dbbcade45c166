"""Run records for GPU readers: CUDA/cuDNN, the GPUs, TF32 and determinism settings, AMP and
the package list, on the CPU and (with torch.cuda faked) on GPUs."""

from __future__ import annotations

import atexit
import json
import sys
import types
from importlib import metadata

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from deqode import environment
from deqode.train import TrainConfig, fit

GPU_FIELDS = ("cuda", "cudnn", "gpu_name", "gpu_count", "tf32_matmul", "tf32_cudnn",
              "float32_matmul_precision", "cudnn_benchmark", "cudnn_deterministic",
              "deterministic_algorithms", "amp")


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture
def two_gpus(monkeypatch):
    """torch.cuda as on a machine with two GPUs, the current one being the second."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    names = ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB"]
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: names[index])
    # cuDNN's own first call would query the (absent) devices' capabilities
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 90100)


def test_cpu_run_records_no_gpu(no_gpu):
    record = environment.environment_record(torch.device("cpu"))
    assert set(GPU_FIELDS) <= set(record)
    assert record["gpu_name"] == environment.NO_GPU and record["gpu_count"] == 0
    assert record["amp"] == "off" and record["packages"] == environment.PACKAGES_FILE
    assert record["cuda"] == torch.version.cuda
    json.dumps(record)  # a JSON record: plain values only


def test_cpu_only_torch_build_has_no_cuda_or_cudnn_version(no_gpu, monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    monkeypatch.setattr(torch.backends.cudnn, "is_available", lambda: False)
    record = environment.gpu_record(torch.device("cpu"))
    assert record["cuda"] is None and record["cudnn"] is None


def test_gpu_run_records_the_gpu_it_ran_on(two_gpus, monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    record = environment.environment_record(torch.device("cuda"))
    assert record["gpu_name"] == "NVIDIA A100-SXM4-40GB" and record["gpu_count"] == 2
    assert record["device"] == "cuda:1 (NVIDIA A100-SXM4-40GB)"
    assert record["cuda"] == "12.4" and record["cudnn"] == 90100
    first = environment.gpu_record(torch.device("cuda:0"))
    assert first["gpu_name"] == "NVIDIA H100 80GB HBM3"
    # on the CPU of a GPU machine: the GPUs are counted, none is named as the run's
    on_cpu = environment.gpu_record(torch.device("cpu"))
    assert on_cpu["gpu_name"] == environment.NO_GPU and on_cpu["gpu_count"] == 2


def test_settings_are_recorded_as_set(two_gpus):
    precision = torch.get_float32_matmul_precision()
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    try:
        torch.set_float32_matmul_precision("high")
        torch.use_deterministic_algorithms(True)
        with torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=True,
                                        allow_tf32=False):
            record = environment.gpu_record(torch.device("cuda:0"))
        default = environment.gpu_record(torch.device("cuda:0"))
    finally:
        torch.set_float32_matmul_precision(precision)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    assert record["float32_matmul_precision"] == "high" and record["tf32_matmul"] is True
    assert record["cudnn_benchmark"] is True and record["cudnn_deterministic"] is True
    assert record["tf32_cudnn"] is False and record["deterministic_algorithms"] is True
    assert default["cudnn_benchmark"] is False and default["tf32_cudnn"] is True


def test_package_list_is_sorted_and_names_what_is_installed():
    lines = environment.package_list().splitlines()
    assert f"torch=={metadata.version('torch')}" in lines
    assert f"numpy=={metadata.version('numpy')}" in lines
    names = [line.split("==")[0].lower() for line in lines]
    assert names == sorted(set(names)) and all("==" in line for line in lines)


def test_fit_writes_the_package_list_beside_its_records(tmp_path):
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(16, 3, generator=gen), torch.randint(0, 2, (16,)))
    config = TrainConfig(name="env", model=lambda: nn.Linear(3, 2), dataset=lambda split: data,
                         epochs=1, batch_size=8, test_batch_size=8, lr=0.1)
    fit(config, profile="smoke", device="cpu", results_dir=tmp_path, progress=False, quiet=True)
    out = tmp_path / "smoke" / "env"
    text = (out / environment.PACKAGES_FILE).read_text()
    assert text.startswith("# installed packages (python ")
    assert text.split("\n", 1)[1] == environment.package_list()
    recorded = json.loads((out / "config.json").read_text())["environment"]
    assert recorded["gpu_name"] == environment.NO_GPU and recorded["amp"] == "off"
    assert not list(out.glob(".*.tmp"))


def test_imported_packages_names_distributions_not_modules():
    found = environment.imported_packages(["numpy.linalg", "torch", "PIL.Image", "os", "json"])
    assert found["numpy"] == metadata.version("numpy")
    assert found["torch"] == metadata.version("torch")
    assert found["pillow"] == metadata.version("pillow")  # module PIL, distribution pillow
    assert set(found) == {"numpy", "torch", "pillow"}  # the standard library is no package
    assert list(found) == sorted(found, key=str.lower)


@pytest.fixture
def fresh_tracker(monkeypatch):
    monkeypatch.setattr(environment, "_tracker", None)
    monkeypatch.setattr(atexit, "register", lambda func: func)


def test_the_run_record_gains_each_package_imported_later(tmp_path, monkeypatch, fresh_tracker):
    """A notebook imports as it goes: the record is rewritten after each cell that imported
    something (a fake IPython shell's post_run_cell event here)."""
    hooks = []
    shell = types.SimpleNamespace(events=types.SimpleNamespace(
        register=lambda event, func: hooks.append((event, func))))
    monkeypatch.setitem(sys.modules, "IPython",
                        types.SimpleNamespace(get_ipython=lambda: shell))
    owners = {"torch": ["torch"]}  # module -> distributions, as packages_distributions()
    monkeypatch.setattr(environment, "_module_owners", lambda: owners)
    record = tmp_path / "run.json"
    record.write_text(json.dumps({"notebook": "x"}))
    environment.track_imported_packages(record)
    first = json.loads(record.read_text())
    assert first == {"notebook": "x",
                     environment.IMPORTED_KEY: {"torch": metadata.version("torch")}}
    assert [event for event, _ in hooks] == ["post_run_cell"]
    # a cell imports a module of a distribution not imported before
    owners["deqode_fake_module"] = ["pytest"]
    monkeypatch.setitem(sys.modules, "deqode_fake_module", types.ModuleType("deqode_fake_module"))
    hooks[0][1](None)
    after = json.loads(record.read_text())[environment.IMPORTED_KEY]
    assert after == {"pytest": metadata.version("pytest"), "torch": metadata.version("torch")}


def test_notebook_start_tracks_the_imports_in_run_json(tmp_path, fresh_tracker):
    from deqode.book import notebook

    run = notebook.start("env_nb", profile="smoke", device="cpu", results_dir=tmp_path)
    environment._tracker.update()  # as at the end of the cell that called start()
    imported = json.loads((run.out / "run.json").read_text())[environment.IMPORTED_KEY]
    assert imported["torch"] == metadata.version("torch")
    assert imported["matplotlib"] == metadata.version("matplotlib")  # the book's plot style
