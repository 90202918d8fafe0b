"""The doors through which a service, a service version and a service replica change state (the
tables are core/states.SERVICE, SERVICE_VERSION, SERVICE_REPLICA).

Side effects, in order:
- service: stamp/clear its error; wake the loops (the serving reconciler acts on the new state).
- replica: stamp its times; on leaving `ready` or becoming ready, wake the loops (the gateway's
  route snapshot changes); on a terminal state, cancel its serve job (the job's own door then
  releases its allocations), so no replica ever ends with its resources still held.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from modelyard.core.states import SERVICE, SERVICE_REPLICA, SERVICE_VERSION
from modelyard.server.orm.base import utcnow
from modelyard.server.orm.jobs import JobModel
from modelyard.server.orm.serving import ServiceModel, ServiceReplicaModel, ServiceVersionModel
from modelyard.server.services.common.door import Move, StateDoor, effect, wake_scheduler
from modelyard.server.services.jobs import TERMINAL as JOB_TERMINAL
from modelyard.server.services.jobs import transition as job_transition

ROUTED = "ready"  # the only replica state the gateway routes to


def _service_values(m: Move) -> dict[str, Any]:
    if m.to == "failed":
        return {"error": (m.reason or "failed")[:4000]}
    if m.to == "deploying":
        return {"error": None}
    return {}


SERVICE_DOOR = StateDoor(SERVICE, ServiceModel, "service.state_changed", values=_service_values,
                         effects=[wake_scheduler], label=lambda s: s.name)


def _version_values(m: Move) -> dict[str, Any]:
    if m.to == "failed":
        return {"error": (m.reason or "failed")[:4000]}
    return {"error": None, "consecutive_failures": 0}


VERSION_DOOR = StateDoor(SERVICE_VERSION, ServiceVersionModel, "service_version.state_changed",
                         values=_version_values, effects=[wake_scheduler], label=lambda v: f"v{v.number}")


def _replica_values(m: Move) -> dict[str, Any]:
    now = utcnow()
    if m.to == "starting":
        return {"started_at": now}
    if m.to == "ready":
        return {"ready_at": now, "live_failures": 0}
    if m.to in SERVICE_REPLICA.terminal:
        return {"finished_at": now}
    return {}


@effect("end its serve job", when=lambda m: m.terminal or m.to == "draining")
def end_job(m: Move) -> None:
    """A replica that leaves service takes its job with it: a queued job is cancelled at once (its
    allocations, if any, released by the job door); a running one gets a cancel request that the
    jobs' reconciler carries out (SIGTERM, SIGKILL after the grace) and then releases."""
    job = m.session.get(JobModel, m.obj.job_id) if m.obj.job_id else None
    if job is None or job.state in {str(s) for s in JOB_TERMINAL}:
        return
    if job.state in ("pending", "queued"):
        job_transition(m.session, job, "cancelled", reason=f"service replica {m.to}: {m.reason}"[:500])
    elif job.cancel_requested_at is None:
        job.cancel_requested_at = utcnow()
    m.payload["job_id"] = job.id


@effect("remove its socket folder", when=lambda m: m.terminal)
def remove_socket_dir(m: Move) -> None:
    # the folder is the replica's alone (planning.socket_dir); nothing listens there any more
    path = m.obj.socket_path
    if path and Path(path).name == "s.sock" and Path(path).parent.name == m.obj.id:
        shutil.rmtree(Path(path).parent, ignore_errors=True)


REPLICA_DOOR = StateDoor(SERVICE_REPLICA, ServiceReplicaModel, "service_replica.state_changed",
                         values=_replica_values, effects=[end_job, remove_socket_dir, wake_scheduler],
                         label=lambda r: r.id)


def move_service(session, svc: ServiceModel, to: str, *, actor_id: str | None = None, reason: str = "",
                 data: dict | None = None) -> ServiceModel:
    return SERVICE_DOOR.move(session, svc, to, actor_id=actor_id, reason=reason, data=data)


def move_version(session, ver: ServiceVersionModel, to: str, *, actor_id: str | None = None,
                 reason: str = "") -> ServiceVersionModel:
    return VERSION_DOOR.move(session, ver, to, actor_id=actor_id, reason=reason)


def move_replica(session, rep: ServiceReplicaModel, to: str, *, actor_id: str | None = None, reason: str = "",
                 values: dict | None = None, data: dict | None = None) -> ServiceReplicaModel:
    return REPLICA_DOOR.move(session, rep, to, actor_id=actor_id, reason=reason, values=values, data=data)
