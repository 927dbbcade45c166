"""HomoODE (arXiv 2310.09583): the training runs of the main comparison, in both profiles.

``paper`` profile — the released scripts' settings (spec §3.2–§3.5, §2.4) [code]:

==================  ==========  ==========  ===============  =====  ======  ===================
experiment          dataset     seed        gradient mode    lr₀    freq    source
==================  ==========  ==========  ===============  =====  ======  ===================
homoode-cifar10     cifar10     0           backprop         0.02   20      homoinit_cifar10.py
homoode-cifar100    cifar100    0           frozen_adjoint   0.01   5       homoinit_cifar100.py
homoode-tiny        tiny-imagenet 1         frozen_adjoint   0.05   20      homoinit_tiny.py
==================  ==========  ==========  ===============  =====  ======  ===================

Common to all: 300 epochs; Adam, lr 1e-3, default betas, no weight decay;
``CosineAnnealingLR(T_max = epochs × iterations_per_epoch, eta_min = 1e-6)`` stepped every
iteration; train batch 64 with ``drop_last``, test batch 400; dopri5 at rtol = atol = 1e-3 on
[0, 1]; the shared initial point trained by SGD (``lr₀``, no momentum) every ``freq`` iterations
with ``CosineAnnealingLR(T_max = total_iterations / 1, eta_min = 1e-6)`` stepped on those
iterations; plain cross-entropy (flooding level 0, entropy weight 0); 2 loader workers; the
test set evaluated every epoch (the scripts' "best accuracy" is the best test accuracy over
epochs; the summary reports it and the last-epoch accuracy). Departure: the models cap a solve
at 1000 steps (``SolverFailure``), the released code has no cap.

Baselines ``node-*``, ``anode-*``, ``deq-*`` (the matched builds of :mod:`deqode.models.zoo`)
are trained with the same optimiser, schedule, batch sizes, epochs and seed
[reconstruction, spec §3.7: no baseline scripts are released]; the ODE baselines use dopri5 at
1e-3 and exact backprop, the DEQ its own Broyden/IFT settings.

``smoke`` profile — digits (8×8, 1437 train / 360 test), the narrowed builds of spec §6
[reconstruction]: 15 epochs of batch 64 (330 iterations), Adam with the same per-iteration cosine
schedule but lr 1e-2 instead of 1e-3 (at 1e-3 a few hundred iterations reach only about 60 %
test accuracy), dopri5 at 1e-3, the init point with lr₀ 0.02 and freq 5. ``homoode-digits``
reaches > 90 % test accuracy in under a minute on 2 CPU cores. Smoke numbers are smoke, never a
reproduction of the paper.

``homoode-noinit-*`` is HomoODE without the shared learnable initial point (the fixed
alternating ±1 start of the code's ``create_init``), for the init-point ablation (T3, C2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deqode.experiments import register_dataset_needs, register_experiment
from deqode.train import InitPointConfig, TrainConfig

MODELS = ("homoode", "node", "anode", "deq")
ODE_MODELS = ("homoode", "node", "anode")


@dataclass(frozen=True)
class ReleasedScript:
    """The per-dataset settings of one released training script (spec §2.4, §3.2, §3.4)."""

    dataset: str
    seed: int
    lr_init: float
    freq: int
    grad_mode: str
    source: str


PAPER_SCRIPTS: dict[str, ReleasedScript] = {
    "cifar10": ReleasedScript("cifar10", 0, 0.02, 20, "backprop",
                              "wadx2019/homoode scripts/homoinit_cifar10.py"),
    "cifar100": ReleasedScript("cifar100", 0, 0.01, 5, "frozen_adjoint",
                               "wadx2019/homoode scripts/homoinit_cifar100.py"),
    "tiny": ReleasedScript("tiny-imagenet", 1, 0.05, 20, "frozen_adjoint",
                           "wadx2019/homoode scripts/homoinit_tiny.py"),
}
PAPER = {"epochs": 300, "batch_size": 64, "test_batch_size": 400, "lr": 1e-3, "eta_min": 1e-6,
         "num_workers": 2}
SMOKE = {"epochs": 15, "batch_size": 64, "test_batch_size": 400, "lr": 1e-2, "eta_min": 1e-6}
SOLVER = {"method": "dopri5", "tol": 1e-3}


def _config(model: str, key: str, *, init_layer: bool, settings: dict[str, Any],
            dataset: str, seed: int, lr_init: float, freq: int, grad_mode: str,
            description: str) -> TrainConfig:
    kwargs: dict[str, Any] = dict(SOLVER) if model in ODE_MODELS else {}
    if model == "homoode":
        kwargs.update(grad_mode=grad_mode, lr_init=lr_init, freq=freq,
                      use_init_layer=init_layer)
    name = f"{model}-{key}" if init_layer else f"{model}-noinit-{key}"
    return TrainConfig(
        name=name, model=f"{model}-{key}", dataset=dataset, model_kwargs=kwargs, seed=seed,
        optimizer="adam", schedule="cosine",
        init_point=InitPointConfig(lr=lr_init, freq=freq, scheduler_divisor=1, eta_min=1e-6),
        description=description, **settings,
    )


def paper_config(model: str, key: str, init_layer: bool = True) -> TrainConfig:
    """``<model>-<key>`` at the released settings (``key`` in cifar10, cifar100, tiny)."""
    script = PAPER_SCRIPTS[key]
    origin = (f"released settings of {script.source}" if model == "homoode"
              else f"baseline trained like {script.source} [reconstruction]")
    return _config(model, key, init_layer=init_layer, settings=PAPER, dataset=script.dataset,
                   seed=script.seed, lr_init=script.lr_init, freq=script.freq,
                   grad_mode=script.grad_mode if model == "homoode" else "backprop",
                   description=origin)


def smoke_config(model: str, init_layer: bool = True) -> TrainConfig:
    """``<model>-digits``: the narrowed build on sklearn digits, about a minute on 2 cores."""
    return _config(model, "digits", init_layer=init_layer, settings=SMOKE, dataset="digits",
                   seed=0, lr_init=0.02, freq=5, grad_mode="backprop",
                   description="smoke profile on digits [reconstruction, spec §6]")


for _model in MODELS:
    register_experiment(f"{_model}-digits", "smoke", lambda m=_model: smoke_config(m))
    for _key in PAPER_SCRIPTS:
        register_experiment(f"{_model}-{_key}", "paper",
                            lambda m=_model, k=_key: paper_config(m, k))
register_experiment("homoode-noinit-digits", "smoke", lambda: smoke_config("homoode", False))
for _key in PAPER_SCRIPTS:
    register_experiment(f"homoode-noinit-{_key}", "paper",
                        lambda k=_key: paper_config("homoode", k, init_layer=False))


@register_dataset_needs
def needed_datasets(profile: str) -> list[str]:
    """Digits (bundled) in smoke; CIFAR-10, CIFAR-100 and Tiny-ImageNet in paper."""
    if profile == "paper":
        return sorted(script.dataset for script in PAPER_SCRIPTS.values())
    return ["digits"]


def hyperparameters(profile: str) -> list[dict[str, Any]]:
    """One row per HomoODE experiment of ``profile``: the settings table T5 renders."""
    keys = PAPER_SCRIPTS if profile == "paper" else ("digits",)
    rows = []
    for key in keys:
        cfg = paper_config("homoode", key) if profile == "paper" else smoke_config("homoode")
        rows.append({
            "experiment": cfg.name, "dataset": cfg.dataset, "epochs": cfg.epochs,
            "batch_size": cfg.batch_size, "test_batch_size": cfg.test_batch_size,
            "optimizer": f"{cfg.optimizer} lr {cfg.lr:g}",
            "schedule": f"cosine per iteration, eta_min {cfg.eta_min:g}",
            "solver": f"{SOLVER['method']} rtol=atol={SOLVER['tol']:g}",
            "grad_mode": cfg.model_kwargs["grad_mode"], "lr_init": cfg.init_point.lr,
            "freq": cfg.init_point.freq, "seed": cfg.seed, "source": cfg.description,
        })
    return rows
