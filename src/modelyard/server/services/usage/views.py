"""What a user has used and has left — the views the APIs answer: the native quota view (limits,
used, remaining, window, storage) and the seed's §8.1 getRemainResource / §8.2
getQuotaRemainResource results.

Compute figures always come from the allocation ledger (services/quota/ledger.py); storage
figures from what is really stored (the files domain's index). This package sits above both, so
neither imports the other's views."""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy.orm import Session

from modelyard.core.units import mib_to_gib
from modelyard.server.orm import QuotaModel, UserModel
from modelyard.server.services import files
from modelyard.server.services.quota import ensure_quota, in_window, ledger, seed_time

# seed §8.2: what the storage fields say while no storage quota is configured
STORAGE_OFF = "存储配额未开启-无限制"
UNLIMITED = "无限制"
# seed §8.2 block unit: 1 KiB blocks, as quota(1) / repquota report them
BLOCK_BYTES = 1024


def _num(x: float) -> int | float:
    """Whole numbers as int (the seed's remainCpu is an int32); fractional CPU stays a float."""
    return int(round(x)) if abs(x - round(x)) < 1e-9 else round(x, 3)


def remain_resource(session: Session, user_id: str) -> dict[str, Any]:
    """Seed §8.1 / §4.5 getRemainResource `result`.

    remainCpu/remainVgpu/remainMig/remainGpu/remainJobNum: quota minus the user's live
    allocations in the ledger; remainMemory in GiB (double). Never negative (an admin may lower a
    quota below what is held). Outside the validity window nothing can be allocated, so every
    remain* is 0. startTime/endTime: the window, UTC, "YYYY-MM-DD HH:MM:SS", null when unbounded."""
    quota = ledger.get_quota(session, user_id)
    rem, jobs_left = ledger.remaining(session, user_id)
    active = in_window(quota)

    def r(x: float) -> float:
        return max(0.0, float(x)) if active else 0.0

    return {
        "remainCpu": _num(r(rem.cpu)),
        "remainMemory": mib_to_gib(r(rem.memory_mib)),
        "remainVgpu": int(r(rem.vgpu)),
        "remainMig": int(r(rem.mig)),
        "remainJobNum": int(r(jobs_left)),
        "remainGpu": int(r(rem.gpu)),
        "isInitConfig": bool(quota.is_init_config),
        "startTime": seed_time(quota.start_at),
        "endTime": seed_time(quota.end_at),
    }


# --- storage ----------------------------------------------------------------------------------

def measure_storage(session: Session, settings, user_id: str) -> tuple[int, int]:
    """(bytes, files) really stored for the user, from the files domain's index."""
    b, n = files.storage_usage(session, settings, user_id)
    return int(b), int(n)


def storage_view(session: Session, settings, quota: QuotaModel) -> dict[str, Any]:
    used_b, used_f = measure_storage(session, settings, quota.user_id)

    def rem(q: int | None, u: int) -> int | None:
        return None if q is None else max(0, q - u)

    return {"enabled": quota.storage_bytes is not None,
            "bytes_quota": quota.storage_bytes, "bytes_used": used_b, "bytes_remaining": rem(quota.storage_bytes, used_b),
            "files_quota": quota.storage_files, "files_used": used_f,
            "files_remaining": rem(quota.storage_files, used_f)}


def storage_remain(session: Session, settings, user_id: str) -> dict[str, Any]:
    """Seed §8.2 getQuotaRemainResource `result`.

    Storage quota not enabled (storage_bytes is null): every field is the seed's
    "存储配额未开启-无限制" (endTime "无限制"). Enabled: numbers measured from what is stored —
    inode* = file counts; block* = 1 KiB blocks as quota(1) reports them (quota: floor of
    storage_bytes / 1024, used: ceil of stored bytes / 1024). A file-count limit that is not set
    reads "无限制". startTime/endTime: the quota window (UTC, "YYYY-MM-DD HH:MM:SS"; "无限制" when
    unbounded)."""
    quota = ensure_quota(session, user_id=user_id)
    if quota.storage_bytes is None:
        return {"inodeQuota": STORAGE_OFF, "inodeUsed": STORAGE_OFF, "inodeRemain": STORAGE_OFF,
                "blockQuota": STORAGE_OFF, "blockUsed": STORAGE_OFF, "blockRemain": STORAGE_OFF,
                "startTime": STORAGE_OFF, "endTime": UNLIMITED, "initConfig": bool(quota.is_init_config)}
    used_b, used_f = measure_storage(session, settings, user_id)
    block_quota = quota.storage_bytes // BLOCK_BYTES
    block_used = math.ceil(used_b / BLOCK_BYTES)
    if quota.storage_files is None:
        inode_quota: int | str = UNLIMITED
        inode_remain: int | str = UNLIMITED
    else:
        inode_quota = quota.storage_files
        inode_remain = max(0, quota.storage_files - used_f)
    return {"inodeQuota": inode_quota, "inodeUsed": used_f, "inodeRemain": inode_remain,
            "blockQuota": block_quota, "blockUsed": block_used, "blockRemain": max(0, block_quota - block_used),
            "startTime": seed_time(quota.start_at) or UNLIMITED, "endTime": seed_time(quota.end_at) or UNLIMITED,
            "initConfig": bool(quota.is_init_config)}


# --- the native view --------------------------------------------------------------------------

def quota_view(session: Session, settings, user: UserModel, *, with_storage: bool = True) -> dict[str, Any]:
    quota = ledger.get_quota(session, user.id)
    usage = ledger.user_usage(session, user.id)
    limits = ledger.quota_limits(quota)
    rem = limits - usage.used
    remaining = {d: max(0, v) for d, v in rem.as_dict().items()}
    return {
        "user_id": user.id, "user_name": user.name,
        "limits": limits.as_dict(), "used": usage.used.as_dict(), "remaining": remaining,
        "jobs": quota.jobs, "jobs_used": usage.jobs, "jobs_remaining": max(0, quota.jobs - usage.jobs),
        "start_at": quota.start_at, "end_at": quota.end_at, "active": in_window(quota),
        "is_init_config": bool(quota.is_init_config),
        "max_priority": quota.max_priority, "can_urgent": bool(quota.can_urgent),
        "storage": storage_view(session, settings, quota) if with_storage else None,
        "updated_at": quota.updated_at,
    }
