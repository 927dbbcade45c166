"""A book of some chapters: the plan checks only their datasets, assemble stages only their
notebooks, and the front page lists the chapters left out with the reason."""

from __future__ import annotations

import json

import nbformat
import pytest
import yaml

from deqode import chapters
from deqode.book import build, claims
from deqode.chapters.__main__ import main as plan_main
from deqode.data import standins
from deqode.errors import DatasetMissingError
from deqode.paths import repo_root

HOMOODE = list(build.CHAPTER_NOTEBOOKS["homoode"])


def test_every_notebook_of_the_toc_is_in_exactly_one_chapter_and_chapters_are_packages():
    toc = build.toc_notebooks(repo_root() / "book" / "_toc.yml")
    grouped = [nb for nbs in build.CHAPTER_NOTEBOOKS.values() for nb in nbs]
    assert sorted(grouped) == sorted(toc) and len(set(grouped)) == len(grouped)
    assert sorted(build.CHAPTER_NOTEBOOKS) == chapters.chapter_names()
    with pytest.raises(ValueError, match="no chapter"):
        build.chapter_of("99_nowhere")


def test_dataset_needs_are_kept_per_chapter():
    assert chapters.required_datasets("paper", ["homotopy_link"]) == []
    assert "tiny-imagenet" in chapters.required_datasets("paper", ["homoode"])
    assert "tiny-imagenet" not in chapters.required_datasets("paper", ["nag"])
    every = set(chapters.required_datasets("paper"))
    assert every == {n for c in chapters.chapter_names()
                     for n in chapters.required_datasets("paper", [c])}
    with pytest.raises(ValueError, match="valid choices"):
        chapters.required_datasets("paper", ["homode"])


@pytest.fixture(scope="module")
def cifar_only(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    standins.write_standins(root, ["cifar10", "cifar100"])
    return root


def test_homoode_alone_with_only_the_cifar_stand_ins(cifar_only):
    plan = chapters.book_plan("paper", ["homoode"], cifar_only)
    assert plan["chapters"] == ["homoode"] and plan["notebooks"] == HOMOODE
    assert plan["not_built"]["nag"] == "not built: CHAPTERS=homoode"
    assert "tiny-imagenet missing" in plan["not_built"]["homoode (the rows on tiny-imagenet)"]
    assert plan["parameters"] == {nb: {"datasets": ["cifar10", "cifar100"]} for nb in HOMOODE}


def test_a_chapter_asked_for_without_its_data_stops_with_the_missing_set(cifar_only, capsys):
    with pytest.raises(DatasetMissingError, match="mnist"):
        chapters.book_plan("paper", ["nag"], cifar_only)
    assert plan_main(["plan", "--profile", "paper", "--chapters", "nag", "--data-root",
                      str(cifar_only), "--out", str(cifar_only / "plan.json")]) == 2
    assert "mnist" in capsys.readouterr().err


def test_without_chapters_every_chapter_with_data_is_built(cifar_only, tmp_path):
    out = tmp_path / "plan.json"
    assert plan_main(["plan", "--profile", "paper", "--data-root", str(cifar_only), "--out",
                      str(out), "--targets", str(tmp_path / "t"), "--executed", "EX",
                      "--make-params", str(tmp_path / "p.mk")]) == 0
    plan = json.loads(out.read_text())
    assert plan["chapters"] == ["homoode", "homotopy_link"]
    assert plan["not_built"]["nag"].startswith("dataset mnist missing")
    assert (tmp_path / "t").read_text().splitlines() == [
        f"EX/{nb}.ipynb" for nb in ["01_homotopy_link", *HOMOODE]]
    assert "PARAMS_02_homoode_main := -p datasets '[\"cifar10\", \"cifar100\"]'" in \
        (tmp_path / "p.mk").read_text()


def _fake_executed(folder, results, profile="paper"):
    """An executed copy of each HomoODE notebook (one heading per claim section) and a record
    per HomoODE claim, as the notebooks would write them."""
    folder.mkdir(parents=True)
    catalogue = claims.load_catalogue()
    for nb in HOMOODE:
        ids = [c for c, claim in catalogue.items() if claim.notebook == nb]
        cells = [nbformat.v4.new_markdown_cell(f"# {nb}\n\nAfter {{doc}}`01_homotopy_link`.")]
        cells += [nbformat.v4.new_markdown_cell(f"## Evidence {c}") for c in ids]
        nbformat.write(nbformat.v4.new_notebook(cells=cells), str(folder / f"{nb}.ipynb"))
        (folder / f"{nb}.run.json").write_text(json.dumps({
            "notebook": nb, "profile": profile, "wall_seconds": 1.0, "python": "3",
            "torch": "t", "torchdiffeq": "d", "device": "cpu", "git_commit": "abc",
            "executed_at": "now"}))
        for c in ids:
            claims.record(claims.Evidence(c, profile, "ran", "measured", "rule",
                                          claims.SUPPORTED, nb, f"Evidence {c}"), results)


def test_assemble_stages_the_chapter_alone_and_labels_it(cifar_only, tmp_path):
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(chapters.book_plan("paper", ["homoode"], cifar_only)))
    executed, results = tmp_path / "executed", tmp_path / "results"
    _fake_executed(executed, results)
    stage = build.assemble("paper", tmp_path / "stage", executed, plan=plan_file,
                           results_dir=results, label="rehearsal: not results")
    assert sorted(p.stem for p in (stage / "notebooks").glob("*.ipynb")) == HOMOODE
    toc = yaml.safe_load((stage / "book" / "_toc.yml").read_text())
    files = [e["file"] for part in toc["parts"] for e in part["chapters"]]
    assert "book/homoode" in files and "notebooks/01_homotopy_link" not in files
    assert not any(f.startswith("notebooks/1") for f in files)
    intro = (stage / "book" / "intro.md").read_text()
    assert build.BUILT_MARKER not in intro and "rehearsal: not results" in intro
    assert "- nag: not built: CHAPTERS=homoode" in intro
    assert "tiny-imagenet missing" in intro
    config = yaml.safe_load((stage / "_config.yml").read_text())
    assert config["html"]["announcement"] == "rehearsal: not results"
    ledger = (stage / "book" / "claims.md").read_text()
    assert claims.NOT_RUN in ledger  # the claims of the other chapters
    # no link to a notebook outside the build (jupyter-book -W would stop on it)
    assert "../notebooks/11_nag_classification.ipynb" not in ledger
    assert f"11_nag_classification {build.NOT_IN_BUILD}" in ledger
    assert "../notebooks/02_homoode_main.ipynb#" in ledger  # the built ones keep theirs
    page = (stage / "book" / "homoode.md").read_text()
    assert "../notebooks/01_homotopy_link`" not in page and "../notebooks/02_homoode_main`" in page
    staged = nbformat.read(str(stage / "notebooks" / "02_homoode_main.ipynb"), as_version=4)
    assert staged.cells[0].source.endswith(f"After 01_homotopy_link {build.NOT_IN_BUILD}.")


def test_assemble_without_a_plan_still_wants_every_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match="01_homotopy_link"):
        build.assemble("paper", tmp_path / "stage", tmp_path / "none")


def test_a_book_of_some_chapters_runs_no_benchmark_but_the_whole_book_does():
    import subprocess

    def planned(*args):
        stamp = "_build/paper/_build/html/.deqode-built"
        proc = subprocess.run(["make", "-C", str(repo_root()), "-n", "-B", stamp, "PROFILE=paper",
                               "SELECTED=", *args], capture_output=True, text=True, check=True)
        return proc.stdout

    assert "benchmarks/bench_" not in planned("CHAPTERS=homoode")
    assert "benchmarks/bench_nesterov.py --profile paper" in planned()


def test_the_benchmarks_not_run_are_named(tmp_path):
    (tmp_path / "nesterov.md").write_text("| nesterov table |")
    text = build.benchmarks_section("paper", tmp_path)
    assert "| nesterov table |" in text
    scripts = sorted((repo_root() / "benchmarks").glob("bench_*.py"))
    missing = [f"`benchmarks/{p.name}`" for p in scripts if p.name != "bench_nesterov.py"]
    assert f"Not run for this build** ({len(missing)} of {len(scripts)}): " \
        f"{', '.join(missing)}." in text
    assert "bench_nesterov.py`" not in text
