"""Work outside the database that must follow a transaction's outcome (removing files of deleted rows)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)


def after_commit(session: Session, fn: Callable[[], None]) -> None:
    """Run fn once the session's transaction commits (never if it rolls back)."""
    state = {"done": False}

    def on_commit(_s):
        if not state["done"]:
            state["done"] = True
            try:
                fn()
            except Exception:  # pragma: no cover - a post-commit action must not break the commit
                log.exception("post-commit action failed")

    def on_rollback(_s):
        state["done"] = True

    event.listen(session, "after_commit", on_commit, once=True)
    event.listen(session, "after_rollback", on_rollback, once=True)
