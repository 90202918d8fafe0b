"""Native event log: every state change (who, what, object, when), listable per object.

Admins see every event. A user sees the events they caused (actor) and the events of objects
they own: their own user and quota, and any object whose table has an owner column (owner_id,
else user_id) — or whose row points (one foreign key hop, e.g. a model version -> its model) at
such a table. The object types are the tables' names in the singular ("model", "model_version",
"job", ...), as the services record them. An event whose data carries "owner_id" belongs to that
user too."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from modelyard.server.deps import SessionDep, UserDep
from modelyard.server.routers.params import IdQ, NameQ, PageQ, PageSizeQ, SearchQ
from modelyard.server.schemas.common import MAX_SEARCH, Page
from modelyard.server.schemas.resources import EventResponse
from modelyard.server.services import events as svc

router = APIRouter(tags=["events"])


def _naive_utc(v: datetime | None) -> datetime | None:
    """Event times are stored naive-UTC: a bound with an offset is converted, a naive one taken as UTC."""
    return v.astimezone(UTC).replace(tzinfo=None) if v is not None and v.tzinfo is not None else v

@router.get("/events", response_model=Page[EventResponse],
            summary="Events visible to the caller, newest first (filters: object_type, object_id, kind, actor)")
def list_events(session: SessionDep, principal: UserDep, object_type: NameQ = None, object_id: IdQ = None,
                kind: Annotated[str | None, Query(description="exact kind, or a prefix ending in '.' or '*'",
                                                  max_length=MAX_SEARCH)] = None,
                actor_id: IdQ = None, since: datetime | None = None, until: datetime | None = None,
                order: Literal["asc", "desc"] = "desc", page: PageQ = 1, page_size: PageSizeQ = 50):
    """The audit trail: state changes, creations, deletions. Users see events of their own objects; admins see all."""
    items, total = svc.list_events(session, principal, object_type=object_type, object_id=object_id, kind=kind,
                                   actor_id=actor_id, since=_naive_utc(since), until=_naive_utc(until),
                                   order=order, page=page,
                                   page_size=page_size)
    return {"items": items, "total": total, "page": page, "page_size": page_size}


@router.get("/events/{object_type}/{object_id}", response_model=Page[EventResponse],
            summary="The history of one object, oldest first")
def object_events(object_type: str, object_id: str, session: SessionDep, principal: UserDep,
                  kind: SearchQ = None, order: Literal["asc", "desc"] = "asc",
                  page: PageQ = 1, page_size: PageSizeQ = 200):
    """Everything recorded about one object (a job, a model, a user...), oldest first."""
    items, total = svc.list_events(session, principal, object_type=object_type, object_id=object_id, kind=kind,
                                   order=order, page=page, page_size=page_size)
    return {"items": items, "total": total, "page": page, "page_size": page_size}
