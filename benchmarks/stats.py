"""Medians with min and max, and goal verdicts. Pure."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float
    n: int

    def fmt(self, digits: int = 2, unit: str = "") -> str:
        if self.n == 1:
            return f"{self.median:.{digits}f}{unit}"
        return f"{self.median:.{digits}f}{unit} [{self.low:.{digits}f}-{self.high:.{digits}f}]"


def spread(values: Sequence[float]) -> Spread | None:
    if not values:
        return None
    return Spread(statistics.median(values), min(values), max(values), len(values))


def verdict(value: float | None, goal: float, higher_is_better: bool = True) -> str:
    if value is None:
        return "not measured"
    ok = value >= goal if higher_is_better else value < goal
    return "met" if ok else "**missed**"
