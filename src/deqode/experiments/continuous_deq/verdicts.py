"""Continuous DEQ chapter: decision rules of the claims (thresholds as module constants)."""

__all__: list[str] = []
