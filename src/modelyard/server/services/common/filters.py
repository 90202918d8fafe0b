"""List filters over enumerated values (states, kinds, strategies): a value the column can never
hold is refused with 400 and the valid list, never answered with a silently empty page; common
spellings are mapped (canceled -> cancelled)."""

from __future__ import annotations

from collections.abc import Iterable

from modelyard.core.errors import BadRequest

SPELLINGS = {"canceled": "cancelled", "cancelling": "cancelled", "canceling": "cancelled",
             "success": "succeeded", "successful": "succeeded", "completed": "succeeded", "error": "failed"}


def enum_filter(values: Iterable[str] | None, allowed: Iterable[str], *, what: str,
                aliases: dict[str, str] | None = None) -> list[str] | None:
    """The filter's values in their stored spelling, or 400 `invalid_filter` naming the bad one."""
    if not values:
        return None
    allowed = list(allowed)
    spell = {**SPELLINGS, **(aliases or {})}
    out = []
    for raw in values:
        v = raw.strip().lower()
        v = v if v in allowed else spell.get(v, v)
        if v not in allowed:
            raise BadRequest(f"unknown {what} {raw!r}; valid: {', '.join(allowed)}", code="invalid_filter",
                             details={"field": what, "value": raw, "valid": allowed})
        out.append(v)
    return out
