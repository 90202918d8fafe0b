"""Native jobs API (/api/v1/jobs)."""

from __future__ import annotations

import io

from fastapi import APIRouter, Query, status
from fastapi.responses import Response, StreamingResponse

from modelyard.server.db import session_scope
from modelyard.server.deps import CtxDep, UserDep
from modelyard.server.routers.logs import log_response
from modelyard.server.routers.params import AttemptQ, IdQ, ListQ, OffsetQ, PageQ, PageSizeQ, SearchQ, StepQ
from modelyard.server.schemas.common import Page
from modelyard.server.schemas.jobs import JobDetail, JobResponse, JobSubmit, RegisterOutputRequest
from modelyard.server.services import jobs as svc

router = APIRouter(tags=["jobs"])

# Handlers open their transaction themselves (session_scope) instead of the per-request session
# dependency: a yield-dependency's commit runs after the handler in another worker thread, and with
# every worker thread waiting for SQLite's write lock that commit could not run (a deadlock under
# ~40 concurrent writers). Here the commit happens in the handler's own thread.


def _csv(v: str | None) -> list[str] | None:
    return [x.strip() for x in v.split(",") if x.strip()] if v else None


@router.post("/jobs", status_code=status.HTTP_201_CREATED, response_model=JobResponse,
             summary="Submit a job (refused with 4xx if it could never fit; otherwise queued)")
def submit(req: JobSubmit, ctx: CtxDep, principal: UserDep):
    """Validates everything (model, data, hyperparameters, resources against quota and nodes) before queueing; nothing is written when refused."""
    with session_scope(ctx.sessions) as session:
        return svc.submit_job(session, ctx, principal=principal, req=req)


@router.get("/jobs", response_model=Page[JobResponse])
def list_jobs(ctx: CtxDep, principal: UserDep, state: ListQ = None, kind: ListQ = None, q: SearchQ = None,
              search_id: IdQ = None, page: PageQ = 1, page_size: PageSizeQ = 20,
              strategy: ListQ = None):
    """List jobs

    Your jobs (an admin: everyone's), newest first; filter by state (canceled accepted), kind, strategy, text or search."""
    with session_scope(ctx.sessions, readonly=True) as session:
        items, total = svc.list_jobs(session, principal, page=page, page_size=page_size, states=_csv(state),
                                     kinds=_csv(kind), q=q, search_id=search_id, strategies=_csv(strategy))
    return Page(items=[JobResponse.model_validate(j) for j in items], total=total, page=page, page_size=page_size)


@router.get("/hparams", tags=["hyperparameters"], summary="Every hyperparameter a training job accepts",
            description="Name, type, default, range or choices, the strategies it applies to (lora, full, qlora, "
                        "pretrain) and a one-line description, from the trainer's typed table. `strategy` narrows "
                        "the list to one strategy.")
def hparams_catalog(principal: UserDep, strategy: str | None = Query(
        None, max_length=32, description="only the hyperparameters of this strategy: lora, full, qlora or pretrain")):
    return svc.hparams_catalog(strategy)


@router.get("/jobs/hyperparameters", tags=["hyperparameters"],
            summary="The hyperparameters of one strategy (older form of /hparams)",
            description="Kept for existing clients: the hyperparameters a training job of `strategy` accepts "
                        "(lora by default; the seed's LoRA / FineTune are accepted).")
def hyperparameters(principal: UserDep, strategy: str = Query("lora", max_length=32, description="lora, full, "
                    "qlora or pretrain (LoRA / FineTune accepted)"),
                    is_pretrain: bool = Query(False, description="pre-training (same as strategy pretrain)")):
    return svc.hparams_for(strategy, is_pretrain)


@router.get("/jobs/{job_id}", response_model=JobDetail)
def get_job(job_id: str, ctx: CtxDep, principal: UserDep):
    """One job

    Addressed by id, unique id prefix or name (your newest job of that name); spec, replicas, allocations and events included."""
    with session_scope(ctx.sessions, readonly=True) as session:
        return svc.job_detail(session, svc.get_job(session, principal, job_id))


@router.get("/jobs/{job_id}/metrics", summary="Metric time series ingested from the job's metrics.jsonl")
def metrics(job_id: str, ctx: CtxDep, principal: UserDep, name: ListQ = None, since_step: StepQ = None,
            attempt: AttemptQ = None):
    """Loss, learning rate, grad norm, tokens/s and evaluation loss per step, as the trainer reported them."""
    with session_scope(ctx.sessions, readonly=True) as session:
        job = svc.get_job(session, principal, job_id)
        return {"job_id": job.id, "state": job.state, "progress": job.progress,
                "series": svc.metric_series(session, job, names=_csv(name), since_step=since_step, attempt=attempt)}


@router.get("/jobs/{job_id}/metrics.png", summary="The job's loss curves as a PNG",
            response_class=Response, responses={200: {"content": {"image/png": {}}}})
def metrics_png(job_id: str, ctx: CtxDep, principal: UserDep,
                name: str = Query("loss,eval_loss", description="comma-separated", max_length=1024)):
    """A quick plot of the chosen series (default loss and eval_loss) against the step."""
    with session_scope(ctx.sessions, readonly=True) as session:
        job = svc.get_job(session, principal, job_id)
        series = svc.metric_series(session, job, names=_csv(name))
    import matplotlib  # lazy: matplotlib is heavy and only this chart endpoint draws

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 3.5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for n, s in series.items():
        ax.plot(s["step"], s["value"], label=n)
    ax.set_xlabel("step")
    ax.set_title(f"{job.name} ({job.state})")
    if series:
        ax.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return Response(buf.getvalue(), media_type="image/png")


@router.get("/jobs/{job_id}/logs", response_class=StreamingResponse,
            responses={200: {"content": {"text/plain": {}}}},
            summary="A replica's log; follow=true streams until the job ends")
def logs(job_id: str, ctx: CtxDep, principal: UserDep, follow: bool = False,
         replica: str | None = Query(None, description="e.g. master-0, worker-1 or a rank (default: rank 0)",
                                     max_length=256),
         offset: OffsetQ = 0, poll_s: float = Query(0.2, ge=0.02, le=5)):
    """The replica's stdout and stderr from an offset; with follow=true the response stays open until the job ends."""
    with session_scope(ctx.sessions, readonly=True) as s:
        job = svc.get_job(s, principal, job_id)  # 404 before any streaming starts
        if replica and job.state not in ("pending", "queued"):
            svc.find_replica(s, job, replica)
        job_id = job.id  # a name or id prefix resolved once: the stream follows this job

    def locate():
        """(handle, executor, job finished?) of the replica, or (None, None, finished?)."""
        with session_scope(ctx.sessions, readonly=True) as s:
            return svc.locate_replica_log(ctx, s, job_id, replica)

    return log_response(locate, offset=offset, follow=follow, poll_s=poll_s)


@router.delete("/jobs/{job_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a finished job",
               description="Removes the job's rows, metric series and job folder (an event records it). Refused "
                           "with 409 job_active while the job is not finished (cancel it first) and with 409 in_use "
                           "while a model version's lineage names it as the job that produced it.")
def delete_job(job_id: str, ctx: CtxDep, principal: UserDep):
    with session_scope(ctx.sessions) as session:
        svc.delete_job(session, ctx, principal=principal, job_ref=job_id)


@router.post("/jobs/{job_id}/cancel", response_model=JobResponse,
             summary="Cancel: queued at once; running: SIGTERM, SIGKILL after the grace period")
def cancel(job_id: str, ctx: CtxDep, principal: UserDep):
    """A queued job is cancelled at once; a running one is signalled and ends as cancelled."""
    with session_scope(ctx.sessions) as session:
        return svc.cancel_job(session, ctx, principal=principal, job_id=job_id)


@router.post("/jobs/{job_id}/resume", response_model=JobResponse,
             summary="Queue a failed/cancelled job again; training continues from its newest checkpoint")
def resume(job_id: str, ctx: CtxDep, principal: UserDep):
    """A new attempt of the same job; a training job picks up its newest complete checkpoint."""
    with session_scope(ctx.sessions) as session:
        return svc.resume_job(session, ctx, principal=principal, job_id=job_id)


@router.post("/jobs/{job_id}/register", status_code=status.HTTP_201_CREATED,
             summary="Register the job's output folder as a model version (lineage: job, base, dataset)",
             description="201 with the new version; idempotent: a job whose output is already a version "
                         "(registered before, or automatically by a training job) answers 200 with that version.")
def register(job_id: str, req: RegisterOutputRequest, ctx: CtxDep, principal: UserDep, response: Response):
    with session_scope(ctx.sessions) as session:
        before = svc.get_job(session, principal, job_id).output_model_version_id
        mv = svc.register_output(session, ctx, principal=principal, job_id=job_id, model_name=req.model_name,
                                 description=req.description, path=req.path)
        if before is not None and mv.id == before:
            response.status_code = status.HTTP_200_OK  # already registered: the same version again
        return {"id": mv.id, "model_id": mv.model_id, "version": mv.version, "format": mv.format,
                "path": mv.path, "status": mv.status, "job_id": mv.job_id,
                "base_version_id": mv.base_version_id, "dataset_version_id": mv.dataset_version_id}
