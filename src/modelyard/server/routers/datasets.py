"""Native dataset API (/api/v1/datasets). `{dataset}` is a dataset id or name; `{version}` a version
number, a version id or `latest`."""

from __future__ import annotations

from fastapi import APIRouter, Query, status

from modelyard.server.db import session_scope
from modelyard.server.deps import CtxDep, SessionDep, UserDep
from modelyard.server.routers.params import NameQ, OffsetQ, PageQ, PageSizeQ, SearchQ
from modelyard.server.schemas.common import Page
from modelyard.server.schemas.datasets import (
    DatasetCreatedResponse,
    DatasetCreateRequest,
    DatasetDetailResponse,
    DatasetResponse,
    DatasetRowsResponse,
    DatasetUpdateRequest,
    DatasetVersionCreateRequest,
    DatasetVersionResponse,
    DatasetVersionSummary,
)
from modelyard.server.services import datasets as svc

router = APIRouter(tags=["datasets"])


def _source(req) -> svc.Source:
    return svc.Source(path=req.path, train=req.train, validate=req.validate_, test=req.test)


def _dataset(session, ds, *, detail: bool = False):
    latest = svc.latest_versions(session, [ds.id]).get(ds.id)
    base = DatasetResponse.model_validate(ds).model_dump(exclude={"latest_version", "versions_count"})
    versions = svc.versions_of(session, ds.id) if detail else None
    count = len(versions) if versions is not None else svc.version_counts(session, [ds.id]).get(ds.id, 0)
    common = dict(**base, versions_count=count, latest_version=DatasetVersionSummary.of(latest) if latest else None)
    if detail:
        return DatasetDetailResponse(**common, versions=[DatasetVersionSummary.of(v) for v in versions])
    return DatasetResponse(**common)


@router.post("/datasets", status_code=status.HTTP_201_CREATED, response_model=DatasetCreatedResponse)
def create_dataset(req: DatasetCreateRequest, ctx: CtxDep, principal: UserDep):
    """Validate and copy the data into version 1 (400 naming file and line of the first bad row)."""
    ds, v = svc.create_dataset(ctx.sessions, ctx.settings, principal, name=req.name, source=_source(req),
                               description=req.description, is_public=req.is_public)
    with session_scope(ctx.sessions, readonly=True) as session:
        out = _dataset(session, session.get(type(ds), ds.id))
    return DatasetCreatedResponse(**out.model_dump(), version=DatasetVersionResponse.of(v))


@router.get("/datasets", response_model=Page[DatasetResponse])
def list_datasets(session: SessionDep, principal: UserDep, page: PageQ = 1, page_size: PageSizeQ = 20,
                  q: SearchQ = None, name: NameQ = None):
    """List datasets

    Your datasets and public ones, newest first, with their latest version."""
    items, total = svc.list_datasets(session, principal, page=page, page_size=page_size, q=q, name=name)
    ids = [d.id for d in items]
    latest, counts = svc.latest_versions(session, ids), svc.version_counts(session, ids)
    out = []
    for ds in items:
        r = DatasetResponse.model_validate(ds)
        r.versions_count = counts.get(ds.id, 0)
        r.latest_version = DatasetVersionSummary.of(latest[ds.id]) if ds.id in latest else None
        out.append(r)
    return Page[DatasetResponse](items=out, total=total, page=page, page_size=page_size)


@router.get("/datasets/{dataset}", response_model=DatasetDetailResponse)
def get_dataset(dataset: str, session: SessionDep, principal: UserDep):
    """One dataset

    Addressed by id, unique id prefix or name; includes its versions."""
    return _dataset(session, svc.get_dataset(session, principal, dataset), detail=True)


@router.patch("/datasets/{dataset}", response_model=DatasetDetailResponse)
def update_dataset(dataset: str, req: DatasetUpdateRequest, session: SessionDep, principal: UserDep):
    """Change a dataset

    Description or visibility; the owner only."""
    ds = svc.update_dataset(session, principal, dataset, description=req.description, is_public=req.is_public)
    session.flush()
    return _dataset(session, ds, detail=True)


@router.delete("/datasets/{dataset}", status_code=status.HTTP_204_NO_CONTENT)
def delete_dataset(dataset: str, ctx: CtxDep, principal: UserDep):
    """Refused (409 in_use) while a job uses any of its versions."""
    svc.delete_dataset(ctx.sessions, ctx.settings, principal, dataset)


@router.get("/datasets/{dataset}/versions", response_model=list[DatasetVersionSummary])
def list_versions(dataset: str, session: SessionDep, principal: UserDep):
    """Versions of a dataset

    Each version's splits, files, row counts and detected shape."""
    ds = svc.get_dataset(session, principal, dataset)
    return [DatasetVersionSummary.of(v) for v in svc.versions_of(session, ds.id)]


@router.post("/datasets/{dataset}/versions", status_code=status.HTTP_201_CREATED,
             response_model=DatasetVersionResponse)
def create_version(dataset: str, req: DatasetVersionCreateRequest, ctx: CtxDep, principal: UserDep):
    """New data = a new (immutable) version."""
    v = svc.create_version(ctx.sessions, ctx.settings, principal, dataset, _source(req), req.description)
    return DatasetVersionResponse.of(v)


@router.get("/datasets/{dataset}/versions/{version}", response_model=DatasetVersionResponse)
def get_version(dataset: str, version: str, session: SessionDep, principal: UserDep):
    """One dataset version

    By number, id, unique id prefix or 'latest'."""
    return DatasetVersionResponse.of(svc.get_version(session, principal, dataset, version))


@router.get("/datasets/{dataset}/versions/{version}/rows", response_model=DatasetRowsResponse)
def read_rows(dataset: str, version: str, session: SessionDep, principal: UserDep, split: str = "train",
              offset: OffsetQ = 0, limit: int = Query(20, ge=1, le=200)):
    """Read rows of a version

    A page of rows of one split, as the trainer reads them."""
    v = svc.get_version(session, principal, dataset, version)
    rows = svc.read_split(v, split, offset=offset, limit=limit)
    return DatasetRowsResponse(split=split, offset=offset, limit=limit,
                               total=int((v.splits or {}).get(split, {}).get("rows", 0)), rows=rows)


@router.delete("/datasets/{dataset}/versions/{version}", status_code=status.HTTP_204_NO_CONTENT)
def delete_version(dataset: str, version: str, ctx: CtxDep, principal: UserDep):
    """Delete a dataset version

    Refused (409 in_use) while a job uses it or a model version's lineage names it."""
    svc.delete_version(ctx.sessions, ctx.settings, principal, dataset, version)
