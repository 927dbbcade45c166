"""The one training loop for every model: metrics, checkpoints, resume, failure handling, DDP.

:func:`fit` trains the model a :class:`TrainConfig` names on the dataset it names and writes, to
``results/<profile>/<experiment>/`` (only rank 0 writes, every file atomically):

* ``config.json``  the configuration, the profile and the environment (versions, device, commit);
* ``status.json``  ``state`` = ``running`` | ``completed`` | ``stopped`` (``max_epochs`` reached or
  interrupted; resume with ``resume=True``) | ``failed``, with the ``reason``;
* ``metrics.json`` the per-epoch ``history`` and a ``summary`` (the best epoch by the task's
  selection metric — for classification the best test accuracy, which is the official HomoODE
  code's model selection on the test set — *and* the last-epoch values);
* ``checkpoint.pt`` written after every completed epoch (:mod:`deqode.train.checkpoints`; a run
  started without ``resume`` first moves an existing one to ``checkpoint.previous.pt``).

Modules: :mod:`~deqode.train.config` (what a run is), :mod:`~deqode.train.tasks` (what it
learns: loss, failure checks, metrics — ``classification``, ``regression``, ``sequence``, and the
NAG chapter's density and ELBO tasks built with :func:`~deqode.train.tasks.density_task` /
:func:`~deqode.train.tasks.elbo_task`), :mod:`~deqode.train.hooks` (a model's separate update,
e.g. HomoODE's shared initial point), :mod:`~deqode.train.schedules` (cosine, constant, step,
monDEQ's ``steplr`` and ``1cycle``), :mod:`~deqode.train.batches` (in-order batches and
streams), :mod:`~deqode.train.loop` (:func:`fit`, the trainer and its single step,
:meth:`Trainer.train_step`, which timing probes call through
:func:`~deqode.train.loop.probe_trainer`), :mod:`~deqode.train.checkpoints`,
:mod:`~deqode.train.rng` and :mod:`~deqode.train.reuse` (:func:`fit_or_reuse`: how notebooks
read a finished run, resume an unfinished one, and never retrain a finished one).

One iteration (HomoODE, Ding et al. 2023, §3.3–3.4 and the released ``train.py``):

1. the task's loss of the batch (classification: flooded cross-entropy plus an entropy term,
   both extras 0 by default, as in the released code);
2. backward, main optimiser step (all parameters except a separate update's), schedule step:
   the schedule is stepped **every iteration** with ``T_max = epochs * iterations_per_epoch``;
3. the model's separate update, if it has one (:mod:`deqode.train.hooks`): HomoODE's init loss
   trains its shared initial point by its own SGD every ``freq`` iterations, with its own cosine
   schedule. Both optimisers' gradients are zeroed every iteration.

Data order (``data_order``): by default a function of ``(seed, epoch)`` only (a
``DistributedSampler`` re-seeded by ``set_epoch``); ``shuffle`` (a loader's own generator),
``in_order``, ``full_batch`` and ``stream`` reproduce the chapters' own orders. The RNG states
(and the generator's or stream's) are checkpointed, so an interrupted run resumed from its
checkpoint gives the same numbers as an uninterrupted one (bitwise on the CPU; model state
outside ``state_dict``, such as a DEQ's warm start, is not kept).

Failures — the task's checks (classification: a non-finite loss or logits, logits above
``max_abs_logit``, an exploding state), a non-finite gradient or
:class:`deqode.errors.SolverFailure` from the model — stop the run before the bad update is
applied; ``status.json`` and ``metrics.json`` record the reason, the checkpoint of the last good
epoch is kept, and :func:`fit` returns a :class:`RunResult` with ``failed=True``.

Distributed data parallel: under ``torchrun`` (``WORLD_SIZE > 1``) the same call uses
``DistributedDataParallel`` (backend ``nccl`` on CUDA, ``gloo`` on the CPU, device
``cuda:LOCAL_RANK``). ``batch_size`` is the **global** batch: every rank takes
``batch_size / world_size`` samples per iteration, so one DDP iteration sees the same samples as
one single-process iteration and the averaged gradient is the same. A separate update's
parameters are excluded from DDP (they get no gradient from the main loss) and their gradients
are averaged over ranks with an explicit ``all_reduce`` before its optimiser steps. Metrics
are exact (sum, count) reductions over ranks. What stays per rank, so that DDP equals one process
only for models without these: BatchNorm statistics (no SyncBN), dropout masks, and the step-size
control of adaptive ODE solvers, which sees only the rank's sub-batch (NFE and the solution can
differ from a single-process solve of the whole global batch). A ``SolverFailure`` raised inside
backward on one rank only cannot be agreed on and may leave the other ranks waiting until the
process group times out; forward-time failures are agreed on every iteration.

Memory: ``cuda_peak_mb`` is ``torch.cuda.max_memory_allocated`` over the epoch's training phase
(reset every epoch; ``None`` on the CPU); ``saved_tensor_peak_mb`` is the autograd saved-tensor
peak of :class:`deqode.metrics.SavedTensorMeter`, the device-independent measure used on the CPU,
recorded with ``TrainConfig(measure_memory=True)`` (``None`` otherwise: its hooks cost time).

Mixed precision is deliberately not offered: adaptive ODE solvers in fp16 reject steps on
round-off and their error estimates are unreliable, so every run is float32 or float64.
"""

from deqode.train.config import DTYPES, InitPointConfig, RunResult, TrainConfig
from deqode.train.hooks import SeparateUpdate
from deqode.train.loop import Trainer, fit, load_result
from deqode.train.reuse import finished_run, fit_or_reuse, trained_model
from deqode.train.tasks import TASKS, Task

__all__ = ["DTYPES", "TASKS", "InitPointConfig", "RunResult", "SeparateUpdate", "Task",
           "TrainConfig", "Trainer", "finished_run", "fit", "fit_or_reuse", "load_result",
           "trained_model"]
