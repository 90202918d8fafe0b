"""The one door through which a job's state changes (the table is core/states.JOB).

    pending ──► queued ──► starting ──► running ──► succeeded
       │           │           │           ├──────► failed ────┐
       └───────────┴───────────┴───────────┴──────► cancelled ─┴─► queued (resume: a new attempt)

Side effects, in order: stamp the state's timestamps; on every terminal state release the job's
allocations and end its live replicas (same transaction); wake the scheduler after the commit,
so released resources start the next queued job at once. Replica rows have their own door."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update

from modelyard.core.enums import JobState
from modelyard.core.states import JOB, JOB_TERMINAL, REPLICA
from modelyard.server.orm.base import utcnow
from modelyard.server.orm.jobs import JobModel, JobReplicaModel
from modelyard.server.services.common.door import Move, StaleState, StateDoor, effect, wake_scheduler
from modelyard.server.services.quota import ledger

TERMINAL = JOB_TERMINAL
ACTIVE_REPLICA_STATES = tuple(sorted(REPLICA.active))

__all__ = ["ACTIVE_REPLICA_STATES", "JOB_DOOR", "REPLICA_DOOR", "TERMINAL", "StaleState", "check_edge",
           "move_replica", "transition"]


def _job_values(m: Move) -> dict[str, Any]:
    now = utcnow()
    to = JobState(m.to)
    if to is JobState.queued:
        return dict(queued_at=now, started_at=None, running_at=None, finished_at=None, error=None,
                    cancel_requested_at=None)
    if to is JobState.starting:
        return {"started_at": now}
    if to is JobState.running:
        return {"running_at": now}
    if to in TERMINAL:
        vals: dict[str, Any] = {"finished_at": now}
        if to is JobState.failed:
            vals["error"] = (m.reason or "failed")[:4000]
        return vals
    return {}


@effect("release allocations", when=lambda m: m.terminal)
def release_allocations(m: Move) -> None:
    released = ledger.release(m.session, consumer_type="job", consumer_id=m.obj.id)
    if released:
        m.payload["released_allocations"] = released


@effect("end live replicas", when=lambda m: m.terminal)
def end_live_replicas(m: Move) -> None:
    # the job's ending is the replicas' ending; each row's own edge (active -> terminal) holds
    m.session.execute(
        update(JobReplicaModel).where(JobReplicaModel.job_id == m.obj.id,
                                      JobReplicaModel.state.in_(ACTIVE_REPLICA_STATES))
        .values(state=m.to, finished_at=utcnow())
        .execution_options(synchronize_session="fetch"))


@effect("note the attempt")
def note_attempt(m: Move) -> None:
    m.payload["attempt"] = m.obj.attempt


JOB_DOOR = StateDoor(JOB, JobModel, "job.state_changed", values=_job_values,
                     effects=[note_attempt, release_allocations, end_live_replicas, wake_scheduler])


def check_edge(frm: str | JobState, to: str | JobState) -> None:
    JOB.check(str(frm), str(to))


def transition(session, job: JobModel, to_state: str | JobState, *, actor_id: str | None = None,
               reason: str = "", data: dict[str, Any] | None = None) -> JobModel:
    """Move job to to_state inside the caller's transaction (the caller commits)."""
    return JOB_DOOR.move(session, job, str(to_state), actor_id=actor_id, reason=reason, data=data)


def _replica_values(m: Move) -> dict[str, Any]:
    if m.to == "starting":
        return {"finished_at": None, "exit_code": None}
    if m.to in REPLICA.terminal:
        return {"finished_at": utcnow()}
    return {}


REPLICA_DOOR = StateDoor(REPLICA, JobReplicaModel, "replica.state_changed", values=_replica_values,
                         effects=[wake_scheduler], label=lambda r: f"{r.job_id}/{r.role}-{r.index}")


def move_replica(session, rep: JobReplicaModel, to: str, *, reason: str = "", values: dict[str, Any] | None = None,
                 data: dict[str, Any] | None = None) -> JobReplicaModel:
    return REPLICA_DOOR.move(session, rep, to, reason=reason, values=values, data=data)
