"""The Nesterov-solver chapter's three tasks [companion], from torchdiffeq's examples:
configurations, training, claims.

The paper (arXiv 2312.01657) claims that its NAG solver trains Neural ODEs faster than other
fixed-step explicit solvers and than a ResNet, on classification, density estimation and
time-series modelling. Its architectures and settings are **not transcribed**; the companion
settings follow the torchdiffeq examples (``odenet_mnist.py``, ``cnf.py``, ``latent_ode.py``) and
are labelled [companion] in the book, never "the paper's setting".

Modules: :mod:`.protocol` (solver choices at equal NFE, the runs of tasks B and C as training
configurations, the equal-time view, aggregation), :mod:`.classification` (task A, ODE-Net vs
ResNet on digits / MNIST-8k / MNIST), :mod:`.density` (task B, 2-D CNF), :mod:`.latent` (task
C, latent ODE on spirals), :mod:`.cache` (task A's records with their dopri5 re-evaluation),
:mod:`.rules` (the decision rules of claims C9-C11). :func:`paper_setups` lists every
paper-profile configuration (a test builds each model on the CPU).

Every run of the three tasks is a CLI experiment (``python -m deqode train nag-cls-... |
nag-cnf-... | nag-latent-... --profile P``), trained by :func:`deqode.train.fit`; the notebooks
read a finished run and resume an unfinished one (:func:`deqode.train.fit_or_reuse`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from deqode.chapters import register_dataset_needs, register_experiment
from deqode.chapters.nag import classification, density, evidence, latent, protocol, rules
from deqode.chapters.nag.classification import *  # noqa: F403
from deqode.chapters.nag.classification import CLASSIFICATION, classification_runs
from deqode.chapters.nag.density import *  # noqa: F403
from deqode.chapters.nag.evidence import *  # noqa: F403
from deqode.chapters.nag.latent import *  # noqa: F403
from deqode.chapters.nag.protocol import *  # noqa: F403
from deqode.chapters.nag.rules import *  # noqa: F403


def paper_setups() -> dict[str, Any]:
    """Every paper-profile setup of the three tasks (for the configuration test)."""
    return {"classification": classification.classification_setup("paper"),
            "cnf": density.cnf_setup("paper"), "latent_ode": latent.latent_setup("paper")}


def setup_table(profile: str) -> list[dict[str, Any]]:
    """One row per task with its settings (for the book's configuration table)."""
    rows = []
    for task, setup in (("classification", classification.classification_setup(profile)),
                        ("cnf", density.cnf_setup(profile)),
                        ("latent_ode", latent.latent_setup(profile))):
        rows.append({"task": task, **{k: v for k, v in asdict(setup).items() if k != "profile"}})
    return rows


def stream_runs(profile: str) -> list[protocol.StreamRun]:
    """Every run of tasks B and C in ``profile`` (the notebooks' runs at the setups' seeds):
    each solver at each budget K, and for task B the unscaled NAG step at the first K."""
    runs: list[protocol.StreamRun] = []
    cnf, lat = density.cnf_setup(profile), latent.latent_setup(profile)
    for seed in cnf.seeds:
        for budget in cnf.budgets:
            choices = protocol.solver_choices(cnf.solvers, budget, cnf.beta)
            if budget == cnf.budgets[0]:
                choices.append(protocol.unscaled_choice(budget, cnf.beta))
            runs += [density.CNFRun(cnf, choice, seed) for choice in choices]
    for seed in lat.seeds:
        for budget in lat.budgets:
            runs += [latent.LatentRun(lat, choice, seed)
                     for choice in protocol.solver_choices(lat.solvers, budget, lat.beta)]
    return runs


def _register_experiments() -> None:
    """``python -m deqode train nag-cls-... | nag-cnf-... | nag-latent-... --profile P`` trains
    any run of tasks A, B and C."""
    for profile in CLASSIFICATION:
        for run in classification_runs(profile):
            register_experiment(
                run.config.name, profile,
                lambda p=profile, n=run.config.name: _classification_config(p, n),
            )
        for stream_run in stream_runs(profile):
            register_experiment(  # a fresh run object per configuration
                stream_run.name, profile,
                lambda r=stream_run: type(r)(r.setup, r.solver, r.seed).train_config())


def _classification_config(profile: str, name: str):
    for run in classification_runs(profile):
        if run.config.name == name:
            return run.config
    raise KeyError(name)  # pragma: no cover - names come from the same function


_register_experiments()


@register_dataset_needs
def _dataset_needs(profile: str) -> list[str]:
    """Task A reads MNIST (paper) or MNIST-8k (cpu) from disk; everything else is generated."""
    return {"paper": ["mnist"], "cpu": ["mnist-8k"]}.get(profile, ["digits"])


__all__ = sorted({*classification.__all__, *density.__all__, *latent.__all__, *evidence.__all__,
                  *protocol.__all__, *rules.__all__, "paper_setups", "setup_table",
                  "stream_runs"})
