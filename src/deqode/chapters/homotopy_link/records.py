"""Check records of the homotopy chapter: asserted conditions and the book's number format."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def fmt(value: float) -> str:
    """Numbers as the book prints them: 1 significant digit at round-off level, else 4."""
    if isinstance(value, bool):
        return str(value)
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    return f"{value:.0e}" if abs(value) < 1e-6 else f"{value:.4g}"


@dataclass(frozen=True)
class Condition:
    """One asserted comparison ``value op bound`` (a yes/no fact when ``bound`` is a bool)."""

    name: str
    value: float | bool
    op: str
    bound: float | bool

    @property
    def ok(self) -> bool:
        ops: dict[str, Callable[[float, float], bool]] = {
            "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
            ">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "==": lambda a, b: a == b,
        }
        return bool(ops[self.op](self.value, self.bound))

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        if isinstance(self.bound, bool):
            return f"{self.name}: {bool(self.value)} (expected {self.bound}): {verdict}"
        return f"{self.name} = {fmt(self.value)} {self.op} {fmt(self.bound)}: {verdict}"


@dataclass(frozen=True)
class Check:
    """What one check asserts: its id, its claim and the conditions on a record's numbers.

    ``conditions`` and ``details`` read the record by attribute (``r.residual``), so a record
    built from other numbers (a test's, or :meth:`CheckRecord.replace`) is judged afresh.
    ``details`` adds report lines that are not conditions (a table, a number shown for contrast).
    """

    check_id: str
    claim: str
    conditions: Callable[[CheckRecord], list[Condition]]
    details: Callable[[CheckRecord], list[str]] | None = None

    def record(self, numbers: dict[str, Any], **artifacts: Any) -> CheckRecord:
        return CheckRecord(self, numbers, **artifacts)


class CheckRecord:
    """One check's outcome: the measured ``numbers`` (in the order the JSON record keeps them)
    and ``artifacts`` for the plots (paths, trajectories), both readable as attributes."""

    def __init__(self, check: Check, numbers: dict[str, Any], **artifacts: Any) -> None:
        shared = numbers.keys() & artifacts.keys()
        shadowing = (numbers.keys() | artifacts.keys()) & set(dir(type(self)))
        if shared or shadowing:
            raise ValueError(f"{check.check_id}: names {sorted(shared | shadowing)} are used "
                             "twice or hide a CheckRecord attribute; rename them")
        self.check = check
        self._numbers = dict(numbers)
        self._artifacts = artifacts

    def __getattr__(self, name: str) -> Any:
        if not name.startswith("_"):
            for values in (self._numbers, self._artifacts):
                if name in values:
                    return values[name]
        known = sorted({*self.__dict__.get("_numbers", ()), *self.__dict__.get("_artifacts", ())})
        raise AttributeError(f"check record has no {name!r}; it holds {known}")

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._numbers.items())
        return f"CheckRecord({self.check_id}: {inner})"

    @property
    def check_id(self) -> str:
        return self.check.check_id

    @property
    def claim(self) -> str:
        return self.check.claim

    def numbers(self) -> dict[str, Any]:
        """The measured numbers, for a JSON record (the artifacts are left out)."""
        return dict(self._numbers)

    def replace(self, **changes: Any) -> CheckRecord:
        """The same record with some numbers changed (e.g. to show a condition failing)."""
        unknown = sorted(changes.keys() - self._numbers.keys())
        if unknown:
            raise ValueError(f"{self.check_id} has no numbers {unknown}; "
                             f"valid: {list(self._numbers)}")
        return CheckRecord(self.check, {**self._numbers, **changes}, **self._artifacts)

    def conditions(self) -> list[Condition]:
        return self.check.conditions(self)

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.conditions())

    def assert_passed(self) -> None:
        failed = [str(c) for c in self.conditions() if not c.ok]
        if failed:
            raise AssertionError(f"{self.check_id} failed: " + "; ".join(failed))

    def report(self) -> str:
        """The rounded numbers, one condition per line, for a checked notebook cell."""
        lines = [f"{self.check_id}: {self.claim}"]
        lines += [f"  {c}" for c in self.conditions()]
        lines += self.check.details(self) if self.check.details else []
        return "\n".join(lines)


__all__ = ["Check", "CheckRecord", "Condition", "fmt"]
