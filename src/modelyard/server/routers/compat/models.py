"""Seed §3 (模型管理) at its exact paths, in the DATA envelope {"code", "success", "message", "data"}.

- §3.1 POST /model/aiApplication/createAiApplication: creates the application (or, when the caller
  already has one of that name, adds the versions to it) and starts importing each version from
  its savePath; versions answer status 1 (importing) and turn 2 (done) or 3 (failed, with
  statusReason) once inspected.
- §3.2 POST /model/aiApplication/getAiApplicationList: a PageInfo {list, total, pageNum, pageSize,
  pages, size}; queryInfo may filter by name, type, createUser.
- §3.3 GET  /model/aiApplication/getAiApplicationDetail?aiApplicationId=
- §3.4 GET  /model/aiApplicationVersion/getAiApplicationVersionList?aiApplicationId=
- §3.5 GET  /model/aiApplicationVersion/getAiApplicationVersionDetail?aiApplicationVersionId=

createUser (application and versions) must be the caller unless the caller is admin (403)."""

from __future__ import annotations

from fastapi import Query
from fastapi.responses import JSONResponse

from modelyard.core.errors import BadRequest, Unprocessable
from modelyard.server.db import session_scope
from modelyard.server.deps import CtxDep, SessionDep, UserDep
from modelyard.server.routers.compat.envelope import DATA, body, compat_router
from modelyard.server.schemas.common import MAX_NAME, MAX_PAGE, MAX_PAGE_SIZE, MAX_SEARCH
from modelyard.server.schemas.models import (
    SeedCreateRequest,
    SeedPageRequest,
    seed_application,
    seed_hyper_parameters,
    seed_version,
    seed_version_detail,
)
from modelyard.server.services import models as svc

router = compat_router(DATA, tags=["seed §3 models"])


def ok(_style: str, payload) -> JSONResponse:
    """The DATA envelope. Payloads here are built from plain JSON types already (seed_* helpers),
    so the generic (slow, recursive) jsonable_encoder pass is skipped."""
    return JSONResponse(body(DATA, success=True, status=200, message="success", payload=payload))


@router.post("/model/aiApplication/createAiApplication", summary="§3.1 创建模型 (create a model and import versions)")
def create_ai_application(req: SeedCreateRequest, ctx: CtxDep, principal: UserDep):
    # its own unit of work: an error must roll everything back before the envelope answers it
    """Seed-compatible: creates a model and starts importing its versions from the caller's files."""
    with session_scope(ctx.sessions) as session:
        return _create(session, ctx, principal, req)


def _create(session, ctx, principal, req: SeedCreateRequest):
    app_req = req.application
    acting = principal.ensure_acting_as(app_req.createUser)
    for ver in req.aiApplicationVersionList:
        if principal.ensure_acting_as(ver.createUser or acting) != acting:
            raise BadRequest("a version's createUser differs from the application's", code="invalid_request")
        if ver.applicationName and app_req.name and ver.applicationName != app_req.name:
            raise BadRequest(f"version applicationName {ver.applicationName!r} differs from application name "
                             f"{app_req.name!r}", code="invalid_request")
    if not app_req.name:
        raise BadRequest("application.name is required", code="invalid_request")
    model = svc.create_model(session, principal, owner_id=acting, name=app_req.name,
                             description=app_req.description or "", type=app_req.type or "LLM",
                             developer=app_req.developer or "", is_public=bool(app_req.isPublic),
                             exist_ok=True)
    hyper = [h.model_dump(include={"paramName", "type", "value", "valueRange", "edit"})
             for h in req.hyperParameterList]
    created = []
    for ver in req.aiApplicationVersionList:
        created.append(svc.start_import(
            session, ctx.settings, principal, model, save_path=ver.savePath or None, version=ver.version or None,
            source=ver.source or 3, save_type=ver.saveType or 2, description=ver.description or "",
            image=ver.image or "", hyper_parameter_list=hyper, scale=ver.scale or "",
            model_structure=ver.modelStructure or "", sessions=ctx.sessions,
            extra={"config_save_type": ver.configSaveType, "config_path": ver.configPath,
                   "image_type": ver.imageType, "framework": ver.framework, "framework_style": ver.frameworkStyle,
                   "label": ver.label, "train_task_version_id": ver.trainTaskVersionId or "",
                   "llm_fine_tune_task_id": ver.llmFineTuneTaskId or ""}))
    session.flush()
    owner = svc.users_by_id(session, [model.owner_id]).get(model.owner_id)
    summary = svc.summaries(session, [model.id])[model.id]
    return ok(DATA, {"application": seed_application(model, owner, summary),
                     "aiApplicationVersionList": [seed_version(v, model, owner) for v in created],
                     "hyperParameterList": seed_hyper_parameters(hyper)})


@router.post("/model/aiApplication/getAiApplicationList", summary="§3.2 分页获取模型列表 (page of models)")
def get_ai_application_list(req: SeedPageRequest, session: SessionDep, principal: UserDep):
    # the seed's paging is lenient: out-of-range numbers are clamped, not refused
    """Seed-compatible: one page of the models the caller can see, in the seed's shape."""
    page = min(req.pageNum, MAX_PAGE) if req.pageNum and req.pageNum > 0 else 1
    size = min(req.pageSize, MAX_PAGE_SIZE) if req.pageSize and req.pageSize > 0 else 10
    q = req.queryInfo or {}
    name = q.get("name") or q.get("applicationName")
    owner = q.get("createUser") or q.get("userId")
    for key, value, most in (("name", name, MAX_SEARCH), ("createUser", owner, MAX_NAME),
                             ("type", q.get("type"), MAX_NAME)):
        if value is not None and len(str(value)) > most:
            raise Unprocessable(f"queryInfo.{key} is longer than {most} characters", code="value_too_long")
    items, total = svc.list_models(session, principal, page=page, page_size=size,
                                   q=str(name) if name else None, owner_id=str(owner) if owner else None,
                                   type=q.get("type") or None)
    sums = svc.summaries(session, [m.id for m in items])
    owners = svc.users_by_id(session, [m.owner_id for m in items])
    rows = [seed_application(m, owners.get(m.owner_id), sums[m.id]) for m in items]
    return ok(DATA, {"list": rows, "total": total, "pageNum": page, "pageSize": size, "size": len(rows),
                     "pages": (total + size - 1) // size})


@router.get("/model/aiApplication/getAiApplicationDetail", summary="§3.3 查询模型详情 (model detail)")
def get_ai_application_detail(session: SessionDep, principal: UserDep, aiApplicationId: str = Query(...)):
    """Seed-compatible: one model with its versions, in the seed's shape."""
    model = svc.get_model(session, principal, aiApplicationId)
    owner = svc.users_by_id(session, [model.owner_id]).get(model.owner_id)
    return ok(DATA, seed_application(model, owner, svc.summaries(session, [model.id])[model.id]))


@router.get("/model/aiApplicationVersion/getAiApplicationVersionList",
            summary="§3.4 获取模型下的所有版本 (versions of a model)")
def get_ai_application_version_list(session: SessionDep, principal: UserDep, aiApplicationId: str = Query(...)):
    """Seed-compatible: every version of one model, in the seed's shape."""
    model = svc.get_model(session, principal, aiApplicationId)
    owner = svc.users_by_id(session, [model.owner_id]).get(model.owner_id)
    return ok(DATA, [seed_version(v, model, owner) for v in svc.versions_of(session, model.id)])


@router.get("/model/aiApplicationVersion/getAiApplicationVersionDetail",
            summary="§3.5 获取模型版本详情 (version detail)")
def get_ai_application_version_detail(session: SessionDep, principal: UserDep,
                                      aiApplicationVersionId: str = Query(...)):
    """Seed-compatible: one model version (files, lineage, status), in the seed's shape."""
    v = svc.get_version(session, principal, aiApplicationVersionId)
    model = svc.model_of(session, v)
    owner = svc.users_by_id(session, [model.owner_id]).get(model.owner_id)
    aliases = svc.aliases_by_version(session, model.id).get(v.id, [])
    return ok(DATA, seed_version_detail(v, model, owner, aliases=aliases))
