"""Work outside the database that must follow a transaction's outcome (removing files of deleted
rows after a commit, undoing a copy after a rollback)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import event
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)


def _once_the_transaction_ends(session: Session, fn: Callable[[], None], *, on: str) -> None:
    """Run fn once the session's transaction ends in `on` ("commit" or "rollback"), never if it
    ends the other way; a failing fn is logged (it must not break the commit or the rollback)."""
    state = {"done": False}

    def ended(outcome: str):
        def listener(_s):
            if state["done"]:
                return
            state["done"] = True
            if outcome == on:
                try:
                    fn()
                except Exception:  # pragma: no cover - a post-transaction action must not break it
                    log.exception("post-%s action failed", outcome)
        return listener

    event.listen(session, "after_commit", ended("commit"), once=True)
    event.listen(session, "after_rollback", ended("rollback"), once=True)


def after_commit(session: Session, fn: Callable[[], None]) -> None:
    """Run fn once the session's transaction commits (never if it rolls back)."""
    _once_the_transaction_ends(session, fn, on="commit")


def after_rollback(session: Session, fn: Callable[[], None]) -> None:
    """Run fn if the session's transaction rolls back (undo work done outside the database)."""
    _once_the_transaction_ends(session, fn, on="rollback")
