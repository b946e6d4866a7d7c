"""A scenario value with its uncertainty: nominal, low and high (equal when certain)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Interval:
    nominal: float
    low: float
    high: float

    @property
    def uncertain(self) -> bool:
        return self.low != self.high
