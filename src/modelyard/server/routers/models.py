"""Native model registry API (/api/v1/models). `{model}` is a model id or name (yours first, then a
public one; 'owner/name' when ambiguous); `{version}` a version id, version string, alias or
'latest'. Importing answers at once with the version `importing`; poll it until `done`/`failed`."""

from __future__ import annotations

from fastapi import APIRouter, Query, Response, status

from modelyard.server.deps import CtxDep, SessionDep, SettingsDep, UserDep
from modelyard.server.routers.params import IdQ, NameQ, PageQ, PageSizeQ, SearchQ
from modelyard.server.schemas.common import Page
from modelyard.server.schemas.models import (
    AliasResponse,
    AliasSetRequest,
    MetricResponse,
    MetricsAddRequest,
    ModelCreateRequest,
    ModelDetailResponse,
    ModelResponse,
    ModelUpdateRequest,
    VersionCreateRequest,
    VersionDetailResponse,
    VersionResponse,
)
from modelyard.server.services import models as svc

router = APIRouter(tags=["models"])


def _model_response(session, model, *, detail: bool = False, summary=None, owners=None):
    summary = summary or svc.summaries(session, [model.id])[model.id]
    owners = owners if owners is not None else svc.users_by_id(session, [model.owner_id])
    owner = owners.get(model.owner_id)
    base = ModelResponse.model_validate(model).model_dump()
    base.update(owner_name=owner.name if owner else None, versions_count=summary["count"],
                size_bytes=summary["size_bytes"], latest_version=summary["latest"],
                latest_status=summary["latest_status"])
    if not detail:
        return ModelResponse(**base)
    by_version = svc.aliases_by_version(session, model.id)
    versions = svc.versions_of(session, model.id)
    names = {v.id: v.version for v in versions}
    return ModelDetailResponse(
        **base,
        versions=[_version(v, by_version) for v in versions],
        aliases=[AliasResponse(alias=a.alias, version_id=a.version_id, version=names.get(a.version_id),
                               updated_at=a.updated_at) for a in svc.aliases_of(session, model.id)])


def _version(v, by_version: dict[str, list[str]], *, detail: bool = False):
    cls = VersionDetailResponse if detail else VersionResponse
    data = cls.model_validate(v)
    data.aliases = by_version.get(v.id, [])
    return data


@router.post("/models", status_code=status.HTTP_201_CREATED, response_model=ModelDetailResponse)
def create_model(req: ModelCreateRequest, session: SessionDep, ctx: CtxDep, principal: UserDep):
    """Create a model; with `path`, its first version is imported from your files (HF folder,
    PEFT adapter folder or .gguf file)."""
    model = svc.create_model(session, principal, owner_id=req.owner_id, name=req.name,
                             description=req.description, type=req.type, developer=req.developer,
                             is_public=req.is_public)
    if req.path or req.source == 2:
        svc.start_import(session, ctx.settings, principal, model, save_path=req.path, version=req.version or "1",
                         source=req.source, image=req.image, hyper_parameter_list=req.hyper_parameter_list,
                         sessions=ctx.sessions)
    session.flush()
    return _model_response(session, model, detail=True)


@router.get("/models", response_model=Page[ModelResponse])
def list_models(session: SessionDep, principal: UserDep, page: PageQ = 1, page_size: PageSizeQ = 20,
                q: SearchQ = None, name: NameQ = None, owner_id: IdQ = None, type: NameQ = None,
                public: bool | None = None, mine: bool = False):
    """Your models and public ones (admins: all), newest first."""
    items, total = svc.list_models(session, principal, page=page, page_size=page_size, q=q, name=name,
                                   owner_id=owner_id, type=type, is_public=public, mine=mine)
    sums = svc.summaries(session, [m.id for m in items])
    owners = svc.users_by_id(session, [m.owner_id for m in items])
    return Page[ModelResponse](items=[_model_response(session, m, summary=sums[m.id], owners=owners) for m in items],
                               total=total, page=page, page_size=page_size)


@router.get("/model-versions/resolve", response_model=VersionDetailResponse)
def resolve(session: SessionDep, principal: UserDep, ref: str = Query(..., description="version id, "
            "'<model>' (latest done) or '<model>:<version|alias>'"), ready: bool = True):
    """Resolve a model reference

    The version a reference names: a version id, a model (its latest ready version) or model:version / model:alias."""
    v = svc.resolve_model_version(session, principal, ref, require_done=ready)
    return _version(v, svc.aliases_by_version(session, v.model_id), detail=True)


@router.get("/model-versions/{version_id}", response_model=VersionDetailResponse)
def get_version_by_id(version_id: str, session: SessionDep, principal: UserDep):
    """One model version

    By version id, unique id prefix, or model:version / model:alias; files, lineage and metrics included."""
    v = svc.get_version(session, principal, version_id)
    return _version(v, svc.aliases_by_version(session, v.model_id), detail=True)


@router.get("/models/{model}", response_model=ModelDetailResponse)
def get_model(model: str, session: SessionDep, principal: UserDep):
    """One model

    Addressed by id, unique id prefix, name or owner/name; includes its versions and aliases."""
    return _model_response(session, svc.get_model(session, principal, model), detail=True)


@router.patch("/models/{model}", response_model=ModelDetailResponse)
def update_model(model: str, req: ModelUpdateRequest, session: SessionDep, principal: UserDep):
    """Change a model

    Description, labels or visibility; the owner only."""
    m = svc.update_model(session, principal, svc.get_model(session, principal, model),
                         **req.model_dump(exclude_none=True))
    session.flush()
    return _model_response(session, m, detail=True)


@router.delete("/models/{model}", status_code=status.HTTP_204_NO_CONTENT)
def delete_model(model: str, session: SessionDep, settings: SettingsDep, principal: UserDep):
    """Deletes every version and alias; refused (409) while any version is importing or in use."""
    svc.delete_model(session, settings, principal, svc.get_model(session, principal, model))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/models/{model}/versions", status_code=status.HTTP_202_ACCEPTED, response_model=VersionResponse)
def create_version(model: str, req: VersionCreateRequest, session: SessionDep, ctx: CtxDep, principal: UserDep):
    """Import a new version (answers `importing`; poll until `done` or `failed`)."""
    m = svc.get_model(session, principal, model)
    v = svc.start_import(session, ctx.settings, principal, m, save_path=req.path, version=req.version,
                         source=req.source, description=req.description, image=req.image,
                         hyper_parameter_list=req.hyper_parameter_list, sessions=ctx.sessions)
    return _version(v, {})


@router.get("/models/{model}/versions", response_model=list[VersionResponse])
def list_versions(model: str, session: SessionDep, principal: UserDep):
    """Versions of a model

    Every version with its status, format and size, oldest first."""
    m = svc.get_model(session, principal, model)
    by_version = svc.aliases_by_version(session, m.id)
    return [_version(v, by_version) for v in svc.versions_of(session, m.id)]


@router.get("/models/{model}/versions/{version}", response_model=VersionDetailResponse)
def get_version(model: str, version: str, session: SessionDep, principal: UserDep):
    """One version of a model

    By version string, alias, version id or unique id prefix, or 'latest'."""
    m = svc.get_model(session, principal, model)
    v = svc.find_version(session, m, version)
    return _version(v, svc.aliases_by_version(session, m.id), detail=True)


@router.delete("/models/{model}/versions/{version}", status_code=status.HTTP_204_NO_CONTENT)
def delete_version(model: str, version: str, session: SessionDep, principal: UserDep):
    """Refused (409 in_use) while an adapter is built on it, an alias points to it, or a job or
    service uses it."""
    m = svc.get_model(session, principal, model)
    svc.delete_version(session, principal, svc.find_version(session, m, version))
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/models/{model}/aliases", response_model=list[AliasResponse])
def list_aliases(model: str, session: SessionDep, principal: UserDep):
    """Aliases of a model

    The movable names (production, best...) and the versions they point to."""
    m = svc.get_model(session, principal, model)
    names = {v.id: v.version for v in svc.versions_of(session, m.id)}
    return [AliasResponse(alias=a.alias, version_id=a.version_id, version=names.get(a.version_id),
                          updated_at=a.updated_at) for a in svc.aliases_of(session, m.id)]


@router.put("/models/{model}/aliases/{alias}", response_model=AliasResponse)
def set_alias(model: str, alias: str, req: AliasSetRequest, session: SessionDep, principal: UserDep):
    """Create or move an alias (e.g. `production`) to a done version."""
    m = svc.get_model(session, principal, model)
    row = svc.set_alias(session, principal, m, alias, req.version)
    v = svc.get_version(session, principal, row.version_id)
    return AliasResponse(alias=row.alias, version_id=row.version_id, version=v.version, updated_at=row.updated_at)


@router.delete("/models/{model}/aliases/{alias}", status_code=status.HTTP_204_NO_CONTENT)
def delete_alias(model: str, alias: str, session: SessionDep, principal: UserDep):
    """Delete an alias

    The version it pointed to stays."""
    m = svc.get_model(session, principal, model)
    svc.delete_alias(session, principal, m, alias)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/models/{model}/versions/{version}/metrics", response_model=list[MetricResponse])
def list_metrics(model: str, version: str, session: SessionDep, principal: UserDep, name: str | None = None):
    """Metrics of a version

    Evaluation and training metrics recorded on the version, optionally one name."""
    m = svc.get_model(session, principal, model)
    return svc.list_metrics(session, svc.find_version(session, m, version), name=name)


@router.post("/models/{model}/versions/{version}/metrics", status_code=status.HTTP_201_CREATED,
             response_model=list[MetricResponse])
def add_metrics(model: str, version: str, req: MetricsAddRequest, session: SessionDep, principal: UserDep):
    """Append metrics ({"metrics": {"bleu": 31.2}, "step": 100} or {"items": [...]}); the version's
    `metrics` keeps the latest value per name."""
    m = svc.get_model(session, principal, model)
    return svc.add_metrics(session, principal, svc.find_version(session, m, version), req.as_items())
