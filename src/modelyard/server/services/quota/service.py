"""Quota rows: created lazily from the defaults in settings (session.info["settings"]); changed by
admins. What is used and left is answered by services/usage (compute from the ledger beside this
module, storage from the files index)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from modelyard.core.errors import BadRequest
from modelyard.server.orm import QuotaModel, UserModel
from modelyard.server.orm.base import utcnow
from modelyard.server.services import events
from modelyard.server.settings import DefaultQuota

SEED_TIME = "%Y-%m-%d %H:%M:%S"

QUOTA_FIELDS = ("cpu", "memory_mib", "gpu", "vgpu", "mig", "jobs", "start_at", "end_at",
                "storage_bytes", "storage_files", "max_priority", "can_urgent")


def ensure_quota(session: Session, *, user_id: str) -> QuotaModel:
    quota = session.get(QuotaModel, user_id)
    if quota is None:
        settings = session.info.get("settings")
        d = settings.quota if settings is not None else DefaultQuota()
        quota = QuotaModel(user_id=user_id, cpu=d.cpu, memory_mib=d.memory_mib, gpu=d.gpu, vgpu=d.vgpu, mig=d.mig,
                           jobs=d.jobs, storage_bytes=d.storage_bytes, storage_files=d.storage_files)
        session.add(quota)
        session.flush()
    return quota


def find_user(session: Session, ref: str | int) -> UserModel:
    """A user by id, unique id prefix or name (services/common/refs.py); 404 if none."""
    from modelyard.server.services.common.refs import resolve_ref

    return resolve_ref(session, UserModel, str(ref), None, what="user", owned=False, not_found_code="user_not_found")


def in_window(quota: QuotaModel, now: datetime | None = None) -> bool:
    now = now or utcnow()
    return not ((quota.start_at and quota.start_at > now) or (quota.end_at and quota.end_at < now))


def seed_time(value: datetime | None) -> str | None:
    return value.strftime(SEED_TIME) if value else None


# --- compute ----------------------------------------------------------------------------------

def set_quota(session: Session, *, actor_id: str | None, user_id: str, changes: dict[str, Any]) -> QuotaModel:
    """Apply an admin's changes (only the keys given); marks the quota configured (isInitConfig)."""
    unknown = set(changes) - set(QUOTA_FIELDS)
    if unknown:
        raise ValueError(f"unknown quota fields: {sorted(unknown)}")
    quota = ensure_quota(session, user_id=user_id)
    start = changes.get("start_at", quota.start_at)
    end = changes.get("end_at", quota.end_at)
    if start and end and end < start:
        raise BadRequest("end_at is before start_at", code="invalid_window")
    if "can_urgent" in changes and changes["can_urgent"] is None:
        changes = {**changes, "can_urgent": False}  # null clears the allowance
    before = {k: _jsonable(getattr(quota, k)) for k in changes}
    for k, v in changes.items():
        setattr(quota, k, v)
    quota.is_init_config = True
    quota.updated_at = utcnow()
    session.flush()
    events.record(session, actor_id=actor_id, kind="quota.updated", object_type="quota", object_id=user_id,
                  message="quota configured",
                  data={"owner_id": user_id, "before": before, "after": {k: _jsonable(v) for k, v in changes.items()}})
    return quota


def _jsonable(v: Any) -> Any:
    return v.isoformat() if isinstance(v, datetime) else v
