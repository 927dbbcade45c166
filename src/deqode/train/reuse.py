"""The one rule by which notebooks use training runs, whoever trained them (a notebook or
``python -m deqode train``): :func:`fit_or_reuse`.

* a **finished** run of the same configuration (``status.json`` completed, ``config.json`` equal
  to the configuration, a ``checkpoint.pt``) is read back; nothing is trained or rewritten;
* an **unfinished** run of the same configuration (stopped, interrupted, failed) is resumed from
  its checkpoint;
* with no run, or an unfinished run of other settings, a fresh run starts (``fit`` keeps an
  unfinished run's checkpoint as ``checkpoint.previous.pt``);
* a finished run of **other** settings under the same name is never shelved or retrained
  outside the smoke profile (it may hold days of work): a ``ValueError`` names the changed
  fields. Under ``smoke`` (seconds of work) it is replaced by a fresh run, and so is a run of a
  rehearsal (:mod:`deqode.rehearsal`: its configuration records the caps, so that it never
  passes for a real run, finished or unfinished, nor a real run for a rehearsal's).

"The same configuration" ignores the fields that only document a run
(:data:`deqode.train.checkpoints.DOCUMENTATION_FIELDS`), as resuming does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from deqode.errors import CheckpointDamagedError
from deqode.paths import resolve
from deqode.results import read_json
from deqode.train.checkpoints import DOCUMENTATION_FIELDS, damage_of, read_checkpoint
from deqode.train.config import DTYPES, RunResult, TrainConfig


def _plain(config: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(config))  # tuples -> lists, as config.json holds them


def changed_fields(recorded: dict[str, Any], config: TrainConfig) -> list[str]:
    """The configuration fields in which ``recorded`` (a ``config.json`` or checkpoint
    ``config``) differs from ``config``, documentation fields left out."""
    saved, current = _plain(recorded), _plain(config.to_dict())
    return sorted(k for k in set(saved) | set(current)
                  if k not in DOCUMENTATION_FIELDS and saved.get(k) != current.get(k))


def run_dir(config: TrainConfig, profile: str, results_dir: str | os.PathLike) -> Path:
    """``<results_dir>/<profile>/<config.name>`` (relative roots from the repository root)."""
    return resolve(results_dir) / profile / config.name


def finished_run(config: TrainConfig, profile: str, results_dir: str | os.PathLike = "results"
                 ) -> RunResult | None:
    """The recorded result of a completed run of exactly ``config`` (``model`` None), else None.

    Outside ``smoke``, raises ``ValueError`` if a completed run of other settings holds the
    name."""
    out = run_dir(config, profile, results_dir)
    files = [out / f for f in ("status.json", "config.json", "metrics.json", "checkpoint.pt")]
    if not all(f.is_file() for f in files):
        return None
    status = read_json(out / "status.json")
    if status.get("state") != "completed":
        return None
    recorded = read_json(out / "config.json")["config"]
    changed = changed_fields(recorded, config)
    if changed and (profile == "smoke" or "rehearsal" in recorded):
        return None
    if changed:
        raise ValueError(
            f"{out} holds a finished run of other settings (changed: {changed}); it is never "
            "retrained in place: move it away, or use another results folder")
    metrics = read_json(out / "metrics.json")
    summary = metrics["summary"]
    return RunResult(config.name, profile, out, "completed", status.get("reason", ""),
                     list(metrics["history"]), summary, reused=True)


def _checkpoint_matches(config: TrainConfig, checkpoint: Path) -> bool:
    """Whether to resume from ``checkpoint``: it holds ``config``'s run, or it is damaged (then
    ``fit(resume=True)`` falls back to ``checkpoint.previous.pt`` or says how to start afresh)."""
    if not checkpoint.is_file():
        return False
    if damage_of(checkpoint) is not None:
        return True
    return not changed_fields(read_checkpoint(checkpoint, mmap=True)["config"], config)


def fit_or_reuse(config: TrainConfig, *, profile: str, results_dir: str | os.PathLike = "results",
                 load_model: bool = True, **fit_options: Any) -> RunResult:
    """Read, resume or train ``config`` by the rule of this module; ``fit_options`` go to
    :func:`deqode.train.fit` (not ``resume``: the rule decides it). A read-back result carries
    the model rebuilt from the checkpoint when ``load_model`` (CPU, eval mode, built without
    drawing from the global RNG); ``RunResult.reused`` tells which way it went."""
    from deqode.train.loop import fit

    if "resume" in fit_options:
        raise TypeError("fit_or_reuse decides resume itself; do not pass it")
    done = finished_run(config, profile, results_dir)
    if done is not None:
        if load_model:
            done.model = trained_model(config, done.out_dir)
        return done
    resume = _checkpoint_matches(config, run_dir(config, profile, results_dir) / "checkpoint.pt")
    return fit(config, profile=profile, results_dir=results_dir, resume=resume, **fit_options)


def trained_model(config: TrainConfig, out_dir: str | os.PathLike) -> nn.Module:
    """``config``'s model with the weights of ``<out_dir>/checkpoint.pt`` (CPU, eval mode), built
    inside a forked RNG so that reading a run draws nothing from the global generators."""
    from deqode.train.loop import _build_model

    path = Path(out_dir) / "checkpoint.pt"
    damage = damage_of(path)
    if damage is not None:
        raise CheckpointDamagedError(
            f"the finished run in {out_dir} cannot be read: {path} is damaged ({damage}). Its "
            "metrics.json still holds the run's numbers; to get the model back, move the run "
            "folder away and train it again.")
    state = read_checkpoint(path)
    with torch.random.fork_rng(devices=[]):
        model = _build_model(config).to(DTYPES[config.dtype])
    model.load_state_dict(state["model"])
    return model.eval()


__all__ = ["changed_fields", "finished_run", "fit_or_reuse", "run_dir", "trained_model"]
