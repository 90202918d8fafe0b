"""The event log: every state change writes one row (who, what, object, when)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelyard.server.orm import EventModel


def record(session: Session, *, actor_id: str | None, kind: str, object_type: str, object_id: str,
           message: str = "", data: dict[str, Any] | None = None) -> EventModel:
    ev = EventModel(actor_id=actor_id, kind=kind, object_type=object_type, object_id=object_id,
                    message=message[:1024], data=data or {})
    session.add(ev)
    return ev


def list_for(session: Session, *, object_type: str, object_id: str, limit: int = 200) -> list[EventModel]:
    stmt = (select(EventModel).where(EventModel.object_type == object_type, EventModel.object_id == object_id)
            .order_by(EventModel.id).limit(limit))
    return list(session.scalars(stmt))
