"""A scenario value with its uncertainty (nominal, low and high; equal when certain), and how
the values users write become one: a number, a quantity with its unit (:mod:`.units`),
``[low, high]`` or ``{nominal, low, high}``; rows of a measured shape."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..ui import UserError
from . import units


@dataclass
class Interval:
    nominal: float
    low: float
    high: float

    @property
    def uncertain(self) -> bool:
        return self.low != self.high


def scalar(where: str, v: Any) -> float | None:
    """A number, or a quantity with its unit (``"200 Gb/s"``: :mod:`.units`), in the unit of
    the key ``where`` names; finite and of a physical size, else a UserError."""
    if isinstance(v, bool):
        return None
    if isinstance(v, str):
        try:
            v = units.parse(where.rsplit(".", 1)[-1], v)
        except ValueError as e:
            raise UserError(f"{where}: {e}") from None
    if not isinstance(v, (int, float)):
        return None
    x = float(v)
    if not math.isfinite(x):
        raise UserError(f"{where}={x} is out of range (allowed: a finite number)")
    if x != 0 and abs(x) < TINY:
        raise UserError(f"{where}={x:g} is out of range (allowed: 0 or at least {TINY:g} in "
                        "magnitude: no physical quantity here is smaller)")
    return x


TINY = 1e-30  # smaller than any quantity a scenario states (a latency of 1 ns is 1e-9 s)


def number(where: str, v: Any) -> Interval:
    x = scalar(where, v)
    if x is not None:
        return Interval(x, x, x)
    if isinstance(v, list) and len(v) == 2 and all(scalar(where, e) is not None for e in v):
        lo, hi = scalar(where, v[0]), scalar(where, v[1])
        if lo > hi:
            raise UserError(f"{where}: interval [{lo}, {hi}] has low > high")
        return Interval((lo + hi) / 2, lo, hi)
    if isinstance(v, bool):
        raise UserError(f"{where}: expected a number, got {v!r}")
    if isinstance(v, dict) and set(v) == {"nominal", "low", "high"}:
        iv = Interval(*(float(number(where, v[k]).nominal) for k in ("nominal", "low", "high")))
        if not iv.low <= iv.nominal <= iv.high:
            raise UserError(f"{where}: needs low <= nominal <= high, got {v}")
        return iv
    raise UserError(f"{where}: expected a number (or a quantity such as \"25 GB/s\"), "
                    f"[low, high] or {{nominal, low, high}}, got {v!r}")


def pairs(where: str, v: Any) -> tuple[tuple[float, ...], ...]:
    """Rows ``[batch, relative rate]``, or ``[batch, rate in reading A, rate in reading B]``
    when a measurement can be read two ways (every row the same length)."""
    ok = isinstance(v, list) and len(v) >= 2 and all(
        isinstance(r, list) and len(r) in (2, 3) and len(r) == len(v[0]) and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) and x > 0 for x in r)
        for r in v)
    if not ok:
        raise UserError(f"{where}: expected at least two [batch, relative rate] pairs (or "
                        f"[batch, rate A, rate B] rows, all alike) of positive numbers, "
                        f"got {v!r}")
    rows = sorted(tuple(float(x) for x in r) for r in v)
    if len({r[0] for r in rows}) != len(rows):
        raise UserError(f"{where}: a batch appears twice in {v!r}")
    return tuple(rows)
