"""The claims ledger: catalogue, evidence records, statistics helpers and the generated page."""

from __future__ import annotations

import csv

import pytest

from deqode.book import build as book
from deqode.book import claims, notebook
from deqode.choices import UnknownChoiceError


def test_catalogue_rows_are_complete_and_unique():
    catalogue = claims.load_catalogue()
    assert len(catalogue) >= 16
    papers = {c.paper for c in catalogue.values()}
    assert papers == {"HomoODE", "Continuous DEQ", "Nesterov solver", "SIM"}
    for claim in catalogue.values():
        assert claim.words.strip() and claim.source.strip() and claim.claim.strip()
        assert (claims.repo_root() / "notebooks" / f"{claim.notebook}.ipynb").is_file(), claim.id


def test_catalogue_rejects_duplicate_ids_and_wrong_columns(tmp_path):
    path = tmp_path / "claims.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(claims.CATALOGUE_COLUMNS)
        writer.writerow(["x-C1", "P", "c", "w", "s", "01_homotopy_link"])
        writer.writerow(["x-C1", "P", "c", "w", "s", "01_homotopy_link"])
    with pytest.raises(ValueError, match="twice"):
        claims.load_catalogue(path)
    path.write_text("id,paper\nx,y\n", encoding="utf-8")
    with pytest.raises(ValueError, match="columns"):
        claims.load_catalogue(path)


def _evidence(**changes):
    fields = dict(claim_id="sim-C4-A", profile="cpu", ran="3 seeds", measured="0.9 ± 0.1",
                  rule="supported if higher", verdict=claims.SUPPORTED, notebook="15_sim_x",
                  section="Accuracy")
    fields.update(changes)
    return claims.Evidence(**fields)


def test_record_round_trips_and_checks_its_input(tmp_path):
    path = claims.record(_evidence(values={"acc": [0.9, 0.8, 1.0]}), results_dir=tmp_path)
    assert path == tmp_path / "cpu" / "claims" / "sim-C4-A.json"
    loaded = claims.load_records("cpu", tmp_path)
    assert loaded["sim-C4-A"].values == {"acc": [0.9, 0.8, 1.0]}
    with pytest.raises(UnknownChoiceError, match="verdict"):
        claims.record(_evidence(verdict="probably"), results_dir=tmp_path)
    with pytest.raises(UnknownChoiceError, match="claim id"):
        claims.record(_evidence(claim_id="sim-C99"), results_dir=tmp_path)
    with pytest.raises(ValueError, match="measured reason"):
        claims.record(_evidence(verdict=claims.NOT_DECIDABLE, reason=" "), results_dir=tmp_path)
    with pytest.raises(ValueError, match="'measured' is empty"):
        claims.record(_evidence(measured=""), results_dir=tmp_path)
    with pytest.raises(UnknownChoiceError, match="profile"):
        claims.record(_evidence(profile="full"), results_dir=tmp_path)


def test_run_claim_writes_into_the_runs_results_folder(tmp_path):
    run = notebook.start("15_sim_x", profile="smoke", device="cpu", results_dir=tmp_path)
    run.claim("sim-C3", ran="r", measured="m", rule="q", verdict=claims.NOT_DECIDABLE,
              section="S", reason="accuracy 11 % is at chance (10 %)")
    record = claims.load_records("smoke", tmp_path)["sim-C3"]
    assert (record.notebook, record.profile) == ("15_sim_x", "smoke")


def test_mean_std_and_summary():
    assert claims.mean_std([2.0]) == (2.0, 0.0)
    mean, std = claims.mean_std([1.0, 2.0, 3.0])
    assert mean == 2.0 and std == pytest.approx(1.0)
    assert claims.summarise([1.0, 2.0, 3.0], digits=1) == "2.0 ± 1.0 (per seed: 1.0, 2.0, 3.0)"
    with pytest.raises(ValueError):
        claims.mean_std([])


def test_compare_needs_the_margin_and_the_noise():
    assert claims.compare([0.9, 0.91, 0.92], [0.5, 0.51, 0.52], margin=0.02) == "higher"
    assert claims.compare([0.5, 0.51, 0.52], [0.9, 0.91, 0.92], margin=0.02) == "lower"
    assert claims.compare([0.9, 0.91, 0.92], [0.9, 0.9, 0.9], margin=0.02) == "equal"
    # a large difference of the means drowned in seed noise counts as equal
    assert claims.compare([0.2, 0.9, 0.5], [0.4, 0.4, 0.4], margin=0.01) == "equal"


def test_combine():
    s, n, m, d = claims.SUPPORTED, claims.NOT_SUPPORTED, claims.MIXED, claims.NOT_DECIDABLE
    assert claims.combine([s, s]) == s
    assert claims.combine([n, n]) == n
    assert claims.combine([s, n]) == m
    assert claims.combine([s, d]) == d
    with pytest.raises(ValueError):
        claims.combine([])


def test_heading_anchor_matches_myst():
    assert claims.heading_anchor("Accuracy at matched parameters") == (
        "accuracy-at-matched-parameters")
    assert claims.heading_anchor("C12: GMRES iterations (Skip)") == "c12-gmres-iterations-skip"


def test_ledger_lists_every_claim_with_its_verdict_and_counts():
    catalogue = claims.load_catalogue()
    records = {"sim-C4-A": _evidence(verdict=claims.MIXED, reason="1 of 2 tasks")}
    page = claims.ledger_markdown("cpu", catalogue, records, "cpu label")
    assert page.startswith("# Claims ledger (cpu profile)")
    assert f"1 {claims.MIXED}, {len(catalogue) - 1} {claims.NOT_RUN}" in page
    assert "- **Verdict:** **mixed**: 1 of 2 tasks" in page
    assert "(../notebooks/15_sim_x.ipynb#accuracy)" in page
    for claim_id in catalogue:
        assert f"**{claim_id}**" in page
    with pytest.raises(ValueError, match="not in the catalogue"):
        claims.ledger_markdown("cpu", catalogue, {"x": _evidence(claim_id="x")}, "label")


def test_check_claim_records_names_the_missing_claims_and_bad_sections(tmp_path):
    import nbformat

    with pytest.raises(ValueError, match=r"no evidence recorded .*homoode-C2"):
        book.check_claim_records("cpu", None, tmp_path)
    for claim_id in claims.load_catalogue():
        claims.record(_evidence(claim_id=claim_id, notebook="nb", section="Results"),
                      results_dir=tmp_path)
    assert len(book.check_claim_records("cpu", None, tmp_path)) == len(claims.load_catalogue())
    executed = tmp_path / "executed"
    executed.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title\n\n## Other section\n#not a heading")]
    nbformat.write(nb, str(executed / "nb.ipynb"))
    assert book.notebook_headings(executed / "nb.ipynb") == ["Title", "Other section"]
    with pytest.raises(ValueError, match="'Results' is not a heading"):
        book.check_claim_records("cpu", executed, tmp_path)
    nb.cells.append(nbformat.v4.new_markdown_cell("### Results"))
    nbformat.write(nb, str(executed / "nb.ipynb"))
    book.check_claim_records("cpu", executed, tmp_path)
