"""Compare the text outputs of two folders of executed notebooks, as nbval sees them.

Used to show that a refactor leaves the book's results unchanged: per notebook, the outputs of
the cells marked ``NBVAL_CHECK_OUTPUT`` (what nbval checks) and, separately, every text output
(stream text, the text of rich outputs and of the values glued into the prose, errors), with
wall times and memory addresses sanitised as ``tests/nbval_sanitize.cfg`` does and split stream
chunks joined. Figures are counted, not
compared. Timing tables are not sanitised, so "all text outputs" differs between any two runs
that print measured times.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any

SANITISE = ((re.compile(r"0x[0-9a-fA-F]+"), "0xADDRESS"),
            (re.compile(r"\d+(\.\d+)?\s?(ms|s|sec|seconds)\b"), "TIME"))
RICH_TEXT = ("text/markdown", "text/html", "text/plain", "text/latex")
#: The MIME prefix of values glued (myst-nb) without being shown: numbers and text of the prose.
GLUE_PREFIX = "application/papermill.record/"
CHECK_MARK = "NBVAL_CHECK_OUTPUT"

Output = tuple[str, str]


def sanitise(text: str) -> str:
    for pattern, replacement in SANITISE:
        text = pattern.sub(replacement, text)
    return text


def _join_streams(outputs: list[Output]) -> list[Output]:
    joined: list[Output] = []
    for kind, text in outputs:
        if kind == "stream" and joined and joined[-1][0] == "stream":
            joined[-1] = ("stream", joined[-1][1] + text)
        else:
            joined.append((kind, text))
    return joined


def cell_outputs(cell: dict[str, Any]) -> list[Output]:
    """The sanitised text outputs of one code cell (stderr left out)."""
    out: list[Output] = []
    for output in cell.get("outputs", []):
        kind = output["output_type"]
        if kind == "stream" and output.get("name") != "stderr":
            out.append(("stream", sanitise("".join(output["text"]))))
        elif kind in ("execute_result", "display_data"):
            data = {k.removeprefix(GLUE_PREFIX): v for k, v in output["data"].items()}
            key = next((k for k in RICH_TEXT if k in data), None)
            if key is not None:
                out.append((key, sanitise("".join(data[key]))))
            if "image/png" in data:
                out.append(("image", "png"))
        elif kind == "error":
            out.append(("error", f"{output['ename']}: {output['evalue']}"))
    return _join_streams(out)


def notebook_outputs(path: Path) -> tuple[list[Output], list[list[Output]]]:
    """All text outputs (papermill's injected-parameters cell left out) and those of the
    checked cells, in order."""
    every: list[Output] = []
    checked: list[list[Output]] = []
    for cell in json.loads(path.read_text())["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if cell["cell_type"] != "code" or "injected-parameters" in tags:
            continue
        outputs = cell_outputs(cell)
        every = _join_streams(every + outputs)
        if CHECK_MARK in "".join(cell["source"]):
            checked.append(outputs)
    return every, checked


def _lines(outputs: list[Output]) -> list[str]:
    return [f"{kind}: {line}" for kind, text in outputs for line in text.splitlines()]


def compare(base: Path, new: Path, stems: list[str] | None = None, context: int = 30
            ) -> tuple[bool, str]:
    """Whether every checked cell of every notebook is identical, and a report (one line per
    notebook, then the first ``context`` lines of each difference of all text outputs)."""
    stems = stems or sorted(p.stem for p in Path(base).glob("*.ipynb")
                            if not p.stem.endswith(".failed"))
    lines, same = [], True
    for stem in stems:
        path = Path(new) / f"{stem}.ipynb"
        if not path.is_file():
            lines.append(f"{stem}: missing in {new}")
            same = False
            continue
        every_a, checked_a = notebook_outputs(Path(base) / f"{stem}.ipynb")
        every_b, checked_b = notebook_outputs(path)
        same &= checked_a == checked_b
        lines.append(f"{stem}: checked cells {'IDENTICAL' if checked_a == checked_b else 'DIFFER'}"
                     f" ({len(checked_a)} vs {len(checked_b)}); all text outputs "
                     f"{'IDENTICAL' if every_a == every_b else 'DIFFER'}")
        if every_a != every_b:
            diff = difflib.unified_diff(_lines(every_a), _lines(every_b), lineterm="", n=0)
            lines += [f"    {d}" for d in list(diff)[:context]]
    return same, "\n".join(lines)


__all__ = ["cell_outputs", "compare", "notebook_outputs", "sanitise"]
