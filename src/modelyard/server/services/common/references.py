"""Cross-domain "in use" checks, so deleting an image, dataset version or model version that a
job or service uses is refused without the owning domain importing every user of it.

A domain that references others registers a check at import time:

    @references.checker("model_version")
    def _jobs_using(session, obj_id) -> str | None:   # a reason, or None
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

from sqlalchemy.orm import Session

from modelyard.core.errors import InUse

Check = Callable[[Session, str], "str | None"]
_CHECKS: dict[str, list[Check]] = defaultdict(list)


def checker(kind: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        _CHECKS[kind].append(fn)
        return fn

    return register


def remove_checker(kind: str, fn: Check) -> None:
    """Unregister a check (tests that register a temporary one)."""
    _CHECKS[kind].remove(fn)


def ensure_unused(session: Session, kind: str, obj_id: str) -> None:
    reasons = [r for check in _CHECKS[kind] if (r := check(session, obj_id))]
    if reasons:
        raise InUse(f"{kind} {obj_id} is in use: " + "; ".join(reasons), details={"used_by": reasons})
