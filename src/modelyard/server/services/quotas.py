"""Quota rows: created lazily from the defaults in settings; changed by admins."""

from __future__ import annotations

from sqlalchemy.orm import Session

from modelyard.server.orm import QuotaModel

# Set at app start (server/app.py) so services need not thread settings through every call.
DEFAULTS = None


def ensure_quota(session: Session, *, user_id: str) -> QuotaModel:
    quota = session.get(QuotaModel, user_id)
    if quota is None:
        from modelyard.server.settings import DefaultQuota

        d = DEFAULTS or DefaultQuota()
        quota = QuotaModel(user_id=user_id, cpu=d.cpu, memory_mib=d.memory_mib, gpu=d.gpu, vgpu=d.vgpu, mig=d.mig,
                           jobs=d.jobs, storage_bytes=d.storage_bytes, storage_files=d.storage_files)
        session.add(quota)
        session.flush()
    return quota
