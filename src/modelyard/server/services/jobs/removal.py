"""Deleting a job: only a finished one, and never one a model version's lineage names as the job
that produced it (the version would point at nothing). What goes: the job row, its replicas,
metric series and allocation history, and its job folder (spec, logs, output, checkpoints inside
it; folders in the user's own files named by outputDir / checkPointDir stay, they are the
user's). The events stay (they are the audit trail) and a `job.deleted` event is added."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from modelyard.core.enums import JobState
from modelyard.core.errors import Conflict, InUse
from modelyard.server.auth import Principal
from modelyard.server.orm import AllocationModel
from modelyard.server.orm.jobs import JobMetricModel, JobModel, JobReplicaModel
from modelyard.server.orm.models import ModelModel, ModelVersionModel
from modelyard.server.orm.searches import SearchModel, SearchTrialModel
from modelyard.server.services import events
from modelyard.server.services.common.refs import resolve_owned_ref
from modelyard.server.services.common.txn import after_commit


def lineage_users(session: Session, job_id: str) -> list[str]:
    """'model:version' of every model version whose lineage names the job as its producer."""
    rows = session.execute(select(ModelModel.name, ModelVersionModel.version)
                           .join(ModelModel, ModelModel.id == ModelVersionModel.model_id)
                           .where(ModelVersionModel.job_id == job_id).limit(10)).all()
    return [f"{n}:{v}" for n, v in rows]


def delete_job(session: Session, ctx: Any, *, principal: Principal, job_ref: str) -> JobModel:
    job = resolve_owned_ref(session, JobModel, job_ref, principal, what="job", newest=True)
    if not JobState(job.state).finished:
        raise Conflict(f"job {job.name} ({job.id}) is {job.state}; cancel it first "
                       f"(POST /api/v1/jobs/{job.id}/cancel), then delete it", code="job_active")
    versions = lineage_users(session, job.id)
    if versions:
        raise InUse(f"job {job.name} ({job.id}) produced model version {', '.join(versions)}, whose lineage "
                    "names it; delete those versions first", details={"used_by": versions})
    trial = session.execute(select(SearchTrialModel.number, SearchModel.name, SearchModel.id)
                            .join(SearchModel, SearchModel.id == SearchTrialModel.search_id)
                            .where(SearchTrialModel.job_id == job.id, SearchModel.state == "running")).first()
    if trial is not None:
        raise InUse(f"job {job.id} is trial {trial[0]} of the running search {trial[1]} ({trial[2]}); "
                    "cancel the search or wait for it to finish", details={"used_by": [f"search {trial[2]}"]})
    # a finished search keeps its trials; their job link goes with the job
    for t in session.scalars(select(SearchTrialModel).where(SearchTrialModel.job_id == job.id)):
        t.job_id = None
    session.execute(delete(JobMetricModel).where(JobMetricModel.job_id == job.id))
    session.execute(delete(JobReplicaModel).where(JobReplicaModel.job_id == job.id))
    session.execute(delete(AllocationModel).where(AllocationModel.consumer_type == "job",
                                                  AllocationModel.consumer_id == job.id,
                                                  AllocationModel.released_at.is_not(None)))
    folder = Path(job.spec.get("job_dir") or ctx.settings.jobs_dir / job.id)
    events.record(session, actor_id=principal.id, kind="job.deleted", object_type="job", object_id=job.id,
                  message=f"job {job.name} deleted", data={"name": job.name, "state": job.state,
                                                           "owner_id": job.owner_id})
    session.delete(job)
    session.flush()
    # the folder goes once the rows are gone (after the commit); a job folder is under settings.jobs_dir
    if folder.resolve().parent == Path(ctx.settings.jobs_dir).resolve():
        after_commit(session, lambda: shutil.rmtree(folder, ignore_errors=True))
    return job
