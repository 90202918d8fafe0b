"""Model registry: importing versions (background copy + inspection of a user's files),
registering a server-side directory synchronously (jobs, the demo model), and the start-up
reconcile of imports cut short by a crash. Described in services/models.py."""

from __future__ import annotations

import logging
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from modelyard.core.enums import ModelSource
from modelyard.core.errors import BadRequest, ModelyardError, NotFound, Unprocessable
from modelyard.core.ids import new_id
from modelyard.server.auth import Principal
from modelyard.server.db import session_scope
from modelyard.server.orm.base import utcnow
from modelyard.server.orm.models import (
    ModelModel,
    ModelVersionModel,
)
from modelyard.server.services import events
from modelyard.server.services.common.paths import resolve_user_path
from modelyard.server.services.models.base import (
    DONE,
    FAILED,
    ID_RE,
    IMPORTING,
    _after_commit,
    _after_rollback,
    _append_metrics,
    _check_version_free,
    _ensure_owner,
    _is_visible,
    _next_version,
    _rmtree,
    principal_of,
    registry_path,
    resolve_model_version,
    validate_name,
    validate_version,
)
from modelyard.server.services.models.inspection import (
    InspectError,
    Inspection,
    copy_into,
    detect_layout,
    inspect_version_dir,
    scale_of,
    structure_of,
)
from modelyard.server.settings import Settings

log = logging.getLogger(__name__)


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
