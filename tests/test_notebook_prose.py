"""Clean chapter pages: numbers in prose come from myst-nb glue, papermill's injected-parameters
cell is dropped from the HTML, and the notebooks' glue names exist in the code that glues them."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from deqode.book import build, notebook_tags
from deqode.chapters.homoode import prose
from deqode.paths import repo_root

NOTEBOOKS = sorted((repo_root() / "notebooks").glob("*.ipynb"))
#: ``display(Markdown(...))`` and ``Markdown(f"...")``: prose built by code above its paragraph.
MARKDOWN_FROM_CODE = re.compile(r"display\(\s*Markdown\(|Markdown\(\s*(rf|fr|f)[\"']", re.I)
GLUE_TEXT = re.compile(r"\{glue:text\}`([^`:]+)(?::[^`]*)?`")
GLUE_MD = re.compile(r"^```\{glue:md\} (\S+)", re.M)


def markdown_from_code(source: str) -> list[str]:
    """The lines of ``source`` that display Markdown built by code."""
    return [line.strip() for line in source.splitlines() if MARKDOWN_FROM_CODE.search(line)]


def test_the_markdown_check_finds_prose_built_by_code() -> None:
    assert markdown_from_code('display(Markdown(f"{x:.1f} %"))')
    assert markdown_from_code("display(Markdown(text))")
    assert markdown_from_code('glue("a", Markdown(f"{x}"))')
    assert not markdown_from_code('notebook.glue_markdown("a", prose.reading(x))')


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_notebook_builds_its_prose_with_display_markdown(path: Path) -> None:
    nb = nbformat.read(str(path), as_version=4)
    found = [line for cell in nb.cells if cell.cell_type == "code"
             for line in markdown_from_code(cell.source)]
    assert not found, (f"{path.name} builds prose in code ({found}); put the sentence in a "
                       "markdown cell and glue its numbers (deqode.book.notebook.glue_values)")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_parameters_cell_is_collapsed(path: Path) -> None:
    cell = build.parameters_cell(nbformat.read(str(path), as_version=4))
    assert "hide-input" in cell.metadata["tags"], path.name


def _glue_names(stem: str) -> set[str]:
    nb = nbformat.read(str(repo_root() / "notebooks" / f"{stem}.ipynb"), as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    return set(GLUE_TEXT.findall(text)) | set(GLUE_MD.findall(text))


def test_chapter_04_glues_every_name_its_prose_uses() -> None:
    gaps = [{"mode": m, "group": g, "rel_diff": d, "tensor_min": d / 2, "tensor_max": 2 * d}
            for m, d in (("adjoint", 0.01), ("frozen_adjoint", 0.5)) for g in ("field", "stem")]
    records = [{"key": "digits", "label": m, "best_acc": 0.9, "last_acc": 0.8}
               for m in ("backprop", "adjoint", "frozen_adjoint")]
    memory = [{"mode": m, "tol": t, "saved_mb": 1.0, "nfe_forward": 20, "nfe_backward": 0}
              for m in ("backprop", "adjoint") for t in (1e-3, 1e-6)]
    values = prose.gradients_reading_values(
        key="digits", gap_tol=1e-6, gaps=gaps, smooth=gaps, records=records, memory=memory,
        spread={"backprop": 0.6, "adjoint": 0.0, "frozen_adjoint": 0.001},
        broyden={"failed": 0.25, "nfe": 30}, homoode_nfe=26)
    assert values["grad_frozen_field"] == pytest.approx(50.0)
    assert (values["grad_frozen_low"], values["grad_frozen_high"]) == (0.25, 1.0)
    assert values["grad_memory_tol"] == "1e-06" and values["grad_broyden_failed"] == 25.0
    assert _glue_names("04_homoode_gradients") == set(values) | {"gradients_smoke"}


def test_chapter_03_glues_every_name_its_prose_uses() -> None:
    labels = ["HomoODE, learned z0", *prose.OTHER_STARTS]
    sweep = [{"label": label, "tol": 1e-6, "nfe": 20 + k, "mean_gap": 0.1, "acc": 0.9}
             for k, label in enumerate(labels)]
    values = prose.other_starts_values(sweep, labels[0], 3, 1e-6)
    assert values["starts_seed"] == 3 and values["starts_mean_nfe"] == 23
    assert _glue_names("03_homoode_init_point") == set(values) | {"ablation_reading",
                                                                  "init_point_smoke"}


def test_chapter_02_reading_ranks_the_rows_per_dataset() -> None:
    def record(label, best, gradient="backprop"):
        return {"label": label, "best_acc": best, "last_acc": best - 0.01, "gradient": gradient,
                "saved_mb": 1.5, "nfe_forward": 26.0, "nfe_backward": 0.0}

    by = {("digits", label): record(label, best) for label, best in
          (("HomoODE", 0.8), ("DEQ", 0.9), ("Neural ODE", 0.7))}
    text = prose.comparison_reading(by, {"digits": 0})
    assert text.startswith("**digits, seed 0.** Best test accuracy: DEQ 90.0 % (last 89.0 %), "
                           "HomoODE 80.0 %")
    assert "the Neural ODE 1.50 MB." in text
    smoke = prose.comparison_smoke_text({"epochs": 3, "iterations_per_epoch": 25,
                                         "params": 12345}, 360)
    assert "3 epochs of 25 iterations" in smoke and "12,345 parameters" in smoke
    assert "one image is 0.28 points" in smoke
    assert _glue_names("02_homoode_main") == {"comparison_reading", "comparison_smoke"}


def _with_injected_cell(tmp_path: Path) -> Path:
    """A notebook with a parameters cell and papermill's injected cell, as papermill writes it."""
    from papermill.parameterize import parameterize_notebook

    cells = [nbformat.v4.new_code_cell('profile = "smoke"', metadata={"tags": ["parameters"]}),
             nbformat.v4.new_code_cell("print(profile)", metadata={"tags": []})]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"papermill": {}})
    nb = parameterize_notebook(nb, {"profile": "cpu"},
                               kernel_name="python3", language="python")
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, str(path))
    return path


def test_the_injected_parameters_cell_is_removed_from_the_page(tmp_path: Path) -> None:
    source = _with_injected_cell(tmp_path)
    staged = tmp_path / "stage" / "nb.ipynb"
    staged.parent.mkdir()
    assert notebook_tags.stage_executed(source, staged) == 1
    cells = nbformat.read(str(staged), as_version=4).cells
    assert [c.metadata.get("tags", []) for c in cells] == [
        ["parameters"], ["injected-parameters", "remove-cell"], []]
    assert 'profile = "cpu"' in cells[1].source  # still in the downloadable notebook
    assert notebook_tags.tag_executed(staged) == 1  # tagging twice adds nothing
    assert nbformat.read(str(staged), as_version=4).cells[1].metadata["tags"].count(
        "remove-cell") == 1


def test_execute_tags_the_injected_cell(tmp_path: Path, monkeypatch) -> None:
    import papermill

    def execute_notebook(source, target, parameters, **kwargs):
        nbformat.write(nbformat.read(str(_with_injected_cell(tmp_path)), as_version=4),
                       str(target))

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    out = tmp_path / "executed" / "01_homotopy_link.ipynb"
    build.execute(repo_root() / "notebooks" / "01_homotopy_link.ipynb", profile="smoke", out=out,
                  overrides={"results_dir": str(tmp_path)})
    tags = [c.metadata.get("tags", []) for c in nbformat.read(str(out), as_version=4).cells]
    assert ["injected-parameters", "remove-cell"] in tags


def test_compare_outputs_reads_the_glued_values() -> None:
    from deqode.book.compare import cell_outputs

    cell = nbformat.v4.new_code_cell("notebook.glue_values(values)")
    cell.outputs = [nbformat.v4.new_output(
        "display_data", data={"application/papermill.record/text/plain": "65.8"},
        metadata={"scrapbook": {"name": "acc", "mime_prefix": "application/papermill.record/"}})]
    assert cell_outputs(cell) == [("text/plain", "65.8")]
