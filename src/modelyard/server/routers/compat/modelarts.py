"""Seed 002 (Huawei ModelArts) service fragments at their paths, in ModelArts' shapes:

    GET /v1/{project_id}/services/{service_id}          service detail
    GET /v1/{project_id}/services/{service_id}/monitor  monitors per version (cpu, memory, requests)
    GET /v1/{project_id}/services/{service_id}/events   {service_id, service_name, total_count, count,
                                                          events[{event_type, event_info, occur_time}]}

project_id is accepted as given (a single-tenant platform; the caller's token decides what is
visible); service_id is a service id, id prefix or name. Errors are the native {"error"} body.
"""

from __future__ import annotations

from fastapi import APIRouter, Query

from modelyard.server.db import session_scope
from modelyard.server.deps import CtxDep, UserDep
from modelyard.server.services import serving as svc

router = APIRouter(tags=["seed §002 ModelArts services"])


def _ms(dt) -> int | None:
    from datetime import UTC

    return int(dt.replace(tzinfo=UTC).timestamp() * 1000) if dt is not None else None


@router.get("/v1/{project_id}/services/{service_id}", summary="Seed 002: service detail (ModelArts)")
def detail(project_id: str, service_id: str, ctx: CtxDep, principal: UserDep):
    """Seed 002 (ModelArts): service detail — status, progress, access address, invocation counts,
    per-version config and weight."""
    with session_scope(ctx.sessions, readonly=True) as s:
        one = svc.find_service(s, principal, service_id)
        d = svc.service_detail(s, ctx, one)
    return {"service_id": one.id, "service_name": one.name, "owner": one.owner_id, "project": project_id,
            "publish_at": _ms(one.created_at), "update_time": _ms(one.updated_at), "infer_type": "real-time",
            "status": one.state, "progress": d["progress"], "access_address": d["access_address"],
            "invocation_times": d["invocations"], "failed_times": d["failures"], "is_shared": False,
            "description": one.description, "error_msg": one.error or "",
            "config": [{"model_id": v["model_version_id"], "model_version": str(v["number"]),
                        "weight": v["weight"], "instance_count": v["instances"]["desired"],
                        "specification": f"{v['resources']['cpu']:g}cpu-{v['resources']['memory_mib']}mib-"
                                         f"{v['resources']['gpu']}gpu",
                        "envs": v["env"], "status": v["state"]} for v in d["versions"]],
            "scaling": [dict(v["scaling"], version=v["number"]) for v in d["versions"]]}


@router.get("/v1/{project_id}/services/{service_id}/monitor", summary="Seed 002: service monitor (ModelArts)")
def monitor(project_id: str, service_id: str, ctx: CtxDep, principal: UserDep):
    """Seed 002 (ModelArts): monitors per version and replica (cpu, memory, requests)."""
    with session_scope(ctx.sessions, readonly=True) as s:
        return svc.monitor(s, svc.find_service(s, principal, service_id))


@router.get("/v1/{project_id}/services/{service_id}/events", summary="Seed 002: service event log (ModelArts)")
def events(project_id: str, service_id: str, ctx: CtxDep, principal: UserDep,
           event_type: str | None = Query(None, pattern="^(normal|abnormal)$"),
           offset: int = Query(0, ge=0, le=10**6), limit: int = Query(1000, ge=1, le=1000)):
    """Seed 002 (ModelArts): the service's event log as {total_count, count, events[{event_type, event_info, occur_time}]}."""
    with session_scope(ctx.sessions, readonly=True) as s:
        one = svc.find_service(s, principal, service_id)
        evs = svc.service_events(s, one, limit=100_000)
    if event_type:
        evs = [e for e in evs if e["event_type"] == event_type]
    page = evs[offset: offset + limit]
    return {"service_id": one.id, "service_name": one.name, "total_count": len(evs), "count": len(page),
            "events": [{"event_type": e["event_type"], "event_info": e["message"], "occur_time": _ms(e["at"])}
                       for e in page]}
