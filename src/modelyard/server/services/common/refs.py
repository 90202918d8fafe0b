"""THE way a path parameter names an object: its full id, a unique id prefix (>= 4 characters),
or its name. Every domain (jobs, searches, models, datasets, images, users, flavors, resource
groups) resolves its `{ref}` here, so the rules are the same everywhere:

    1. the full id of an object the caller may see;
    2. a name: the caller's own object first (several: the newest when `newest`, e.g. jobs and
       searches, whose names repeat; else 409), then for an admin anyone's, then a single
       visible public one;
    3. an id prefix of >= 4 hex characters matching exactly one visible object;
    otherwise 404 (another user's private object is never named), or 409 `ambiguous_reference`
    with the candidates in `details` when a name or prefix matches several.

Objects without an owner (users, flavors, resource groups: admin-managed, readable by all) pass
`owned=False`; their name column can be another (`name_col`, e.g. a resource group's `key`).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelyard.core.errors import Conflict, NotFound
from modelyard.server.auth import Principal
from modelyard.server.services.common.access import visible

ID_RE = re.compile(r"^[0-9a-f]{32}$")
PREFIX_RE = re.compile(r"^[0-9a-f]{4,31}$")
MIN_PREFIX = 4
_MAX_CANDIDATES = 10


class AmbiguousReference(Conflict):
    code = "ambiguous_reference"


def _label(obj: Any, name_col: str) -> dict[str, Any]:
    return {"id": obj.id, "name": getattr(obj, name_col, None), "owner_id": getattr(obj, "owner_id", None)}


def _ambiguous(what: str, ref: str, cands: list, name_col: str, how: str) -> AmbiguousReference:
    return AmbiguousReference(
        f"{what} {how} {ref!r} matches {len(cands)} {what}s; use a longer id prefix or the full id",
        details={"candidates": [_label(c, name_col) for c in cands[:_MAX_CANDIDATES]]})


def _newest_first(cls: Any) -> list:
    order = []
    if hasattr(cls, "created_at"):
        order.append(cls.created_at.desc())
    order.append(cls.id.desc())
    return order


def may_see(obj: Any, principal: Principal | None, owned: bool = True) -> bool:
    if principal is None or not owned or principal.is_admin:
        return True
    return obj.owner_id == principal.id or bool(getattr(obj, "is_public", False))


def resolve_ref(session: Session, cls: Any, ref: str, principal: Principal | None, *, what: str,
                name_col: str = "name", newest: bool = False, owned: bool = True, where: Any = None,
                not_found_code: str = "not_found") -> Any:
    """The one object `ref` names for `principal` (rules in the module doc). `where`: an extra
    filter (e.g. a model version's model). `principal=None`: no visibility filter."""
    ref = (ref or "").strip()
    if not ref:
        raise NotFound(f"{what} reference is empty", code=not_found_code)

    def base():
        stmt = select(cls)
        if where is not None:
            stmt = stmt.where(where)
        if owned and principal is not None:
            stmt = visible(stmt, cls, principal)
        return stmt

    if ID_RE.match(ref):
        obj = session.get(cls, ref)
        if obj is not None and may_see(obj, principal, owned) and (
                where is None or session.scalar(base().where(cls.id == ref)) is not None):
            return obj
    col = getattr(cls, name_col, None)
    if col is not None and len(ref) <= 255:
        named = list(session.scalars(base().where(col == ref).order_by(*_newest_first(cls)).limit(50)))
        if named:
            if not owned or principal is None:
                return named[0]
            own = [c for c in named if c.owner_id == principal.id]
            for group in (own, named if principal.is_admin else [],
                          [c for c in named if getattr(c, "is_public", False)]):
                if len(group) == 1 or (group and newest and group is own):
                    return group[0]
                if group:
                    raise _ambiguous(what, ref, group, name_col, "name")
    if PREFIX_RE.match(ref):
        pref = list(session.scalars(base().where(cls.id.startswith(ref, autoescape=True))
                                    .order_by(*_newest_first(cls)).limit(_MAX_CANDIDATES + 1)))
        if len(pref) == 1:
            return pref[0]
        if pref:
            raise _ambiguous(what, ref, pref, name_col, "id prefix")
    raise NotFound(f"{what} {ref} not found", code=not_found_code)


def pick_by_name(session: Session, cls: Any, name: str, principal: Principal, *, what: str) -> Any:
    """An object by name, id or id prefix (the older name of resolve_ref, kept for its callers)."""
    return resolve_ref(session, cls, name, principal, what=what)


def resolve_owned_ref(session: Session, cls: Any, ref: str, principal: Principal, *, what: str, **kw) -> Any:
    """For changes: resolve, then the caller must own it (or be an admin): 403 otherwise."""
    from modelyard.core.errors import Forbidden

    obj = resolve_ref(session, cls, ref, principal, what=what, **kw)
    if not principal.is_admin and obj.owner_id != principal.id:
        raise Forbidden(f"{what} {ref} belongs to another user")
    return obj
