"""``checkpoint.pt`` of a run: written after every completed epoch (rank 0, atomically) and read
back by ``fit(resume=True)``: model, optimiser, schedule, the separate update's optimiser and
schedule (:mod:`deqode.train.hooks`), the RNG states of every rank, history and best epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from deqode.results import torch_save_atomic
from deqode.train.rng import rng_state, seed_everything, set_rng_state

FORMAT = 1


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
    torch_save_atomic(state, trainer.out_dir / "checkpoint.pt")


#: Configuration fields that document a run without changing it: a checkpoint resumes across
#: an edit of these (e.g. a reworded description), never across any other change.
DOCUMENTATION_FIELDS = ("description",)


def load_checkpoint(trainer: Any, path: Path) -> None:
    """Restore ``trainer`` from ``path``; the configuration must be the one it was saved with
    (apart from :data:`DOCUMENTATION_FIELDS`)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    saved, current = ckpt["config"], trainer.config.to_dict()
    changed = sorted(k for k in set(saved) | set(current)
                     if k not in DOCUMENTATION_FIELDS and saved.get(k) != current.get(k))
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
    if trainer.update is not None:
        trainer.update_optimizer.load_state_dict(ckpt[f"{name}_optimizer"])
        trainer.update_scheduler.load_state_dict(ckpt[f"{name}_scheduler"])
    trainer.epoch, trainer.iteration = int(ckpt["epoch"]), int(ckpt["iteration"])
    trainer.history, trainer.best = list(ckpt["history"]), dict(ckpt["best"])
    if len(ckpt["rng"]) == trainer.ctx.world:
        set_rng_state(ckpt["rng"][trainer.ctx.rank], trainer.device)
    else:  # another world size: exact continuation is impossible anyway
        seed_everything(trainer.config.seed + 1000 * trainer.epoch + trainer.ctx.rank)


__all__ = ["load_checkpoint", "save_checkpoint"]
