"""The claims ledger: every headline claim of the four papers, with a verdict from our own runs.

The catalogue of claims (the papers' words and where they stand) is data, in
``data/reference/claims.csv``: one row per claim, columns ``id, paper, claim, words, source,
notebook``. A notebook that tests a claim writes one :class:`Evidence` record per claim with
:func:`record`; it lands atomically in ``results/<profile>/claims/<id>.json``. The book's
``assemble`` step joins catalogue and records into the ledger page (:func:`ledger_markdown`).

A verdict is never typed: a chapter computes it with a decision rule whose thresholds are module
constants fixed before the run, and passes the rule's text along, so that the page shows both.
``not decidable at this scale`` needs a *measured* reason (:func:`record` refuses it without one).
The small statistics helpers here (:func:`mean_std`, :func:`summarise`, :func:`compare`) are what
the chapters' rules are built from.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deqode.choices import check_choice, check_profile
from deqode.paths import repo_root
from deqode.paths import results_dir as _results_dir
from deqode.results import read_json, write_json_atomic

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
MIXED = "mixed"
NOT_DECIDABLE = "not decidable at this scale"
VERDICTS = (SUPPORTED, NOT_SUPPORTED, MIXED, NOT_DECIDABLE)
#: Shown for a catalogue claim that no notebook of this build recorded.
NOT_RUN = "not run in this build"

CATALOGUE = Path("data") / "reference" / "claims.csv"
CATALOGUE_COLUMNS = ("id", "paper", "claim", "words", "source", "notebook")


@dataclass(frozen=True)
class Claim:
    """One headline claim of a paper, as the catalogue gives it."""

    id: str
    paper: str
    claim: str
    words: str
    source: str
    notebook: str


@dataclass(frozen=True)
class Evidence:
    """What one build measured for one claim, and the verdict its rule computed.

    - ``ran``: what we ran (profile-specific: data, widths, seeds, budget).
    - ``measured``: the measured quantity with its spread, as a sentence.
    - ``rule``: the decision rule in words, built from the constants that decided it.
    - ``verdict``: one of :data:`VERDICTS`; ``reason``: why (required for not decidable).
    - ``values``: the numbers behind ``measured`` (per seed), for readers and tests.
    - ``section``: the heading of the notebook section that produced it.
    """

    claim_id: str
    profile: str
    ran: str
    measured: str
    rule: str
    verdict: str
    notebook: str
    section: str
    reason: str = ""
    values: Mapping[str, Any] = field(default_factory=dict)


def load_catalogue(path: str | Path | None = None) -> dict[str, Claim]:
    """The claims of ``data/reference/claims.csv`` by id, in file order."""
    path = Path(path) if path is not None else repo_root() / CATALOGUE
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != CATALOGUE_COLUMNS:
            raise ValueError(f"{path}: columns {reader.fieldnames}, expected {CATALOGUE_COLUMNS}")
        claims = [Claim(**row) for row in reader]
    by_id = {c.id: c for c in claims}
    if len(by_id) != len(claims):
        raise ValueError(f"{path}: a claim id appears twice")
    return by_id


def record(evidence: Evidence, results_dir: str | Path = "results",
           catalogue: Mapping[str, Claim] | None = None) -> Path:
    """Check ``evidence`` and write it to ``results/<profile>/claims/<claim_id>.json``."""
    check_profile(evidence.profile)
    check_choice("verdict", evidence.verdict, VERDICTS)
    claims = load_catalogue() if catalogue is None else catalogue
    check_choice("claim id (data/reference/claims.csv)", evidence.claim_id, list(claims))
    if evidence.verdict == NOT_DECIDABLE and not evidence.reason.strip():
        raise ValueError(
            f"claim {evidence.claim_id}: 'not decidable' needs a measured reason, got none"
        )
    for name in ("ran", "measured", "rule", "section"):
        if not str(getattr(evidence, name)).strip():
            raise ValueError(f"claim {evidence.claim_id}: evidence field {name!r} is empty")
    folder = _results_dir(evidence.profile, "claims", root=results_dir)
    return write_json_atomic(folder / f"{evidence.claim_id}.json", asdict(evidence))


def load_records(profile: str, results_dir: str | Path = "results") -> dict[str, Evidence]:
    """Every evidence record written for ``profile``, by claim id."""
    check_profile(profile)
    folder = Path(results_dir)
    if not folder.is_absolute():
        folder = repo_root() / folder
    folder = folder / profile / "claims"
    records = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        data = read_json(path)
        records[data["claim_id"]] = Evidence(**data)
    return records


# ---------------------------------------------------------------------------------------------
# statistics the rules are built from


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = [float(v) for v in values]
    if not values:
        raise ValueError("mean_std of no values")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(var)


def summarise(values: Sequence[float], digits: int = 2, unit: str = "") -> str:
    """``mean ± std (per seed: a, b, c)`` with ``digits`` decimals."""
    mean, std = mean_std(values)
    per_seed = ", ".join(f"{v:.{digits}f}" for v in values)
    return f"{mean:.{digits}f} ± {std:.{digits}f}{unit} (per seed: {per_seed})"


def compare(a: Sequence[float], b: Sequence[float], margin: float) -> str:
    """``"higher"``, ``"lower"`` or ``"equal"``: is mean(a) above mean(b) beyond the noise?

    The difference of the means counts only when it exceeds both ``margin`` and twice the
    standard error of that difference (``sqrt(s_a²/n_a + s_b²/n_b)``); otherwise ``"equal"``.
    """
    mean_a, std_a = mean_std(a)
    mean_b, std_b = mean_std(b)
    noise = 2.0 * math.sqrt(std_a**2 / len(a) + std_b**2 / len(b))
    diff = mean_a - mean_b
    if abs(diff) <= max(margin, noise):
        return "equal"
    return "higher" if diff > 0 else "lower"


def combine(verdicts: Iterable[str]) -> str:
    """One verdict from parts: all supported → supported, none → not supported, else mixed.

    Any not-decidable part makes the whole not decidable (its reason must be given).
    """
    parts = list(verdicts)
    for v in parts:
        check_choice("verdict", v, VERDICTS)
    if not parts:
        raise ValueError("combine of no verdicts")
    if NOT_DECIDABLE in parts:
        return NOT_DECIDABLE
    if all(v == SUPPORTED for v in parts):
        return SUPPORTED
    if all(v == NOT_SUPPORTED for v in parts):
        return NOT_SUPPORTED
    return MIXED


# ---------------------------------------------------------------------------------------------
# the page


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def heading_anchor(section: str) -> str:
    """The anchor MyST gives the heading ``section`` (``myst_heading_anchors``)."""
    return re.sub(r"[^\w\- ]", "", section.strip().lower()).replace(" ", "-")


def ledger_markdown(profile: str, catalogue: Mapping[str, Claim],
                    records: Mapping[str, Evidence], label: str) -> str:
    """The ledger page: one section per paper, one table row per catalogue claim."""
    check_profile(profile)
    unknown = sorted(set(records) - set(catalogue))
    if unknown:
        raise ValueError(f"records for claims not in the catalogue: {unknown}")
    counts = {v: 0 for v in (*VERDICTS, NOT_RUN)}
    lines = [
        f"# Claims ledger ({profile} profile)",
        "",
        f"*{label}.* This page is generated when the book is built, from the catalogue "
        "`data/reference/claims.csv` (the papers' words) and the evidence records the chapters "
        f"wrote in `results/{profile}/claims/`. Each verdict was computed by the decision rule "
        "shown with it, whose thresholds are constants in `deqode` fixed before the runs; "
        "none is typed. A verdict holds for the runs described in its row only.",
        "",
    ]
    papers: dict[str, list[Claim]] = {}
    for claim in catalogue.values():
        papers.setdefault(claim.paper, []).append(claim)
    body: list[str] = []
    for paper, claims in papers.items():
        rows = ["| claim | verdict |", "|---|---|"]
        details: list[str] = []
        for claim in claims:
            ev = records.get(claim.id)
            verdict = NOT_RUN if ev is None else ev.verdict
            counts[verdict] += 1
            rows.append(f"| **{claim.id}** {_cell(claim.claim)} | **{verdict}** |")
            details += [f"### {claim.id}: {claim.claim}", "",
                        f"- **The paper:** “{_cell(claim.words)}” ({_cell(claim.source)})"]
            if ev is None:
                details += [f"- **Where it is tested:** [{claim.notebook}]"
                            f"(../notebooks/{claim.notebook}.ipynb)",
                            f"- **Verdict:** **{NOT_RUN}**", ""]
                continue
            link = (f"[{ev.notebook}, {_cell(ev.section)}]"
                    f"(../notebooks/{ev.notebook}.ipynb#{heading_anchor(ev.section)})")
            reason = f": {_cell(ev.reason)}" if ev.reason else ""
            details += [f"- **What we ran:** {_cell(ev.ran)} ({link})",
                        f"- **Measured:** {_cell(ev.measured)}",
                        f"- **Rule (fixed in code before the run):** {_cell(ev.rule)}",
                        f"- **Verdict:** **{ev.verdict}**{reason}", ""]
        body += [f"## {paper}", "", *rows, "", *details]
    summary = ", ".join(f"{n} {v}" for v, n in counts.items() if n)
    lines += [f"**{len(catalogue)} claims:** {summary}.", "", *body]
    return "\n".join(lines) + "\n"
