""""In use" checks: an image, model version or dataset version a live job uses can't be deleted.

Registered with the cross-domain registry when the jobs package is imported (the app imports
every domain at start-up), so the owning domains need not import jobs."""

from __future__ import annotations

from sqlalchemy import select

from modelyard.server.orm.jobs import ACTIVE_STATES, JobModel
from modelyard.server.services.common import references


def _check_for(column, what: str) -> references.Check:
    def check(session, obj_id: str) -> str | None:
        rows = session.execute(select(JobModel.id, JobModel.name, JobModel.state).where(
            column == obj_id, JobModel.state.in_(ACTIVE_STATES)).limit(5)).all()
        if not rows:
            return None
        return "; ".join(f"{what} of job {r.name} ({r.id}, {r.state})" for r in rows)

    return check


def register() -> None:
    references.checker("image")(_check_for(JobModel.image_id, "image"))
    references.checker("image_version")(_check_for(JobModel.image_version_id, "image"))
    references.checker("model_version")(_check_for(JobModel.model_version_id, "base model"))
    references.checker("dataset_version")(_check_for(JobModel.dataset_version_id, "dataset"))


register()
