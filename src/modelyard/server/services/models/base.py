"""Model registry: the names, validation, small helpers and lookups shared by services/models.py
(the public service API) and services/models_import.py (importing and registering versions)."""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelyard.core.enums import ImportStatus
from modelyard.core.errors import BadRequest, Conflict, Forbidden, NotFound
from modelyard.server.auth import Principal
from modelyard.server.db import paginate
from modelyard.server.orm.models import (
    ModelAliasModel,
    ModelModel,
    ModelVersionMetricModel,
    ModelVersionModel,
)
from modelyard.server.orm.users import UserModel
from modelyard.server.services.common.access import visible
from modelyard.server.services.common.refs import resolve_ref
from modelyard.server.services.common.txn import after_commit, after_rollback
from modelyard.server.settings import Settings

log = logging.getLogger(__name__)

ID_RE = re.compile(r"^[0-9a-f]{32}$")
NAME_RE = re.compile(r"^[^\x00-\x1f/:\\]{1,128}$")
VERSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
ALIAS_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,63}$")
RESERVED_ALIASES = {"latest"}
FORMATS = ("hf", "gguf", "peft", "image")

IMPORTING, DONE, FAILED = ImportStatus.importing.value, ImportStatus.done.value, ImportStatus.failed.value


# --- small helpers ---------------------------------------------------------------------------------

# one after-commit / after-rollback hook for every domain (services/common/txn.py)
_after_commit = after_commit
_after_rollback = after_rollback


def _rmtree(path: str | Path | None) -> None:
    if path:
        shutil.rmtree(path, ignore_errors=True)


def principal_of(session: Session, user_id: str) -> Principal:
    user = session.get(UserModel, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return Principal(user.id, user.name, user.role)


def _is_visible(model: ModelModel, principal: Principal) -> bool:
    return principal.is_admin or model.owner_id == principal.id or bool(model.is_public)


def _ensure_owner(model: ModelModel, principal: Principal) -> None:
    if not (principal.is_admin or model.owner_id == principal.id):
        raise Forbidden(f"model {model.name} belongs to another user")


def validate_name(name: str) -> str:
    name = (name or "").strip()
    if not NAME_RE.match(name):
        raise BadRequest("model name must be 1-128 characters without '/', ':', '\\' or control characters",
                         code="invalid_name")
    return name


def validate_version(version: str) -> str:
    version = (version or "").strip()
    if not VERSION_RE.match(version):
        raise BadRequest("version must be 1-64 letters, digits, '.', '_', '+', '-' and start with a letter or digit",
                         code="invalid_version")
    return version


def registry_path(settings: Settings, model_id: str, version_id: str) -> Path:
    return (settings.registry_dir / model_id / version_id).resolve()


# --- lookups ---------------------------------------------------------------------------------------

def get_model(session: Session, principal: Principal, ref: str) -> ModelModel:
    """A visible model by id, by name (the caller's own first, then a unique visible one), or by
    'owner/name'. 404 when there is none the caller may see."""
    ref = (ref or "").strip()
    if "/" in ref:
        owner_name, _, name = ref.partition("/")
        stmt = (select(ModelModel).join(UserModel, UserModel.id == ModelModel.owner_id)
                .where(ModelModel.name == name, UserModel.name == owner_name))
        m = session.scalars(visible(stmt, ModelModel, principal)).first()
        if m is not None:
            return m
    return resolve_ref(session, ModelModel, ref, principal, what="model")


def get_version(session: Session, principal: Principal, version_id: str) -> ModelVersionModel:
    """A version by its id, or by '<model>:<version|alias>' / an id prefix of a version of a visible model."""
    v = session.get(ModelVersionModel, version_id) if version_id else None
    if v is not None and _is_visible(session.get(ModelModel, v.model_id), principal):
        return v
    if version_id and ":" in version_id:
        return resolve_model_version(session, principal, version_id, require_done=False)
    cand = resolve_ref(session, ModelVersionModel, version_id, None, what="model version", name_col="id", owned=False)
    if not _is_visible(session.get(ModelModel, cand.model_id), principal):
        raise NotFound(f"model version {version_id} not found")
    return cand


def latest_version(session: Session, model_id: str, *, done_only: bool = True) -> ModelVersionModel | None:
    stmt = select(ModelVersionModel).where(ModelVersionModel.model_id == model_id)
    if done_only:
        stmt = stmt.where(ModelVersionModel.status == DONE)
    return session.scalars(stmt.order_by(ModelVersionModel.created_at.desc(), ModelVersionModel.id.desc())
                           .limit(1)).first()


def find_version(session: Session, model: ModelModel, tag: str) -> ModelVersionModel:
    """A version of model by version id, version string, alias, or 'latest' (newest done)."""
    tag = (tag or "").strip()
    if ID_RE.match(tag):
        v = session.get(ModelVersionModel, tag)
        if v is not None and v.model_id == model.id:
            return v
    v = session.scalars(select(ModelVersionModel).where(ModelVersionModel.model_id == model.id,
                                                        ModelVersionModel.version == tag)).first()
    if v is not None:
        return v
    alias = session.scalars(select(ModelAliasModel).where(ModelAliasModel.model_id == model.id,
                                                          ModelAliasModel.alias == tag)).first()
    if alias is not None:
        return session.get(ModelVersionModel, alias.version_id)
    if tag == "latest":
        v = latest_version(session, model.id)
        if v is not None:
            return v
    # a version id prefix (services/common/refs.py)
    return resolve_ref(session, ModelVersionModel, tag, None, what=f"version of model {model.name}",
                       name_col="version", owned=False, where=ModelVersionModel.model_id == model.id)


def resolve_model_version(session: Session, principal: Principal, ref: str, *,
                          require_done: bool = True) -> ModelVersionModel:
    """ref = a version id, '<model name or id>' (latest done version), or
    '<model name>:<version or alias>'. 404 if not visible; 409 (model_version_not_ready) when the
    version is still importing or failed and require_done."""
    ref = (ref or "").strip()
    if not ref:
        raise BadRequest("empty model reference", code="invalid_model_ref")
    v: ModelVersionModel | None = None
    if ID_RE.match(ref):
        cand = session.get(ModelVersionModel, ref)
        if cand is not None and _is_visible(session.get(ModelModel, cand.model_id), principal):
            v = cand
    if v is None:
        name, sep, tag = ref.rpartition(":")
        if not sep:
            name, tag = ref, ""
        model = get_model(session, principal, name)
        if tag:
            v = find_version(session, model, tag)
        else:
            v = latest_version(session, model.id)
            if v is None:
                raise NotFound(f"model {model.name} has no ready version", code="no_ready_version")
    if require_done and v.status != DONE:
        model = session.get(ModelModel, v.model_id)
        raise Conflict(f"model version {model.name}:{v.version} is {v.status}"
                       + (f" ({v.status_reason})" if v.status_reason else ""), code="model_version_not_ready")
    return v


def list_models(session: Session, principal: Principal, *, page: int = 1, page_size: int = 20,
                q: str | None = None, name: str | None = None, owner_id: str | None = None,
                type: str | None = None, is_public: bool | None = None, mine: bool = False
                ) -> tuple[list[ModelModel], int]:
    stmt = visible(select(ModelModel), ModelModel, principal)
    if q:
        stmt = stmt.where(ModelModel.name.ilike(f"%{q}%"))
    if name:
        stmt = stmt.where(ModelModel.name == name)
    if owner_id:
        stmt = stmt.where(ModelModel.owner_id == owner_id)
    if mine:
        stmt = stmt.where(ModelModel.owner_id == principal.id)
    if type:
        stmt = stmt.where(ModelModel.type == type)
    if is_public is not None:
        stmt = stmt.where(ModelModel.is_public.is_(is_public))
    stmt = stmt.order_by(ModelModel.created_at.desc(), ModelModel.id.desc())
    return paginate(session, stmt, page=page, page_size=page_size)


def versions_of(session: Session, model_id: str) -> list[ModelVersionModel]:
    return list(session.scalars(select(ModelVersionModel).where(ModelVersionModel.model_id == model_id)
                                .order_by(ModelVersionModel.created_at, ModelVersionModel.id)))


def aliases_of(session: Session, model_id: str) -> list[ModelAliasModel]:
    return list(session.scalars(select(ModelAliasModel).where(ModelAliasModel.model_id == model_id)
                                .order_by(ModelAliasModel.alias)))


def aliases_by_version(session: Session, model_id: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for a in aliases_of(session, model_id):
        out.setdefault(a.version_id, []).append(a.alias)
    return out


def summaries(session: Session, model_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Per model: versions count, total size, newest version (string, status)."""
    ids = list(model_ids)
    out: dict[str, dict[str, Any]] = {i: {"count": 0, "size_bytes": 0, "latest": None, "latest_status": None}
                                      for i in ids}
    if not ids:
        return out
    for mid, count, size in session.execute(
            select(ModelVersionModel.model_id, func.count(), func.coalesce(func.sum(ModelVersionModel.size_bytes), 0))
            .where(ModelVersionModel.model_id.in_(ids)).group_by(ModelVersionModel.model_id)):
        out[mid]["count"], out[mid]["size_bytes"] = int(count), int(size)
    rows = session.execute(
        select(ModelVersionModel.model_id, ModelVersionModel.version, ModelVersionModel.status)
        .where(ModelVersionModel.model_id.in_(ids))
        .order_by(ModelVersionModel.model_id, ModelVersionModel.created_at.desc(), ModelVersionModel.id.desc()))
    for mid, version, status in rows:
        if out[mid]["latest"] is None:
            out[mid]["latest"], out[mid]["latest_status"] = version, status
    return out


def users_by_id(session: Session, ids: Iterable[str]) -> dict[str, UserModel]:
    ids = {i for i in ids if i}
    if not ids:
        return {}
    return {u.id: u for u in session.scalars(select(UserModel).where(UserModel.id.in_(ids)))}


def _next_version(session: Session, model_id: str) -> str:
    existing = set(session.scalars(select(ModelVersionModel.version).where(ModelVersionModel.model_id == model_id)))
    n = max([int(v) for v in existing if v.isascii() and v.isdigit() and len(v) <= 15] + [len(existing)]) + 1
    while str(n) in existing:
        n += 1
    return str(n)


def _check_version_free(session: Session, model: ModelModel, version: str) -> None:
    if session.scalars(select(ModelVersionModel.id).where(ModelVersionModel.model_id == model.id,
                                                          ModelVersionModel.version == version)).first():
        raise Conflict(f"model {model.name} already has version {version}", code="version_exists")


def _append_metrics(session: Session, v: ModelVersionModel, items: list[dict]) -> list[ModelVersionMetricModel]:
    rows = []
    latest = dict(v.metrics or {})
    for it in items:
        name = str(it.get("name") or "").strip()
        if not name or len(name) > 128:
            raise BadRequest("each metric needs a name (1-128 characters)", code="invalid_metric")
        try:
            value = float(it["value"])
        except (KeyError, TypeError, ValueError):
            raise BadRequest(f"metric {name!r} needs a numeric value", code="invalid_metric") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise BadRequest(f"metric {name!r} is not finite", code="invalid_metric")
        step = it.get("step")
        row = ModelVersionMetricModel(version_id=v.id, name=name, value=value,
                                      step=int(step) if step is not None else None)
        session.add(row)
        rows.append(row)
        latest[name] = value
    v.metrics = latest  # a new dict: the JSON column sees the change
    session.flush()
    return rows
