"""Waking background loops when something they wait for happened.

A door (or any service) marks its session with `wake_after_commit`; once that transaction
commits, every registered waker (the scheduler loop, the search driver, ...) is set. Nothing is
woken for a rolled-back transaction. Loops register their threading.Event with `add_waker`, so
services never import the scheduler."""

from __future__ import annotations

import threading

from sqlalchemy import event
from sqlalchemy.orm import Session

_WAKERS: set[threading.Event] = set()
_WAKERS_LOCK = threading.Lock()


def add_waker(ev: threading.Event) -> None:
    with _WAKERS_LOCK:
        _WAKERS.add(ev)


def remove_waker(ev: threading.Event) -> None:
    with _WAKERS_LOCK:
        _WAKERS.discard(ev)


def wake_all() -> None:
    with _WAKERS_LOCK:
        for ev in _WAKERS:
            ev.set()


def wake_after_commit(session: Session) -> None:
    session.info["modelyard_wake"] = True


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    if session.info.pop("modelyard_wake", False):
        wake_all()


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, _previous) -> None:
    session.info.pop("modelyard_wake", None)
