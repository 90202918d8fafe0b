"""Native inference services API (/api/v1/services). Services are addressed by id, id prefix or
name; another user's service answers 404."""

from __future__ import annotations

from fastapi import APIRouter, Query, status
from fastapi.responses import StreamingResponse

from modelyard.server.db import session_scope
from modelyard.server.deps import CtxDep, UserDep
from modelyard.server.routers.logs import log_response
from modelyard.server.routers.params import OffsetQ, PageQ, PageSizeQ, SearchQ
from modelyard.server.schemas.common import Page
from modelyard.server.schemas.serving import (
    RatesRequest,
    ScaleRequest,
    ServiceCreate,
    ServiceDetail,
    ServiceSummary,
    VersionSpec,
)
from modelyard.server.services import serving as svc

router = APIRouter(tags=["services"])


def _detail(ctx, ref: str, principal) -> dict:
    with session_scope(ctx.sessions, readonly=True) as s:
        return svc.service_detail(s, ctx, svc.find_service(s, principal, ref))


@router.post("/services", status_code=status.HTTP_201_CREATED, response_model=ServiceDetail,
             summary="Create a service with its versions (start=true deploys it now)")
def create(req: ServiceCreate, ctx: CtxDep, principal: UserDep):
    """Create a service with its versions; every version is validated (model, runtime, resources,
    volumes) before anything is written, and start=true deploys it at once."""
    with session_scope(ctx.sessions) as s:
        sid = svc.create_service(s, ctx, principal=principal, req=req).id
    return _detail(ctx, sid, principal)


@router.get("/services", response_model=Page[ServiceSummary])
def list_services(ctx: CtxDep, principal: UserDep, q: SearchQ = None,
                  state: str | None = Query(None, max_length=16), page: PageQ = 1, page_size: PageSizeQ = 20):
    """Your services (an admin: everyone's), newest first, with ready/desired replica counts."""
    with session_scope(ctx.sessions, readonly=True) as s:
        items, total = svc.list_services(s, principal, page=page, page_size=page_size, name=q, state=state)
        counts = svc.replica_counts(s, [i.id for i in items])
        rows = [svc.summary(s, i, counts.get(i.id, {})) for i in items]
    return Page(items=rows, total=total, page=page, page_size=page_size)


@router.get("/services/{ref}", response_model=ServiceDetail,
            summary="Status, progress, access address and model names, counters, versions, replicas")
def show(ref: str, ctx: CtxDep, principal: UserDep):
    """One service (id, id prefix or name): state, progress, the OpenAI base URL and model names, counters, each version's config and weight, its replicas."""
    return _detail(ctx, ref, principal)


@router.post("/services/{ref}/start", response_model=ServiceDetail)
def start(ref: str, ctx: CtxDep, principal: UserDep):
    """Deploy a saved, stopped or failed service (failed versions become active again)."""
    with session_scope(ctx.sessions) as s:
        sid = svc.start_service(s, ctx, principal=principal, svc=svc.find_service(s, principal, ref)).id
    return _detail(ctx, sid, principal)


@router.post("/services/{ref}/stop", response_model=ServiceDetail,
             summary="Drain every replica (their jobs end, allocations are released) -> stopped")
def stop(ref: str, ctx: CtxDep, principal: UserDep):
    """Drain every replica: their jobs end and release their allocations; the service is stopped once none is left."""
    with session_scope(ctx.sessions) as s:
        sid = svc.stop_service(s, ctx, principal=principal, svc=svc.find_service(s, principal, ref)).id
    return _detail(ctx, sid, principal)


@router.post("/services/{ref}/scale", response_model=ServiceDetail)
def scale(ref: str, req: ScaleRequest, ctx: CtxDep, principal: UserDep):
    """Set the replica count of one version or all (or the min/max bounds, stored for the autoscaler)."""
    with session_scope(ctx.sessions) as s:
        sid = svc.scale_service(s, ctx, principal=principal, svc=svc.find_service(s, principal, ref),
                                version=req.version, replicas=req.replicas, min_replicas=req.min_replicas,
                                max_replicas=req.max_replicas).id
    return _detail(ctx, sid, principal)


@router.post("/services/{ref}/versions", status_code=status.HTTP_201_CREATED, response_model=ServiceDetail,
             summary="Add a version (rate 0 unless given; the rates must still sum to 100)")
def add_version(ref: str, req: VersionSpec, ctx: CtxDep, principal: UserDep):
    """Add a version; it takes no traffic (rate 0) unless its rate keeps the sum at 100."""
    with session_scope(ctx.sessions) as s:
        one = svc.find_service(s, principal, ref)
        svc.add_version(s, ctx, principal=principal, svc=one, spec=req)
        sid = one.id
    return _detail(ctx, sid, principal)


@router.delete("/services/{ref}/versions/{number}", response_model=ServiceDetail)
def remove_version(ref: str, number: int, ctx: CtxDep, principal: UserDep):
    """Remove a version that takes no traffic; its replicas are drained first."""
    with session_scope(ctx.sessions) as s:
        one = svc.find_service(s, principal, ref)
        svc.remove_version(s, ctx, principal=principal, svc=one, number=number)
        sid = one.id
    return _detail(ctx, sid, principal)


@router.put("/services/{ref}/rates", response_model=ServiceDetail, summary="Traffic percent per version (sum 100)")
def set_rates(ref: str, req: RatesRequest, ctx: CtxDep, principal: UserDep):
    """Traffic percent per version number; the versions must sum to 100."""
    with session_scope(ctx.sessions) as s:
        one = svc.find_service(s, principal, ref)
        svc.set_rates(s, ctx, principal=principal, svc=one, rates=req.rates)
        sid = one.id
    return _detail(ctx, sid, principal)


@router.delete("/services/{ref}", status_code=status.HTTP_204_NO_CONTENT,
               summary="Delete a stopped (or never started / failed) service; a running one answers 409")
def delete(ref: str, ctx: CtxDep, principal: UserDep):
    """Delete a stopped, failed or never-started service; a running one answers 409 (stop it first)."""
    with session_scope(ctx.sessions) as s:
        svc.delete_service(s, ctx, principal=principal, svc=svc.find_service(s, principal, ref))


@router.get("/services/{ref}/events", summary="The service's event log (deployment stages, failures)")
def events(ref: str, ctx: CtxDep, principal: UserDep):
    """The service's event log: deployment stages (accepted, resources allocated, environment prepared, weights loaded, running) and every failure with its reason."""
    with session_scope(ctx.sessions, readonly=True) as s:
        one = svc.find_service(s, principal, ref)
        return {"service_id": one.id, "service_name": one.name, "events": svc.service_events(s, one)}


@router.get("/services/{ref}/monitor", summary="cpu, memory, requests per replica and per version")
def monitor(ref: str, ctx: CtxDep, principal: UserDep):
    """CPU and memory of each replica's process tree, requests and latency from its /metrics, summed per version."""
    with session_scope(ctx.sessions, readonly=True) as s:
        return svc.monitor(s, svc.find_service(s, principal, ref))


@router.get("/services/{ref}/logs", response_class=StreamingResponse,
            responses={200: {"content": {"text/plain": {}}}},
            summary="A replica's log (default: the newest live one); follow=true streams until it ends")
def logs(ref: str, ctx: CtxDep, principal: UserDep, follow: bool = False,
         replica: str | None = Query(None, description="replica id, id prefix or index", max_length=64),
         offset: OffsetQ = 0, poll_s: float = Query(0.2, ge=0.02, le=5)):
    """A replica's output (default: the newest live one); follow=true streams until the replica ends."""
    with session_scope(ctx.sessions, readonly=True) as s:
        rep_id = svc.find_replica(s, svc.find_service(s, principal, ref), replica).id  # 404 before streaming

    def locate():
        with session_scope(ctx.sessions, readonly=True) as s:
            return svc.locate_log(ctx, s, rep_id)

    return log_response(locate, offset=offset, follow=follow, poll_s=poll_s)
