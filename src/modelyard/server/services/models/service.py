"""Model registry: models, immutable versions, movable aliases, per-version metrics.

Import from a user's files: the version is created `importing`, and once the request's
transaction commits a background thread copies the files into
<registry>/<model_id>/<version_id>/ (hashing them on the way), inspects them
(services/model_inspect.py) and marks the version `done`, or `failed` with the reason. Versions
left `importing` by a crash are marked failed ("interrupted") at the next server start.

`register_version` (jobs, the demo model) does the same synchronously, copying first and touching
the database only afterwards, so no transaction stays open during a copy.

Used by jobs through resolve_model_version and register_version (see ARCHITECTURE.md).

Modules: models_base.py (names, validation, helpers, lookups), models_import.py (importing,
register_version, the start-up reconcile); their names are re-exported here."""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from modelyard.core.errors import BadRequest, Conflict, NotFound
from modelyard.server.auth import Principal
from modelyard.server.orm.models import (
    ModelAliasModel,
    ModelModel,
    ModelVersionMetricModel,
    ModelVersionModel,
)
from modelyard.server.services import events
from modelyard.server.services.common import references
from modelyard.server.services.models.base import (
    ALIAS_RE,
    DONE,
    IMPORTING,
    RESERVED_ALIASES,
    _after_commit,
    _append_metrics,
    _ensure_owner,
    _rmtree,
    find_version,
    principal_of,
    validate_name,
    versions_of,
)
from modelyard.server.settings import Settings

# --- models ----------------------------------------------------------------------------------------

def create_model(session: Session, principal: Principal, *, owner_id: str | None = None, name: str,
                 description: str = "", type: str = "LLM", developer: str = "", is_public: bool = False,
                 exist_ok: bool = False) -> ModelModel:
    """A new model owned by owner_id (the caller unless an admin acts for another user).
    With exist_ok an existing model of that owner and name is returned instead of 409."""
    owner_id = principal.ensure_acting_as(owner_id)
    if owner_id != principal.id:
        principal_of(session, owner_id)  # 404 for an unknown user
    name = validate_name(name)
    existing = session.scalars(select(ModelModel).where(ModelModel.owner_id == owner_id,
                                                        ModelModel.name == name)).first()
    if existing is not None:
        if exist_ok:
            return existing
        raise Conflict(f"model {name!r} already exists", code="model_exists", details={"id": existing.id})
    model = ModelModel(owner_id=owner_id, name=name, description=description or "", type=type or "LLM",
                       developer=developer or "", is_public=bool(is_public))
    session.add(model)
    session.flush()
    events.record(session, actor_id=principal.id, kind="model.created", object_type="model", object_id=model.id,
                  message=f"model {name} created", data={"name": name, "owner_id": owner_id, "is_public": is_public})
    return model


def update_model(session: Session, principal: Principal, model: ModelModel, **changes: Any) -> ModelModel:
    """Metadata only (description, type, developer, is_public, name); files are immutable."""
    _ensure_owner(model, principal)
    changed = {}
    for key in ("description", "type", "developer", "is_public", "name"):
        value = changes.get(key)
        if value is None or getattr(model, key) == value:
            continue
        if key == "name":
            value = validate_name(value)
            if session.scalars(select(ModelModel).where(ModelModel.owner_id == model.owner_id,
                                                        ModelModel.name == value)).first():
                raise Conflict(f"model {value!r} already exists", code="model_exists")
        setattr(model, key, value)
        changed[key] = value
    if changed:
        events.record(session, actor_id=principal.id, kind="model.updated", object_type="model",
                      object_id=model.id, data=changed)
    return model


# --- aliases and metrics ---------------------------------------------------------------------------

def set_alias(session: Session, principal: Principal, model: ModelModel, alias: str, version_ref: str
              ) -> ModelAliasModel:
    """Point alias at a done version of model (created or moved)."""
    _ensure_owner(model, principal)
    alias = (alias or "").strip()
    if not ALIAS_RE.match(alias) or alias in RESERVED_ALIASES:
        raise BadRequest("alias must be 1-64 letters, digits, '.', '_', '-', start with a letter, and not be "
                         "'latest'", code="invalid_alias")
    if session.scalars(select(ModelVersionModel.id).where(ModelVersionModel.model_id == model.id,
                                                          ModelVersionModel.version == alias)).first():
        raise BadRequest(f"{alias!r} is a version of model {model.name}; an alias cannot shadow it",
                         code="invalid_alias")
    v = find_version(session, model, version_ref)
    if v.status != DONE:
        raise Conflict(f"version {v.version} is {v.status}; only done versions get aliases",
                       code="model_version_not_ready")
    row = session.scalars(select(ModelAliasModel).where(ModelAliasModel.model_id == model.id,
                                                        ModelAliasModel.alias == alias)).first()
    previous = row.version_id if row else None
    if row is None:
        row = ModelAliasModel(model_id=model.id, alias=alias, version_id=v.id)
        session.add(row)
    else:
        row.version_id = v.id
    session.flush()
    if previous != v.id:
        events.record(session, actor_id=principal.id, kind="model.alias_set", object_type="model", object_id=model.id,
                      message=f"{alias} -> {v.version}",
                      data={"alias": alias, "version_id": v.id, "version": v.version, "previous_version_id": previous})
    return row


def delete_alias(session: Session, principal: Principal, model: ModelModel, alias: str) -> None:
    _ensure_owner(model, principal)
    row = session.scalars(select(ModelAliasModel).where(ModelAliasModel.model_id == model.id,
                                                        ModelAliasModel.alias == alias)).first()
    if row is None:
        raise NotFound(f"model {model.name} has no alias {alias!r}")
    session.delete(row)
    events.record(session, actor_id=principal.id, kind="model.alias_deleted", object_type="model",
                  object_id=model.id, data={"alias": alias, "version_id": row.version_id})


def add_metrics(session: Session, principal: Principal, v: ModelVersionModel, items: list[dict]
                ) -> list[ModelVersionMetricModel]:
    model = session.get(ModelModel, v.model_id)
    _ensure_owner(model, principal)
    if not items:
        raise BadRequest("no metrics given", code="invalid_metric")
    rows = _append_metrics(session, v, items)
    events.record(session, actor_id=principal.id, kind="model_version.metrics_added", object_type="model_version",
                  object_id=v.id, data={"metrics": {r.name: r.value for r in rows}})
    return rows


def list_metrics(session: Session, v: ModelVersionModel, name: str | None = None) -> list[ModelVersionMetricModel]:
    stmt = select(ModelVersionMetricModel).where(ModelVersionMetricModel.version_id == v.id)
    if name:
        stmt = stmt.where(ModelVersionMetricModel.name == name)
    return list(session.scalars(stmt.order_by(ModelVersionMetricModel.id)))


# --- deleting ----------------------------------------------------------------------------------------

@references.checker("model_version")
def _adapters_built_on(session: Session, version_id: str) -> str | None:
    rows = session.execute(select(ModelModel.name, ModelVersionModel.version)
                           .join(ModelModel, ModelModel.id == ModelVersionModel.model_id)
                           .where(ModelVersionModel.base_version_id == version_id)).all()
    if rows:
        return "lineage base of model version " + ", ".join(f"{n}:{ver}" for n, ver in rows[:5])
    return None


@references.checker("dataset_version")
def _lineage_of_versions(session: Session, dataset_version_id: str) -> str | None:
    """A model version trained on the dataset version names it in its lineage: deleting the data
    would leave that lineage pointing at nothing."""
    rows = session.execute(select(ModelModel.name, ModelVersionModel.version)
                           .join(ModelModel, ModelModel.id == ModelVersionModel.model_id)
                           .where(ModelVersionModel.dataset_version_id == dataset_version_id).limit(5)).all()
    if rows:
        return "lineage of model version " + ", ".join(f"{n}:{ver}" for n, ver in rows) + " (delete those first)"
    return None


@references.checker("model_version")
def _aliases_pointing(session: Session, version_id: str) -> str | None:
    rows = session.execute(select(ModelAliasModel.alias, ModelModel.name)
                           .join(ModelModel, ModelModel.id == ModelAliasModel.model_id)
                           .where(ModelAliasModel.version_id == version_id)).all()
    if rows:
        return "alias " + ", ".join(f"{n}:{a}" for a, n in rows) + " points to it (move or delete the alias)"
    return None


def delete_version(session: Session, principal: Principal, v: ModelVersionModel) -> None:
    """Refused while importing (409) or while anything uses the version (409 in_use)."""
    model = session.get(ModelModel, v.model_id)
    _ensure_owner(model, principal)
    if v.status == IMPORTING:
        raise Conflict(f"version {v.version} is still importing", code="importing")
    references.ensure_unused(session, "model_version", v.id)
    path = v.path
    session.delete(v)
    session.flush()
    events.record(session, actor_id=principal.id, kind="model_version.deleted", object_type="model_version",
                  object_id=v.id, data={"model_id": model.id, "version": v.version})
    _after_commit(session, lambda: _rmtree(path))


def delete_model(session: Session, settings: Settings, principal: Principal, model: ModelModel) -> None:
    """Deletes the model, its aliases and versions (adapters before their bases); refused as a
    whole if any version is importing or used from outside the model."""
    _ensure_owner(model, principal)
    versions = versions_of(session, model.id)
    if any(v.status == IMPORTING for v in versions):
        raise Conflict(f"model {model.name} has a version still importing", code="importing")
    session.execute(delete(ModelAliasModel).where(ModelAliasModel.model_id == model.id))
    session.flush()
    remaining = {v.id: v for v in versions}
    while remaining:
        bases = {v.base_version_id for v in remaining.values()}
        batch = [v for vid, v in remaining.items() if vid not in bases] or list(remaining.values())
        for v in batch:
            references.ensure_unused(session, "model_version", v.id)
            session.delete(v)
            remaining.pop(v.id)
        session.flush()
    model_dir = settings.registry_dir / model.id
    session.delete(model)
    session.flush()
    events.record(session, actor_id=principal.id, kind="model.deleted", object_type="model", object_id=model.id,
                  data={"name": model.name, "versions": len(versions)})
    _after_commit(session, lambda: _rmtree(model_dir))


def model_of(session: Session, v: ModelVersionModel) -> ModelModel:
    return session.get(ModelModel, v.model_id)


def visible_versions_filter(stmt, principal: Principal):
    """Restrict a select over ModelVersionModel joined with ModelModel to what principal may see."""
    if principal.is_admin:
        return stmt
    return stmt.where(or_(ModelModel.owner_id == principal.id, ModelModel.is_public.is_(True)))
