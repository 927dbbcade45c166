"""HomoODE chapter: measurements on trained models (starts, gradient modes, memory, DEQ)."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from deqode import metrics
from deqode.chapters.homoode.configs import GRAD_MODES, PARAMETER_GROUPS
from deqode.chapters.homoode.runs import eval_batch, load_trained, trained_config
from deqode.choices import check_choice
from deqode.errors import SolverFailure


class FixedStart(nn.Module):
    """A parameter-free start z(0) shaped like x̃, the same for every sample and position.

    ``"alternating"``: −1 on even channels, +1 on odd ones (the code's ``create_init``, the start
    of HomoODE without the init layer); ``"zeros"``; or a tensor of C per-channel values (e.g.
    :func:`endpoint_mean`).
    """

    KINDS = ("alternating", "zeros")

    def __init__(self, start: str | Tensor) -> None:
        super().__init__()
        if isinstance(start, str):
            check_choice("start", start, self.KINDS)
            self.values: Tensor | None = None
        else:
            self.values = start.detach().flatten()
        self.kind = start if isinstance(start, str) else "constant"

    def forward(self, reference: Tensor) -> Tensor:
        if self.values is not None:
            if self.values.numel() != reference.shape[1]:
                raise ValueError(f"{self.values.numel()} start values for "
                                 f"{reference.shape[1]} channels")
            values = self.values.to(reference)
            return values[None, :, None, None].expand_as(reference).clone()
        if self.kind == "zeros":
            return torch.zeros_like(reference)
        z = torch.ones_like(reference)
        z[:, ::2] = -1.0
        return z


@contextmanager
def solver_tolerance(model: nn.Module, tol: float) -> Iterator[nn.Module]:
    """Temporarily set ``rtol = atol = tol`` on an ODE model."""
    saved = (model.rtol, model.atol)
    model.rtol = model.atol = tol
    try:
        yield model
    finally:
        model.rtol, model.atol = saved


@contextmanager
def start_from(model: nn.Module, start: str | Tensor | None) -> Iterator[nn.Module]:
    """Temporarily replace a HomoODE's start by a :class:`FixedStart` (``None``: its own)."""
    if start is None:
        yield model
        return
    saved = model.init_layer
    model.init_layer = FixedStart(start)
    try:
        yield model
    finally:
        model.init_layer = saved


@torch.no_grad()
def endpoint_mean(model: nn.Module, x: Tensor, *, tol: float = 1e-3) -> Tensor:
    """Per-channel mean of z(1) over the batch and positions, solving from the model's own start:
    the constant start that the init loss pulls z0 towards (its mean-squared version)."""
    model.eval()
    with solver_tolerance(model, tol):
        return model.solve(model.stem(x)).mean(dim=(0, 2, 3))


@torch.no_grad()
def evaluate_start(model: nn.Module, x: Tensor, y: Tensor, *, tol: float,
                   start: str | Tensor | None = None) -> dict[str, Any]:
    """One eval-mode solve of the whole batch from ``start`` at ``tol``: forward NFE, accuracy,
    and how far the start is from the end points, three ways: ``start_distance``, the mean over
    samples of ‖z(1) − z0‖ / ‖z(1)‖; ``init_loss``, the init loss SmoothL1(z0, z(1)) (β = 1,
    mean) on this batch; ``mean_gap``, ‖z0 − z̄(1)‖ over the C channels, z̄(1) the per-channel mean
    of the end points over samples and positions (the constant start nearest them; z0 is
    per-channel constant for every start used here)."""
    model.eval()
    with solver_tolerance(model, tol), start_from(model, start):
        x_tilde = model.stem(x)
        z0, _ = model.start(x_tilde)
        z1 = model.solve(x_tilde)
        logits = model.head(z1)
        nfe = int(model.nfe_forward)
    distance = ((z1 - z0).flatten(1).norm(dim=1) / z1.flatten(1).norm(dim=1)).mean()
    gap = (z0.mean(dim=(0, 2, 3)) - z1.mean(dim=(0, 2, 3))).norm()
    name = "own" if start is None else (start if isinstance(start, str) else "constant")
    return {"tol": tol, "start": name, "nfe": nfe,
            "acc": float((logits.argmax(1) == y).float().mean()),
            "start_distance": float(distance), "init_loss": float(F.smooth_l1_loss(z0, z1)),
            "mean_gap": float(gap)}


@torch.no_grad()
def init_point_drift(record: dict[str, Any]) -> dict[str, Any]:
    """How far training moved the shared start: z0 per channel at initialisation (the run's
    seed, as :func:`deqode.train.fit` builds it) and after training (its checkpoint)."""
    from deqode import models

    trained = load_trained(record)
    checkpoint_config = trained_config(record)
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG state alone
        torch.manual_seed(checkpoint_config["seed"])
        initial = models.build(checkpoint_config["model"], **checkpoint_config["model_kwargs"])
    reference = torch.zeros(1, trained.field.state_channels, 1, 1)
    before = initial.initial_point(reference.to(next(initial.parameters()))).flatten()
    after = trained.initial_point(reference.to(next(trained.parameters()))).flatten()
    return {"before": before.tolist(), "after": after.tolist(),
            "max_change": float((after - before).abs().max())}


def end_point_gaps(records: Sequence[dict[str, Any]], batches: Mapping[str, tuple[Tensor, Tensor]],
                   *, profile: str, tol: float, device: str | torch.device = "cpu",
                   data_root: str = "data", size: int | None = None) -> dict[str, dict[str, Any]]:
    """One eval-mode solve of each trained model from its own start at ``tol``
    (:func:`evaluate_start`), per experiment name; the test batch of a dataset key comes from
    ``batches`` or else :func:`.runs.eval_batch` (``size`` images, on ``device``)."""
    ends = {}
    for key in dict.fromkeys(r["key"] for r in records):
        if key in batches:
            x, y = batches[key]
        else:
            x, y = (t.to(device) for t in eval_batch(key, profile, data_root=data_root, size=size))
        for r in records:
            if r["key"] == key:
                model = load_trained(r).to(device)
                ends[r["experiment"]] = evaluate_start(model, x, y, tol=tol)
    return ends


def start_sweep(models: Mapping[str, nn.Module], x: Tensor, y: Tensor, *,
                tols: Sequence[float],
                starts: Mapping[str, tuple[str, str | Tensor | None]]) -> list[dict[str, Any]]:
    """:func:`evaluate_start` for every tolerance and every ``starts[label] = (model, start)``."""
    return [{"label": label, **evaluate_start(models[model], x, y, tol=tol, start=start)}
            for label, (model, start) in starts.items() for tol in tols]


@torch.no_grad()
def init_point_spread(model: nn.Module, reference: Tensor) -> dict[str, float]:
    """How far the learned z0 is from being one per-channel constant (check C5 of the book chapter
    03_homoode_init_point, on the InitLayer of wadx2019/homoode): the largest
    deviation across samples and across positions (both 0 up to round-off), and its range."""
    z0 = model.initial_point(reference)
    return {
        "across_samples": float((z0 - z0[:1]).abs().max()),
        "across_positions": float((z0 - z0.mean(dim=(2, 3), keepdim=True)).abs().max()),
        "min": float(z0.min()), "max": float(z0.max()),
    }


# ---- gradients, memory and stability (notebook 04) ---------------------------------------------


def _part(name: str) -> str | None:
    head = name.split(".", 1)[0]
    return head if head in PARAMETER_GROUPS else None


def mode_gradients(model: nn.Module, x: Tensor, y: Tensor, *, mode: str, tol: float,
                   dtype: torch.dtype = torch.float64, activation: str | None = None,
                   ) -> dict[str, Any]:
    """Gradients of the cross-entropy w.r.t. every stem/ODE/head parameter of a copy of ``model``
    in eval mode, in ``dtype``, with gradient ``mode`` at ``tol`` (and ``activation`` swapped in,
    e.g. ``"softplus"``, to separate the ReLU kinks from the gradient mode)."""
    from deqode.models.layers import ACTIVATIONS

    net = copy.deepcopy(model).to(dtype).eval()
    if activation is not None:
        check_choice("activation", activation, ACTIVATIONS)
        net.field.activation = ACTIVATIONS[activation]  # the field reads this attribute
        net.field.activation_name = activation
    net.grad_mode = mode
    net.rtol = net.atol = tol
    named = [(n, p) for n, p in net.named_parameters() if _part(n) is not None]
    loss = F.cross_entropy(net(x.to(dtype)), y)
    grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
    return {"grads": {n: torch.zeros_like(p) if g is None else g
                      for (n, p), g in zip(named, grads, strict=True)},
            "nfe_forward": int(net.nfe_forward), "nfe_backward": int(net.nfe_backward)}


def _flat(grads: Mapping[str, Tensor], part: str | None) -> Tensor:
    return torch.cat([g.flatten() for n, g in grads.items() if part is None or _part(n) == part])


def gradient_gaps(model: nn.Module, x: Tensor, y: Tensor, *, tol: float = 1e-6,
                  modes: Sequence[str] = GRAD_MODES, reference: str = "backprop",
                  activation: str | None = None, dtype: torch.dtype = torch.float64,
                  ) -> list[dict[str, Any]]:
    """G5: each mode's gradient against ``reference``'s (exact backprop), by parameter group.

    One row per (mode, group) with the relative difference ‖g − g_ref‖ / ‖g_ref‖ over the group,
    its smallest and largest value over the group's tensors (``tensor_min``, ``tensor_max``;
    tensors whose exact gradient is 0, e.g. biases before a norm layer, left out), the cosine
    between g and g_ref, and the mode's forward/backward NFE; group ``all`` joins stem, ODE
    function and head.
    """
    results = {mode: mode_gradients(model, x, y, mode=mode, tol=tol, dtype=dtype,
                                    activation=activation) for mode in {*modes, reference}}
    exact = results[reference]["grads"]
    rows = []
    for mode in modes:
        grads = results[mode]["grads"]
        for part in (*PARAMETER_GROUPS, None):
            g, g_ref = _flat(grads, part), _flat(exact, part)
            per_tensor = [float((grads[n] - e).norm() / e.norm()) for n, e in exact.items()
                          if (part is None or _part(n) == part) and e.norm() > 1e-12 * g_ref.norm()]
            rows.append({
                "mode": mode, "group": part or "all", "tol": tol,
                "activation": activation or model.field.activation_name,
                "rel_diff": float((g - g_ref).norm() / g_ref.norm()),
                "tensor_min": min(per_tensor), "tensor_max": max(per_tensor),
                "cosine": float(F.cosine_similarity(g, g_ref, dim=0)),
                "nfe_forward": results[mode]["nfe_forward"],
                "nfe_backward": results[mode]["nfe_backward"],
            })
    return rows


def adjoint_gap_vs_tol(model: nn.Module, x: Tensor, y: Tensor, *, tols: Sequence[float],
                       activation: str | None = None) -> list[dict[str, Any]]:
    """The exact adjoint against backprop at each tolerance (all parameters; float64); a solve
    that hits the step cap is recorded as ``failed`` instead of raising."""
    rows = []
    for tol in tols:
        try:
            gaps = gradient_gaps(model, x, y, tol=tol, modes=("adjoint",), activation=activation)
        except SolverFailure as err:
            rows.append({"tol": tol, "activation": activation or model.field.activation_name,
                         "rel_diff": None, "nfe_forward": None, "nfe_backward": None,
                         "failed": str(err)[:120]})
            continue
        row = next(g for g in gaps if g["group"] == "all")
        rows.append({k: row[k] for k in ("tol", "activation", "rel_diff", "nfe_forward",
                                         "nfe_backward")} | {"failed": ""})
    return rows


def memory_vs_nfe(model: nn.Module, x: Tensor, y: Tensor, *, tols: Sequence[float],
                  modes: Sequence[str] = GRAD_MODES, seed: int = 0) -> list[dict[str, Any]]:
    """One training step (train mode, same weights, batch and dropout mask) per (mode, tol).

    Measured: forward and backward NFE, the autograd saved-tensor peak
    (:class:`deqode.metrics.SavedTensorMeter`, parameters excluded; deterministic, the CPU
    measure) and, on CUDA, ``max_memory_allocated`` above the step's starting allocation.
    """
    rows = []
    for mode in modes:
        for tol in tols:
            net = copy.deepcopy(model).train()
            net.grad_mode = mode
            net.rtol = net.atol = tol
            meter = metrics.SavedTensorMeter()
            cuda = x.device.type == "cuda"
            if cuda:
                torch.cuda.reset_peak_memory_stats(x.device)
                start = torch.cuda.memory_allocated(x.device)
            devices = [x.device] if cuda else []
            with torch.random.fork_rng(devices=devices):  # the caller's RNG state is left alone
                torch.manual_seed(seed)  # the same dropout mask for every (mode, tol)
                began = time.perf_counter()
                with meter.track(exclude=list(net.parameters())):
                    F.cross_entropy(net(x), y).backward()
                seconds = time.perf_counter() - began
            rows.append({
                "mode": mode, "tol": tol, "nfe_forward": int(net.nfe_forward),
                "nfe_backward": int(net.nfe_backward), "saved_mb": meter.peak_bytes / metrics.MB,
                "cuda_mb": (torch.cuda.max_memory_allocated(x.device) - start) / metrics.MB
                if cuda else None,
                "seconds": seconds,
            })
    return rows


@torch.no_grad()
def deq_residual_traces(model: nn.Module, x: Tensor, *,
                        solvers: Sequence[str] = ("broyden", "anderson", "picard"),
                        max_iter: int = 30, tol: float = 1e-3) -> dict[str, dict[str, Any]]:
    """F4: the DEQ's forward solve from z = 0 by each solver, in eval mode, on one batch.

    Per solver: the relative residual ‖f(z) − z‖ / (‖f(z)‖ + ε) of the worst sample after each
    evaluation of f (``residuals``; entry k after k + 1 evaluations), the NFE, and per sample the
    final relative residual and the fraction of samples that missed ``tol`` (``failed``).
    """
    from deqode.solvers import fixed_point
    from deqode.solvers.fixed_point import REL_EPS, batch_view

    model.eval()
    x_tilde = model.stem(x)
    model.cell.prepare(x_tilde)
    out = {}
    for solver in solvers:
        z, info = fixed_point(model.cell, torch.zeros_like(x_tilde), solver, tol, max_iter, "rel")
        fz = batch_view(model.cell(z))
        per_sample = (fz - batch_view(z)).norm(dim=1) / (fz.norm(dim=1) + REL_EPS)
        out[solver] = {"residuals": list(info.rel_residuals), "nfe": info.nfe,
                       "converged": info.converged, "diverged": info.diverged,
                       "final": per_sample.tolist(),
                       "failed": float((~(per_sample <= tol)).float().mean())}
    return out


#: G5 (book chapter 04_homoode_gradients): the exact adjoint must agree with backprop to this
#: relative difference with the paper's ReLU field once the tolerance is tight enough ...
ADJOINT_TARGET = 1e-3
#: ... trying these tolerances in turn (each tighter one costs more NFE).
ADJOINT_TOLS = (1e-6, 1e-7, 1e-8)


def tighten_adjoint(model: nn.Module, x: Tensor, y: Tensor, *, target: float = ADJOINT_TARGET,
                    tols: Sequence[float] = ADJOINT_TOLS) -> dict[str, Any]:
    """G5 (book chapter 04_homoode_gradients): tighten the tolerance until the exact adjoint's
    gradient (all parameters, float64, ReLU field as trained) is within ``target`` (relative) of
    backprop's. ``rows``: :func:`adjoint_gap_vs_tol` for each tolerance tried; ``reached``: the
    first that met the target, ``None`` when none did."""
    rows, reached = [], None
    for tol in tols:
        row = adjoint_gap_vs_tol(model, x, y, tols=[tol])[0]
        rows.append(row)
        if row["rel_diff"] is not None and row["rel_diff"] < target:
            reached = tol
            break
    return {"rows": rows, "reached": reached, "target": target}


def step_memory(model: nn.Module, x: Tensor, y: Tensor, *, seed: int = 0) -> dict[str, Any]:
    """One training step of a copy of ``model`` (train mode) on ``(x, y)``: the autograd
    saved-tensor peak (parameters excluded) and the NFE, as :func:`memory_vs_nfe` measures an ODE
    model; for the DEQ (whose implicit backward keeps only the last application of f)."""
    net = copy.deepcopy(model).train()
    meter = metrics.SavedTensorMeter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        with meter.track(exclude=list(net.parameters())):
            F.cross_entropy(net(x), y).backward()
    return {"saved_mb": meter.peak_bytes / metrics.MB,
            "nfe_forward": int(getattr(net, "nfe_forward", 0)),
            "nfe_backward": int(getattr(net, "nfe_backward", 0))}
