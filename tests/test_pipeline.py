"""The notebook contract and the book pipeline (fast checks; no notebook is executed here)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import nbformat
import pytest

from deqode.book import build as book
from deqode.book import notebook
from deqode.choices import UnknownChoiceError
from deqode.paths import repo_root

ROOT = repo_root()
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no notebook"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_contract(path: Path):
    nb = nbformat.read(str(path), as_version=4)
    declared = book.declared_parameters(path)
    assert declared["profile"] == "smoke", "the default profile must be smoke"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "notebook.start(" in code[1].source, "the second code cell must call notebook.start"
    for cell in code:
        assert not cell.get("outputs"), f"{path.name} is committed with outputs"
        assert cell.get("execution_count") is None, f"{path.name} has execution counts"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_in_the_toc(path: Path):
    assert path.stem in book.toc_notebooks(ROOT / "book" / "_toc.yml")


def test_unknown_override_names_the_declared_parameters():
    path = NOTEBOOKS[0]
    with pytest.raises(UnknownChoiceError, match="'profile'") as err:
        book.check_overrides(path, {"no_such_parameter": 1})
    assert "no_such_parameter" in str(err.value)


def test_unknown_profile_in_a_notebook_fails_at_once(tmp_path):
    with pytest.raises(UnknownChoiceError, match="'smoke', 'cpu', 'paper'"):
        notebook.start("x", profile="nonsense", results_dir=tmp_path)


def test_notebook_start_writes_an_environment_record(tmp_path):
    run = notebook.start("contract", profile="smoke", device="cpu", results_dir=tmp_path)
    assert run.out == tmp_path / "smoke" / "contract"
    record = (run.out / "run.json").read_text()
    assert '"torch"' in record and '"device": "cpu (' in record


def _figure_texts(fig) -> list[str]:
    return [text.get_text() for text in fig.texts]


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [(True, notebook.SMOKE_LABEL), ("exact (no training)", "exact (no training)"), (False, None)],
)
def test_run_show_saves_stamps_and_closes_the_figure(tmp_path, stamp, expected):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run = notebook.start("contract", profile="smoke", device="cpu", results_dir=tmp_path)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    assert run.show(fig, "line", stamp=stamp) is None  # a cell ending in run.show shows no value
    path = run.out / "line.png"
    assert path.read_bytes().startswith(b"\x89PNG")
    assert _figure_texts(fig) == ([expected] if expected else [])
    assert not plt.fignum_exists(fig.number), "run.show must close the figure"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_show_figures_through_run_show(path: Path):
    code = "\n".join(c.source for c in nbformat.read(str(path), as_version=4).cells
                     if c.cell_type == "code")
    assert "run.savefig(" not in code and "plots.stamp(" not in code, (
        f"{path.name}: save, stamp and show a figure with run.show(fig, name)"
    )


def test_make_rejects_an_unknown_profile_at_once():
    started = time.monotonic()
    proc = subprocess.run(
        ["make", "-C", str(ROOT), "book", "PROFILE=nonsense"], capture_output=True, text=True
    )
    assert proc.returncode != 0
    assert "valid profiles: smoke cpu paper" in proc.stderr
    assert time.monotonic() - started < 10


def test_runs_table_lists_notebooks_in_toc_order(tmp_path):
    """Rows in book order with a total; what every record shares is said once above the table,
    what differs (here the commit) is a column."""
    from deqode.results import write_json_atomic

    for name, wall, commit in (("a", 1.5, "abc"), ("b", 2.0, "def")):
        write_json_atomic(
            tmp_path / f"{name}.run.json",
            {
                "notebook": name,
                "profile": "smoke",
                "wall_seconds": wall,
                "python": "3.11",
                "torch": "2",
                "torchdiffeq": "0.2.5",
                "device": "cpu",
                "git_commit": commit,
                "executed_at": "now",
            },
        )
    table = book.runs_table(tmp_path, ["b", "a"])
    lines = table.strip().splitlines()
    assert lines[0] == ("Every notebook ran with the same profile: smoke; Python: 3.11; torch: 2; "
                        "torchdiffeq: 0.2.5; device: cpu.")
    assert lines[2] == "| notebook | wall time (s) | git commit | executed |"
    assert lines[4] == "| [b](../notebooks/b.ipynb) | 2.0 | `def` | now |"
    assert lines[5].startswith("| [a]")
    assert lines[6] == "| **total** | **3.5** | | |"
    assert "No list of imported packages in the records of: b, a." in table
    with pytest.raises(FileNotFoundError, match="missing"):
        book.runs_table(tmp_path, ["missing"])


def test_imported_packages_table_names_versions_and_notebooks():
    from deqode.book.build import imported_packages_table

    table = imported_packages_table({
        "01_x": {"imported_packages": {"torch": "2.14.1", "numpy": "2.4.0"}},
        "02_y": {"imported_packages": {"torch": "2.14.1", "Pillow": "13.0.0"}},
        "03_z": {"imported_packages": "unknown"},
    })
    rows = [line for line in table.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[1:] == ["| numpy | 2.4.0 | 01 |", "| Pillow | 13.0.0 | 02 |",
                        "| torch | 2.14.1 | 01, 02 |"]
    assert "records of: 03_z" in table


def _fake_papermill(monkeypatch, failures: list[Exception]) -> list[str]:
    """papermill.execute_notebook that raises ``failures`` in turn, then writes the notebook."""
    import papermill

    calls: list[str] = []

    def execute_notebook(source, target, **kwargs):
        calls.append(source)
        if failures:
            raise failures.pop(0)
        Path(target).write_text(Path(source).read_text())

    monkeypatch.setattr(papermill, "execute_notebook", execute_notebook)
    return calls


def test_execute_starts_a_dead_kernel_again(tmp_path, monkeypatch):
    """A kernel that dies before any cell ran (a port collision of kernels started side by side)
    is started again; the notebook then runs once."""
    calls = _fake_papermill(monkeypatch, [RuntimeError(book.KERNEL_START_FAILURE)])
    source = repo_root() / "notebooks" / "01_homotopy_link.ipynb"
    out = tmp_path / "01.ipynb"
    book.execute(source, profile="smoke", out=out, overrides={"results_dir": str(tmp_path)})
    assert len(calls) == 2 and out.is_file()


def test_execute_does_not_repeat_a_failing_notebook(tmp_path, monkeypatch):
    calls = _fake_papermill(monkeypatch, [RuntimeError("a cell raised")])
    source = repo_root() / "notebooks" / "01_homotopy_link.ipynb"
    with pytest.raises(RuntimeError, match="a cell raised"):
        book.execute(source, profile="smoke", out=tmp_path / "01.ipynb",
                     overrides={"results_dir": str(tmp_path)})
    assert len(calls) == 1


def _executed(folder: Path, checked_text: str, timing_text: str) -> None:
    nb = nbformat.v4.new_notebook()
    checked = nbformat.v4.new_code_cell("# NBVAL_CHECK_OUTPUT\nprint(accuracy)")
    checked.outputs = [nbformat.v4.new_output("stream", name="stdout", text=checked_text)]
    timed = nbformat.v4.new_code_cell("print(table)")
    timed.outputs = [nbformat.v4.new_output("stream", name="stdout", text=timing_text)]
    nb.cells = [checked, timed]
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / "01_x.ipynb")


def test_compare_outputs_tells_results_from_timings(tmp_path):
    from deqode.book.compare import compare

    _executed(tmp_path / "a", "accuracy 0.91\n", "s/epoch 1.25\nstep took 3.1 ms\n")
    _executed(tmp_path / "b", "accuracy 0.91\n", "s/epoch 1.40\nstep took 2.7 ms\n")
    _executed(tmp_path / "c", "accuracy 0.92\n", "s/epoch 1.25\nstep took 3.1 ms\n")
    same, report = compare(tmp_path / "a", tmp_path / "b")
    assert same and "checked cells IDENTICAL" in report and "all text outputs DIFFER" in report
    assert "TIME" not in report.split("\n", 1)[0] and "+stream: s/epoch 1.40" in report
    same, report = compare(tmp_path / "a", tmp_path / "c")
    assert not same and "checked cells DIFFER" in report
