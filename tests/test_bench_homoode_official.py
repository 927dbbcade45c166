"""The benchmark against the official HomoODE code: its name mapping, its answer where the peer
is absent, and (where the peer is present) a tiny run of both worker processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_benchmarks import load

from deqode.models import build

bench = load("homoode_official")
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # the quick run sets one thread


def test_every_parameter_and_buffer_has_a_peer_name() -> None:
    ours = build("homoode-cifar10").state_dict()
    split = bench.peer_state(ours)
    assert sum(len(part) for part in split.values()) == len(ours)
    assert "feature_layers.odefunc.conv1._layer.weight" in split["model"]
    assert set(split["init"]) == {"init.0.weight", "init.1.weight", "init.1.bias"}
    with pytest.raises(KeyError, match="no peer parameter"):
        bench.peer_state({"unknown.weight": ours["stem.0.weight"]})


def test_without_the_peer_the_default_run_writes_a_not_run_table(tmp_path: Path,
                                                                 monkeypatch) -> None:
    monkeypatch.setattr(bench, "DEFAULT_PEER", tmp_path / "absent")
    stale = tmp_path / "out" / "homoode_official.png"
    stale.parent.mkdir()
    stale.write_bytes(b"old")
    assert bench.main(["--quick", "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "homoode_official.md").read_text()
    assert "**Not run**" in text and "37df358" in text and str(tmp_path / "absent") in text
    assert not stale.exists()
    assert json.loads((tmp_path / "out" / "homoode_official.json").read_text())["run"] is False


def test_an_explicit_peer_path_without_the_peer_is_an_error(tmp_path: Path, capsys) -> None:
    assert bench.main(["--quick", "--peer", str(tmp_path), "--out", str(tmp_path)]) == 2
    assert "no official HomoODE code at" in capsys.readouterr().err
    assert not (tmp_path / "homoode_official.md").exists()


@pytest.mark.slow
@pytest.mark.skipif(bench.peer_problem(bench.DEFAULT_PEER) is not None,
                    reason="the official code is not at ../shared/peers/homoode-official")
def test_quick_run_against_the_peer(tmp_path: Path) -> None:
    assert bench.main(["--quick", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "homoode_official.json").read_text())
    summary = record["summary"]
    assert summary["eval_logit_difference"] < 1e-4  # the same function from the same weights
    assert summary["ours"]["eval_nfe"] == summary["official"]["eval_nfe"]
    assert summary["equal_nfe"]
    assert record["peer"]["commit"] == "37df358"
    assert (tmp_path / "homoode_official.png").stat().st_size > 0
    text = (tmp_path / "homoode_official.md").read_text()
    assert "ours ÷ official" in text and "mmap threshold fixed" in text
    fixed = record["raw"]["memory_fixed_mmap"]  # a second pair of workers, memory steps only
    assert [len(fixed[side]) for side in bench.SIDES] == [record["setting"]["memory_steps"]] * 2
    assert all(summary[side]["rss_growth_fixed_mmap_mb"] is not None for side in bench.SIDES)
