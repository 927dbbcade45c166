"""SIM chapter: run configurations (profiles ``smoke`` / ``paper``), training loops, search driver.

The three tasks of Konishi & Kawahara (the official code's ``imgcl.sh``, ``imgreg.sh`` and
``cpmem.sh``), trained as the official ``train_imgcl.py``, ``train_imgreg.py`` and
``train_cpmem.py`` do: SIM is trained like a feedforward model — plain Adam on an explicit
network. Every run goes through the one training loop, :func:`deqode.train.fit` (tasks
``classification``, ``regression``, ``sequence``; monDEQ's schedules and the batch orders are
options of it). The DEQ baselines run through the same functions so that the cost comparison
(C3) measures the models, not the harnesses.

* image classification (T1): :func:`train_classifier`, lr modes ``step`` / ``constant`` /
  ``1cycle`` (the monDEQ loop SIM copied), evaluation after every epoch;
* image regression (T2): :func:`train_regression`, full batch, PSNR = ``−10 log10(MSE)`` on the
  unclamped prediction after the last iteration;
* copy memory (T3): :func:`train_copy_memory`, per-batch loss, accuracy (%) and cumulative
  wall-clock time (``time.perf_counter``, with ``torch.cuda.synchronize`` on a GPU).

Profiles: ``smoke`` = CPU analogues (digits, 64×64 images, T = 10), non-tuned, labelled smoke;
``paper`` = the paper's data and sizes with the official *non-tuned defaults* (the defaults of
``run_imgcl.py``, ``run_imgreg.py`` and ``run_cpmem.py``; labelled "non-tuned defaults", not the
tuned configurations of the paper, which are not in the repository) or, with ``tune=True`` in a
notebook, the best configuration of the stored random search of :func:`run_search`
(``python -m deqode search classification ...``, :func:`classification_search`).

Every run of the three tasks is a CLI experiment (:mod:`.experiments`: ``python -m deqode train
sim-t1-mnist-single-tier-seed1554 --profile paper``); the notebooks read a finished one, resume
an unfinished one (:func:`deqode.train.fit_or_reuse`).

Search driver: Optuna (optional dependency ``deqode[tune]``), chosen over Ray Tune because the
official Ray 1.3 API (``tune.report``, ``tune.run(local_dir=...)``) no longer exists in Ray 2.x,
because Optuna is a small pure-Python package that runs in-process (no object
store, no cluster) — enough for one GPU — and because its ``RandomSampler`` and
``SuccessiveHalvingPruner`` reproduce the official "random search + ASHA (reduction factor 2)"
protocol. A dependency-free ``backend="random"`` (random search, ``max_t`` truncation, no early
stopping) serves tests and machines without Optuna.
"""

from __future__ import annotations

from deqode.chapters.sim import experiments, rules
from deqode.chapters.sim.configs import (
    CPU_SEEDS,
    LR_MODES,
    MODEL_KINDS,
    SEARCH_BACKENDS,
    TASKS,
    ClassificationSetup,
    CopyMemorySetup,
    ModelSpec,
    RegressionSetup,
    build_model,
    classification_setup,
    copy_memory_setup,
    needed_datasets,
    regression_setup,
)
from deqode.chapters.sim.koopman_demos import (
    RATE_TOL,
    digits_tensors,
    fit_sim_regressor,
    hopf_readouts,
    observed_contraction_rates,
    r_squared,
    rates_match_spectral_radius,
    smoke_threads,
    train_tanh_deq,
)
from deqode.chapters.sim.loops import (
    always_blank_accuracy,
    copy_memory_position_accuracy,
    cost_summary,
    evaluate_copy_memory,
    final_run_seeds,
    memoryless_loss,
    one_cycle,
    psnr,
    train_classifier,
    train_copy_memory,
    train_regression,
)
from deqode.chapters.sim.runs import (
    read_or_train,
    run_classification,
    run_copy_memory,
    run_regression,
)
from deqode.chapters.sim.search import (
    SEARCH_SETTINGS,
    SEARCH_SPACES,
    Choice,
    LogUniform,
    QRandInt,
    RandInt,
    SearchResult,
    SearchSettings,
    TrialRecord,
    classification_search,
    load_search,
    run_search,
    sample_config,
    search_objective,
    search_path,
    search_space,
    split_train_val,
    suggest_config,
)
from deqode.chapters.sim.tables import (
    all_paper_cells_not_transcribed,
    draw_architecture,
    paper_cells,
    paper_vs_ours,
    with_overrides,
)

__all__ = [
    "CPU_SEEDS",
    "LR_MODES",
    "MODEL_KINDS",
    "RATE_TOL",
    "SEARCH_BACKENDS",
    "SEARCH_SETTINGS",
    "SEARCH_SPACES",
    "TASKS",
    "Choice",
    "ClassificationSetup",
    "CopyMemorySetup",
    "LogUniform",
    "ModelSpec",
    "QRandInt",
    "RandInt",
    "RegressionSetup",
    "SearchResult",
    "SearchSettings",
    "TrialRecord",
    "all_paper_cells_not_transcribed",
    "always_blank_accuracy",
    "build_model",
    "classification_search",
    "classification_setup",
    "copy_memory_position_accuracy",
    "copy_memory_setup",
    "cost_summary",
    "digits_tensors",
    "draw_architecture",
    "evaluate_copy_memory",
    "experiments",
    "final_run_seeds",
    "fit_sim_regressor",
    "hopf_readouts",
    "load_search",
    "memoryless_loss",
    "needed_datasets",
    "observed_contraction_rates",
    "one_cycle",
    "paper_cells",
    "paper_vs_ours",
    "psnr",
    "r_squared",
    "rates_match_spectral_radius",
    "read_or_train",
    "regression_setup",
    "rules",
    "run_classification",
    "run_copy_memory",
    "run_regression",
    "run_search",
    "sample_config",
    "search_objective",
    "search_path",
    "search_space",
    "smoke_threads",
    "split_train_val",
    "suggest_config",
    "train_classifier",
    "train_copy_memory",
    "train_regression",
    "train_tanh_deq",
    "with_overrides",
]
