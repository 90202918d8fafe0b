"""The one place where a job's state changes.

    pending ──► queued ──► starting ──► running ──► succeeded
       │           │           │           ├──────► failed ────┐
       └───────────┴───────────┴───────────┴──────► cancelled ─┴─► queued (resume: a new attempt)

`transition()` validates the edge, compare-and-sets the state (so two actors — the scheduler loop,
an API handler, a second scheduler — can never both move the same job), sets the timestamps,
releases the job's allocations on every terminal state (in the same transaction), and writes the
event. After the transaction commits, every scheduler in this process is woken, so released
resources start the next queued job at once.
"""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import event, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from modelyard.core.enums import JobState
from modelyard.core.errors import Conflict
from modelyard.server.orm.base import utcnow
from modelyard.server.orm.jobs import JobModel, JobReplicaModel
from modelyard.server.scheduler import ledger
from modelyard.server.services import events

S = JobState
EDGES: dict[JobState, frozenset[JobState]] = {
    S.pending: frozenset({S.queued, S.failed, S.cancelled}),
    S.queued: frozenset({S.starting, S.failed, S.cancelled}),
    S.starting: frozenset({S.running, S.failed, S.cancelled}),
    S.running: frozenset({S.succeeded, S.failed, S.cancelled}),
    S.failed: frozenset({S.queued}),
    S.cancelled: frozenset({S.queued}),
    S.succeeded: frozenset(),
}
TERMINAL = frozenset({S.succeeded, S.failed, S.cancelled})
ACTIVE_REPLICA_STATES = ("pending", "starting", "running")


class StaleState(Conflict):
    """The job changed state under us (another actor moved it first)."""

    code = "state_changed"


# --- waking schedulers ----------------------------------------------------------------------

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


# --- the transition -------------------------------------------------------------------------

def check_edge(frm: str | JobState, to: str | JobState) -> None:
    frm, to = JobState(frm), JobState(to)
    if to not in EDGES[frm]:
        raise Conflict(f"a job cannot go from {frm.value} to {to.value}", code="invalid_transition",
                       details={"from": frm.value, "to": to.value,
                                "allowed": sorted(s.value for s in EDGES[frm])})


def transition(session: Session, job: JobModel, to_state: str | JobState, *, actor_id: str | None = None,
               reason: str = "", data: dict[str, Any] | None = None) -> JobModel:
    """Move job to to_state inside the caller's transaction (the caller commits)."""
    frm, to = JobState(job.state), JobState(to_state)
    check_edge(frm, to)
    now = utcnow()
    values: dict[str, Any] = {"state": to.value, "updated_at": now}
    if to is S.queued:
        values.update(queued_at=now, started_at=None, running_at=None, finished_at=None, error=None,
                      cancel_requested_at=None)
    elif to is S.starting:
        values["started_at"] = now
    elif to is S.running:
        values["running_at"] = now
    if to in TERMINAL:
        values["finished_at"] = now
        if to is S.failed:
            values["error"] = (reason or "failed")[:4000]
    res = session.execute(
        update(JobModel).where(JobModel.id == job.id, JobModel.state == frm.value).values(**values)
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:
        session.expire(job, ["state"])
        raise StaleState(f"job {job.id} is no longer {frm.value}", details={"expected": frm.value})
    for k, v in values.items():
        set_committed_value(job, k, v)
    released = 0
    if to in TERMINAL:
        released = ledger.release(session, consumer_type="job", consumer_id=job.id)
        session.execute(
            update(JobReplicaModel).where(JobReplicaModel.job_id == job.id,
                                          JobReplicaModel.state.in_(ACTIVE_REPLICA_STATES))
            .values(state=to.value, finished_at=now)
            .execution_options(synchronize_session="fetch"))
    payload = {"from": frm.value, "to": to.value, "attempt": job.attempt}
    if reason:
        payload["reason"] = reason
    if released:
        payload["released_allocations"] = released
    payload.update(data or {})
    events.record(session, actor_id=actor_id, kind="job.state_changed", object_type="job", object_id=job.id,
                  message=f"{frm.value} -> {to.value}" + (f": {reason}" if reason else ""), data=payload)
    wake_after_commit(session)
    return job
