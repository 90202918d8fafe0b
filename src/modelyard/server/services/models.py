"""Model registry: models, immutable versions, movable aliases, per-version metrics.

Import from a user's files: the version is created `importing`, and once the request's
transaction commits a background thread copies the files into
<registry>/<model_id>/<version_id>/ (hashing them on the way), inspects them
(services/model_inspect.py) and marks the version `done`, or `failed` with the reason. Versions
left `importing` by a crash are marked failed ("interrupted") at the next server start.

`register_version` (jobs, the demo model) does the same synchronously, copying first and touching
the database only afterwards, so no transaction stays open during a copy.

References: see CONTRACTS.md (resolve_model_version, register_version)."""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import delete, event, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from modelyard.core.enums import ImportStatus, ModelSource
from modelyard.core.errors import BadRequest, Conflict, Forbidden, ModelyardError, NotFound, Unprocessable
from modelyard.core.ids import new_id
from modelyard.server.auth import Principal
from modelyard.server.db import session_scope
from modelyard.server.orm.base import utcnow
from modelyard.server.orm.models import (
    ModelAliasModel,
    ModelModel,
    ModelVersionMetricModel,
    ModelVersionModel,
)
from modelyard.server.orm.users import UserModel
from modelyard.server.services import events, references
from modelyard.server.services.access import paginate, visible
from modelyard.server.services.model_inspect import (
    InspectError,
    Inspection,
    copy_into,
    detect_layout,
    inspect_version_dir,
    scale_of,
    structure_of,
)
from modelyard.server.services.paths import resolve_user_path
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

def _after_commit(session: Session, fn: Callable[[], None]) -> None:
    """Run fn once the session's transaction commits (never if it rolls back)."""
    state = {"done": False}

    def on_commit(_s):
        if not state["done"]:
            state["done"] = True
            try:
                fn()
            except Exception:  # pragma: no cover - a post-commit action must not break the commit
                log.exception("post-commit action failed")

    def on_rollback(_s):
        state["done"] = True

    event.listen(session, "after_commit", on_commit, once=True)
    event.listen(session, "after_rollback", on_rollback, once=True)


def _after_rollback(session: Session, fn: Callable[[], None]) -> None:
    """Run fn if the session's transaction rolls back (undo work done outside the database)."""
    state = {"done": False}

    def on_rollback(_s):
        if not state["done"]:
            state["done"] = True
            try:
                fn()
            except Exception:  # pragma: no cover
                log.exception("rollback action failed")

    def on_commit(_s):
        state["done"] = True

    event.listen(session, "after_commit", on_commit, once=True)
    event.listen(session, "after_rollback", on_rollback, once=True)


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
    if ID_RE.match(ref):
        m = session.get(ModelModel, ref)
        if m is not None and _is_visible(m, principal):
            return m
    stmt = select(ModelModel).where(ModelModel.name == ref)
    owner_name = None
    if "/" in ref:
        owner_name, _, name = ref.partition("/")
        stmt = (select(ModelModel).join(UserModel, UserModel.id == ModelModel.owner_id)
                .where(ModelModel.name == name, UserModel.name == owner_name))
    cands = list(session.scalars(visible(stmt, ModelModel, principal)))
    if not cands:
        raise NotFound(f"model {ref} not found")
    own = [c for c in cands if c.owner_id == principal.id]
    if own:
        return own[0]
    if len(cands) == 1:
        return cands[0]
    public = [c for c in cands if c.is_public]
    if len(public) == 1:
        return public[0]
    raise BadRequest(f"model name {ref!r} is ambiguous ({len(cands)} models); use the model id or owner/name",
                     code="ambiguous_model")


def get_version(session: Session, principal: Principal, version_id: str) -> ModelVersionModel:
    v = session.get(ModelVersionModel, version_id) if version_id else None
    if v is None or not _is_visible(session.get(ModelModel, v.model_id), principal):
        raise NotFound(f"model version {version_id} not found")
    return v


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
    raise NotFound(f"model {model.name} has no version or alias {tag!r}")


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


def _next_version(session: Session, model_id: str) -> str:
    existing = set(session.scalars(select(ModelVersionModel.version).where(ModelVersionModel.model_id == model_id)))
    n = max([int(v) for v in existing if v.isdigit()] + [len(existing)]) + 1
    while str(n) in existing:
        n += 1
    return str(n)


def _check_version_free(session: Session, model: ModelModel, version: str) -> None:
    if session.scalars(select(ModelVersionModel.id).where(ModelVersionModel.model_id == model.id,
                                                          ModelVersionModel.version == version)).first():
        raise Conflict(f"model {model.name} already has version {version}", code="version_exists")


# --- importing ---------------------------------------------------------------------------------------

_IMPORT_SLOTS = threading.BoundedSemaphore(2)
_THREADS: dict[str, threading.Thread] = {}
_THREADS_LOCK = threading.Lock()


def wait_imports(timeout: float = 120.0) -> None:
    """Block until background imports started in this process finish (tests, shutdown)."""
    deadline = time.monotonic() + timeout
    while True:
        with _THREADS_LOCK:
            threads = [t for t in _THREADS.values() if t.is_alive()]
        if not threads:
            return
        threads[0].join(max(0.0, deadline - time.monotonic()))
        if time.monotonic() >= deadline:
            return


def start_import(session: Session, settings: Settings, principal: Principal, model: ModelModel, *,
                 save_path: str | None, version: str | None = None, source: int = ModelSource.local_files,
                 save_type: int = 2, description: str = "", image: str = "",
                 hyper_parameter_list: list[dict] | None = None, scale: str = "", model_structure: str = "",
                 extra: dict[str, Any] | None = None,
                 sessions: sessionmaker[Session] | None = None) -> ModelVersionModel:
    """Create a version `importing` from save_path (relative to the model owner's files) and start
    the copy + inspection once this transaction commits. A missing path is refused at once (400);
    anything wrong with the files themselves ends as status `failed` with the reason."""
    _ensure_owner(model, principal)
    source = int(source or ModelSource.local_files)
    if source not in (1, 2, 3):
        raise BadRequest("source must be 1 (training result), 2 (custom image) or 3 (local files)",
                         code="invalid_source")
    save_type = int(save_type or 2)
    if save_type not in (1, 2):
        raise BadRequest("saveType must be 1 (object storage) or 2 (local storage)", code="invalid_save_type")
    if save_type == 1:
        raise BadRequest("saveType 1 (object storage) is not configured on this installation; "
                         "use 2 (local storage)", code="object_storage_unavailable")
    extra = dict(extra or {})
    version = validate_version(version) if version else _next_version(session, model.id)
    _check_version_free(session, model, version)

    src: Path | None = None
    shown = save_path or ""
    if save_path:
        src = resolve_user_path(settings, model.owner_id, save_path)
        if not src.exists() and not src.is_symlink():
            raise BadRequest(f"path {save_path!r} does not exist in the owner's files", code="path_not_found")
    elif source == ModelSource.training and extra.get("llm_fine_tune_task_id"):
        produced = session.scalars(
            select(ModelVersionModel).where(ModelVersionModel.job_id == extra["llm_fine_tune_task_id"],
                                            ModelVersionModel.status == DONE)
            .order_by(ModelVersionModel.created_at.desc())).first()
        if produced is None or not _is_visible(session.get(ModelModel, produced.model_id), principal):
            raise BadRequest(f"fine-tune task {extra['llm_fine_tune_task_id']} has no registered result; "
                             "give savePath", code="path_required")
        src, shown = Path(produced.path), f"result of task {extra['llm_fine_tune_task_id']}"
    elif source == ModelSource.custom_image:
        if not image:
            raise BadRequest("source 2 (custom image) needs `image`", code="image_required")
    else:
        raise BadRequest("savePath is required (the folder or .gguf file in your files to import)",
                         code="path_required")

    vid = new_id()
    v = ModelVersionModel(
        id=vid, model_id=model.id, owner_id=model.owner_id, version=version, description=description or "",
        status=IMPORTING, source=source, save_type=save_type, save_path=save_path or "",
        path=str(registry_path(settings, model.id, vid)) if src is not None else "",
        image=image or "", scale=scale or "", model_structure=model_structure or "",
        hyper_parameter_list=list(hyper_parameter_list or []), pre_deploy_label=new_id(),
        job_id=extra.pop("job_id", None), dataset_version_id=extra.pop("dataset_version_id", None),
        **{k: extra[k] for k in ("config_save_type", "config_path", "image_type", "framework", "framework_style",
                                 "label", "train_task_version_id", "llm_fine_tune_task_id") if k in extra
           and extra[k] is not None})
    if v.job_id is None and ID_RE.match(v.llm_fine_tune_task_id or ""):
        v.job_id = v.llm_fine_tune_task_id
    session.add(v)
    session.flush()
    events.record(session, actor_id=principal.id, kind="model_version.import_started", object_type="model_version",
                  object_id=vid, message=f"import of {model.name}:{version} from {shown or image}",
                  data={"model_id": model.id, "version": version, "save_path": save_path, "source": source})
    if src is None:  # a custom image with no files: nothing to copy
        v.status, v.format, v.finished_at = DONE, "image", utcnow()
        events.record(session, actor_id=principal.id, kind="model_version.imported", object_type="model_version",
                      object_id=vid, data={"format": "image", "image": image})
        return v

    factory = sessions or sessionmaker(bind=session.get_bind(), expire_on_commit=False)
    actor_id = principal.id

    def launch() -> None:
        t = threading.Thread(target=run_import, name=f"model-import-{vid[:8]}", daemon=True,
                             args=(factory, settings, vid, src, shown, actor_id))
        with _THREADS_LOCK:
            for k in [k for k, th in _THREADS.items() if not th.is_alive()]:
                _THREADS.pop(k, None)
            _THREADS[vid] = t
        t.start()

    _after_commit(session, launch)
    return v


def run_import(factory: sessionmaker[Session], settings: Settings, version_id: str, src: Path, shown: str,
               actor_id: str | None = None) -> None:
    """Thread body: copy + inspect outside any transaction, then one short transaction to record
    the outcome. Never leaves the version `importing` (short of the process dying)."""
    with _IMPORT_SLOTS:
        with session_scope(factory, readonly=True) as s:
            v = s.get(ModelVersionModel, version_id)
            dest = Path(v.path) if v is not None else None
        if dest is None:
            return
        ins: Inspection | None = None
        files: list[dict] = []
        fmt = ""
        reason = ""
        try:
            fmt, what = detect_layout(src, shown=shown)
            if dest.exists():
                _rmtree(dest)
            files = copy_into(what, dest)
            ins = inspect_version_dir(dest, fmt)
        except InspectError as exc:
            reason = str(exc)
        except OSError as exc:
            reason = f"could not read the files: {exc.strerror or exc}"
        except Exception as exc:  # never leave it importing
            log.exception("import of model version %s failed", version_id)
            reason = f"internal error: {type(exc).__name__}: {exc}"
        if reason:
            _rmtree(dest)
        for attempt in range(5):
            try:
                with session_scope(factory) as s:
                    v = s.get(ModelVersionModel, version_id)
                    if v is None:  # deleted meanwhile
                        _rmtree(dest)
                        return
                    if reason:
                        _mark_failed(s, v, reason, actor_id=actor_id)
                    else:
                        _apply_inspection(s, settings, v, ins, files, fmt, actor_id=actor_id)
                return
            except ModelyardError as exc:
                reason = exc.message
            except Exception:
                log.exception("recording the import of %s failed (attempt %d)", version_id, attempt + 1)
                time.sleep(0.5 * (attempt + 1))


def _mark_failed(session: Session, v: ModelVersionModel, reason: str, *, actor_id: str | None) -> None:
    v.status, v.status_reason, v.finished_at = FAILED, reason[:4000], utcnow()
    events.record(session, actor_id=actor_id, kind="model_version.import_failed", object_type="model_version",
                  object_id=v.id, message=reason, data={"model_id": v.model_id, "version": v.version})


def _resolve_base(session: Session, settings: Settings, owner: Principal, hint: str) -> ModelVersionModel | None:
    """The registry version a PEFT adapter's base_model_name_or_path names: a registry directory,
    a version id, or '<model>[:<version|alias>]' the owner can see. None otherwise."""
    hint = (hint or "").strip()
    if not hint:
        return None
    if hint.startswith("/"):
        p = Path(hint)
        candidates = {str(p), str(p.resolve())}
        v = session.scalars(select(ModelVersionModel).where(ModelVersionModel.path.in_(candidates))).first()
        if v is None:
            try:
                rel = p.resolve().relative_to(settings.registry_dir.resolve())
                v = session.get(ModelVersionModel, rel.parts[1]) if len(rel.parts) >= 2 else None
            except ValueError:
                v = None
        if v is not None and _is_visible(session.get(ModelModel, v.model_id), owner):
            return v
        return None
    try:
        return resolve_model_version(session, owner, hint)
    except ModelyardError:
        return None


def _apply_inspection(session: Session, settings: Settings, v: ModelVersionModel, ins: Inspection,
                      files: list[dict], fmt: str, *, base_version_id: str | None = None,
                      actor_id: str | None = None) -> None:
    details = dict(ins.details)
    warnings = list(ins.warnings)
    v.format = fmt
    v.architecture, v.model_type = ins.architecture[:128], ins.model_type[:64]
    v.parameters, v.dtype, v.quantization = ins.parameters, ins.dtype[:32], ins.quantization[:32]
    v.context_length = ins.context_length
    v.files = files
    v.size_bytes = sum(int(f["size"]) for f in files)
    base_arch = ""
    if fmt == "peft":
        owner = principal_of(session, v.owner_id)
        base = None
        if base_version_id:
            base = session.get(ModelVersionModel, base_version_id)
            if base is None:
                raise NotFound(f"base model version {base_version_id} not found")
        else:
            base = _resolve_base(session, settings, owner, (ins.peft or {}).get("base_model_name_or_path", ""))
        if base is not None:
            base_model = session.get(ModelModel, base.model_id)
            v.base_version_id = base.id
            v.architecture, v.model_type = base.architecture, base.model_type
            v.context_length = v.context_length or base.context_length
            base_arch = base.architecture
            details["base"] = {"version_id": base.id, "model_id": base.model_id, "model": base_model.name,
                               "version": base.version, "parameters": base.parameters}
        else:
            hint = (ins.peft or {}).get("base_model_name_or_path", "")
            warnings.append(f"base model {hint!r} is not a registry version" if hint else "no base model")
    if warnings:
        details["warnings"] = warnings
    v.details = details
    v.scale = scale_of(ins.parameters) or v.scale
    v.model_structure = structure_of(ins, base_architecture=base_arch) or v.model_structure
    v.status, v.status_reason, v.finished_at = DONE, "", utcnow()
    events.record(session, actor_id=actor_id, kind="model_version.imported", object_type="model_version",
                  object_id=v.id, message=f"{fmt} {v.architecture} {v.scale}".strip(),
                  data={"model_id": v.model_id, "version": v.version, "format": fmt, "parameters": v.parameters,
                        "size_bytes": v.size_bytes})


def register_version(session: Session, settings: Settings, *, owner_id: str, model_name: str,
                     source_dir: Path | str, source: int = 1, job_id: str | None = None,
                     base_version_id: str | None = None, dataset_version_id: str | None = None,
                     hyperparameters: dict | None = None, metrics: dict[str, float] | None = None,
                     description: str = "", version: str | None = None, is_public: bool | None = None,
                     move: bool = False, developer: str | None = None, model_type: str = "LLM",
                     actor_id: str | None = None) -> ModelVersionModel:
    """Register a directory produced on the server (a training output: PEFT adapter or full HF
    weights; the demo model) as a new `done` version of owner's model `model_name` (created if
    missing). Files are copied (or moved) and inspected before the database is touched.

    Raises Unprocessable (422, code import_failed) when the directory is not an importable model;
    nothing is recorded then."""
    source_dir = Path(source_dir)
    model_name = validate_name(model_name)
    if version:
        version = validate_version(version)
    vid = new_id()
    staging = (settings.registry_dir / ".staging" / vid)
    try:
        fmt, what = detect_layout(source_dir, shown=str(source_dir))
        files = copy_into(what, staging, move=move)
        ins = inspect_version_dir(staging, fmt)
    except (InspectError, OSError) as exc:
        _rmtree(staging)
        raise Unprocessable(f"cannot register {source_dir} as a model: {exc}", code="import_failed") from None

    final: Path | None = None
    try:
        owner = principal_of(session, owner_id)
        model = session.scalars(select(ModelModel).where(ModelModel.owner_id == owner_id,
                                                         ModelModel.name == model_name)).first()
        if model is None:
            model = ModelModel(owner_id=owner_id, name=model_name, description=description or "",
                               type=model_type or "LLM", developer=developer or "", is_public=bool(is_public))
            session.add(model)
            session.flush()
            events.record(session, actor_id=actor_id or owner.id, kind="model.created", object_type="model",
                          object_id=model.id, data={"name": model_name, "owner_id": owner_id, "job_id": job_id})
        elif is_public is not None:
            model.is_public = bool(is_public)
        version = version or _next_version(session, model.id)
        _check_version_free(session, model, version)
        final = registry_path(settings, model.id, vid)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging.replace(final)
        v = ModelVersionModel(id=vid, model_id=model.id, owner_id=owner_id, version=version,
                              description=description or "", status=IMPORTING, source=int(source), save_type=2,
                              save_path=str(source_dir), path=str(final), pre_deploy_label=new_id(),
                              job_id=job_id, dataset_version_id=dataset_version_id, hyperparameters=hyperparameters,
                              llm_fine_tune_task_id=(job_id or "")[:64], metrics={})
        session.add(v)
        session.flush()
        _apply_inspection(session, settings, v, ins, files, fmt, base_version_id=base_version_id,
                          actor_id=actor_id or owner.id)
        if metrics:
            _append_metrics(session, v, [{"name": k, "value": val} for k, val in metrics.items()])
        session.flush()
    except BaseException:
        _rmtree(staging)
        _rmtree(final)
        raise
    _after_rollback(session, lambda: _rmtree(final))
    return v


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
        return "base of adapter " + ", ".join(f"{n}:{ver}" for n, ver in rows[:5])
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


# --- start-up reconcile ------------------------------------------------------------------------------

def reconcile_interrupted(sessions: sessionmaker[Session], settings: Settings) -> int:
    """Mark versions left `importing` by a previous process as failed ("interrupted") and drop
    their partial files and stale staging folders. Returns how many were marked."""
    with _THREADS_LOCK:
        running = {k for k, t in _THREADS.items() if t.is_alive()}
    n = 0
    with session_scope(sessions) as s:
        stuck = list(s.scalars(select(ModelVersionModel).where(ModelVersionModel.status == IMPORTING)))
        for v in stuck:
            if v.id in running or v.format == "image":
                continue
            _mark_failed(s, v, "interrupted: the server stopped during the import; import it again", actor_id=None)
            _rmtree(v.path)
            n += 1
    staging = settings.registry_dir / ".staging"
    if staging.is_dir():
        cutoff = time.time() - timedelta(hours=6).total_seconds()
        for d in staging.iterdir():
            try:
                if d.stat().st_mtime < cutoff:
                    _rmtree(d)
            except OSError:  # pragma: no cover
                pass
    if n:
        log.warning("marked %d interrupted model import(s) failed", n)
    return n


class _Reconciler:
    """Runs reconcile_interrupted once at start-up (a background component)."""

    def __init__(self, ctx):
        self.ctx = ctx

    def start(self) -> None:
        try:
            reconcile_interrupted(self.ctx.sessions, self.ctx.settings)
        except Exception:  # pragma: no cover - start-up must go on
            log.exception("model import reconcile failed")

    def stop(self) -> None:
        wait_imports(timeout=5.0)


def reconcile_component(ctx) -> _Reconciler:
    return _Reconciler(ctx)


def model_of(session: Session, v: ModelVersionModel) -> ModelModel:
    return session.get(ModelModel, v.model_id)


def visible_versions_filter(stmt, principal: Principal):
    """Restrict a select over ModelVersionModel joined with ModelModel to what principal may see."""
    if principal.is_admin:
        return stmt
    return stmt.where(or_(ModelModel.owner_id == principal.id, ModelModel.is_public.is_(True)))
