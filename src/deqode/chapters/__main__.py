"""``python -m deqode.chapters plan``: which chapters a book builds (``make book CHAPTERS=...``).

Checks the data sets of the chapters asked for (all chapters when none are: then a chapter
whose data sets are missing is left out, with the reason), writes the plan as JSON for
``python -m deqode.book assemble --plan`` and the executed notebooks' paths, one a line, for make.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from deqode.choices import PROFILES, UnknownChoiceError
from deqode.errors import DatasetMissingError


def _write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` unless ``path`` holds it already (make then sees no newer file)."""
    from deqode.results import write_text_atomic

    if not path.is_file() or path.read_text() != text:
        write_text_atomic(path, text)


def main(argv: list[str] | None = None) -> int:
    from deqode import chapters
    from deqode.results import read_json, write_json_atomic

    parser = argparse.ArgumentParser(prog="python -m deqode.chapters", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    plan = sub.add_parser("plan", help="check the chapters' data sets and write the book's plan")
    plan.add_argument("--profile", required=True, help=f"one of {', '.join(PROFILES)}")
    plan.add_argument("--chapters", default="",
                      help="chapters, separated by spaces (default: every chapter whose data "
                      f"sets are present): {', '.join(chapters.chapter_names())}")
    plan.add_argument("--data-root", default="data")
    plan.add_argument("--out", required=True, help="the plan (JSON)")
    plan.add_argument("--targets", help="write the executed notebooks' paths here, one a line")
    plan.add_argument("--executed", help="folder of the executed notebooks (for --targets)")
    plan.add_argument("--make-params", help="write PARAMS_<notebook> := -p NAME VALUE ... here")
    args = parser.parse_args(argv)
    try:
        asked = args.chapters.split() or None
        record = chapters.book_plan(args.profile, asked, args.data_root)
    except (UnknownChoiceError, DatasetMissingError) as err:
        print(f"deqode: error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    if not out.is_file() or read_json(out) != record:  # unchanged plan: make rebuilds nothing
        write_json_atomic(out, record)
    if args.targets:
        folder = Path(args.executed or ".")
        _write_if_changed(Path(args.targets),
                          "".join(f"{folder / nb}.ipynb\n" for nb in record["notebooks"]))
    if args.make_params:
        _write_if_changed(Path(args.make_params), "".join(
            f"PARAMS_{nb} := " + " ".join(f"-p {k} '{json.dumps(v)}'" for k, v in p.items())
            + "\n" for nb, p in record["parameters"].items()))
    built = ", ".join(record["chapters"]) or "none"
    print(f"book ({args.profile}): chapters {built}")
    for chapter, reason in record["not_built"].items():
        print(f"book ({args.profile}): {chapter}: {reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
