"""SIM chapter: run configurations (profiles ``smoke`` / ``paper``), training loops, search driver.

The three tasks of Konishi & Kawahara (spec ``sim.md`` §3) with SIM's own training loops (§2.5):
SIM is trained like a feedforward model — plain Adam on an explicit network — so these loops are
small and separate from :func:`deqode.train.fit`. The DEQ baselines run through the same loops so
that the cost comparison (C3) measures the models, not the harnesses.

* image classification (T1): :func:`train_classifier`, lr modes ``step`` / ``constant`` /
  ``1cycle`` (the monDEQ loop SIM copied), evaluation after every epoch;
* image regression (T2): :func:`train_regression`, full batch, PSNR = ``−10 log10(MSE)`` on the
  unclamped prediction after the last iteration;
* copy memory (T3): :func:`train_copy_memory`, per-batch loss, accuracy (%) and cumulative
  wall-clock time (``time.perf_counter``, with ``torch.cuda.synchronize`` on a GPU).

Profiles: ``smoke`` = the spec's §6 CPU analogues (digits, 64×64 images, T = 10), non-tuned,
labelled smoke; ``paper`` = the paper's data and sizes with the official *non-tuned defaults*
(spec §3.2–§3.4; labelled "non-tuned defaults", not the tuned configurations of the paper, which
are not in the repository) or, with ``tune=True`` in a notebook, the random search of
:func:`run_search`.

Search driver: Optuna (optional dependency ``deqode[tune]``), chosen over Ray Tune because the
official Ray 1.3 API (``tune.report``, ``tune.run(local_dir=...)``) no longer exists in Ray 2.x
(spec §5 item 14), because Optuna is a small pure-Python package that runs in-process (no object
store, no cluster) — enough for one GPU — and because its ``RandomSampler`` and
``SuccessiveHalvingPruner`` reproduce the official "random search + ASHA (reduction factor 2)"
protocol. A dependency-free ``backend="random"`` (random search, ``max_t`` truncation, no early
stopping) serves tests and machines without Optuna.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from deqode.choices import check_choice, check_profile
from deqode.experiments import register_dataset_needs
from deqode.models import implicit2, mondeq, sim
from deqode.results import NOT_TRANSCRIBED, load_reference, reference_value

TASKS = ("classification", "regression", "copy-memory")
LR_MODES = ("step", "constant", "1cycle")
MODEL_KINDS = ("sim", "mondeq", "basis-mondeq", "deq-mfn", "deq-tcn")
SEARCH_BACKENDS = ("optuna", "random")
PAPER = "sim"


# --------------------------------------------------------------------------------------------------
# configurations
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """A model of a task: its table label, kind, named build (if any), constructor arguments and
    per-model training overrides (e.g. monDEQ's own schedule)."""

    label: str
    kind: str
    build: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)
    variant: str | None = None


@dataclass(frozen=True)
class ClassificationSetup:
    profile: str
    datasets: tuple[str, ...]
    models: dict[str, tuple[ModelSpec, ...]]  # dataset -> models
    epochs: int
    batch_size: int
    lr: float
    lr_mode: str
    steplr_step: int
    test_batch_size: int = 400
    seeds: tuple[int, ...] = (0,)
    data_options: dict[str, Any] = field(default_factory=dict)
    source: str = ""


@dataclass(frozen=True)
class RegressionSetup:
    profile: str
    images: tuple[tuple[str, dict[str, Any]], ...]  # (dataset name, options) per image
    set_names: dict[str, str]  # dataset name -> "natural" / "text"
    models: tuple[ModelSpec, ...]
    iterations: int
    lr: float
    seed: int
    source: str = ""


@dataclass(frozen=True)
class CopyMemorySetup:
    profile: str
    T: int
    models: tuple[ModelSpec, ...]
    epochs: int
    batch_size: int
    lr: float
    seed: int
    adam_eps: float = 1e-5
    source: str = ""


def _sim_models(task: str) -> tuple[ModelSpec, ModelSpec]:
    """The single-tier and two-tier SIM of a task: the named builds ``sim-{single,two}-<task>``."""
    return (
        ModelSpec("single-tier SIM", "sim", f"sim-single-{task}", variant="single-tier"),
        ModelSpec("two-tier SIM", "sim", f"sim-two-{task}", variant="two-tier"),
    )


def _digits_models() -> tuple[ModelSpec, ...]:
    return (
        *_sim_models("digits"),
        ModelSpec(
            "DEQ (monDEQ on the same basis)",
            "basis-mondeq",
            kwargs=dict(basis=dict(in_channels=1, image_size=8, channels=4, out_dim=16),
                        hidden=16, m=1.0, solver="peaceman_rachford", alpha=1.0, tol=1e-3,
                        max_iter=30),
        ),
    )


def _paper_cls_models(dataset: str) -> tuple[ModelSpec, ...]:
    step = 10 if dataset == "mnist" else 25
    return (
        *_sim_models(dataset),
        ModelSpec("monDEQ single conv", "mondeq", f"mondeq-conv-{dataset}",
                  train=dict(epochs=40, batch_size=128, lr=1e-3, lr_mode="step",
                             steplr_step=step)),
    )


def classification_setup(profile: str) -> ClassificationSetup:
    """T1 configuration. Smoke: spec §6 (digits 90/10, batch 64, ``step``) with 6 epochs at Adam
    lr 1e-2 instead of 2 epochs at 1e-3 (too few updates for the tiny models to leave chance);
    paper: the official non-tuned defaults (batch 128, ``step`` every 10 epochs, 10 epochs,
    lr 1e-3; seeds 1554, 1555, 1557) and monDEQ's published schedule (spec §3.5)."""
    check_profile(profile)
    if profile == "smoke":
        return ClassificationSetup(
            "smoke", ("digits",), {"digits": _digits_models()}, epochs=6, batch_size=64,
            lr=1e-2, lr_mode="step", steplr_step=10, test_batch_size=400, seeds=(0,),
            data_options=dict(test_fraction=0.1, seed=0),
            source="sim.md §6 T1 smoke [companion choice]",
        )
    datasets = ("mnist", "cifar10", "svhn")
    return ClassificationSetup(
        "paper", datasets, {d: _paper_cls_models(d) for d in datasets}, epochs=10,
        batch_size=128, lr=1e-3, lr_mode="step", steplr_step=10, test_batch_size=400,
        seeds=(1554, 1555, 1557), source="sim.md §3.2 non-tuned defaults",
    )


def regression_setup(profile: str) -> RegressionSetup:
    """T2 configuration. Smoke: sklearn's ``china.jpg`` and Pillow-rendered text at 64×64
    (splits of 32² pixels), widths 32, 300 full-batch Adam iterations at lr 3e-3, bandwidths 0.3
    (two-tier) and 0.1 (RFF-only) [companion choice, picked by hand on these two images; the
    official non-tuned lr 1e-4 is for 2000 iterations]; paper: the 16 + 16 Tancik
    images, non-tuned defaults (lr 1e-4, all widths 256, bandwidth 0.005, 2000 iterations,
    seed 2331) and an ImpSq-style DEQ-MFN (width 256)."""
    check_profile(profile)
    if profile == "smoke":
        models = (
            ModelSpec("single-tier SIM (MLP basis)", "sim", "sim-single-imgreg-smoke",
                      variant="single-tier"),
            ModelSpec("two-tier SIM (MLP + RFF)", "sim", "sim-two-imgreg-smoke",
                      dict(bandwidth=0.3), variant="two-tier"),
            ModelSpec("RFF-only SIM", "sim", "sim-rff-imgreg-smoke", dict(bandwidth=0.1),
                      variant="rff-only"),
            ModelSpec("DEQ-MFN ((Implicit)²-style)", "deq-mfn",
                      kwargs=dict(width=32, input_scale=32.0)),
        )
        return RegressionSetup(
            "smoke", (("sample-china", {"size": 64}), ("rendered-text", {"size": 64})),
            {"sample-china": "natural", "rendered-text": "text"}, models, iterations=300,
            lr=3e-3, seed=0, source="sim.md §6 T2 smoke [companion choice]",
        )
    models = (
        ModelSpec("single-tier SIM (MLP basis)", "sim", "sim-single-imgreg",
                  variant="single-tier"),
        ModelSpec("two-tier SIM (MLP + RFF)", "sim", "sim-two-imgreg", variant="two-tier"),
        ModelSpec("RFF-only SIM", "sim", "sim-rff-imgreg", variant="rff-only"),
        ModelSpec("DEQ-MFN ((Implicit)²-style)", "deq-mfn",
                  kwargs=dict(width=256, input_scale=256.0), train=dict(lr=1e-3)),
    )
    images = tuple((name, {"image": i}) for name in ("tancik-natural", "tancik-text")
                   for i in range(16))
    return RegressionSetup(
        "paper", images, {"tancik-natural": "natural", "tancik-text": "text"}, models,
        iterations=2000, lr=1e-4, seed=2331, source="sim.md §3.3 non-tuned defaults",
    )


def copy_memory_setup(profile: str) -> CopyMemorySetup:
    """T3 configuration. Smoke: T = 10, 200 / 50 sequences, TCN 4 levels × 8 channels, kernel 3,
    n1 = n2 = 16, R = 16, 4 epochs (spec §6 says 1–2; 4 is a
    [companion choice], 80 updates in all), batch 10, lr 0.01 (the official non-tuned lr and batch);
    paper: T = 500, 5000 / 500, the 17,294-parameter models, 20 epochs, batch 10, lr 0.01,
    bandwidth 500, seed 1554. The DEQ over a causal convolution is a [companion choice]."""
    check_profile(profile)
    if profile == "smoke":
        models = (
            *_sim_models("cpmem-smoke"),
            ModelSpec("DEQ-TCN (Anderson, tol 1e-3, ≤ 30 it.)", "deq-tcn",
                      kwargs=dict(hidden=16, channels=8, levels=4, kernel=3)),
        )
        return CopyMemorySetup("smoke", 10, models, epochs=4, batch_size=10, lr=0.01, seed=0,
                               source="sim.md §6 T3 smoke [companion choice]")
    models = (
        *_sim_models("cpmem"),
        ModelSpec("DEQ-TCN (Anderson, tol 1e-3, ≤ 30 it.)", "deq-tcn",
                  kwargs=dict(hidden=32, channels=10, levels=8, kernel=8)),
    )
    return CopyMemorySetup("paper", 500, models, epochs=20, batch_size=10, lr=0.01, seed=1554,
                           source="sim.md §3.4 non-tuned defaults")


@register_dataset_needs
def needed_datasets(profile: str) -> list[str]:
    """Data sets the SIM chapter reads in ``profile`` (file-backed ones only in ``paper``)."""
    check_profile(profile)
    if profile == "smoke":
        return ["digits", "sample-china", "rendered-text", "copy-memory"]
    return ["mnist", "cifar10", "svhn", "tancik-natural", "tancik-text", "copy-memory"]


def build_model(spec: ModelSpec, **overrides: Any) -> nn.Module:
    """Instantiate a :class:`ModelSpec` (``overrides`` replace constructor arguments)."""
    check_choice("model kind", spec.kind, MODEL_KINDS)
    kwargs = {**spec.kwargs, **overrides}
    if spec.kind == "sim":
        return sim.build(spec.build, **kwargs)
    if spec.kind == "mondeq":
        return mondeq.build(spec.build, **kwargs)
    if spec.kind == "basis-mondeq":
        basis = sim.ConvBasis(**kwargs.pop("basis"))
        return mondeq.BasisMonDEQ(basis, basis.out_dim, **kwargs)
    if spec.kind == "deq-mfn":
        return implicit2.DEQMFN(**kwargs)
    return sim.TemporalDEQ(**kwargs)


def trainable_parameters(model: nn.Module) -> int:
    return sim.count_trainable(model)


# --------------------------------------------------------------------------------------------------
# shared helpers
# --------------------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _nfe(model: nn.Module) -> tuple[int, int]:
    return int(getattr(model, "nfe_forward", 0) or 0), int(getattr(model, "nfe_backward", 0) or 0)


def seed_all(seed: int) -> None:
    """Seed the torch RNG: model initialisation and the RFF draws come from it."""
    torch.manual_seed(seed)


def final_run_seeds(best_seed: int, runs: int = 3) -> list[int]:
    """Seeds of the official final classification runs: ``seed += run_idx`` accumulates, giving
    offsets 0, 1, 3, 6, … (spec §5 item 7)."""
    seeds, seed = [], best_seed
    for run_idx in range(runs):
        seed += run_idx
        seeds.append(seed)
    return seeds


def one_cycle(t: float, epochs: int, max_lr: float) -> tuple[float, float]:
    """monDEQ's ``1cycle``: (lr, Adam β1) at fractional epoch ``t`` (piecewise linear through the
    knots ``[0, (E−5)//2, E−5, E]``: lr ``[1e-3, max_lr, 1e-3, 1e-3]``, β1
    ``[0.95, 0.85, 0.95, 0.95]``)."""
    knots = [0, (epochs - 5) // 2, epochs - 5, epochs]
    return (float(np.interp(t, knots, [1e-3, max_lr, 1e-3, 1e-3])),
            float(np.interp(t, knots, [0.95, 0.85, 0.95, 0.95])))


# --------------------------------------------------------------------------------------------------
# T1: image classification
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_classifier(model: nn.Module, loader: DataLoader, device: torch.device
                        ) -> tuple[float, float]:
    """Mean cross-entropy (sum / N) and accuracy as a fraction in [0, 1]."""
    model.eval()
    total, correct, count = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        total += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        count += len(y)
    model.train()
    return total / count, correct / count


def train_classifier(
    model: nn.Module,
    train_set: Dataset,
    test_set: Dataset,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    lr_mode: str = "step",
    steplr_step: int = 10,
    test_batch_size: int = 400,
    device: torch.device | str = "cpu",
    shuffle_seed: int = 0,
    report: Callable[[int, float], bool] | None = None,
) -> dict[str, Any]:
    """SIM's classification loop (monDEQ's ``train.py``): Adam, cross-entropy, no augmentation.

    ``lr_mode``: ``step`` (StepLR γ = 0.1 every ``steplr_step`` epochs, stepped per epoch),
    ``constant``, ``1cycle`` (:func:`one_cycle`, per batch). The loader shuffles with its own
    generator seeded ``shuffle_seed`` (identical batch order across runs, as the official code).
    After every epoch: test loss and accuracy (fraction); ``report(epoch, accuracy)`` (search)
    may stop training early by returning True.

    Returns ``{"epochs": [...], "steps": [...], "test_loss", "test_acc", "params"}``; each step
    records wall time (forward + backward + update), forward and backward NFE.
    """
    check_choice("lr_mode", lr_mode, LR_MODES)
    device = torch.device(device)
    model.to(device).train()
    generator = torch.Generator().manual_seed(shuffle_seed)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=generator)
    test_loader = DataLoader(test_set, batch_size=test_batch_size, shuffle=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr if lr_mode != "1cycle" else 1e-3)
    scheduler = (torch.optim.lr_scheduler.StepLR(optimizer, steplr_step, 0.1)
                 if lr_mode == "step" else None)
    history: dict[str, Any] = {"epochs": [], "steps": [], "params": trainable_parameters(model)}
    n_batches = len(train_loader)
    for epoch in range(1, epochs + 1):
        seen, loss_sum = 0, 0.0
        for batch_idx, (x, y) in enumerate(train_loader):
            if lr_mode == "1cycle":
                cur_lr, beta1 = one_cycle(epoch - 1 + batch_idx / n_batches, epochs, lr)
                for group in optimizer.param_groups:
                    group["lr"], group["betas"] = cur_lr, (beta1, group["betas"][1])
            x, y = x.to(device), y.to(device)
            _sync(device)
            start = time.perf_counter()
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            _sync(device)
            forward_nfe, backward_nfe = _nfe(model)
            history["steps"].append({"time": time.perf_counter() - start, "loss": loss.item(),
                                     "nfe_forward": forward_nfe, "nfe_backward": backward_nfe})
            loss_sum += loss.item() * len(y)
            seen += len(y)
        if scheduler is not None:
            scheduler.step()
        test_loss, test_acc = evaluate_classifier(model, test_loader, device)
        history["epochs"].append({"epoch": epoch, "train_loss": loss_sum / seen,
                                  "test_loss": test_loss, "test_acc": test_acc})
        if report is not None and report(epoch, test_acc):
            break
    history["test_loss"] = history["epochs"][-1]["test_loss"]
    history["test_acc"] = history["epochs"][-1]["test_acc"]
    return history


def cost_summary(history: Mapping[str, Any], skip: int = 1) -> dict[str, float]:
    """Per training step (the first ``skip`` steps dropped as warm-up): median time (ms) and
    mean forward / backward NFE — the "learned like a feedforward model" comparison (C3)."""
    steps = history["steps"][skip:] or history["steps"]
    return {
        "median step time (ms)": 1e3 * float(np.median([s["time"] for s in steps])),
        "forward NFE / step": float(np.mean([s["nfe_forward"] for s in steps])),
        "backward NFE / step": float(np.mean([s["nfe_backward"] for s in steps])),
    }


# --------------------------------------------------------------------------------------------------
# T2: image regression
# --------------------------------------------------------------------------------------------------


def psnr(mse: float) -> float:
    """``−10 log10(MSE)`` for targets in [0, 1] (unclamped, as the official code)."""
    return -10.0 * math.log10(mse) if mse > 0 else math.inf


def train_regression(
    model: nn.Module,
    train_set: Dataset,
    test_set: Dataset,
    *,
    iterations: int,
    lr: float,
    device: torch.device | str = "cpu",
    report: Callable[[int, float], bool] | None = None,
) -> dict[str, Any]:
    """Full-batch Adam on MSE. After each step: train PSNR from the pre-step loss, test PSNR
    from a fresh forward pass; the reported values are those after the last iteration.
    ``report(iteration, test_psnr)`` may stop early (search). The test-grid prediction
    ``(S/2, S/2, 3)`` of the final model is returned as ``prediction`` (with ``target``)."""
    device = torch.device(device)
    model.to(device).train()
    x_tr, y_tr = train_set.inputs.to(device), train_set.targets.to(device)
    x_te, y_te = test_set.inputs.to(device), test_set.targets.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    train_psnr, test_psnr, times = [], [], []
    for it in range(1, iterations + 1):
        _sync(device)
        start = time.perf_counter()
        optimizer.zero_grad()
        loss = F.mse_loss(model(x_tr), y_tr)
        loss.backward()
        optimizer.step()
        _sync(device)
        times.append(time.perf_counter() - start)
        train_psnr.append(psnr(loss.item()))
        with torch.no_grad():
            test_psnr.append(psnr(F.mse_loss(model(x_te), y_te).item()))
        if report is not None and report(it, test_psnr[-1]):
            break
    with torch.no_grad():
        prediction = model(x_te).reshape(*test_set.grid_shape, -1).cpu()
    return {
        "train_psnr": train_psnr,
        "test_psnr": test_psnr,
        "final_train_psnr": train_psnr[-1],
        "final_test_psnr": test_psnr[-1],
        "step_times": times,
        "prediction": prediction,
        "target": y_te.reshape(*test_set.grid_shape, -1).cpu(),
        "params": trainable_parameters(model),
    }


# --------------------------------------------------------------------------------------------------
# T3: copy memory
# --------------------------------------------------------------------------------------------------


def _stack(dataset: Dataset) -> tuple[Tensor, Tensor]:
    if hasattr(dataset, "inputs") and hasattr(dataset, "targets"):
        return dataset.inputs, dataset.targets
    xs, ys = zip(*[dataset[i] for i in range(len(dataset))], strict=True)
    return torch.stack(xs), torch.stack([torch.as_tensor(y) for y in ys])


@torch.no_grad()
def evaluate_copy_memory(model: nn.Module, x: Tensor, y: Tensor, batch_size: int
                         ) -> tuple[float, float]:
    """Test loss (mean over batches of the per-batch mean CE over all ``T + 20`` positions) and
    accuracy over all positions, in percent — the official metrics (spec §5 item 9)."""
    model.eval()
    losses, correct = [], 0
    for i in range(0, len(x), batch_size):
        logits = model(x[i : i + batch_size]).flatten(0, 1)
        target = y[i : i + batch_size].flatten()
        losses.append(F.cross_entropy(logits, target).item())
        correct += (logits.argmax(1) == target).sum().item()
    model.train()
    return float(np.mean(losses)), 100.0 * correct / y.numel()


def train_copy_memory(
    model: nn.Module,
    train_set: Dataset,
    test_set: Dataset,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    adam_eps: float = 1e-5,
    device: torch.device | str = "cpu",
    report: Callable[[int, float], bool] | None = None,
    val_set: Dataset | None = None,
) -> dict[str, Any]:
    """SIM's copy-memory loop: Adam (``eps`` 1e-5), constant lr, mini-batches in order.

    No gradient clipping: the official code calls ``clip_grad_norm_`` before ``backward()``, so
    its clipping has no effect (spec §5 item 4); we reproduce that effective behaviour. Per
    batch: loss, accuracy (%), cumulative wall-clock time (ms, ``perf_counter``; synchronised on
    a GPU) and NFE. The test set is evaluated once after the last epoch. With ``val_set`` and
    ``report`` (search), the validation loss is reported after each epoch.
    """
    device = torch.device(device)
    model.to(device).train()
    x_tr, y_tr = (t.to(device) for t in _stack(train_set))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, eps=adam_eps)
    steps: list[dict[str, float]] = []
    elapsed = 0.0
    for epoch in range(1, epochs + 1):
        for i in range(0, len(x_tr), batch_size):
            x, y = x_tr[i : i + batch_size], y_tr[i : i + batch_size]
            _sync(device)
            start = time.perf_counter()
            optimizer.zero_grad()
            logits = model(x).flatten(0, 1)
            loss = F.cross_entropy(logits, y.flatten())
            loss.backward()
            optimizer.step()
            _sync(device)
            elapsed += time.perf_counter() - start
            forward_nfe, backward_nfe = _nfe(model)
            acc = 100.0 * (logits.argmax(1) == y.flatten()).float().mean().item()
            steps.append({"loss": loss.item(), "acc": acc, "time_ms": 1e3 * elapsed,
                          "nfe_forward": forward_nfe, "nfe_backward": backward_nfe})
        if val_set is not None and report is not None:
            x_va, y_va = (t.to(device) for t in _stack(val_set))
            if report(epoch, evaluate_copy_memory(model, x_va, y_va, batch_size)[0]):
                break
    x_te, y_te = (t.to(device) for t in _stack(test_set))
    test_loss, test_acc = evaluate_copy_memory(model, x_te, y_te, batch_size)
    return {"steps": steps, "test_loss": test_loss, "test_acc": test_acc,
            "params": trainable_parameters(model)}


# --------------------------------------------------------------------------------------------------
# Koopman demos (spec §2.6): small training helpers, no logic in the notebooks
# --------------------------------------------------------------------------------------------------


def smoke_threads(profile: str) -> int:
    """Use one CPU thread in the smoke profile (the models are tiny: intra-op threading only adds
    overhead, and heavily so on a shared 2-core machine); returns the thread count in use."""
    if check_profile(profile) == "smoke":
        torch.set_num_threads(1)
    return torch.get_num_threads()


def digits_tensors(split: str, data_root: str = "data") -> tuple[Tensor, Tensor]:
    """sklearn digits as stacked tensors ``(N, 1, 8, 8)``, labels ``(N,)`` (SIM recipe, 90/10)."""
    from deqode.data import load_dataset

    data = load_dataset("digits", root=data_root, split=split, profile="smoke", recipe="sim",
                        test_fraction=0.1, seed=0)
    return data.images, data.targets


def train_tanh_deq(
    max_norm: float | None,
    epochs: int = 5,
    lr: float = 1e-2,
    batch_size: int = 64,
    hidden: int = 16,
    seed: int = 0,
    data_root: str = "data",
) -> tuple[sim.ContractiveTanhDEQ, dict[str, Any]]:
    """K1: train ``z* = tanh(W z* + U x + b)`` (``z ∈ R^16``) on digits with Adam; ``max_norm``
    bounds ``||W||₂`` (None: unconstrained). Returns the model and its history."""
    torch.manual_seed(seed)
    x_tr, y_tr = digits_tensors("train", data_root)
    x_te, y_te = digits_tensors("test", data_root)
    train = torch.utils.data.TensorDataset(x_tr, y_tr)
    test = torch.utils.data.TensorDataset(x_te, y_te)
    model = sim.ContractiveTanhDEQ(64, hidden, 10, max_norm=max_norm, solver="anderson",
                                   tol=1e-4, max_iter=50, backward_tol=1e-6)
    history = train_classifier(model, train, test, epochs=epochs, batch_size=batch_size, lr=lr,
                               lr_mode="constant", shuffle_seed=seed)
    return model, history


def r_squared(prediction: Tensor, target: Tensor) -> float:
    """Coefficient of determination ``1 − SS_res / SS_tot``."""
    prediction, target = prediction.flatten(), target.flatten()
    ss_tot = (target - target.mean()).square().sum()
    return float(1 - (prediction - target).square().sum() / ss_tot)


def hopf_readouts(
    mu: Tensor, theta0: Tensor, omega: float = 1.0, h: float = 0.5, radius0: float = 0.3,
    burn_in: int = 100, n_average: int = 400,
) -> dict[str, Tensor]:
    """Readouts of ``g(z) = x₁²`` along forward iteration of the Hopf flow map ``S_h`` from
    ``z₀ = radius0 · (cos θ₀, sin θ₀)``: the time average over ``n_average`` steps after
    ``burn_in`` (the λ = 1 / invariant-measure part; → ``μ/2`` for irrational ``ωh/2π``) and the
    value at the finite depth ``burn_in`` (phase-dependent)."""
    from deqode import koopman

    z0 = radius0 * torch.stack([torch.cos(theta0), torch.sin(theta0)], -1)
    traj = koopman.iterate(lambda z: koopman.hopf_flow(z, mu, omega, h), z0,
                           burn_in + n_average)
    g = traj[..., 0] ** 2
    return {"time_average": g[burn_in + 1:].mean(0), "depth_readout": g[burn_in],
            "final_state": traj[-1]}


def fit_sim_regressor(
    inputs: Tensor, targets: Tensor, steps: int = 400, lr: float = 1e-2, width: int = 16,
    seed: int = 0,
) -> tuple[sim.SIM, list[float]]:
    """Full-batch Adam fit of a small single-tier SIM (MLP basis, out = targets' width)."""
    torch.manual_seed(seed)
    out_dim = 1 if targets.dim() == 1 else targets.shape[1]
    model = sim.sim_mlp(width, width, width, out_dim=out_dim, in_dim=inputs.shape[1])
    model.to(inputs.dtype)
    y = targets.reshape(len(targets), out_dim)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.mse_loss(model(inputs), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return model, losses


# --------------------------------------------------------------------------------------------------
# random search (paper profile)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    values: tuple[Any, ...]


@dataclass(frozen=True)
class LogUniform:
    low: float
    high: float


@dataclass(frozen=True)
class QRandInt:
    """Integers ``low, low + q, …, high`` (Ray's ``qrandint``, upper bound included)."""

    low: int
    high: int
    q: int


@dataclass(frozen=True)
class RandInt:
    """Integers in ``[low, high)`` (Ray's ``randint``)."""

    low: int
    high: int


Distribution = Choice | LogUniform | QRandInt | RandInt


@dataclass(frozen=True)
class SearchSettings:
    """The official protocol per task (spec §3.2–§3.4): samples, metric, ASHA settings."""

    num_samples: int
    metric: str
    mode: str
    max_t: int
    grace_period: int
    reduction_factor: int = 2


SEARCH_SETTINGS: dict[str, SearchSettings] = {
    "classification": SearchSettings(200, "val_acc", "max", 80, 5),
    "regression": SearchSettings(200, "val_psnr", "max", 100, 5),
    "copy-memory": SearchSettings(100, "val_loss", "min", 6, 3),
}

_SEED = RandInt(0, 10_000)
_WIDTHS = Choice((32, 64, 128, 256, 512))
_BANDWIDTH = LogUniform(1e-3, 1e3)
_LR = LogUniform(1e-4, 0.05)
_CLS = {"train_batch_size": Choice((64, 128, 256, 512)), "epochs": Choice((20, 40, 60, 80)),
        "max_lr": _LR, "lr_mode": Choice(("1cycle", "step", "constant")),
        "steplr_step": QRandInt(5, 50, 5), "seed": _SEED}
_CPM = {"batch_size": Choice((1, 2, 5, 10, 20)), "lr": _LR, "seed": _SEED}
SEARCH_SPACES: dict[tuple[str, str], dict[str, Distribution]] = {
    ("classification", "single-tier"): dict(_CLS),
    ("classification", "two-tier"): {**_CLS, "bandwidth": _BANDWIDTH},
    ("regression", "single-tier"): {"lr": _LR, "tier_dim": _WIDTHS, "basis_dim": _WIDTHS,
                                    "seed": _SEED},
    ("regression", "two-tier"): {"lr": _LR, "basis_dim": _WIDTHS, "first_tier_dim": _WIDTHS,
                                 "second_tier_dim": _WIDTHS, "bandwidth": _BANDWIDTH,
                                 "seed": _SEED},
    ("regression", "rff-only"): {"lr": _LR, "tier_dim": _WIDTHS, "bandwidth": _BANDWIDTH,
                                 "seed": _SEED},
    ("copy-memory", "single-tier"): dict(_CPM),
    ("copy-memory", "two-tier"): {**_CPM, "bandwidth": _BANDWIDTH},
}


def search_space(task: str, variant: str) -> dict[str, Distribution]:
    """The official search space of ``task`` × SIM ``variant`` (spec §3.2–§3.4)."""
    check_choice("task", task, TASKS)
    valid = [v for t, v in SEARCH_SPACES if t == task]
    check_choice(f"SIM variant for task {task!r}", variant, valid)
    return dict(SEARCH_SPACES[task, variant])


def sample_config(space: Mapping[str, Distribution], rng: np.random.Generator) -> dict[str, Any]:
    """One random configuration (the dependency-free sampler)."""
    config: dict[str, Any] = {}
    for key, dist in space.items():
        if isinstance(dist, Choice):
            config[key] = dist.values[int(rng.integers(len(dist.values)))]
        elif isinstance(dist, LogUniform):
            config[key] = float(np.exp(rng.uniform(np.log(dist.low), np.log(dist.high))))
        elif isinstance(dist, QRandInt):
            steps = (dist.high - dist.low) // dist.q + 1
            config[key] = dist.low + dist.q * int(rng.integers(steps))
        elif isinstance(dist, RandInt):
            config[key] = int(rng.integers(dist.low, dist.high))
        else:
            raise TypeError(f"unknown distribution {dist!r} for {key!r}")
    return config


def suggest_config(space: Mapping[str, Distribution], trial: Any) -> dict[str, Any]:
    """One configuration drawn through an Optuna ``trial`` (``suggest_*`` API)."""
    config: dict[str, Any] = {}
    for key, dist in space.items():
        if isinstance(dist, Choice):
            config[key] = trial.suggest_categorical(key, list(dist.values))
        elif isinstance(dist, LogUniform):
            config[key] = trial.suggest_float(key, dist.low, dist.high, log=True)
        elif isinstance(dist, QRandInt):
            config[key] = trial.suggest_int(key, dist.low, dist.high, step=dist.q)
        elif isinstance(dist, RandInt):
            config[key] = trial.suggest_int(key, dist.low, dist.high - 1)
        else:
            raise TypeError(f"unknown distribution {dist!r} for {key!r}")
    return config


@dataclass
class TrialRecord:
    """One trial: its configuration, the reported ``(step, value)`` pairs and whether it stopped
    early (``pruned``: by the pruner; ``truncated``: at ``max_t``)."""

    config: dict[str, Any]
    values: list[tuple[int, float]] = field(default_factory=list)
    pruned: bool = False
    truncated: bool = False

    @property
    def last(self) -> float:
        return self.values[-1][1] if self.values else math.nan


@dataclass
class SearchResult:
    best_config: dict[str, Any]
    best_value: float
    trials: list[TrialRecord]
    backend: str
    settings: SearchSettings


Objective = Callable[[dict[str, Any], Callable[[int, float], bool]], None]


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError as err:  # optional dependency
        raise ImportError(
            "the SIM search driver's 'optuna' backend needs Optuna, an optional dependency: "
            "pip install 'deqode[tune]' (or pip install optuna); backend='random' runs without it"
        ) from err
    return optuna


def _select(trials: list[TrialRecord], mode: str) -> TrialRecord:
    """Best trial by its *last* reported value, early-stopped trials included (Ray's
    ``get_best_trial(metric, mode, 'last')``)."""
    scored = [t for t in trials if t.values and math.isfinite(t.last)]
    if not scored:
        raise RuntimeError("no trial reported a finite value")
    return (max if mode == "max" else min)(scored, key=lambda t: t.last)


def run_search(
    objective: Objective,
    task: str,
    variant: str,
    *,
    n_trials: int | None = None,
    seed: int = 777,
    backend: str = "optuna",
    settings: SearchSettings | None = None,
    space: Mapping[str, Distribution] | None = None,
) -> SearchResult:
    """Random search with ASHA-style early stopping, selection by the last reported value.

    ``objective(config, report)`` trains one configuration and calls ``report(step, value)``
    after every epoch (classification, copy memory) or iteration (regression) with the
    validation metric; when ``report`` returns True the objective must stop. ``report`` returns
    True once ``step ≥ max_t`` (the official ASHA ``max_t`` truncation, spec §5 item 6) and, with
    ``backend="optuna"``, when Optuna's ``SuccessiveHalvingPruner(min_resource=grace_period,
    reduction_factor=2)`` prunes the trial (asynchronous successive halving = ASHA).

    ``backend="random"``: the same random search without pruning (no dependency). The sampler is
    seeded with ``seed`` (official global seed 777). ``n_trials`` defaults to the official
    ``num_samples``.
    """
    check_choice("search backend", backend, SEARCH_BACKENDS)
    settings = settings or SEARCH_SETTINGS[check_choice("task", task, TASKS)]
    space = dict(space) if space is not None else search_space(task, variant)
    n_trials = settings.num_samples if n_trials is None else int(n_trials)
    trials: list[TrialRecord] = []

    def reporter(record: TrialRecord, trial: Any | None) -> Callable[[int, float], bool]:
        def report(step: int, value: float) -> bool:
            record.values.append((int(step), float(value)))
            if step >= settings.max_t:
                record.truncated = True
                return True
            if trial is not None:
                trial.report(float(value), int(step))
                if trial.should_prune():
                    record.pruned = True
                    return True
            return False

        return report

    if backend == "random":
        rng = np.random.default_rng(seed)
        for _ in range(n_trials):
            record = TrialRecord(sample_config(space, rng))
            trials.append(record)
            objective(dict(record.config), reporter(record, None))
    else:
        optuna = _import_optuna()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(
            direction="maximize" if settings.mode == "max" else "minimize",
            sampler=optuna.samplers.RandomSampler(seed=seed),
            pruner=optuna.pruners.SuccessiveHalvingPruner(
                min_resource=settings.grace_period, reduction_factor=settings.reduction_factor),
        )

        def wrapped(trial: Any) -> float:
            record = TrialRecord(suggest_config(space, trial))
            trials.append(record)
            objective(dict(record.config), reporter(record, trial))
            return record.last

        study.optimize(wrapped, n_trials=n_trials)
    best = _select(trials, settings.mode)
    return SearchResult(dict(best.config), best.last, trials, backend, settings)


def split_train_val(dataset: Dataset, fraction: float = 0.9, seed: int = 777
                    ) -> tuple[Dataset, Dataset]:
    """The official tuning split: ``random_split`` 90/10 with the generator seeded 777, so every
    trial sees the same split (spec §3.1 item 4)."""
    n_train = round(fraction * len(dataset))
    generator = torch.Generator().manual_seed(seed)
    train, val = torch.utils.data.random_split(dataset, [n_train, len(dataset) - n_train],
                                               generator=generator)
    return train, val


def _sim_overrides(task: str, variant: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """Constructor arguments of a searched configuration (widths, bandwidth)."""
    out: dict[str, Any] = {}
    if "bandwidth" in config:
        out["bandwidth"] = config["bandwidth"]
    if task == "regression":
        if variant == "single-tier":
            out.update(basis_dim=config["basis_dim"], first_tier_dim=config["tier_dim"])
        elif variant == "two-tier":
            out.update(basis_dim=config["basis_dim"], first_tier_dim=config["first_tier_dim"],
                       second_tier_dim=config["second_tier_dim"])
        else:
            out.update(tier_dim=config["tier_dim"])
    return out


def search_objective(
    task: str, spec: ModelSpec, train_set: Dataset, val_set: Dataset,
    device: torch.device | str = "cpu", full_length: int | None = None,
) -> Objective:
    """The objective of one SIM ``spec`` for :func:`run_search`: seed with the trial's
    ``seed``, build the model with the searched widths / bandwidth, train on ``train_set``,
    report the validation metric per epoch (classification: accuracy, copy memory: loss) or per
    iteration (regression: PSNR). ``full_length``: iterations (regression, default 2000) or
    epochs (copy memory, default 20); classification takes ``epochs`` from the configuration."""
    check_choice("task", task, TASKS)
    variant = spec.variant or "single-tier"

    def objective(config: dict[str, Any], report: Callable[[int, float], bool]) -> None:
        seed_all(int(config["seed"]))
        model = build_model(spec, **_sim_overrides(task, variant, config))
        if task == "classification":
            train_classifier(model, train_set, val_set, epochs=config["epochs"],
                             batch_size=config["train_batch_size"], lr=config["max_lr"],
                             lr_mode=config["lr_mode"], steplr_step=config["steplr_step"],
                             device=device, report=report)
        elif task == "regression":
            train_regression(model, train_set, val_set, iterations=full_length or 2000,
                             lr=config["lr"], device=device, report=report)
        else:
            train_copy_memory(model, train_set, val_set, epochs=full_length or 20,
                              batch_size=config["batch_size"], lr=config["lr"], device=device,
                              report=report, val_set=val_set)

    return objective


# --------------------------------------------------------------------------------------------------
# task runners (what the notebooks call)
# --------------------------------------------------------------------------------------------------


def _train_settings(setup: ClassificationSetup, spec: ModelSpec) -> dict[str, Any]:
    base = dict(epochs=setup.epochs, batch_size=setup.batch_size, lr=setup.lr,
                lr_mode=setup.lr_mode, steplr_step=setup.steplr_step)
    return {**base, **spec.train}


def run_classification(
    setup: ClassificationSetup,
    dataset: str,
    data_root: str = "data",
    device: torch.device | str = "cpu",
    tune: bool = False,
    n_trials: int | None = None,
    backend: str = "optuna",
    epochs: int | None = None,
) -> dict[str, dict[str, Any]]:
    """T1 for one dataset: every model of the setup, one run per seed (paper: 3), optionally
    after a random search (SIM variants only; final seeds ``best, best + 1, best + 3``).

    Returns, per model label: ``histories``, ``models`` (the trained modules of the last seed),
    ``test_acc`` (mean over runs), ``test_acc_std``, ``params`` and ``config`` with its
    ``source`` (``smoke`` / ``non-tuned defaults`` / ``searched`` / ``monDEQ schedule``).
    """
    from deqode.data import load_dataset

    opts = dict(setup.data_options)
    train = load_dataset(dataset, root=data_root, split="train", profile=setup.profile,
                         recipe="sim", **opts)
    test = load_dataset(dataset, root=data_root, split="test", profile=setup.profile,
                        recipe="sim", **opts)
    results: dict[str, dict[str, Any]] = {}
    for spec in setup.models[dataset]:
        settings = _train_settings(setup, spec)
        if epochs is not None:
            settings["epochs"] = epochs
        seeds, overrides = list(setup.seeds), {}
        source = "smoke" if setup.profile == "smoke" else (
            "monDEQ schedule" if spec.train else "non-tuned defaults")
        if tune and spec.kind == "sim":
            fit_part, val_part = split_train_val(train)
            search = run_search(search_objective("classification", spec, fit_part, val_part,
                                                 device), "classification", spec.variant,
                                n_trials=n_trials, backend=backend)
            best = search.best_config
            settings.update(epochs=best["epochs"], batch_size=best["train_batch_size"],
                            lr=best["max_lr"], lr_mode=best["lr_mode"],
                            steplr_step=best["steplr_step"])
            overrides = _sim_overrides("classification", spec.variant, best)
            seeds, source = final_run_seeds(int(best["seed"]), len(setup.seeds)), "searched"
        histories, model = [], None
        for seed in seeds:
            seed_all(seed)
            model = build_model(spec, **overrides)
            histories.append(train_classifier(model, train, test, device=device,
                                              test_batch_size=setup.test_batch_size,
                                              **settings))
        accs = [h["test_acc"] for h in histories]
        results[spec.label] = {
            "histories": histories, "model": model, "params": histories[0]["params"],
            "test_acc": float(np.mean(accs)), "test_acc_std": float(np.std(accs)),
            "seeds": seeds, "config": {**settings, **overrides, "source": source},
        }
    return results


def run_regression(
    setup: RegressionSetup,
    data_root: str = "data",
    device: torch.device | str = "cpu",
    iterations: int | None = None,
) -> list[dict[str, Any]]:
    """T2: every model on every image of the setup (one run each, seed ``setup.seed``).

    Returns one record per (image, model): ``set`` (natural / text), ``image``, ``model``,
    ``train_psnr``, ``test_psnr`` (after the last iteration), the PSNR curves, ``prediction``
    and ``target`` grids, ``params``, ``nfe_forward`` (DEQ: f evaluations of the last step)."""
    from deqode.data import load_dataset

    records = []
    for name, opts in setup.images:
        train = load_dataset(name, root=data_root, split="train", profile=setup.profile, **opts)
        test = load_dataset(name, root=data_root, split="test", profile=setup.profile, **opts)
        for spec in setup.models:
            seed_all(setup.seed)
            model = build_model(spec)
            lr = spec.train.get("lr", setup.lr)
            out = train_regression(model, train, test, iterations=iterations or setup.iterations,
                                   lr=lr, device=device)
            records.append({
                "set": setup.set_names[name], "dataset": name, "image": opts.get("image", 0),
                "model": spec.label, "params": out["params"], "lr": lr,
                "train_psnr": out["final_train_psnr"], "test_psnr": out["final_test_psnr"],
                "train_curve": out["train_psnr"], "test_curve": out["test_psnr"],
                "prediction": out["prediction"], "target": out["target"],
                "median_step_ms": 1e3 * float(np.median(out["step_times"])),
                "nfe_forward": int(getattr(model, "nfe_forward", 0) or 0),
            })
    return records


def run_copy_memory(
    setup: CopyMemorySetup,
    data_root: str = "data",
    device: torch.device | str = "cpu",
    epochs: int | None = None,
) -> dict[str, dict[str, Any]]:
    """T3: every model of the setup on the generated copy-memory data (one run, seed
    ``setup.seed``). Returns per model label the :func:`train_copy_memory` record, plus
    ``position_accuracy`` (:func:`copy_memory_position_accuracy` on the test set) and ``model``."""
    from deqode.data import load_dataset

    train = load_dataset("copy-memory", root=data_root, split="train", profile=setup.profile,
                         T=setup.T)
    test = load_dataset("copy-memory", root=data_root, split="test", profile=setup.profile,
                        T=setup.T)
    results = {}
    for spec in setup.models:
        seed_all(setup.seed)
        model = build_model(spec)
        results[spec.label] = train_copy_memory(
            model, train, test, epochs=epochs or setup.epochs, batch_size=setup.batch_size,
            lr=setup.lr, adam_eps=setup.adam_eps, device=device)
        results[spec.label]["position_accuracy"] = copy_memory_position_accuracy(
            model, test, setup.batch_size, device)
        results[spec.label]["model"] = model
    return results


@torch.no_grad()
def copy_memory_position_accuracy(
    model: nn.Module, dataset: Dataset, batch_size: int = 50, device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Test accuracy (%) split by position, to read the official all-position accuracy (spec §5
    item 9): on the ``T + 10`` blank positions, on the last 10 (the digits to recall; chance is
    12.5 % over the 8 digit values), and the share of those last 10 predicted as a blank. A model
    that predicts a blank everywhere scores ``100 (T + 10) / (T + 20)`` % overall."""
    x, y = (t.to(device) for t in _stack(dataset))
    if y.dim() != 2 or y.shape[1] <= 10:
        raise ValueError(f"copy-memory targets must be (N, T + 20), got {tuple(y.shape)}")
    was_training = model.training
    model.eval()
    preds = torch.cat([model(x[i : i + batch_size]).argmax(-1)
                       for i in range(0, len(x), batch_size)])
    model.train(was_training)
    blank, digit = slice(None, -10), slice(-10, None)
    return {
        "blank positions": 100.0 * (preds[:, blank] == y[:, blank]).float().mean().item(),
        "digit positions": 100.0 * (preds[:, digit] == y[:, digit]).float().mean().item(),
        "digit positions predicted blank": 100.0 * (preds[:, digit] == 0).float().mean().item(),
    }


def memoryless_loss(T: int) -> float:
    """Cross-entropy of the best predictor that remembers nothing: exact zeros on the ``T + 10``
    blank positions, uniform over the 8 digit values on the last 10: ``10 ln 8 / (T + 20)``."""
    return 10 * math.log(8) / (T + 20)


def always_blank_accuracy(T: int) -> float:
    """Accuracy (%) of predicting a blank everywhere: right on the ``T + 10`` blank positions of
    the ``T + 20``, wrong on the 10 digits to recall."""
    return 100 * (T + 10) / (T + 20)


# --------------------------------------------------------------------------------------------------
# tables: paper (from data/reference/sim.csv) and ours side by side
# --------------------------------------------------------------------------------------------------


def paper_vs_ours(
    table: str,
    rows: Sequence[str],
    paper_columns: Sequence[str],
    ours: Mapping[str, Mapping[str, Any]],
    label: str,
    fmt: Callable[[Any], str] = str,
):
    """A DataFrame, one row per model: ``<column> (paper)`` for each of ``paper_columns`` read
    from ``data/reference/sim.csv`` (``not transcribed`` where the reference holds no value;
    ``–`` for rows that are ours only, e.g. a companion baseline), then
    ``<column> (ours, <label>)`` for every column that ``ours[row]`` reports (our columns may
    differ from the paper's, e.g. digits instead of MNIST in the smoke profile). Missing entries
    of ours print as ``–``."""
    import pandas as pd

    reference = load_reference(PAPER)
    paper_rows = {r["row"] for r in reference if r["table"] == table}
    our_columns: list[str] = []
    for row in rows:
        for col in ours.get(row, {}):
            if col not in our_columns:
                our_columns.append(col)
    data = []
    for row in rows:
        entry: dict[str, str] = {"model": row}
        for col in paper_columns:
            cell = reference_value(reference, table, row, col) if row in paper_rows else "–"
            entry[f"{col} (paper)"] = cell
        for col in our_columns:
            value = ours.get(row, {}).get(col)
            entry[f"{col} (ours, {label})"] = "–" if value is None else fmt(value)
        data.append(entry)
    return pd.DataFrame(data).set_index("model")


def paper_cells(table: str) -> list[dict[str, str]]:
    """The reference rows of one table (every value is ``not transcribed`` for this paper)."""
    return [r for r in load_reference(PAPER) if r["table"] == table]


def all_paper_cells_not_transcribed() -> bool:
    """True when every paper cell of ``sim.csv`` says ``not transcribed`` (spec §4)."""
    return all(r["value"] == NOT_TRANSCRIBED for r in load_reference(PAPER))


# --------------------------------------------------------------------------------------------------
# figure F2: architecture diagram from the model classes
# --------------------------------------------------------------------------------------------------


def draw_architecture(ax: Any, rows: Sequence[Mapping[str, Any]], title: str) -> None:
    """Boxes for the stages of :func:`deqode.models.sim.describe_layers`, left to right, with the
    output shape and parameter count under each (frozen RFF values marked ``frozen``)."""
    from matplotlib.patches import FancyBboxPatch

    ax.set_xlim(0, len(rows))
    ax.set_ylim(0, 1)
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    for i, row in enumerate(rows):
        frozen = row["frozen"] > 0
        ax.add_patch(FancyBboxPatch(
            (i + 0.08, 0.35), 0.84, 0.4, boxstyle="round,pad=0.02",
            facecolor="#f4f4f4" if frozen else "#d9e7f5", edgecolor="0.3",
            linestyle="--" if frozen else "-"))
        ax.text(i + 0.5, 0.55, row["stage"], ha="center", va="center", fontsize=7.5)
        count = f"{row['frozen']:,} frozen" if frozen else f"{row['trainable']:,} params"
        ax.text(i + 0.5, 0.22, f"{tuple(row['shape'])}\n{count}", ha="center", va="center",
                fontsize=6.5)
        if i:
            ax.annotate("", xy=(i + 0.08, 0.55), xytext=(i - 0.08, 0.55),
                        arrowprops=dict(arrowstyle="->", lw=0.8))


def with_overrides(spec: ModelSpec, **kwargs: Any) -> ModelSpec:
    """A copy of ``spec`` with extra constructor arguments (e.g. a searched bandwidth)."""
    return replace(spec, kwargs={**spec.kwargs, **kwargs})


__all__ = [
    "LR_MODES",
    "MODEL_KINDS",
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
    "classification_setup",
    "copy_memory_position_accuracy",
    "copy_memory_setup",
    "cost_summary",
    "digits_tensors",
    "draw_architecture",
    "evaluate_classifier",
    "evaluate_copy_memory",
    "final_run_seeds",
    "fit_sim_regressor",
    "hopf_readouts",
    "memoryless_loss",
    "needed_datasets",
    "one_cycle",
    "paper_cells",
    "paper_vs_ours",
    "psnr",
    "r_squared",
    "regression_setup",
    "run_classification",
    "run_copy_memory",
    "run_regression",
    "run_search",
    "sample_config",
    "search_objective",
    "search_space",
    "seed_all",
    "smoke_threads",
    "split_train_val",
    "suggest_config",
    "train_classifier",
    "train_copy_memory",
    "train_regression",
    "train_tanh_deq",
    "trainable_parameters",
    "with_overrides",
]
