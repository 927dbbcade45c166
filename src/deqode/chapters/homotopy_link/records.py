"""Check records of the homotopy chapter: asserted conditions and the book's number format."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar


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


class CheckRecord:
    """Base of the check records: ``conditions()`` lists what the book asserts."""

    check_id: ClassVar[str] = ""
    claim: ClassVar[str] = ""

    def conditions(self) -> list[Condition]:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def passed(self) -> bool:
        return all(c.ok for c in self.conditions())

    def assert_passed(self) -> None:
        failed = [str(c) for c in self.conditions() if not c.ok]
        if failed:
            raise AssertionError(f"{self.check_id} failed: " + "; ".join(failed))

    def numbers(self) -> dict[str, object]:
        """The measured numbers (the dataclass fields shown in ``repr``), for a JSON record."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.repr}

    def report(self) -> str:
        """The rounded numbers, one condition per line, for a checked notebook cell."""
        lines = [f"{self.check_id}: {self.claim}"]
        lines += [f"  {c}" for c in self.conditions()]
        return "\n".join(lines)


__all__ = ["CheckRecord", "Condition", "fmt"]
