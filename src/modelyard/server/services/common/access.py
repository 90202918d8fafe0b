"""Who sees what: users see their own objects and public ones; admins see everything.

Reading an object you may not see answers 404 (its existence is not leaked); changing a visible
object you do not own (a public one) answers 403."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import Select, or_
from sqlalchemy.orm import Session

from modelyard.core.errors import Forbidden, NotFound
from modelyard.server.auth import Principal

T = TypeVar("T")


def visible(stmt: Select, cls: Any, principal: Principal) -> Select:
    """Restrict a select over cls (with owner_id and optionally is_public) to what principal may see."""
    if principal.is_admin:
        return stmt
    conds = [cls.owner_id == principal.id]
    if hasattr(cls, "is_public"):
        conds.append(cls.is_public.is_(True))
    return stmt.where(or_(*conds))


def get_visible(session: Session, cls: type[T], obj_id: str, principal: Principal, *, what: str | None = None) -> T:
    obj = session.get(cls, obj_id)
    name = what or getattr(cls, "__tablename__", "object").rstrip("s")
    if obj is None or not (principal.is_admin or obj.owner_id == principal.id or getattr(obj, "is_public", False)):
        raise NotFound(f"{name} {obj_id} not found")
    return obj


def get_owned(session: Session, cls: type[T], obj_id: str, principal: Principal, *, what: str | None = None) -> T:
    """For changes: must be visible, and owned by the caller (or caller is admin)."""
    obj = get_visible(session, cls, obj_id, principal, what=what)
    if not principal.is_admin and obj.owner_id != principal.id:
        raise Forbidden(f"{what or 'object'} {obj_id} belongs to another user")
    return obj


