"""A rehearsal run (capped by DEQODE_REHEARSAL_STEPS) says so when it stops, and no real run
reads it back or resumes it as if it were its own unfinished run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from deqode import rehearsal
from deqode.train import fit, fit_or_reuse


def _fit(tmp_path, cfg, **kwargs):
    return fit(cfg, profile="cpu", device="cpu", results_dir=tmp_path, progress=False,
               quiet=True, **kwargs)


def _recorded(out):
    return json.loads((out / "config.json").read_text())["config"]


def test_a_rehearsal_stop_names_the_cap_and_is_recorded(monkeypatch, tmp_path):
    from test_train import config

    monkeypatch.setenv(rehearsal.ENV, "2")
    monkeypatch.setenv(rehearsal.BATCH_ENV, "4")
    result = _fit(tmp_path, config(epochs=3))
    assert result.state == "stopped"
    assert f"{rehearsal.ENV}=2" in result.reason and rehearsal.BATCH_ENV in result.reason
    assert "max_epochs" not in result.reason
    assert _recorded(result.out_dir)["rehearsal"] == {"steps": 2, "batch": 4}
    monkeypatch.delenv(rehearsal.BATCH_ENV)
    assert config().to_dict()["rehearsal"] == {"steps": 2}
    monkeypatch.delenv(rehearsal.ENV)
    assert "rehearsal" not in config().to_dict()  # real runs' records are as before
    assert rehearsal.stop_reason(4).startswith("max_epochs=4 reached")


def test_a_real_run_never_resumes_a_rehearsal_run(monkeypatch, tmp_path):
    from test_train import config

    monkeypatch.setenv(rehearsal.ENV, "2")
    cfg = config(epochs=3)  # 240 points, batch 32 (drop_last): 7 steps per epoch
    stopped = _fit(tmp_path, cfg)
    assert stopped.state == "stopped" and stopped.history[-1]["iterations"] == 2
    # a rehearsal notebook does reuse the rehearsal CLI run (same caps): nothing to train
    again = fit_or_reuse(cfg, profile="cpu", device="cpu", results_dir=tmp_path, quiet=True,
                         progress=False)
    assert again.history[-1]["iterations"] == 2
    monkeypatch.delenv(rehearsal.ENV)
    with pytest.raises(ValueError, match="rehearsal"):  # --resume says why it cannot
        _fit(tmp_path, cfg, resume=True)
    real = fit_or_reuse(cfg, profile="cpu", device="cpu", results_dir=tmp_path, quiet=True,
                        progress=False)
    assert real.state == "completed" and not real.reused
    assert [h["iterations"] for h in real.history] == [7, 14, 21]  # from the start
    assert "rehearsal" not in _recorded(real.out_dir)


def test_a_finished_rehearsal_run_is_replaced_not_read_by_a_real_run(monkeypatch, tmp_path):
    from test_train import config

    monkeypatch.setenv(rehearsal.ENV, "2")
    cfg = config(epochs=1)  # one epoch: the rehearsal completes it, after 2 of its 7 steps
    assert _fit(tmp_path, cfg).state == "completed"
    monkeypatch.delenv(rehearsal.ENV)
    real = fit_or_reuse(cfg, profile="cpu", device="cpu", results_dir=tmp_path, quiet=True,
                        progress=False)
    assert not real.reused and real.history[-1]["iterations"] == 7
    # and a rehearsal never reads the finished real run as its own
    monkeypatch.setenv(rehearsal.ENV, "2")
    with pytest.raises(ValueError, match=r"other settings.*rehearsal"):
        fit_or_reuse(cfg, profile="cpu", device="cpu", results_dir=tmp_path, quiet=True,
                     progress=False)


def test_a_rehearsed_notebook_logs_its_progress_once(monkeypatch, tmp_path):
    """The console of ``deqode.book execute`` (which echoes the progress log) goes to a file of
    its own: were it the progress log, every line would come back with one more prefix."""
    import contextlib
    import time

    from deqode import rehearse
    from deqode.book.notebook import follow_progress

    def execute(command, stdout, **kwargs):  # what deqode.book execute does with its log
        out = Path(command[command.index("--out") + 1])
        with contextlib.redirect_stdout(stdout), \
                follow_progress(out.with_suffix(".log"), out.stem, every_s=0.01) as log:
            with open(log, "a") as handle:
                handle.write("12:00:00 [run] epoch 1/1\n")
            time.sleep(0.2)
        return 0

    monkeypatch.setattr(rehearse.subprocess, "call", execute)
    outcome = rehearse._execute_notebook(Path("notebooks/nb.ipynb"), "paper", tmp_path,
                                         tmp_path / "results", tmp_path / "data")
    assert outcome.ok
    assert (tmp_path / "nb.log").read_text() == "12:00:00 [run] epoch 1/1\n"
    assert rehearse.console_log(tmp_path / "nb.ipynb").read_text() == \
        "[nb] 12:00:00 [run] epoch 1/1\n"
