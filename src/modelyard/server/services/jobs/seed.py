"""The seed's (000 §4 / §5) view of jobs: fine-tuning and pre-training tasks, listed and created
as routers/compat/finetune.py maps them."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from modelyard.server.auth import Principal
from modelyard.server.db import paginate
from modelyard.server.orm import UserModel
from modelyard.server.orm.base import utcnow
from modelyard.server.orm.jobs import JobModel
from modelyard.server.orm.models import ModelModel, ModelVersionModel
from modelyard.server.schemas.jobs import JobSubmit
from modelyard.server.services.jobs.service import TRAINING_KINDS, list_query, submit_job


def user_id_by_name(session: Session, name: str) -> str | None:
    return session.scalar(select(UserModel.id).where(UserModel.name == name))


def seed_tasks_query(principal: Principal, *, states: list[str] | None = None, owner_id: str | None = None,
                     is_pretrain: bool | None = None, task_name: str | None = None,
                     with_output: bool = False) -> Select:
    """The tasks the seed lists: training jobs and any job created through the seed API."""
    stmt = list_query(principal, states=states, q=None, owner_id=owner_id, is_pretrain=is_pretrain)
    stmt = stmt.where(or_(JobModel.kind.in_(TRAINING_KINDS), JobModel.origin == "seed"))
    if task_name:
        stmt = stmt.where(JobModel.name.ilike(f"%{task_name}%"))
    if with_output:
        stmt = stmt.where(JobModel.output_model_version_id.is_not(None))
    return stmt


def list_seed_tasks(session: Session, principal: Principal, *, page: int = 1, page_size: int = 10,
                    **filters: Any) -> tuple[list[JobModel], int]:
    """(items, total) of seed_tasks_query(**filters) for a 1-based page."""
    return paginate(session, seed_tasks_query(principal, **filters), page=page, page_size=page_size)


def submit_seed_task(session: Session, ctx: Any, *, principal: Principal, req: JobSubmit, owner_id: str | None,
                     is_pretrain: bool = False) -> JobModel:
    """Submit a seed task (origin "seed"); isPretrain 1 marks it a pre-training task whatever its kind."""
    job = submit_job(session, ctx, principal=principal, req=req, origin="seed", owner_id=owner_id)
    if is_pretrain and not job.is_pretrain:
        job.is_pretrain = True
    session.flush()
    return job


def output_models(session: Session, version_ids: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """({version id: model version}, {model id: model}) for the given output model version ids."""
    if not version_ids:
        return {}, {}
    versions = {v.id: v for v in session.scalars(select(ModelVersionModel)
                                                 .where(ModelVersionModel.id.in_(version_ids)))}
    mids = {v.model_id for v in versions.values()}
    models = {m.id: m for m in session.scalars(select(ModelModel).where(ModelModel.id.in_(mids)))}
    return versions, models


def run_seconds(job: JobModel) -> int | None:
    """Seconds the job has run (until it finished, else until now); None before it ran."""
    if not job.running_at:
        return None
    return int(((job.finished_at or utcnow()) - job.running_at).total_seconds())
