"""``checkpoint.pt`` of a run: written after every completed epoch (rank 0, atomically) and read
back by ``fit(resume=True)``: model, optimiser, schedule, the separate update's optimiser and
schedule (:mod:`deqode.train.hooks`), the RNG states of every rank, history and best epoch.

No work is lost to a damaged file. Each save keeps the checkpoint it replaces, when that one is
readable, as ``checkpoint.previous.pt`` (hard link and renames: at every moment both files are
whole). A ``checkpoint.previous.pt`` of another run (one a fresh start set aside) is first moved
to ``checkpoint.shelved.pt``, never overwritten. On resume, an unreadable ``checkpoint.pt``
falls back to ``checkpoint.previous.pt`` (saying so); without a readable one of the same
configuration, :class:`~deqode.errors.CheckpointDamagedError` says how to start afresh. A damaged
file is only ever replaced by a new good checkpoint."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
import zipfile
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from deqode.errors import CheckpointDamagedError
from deqode.train.rng import rng_state, seed_everything, set_rng_state

FORMAT = 1
CURRENT, PREVIOUS, SHELVED = "checkpoint.pt", "checkpoint.previous.pt", "checkpoint.shelved.pt"


def _gather_rng(trainer: Any) -> list[dict[str, Any]]:
    local = rng_state(trainer.device)
    if not trainer.ctx.enabled:
        return [local]
    states: list[Any] = [None] * trainer.ctx.world
    dist.all_gather_object(states, local)
    return states


def save_checkpoint(trainer: Any) -> None:
    """Write ``checkpoint.pt`` (a collective under DDP: every rank takes part)."""
    rng = _gather_rng(trainer)
    if not trainer.ctx.main:
        return
    name = trainer.update.name if trainer.update is not None else "init"
    state = {
        "format": FORMAT, "config": trainer.config.to_dict(), "epoch": trainer.epoch,
        "iteration": trainer.iteration, "model": trainer.net.state_dict(),
        f"extra_{name}_parameters": [p.detach().cpu() for p in trainer.extra_update_params],
        "optimizer": trainer.optimizer.state_dict(), "scheduler": trainer.schedule.state_dict(),
        f"{name}_optimizer": None if trainer.update is None
        else trainer.update_optimizer.state_dict(),
        f"{name}_scheduler": None if trainer.update is None
        else trainer.update_scheduler.state_dict(),
        "rng": rng, "history": trainer.history, "best": trainer.best,
    }
    if trainer.generator is not None:  # data_order="shuffle": the loader's own generator
        state["data_generator"] = trainer.generator.get_state()
    if trainer.stream is not None:  # data_order="stream": the stream's and the task's draws
        state["data_stream"] = trainer.stream.state_dict()
        state["task_state"] = trainer.task.state_dict()
    if trainer.start is not None:
        state["start"] = trainer.start
    if getattr(trainer, "run_id", None) is None:  # one id per run, kept across resumes
        trainer.run_id = uuid.uuid4().hex
    state["run_id"] = trainer.run_id
    _write_keeping_previous(state, Path(trainer.out_dir))


def read_checkpoint(path: Path, *, mmap: bool = False) -> dict[str, Any]:
    """The checkpoint at ``path`` (``weights_only``); ``mmap`` maps the tensors instead of reading
    them (a cheap look at the small entries). Raises what ``torch.load`` raises."""
    return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def damage_of(path: Path) -> str | None:
    """Why ``path`` cannot be read as a checkpoint (the loader's first sentence), or None if it
    can. A memory-mapped look first (cheap); a full read only when that fails, for the reason."""
    try:
        read_checkpoint(path, mmap=True)
        return None
    except Exception:  # truncated zip, bad pickle, I/O error: read it fully to say why
        pass
    try:
        read_checkpoint(path)
    except Exception as err:
        if not zipfile.is_zipfile(path):  # torch.save writes a zip archive; its index is last
            return (f"not a complete zip archive: truncated or overwritten "
                    f"({path.stat().st_size:,} bytes)")
        reason = str(err).split(". ")[0].splitlines()[0] if str(err) else ""
        return f"{type(err).__name__}: {reason}".rstrip(": ")
    return None


def _write_keeping_previous(state: dict[str, Any], out_dir: Path) -> None:
    current, previous = out_dir / CURRENT, out_dir / PREVIOUS
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{CURRENT}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        if current.is_file() and damage_of(current) is None:  # a damaged one is not kept
            _keep_as_previous(current, previous, state["run_id"])
        os.replace(tmp, current)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _run_id_of(path: Path) -> str | None:
    try:
        return read_checkpoint(path, mmap=True).get("run_id")
    except Exception:  # unreadable: nothing worth keeping
        return None


def _keep_as_previous(current: Path, previous: Path, run_id: str) -> None:
    """``current`` also becomes ``previous`` (atomically: link or copy, then rename)."""
    if previous.is_file() and damage_of(previous) is None and _run_id_of(previous) != run_id:
        os.replace(previous, previous.with_name(SHELVED))  # another run's: set aside, not lost
    tmp = previous.with_name(f".{PREVIOUS}.{uuid.uuid4().hex}.tmp")
    try:
        try:
            os.link(current, tmp)
        except OSError:  # no hard links on this file system: copy
            shutil.copyfile(current, tmp)
        os.replace(tmp, previous)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def shelve_for_fresh_start(out_dir: Path) -> None:
    """Before a run starts afresh: set a readable ``checkpoint.pt`` aside as
    ``checkpoint.previous.pt``. A damaged one stays where it is (it never replaces a good
    previous one) until the new run's first checkpoint replaces it."""
    current = out_dir / CURRENT
    if current.is_file() and damage_of(current) is None:
        current.replace(out_dir / PREVIOUS)


def resume_checkpoint(trainer: Any, path: Path) -> Path:
    """Restore ``trainer`` from ``path``, or, when ``path`` is damaged, from a readable
    ``checkpoint.previous.pt`` of the same configuration beside it (said in one line on stderr).
    Returns the file resumed from; raises :class:`CheckpointDamagedError` when neither serves."""
    if (damage := damage_of(path)) is None:
        load_checkpoint(trainer, path)
        return path
    previous = path.with_name(PREVIOUS)
    why_not = _fallback_problem(trainer, previous)
    if why_not is None:
        load_checkpoint(trainer, previous)
        if trainer.ctx.main:
            print(f"[{trainer.config.name}] {path} is damaged ({damage}); resuming from "
                  f"{previous.name} (epoch {trainer.epoch}) instead", file=sys.stderr, flush=True)
        return previous
    raise CheckpointDamagedError(
        f"cannot resume {trainer.config.name!r}: its checkpoint {path} is damaged and cannot be "
        f"read ({damage}), and {why_not}, so there is no good checkpoint to continue from. To "
        f"start afresh, run without --resume (fit(resume=False)); the damaged file stays until "
        f"the new run's first checkpoint replaces it; or delete {path} (--resume then starts "
        f"afresh too)."
    )


def _fallback_problem(trainer: Any, previous: Path) -> str | None:
    """Why ``previous`` cannot stand in for a damaged checkpoint (None: it can)."""
    if not previous.is_file():
        return f"there is no {previous.name} beside it"
    if (damage := damage_of(previous)) is not None:
        return f"{previous.name} is damaged too ({damage})"
    saved = read_checkpoint(previous, mmap=True).get("config", {})
    if _changed_fields(saved, trainer.config.to_dict()):
        return f"{previous.name} was saved with another configuration"
    return None


#: Configuration fields that document or measure a run without changing what it trains: a
#: checkpoint resumes across an edit of these (a reworded description, the saved-tensor meter
#: switched on or off), never across any other change.
DOCUMENTATION_FIELDS = ("description", "measure_memory")


def _changed_fields(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    return sorted(k for k in set(saved) | set(current)
                  if k not in DOCUMENTATION_FIELDS and saved.get(k) != current.get(k))


def load_checkpoint(trainer: Any, path: Path) -> None:
    """Restore ``trainer`` from ``path``; the configuration must be the one it was saved with
    (apart from :data:`DOCUMENTATION_FIELDS`)."""
    ckpt = read_checkpoint(path)
    changed = _changed_fields(ckpt["config"], trainer.config.to_dict())
    if changed:
        raise ValueError(
            f"cannot resume {path}: the configuration changed in {changed}; "
            "resume with the original settings or start a new run without --resume"
        )
    trainer.net.load_state_dict(ckpt["model"])
    name = trainer.update.name if trainer.update is not None else "init"
    with torch.no_grad():
        for p, value in zip(trainer.extra_update_params, ckpt[f"extra_{name}_parameters"],
                            strict=True):
            p.copy_(value)
    trainer.optimizer.load_state_dict(ckpt["optimizer"])
    trainer.schedule.load_state_dict(ckpt["scheduler"])
    if trainer.generator is not None:
        trainer.generator.set_state(ckpt["data_generator"])
    if trainer.stream is not None:
        trainer.stream.load_state_dict(ckpt["data_stream"])
        trainer.task.load_state_dict(ckpt["task_state"])
    trainer.start = ckpt.get("start")
    trainer.run_id = ckpt.get("run_id")  # None (an older checkpoint): a new id at the next save
    if trainer.update is not None:
        trainer.update_optimizer.load_state_dict(ckpt[f"{name}_optimizer"])
        trainer.update_scheduler.load_state_dict(ckpt[f"{name}_scheduler"])
    trainer.epoch, trainer.iteration = int(ckpt["epoch"]), int(ckpt["iteration"])
    trainer.history, trainer.best = list(ckpt["history"]), dict(ckpt["best"])
    if len(ckpt["rng"]) == trainer.ctx.world:
        set_rng_state(ckpt["rng"][trainer.ctx.rank], trainer.device)
    else:  # another world size: exact continuation is impossible anyway
        seed_everything(trainer.config.seed + 1000 * trainer.epoch + trainer.ctx.rank)


__all__ = ["damage_of", "load_checkpoint", "read_checkpoint", "resume_checkpoint",
           "save_checkpoint", "shelve_for_fresh_start"]
