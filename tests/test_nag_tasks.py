"""The Nesterov chapter's tasks [companion]: protocol, models, paper configs, smoke runs."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest
import torch

import deqode  # noqa: F401  (registers method="nesterov")
from deqode import chapters as experiments
from deqode.chapters import nag as tasks
from deqode.models.cnf import CNF
from deqode.models.latent_ode import LatentODE, kl_to_standard_normal
from deqode.models.layers import count_parameters
from deqode.models.odenet import ODENet, ResNet
from deqode.results import NOT_TRANSCRIBED, load_reference, reference_value

DT = torch.float64


#: These models are tiny: one intra-op thread is faster than two on a shared CPU.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- the equal-NFE protocol --------------------------------------------------------------------


def test_steps_for_budget():
    assert [tasks.steps_for_budget(m, 12) for m in ("nesterov", "euler", "midpoint", "heun3",
                                                    "rk4", "explicit_adams")] == [12, 12, 6, 4,
                                                                                  3, 6]
    assert tasks.steps_for_budget("rk4", 6) is None  # 1.5 steps: skipped at K = 6
    assert tasks.steps_for_budget("explicit_adams", 6) is None
    with pytest.raises(ValueError, match="valid choices"):
        tasks.steps_for_budget("dopri5", 12)


@pytest.mark.parametrize("budget", [6, 12, 24])
def test_every_solver_spends_exactly_the_budget(budget):
    """Counted through a real solve: K evaluations per forward solve for every solver."""
    field = torch.nn.Linear(3, 3).double()
    calls = []

    def f(t, x):
        calls.append(1)
        return field(x)

    x0 = torch.ones(2, 3, dtype=DT)
    for choice in tasks.solver_choices(tasks.PAPER_SOLVERS, budget):
        calls.clear()
        from torchdiffeq import odeint

        odeint(f, x0, torch.tensor([0.0, 1.0], dtype=DT), method=choice.method,
               options=choice.options(1.0))
        assert len(calls) == budget, choice


def test_nesterov_choice_is_the_consistent_default():
    (nag_choice,) = [c for c in tasks.solver_choices(("nesterov",), 12)]
    assert nag_choice.kwargs == {"beta": 0.5, "scale": True, "start": "euler"}
    assert tasks.unscaled_choice(12).kwargs["scale"] is False


def test_value_at_budget_and_equal_time_table():
    history = [{"seconds": 1.0, "err": 0.5}, {"seconds": 2.0, "err": 0.4},
               {"seconds": 3.0, "err": 0.3}]
    assert tasks.value_at_budget(history, "err", 2.5) == 0.4
    assert tasks.value_at_budget(history, "err", 0.5) is None
    records = [{"label": "a", "history": history},
               {"label": "b", "history": [{"seconds": 2.0, "err": 0.2}]}]
    budget, rows = tasks.equal_time_table(records, ["err"])
    assert budget == 2.0 and rows == [{"label": "a", "err": 0.4}, {"label": "b", "err": 0.2}]
    assert tasks.median_step_seconds([9.0, 9.0, 1.0, 2.0, 3.0]) == 2.0


def test_aggregate_over_seeds():
    records = [{"label": "a", "budget": 12, "err": 0.1}, {"label": "a", "budget": 12, "err": 0.3},
               {"label": "b", "budget": 12, "err": 0.2}]
    a, b = tasks.aggregate(records, ["err"])
    assert (a["label"], a["seeds"], a["err"]) == ("a", 2, pytest.approx(0.2))
    assert a["err_std"] == pytest.approx(math.sqrt(0.02)) and b["err_std"] is None


# ---- the paper profile: every configuration builds -------------------------------------------


def test_paper_classification_configs_build():
    setup = tasks.classification_setup("paper")
    assert (setup.dataset, setup.epochs, setup.batch_size, setup.test_batch_size) == (
        "mnist", 160, 128, 1000)
    assert (setup.optimizer, setup.lr, setup.momentum) == ("sgd", 0.1, 0.9)
    assert setup.lr_decay_epochs == (60, 100, 140) and setup.budgets == (6, 12, 24, 48)
    assert setup.seeds == (0, 1, 2) and setup.resnet_blocks == 6
    runs = tasks.classification_runs("paper")
    names = [r.config.name for r in runs]
    assert len(names) == len(set(names))
    counts = {}
    for run in runs:
        cfg = run.config
        assert cfg.dataset == "mnist" and cfg.dataset_kwargs == {"recipe": "nag"}
        assert cfg.epochs == 160 and cfg.batch_size == 128
        model = cfg.model(**cfg.model_kwargs)
        counts[run.kind] = count_parameters(model.parameters())
        if run.solver is not None:
            assert model.method == run.solver.method and model.n_steps == run.solver.n_steps
    # Chen et al.'s ODE-Net (≈0.22M) and ResNet-6 (≈0.6M), counted by hand in odenet.py
    assert counts == {"odenet": 208_266, "resnet": 576_778}
    labels = {(r.label, r.solver.budget if r.solver else None) for r in runs}
    assert ("explicit_adams", 6) not in labels and ("explicit_adams", 12) in labels
    assert ("rk4", 6) not in labels and ("resnet-6", None) in labels


def test_paper_odenet_forward_on_mnist_shape():
    setup = tasks.classification_setup("paper")
    (choice,) = tasks.solver_choices(("nesterov",), 12)
    model = ODENet(**tasks.odenet_kwargs(setup, choice))
    logits = model(torch.rand(2, 1, 28, 28))
    assert logits.shape == (2, 10) and model.nfe_forward == 12
    resnet = ResNet(n_blocks=6)
    assert resnet(torch.rand(2, 1, 28, 28)).shape == (2, 10) and resnet.nfe_forward == 6


def test_paper_cnf_and_latent_configs_build():
    cnf = tasks.cnf_setup("paper")
    assert (cnf.dataset, cnf.hidden, cnf.width, cnf.batch_size, cnf.iterations, cnf.lr) == (
        "circles", 32, 64, 512, 1000, 1e-3)
    model = tasks.build_cnf(cnf)
    hidden, width = 32, 64
    expected = (1 + 1) * hidden + (hidden + 1) * hidden + (hidden + 1) * (3 * width * 2 + width)
    assert count_parameters(model.parameters()) == expected == 15_904
    assert (model.t0, model.t1, model.base_variance) == (0.0, 10.0, 0.1)
    latent = tasks.latent_setup("paper")
    assert (latent.n_spirals, latent.n_total, latent.n_sample, latent.iterations, latent.lr) == (
        1000, 1000, 100, 2000, 0.01)
    model = tasks.build_latent_ode(latent)
    rnn = (2 + 25) * 25 + 25 + 25 * 8 + 8
    ode = 4 * 20 + 20 + 20 * 20 + 20 + 20 * 4 + 4
    dec = 4 * 20 + 20 + 20 * 2 + 2
    assert count_parameters(model.parameters()) == rnn + ode + dec == 1654
    assert set(tasks.paper_setups()) == {"classification", "cnf", "latent_ode"}
    assert {row["task"] for row in tasks.setup_table("paper")} == {"classification", "cnf",
                                                                   "latent_ode"}


def test_experiments_are_registered_and_mnist_is_needed_in_paper():
    assert experiments.get("nag-cls-nesterov-K12", "smoke").dataset == "digits"
    assert experiments.get("nag-cls-rk4-K48-seed2", "paper").dataset == "mnist"
    assert "mnist" in experiments.required_datasets("paper")
    assert experiments.get("nag-cls-nesterov-K4-seed1", "cpu").dataset == "mnist-8k"
    assert "mnist-8k" in experiments.required_datasets("cpu")


def test_cpu_setups_run_three_seeds_and_fit_the_budget_shape():
    cls, cnf, lat = (tasks.classification_setup("cpu"), tasks.cnf_setup("cpu"),
                     tasks.latent_setup("cpu"))
    for setup in (cls, cnf, lat):
        assert len(setup.seeds) >= tasks.MIN_SEEDS and setup.solvers == tasks.CPU_SOLVERS
    # K = 4: every solver of the comparison spends it exactly, and so does ResNet-4
    assert [c.n_steps for c in tasks.solver_choices(cls.solvers, cls.budgets[0])] == [4, 4, 2, 1]
    assert cls.resnet_blocks == cls.budgets[0] and cls.dataset == "mnist-8k"
    model = ODENet(1, 10, cls.width, downsampling_kind="conv", method="nesterov", n_steps=4,
                   max_groups=cls.max_groups)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert norms and {m.num_groups for m in norms} == {cls.max_groups}
    resnet = ResNet(1, 10, cls.width, downsampling_kind="conv", n_blocks=4, max_groups=4)
    assert {m.num_groups for m in resnet.modules() if isinstance(m, torch.nn.GroupNorm)} == {4}
    from deqode.data.synthetic import SPIRAL_SIZES
    assert SPIRAL_SIZES["cpu"] == {"n_spirals": lat.n_spirals, "n_total": lat.n_total,
                                   "n_sample": lat.n_sample}


def test_reference_table_has_structure_and_no_invented_numbers():
    rows = load_reference("nag")
    assert {r["table"] for r in rows} >= {"T1", "T2", "T3", "T4", "claims"}
    for r in rows:
        assert r["paper"] == "nag" and r["source"]
        if r["table"] != "claims":
            assert r["value"] == NOT_TRANSCRIBED
    assert reference_value(rows, "T2", "nesterov", "test error (%)") == NOT_TRANSCRIBED
    assert reference_value(rows, "claims", "NAG solver", "order") == "first-order"


# ---- models --------------------------------------------------------------------------------


def test_cnf_trace_modes_agree_and_identity_flow_is_the_base():
    torch.manual_seed(0)
    model = CNF(hidden=8, width=8, method="rk4", options={"step_size": 0.5}).double()
    x = torch.randn(16, 2, dtype=DT)
    analytic = model.log_prob(x)
    model.field.trace = "autograd"
    assert torch.allclose(model.log_prob(x), analytic, rtol=0, atol=1e-12)
    with torch.no_grad():
        model.field.hyper.net[-1].weight.zero_()
        model.field.hyper.net[-1].bias.zero_()
    assert torch.allclose(model.log_prob(x), model.base_log_prob(x), atol=1e-14)
    expected = torch.distributions.MultivariateNormal(
        torch.zeros(2, dtype=DT), 0.1 * torch.eye(2, dtype=DT)).log_prob(x)
    assert torch.allclose(model.base_log_prob(x), expected, atol=1e-12)


def test_cnf_sample_and_log_prob_are_inverse_under_an_accurate_solver():
    torch.manual_seed(1)
    model = CNF(hidden=8, width=8, rtol=1e-8, atol=1e-8).double()
    samples, logp = model.sample(16, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(model.log_prob(samples), logp, atol=1e-6)


@pytest.mark.parametrize("label", ["nesterov", "euler", "midpoint", "rk4"])
def test_cnf_and_latent_ode_spend_the_budget_in_both_time_directions(label):
    (choice,) = [c for c in tasks.solver_choices(tasks.SMOKE_SOLVERS, 12) if c.label == label]
    setup = tasks.cnf_setup("smoke")
    cnf = tasks.build_cnf(setup, choice)
    cnf.log_prob(torch.randn(8, 2))  # t1 -> t0, decreasing time
    assert cnf.nfe_forward == 12
    cnf.sample(8)
    assert cnf.nfe_forward == 12
    latent_setup = tasks.latent_setup("smoke")
    data = tasks.spiral_data(latent_setup, "train")
    interval = float(data.times[-1])
    model = tasks.build_latent_ode(latent_setup, choice, interval)
    model.negative_elbo(data.observed[:4], data.times)
    assert model.nfe_forward == 12


def test_latent_ode_kl_and_input_checks():
    mean, logvar = torch.randn(5, 4, dtype=DT), torch.randn(5, 4, dtype=DT)
    q = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros_like(mean), torch.ones_like(mean))
    expected = torch.distributions.kl_divergence(q, p).sum(-1)
    assert torch.allclose(kl_to_standard_normal(mean, logvar), expected, atol=1e-12)
    with pytest.raises(ValueError, match="observations"):
        LatentODE().negative_elbo(torch.zeros(3, 5), torch.linspace(0, 1, 5))
    with pytest.raises(ValueError, match="valid choices"):
        LatentODE(grad_mode="exact")


def test_adjoint_mode_counts_backward_evaluations():
    (choice,) = tasks.solver_choices(("nesterov",), 12)
    setup = dataclasses.replace(tasks.cnf_setup("smoke"), grad_mode="adjoint")
    model = tasks.build_cnf(setup, choice)
    model.reset_nfe()
    (-model.log_prob(torch.randn(8, 2)).mean()).backward()
    model.sync_nfe()
    assert model.nfe_forward == 12 and model.nfe_backward == 12


# ---- smoke runs (tiny) -------------------------------------------------------------------------


def test_train_cnf_runs_and_records_history(tmp_path):
    setup = dataclasses.replace(tasks.cnf_setup("smoke"), iterations=3, eval_every=2,
                                sample_points=50, grid_size=5)
    (choice,) = tasks.solver_choices(("nesterov",), 12)
    record = tasks.train_cnf(setup, choice, results_dir=tmp_path)
    history = record["history"]
    steps = [h for h in history if "loss" in h]
    assert [h["nfe"] for h in steps] == [12.0, 24.0, 36.0]
    assert all(b["seconds"] >= a["seconds"] for a, b in itertools.pairwise(steps))
    assert [h["iteration"] for h in history if "nll_dopri5" in h] == [0, 2, 3]
    assert math.isfinite(record["nll_dopri5"]) and record["log_density"].shape == (5, 5)
    assert record["samples"].shape == (50, 2)


def test_train_latent_ode_runs_and_records_history(tmp_path):
    setup = dataclasses.replace(tasks.latent_setup("smoke"), iterations=2, eval_every=2)
    (choice,) = tasks.solver_choices(("rk4",), 12)
    record = tasks.train_latent_ode(setup, choice, results_dir=tmp_path)
    assert record["nfe_per_iteration"] == 12.0
    for key in ("neg_elbo", "recon_mse", "extrap_mse", "neg_elbo_dopri5", "extrap_mse_dopri5"):
        assert math.isfinite(record[key]), key
    trajectory = tasks.latent_trajectory(record["model"], tasks.spiral_data(setup, "test"))
    assert trajectory["forward"].shape[1] == 2 and trajectory["backward"].shape == (20, 2)


def test_classification_smoke_run_through_the_harness(tmp_path):
    run = next(r for r in tasks.classification_runs("smoke") if r.config.name ==
               "nag-cls-nesterov-K6")
    run = dataclasses.replace(run, config=run.config.replace(epochs=1))
    record = tasks.run_classification(run, "smoke", results_dir=str(tmp_path))
    assert record["nfe_forward"] == 6.0 and record["nfe_backward"] == 0.0
    assert record["params"] == 5418 and 0.0 <= record["test_error_dopri5"] <= 1.0
    assert record["nfe_dopri5"] > 6 and len(record["history"]) == 1


# ---- finished runs are read, not retrained ------------------------------------------------------


def test_cache_reads_a_finished_run_and_keys_by_the_full_config(tmp_path, monkeypatch):
    from deqode.chapters.nag import cache

    calls = []

    def compute():
        calls.append(1)
        return {"value": len(calls)}

    first = cache.cached(tmp_path, "run", {"a": 1}, compute)
    again = cache.cached(tmp_path, "run", {"a": 1}, compute)
    other = cache.cached(tmp_path, "run", {"a": 2}, compute)
    assert (first["cached"], again["cached"], other["cached"]) == (False, True, False)
    assert again["value"] == 1 and other["value"] == 2 and len(calls) == 2
    monkeypatch.setenv("DEQODE_REHEARSAL_STEPS", "2")  # a rehearsal never reads a real run
    assert cache.cached(tmp_path, "run", {"a": 1}, compute)["cached"] is False
    assert not list(tmp_path.glob("*.tmp*"))


def test_train_cnf_is_read_back_from_its_finished_run(tmp_path):
    setup = dataclasses.replace(tasks.cnf_setup("smoke"), iterations=2, eval_every=2)
    (choice,) = tasks.solver_choices(("euler",), 12)
    first = tasks.train_cnf(setup, choice, panels=False, results_dir=tmp_path)
    checkpoint = tmp_path / "smoke" / "nag-cnf-euler-K12" / "checkpoint.pt"
    stamp = checkpoint.stat().st_mtime_ns
    again = tasks.train_cnf(setup, choice, panels=False, results_dir=tmp_path)
    assert not first["cached"] and again["cached"] and checkpoint.stat().st_mtime_ns == stamp
    assert again["history"] == first["history"]
    assert again["nll_dopri5"] == first["nll_dopri5"]
    assert isinstance(again["model"], CNF)
    for a, b in zip(first["model"].parameters(), again["model"].parameters(), strict=True):
        assert torch.equal(a, b)


def test_rehearsal_caps_the_task_loops(monkeypatch, tmp_path):
    monkeypatch.setenv("DEQODE_REHEARSAL_STEPS", "2")
    setup = dataclasses.replace(tasks.latent_setup("smoke"), eval_every=50)
    (choice,) = tasks.solver_choices(("nesterov",), 12)
    record = tasks.train_latent_ode(setup, choice, results_dir=tmp_path)
    assert [h["iteration"] for h in record["history"] if "neg_elbo" in h] == [0, 2]
    assert record["train_cpu_seconds"] > 0


# ---- the decision rules of C9-C11 ---------------------------------------------------------------


def test_target_time_to_target_and_flattening():
    assert tasks.target_value(0.9, True) == pytest.approx(0.9 * (1 - tasks.TARGET_SLACK))
    assert tasks.target_value(2.0, False) == pytest.approx(2.0 * (1 + tasks.TARGET_SLACK))
    assert tasks.target_value(-2.0, False) == pytest.approx(-2.0 * (1 - tasks.TARGET_SLACK))
    curve = [{"acc": 0.2, "t": 1.0, "nfe": 10}, {"acc": 0.85, "t": 2.0, "nfe": 20},
             {"acc": 0.9, "t": 3.0, "nfe": 30}]
    assert tasks.time_to_target(curve, "acc", 0.8, True, "t") == 2.0
    assert tasks.time_to_target(curve, "acc", 0.8, True, "nfe") == 20
    assert tasks.time_to_target(curve, "acc", 0.95, True, "t") is None
    assert tasks.time_to_target(curve, "acc", 0.5, False, "t") == 1.0
    assert tasks.flattened([1.0, 0.5, 0.31, 0.301, 0.300])[0]
    assert not tasks.flattened([1.0, 0.8, 0.6, 0.4])[0]
    assert not tasks.flattened([0.5, 0.9, 0.94])[0]  # still 4 % of its value in the last step
    assert not tasks.flattened([1.0, 0.5])[0]  # too short to tell


FLAT = [(True, 0.01)] * 3


def test_faster_rule_reaches_every_verdict():
    from deqode.book import claims

    fast, slow = [10.0, 11.0, 10.5], [20.0, 21.0, 19.0]
    flat = {"nesterov": FLAT, "euler": FLAT, "rk4": FLAT}
    v, _, parts = tasks.faster_verdict({"nesterov": fast, "euler": slow, "rk4": slow}, flat)
    assert v == claims.SUPPORTED and parts == {"euler": "faster", "rk4": "faster"}
    v, _, parts = tasks.faster_verdict({"nesterov": slow, "euler": fast, "rk4": slow}, flat)
    assert v == claims.NOT_SUPPORTED and parts == {"euler": "slower", "rk4": "equal"}
    v, _, _ = tasks.faster_verdict({"nesterov": fast, "euler": slow, "rk4": fast}, flat)
    assert v == claims.MIXED
    v, _, parts = tasks.faster_verdict({"nesterov": fast, "euler": [5.0, None, 6.0], "rk4": slow},
                                       flat)
    assert parts["euler"] == "faster"
    v, reason, _ = tasks.faster_verdict({"nesterov": [10.0], "euler": [20.0]},
                                        {"nesterov": FLAT[:1], "euler": FLAT[:1]})
    assert v == claims.NOT_DECIDABLE and "1 seed" in reason
    unflat = {**flat, "rk4": [(False, 0.3)] * 3}
    v, reason, _ = tasks.faster_verdict({"nesterov": fast, "euler": slow, "rk4": slow}, unflat)
    assert v == claims.NOT_DECIDABLE and "rk4 30%" in reason


def test_comparable_rule_reaches_every_verdict():
    from deqode.book import claims

    flat = {"nesterov": FLAT, "euler": FLAT, "rk4": FLAT}
    good, bad = [0.95, 0.951, 0.949], [0.80, 0.81, 0.79]
    improvement = 0.95  # the size the margin is a fraction of
    v, _, parts = tasks.comparable_verdict({"nesterov": good, "euler": good, "rk4": bad}, True,
                                           improvement, flat)
    assert v == claims.SUPPORTED and parts == {"euler": "comparable", "rk4": "better"}
    v, _, _ = tasks.comparable_verdict({"nesterov": bad, "euler": good, "rk4": good}, True,
                                       improvement, flat)
    assert v == claims.NOT_SUPPORTED
    v, _, _ = tasks.comparable_verdict({"nesterov": bad, "euler": good, "rk4": bad}, True,
                                       improvement, flat)
    assert v == claims.MIXED
    # lower is better (an NLL): the same numbers read the other way round
    v, _, _ = tasks.comparable_verdict({"nesterov": bad, "euler": good, "rk4": good}, False,
                                       improvement, flat)
    assert v == claims.SUPPORTED
    v, _, _ = tasks.comparable_verdict({"nesterov": good[:1], "euler": good[:1]}, True,
                                       improvement, {"nesterov": FLAT, "euler": FLAT})
    assert v == claims.NOT_DECIDABLE


def test_hidden_rule_reaches_every_verdict():
    from deqode.book import claims

    same = {"nesterov": [0.95, 0.951, 0.949], "nesterov (c=1)": [0.95, 0.952, 0.948]}
    worse = {"nesterov": [0.95, 0.951, 0.949], "nesterov (c=1)": [0.70, 0.71, 0.69]}
    moved = {"nesterov": [0.0, -0.001, 0.001], "nesterov (c=1)": [-0.3, -0.31, -0.29]}
    still = {"nesterov": [0.0, -0.001, 0.001], "nesterov (c=1)": [0.0, 0.001, -0.001]}
    flat = {"nesterov": FLAT, "nesterov (c=1)": FLAT}
    assert tasks.hidden_verdict(same, moved, True, flat)[0] == claims.SUPPORTED
    assert tasks.hidden_verdict(worse, still, True, flat)[0] == claims.NOT_SUPPORTED
    assert tasks.hidden_verdict(same, still, True, flat)[0] == claims.MIXED
    one = {k: v[:1] for k, v in same.items()}
    assert tasks.hidden_verdict(one, {k: v[:1] for k, v in moved.items()}, True,
                                flat)[0] == claims.NOT_DECIDABLE
    unflat = {**flat, "nesterov (c=1)": [(False, 0.5)] * 3}
    assert tasks.hidden_verdict(same, moved, True, unflat)[0] == claims.NOT_DECIDABLE


def test_rule_texts_are_built_from_the_constants():
    text = tasks.faster_rule_text("accuracy")
    assert f"{tasks.TARGET_SLACK:.0%}" in text and f"{tasks.TIME_MARGIN:.0%}" in text
    assert f"{tasks.COMPARABLE_FRACTION:.0%}" in tasks.comparable_rule_text("accuracy")
    assert str(tasks.MIN_SEEDS) in tasks.hidden_rule_text("accuracy")


def test_evidence_from_records_gives_claim_arguments():
    from deqode.book import claims

    def record(label, seed, accs, cpu):
        hist = [{"epoch": i + 1, "test_acc": a, "cpu_seconds": cpu * (i + 1), "seconds": 1.0,
                 "nfe": 4.0 * (i + 1)} for i, a in enumerate(accs)]
        return {"label": label, "seed": seed, "history": hist, "test_acc": accs[-1],
                "test_acc_dopri5": accs[-1] - (0.3 if label == "nesterov (c=1)" else 0.0)}

    records = [record(label, s, [0.5, 0.9, 0.95, 0.96, 0.96], cpu)
               for s in range(3)
               for label, cpu in (("nesterov", 1.0 + 0.01 * s), ("euler", 2.0 + 0.01 * s),
                                  ("nesterov (c=1)", 1.0))]
    ev = tasks.speed_and_final(records, "test_acc", True, "accuracy", "test")
    assert ev["c9"]["verdict"] == claims.SUPPORTED and ev["c10"]["verdict"] == claims.SUPPORTED
    assert ev["target"] == pytest.approx(0.96 * (1 - tasks.TARGET_SLACK))
    assert {row["label"] for row in ev["table"]} == {"nesterov", "euler"}
    tr = tasks.transfer_evidence(records, "test_acc", "test_acc_dopri5", True, "accuracy",
                                 "test")
    assert tr["claim"]["verdict"] == claims.SUPPORTED and tr["hidden"] and tr["exposed"]
