"""Training progress: the lines fit logs, the notebook's log file, and the console of
``python -m deqode.book execute``."""

from __future__ import annotations

import logging
import os
import re

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from deqode.book import build as book
from deqode.book import notebook
from deqode.paths import repo_root
from deqode.train import TrainConfig, fit, progress

NOTEBOOK = repo_root() / "notebooks" / "01_homotopy_link.ipynb"


@pytest.fixture(autouse=True)
def detached_progress_logger():
    """Each test starts and ends with the progress logger as a library leaves it: silent."""
    logger = progress.logger
    before = list(logger.handlers)
    yield
    for handler in [h for h in logger.handlers if h not in before]:
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.NOTSET)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class NFELinear(nn.Linear):
    """A linear classifier that reports 3 function evaluations per forward pass."""

    def reset_nfe(self) -> None:
        self.nfe_forward = self.nfe_backward = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.nfe_forward += 3
        return super().forward(x)


def tiny_config(**changes) -> TrainConfig:
    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(24, 3, generator=gen), torch.randint(0, 2, (24,)))
    config = TrainConfig(name="tiny_progress", model=lambda: NFELinear(3, 2),
                         dataset=lambda split: data, epochs=3, batch_size=8, test_batch_size=8,
                         lr=0.1)
    return config.replace(**changes)


def test_durations_read_at_a_glance():
    assert [progress.duration(s) for s in (0.4, 42, 307, 3 * 3600 + 720, 2 * 86400 + 4 * 3600)] \
        == ["0s", "42s", "5m07s", "3h12m", "2d04h"]


def test_eta_counts_only_the_epochs_of_this_session(tmp_path):
    clock = Clock()
    reporter = progress.Progress("resumed", 10, 100, clock=clock)
    reporter.begin(4, 8)  # resumed after epoch 4, stops after epoch 8
    clock.now = 100.0  # two epochs in 100 s: two more take 100 s
    line = reporter.epoch_line({"epoch": 6, "epoch_time_s": 50.0, "nfe_forward": 12.0,
                                "nfe_backward": 7.5}, "train loss 0.5000")
    assert line == ("[resumed] epoch 6/10  train loss 0.5000  nfe 12.0/7.5  50.0s  "
                    "elapsed 1m40s  eta 1m40s")


def test_step_lines_come_only_when_logged_and_due(tmp_path):
    clock = Clock()
    reporter = progress.Progress("long", 4, 200, every_s=60.0, clock=clock)
    clock.now = 120.0
    assert not reporter.due()  # nobody listens: no line is made
    log = progress.log_to_file(tmp_path / "progress.log")
    assert reporter.due()
    reporter.step(0, 50, {"train_loss": 1.25, "train_acc": 0.5, "grad_norm": 3.0,
                          "nfe_forward": 10.0, "nfe_backward": 4.0})
    clock.now = 150.0
    assert not reporter.due()  # 30 s after the last line
    text = log.read_text()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[long\] epoch 1/4 step 50/200  "
                        r"train loss 1\.2500 acc 0\.5000  nfe 10\.0/4\.0  "
                        r"elapsed 2m00s  eta 30m00s\n", text), text


def test_a_session_with_nothing_to_train_says_so(tmp_path):
    log = progress.log_to_file(tmp_path / "progress.log")
    progress.Progress("capped", 157, 2).begin(1, 1)  # a rehearsal resuming its capped run
    progress.Progress("fresh", 3, 2).begin(0, 3)
    lines = [line.split(" ", 2)[2] for line in log.read_text().splitlines()]
    assert lines == ["[capped] nothing to train: 1 of 157 epochs done, this session stops at 1",
                     "[fresh] training epochs 1-3 of 3, 2 steps per epoch"]


def test_fit_logs_every_epoch_and_the_end_even_when_quiet(tmp_path, capsys):
    log = progress.log_to_file(tmp_path / "progress.log")
    result = fit(tiny_config(), profile="smoke", device="cpu", results_dir=tmp_path,
                 progress=False, quiet=True)
    assert result.state == "completed"
    assert capsys.readouterr() == ("", "")  # a quiet run prints nothing (notebook outputs)
    lines = [line.split(" ", 2)[2] for line in log.read_text().splitlines()]
    assert lines[0] == "[tiny_progress] training epochs 1-3 of 3, 3 steps per epoch"
    for epoch, line in enumerate(lines[1:4], start=1):
        assert re.fullmatch(rf"\[tiny_progress\] epoch {epoch}/3  train loss \d\.\d{{4}} acc "
                            r"[\d.]+  test loss [\d.]+ acc [\d.]+  nfe 3\.0/0\.0  "
                            r"\d+\.\ds  elapsed \d+s  eta \d+s", line), line
    assert re.fullmatch(r"\[tiny_progress\] completed after \d+s", lines[4])


def test_fit_prints_the_same_epoch_line_unless_quiet(tmp_path, capsys):
    fit(tiny_config(epochs=1), profile="smoke", device="cpu", results_dir=tmp_path,
        progress=False, quiet=False)
    out = capsys.readouterr().out
    assert re.search(r"\[tiny_progress\] epoch 1/1  train loss .* elapsed \d+s  eta 0s\n", out)


def test_a_library_run_logs_nowhere_even_when_it_fails(tmp_path, capsys):
    """Without a handler, not even the warning of a failed run reaches the console."""
    fit(tiny_config(max_abs_logit=1e-9), profile="smoke", device="cpu", results_dir=tmp_path,
        progress=False, quiet=True)
    assert capsys.readouterr() == ("", "")
    log = progress.log_to_file(tmp_path / "progress.log")
    result = fit(tiny_config(max_abs_logit=1e-9, name="failing"), profile="smoke",
                 device="cpu", results_dir=tmp_path, progress=False, quiet=True)
    assert result.failed
    assert "[failing] failed (epoch 1, iteration 0: exploding state" in log.read_text()


def test_notebook_start_logs_progress_under_cpu_and_paper_only(tmp_path, monkeypatch):
    monkeypatch.delenv(notebook.PROGRESS_LOG_ENV, raising=False)
    smoke = notebook.start("nb", profile="smoke", device="cpu", results_dir=tmp_path)
    assert not progress.logger.isEnabledFor(logging.INFO)
    assert (smoke.out / "packages.txt").is_file()
    cpu = notebook.start("nb", profile="cpu", device="cpu", results_dir=tmp_path)
    progress.logger.info("by hand")
    assert (cpu.out / "progress.log").read_text().endswith(" by hand\n")
    named = tmp_path / "executed" / "nb.log"
    monkeypatch.setenv(notebook.PROGRESS_LOG_ENV, str(named))
    notebook.start("nb", profile="paper", device="cpu", results_dir=tmp_path)
    progress.logger.info("through execute")
    assert named.read_text().endswith(" through execute\n")
    assert "through execute" not in (cpu.out / "progress.log").read_text()


def _kernel_logging(monkeypatch, lines: list[str], error: Exception | None = None) -> None:
    """papermill.execute_notebook whose 'kernel' logs ``lines`` of progress, as start() sets up."""
    import papermill

    def execute_notebook(source, target, **kwargs):
        assert kwargs["parameters"]["profile"] in notebook.PROGRESS_PROFILES
        progress.log_to_file(os.environ[notebook.PROGRESS_LOG_ENV])
        for line in lines:
            progress.logger.info(line)
        if error is not None:
            raise error
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(open(source, encoding="utf-8").read())

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)


def test_execute_streams_progress_to_the_console_and_a_log(tmp_path, monkeypatch, capsys):
    _kernel_logging(monkeypatch, ["[run_a] epoch 1/2  loss 0.9", "[run_a] epoch 2/2  loss 0.4"])
    out = tmp_path / "executed" / "01_homotopy_link.ipynb"
    book.execute(NOTEBOOK, profile="cpu", out=out, overrides={"results_dir": str(tmp_path)})
    console = capsys.readouterr().out.splitlines()
    total = len(list(NOTEBOOK.parent.glob("*.ipynb")))
    assert console[0] == f"[deqode.book] [1/{total}] executing 01_homotopy_link (profile cpu)"
    assert re.fullmatch(r"\[01_homotopy_link\] \d\d:\d\d:\d\d \[run_a\] epoch 2/2  loss 0\.4",
                        console[2])
    assert console[-1].startswith("[deqode.book] done 01_homotopy_link in ")
    log = out.with_suffix(".log").read_text().splitlines()
    assert log[0].endswith(f"=== [1/{total}] executing 01_homotopy_link (profile cpu)")
    assert log[2].endswith("[run_a] epoch 2/2  loss 0.4") and " === done in " in log[3]
    assert notebook.PROGRESS_LOG_ENV not in os.environ


def test_execute_logs_a_failure_and_appends_to_an_earlier_log(tmp_path, monkeypatch, capsys):
    out = tmp_path / "02.ipynb"
    out.with_suffix(".log").write_text("2024-01-01 00:00:00 an earlier execution\n")
    _kernel_logging(monkeypatch, ["[run_b] epoch 1/9"], RuntimeError("a cell raised"))
    with pytest.raises(RuntimeError, match="a cell raised"):
        book.execute(NOTEBOOK, profile="paper", out=out, overrides={"results_dir": str(tmp_path)})
    assert "[01_homotopy_link]" in capsys.readouterr().out
    log = out.with_suffix(".log").read_text().splitlines()
    assert log[0] == "2024-01-01 00:00:00 an earlier execution" and len(log) == 4
    assert log[3].endswith("=== FAILED: RuntimeError: a cell raised")


def test_smoke_execution_writes_no_log(tmp_path, monkeypatch, capsys):
    import papermill

    def execute_notebook(source, target, **kwargs):
        assert notebook.PROGRESS_LOG_ENV not in os.environ
        with open(target, "w", encoding="utf-8") as handle:
            handle.write(open(source, encoding="utf-8").read())

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    out = tmp_path / "01.ipynb"
    book.execute(NOTEBOOK, profile="smoke", out=out, overrides={"results_dir": str(tmp_path)})
    assert not out.with_suffix(".log").exists()
    assert "[1/" in capsys.readouterr().out
