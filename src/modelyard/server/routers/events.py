"""Native event log: every state change (who, what, object, when), listable per object.

Admins see every event. A user sees the events they caused (actor) and the events of objects
they own: their own user and quota, and any object whose table has an owner column (owner_id,
else user_id) — or whose row points (one foreign key hop, e.g. a model version -> its model) at
such a table. The object types are the tables' names in the singular ("model", "model_version",
"job", ...), as the services record them. An event whose data carries "owner_id" belongs to that
user too."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter, Query

from modelyard.server.deps import SessionDep, UserDep
from modelyard.server.schemas.common import Page
from modelyard.server.schemas.resources import EventResponse
from modelyard.server.services import events as svc

router = APIRouter(tags=["events"])

@router.get("/events", response_model=Page[EventResponse],
            summary="Events visible to the caller, newest first (filters: object_type, object_id, kind, actor)")
def list_events(session: SessionDep, principal: UserDep, object_type: str | None = None,
                object_id: str | None = None,
                kind: str | None = Query(None, description="exact kind, or a prefix ending in '.' or '*'"),
                actor_id: str | None = None, since: datetime | None = None, until: datetime | None = None,
                order: Literal["asc", "desc"] = "desc", page: int = Query(1, ge=1),
                page_size: int = Query(50, ge=1, le=1000)):
    items, total = svc.list_events(session, principal, object_type=object_type, object_id=object_id, kind=kind,
                                   actor_id=actor_id, since=since, until=until, order=order, page=page,
                                   page_size=page_size)
    return {"items": items, "total": total, "page": page, "page_size": page_size}


@router.get("/events/{object_type}/{object_id}", response_model=Page[EventResponse],
            summary="The history of one object, oldest first")
def object_events(object_type: str, object_id: str, session: SessionDep, principal: UserDep,
                  kind: str | None = None, order: Literal["asc", "desc"] = "asc",
                  page: int = Query(1, ge=1), page_size: int = Query(200, ge=1, le=1000)):
    items, total = svc.list_events(session, principal, object_type=object_type, object_id=object_id, kind=kind,
                                   order=order, page=page, page_size=page_size)
    return {"items": items, "total": total, "page": page, "page_size": page_size}
