"""Resource units. Memory is tracked in MiB everywhere inside; the seed speaks GiB ('remainMemory')."""

from __future__ import annotations

import re

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([KMGTP]?i?B?)?\s*$", re.I)
_MULT = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}


def parse_bytes(text: str | int | float) -> int:
    """'1.5GiB', '512M', '100' → bytes (binary units)."""
    if isinstance(text, int | float):
        return int(text)
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r}")
    unit = (m.group(2) or "").upper().replace("I", "").replace("B", "") or ""
    return int(float(m.group(1)) * _MULT[unit])


def mib_to_gib(mib: int | float) -> float:
    return round(mib / 1024, 3)


def gib_to_mib(gib: int | float) -> int:
    return int(round(float(gib) * 1024))
