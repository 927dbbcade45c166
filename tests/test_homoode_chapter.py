"""The HomoODE chapter (notebooks 02-04): configurations, reference cells and measurements.

Every ``paper`` configuration the chapter trains is built on the CPU (no data, no training) and
checked against the released scripts (official code ``scripts/homoinit_{cifar10,cifar100,tiny}.py``,
with parameter counts from instantiating their classes); the measurement helpers of
:mod:`deqode.chapters.homoode` are checked on the untrained smoke model with known answers.
"""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import matplotlib
import pytest
import torch

from deqode import chapters as experiments
from deqode import models
from deqode.chapters import homoode as chapter
from deqode.choices import UnknownChoiceError
from deqode.models.layers import AlternatingInit

matplotlib.use("Agg")

DT = torch.float64
# per released script (official code `scripts/homoinit_*.py`; counts from its classes)
SCRIPTS = {
    "cifar10": dict(dataset="cifar10", seed=0, lr_init=0.02, freq=20, grad_mode="backprop",
                    per_epoch=781, input=(3, 32, 32), channels=64, params=132_938, init=192),
    "cifar100": dict(dataset="cifar100", seed=0, lr_init=0.01, freq=5, grad_mode="frozen_adjoint",
                     per_epoch=781, input=(3, 32, 32), channels=128, params=565_988, init=384),
    "tiny": dict(dataset="tiny-imagenet", seed=1, lr_init=0.05, freq=20,
                 grad_mode="frozen_adjoint", per_epoch=1562, input=(3, 64, 64), channels=128,
                 params=617_288, init=384),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny tensors: one thread


def paper_runs() -> list[chapter.ChapterRun]:
    runs = (chapter.comparison_runs("paper") + chapter.ablation_runs("paper")
            + chapter.grad_mode_runs("paper") + chapter.deq_runs("paper"))
    unique = {run.config.name: run for run in runs}
    return list(unique.values())


# --------------------------------------------------------------------------------------------------
# the paper profile: every configuration and model, built on the CPU
# --------------------------------------------------------------------------------------------------


def test_paper_profile_trains_the_registered_configurations_unchanged():
    runs = paper_runs()
    # 5 comparison rows + 2 extra gradient modes per dataset (the ablation and DEQ rows repeat)
    assert len(runs) == 3 * (5 + 2)
    for run in runs:
        assert run.config == experiments.get(run.config.name, "paper"), run.config.name


@pytest.mark.parametrize("key", list(SCRIPTS))
def test_every_paper_configuration_and_model_matches_the_released_scripts(key):
    spec = SCRIPTS[key]
    torch.manual_seed(0)
    x = torch.randn(2, *spec["input"])
    homoode_total = None
    for run in [r for r in paper_runs() if r.key == key]:
        cfg, name = run.config, run.config.name
        assert (cfg.dataset, cfg.seed, cfg.epochs) == (spec["dataset"], spec["seed"], 300), name
        assert (cfg.batch_size, cfg.test_batch_size, cfg.drop_last) == (64, 400, True), name
        assert (cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum) == ("adam", 1e-3, 0, 0)
        assert (cfg.schedule, cfg.eta_min, cfg.flood_level, cfg.entropy_weight) == (
            "cosine", 1e-6, 0.0, 0.0)
        ip = cfg.init_point
        assert (ip.lr, ip.freq, ip.scheduler_divisor, ip.eta_min) == (
            spec["lr_init"], spec["freq"], 1, 1e-6), name
        assert chapter.iterations_per_epoch(cfg) == spec["per_epoch"]
        assert chapter.iterations_per_epoch(cfg) * cfg.epochs == spec["per_epoch"] * 300
        model = models.build(cfg.model, **cfg.model_kwargs)
        total = models.count_parameters(model.main_parameters())
        x_tilde = model.stem(x)
        assert x_tilde.shape[1:] == (spec["channels"], 16, 16), name  # feature map C x 16 x 16
        if isinstance(model, models.ODEClassifier):
            assert (model.method, model.rtol, model.atol) == ("dopri5", 1e-3, 1e-3), name
        if isinstance(model, models.HomoODE):
            assert (model.lr_init, model.freq) == (spec["lr_init"], spec["freq"])
            assert total == spec["params"], name
            homoode_total = total
            if model.use_init_layer:
                assert models.count_parameters(model.init_parameters()) == spec["init"]
            else:
                assert model.init_parameters() == []
            script_mode = name in (f"homoode-{key}", f"homoode-noinit-{key}")
            assert (model.grad_mode == spec["grad_mode"]) == script_mode, name
        if isinstance(model, models.DEQ):
            assert (model.solver, model.max_iter, model.backward_max_iter) == ("broyden", 30, 30)
    for run in [r for r in paper_runs() if r.key == key]:
        model = models.build(run.config.model, **run.config.model_kwargs)
        ratio = models.count_parameters(model.main_parameters()) / homoode_total
        assert abs(ratio - 1) < 0.05, run.config.name


def test_t4_parameter_counts_equal_the_released_classes():
    rows = chapter.parameter_counts()
    assert len(rows) == 12
    for row in rows:
        if row["build"].startswith("homoode-"):
            key = row["build"].removeprefix("homoode-")
            assert row["total"] == SCRIPTS[key]["params"] and row["init"] == SCRIPTS[key]["init"]
            for part in ("stem", "core", "head", "total", "init"):
                assert int(row[f"{part} (released code)"]) == row[part]
        else:
            assert row["init"] == 0 and row["total (released code)"] == "–"
    cifar10 = next(r for r in rows if r["build"] == "homoode-cifar10")
    assert (cifar10["stem"], cifar10["core"], cifar10["head"]) == (38_976, 74_112, 19_850)


def test_t5_hyperparameter_table_matches_the_released_scripts():
    rows = {r["experiment"]: r for r in chapter.hyperparameter_table("paper")}
    assert list(rows) == ["homoode-cifar10", "homoode-cifar100", "homoode-tiny"]
    assert [r["schedule T_max"] for r in rows.values()] == [234_300, 234_300, 468_600]
    assert [r["init steps"] for r in rows.values()] == [11_715, 46_860, 23_430]
    # the released cosine init schedule: the init LR ends at about 0.99 lr_init (freq 20) and
    # 0.90 lr_init (freq 5)
    ends = [r["init lr at end / lr_init"] for r in rows.values()]
    assert ends == pytest.approx([0.99, 0.90, 0.99], abs=0.006)
    assert [r["flip p"] for r in rows.values()] == [0.2, 0.5, 0.5]
    assert "0.485" in rows["homoode-cifar10"]["normalisation"]  # ImageNet statistics on CIFAR
    assert "0.4914" in rows["homoode-tiny"]["normalisation"]  # CIFAR statistics on Tiny
    assert [r["GN groups"] for r in rows.values()] == [32, 32, 8]
    assert [r["dropout"] for r in rows.values()] == [0.1, 0.15, 0.15]
    assert [r["crop"] for r in rows.values()] == ["32 pad 4", "32 pad 4", "64 pad 8"]
    assert {r["solver"] for r in rows.values()} == {"dopri5 rtol=atol=0.001"}
    smoke = chapter.hyperparameter_table("smoke")
    assert smoke[0]["epochs"] == chapter.CHAPTER_SMOKE_EPOCHS
    assert smoke[0]["schedule T_max"] == 22 * chapter.CHAPTER_SMOKE_EPOCHS  # 1437 // 64 = 22


# --------------------------------------------------------------------------------------------------
# the smoke profile and the registry
# --------------------------------------------------------------------------------------------------


def test_smoke_chapter_runs_are_tagged_shortened_and_otherwise_registered():
    runs = chapter.comparison_runs("smoke", tag="ch02")
    assert [r.label for r in runs] == [label for _, _, label in chapter.COMPARISON_ROWS]
    for run in runs:
        registered = experiments.get(run.config.name.removesuffix("-ch02"), "smoke")
        assert run.config.name.endswith("-ch02") and run.config.epochs == 3
        extra = chapter.SMOKE_DEQ_THRESHOLDS if run.config.model == "deq-digits" else {}
        assert run.config.model_kwargs == {**registered.model_kwargs, **extra}
        assert run.config.replace(name=registered.name, epochs=registered.epochs,
                                  model_kwargs=registered.model_kwargs,
                                  description=registered.description) == registered
    modes = chapter.grad_mode_runs("smoke", tag="ch04")
    assert [r.config.model_kwargs["grad_mode"] for r in modes] == list(chapter.GRAD_MODES)
    with pytest.raises(ValueError, match="tag"):
        chapter.chapter_config("homoode-digits", "smoke")


def test_smoke_ablation_pairs_differ_only_in_the_start():
    ablation = chapter.ablation_runs("smoke", tag="ch03")
    assert [r.label for r in ablation] == list(chapter.ABLATION_ROWS.values())
    assert [r.config.name for r in ablation] == ["homoode-digits-abl-s0-ch03",
                                                 "homoode-noinit-digits-abl-s0-ch03"]
    with_init, without = (r.config for r in ablation)
    assert with_init.epochs == chapter.ABLATION_SMOKE_EPOCHS and with_init.seed == 0
    assert with_init.model_kwargs["tol"] == chapter.ABLATION_SMOKE_TOL == 1e-5
    assert with_init.init_point.freq == with_init.model_kwargs["freq"] == 1
    assert with_init.init_point.lr == with_init.model_kwargs["lr_init"]
    # identical but for the start (and the run name)
    assert without.replace(name=with_init.name, model_kwargs={
        **without.model_kwargs, "use_init_layer": True}) == with_init
    # the rest is the registered smoke configuration
    registered = experiments.get("homoode-digits", "smoke")
    assert with_init.replace(
        name=registered.name, epochs=registered.epochs, model_kwargs=registered.model_kwargs,
        init_point=registered.init_point, description=registered.description) == registered
    seeded = chapter.ablation_runs("smoke", tag="t", seeds=[3, 4])
    assert [(r.config.seed, r.config.model_kwargs["use_init_layer"]) for r in seeded] == [
        (3, True), (4, True), (3, False), (4, False)]
    assert len({r.config.name for r in seeded}) == 4
    with pytest.raises(ValueError, match="seeds"):
        chapter.ablation_runs("paper", seeds=[1])
    with pytest.raises(ValueError, match="tag"):
        chapter.ablation_runs("smoke")


def _scheduled_init_rates(config) -> list[float]:
    """The init learning rates as torch's SGD + CosineAnnealingLR apply them in deqode.train."""
    lr, freq = config.init_point.lr, config.init_point.freq
    total = chapter.iterations_per_epoch(config) * config.epochs
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, max(total // config.init_point.scheduler_divisor, 1),
        eta_min=config.init_point.eta_min)
    rates = []
    for iteration in range(total):
        if iteration % freq == 0:
            rates.append(optimizer.param_groups[0]["lr"])
            optimizer.step()
            schedule.step()
    return rates


def test_init_reach_known_answers():
    smoke_released = chapter.chapter_config("homoode-digits", "smoke", tag="t", epochs=6)
    ablation = chapter.ablation_runs("smoke", tag="t")[0].config
    for config in (smoke_released, ablation):
        assert chapter.init_learning_rates(config) == pytest.approx(
            _scheduled_init_rates(config), rel=1e-9, abs=1e-12)
    # released smoke: 132 iterations, a step at 0, 5, ..., 130 -> 27 steps at about 0.02, C = 8
    rates = chapter.init_learning_rates(smoke_released)
    assert len(rates) == 27 and rates[0] == pytest.approx(0.02)
    assert chapter.init_reach(smoke_released) == pytest.approx(sum(rates) / 8)
    # CIFAR-10 script: 300 x 781 iterations, 11,715 steps, the rate hardly decays; C = 64
    cifar10 = chapter.paper_config("homoode", "cifar10")
    reach = chapter.init_reach(cifar10)
    assert 0.99 * 11_715 * 0.02 / 64 < reach < 11_715 * 0.02 / 64
    # freq 1 with T_max = n steps: sum_k (1 + cos(pi k / n)) / 2 = (n + 1) / 2, so
    # lr_init = eta + (reach C - n eta) / ((n + 1) / 2) with n = 22 x epochs iterations, C = 8
    eta, n = 1e-6, 22 * chapter.ABLATION_SMOKE_EPOCHS
    assert ablation.init_point.lr == pytest.approx(
        eta + (reach * 8 - n * eta) / ((n + 1) / 2), rel=1e-9)
    assert chapter.init_reach(ablation) == pytest.approx(reach, rel=1e-9)
    matched = dataclasses.replace(smoke_released.init_point,
                                  lr=chapter.matched_init_lr(smoke_released, 1.0))
    assert chapter.init_reach(smoke_released.replace(init_point=matched)) == pytest.approx(1.0)
    rows = {r["run"]: r for r in chapter.init_reach_table()}
    assert rows["ablation"]["reach"] == pytest.approx(reach, rel=1e-9)
    # the table's smoke rows have the ablation's budget: a step at 0, 5, ... below n
    assert rows["released lr_init/freq"]["init steps"] == len(range(0, n, 5))
    assert rows["ablation"]["init steps"] == n
    assert [rows[f"{t} script (released)"]["init steps"] for t in (
        "CIFAR-10", "CIFAR-100", "Tiny-ImageNet")] == [11_715, 46_860, 23_430]


def test_paper_epoch_override_renames_the_run():
    cfg = chapter.chapter_config("homoode-cifar10", "paper", epochs=10)
    assert (cfg.name, cfg.epochs) == ("homoode-cifar10-e10", 10)


def test_chapter_keys_reject_unknown_datasets():
    assert chapter.chapter_keys("paper", "tiny") == ["tiny"]
    with pytest.raises(UnknownChoiceError, match="cifar10"):
        chapter.chapter_keys("paper", ["cifar10", "imagenet"])
    with pytest.raises(ValueError, match="digits only"):
        chapter.chapter_keys("smoke", "cifar10")
    with pytest.raises(UnknownChoiceError, match="frozen_adjoint"):
        chapter.grad_mode_experiment("cifar10", "phantom")


def test_gradient_mode_experiments_are_registered_in_both_profiles():
    assert chapter.grad_mode_experiment("cifar100", "frozen_adjoint") == "homoode-cifar100"
    assert chapter.grad_mode_experiment("cifar100", "backprop") == "homoode-backprop-cifar100"
    assert chapter.grad_mode_experiment("digits", "frozen_adjoint") == (
        "homoode-frozen-adjoint-digits")
    for profile, key in (("smoke", "digits"), ("paper", "cifar10"), ("paper", "tiny")):
        for mode in chapter.GRAD_MODES:
            cfg = experiments.get(chapter.grad_mode_experiment(key, mode), profile)
            assert cfg.model_kwargs["grad_mode"] == mode


# --------------------------------------------------------------------------------------------------
# reference cells and tables
# --------------------------------------------------------------------------------------------------


def test_reference_holds_every_cell_the_tables_show():
    rows = chapter.reference_rows()
    assert {r["paper"] for r in rows} == {"homoode"}
    for table, models_, columns in (
        ("T1", ["Neural ODE", "ANODE", "DEQ", "HomoODE"], 6),
        ("T2", ["Neural ODE", "ANODE", "DEQ", "HomoODE"], 12),
        ("T3", list(chapter.ABLATION_ROWS.values()), 3),
    ):
        mine = [r for r in rows if r["table"] == table]
        assert sorted({r["row"] for r in mine}) == sorted(models_)
        assert len(mine) == len(models_) * columns
        for r in mine:  # the paper's cells are not transcribed: never a guessed value
            assert r["value"] == "not transcribed"
            assert "not transcribed in this companion" in r["source"]
            assert r["source"].startswith("arXiv 2310.09583v2")
    released = [r for r in rows if r["table"] == "T4"]
    assert {r["source"] for r in released} == {chapter.RELEASED_SOURCE}
    assert chapter.reference_cell("T4", "homoode-tiny", "total") == "617288"
    assert chapter.reference_cell("T1", "HomoODE", "MNIST accuracy") == "not transcribed"


def test_side_by_side_puts_paper_cells_next_to_ours():
    ours = {"HomoODE": {"digits best acc % (smoke)": "90.0"},
            "HomoODE without shared init": {"digits best acc % (smoke)": "89.0"}}
    table = chapter.side_by_side("T1", ["HomoODE", "HomoODE without shared init"],
                                 ["CIFAR-10 accuracy"], ours)
    assert table.loc["HomoODE", "CIFAR-10 accuracy (paper)"] == "not transcribed"
    assert table.loc["HomoODE without shared init", "CIFAR-10 accuracy (paper)"] == "–"
    assert list(table["digits best acc % (smoke)"]) == ["90.0", "89.0"]
    assert chapter.released_parameters("DEQ") == "–"
    assert chapter.released_parameters("HomoODE without shared init") == (
        "132,938 / 565,988 / 617,288")


def fake_result(state: str = "completed") -> SimpleNamespace:
    history = [
        {"epoch": e, "iterations": 10 * e, "test_acc": acc, "train_loss": 1.0 / e,
         "nfe_forward": nfe, "nfe_backward": 0.0, "test_nfe_forward": 20.0,
         "saved_tensor_peak_mb": mb, "cuda_peak_mb": None, "epoch_time_s": 2.0,
         "time_forward_per_batch_s": 0.1, "time_backward_per_batch_s": 0.2, "init_loss": 0.5 / e}
        for e, acc, nfe, mb in ((1, 0.5, 20.0, 4.0), (2, 0.8, 26.0, 5.0), (3, 0.7, 32.0, 4.5))
    ]
    summary = {"epochs_completed": 3, "iterations": 30, "iterations_per_epoch": 10,
               "num_parameters": 2594, "num_init_parameters": 24, "best_test_acc": 0.8,
               "best_epoch": 2, "last_test_acc": 0.7}
    return SimpleNamespace(history=history, summary=summary, state=state, reason="",
                           out_dir="results/smoke/x")


def test_run_record_summarises_a_fit_result():
    run = chapter.comparison_runs("smoke", tag="t")[3]
    record = chapter.run_record(run, fake_result())
    assert (record["label"], record["gradient"], record["params"]) == ("HomoODE", "backprop", 2594)
    assert (record["best_acc"], record["best_epoch"], record["last_acc"]) == (0.8, 2, 0.7)
    assert record["nfe_forward"] == pytest.approx(26.0) and record["saved_mb"] == 5.0
    assert record["batch_s"] == pytest.approx(0.3) and record["cuda_mb"] is None
    cells = chapter.ours_by_label([record], "smoke")["HomoODE"]
    assert cells["digits best acc % (smoke)"] == "80.0"
    assert cells["digits last acc % (smoke)"] == "70.0"
    assert cells["digits NFE fwd/bwd (smoke)"] == "26.0 / 0.0"
    assert cells["digits CUDA peak MB (smoke)"] == "–"
    failed = chapter.run_record(run, fake_result("failed"))
    assert chapter.ours_by_label([failed], "smoke")["HomoODE"][
        "digits best acc % (smoke)"].endswith("(failed)")
    deq = chapter.run_record(chapter.comparison_runs("smoke", tag="t")[2], fake_result())
    assert deq["gradient"] == "implicit (ift)"
    table = chapter.comparison_table([record, deq])
    assert table.loc[("digits", "HomoODE", 0), "best acc %"] == "80.0"
    for plot in (chapter.plot_curves, chapter.plot_nfe_vs_iteration):
        fig = plot([record, deq], "t")
        assert len(fig.axes) == 2
        matplotlib.pyplot.close(fig)


# --------------------------------------------------------------------------------------------------
# measurements on the smoke model
# --------------------------------------------------------------------------------------------------


def digits_batch(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return chapter.eval_batch("digits", "smoke", size=n)


def test_fixed_starts_and_the_start_distance():
    reference = torch.randn(2, 4, 3, 3)
    assert torch.equal(chapter.FixedStart("alternating")(reference), AlternatingInit()(reference))
    assert torch.equal(chapter.FixedStart("zeros")(reference), torch.zeros(2, 4, 3, 3))
    constant = chapter.FixedStart(torch.tensor([1.0, 2.0, 3.0, 4.0]))(reference)
    assert torch.equal(constant[1, :, 2, 0], torch.tensor([1.0, 2.0, 3.0, 4.0]))
    with pytest.raises(ValueError, match="channels"):
        chapter.FixedStart(torch.ones(3))(reference)

    torch.manual_seed(0)
    model = models.build("homoode-digits").eval()
    own = model.init_layer
    x, y = digits_batch(16)
    zeros = chapter.evaluate_start(model, x, y, tol=1e-3, start="zeros")
    assert zeros["start_distance"] == pytest.approx(1.0)  # ||z(1) - 0|| / ||z(1)||
    mean = chapter.endpoint_mean(model, x)  # z(1) from the model's own start, not from 0
    with chapter.start_from(model, "zeros"):
        from_zero = chapter.endpoint_mean(model, x)
    assert zeros["mean_gap"] == pytest.approx(float(from_zero.norm()), rel=1e-5)
    at_mean = chapter.evaluate_start(model, x, y, tol=1e-3, start=mean)
    with chapter.start_from(model, mean):
        from_mean = chapter.endpoint_mean(model, x)
    assert at_mean["mean_gap"] == pytest.approx(float((mean - from_mean).norm()), rel=1e-5)
    with chapter.start_from(model, "zeros"), torch.no_grad():
        z1 = model.solve(model.stem(x))
    assert zeros["init_loss"] == pytest.approx(
        float(torch.nn.functional.smooth_l1_loss(torch.zeros_like(z1), z1)), rel=1e-5)
    assert model.init_layer is own and (model.rtol, model.atol) == (1e-3, 1e-3)  # restored
    rows = chapter.start_sweep({"m": model}, x, y, tols=[1e-3, 1e-5],
                               starts={"own": ("m", None), "mean": (
                                   "m", chapter.endpoint_mean(model, x))})
    assert [(r["label"], r["tol"]) for r in rows] == [
        ("own", 1e-3), ("own", 1e-5), ("mean", 1e-3), ("mean", 1e-5)]
    assert rows[0]["nfe"] <= rows[1]["nfe"] and 0 <= rows[0]["acc"] <= 1
    spread = chapter.init_point_spread(model, model.stem(x))
    assert spread["across_samples"] == 0.0 and spread["across_positions"] < 1e-6


def test_gradient_gaps_known_structure():
    """Head exact in every mode; frozen adjoint biased; smooth exact adjoint = backprop."""
    torch.manual_seed(0)
    model = models.build("homoode-digits").eval()
    x, y = digits_batch(8)
    rows = chapter.gradient_gaps(model, x, y, tol=1e-7, activation="softplus")
    gap = {(r["mode"], r["group"]): r for r in rows}
    assert gap["backprop", "all"]["rel_diff"] == 0.0
    for mode in ("adjoint", "frozen_adjoint"):
        assert gap[mode, "head"]["rel_diff"] < 1e-9
        assert gap[mode, "all"]["nfe_backward"] > 0
    assert gap["backprop", "all"]["nfe_backward"] == 0
    assert gap["adjoint", "field"]["rel_diff"] < 1e-4
    assert gap["frozen_adjoint", "field"]["rel_diff"] > 0.01
    for r in rows:
        assert r["tensor_min"] <= r["tensor_max"] and -1 <= r["cosine"] <= 1 + 1e-12
    relu = chapter.adjoint_gap_vs_tol(model, x, y, tols=[1e-5])
    assert relu[0]["activation"] == "relu" and relu[0]["failed"] == ""
    assert 0 < relu[0]["rel_diff"] < 0.1


def test_memory_grows_with_nfe_for_backprop_and_stays_flat_for_the_adjoints():
    torch.manual_seed(0)
    model = models.build("homoode-digits")
    x, y = digits_batch(8)
    rng = torch.get_rng_state()
    rows = chapter.memory_vs_nfe(model, x, y, tols=[1e-2, 1e-6])
    assert torch.equal(torch.get_rng_state(), rng)  # the caller's RNG is left alone
    by = {(r["mode"], r["tol"]): r for r in rows}
    loose, tight = by["backprop", 1e-2], by["backprop", 1e-6]
    assert tight["nfe_forward"] > loose["nfe_forward"] and tight["saved_mb"] > loose["saved_mb"]
    for mode in ("adjoint", "frozen_adjoint"):
        assert by[mode, 1e-6]["nfe_forward"] > by[mode, 1e-2]["nfe_forward"]
        assert by[mode, 1e-6]["saved_mb"] == by[mode, 1e-2]["saved_mb"]
        assert by[mode, 1e-6]["saved_mb"] < loose["saved_mb"]
        assert by[mode, 1e-6]["nfe_backward"] > 0
    assert all(r["cuda_mb"] is None for r in rows)
    fig = chapter.plot_memory_vs_nfe(rows, "t")
    matplotlib.pyplot.close(fig)


def test_deq_residual_traces_record_every_iterate_and_the_failures():
    torch.manual_seed(0)
    model = models.build("deq-digits")
    x, _ = digits_batch(6)
    traces = chapter.deq_residual_traces(model, x, solvers=("broyden", "picard"), max_iter=5,
                                         tol=1e-12)
    for trace in traces.values():
        assert trace["nfe"] == len(trace["residuals"]) == 6  # initial iterate + 5 updates
        assert len(trace["final"]) == 6 and trace["failed"] == 1.0  # nobody reaches 1e-12
        assert not trace["converged"] and all(math.isfinite(v) for v in trace["residuals"])
    loose = chapter.deq_residual_traces(model, x, solvers=("broyden",), max_iter=5, tol=10.0)
    assert loose["broyden"]["failed"] == 0.0 and loose["broyden"]["converged"]
    fig = chapter.plot_deq_residuals(traces, 20, 1e-3, "t")
    matplotlib.pyplot.close(fig)


def test_a_short_smoke_run_reloads_with_its_learned_start(tmp_path):
    run = chapter.chapter_config("homoode-digits", "smoke", tag="test", epochs=1)
    run = chapter.ChapterRun("HomoODE", "digits", run)
    (record,) = chapter.train_runs([run], "smoke", device="cpu", results_dir=str(tmp_path))
    assert record["state"] == "completed" and record["iterations"] == 22
    assert record["init_params"] == 24 and record["nfe_backward"] == 0 and record["seed"] == 0
    model = chapter.load_trained(record, tol=1e-4)
    assert not model.training and (model.rtol, model.atol) == (1e-4, 1e-4)
    drift = chapter.init_point_drift(record)
    assert len(drift["before"]) == len(drift["after"]) == 8
    # five init steps of SGD at lr 0.02 move it a little: at most the reach per parameter,
    # for beta_c and gamma_c together (no sign flip of the normalised conv weights here)
    reach = chapter.init_reach(run.config)
    assert 0 < drift["max_change"] <= 2 * reach < 0.05
    x, y = digits_batch(32)
    assert chapter.evaluate_start(model, x, y, tol=1e-3)["start"] == "own"


def test_ablation_verdicts_pair_by_key_and_seed_and_apply_the_thresholds():
    def rec(init, seed, nfe, best, last):
        return {"experiment": f"{'homoode' if init else 'homoode-noinit'}-s{seed}", "key": "digits",
                "seed": seed, "init_params": 24 if init else 0, "nfe_forward": nfe,
                "best_acc": best, "last_acc": last}

    records = [rec(True, 0, 27.0, 0.90, 0.90), rec(False, 0, 30.0, 0.91, 0.91),
               rec(True, 1, 28.0, 0.90, 0.87), rec(False, 1, 30.0, 0.90, 0.90),
               rec(False, 2, 30.0, 0.90, 0.90), rec(True, 2, 31.0, 0.95, 0.95)]
    verdicts = chapter.ablation_verdicts(records)
    assert [(v["with"]["seed"], v["without"]["seed"]) for v in verdicts] == [(0, 0), (1, 1), (2, 2)]
    assert verdicts[0]["nfe_ratio"] == pytest.approx(0.9)
    # seed 0: exactly 10 % fewer, 1 point less accurate; seed 1: 3 points below on the last epoch
    assert [(v["lower"], v["equal"]) for v in verdicts] == [(True, True), (False, False),
                                                           (False, True)]
    assert verdicts[1]["acc_gaps"] == pytest.approx((0.0, -0.03))
    assert chapter.ablation_verdicts(records, acc_margin=0.05)[1]["equal"]
    with pytest.raises(ValueError, match="expected one run without the shared start"):
        chapter.ablation_verdicts(records[:1])


# ---- the cpu profile and the claims' rules ------------------------------------------------------


def test_cpu_runs_use_mnist8k_three_seeds_and_matched_digits_builds():
    runs = chapter.comparison_runs("cpu", tag="ch02")
    assert {r.label for r in runs} == set(chapter.CPU_COMPARISON_ROWS)
    for label in chapter.CPU_COMPARISON_ROWS:
        mine = [r for r in runs if r.label == label]
        assert sorted(r.config.seed for r in mine) == list(chapter.CPU_SEEDS)
        assert len({r.config.name for r in mine}) == len(mine)  # one results folder per seed
    counts = {}
    for r in runs:
        assert r.config.dataset == "mnist-8k" and r.config.epochs == chapter.CPU_EPOCHS
        assert r.config.model_kwargs["first_stride"] == chapter.CPU_FIRST_STRIDE
        net = models.build(r.config.model, **r.config.model_kwargs)
        assert net.stem(torch.zeros(1, 1, 28, 28)).shape[-2:] == (7, 7)
        counts[r.label] = models.count_parameters(net.main_parameters())
    assert all(abs(c / counts["HomoODE"] - 1) < 0.05 for c in counts.values())
    pairs = chapter.ablation_runs("cpu", tag="ch03")
    assert sorted(r.config.seed for r in pairs) == sorted(2 * list(chapter.CPU_SEEDS))
    assert chapter.chapter_keys("cpu") == ["mnist8k"]
    with pytest.raises(ValueError):
        chapter.chapter_keys("cpu", "digits")


def _record(label, seed, accs, state="completed"):
    history = [{"epoch": i + 1, "test_acc": a} for i, a in enumerate(accs)]
    return {"label": label, "seed": seed, "state": state, "last_acc": accs[-1],
            "best_acc": max(accs), "history": history}


def _rows(final: dict[str, float], seeds=(0, 1, 2), spread=0.002):
    return [_record(label, s, [acc - 0.2, acc - 0.005, acc + spread * (s - 1)])
            for label, acc in final.items() for s in seeds]


def test_plateau_rule():
    assert chapter.plateau([{"test_acc": a} for a in (0.5, 0.80, 0.81)])["flat"]
    check = chapter.plateau([{"test_acc": a} for a in (0.5, 0.70, 0.80)])
    assert not check["flat"] and check["change"] == pytest.approx(0.10)
    assert not chapter.plateau([{"test_acc": 0.9}])["flat"]


def test_accuracy_verdict_reaches_every_verdict():
    from deqode.book import claims

    base = ("Neural ODE", "ANODE", "DEQ")

    def verdict(final, **kw):
        return chapter.accuracy_verdict(_rows(final, **kw), subject="HomoODE", baselines=base,
                                        chance=0.1)

    assert verdict({"HomoODE": 0.9, "Neural ODE": 0.8, "ANODE": 0.8, "DEQ": 0.8})["verdict"] \
        == claims.SUPPORTED
    assert verdict({"HomoODE": 0.7, "Neural ODE": 0.8, "ANODE": 0.7, "DEQ": 0.7})["verdict"] \
        == claims.NOT_SUPPORTED
    assert verdict({"HomoODE": 0.8, "Neural ODE": 0.7, "ANODE": 0.9, "DEQ": 0.8})["verdict"] \
        == claims.MIXED
    near_chance = verdict({"HomoODE": 0.9, "Neural ODE": 0.12, "ANODE": 0.8, "DEQ": 0.8})
    assert near_chance["verdict"] == claims.NOT_DECIDABLE and "chance" in near_chance["reason"]
    one_seed = verdict({"HomoODE": 0.9, "Neural ODE": 0.8, "ANODE": 0.8, "DEQ": 0.8}, seeds=(0,))
    assert one_seed["verdict"] == claims.NOT_DECIDABLE and "1 seed" in one_seed["reason"]
    rising = _rows({"HomoODE": 0.9, "Neural ODE": 0.8, "ANODE": 0.8, "DEQ": 0.8})
    rising[0] = _record("HomoODE", 0, [0.5, 0.7, 0.9])
    out = chapter.accuracy_verdict(rising, subject="HomoODE", baselines=base, chance=0.1)
    assert out["verdict"] == claims.NOT_DECIDABLE and "moved" in out["reason"]
    assert f"{100 * chapter.PLATEAU_SPREAD:.0f} points" in chapter.accuracy_rule_text("HomoODE")


def test_anode_verdict_reaches_every_verdict():
    from deqode.book import claims

    def verdict(final, frozen=1e-12, drifting=0.5, **kw):
        return chapter.anode_verdict(_rows(final, **kw), h9_frozen=frozen, h9_drifting=drifting,
                                     chance=0.1)["verdict"]

    good = {"Neural ODE": 0.7, "ANODE": 0.8, "HomoODE": 0.8}
    assert verdict(good) == claims.SUPPORTED
    assert verdict(good, frozen=1e-3) == claims.NOT_SUPPORTED  # H9 fails
    assert verdict({"Neural ODE": 0.8, "ANODE": 0.7, "HomoODE": 0.9}) == claims.NOT_SUPPORTED
    assert verdict({"Neural ODE": 0.8, "ANODE": 0.8, "HomoODE": 0.9}) == claims.MIXED
    assert verdict(good, seeds=(0, 1)) == claims.NOT_DECIDABLE


def test_memory_verdict_reaches_every_verdict():
    from deqode.book import claims

    lower = chapter.memory_verdict({"adjoint": 0.5, "frozen_adjoint": 0.5}, 1.0)
    assert lower["verdict"] == claims.SUPPORTED
    mixed = chapter.memory_verdict({"backprop": 5.0, "adjoint": 0.5}, 1.0)
    assert mixed["verdict"] == claims.MIXED and mixed["outcome"]["backprop"] == "higher"
    none = chapter.memory_verdict({"backprop": 5.0, "adjoint": 0.95}, 1.0)
    assert none["verdict"] == claims.NOT_SUPPORTED and none["outcome"]["adjoint"] == "equal"
    assert f"{1 - chapter.MEMORY_MARGIN:.2f}" in chapter.memory_rule_text()


def test_init_point_verdict_reaches_every_verdict():
    from deqode.book import claims

    def pair(lower, equal):
        return {"lower": lower, "equal": equal}

    assert chapter.init_point_verdict([pair(True, True)] * 3)["verdict"] == claims.SUPPORTED
    assert chapter.init_point_verdict([pair(False, True)] * 3)["verdict"] == claims.NOT_SUPPORTED
    assert chapter.init_point_verdict([pair(True, True), pair(True, False), pair(False, True)]
                                      )["verdict"] == claims.MIXED
    few = chapter.init_point_verdict([pair(True, True)] * 2)
    assert few["verdict"] == claims.NOT_DECIDABLE and "2 seed pair" in few["reason"]
    stopped = {"lower": True, "equal": True, "with": {"experiment": "w", "state": "stopped"},
               "without": {"experiment": "wo", "state": "completed"}}
    out = chapter.init_point_verdict([stopped] * 3)
    assert out["verdict"] == claims.NOT_DECIDABLE and "w" in out["reason"]
