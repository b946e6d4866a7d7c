"""Quantities with units where users write them: ``"200 Gb/s"``, ``"25 GB/s"``, ``"2 us"``,
``"19.5 TFLOP/s"``, ``"64 MiB"``, ``"1 kHz"``.

A scenario key's name carries its unit (``_Bps`` bytes per second, ``_s`` seconds, ``_flops``
FLOP/s, ``_bytes`` bytes, ``_hz`` per second): a plain number is in that unit, a string is
converted to it. Bits are 1/8 of a byte; decimal prefixes are powers of 1000, binary ones
(Ki, Mi, Gi, Ti) powers of 1024.
"""

from __future__ import annotations

import re

PREFIX = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
          "Ki": 2.0 ** 10, "Mi": 2.0 ** 20, "Gi": 2.0 ** 30, "Ti": 2.0 ** 40}
TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "min": 60.0, "h": 3600.0}
#: unit family of a key, by the end of its name: (what it is, examples)
FAMILIES = {"_Bps": ("bytes per second", "25 GB/s, 200 Gb/s"),
            "_s": ("seconds", "2 us, 1.5 ms"),
            "_flops": ("FLOP/s", "19.5 TFLOP/s"),
            "_bytes": ("bytes", "25 MiB, 4 MB"),
            "_hz": ("per second", "1 kHz")}
_NUM = r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"


def family(key: str) -> str | None:
    """The unit family of a scenario key (its name's ending), or None."""
    for end in FAMILIES:
        if key.endswith(end):
            return end
    return None


def parse(key: str, text: str) -> float:
    """``text`` (a number and a unit) in the unit of ``key``; ValueError saying what is
    allowed."""
    fam = family(key)
    m = re.fullmatch(r"\s*" + _NUM + r"\s*(\S*)\s*", text)
    if fam is None or m is None:
        allowed = (f"{FAMILIES[fam][0]}, e.g. {FAMILIES[fam][1]}" if fam else "a number")
        raise ValueError(f"{text!r} is not a quantity (allowed: {allowed})")
    value, unit = float(m.group(1)), m.group(2)
    factor = _factor(fam, unit)
    if factor is None:
        raise ValueError(f"{text!r}: unit {unit!r} is not one of {FAMILIES[fam][0]} "
                         f"(e.g. {FAMILIES[fam][1]})")
    return value * factor


def _factor(fam: str, unit: str) -> float | None:
    if fam == "_s":
        return TIME.get(unit) if unit else 1.0
    pattern = {"_Bps": r"(Ki|Mi|Gi|Ti|[kKMGTPE]?)(B|b)(?:/s|ps)",
               "_flops": r"([kKMGTPE]?)FLOP/?s",
               "_bytes": r"(Ki|Mi|Gi|Ti|[kKMGTPE]?)B",
               "_hz": r"([kKMGT]?)Hz"}[fam]
    if not unit:
        return 1.0
    m = re.fullmatch(pattern, unit)
    if m is None:
        return None
    f = PREFIX[m.group(1)]
    if fam == "_Bps" and m.group(2) == "b":
        f /= 8.0  # bits
    return f
