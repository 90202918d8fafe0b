"""A job replica's process, through the executor interface: its handle, its executor, its log."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from modelyard.core.enums import JobState
from modelyard.core.errors import NotFound
from modelyard.server.executors.base import Executor, ReplicaHandle, describe_exit, get_executor
from modelyard.server.orm.jobs import JobModel, JobReplicaModel
from modelyard.server.services.common.wake import wake_all
from modelyard.server.services.jobs.service import find_replica


def handle_of(rep: JobReplicaModel) -> ReplicaHandle:
    return ReplicaHandle(name=rep.name, replica_dir=rep.replica_dir or "", log_path=rep.log_path or "",
                         pid=rep.pid, pid_start_time=rep.pid_start_time, external_id=rep.external_id)


def executor_named(ctx: Any, name: str) -> Executor:
    # replicas ending wake every loop in this process (the scheduler notices at once)
    return get_executor(ctx, name or "local", notify=wake_all)


def executor_for(ctx: Any, rep: JobReplicaModel) -> Executor:
    return executor_named(ctx, rep.executor or "local")


def describe_exit_code(code: int | None) -> str:
    return describe_exit(code)


def locate_replica_log(ctx: Any, session: Session, job_id: str, replica: str | None
                       ) -> tuple[ReplicaHandle | None, Executor | None, bool]:
    """(handle, executor, job finished?) of a job's replica log, or (None, None, finished?) while
    the job has no started replica (yet)."""
    job = session.get(JobModel, job_id)
    finished = job is None or JobState(job.state).finished
    if job is None or job.state in ("pending", "queued"):
        return None, None, finished
    try:
        rep = find_replica(session, job, replica)
    except NotFound:
        return None, None, finished
    return handle_of(rep), executor_for(ctx, rep), finished
