"""The event log: every state change writes one row (who, what, object, when).

Visibility: admins see every event. A user sees the events they caused (actor) and the events of
objects they own: their own user and quota, and any object whose table has an owner column
(owner_id, else user_id) — or whose row points (one foreign key hop, e.g. a model version -> its
model) at such a table. The object types are the tables' names in the singular ("model",
"model_version", "job", ...), as the services record them. An event whose data carries "owner_id"
belongs to that user too."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from sqlalchemy import Select, String, and_, cast, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from modelyard.server.auth import Principal
from modelyard.server.db import paginate
from modelyard.server.orm import Base, EventModel


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


# --- reading, as the caller may see it ---------------------------------------------------------

# object types that are a user id themselves
SELF_TYPES = ("user", "quota")


def singular(table: str) -> set[str]:
    """The names services may use for a table's objects: "models" -> {"models", "model"},
    "model_aliases" -> {..., "model_alias"}, "searches" -> {..., "search"}, "entries" -> {..., "entry"}."""
    names = {table}
    if table.endswith("ies"):
        names.add(table[:-3] + "y")
    elif table.endswith("es"):
        names |= {table[:-1], table[:-2]}
    elif table.endswith("s"):
        names.add(table[:-1])
    return names


@functools.cache
def _ownership() -> tuple[tuple[tuple[str, ...], object, object], ...]:
    """(object types, table, how to select that table's ids owned by a user) for every table
    that has an owner directly or through one foreign key."""

    def owner_col(t):
        return t.c.get("owner_id") if "owner_id" in t.c else t.c.get("user_id")

    tables = Base.metadata.tables
    direct = {name: t for name, t in tables.items() if "id" in t.c and owner_col(t) is not None}
    out = []
    for name, t in tables.items():
        if "id" not in t.c or name in ("events", "users", "api_tokens"):
            continue
        types = tuple(sorted(singular(name)))
        if name in direct:
            out.append((types, t, ("direct", owner_col(t))))
            continue
        for fk in t.foreign_keys:
            parent = fk.column.table
            if parent.name in direct and fk.column.name == "id" and parent.name != "users":
                out.append((types, t, ("via", fk.parent, parent, owner_col(parent))))
                break
    return tuple(out)


def visible_events_condition(principal: Principal) -> ColumnElement[bool] | None:
    """None for admins (everything); else the OR of what the user may see."""
    if principal.is_admin:
        return None
    me = principal.id
    conds = [EventModel.actor_id == me,
             and_(EventModel.object_type.in_(SELF_TYPES), EventModel.object_id == me),
             EventModel.data["owner_id"].as_string() == me]
    for types, t, how in _ownership():
        # object ids are strings; a table with integer ids is compared as text
        id_col = t.c.id if isinstance(t.c.id.type, String) else cast(t.c.id, String)
        if how[0] == "direct":
            ids = select(id_col).where(how[1] == me)
        else:
            _, fk_col, parent, parent_owner = how
            ids = select(id_col).where(fk_col.in_(select(parent.c.id).where(parent_owner == me)))
        conds.append(and_(EventModel.object_type.in_(types), EventModel.object_id.in_(ids)))
    return or_(*conds)


def events_query(principal: Principal, *, object_type: str | None, object_id: str | None, kind: str | None,
           actor_id: str | None, since: datetime | None, until: datetime | None, order: str) -> Select:
    stmt = select(EventModel)
    cond = visible_events_condition(principal)
    if cond is not None:
        stmt = stmt.where(cond)
    if object_type:
        stmt = stmt.where(EventModel.object_type == object_type)
    if object_id:
        stmt = stmt.where(EventModel.object_id == object_id)
    if kind:
        # "job.state_changed" exactly, or a prefix ending in "." / "*" ("job." / "job*")
        if kind.endswith(("*", ".")):
            stmt = stmt.where(EventModel.kind.startswith(kind.rstrip("*"), autoescape=True))
        else:
            stmt = stmt.where(EventModel.kind == kind)
    if actor_id:
        stmt = stmt.where(EventModel.actor_id == actor_id)
    if since:
        stmt = stmt.where(EventModel.at >= since)
    if until:
        stmt = stmt.where(EventModel.at < until)
    return stmt.order_by(EventModel.id.desc() if order == "desc" else EventModel.id)


def list_events(session: Session, principal: Principal, *, object_type: str | None = None,
                object_id: str | None = None, kind: str | None = None, actor_id: str | None = None,
                since: datetime | None = None, until: datetime | None = None, order: str = "desc",
                page: int = 1, page_size: int = 50) -> tuple[list[EventModel], int]:
    """(items, total) of the events visible to the caller, filtered, by id (order asc|desc)."""
    stmt = events_query(principal, object_type=object_type, object_id=object_id, kind=kind, actor_id=actor_id,
                        since=since, until=until, order=order)
    return paginate(session, stmt, page=page, page_size=page_size)
