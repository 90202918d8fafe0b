""""In use" checks: a model version or image version a service version names can't be deleted
while that service exists (running or not: starting it again needs them). Registered when the
serving package is imported."""

from __future__ import annotations

from sqlalchemy import select

from modelyard.server.orm.serving import ServiceModel, ServiceVersionModel
from modelyard.server.services.common import references


def _check_for(column, what: str) -> references.Check:
    def check(session, obj_id: str) -> str | None:
        rows = session.execute(select(ServiceModel.name, ServiceModel.id, ServiceVersionModel.number).join(
            ServiceModel, ServiceModel.id == ServiceVersionModel.service_id).where(column == obj_id).limit(5)).all()
        if not rows:
            return None
        return "; ".join(f"{what} of service {r.name} ({r.id}) version {r.number}" for r in rows)

    return check


def register() -> None:
    references.checker("model_version")(_check_for(ServiceVersionModel.model_version_id, "the model"))
    references.checker("image_version")(_check_for(ServiceVersionModel.image_version_id, "the image"))


register()
