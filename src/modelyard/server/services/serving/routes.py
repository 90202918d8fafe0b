"""What the gateway reads: the route snapshot (ready replicas of every serving service, in two
queries) and the invocation counters it adds to."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from modelyard.core.serving import RouteEntry, RouteReplica, RouteVersion
from modelyard.server.orm.serving import ServiceModel, ServiceReplicaModel, ServiceVersionModel

ROUTABLE_SERVICE_STATES = ("deploying", "running", "degraded")


def route_snapshot(session: Session) -> list[RouteEntry]:
    """Every service that may take traffic, its versions with their weights (the rates) and the
    ready replicas of each. Services without a ready replica are listed too (the gateway answers
    503 "not ready" for them rather than 404)."""
    rows = session.execute(
        select(ServiceModel.id, ServiceModel.name, ServiceModel.owner_id, ServiceModel.state,
               ServiceVersionModel.id, ServiceVersionModel.number, ServiceVersionModel.rate,
               ServiceVersionModel.runtime)
        .join(ServiceVersionModel, ServiceVersionModel.service_id == ServiceModel.id)
        .where(ServiceModel.state.in_(ROUTABLE_SERVICE_STATES), ServiceVersionModel.state == "active")
        .order_by(ServiceModel.id, ServiceVersionModel.number)).all()
    reps = session.execute(
        select(ServiceReplicaModel.version_id, ServiceReplicaModel.id, ServiceReplicaModel.socket_path,
               ServiceReplicaModel.plan)
        .join(ServiceModel, ServiceModel.id == ServiceReplicaModel.service_id)
        .where(ServiceReplicaModel.state == "ready", ServiceModel.state.in_(ROUTABLE_SERVICE_STATES))
        .order_by(ServiceReplicaModel.created_at)).all()
    by_version: dict[str, list[RouteReplica]] = {}
    kinds: dict[str, str] = {}
    for vid, rid, sock, plan in reps:
        by_version.setdefault(vid, []).append(RouteReplica(rid, sock, list((plan or {}).get("served_names") or [])))
        kinds[vid] = (plan or {}).get("kind") or "openai"
    out: dict[str, RouteEntry] = {}
    for sid, name, owner, state, vid, number, rate, runtime in rows:
        entry = out.get(sid)
        kind = kinds.get(vid) or ("http" if runtime in ("template", "image") else "openai")
        if entry is None:
            entry = out[sid] = RouteEntry(service_id=sid, name=name, owner_id=owner, kind=kind, state=state)
        entry.versions.append(RouteVersion(version_id=vid, number=number, weight=int(rate or 0),
                                           replicas=by_version.get(vid, [])))
    return list(out.values())


def record_invocations(session: Session, counts: dict[str, tuple[int, int]]) -> None:
    """Add (calls, failures) to each service's counters (the gateway flushes its tallies here)."""
    for sid, (calls, failures) in counts.items():
        if not calls and not failures:
            continue
        session.execute(update(ServiceModel).where(ServiceModel.id == sid).values(
            invocations=ServiceModel.invocations + int(calls), failures=ServiceModel.failures + int(failures))
            .execution_options(synchronize_session=False))
