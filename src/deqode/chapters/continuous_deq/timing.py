"""Continuous DEQ chapter: timing at the paper's real sizes (direct timing and cost model)."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deqode import metrics
from deqode.chapters.continuous_deq.configs import TIME_COLUMNS
from deqode.chapters.continuous_deq.reference import (
    CONT,
    DISC,
    SKIP_CONT,
    SKIPREG_CONT,
    ratio,
)

# --------------------------------------------------------------------------------------------------
# timing at real sizes with random inputs (RT1–RT3)
# --------------------------------------------------------------------------------------------------

TIMING_LABEL = ("real-size architecture, random inputs, untrained weights, CPU — timing only, "
                "not the paper's measurement")
TIMING_VARIANTS: dict[str, dict[str, Any]] = {
    "Vanilla DEQ (discrete)": {"variant": "vanilla", "solver": "discrete"},
    "Skip DEQ (discrete)": {"variant": "skip", "solver": "discrete"},
    "Skip Reg. DEQ (discrete)": {"variant": "skip_reg", "solver": "discrete"},
    CONT: {"variant": "vanilla", "solver": "continuous"},
    SKIP_CONT: {"variant": "skip", "solver": "continuous"},
    SKIPREG_CONT: {"variant": "skip_reg", "solver": "continuous"},
    "Neural ODE": {"variant": "neural_ode", "grad_mode": "backprop"},
    "Neural ODE (torchdiffeq adjoint)": {"variant": "neural_ode", "grad_mode": "adjoint"},
}


def timing_model(arch: str, label: str, replay: bool = True, **kwargs: Any) -> nn.Module:
    """A model of the timing row ``label``; ``replay`` forces the caps (termination tolerance 0,
    GMRES tolerances 0), so every variant runs ``max_steps`` solver steps and ``itmax`` GMRES
    iterations — comparable counts for untrained weights."""
    from deqode.models.continuous_deq import variant_model

    spec = dict(TIMING_VARIANTS[label])
    variant = spec.pop("variant")
    if replay and variant != "neural_ode":
        spec.update(tol=0.0, gmres_atol=0.0, gmres_rtol=0.0)
    return variant_model(arch, variant, **spec, **kwargs)


def _clock() -> float:
    return metrics.clock()


def time_training_step(model: nn.Module, x: Tensor, y: Tensor, repeats: int = 1,
                       warmup: int = 1) -> dict[str, Any]:
    """Per-batch times of the Julia phases: forward (solve + tape), backward, optimiser step —
    the phases of the training loop's own step (:meth:`deqode.train.Trainer.train_step`, Adam,
    cross-entropy) — and test-mode prediction; median over ``repeats`` after ``warmup``
    batches; with NFE/GMRES."""
    from deqode.metrics import Accumulator, PhaseTimer
    from deqode.train.loop import probe_trainer

    device = next(model.parameters()).device
    trainer = probe_trainer(model, (x, y), device=device)
    records = []
    for k in range(warmup + repeats):
        model.train()
        acc, timer = Accumulator(), PhaseTimer(device)
        trainer.train_step((x, y), acc, timer)
        phases = {name: timer.seconds[name] for name in ("forward", "backward", "step")}
        nfe_f = acc.mean("nfe_forward")
        nfe_b, gmres_it = model.nfe_backward, model.last_backward.get("iterations", 0)
        model.eval()
        with torch.no_grad():
            t4 = _clock()
            model(x)
            t5 = _clock()
        if k >= warmup:
            records.append({**phases, "training": sum(phases.values()), "prediction": t5 - t4,
                            "nfe_forward": nfe_f, "nfe_backward": nfe_b,
                            "gmres_iterations": gmres_it, "nfe_prediction": model.nfe_forward})
    return {key: float(np.median([r[key] for r in records])) for key in records[0]}


def time_variants(arch: str, batch: int, labels: Sequence[str] | None = None, *,
                  replay: bool = True, repeats: int = 1, warmup: int = 1, seed: int = 0,
                  dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
                  ) -> list[dict[str, Any]]:
    """Directly timed training steps of several variants on random inputs of the right shape."""
    out = []
    for label in labels or list(TIMING_VARIANTS):
        torch.manual_seed(seed)
        model = timing_model(arch, label, replay=replay).to(device, dtype)
        x = torch.randn(batch, *model.input_shape, dtype=dtype, device=device)
        y = torch.randint(0, model.cfg.num_classes, (batch,), device=device)
        out.append({"row": label, "batch": batch, **time_training_step(model, x, y, repeats,
                                                                        warmup)})
        del model
    return out


def _mean_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = _clock()
        fn()
        times.append(_clock() - t0)
    return float(np.median(times))


def unit_costs(arch: str, batch: int, *, repeats: int = 2, seed: int = 0,
               dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
               ) -> dict[str, float]:
    """Seconds per batch of the unit operations of the cost model (§5.3), after one warm-up:

    ``f`` (no-grad evaluation), ``f_tape`` (evaluation recording the graph), ``vjp`` (one
    vector–Jacobian product through a taped f), ``stem_head_forward`` / ``stem_head_backward``,
    ``predictor`` (Skip's g_φ, forward + backward), ``step`` (Adam update of all parameters).
    """
    from deqode.models.continuous_deq import SkipDEQ

    torch.manual_seed(seed)
    model = SkipDEQ(arch).to(device, dtype).train()
    x_in = torch.randn(batch, *model.input_shape, dtype=dtype, device=device)
    y = torch.randint(0, model.cfg.num_classes, (batch,), device=device)
    x = model.stem(x_in).detach()
    model.core.prepare(x)
    u = model.predictor(x).detach()
    costs: dict[str, float] = {}

    def no_grad_f() -> None:
        with torch.no_grad():
            model.core(u, x)

    def taped() -> Tensor:
        u_in = u.clone().requires_grad_(True)
        return model.core(u_in, x), u_in

    fu, u_in = taped()
    w = torch.randn_like(fu)

    def vjp() -> None:
        torch.autograd.grad(fu, u_in, w, retain_graph=True)

    def stem_head() -> Tensor:  # the stem joins the graph with weight 0: its cost, not values
        h = model.stem(x_in)
        return F.cross_entropy(model.head(model.core.split(u + 0.0 * h.mean())), y)

    def predictor() -> None:
        model.predictor(x).sum().backward()

    from deqode.train.loop import probe_trainer

    trainer = probe_trainer(model, (x_in, y), device=device)

    def step() -> None:  # the training loop's own update (Adam)
        for p in model.parameters():
            p.grad = torch.zeros_like(p)
        trainer.apply_update()

    for name, fn in (("f", no_grad_f), ("f_tape", taped), ("vjp", vjp),
                     ("predictor", predictor), ("step", step)):
        fn()  # warm-up
        costs[name] = _mean_time(fn, repeats)
    stem_head()  # warm-up
    costs["stem_head_forward"] = _mean_time(stem_head, repeats)
    losses = [stem_head() for _ in range(repeats)]
    costs["stem_head_backward"] = float(np.median([_mean_time(lambda loss=loss: loss.backward(),
                                                              1) for loss in losses]))
    model.zero_grad(set_to_none=True)
    return costs


def solver_nfe(solver: str, steps: int, method: str = "vcab3") -> int:
    """Evaluations of f for ``steps`` accepted solver steps without rejections: VCAB3
    ``2 + 3·2 + (steps − 2)``, BS3 ``2 + 3·steps``, Broyden ``steps + 1``."""
    if solver == "discrete":
        return steps + 1
    if method == "bs3":
        return 2 + 3 * steps
    return 2 + 3 * min(steps, 2) + max(steps - 2, 0)


def cost_model(costs: Mapping[str, float], label: str, steps: int, gmres: int,
               node_steps: int | None = None) -> dict[str, float]:
    """Per-batch training / backward / prediction time of timing row ``label`` estimated from
    :func:`unit_costs` at given counts (linear combination, integrator bookkeeping ignored).

    DEQ rows: forward = solver NFE · f + extra application (taped) + stem/head (+ g_φ or the
    taped f(0, x) for Skip / Skip Reg.); backward = stem/head + recomputed f (taped) +
    ``gmres`` VJPs + parameter VJP + the extra application's VJP. Neural ODE (backprop): every
    evaluation of ``node_steps`` accepted VCAB3 steps taped and back-propagated.
    """
    spec = TIMING_VARIANTS[label]
    f, tape, vjp = costs["f"], costs["f_tape"], costs["vjp"]
    sh_f, sh_b = costs["stem_head_forward"], costs["stem_head_backward"]
    if spec["variant"] == "neural_ode":
        nfe = solver_nfe("continuous", node_steps if node_steps is not None else steps)
        forward = nfe * tape + tape + sh_f
        backward = (nfe + 1) * vjp + sh_b
        prediction = (nfe + 1) * f + sh_f
    else:
        nfe = solver_nfe(spec["solver"], steps)
        extra_f = {"vanilla": 0.0, "skip": costs["predictor"] / 2, "skip_reg": tape}
        extra_b = {"vanilla": 0.0, "skip": costs["predictor"] / 2, "skip_reg": vjp}
        forward = nfe * f + tape + sh_f + extra_f[spec["variant"]]
        backward = sh_b + tape + (gmres + 2) * vjp + extra_b[spec["variant"]]
        prediction = (nfe + 1) * f + sh_f + (f if spec["variant"] == "skip_reg" else 0.0)
    return {"forward": forward, "backward": backward, "step": costs["step"],
            "training": forward + backward + costs["step"], "prediction": prediction}


def paper_timing_ratios() -> list[dict[str, Any]]:
    """The ratios the timing notebook compares with (from Tables 2 and 3)."""
    rows = []
    for table, size in (("T2", "CIFAR-10 small"), ("T3", "CIFAR-10 large")):
        for name, num, den, col in (
            ("Neural ODE ÷ Cont. DEQ, training", "Neural ODE", CONT, 0),
            ("Neural ODE ÷ Cont. DEQ, backward", "Neural ODE", CONT, 1),
            ("Cont. ÷ Skip Cont., training", CONT, SKIP_CONT, 0),
            ("Cont. ÷ Skip Reg. Cont., training", CONT, SKIPREG_CONT, 0),
            ("Cont. ÷ Skip Reg. Cont., backward", CONT, SKIPREG_CONT, 1),
            ("Cont. ÷ Disc. vanilla, training", CONT, DISC, 0),
        ):
            rows.append({"size": size, "ratio": name, "paper": ratio(table, num, den,
                                                                      TIME_COLUMNS[col])})
    return rows


def ratio_table(measured: Mapping[str, Mapping[str, float]], size: str) -> list[dict[str, Any]]:
    """Our ratios (from ``measured[row][phase]``) next to the paper's for one model size."""
    keys = {
        "Neural ODE ÷ Cont. DEQ, training": ("Neural ODE", CONT, "training"),
        "Neural ODE ÷ Cont. DEQ, backward": ("Neural ODE", CONT, "backward"),
        "Cont. ÷ Skip Cont., training": (CONT, SKIP_CONT, "training"),
        "Cont. ÷ Skip Reg. Cont., training": (CONT, SKIPREG_CONT, "training"),
        "Cont. ÷ Skip Reg. Cont., backward": (CONT, SKIPREG_CONT, "backward"),
        "Cont. ÷ Disc. vanilla, training": (CONT, DISC, "training"),
    }
    out = []
    for row in paper_timing_ratios():
        if row["size"] != size:
            continue
        num, den, phase = keys[row["ratio"]]
        ours = (measured[num][phase] / measured[den][phase]
                if num in measured and den in measured else math.nan)
        out.append({**row, "ours": ours})
    return out


__all__ = [
    "COST_MODEL_FACTOR",
    "TIMING_LABEL",
    "TIMING_VARIANTS",
    "cost_model",
    "cost_model_check",
    "paper_timing_ratios",
    "ratio_table",
    "solver_nfe",
    "time_training_step",
    "time_variants",
    "timing_model",
    "unit_costs",
]


#: The cost model (:func:`cost_model`) counts as validated for a phase when the directly timed
#: step and the model's estimate differ by at most this factor (either way).
COST_MODEL_FACTOR = 2.0


def cost_model_check(direct: Mapping[str, float], modelled: Mapping[str, float],
                     phases: Sequence[str] = ("forward", "backward", "prediction")
                     ) -> list[dict[str, Any]]:
    """Directly timed against modelled seconds per phase: ratio direct ÷ model and whether it
    lies within :data:`COST_MODEL_FACTOR` either way."""
    out = []
    for phase in phases:
        factor = direct[phase] / modelled[phase]
        out.append({"phase": phase, "direct (s)": direct[phase], "cost model (s)": modelled[phase],
                    "direct ÷ model": factor,
                    f"within {COST_MODEL_FACTOR:g}×": 1.0 / COST_MODEL_FACTOR <= factor
                    <= COST_MODEL_FACTOR})
    return out
