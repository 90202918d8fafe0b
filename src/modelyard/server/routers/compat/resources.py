"""Seed 000 §8 (and §4.5): remaining compute and storage quota, in the RESULT envelope
{"success", "errorCode", "message", "result"}. Same services as the native /api/v1/quotas."""

from __future__ import annotations

from modelyard.server.deps import SessionDep, SettingsDep, UserDep
from modelyard.server.routers.compat.envelope import RESULT, compat_router, ok
from modelyard.server.schemas.seed.resources import QuotaRemainRequest, RemainRequest
from modelyard.server.services import quota as quota_svc
from modelyard.server.services import usage

router = compat_router(RESULT, tags=["seed §8 resources and quotas"])


REMAIN_DOC = (
    "result: remainCpu, remainMemory (GiB, double), remainVgpu, remainMig, remainJobNum, remainGpu = "
    "the user's quota minus their live allocations in the ledger (never below 0; all 0 outside the "
    "quota's validity window); isInitConfig: an admin configured the quota; startTime/endTime: the "
    "window, UTC, 'YYYY-MM-DD HH:MM:SS' or null. userId must be the caller unless the caller is admin (403).")


def _remain(req: RemainRequest, session, principal):
    user_id = principal.ensure_acting_as(req.userId)
    user = quota_svc.find_user(session, user_id)
    return ok(RESULT, usage.remain_resource(session, user.id), message="获取剩余资源成功")


@router.post("/system/config/getRemainResource", summary="§8.1 remaining AI resources of a user",
             description=REMAIN_DOC)
def get_remain_resource(req: RemainRequest, session: SessionDep, principal: UserDep):
    return _remain(req, session, principal)


@router.post("/api/system/config/getRemainResource", summary="§4.5 remaining AI resources of a user",
             description=REMAIN_DOC)
def get_remain_resource_api(req: RemainRequest, session: SessionDep, principal: UserDep):
    return _remain(req, session, principal)


@router.post(
    "/resource/configRemake/getQuotaRemainResource", summary="§8.2 storage quota of a user",
    description=(
        "Storage quota not enabled: every field is '存储配额未开启-无限制' (endTime '无限制'). Enabled: "
        "inodeQuota/inodeUsed/inodeRemain = file counts (inodeQuota/inodeRemain '无限制' when no file limit); "
        "blockQuota/blockUsed/blockRemain = 1 KiB blocks as quota(1) reports them (quota = floor(bytes/1024), "
        "used = ceil(bytes stored/1024)); startTime/endTime: the quota window (UTC) or '无限制'; "
        "initConfig: an admin configured the quota. The exact byte figures are in GET /api/v1/quotas/me."))
def get_quota_remain_resource(req: QuotaRemainRequest, session: SessionDep, settings: SettingsDep,
                              principal: UserDep):
    user_id = principal.ensure_acting_as(req.userId)
    user = quota_svc.find_user(session, user_id)
    return ok(RESULT, usage.storage_remain(session, settings, user.id), message="查询成功")
