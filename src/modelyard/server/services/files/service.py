"""Files: the per-user private roots and the public root, and the index that mirrors them.

Roots
- private: settings.users_root/<user_id>/ (the seed's layout: Image/, Model/, Data/{train,validate,
  test}/, Code/, Config/<Strategy>/config.json). Only the user (or an admin acting for the user,
  `user_id=`) reaches it.
- public: settings.public_root/. Everyone reads. Writing: an admin may change anything; any user may
  create entries at the top of the public root or inside a directory they created; an existing
  entry (or a directory tree) may be overwritten, moved or deleted only by its creator (every entry
  of the tree) or an admin. Public entries count against their creator's storage quota.

Paths
Every request path goes through `resolve()` (services/paths.resolve_in): NUL, backslash, '..',
absolute paths and anything that resolves (following symlinks) outside the root -> 400
invalid_path before anything is touched. The native API is strict: paths are relative to the
root and a leading '/' is refused as absolute; the seed routes follow the seed, whose currentPath
is written '/upload/folder' (root-relative), so they pass strict=False.

Index
`files` rows (orm/files.py) are changed in the same transaction as the disk operation (disk step
last before commit, undone if the commit fails), so listings, stats and storage usage are indexed
queries. A root is scanned once on first use (`ensure_indexed`); `reindex()` rescans a subtree after
out-of-band changes (other domains that write into a user's tree can call `index_path`).

Quota
Storage usage = sums over the index (bytes and regular files; directories are not counted) of
the entries a user owns, plus what their open resumable uploads reserve. Every write path calls
`check_quota` under the per-user lock before anything is placed.

Modules: files_paths.py (Scope, path checks and helpers), files_index.py (the index, public-root
permissions, storage usage and quota); their names are re-exported here, so `files.X` keeps working.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import String, func, literal, select, update
from sqlalchemy.orm import Session

from modelyard.core.errors import BadRequest, Conflict, InvalidPath, NotFound
from modelyard.core.ids import new_id
from modelyard.server.auth import Principal
from modelyard.server.db import session_scope
from modelyard.server.orm import UserModel
from modelyard.server.orm.files import (
    PUBLIC_ROOT,
    FileModel,
    FileRootModel,
)
from modelyard.server.services import events
from modelyard.server.services.files.index import (
    _INDEXED,
    _bump,
    _cache_key,
    _insert_row,
    _remove_subtree,
    _set_file,
    _subtree,
    check_can_change,
    check_can_create,
    check_quota,
    ensure_indexed,
    get_row,
    make_dirs,
    reindex,
    undo_dirs,
)
from modelyard.server.services.files.layout import (
    SCRATCH_PREFIX,
    Scope,
    _mtime,
    ancestors,
    name_of,
    parent_of,
    resolve,
)
from modelyard.server.settings import Settings

log = logging.getLogger(__name__)

LAYOUT = ["Image", "Model", "Data/train", "Data/validate", "Data/test", "Code", "Config/LoRA", "Config/FineTune"]

_COMMON = [
    {"description": "学习率 / learning rate: the peak step size of the optimizer", "name": "learning_rate", "value": "1e-4"},
    {"description": "训练批次 / training batch size per replica (samples per step before accumulation)", "name": "per_device_train_batch_size", "value": "1"},
    {"description": "训练轮数 / passes over the training data (ignored when max_steps > 0)", "name": "num_train_epochs", "value": "1"},
    {"description": "checkPoint必选参数,保存策略 / when checkpoints are saved: no, steps or epoch", "name": "save_strategy", "value": "steps"},
    {"description": "checkPoint必选参数,保存步数 / save a checkpoint every N steps", "name": "save_steps", "value": "200"},
]

# Config/<Strategy>/config.json written for a new user: LoRA is the seed's sample (field names
# verbatim; each description in Chinese as the seed has it, then English after ' / ');
# FineTune (full-parameter) takes the same common parameters with a smaller learning rate and has
# no strategy-specific ones.
SAMPLE_CONFIGS: dict[str, dict] = {
    "LoRA": {
        "commonHyperParameters": _COMMON,
        "fineTuneHyperParameters": [
            {"description": "LoRA微调的缩放系数 / LoRA scaling numerator (scale = alpha / r)", "name": "lora_alpha", "value": "16"},
            {"description": "LoRA微调的秩大小 / LoRA rank: size of the low-rank update matrices", "name": "lora_r", "value": "8"},
            {"description": "LoRA微调的dropout系数 / dropout applied to the LoRA layers' input", "name": "lora_dropout", "value": "0.05"},
        ],
        "fineTuneStrategy": "LoRA",
    },
    "FineTune": {
        "commonHyperParameters": [dict(p, value="1e-5") if p["name"] == "learning_rate" else p for p in _COMMON],
        "fineTuneHyperParameters": [],
        "fineTuneStrategy": "FineTune",
    },
}

# Open resumable uploads expire (partial file removed, reservation released) after this long idle.
UPLOAD_TTL = timedelta(days=7)


def ensure_user_layout(settings: Settings, user_id: str, session: Session | None = None) -> None:
    """Create the seed's folder layout (and a sample config.json per strategy, when missing).
    With a session, the new entries are indexed at once; otherwise the root is indexed on first use."""
    root = settings.users_root / user_id
    for rel in LAYOUT:
        (root / rel).mkdir(parents=True, exist_ok=True)
    for strategy, cfg in SAMPLE_CONFIGS.items():
        path = root / "Config" / strategy / "config.json"
        if not path.exists():
            tmp = path.with_name(f"{SCRATCH_PREFIX}{new_id()}")
            tmp.write_text(json.dumps(cfg, ensure_ascii=False, indent=4) + "\n", encoding="utf-8")
            os.replace(tmp, path)
    if session is not None:
        _INDEXED.discard(_cache_key(session, user_id))
        ensure_indexed(session, Scope(key=user_id, root=root.resolve(), public=False, owner_id=user_id,
                                      is_admin=True, actor_id=None))


# --- scopes -----------------------------------------------------------------------------------

def scope_for(session: Session, settings: Settings, principal: Principal, *, public: bool = False,
              user_id: str | None = None) -> Scope:
    """The root a request works in. Private: the caller's own, or (admin only) user_id's — anyone
    else naming another user gets 403. Public: the shared root; user_id (admin only) makes new
    entries belong to that user (the seed's publicUserId)."""
    acting = principal.ensure_acting_as(user_id)
    if acting != principal.id and session.get(UserModel, acting) is None:
        raise NotFound(f"user {acting} not found", code="user_not_found")
    if public:
        root = settings.public_root
        root.mkdir(parents=True, exist_ok=True)
        return Scope(key=PUBLIC_ROOT, root=root.resolve(), public=True, owner_id=acting,
                     is_admin=principal.is_admin, actor_id=principal.id)
    root = settings.users_root / acting
    if not root.is_dir():
        ensure_user_layout(settings, acting)
    return Scope(key=acting, root=root.resolve(), public=False, owner_id=acting, is_admin=principal.is_admin,
                 actor_id=principal.id)


# --- views ------------------------------------------------------------------------------------

def entry(row: FileModel, *, public: bool) -> dict:
    return {"path": row.path, "name": row.name, "is_dir": row.is_dir, "size": row.size, "sha256": row.sha256,
            "mtime": row.mtime, "owner_id": row.owner_id, "public": public, "id": row.id}


def root_entry(scope: Scope) -> dict:
    st = scope.root.stat()
    return {"path": "", "name": "", "is_dir": True, "size": 0, "sha256": None, "mtime": _mtime(st),
            "owner_id": None if scope.public else scope.key, "public": scope.public, "id": None}


class NotIndexedYet(Exception):
    """A directory exists on disk but not in the index: the caller reindexes it and asks again."""

    def __init__(self, rel: str):
        super().__init__(rel)
        self.rel = rel


def list_dir(session: Session, scope: Scope, text: str | None, *, page: int = 1, page_size: int = 100,
             after: str | None = None) -> dict:
    """One page of a directory, ordered by name: `page` (1-based offset paging) or `after` (keyset:
    the last name of the previous page; constant time at any depth). Answered from the index."""
    abs_, rel = resolve(scope, text)
    if rel:
        row = get_row(session, scope.key, rel)
        if row is None:
            if abs_.is_dir():
                raise NotIndexedYet(rel)
            if abs_.exists():
                raise BadRequest(f"{rel!r} is a file, not a directory", code="not_a_directory")
            raise NotFound(f"directory {rel!r} not found")
        if not row.is_dir:
            raise BadRequest(f"{rel!r} is a file, not a directory", code="not_a_directory")
        total = row.entries
    else:
        marker = session.get(FileRootModel, scope.key)
        total = marker.entries if marker is not None else 0
    page = max(page, 1)
    page_size = min(max(page_size, 1), 1000)
    cond = (FileModel.root == scope.key) & (FileModel.parent == rel)
    if after is not None or page == 1:
        stmt = select(FileModel).where(cond).order_by(FileModel.name).limit(page_size)
        if after is not None:
            stmt = stmt.where(FileModel.name > after)
        rows = list(session.scalars(stmt))
    else:
        # deep offsets: skip along the (root, parent, name) index alone, then fetch the page's rows
        ids = list(session.scalars(select(FileModel.id).where(cond).order_by(FileModel.name)
                                   .limit(page_size).offset((page - 1) * page_size)))
        by_id = {r.id: r for r in session.scalars(select(FileModel).where(FileModel.id.in_(ids)))} if ids else {}
        rows = [by_id[i] for i in ids if i in by_id]
    return {"path": rel, "public": scope.public, "items": [entry(r, public=scope.public) for r in rows],
            "total": int(total), "page": page, "page_size": page_size,
            "next_after": rows[-1].name if len(rows) == page_size else None}


def stat(session: Session, scope: Scope, text: str | None) -> dict:
    """The entry at a path: disk truth (exists, kind, size, mtime) with what the index knows
    (sha256, owner)."""
    abs_, rel = resolve(scope, text)
    if rel == "":
        return root_entry(scope)
    if not abs_.exists():
        raise NotFound(f"{rel!r} not found")
    st = abs_.stat()
    row = get_row(session, scope.key, rel)
    is_dir = abs_.is_dir()
    size = 0 if is_dir else st.st_size
    sha = row.sha256 if row is not None and not row.is_dir and row.size == size else None
    return {"path": rel, "name": name_of(rel), "is_dir": is_dir, "size": size, "sha256": sha, "mtime": _mtime(st),
            "owner_id": row.owner_id if row else (None if scope.public else scope.key), "public": scope.public,
            "id": row.id if row else None}


@dataclass
class Download:
    path: Path
    rel: str
    size: int
    mtime: datetime
    sha256: str | None
    mtime_ns: int = 0


def open_download(session: Session, scope: Scope, text: str | None) -> Download:
    abs_, rel = resolve(scope, text)
    if rel == "" or abs_.is_dir():
        raise BadRequest(f"{rel or '/'!r} is a directory", code="is_a_directory")
    if not abs_.is_file():
        raise NotFound(f"{rel!r} not found")
    st = abs_.stat()
    row = get_row(session, scope.key, rel)
    sha = row.sha256 if row is not None and row.size == st.st_size else None
    return Download(abs_, rel, st.st_size, _mtime(st), sha, st.st_mtime_ns)


# --- changes ------------------------------------------------------------------------------------

def _event(session: Session, scope: Scope, kind: str, row_id: int | None, rel: str, message: str, **data) -> None:
    events.record(session, actor_id=scope.actor_id, kind=kind, object_type="file",
                  object_id=str(row_id) if row_id is not None else scope.key, message=message,
                  data={"root": scope.key, "path": rel, "public": scope.public, **data})


def mkdir(session: Session, scope: Scope, text: str | None, *, parents: bool = True, exist_ok: bool = True) -> dict:
    abs_, rel = resolve(scope, text)
    ensure_indexed(session, scope)
    if rel == "":
        if exist_ok:
            return root_entry(scope)
        raise Conflict("the root exists", code="exists")
    if abs_.exists():
        if not abs_.is_dir():
            raise Conflict(f"{rel!r} exists and is a file", code="exists")
        if not exist_ok:
            raise Conflict(f"{rel!r} exists", code="exists")
        make_dirs(session, scope, rel)  # indexes it if it was not
        return entry(get_row(session, scope.key, rel), public=scope.public)
    parent = parent_of(rel)
    if not parents and not (scope.root / parent).is_dir():
        raise NotFound(f"parent directory {parent!r} not found")
    check_can_create(session, scope, parent)
    created = make_dirs(session, scope, rel)
    row = get_row(session, scope.key, rel)
    _event(session, scope, "file.mkdir", row.id, rel, f"created directory {rel}", created=created)
    session.info.setdefault("on_rollback", []).append(lambda: undo_dirs(scope, created))
    return entry(row, public=scope.public)


def move(session: Session, scope: Scope, src_text: str, dst_text: str, *, overwrite: bool = False) -> dict:
    """Move or rename a file or directory inside one root (index rows of a tree moved with it)."""
    src_abs, src = resolve(scope, src_text)
    dst_abs, dst = resolve(scope, dst_text)
    ensure_indexed(session, scope)
    if not src or not dst:
        raise BadRequest("the root itself cannot be moved or replaced", code="invalid_move")
    if not os.path.lexists(src_abs):
        raise NotFound(f"{src!r} not found")
    if src == dst:
        return stat(session, scope, src)
    if dst.startswith(src + "/"):
        raise BadRequest(f"cannot move {src!r} into itself", code="invalid_move")
    src_is_dir = src_abs.is_dir()
    check_can_change(session, scope, src, tree=src_is_dir)
    if os.path.lexists(dst_abs):
        if not overwrite:
            raise Conflict(f"{dst!r} exists (overwrite=true replaces a file)", code="exists")
        if src_is_dir or dst_abs.is_dir():
            raise Conflict(f"{dst!r} exists; directories are never replaced", code="exists")
        check_can_change(session, scope, dst, tree=False)
    check_can_create(session, scope, parent_of(dst))
    if get_row(session, scope.key, src) is None:
        reindex(session, scope, src)
    created = make_dirs(session, scope, parent_of(dst))
    hooks = session.info.setdefault("on_rollback", [])
    hooks.append(lambda: undo_dirs(scope, created))
    # stale rows at the destination (nothing on disk there, or a file being replaced)
    _remove_subtree(session, scope.key, dst)
    n = len(src)
    session.execute(
        update(FileModel).where(_subtree(scope.key, src, include_self=False)).values(
            path=literal(dst, String) + func.substr(FileModel.path, n + 1, type_=String),
            parent=literal(dst, String) + func.substr(FileModel.parent, n + 1, type_=String))
        .execution_options(synchronize_session=False))
    session.execute(update(FileModel).where(FileModel.root == scope.key, FileModel.path == src).values(
        path=dst, parent=parent_of(dst), name=name_of(dst)).execution_options(synchronize_session=False))
    session.expire_all()
    _bump(session, scope.key, parent_of(src), -1)
    _bump(session, scope.key, parent_of(dst), 1)
    try:
        os.replace(src_abs, dst_abs)
    except OSError as exc:
        raise Conflict(f"cannot move {src!r} to {dst!r}: {exc.strerror}", code="move_failed") from exc
    hooks.append(lambda: os.replace(dst_abs, src_abs))
    row = get_row(session, scope.key, dst)
    _event(session, scope, "file.moved", row.id if row else None, dst, f"moved {src} to {dst}", src=src, dst=dst,
           is_dir=src_is_dir)
    session.flush()
    return stat(session, scope, dst)


@dataclass
class Deleted:
    rel: str
    trash: Path | None
    files: int = 0
    bytes: int = 0


def delete_path(session: Session, settings: Settings, scope: Scope, text: str | None, *,
                recursive: bool = True) -> Deleted:
    """Delete a file or a directory tree: the entry is renamed out of the root atomically and its
    index rows removed in this transaction; `finish_delete` removes the data after the commit."""
    abs_, rel = resolve(scope, text)
    ensure_indexed(session, scope)
    if rel == "":
        raise BadRequest("the root itself cannot be deleted", code="invalid_delete")
    row = get_row(session, scope.key, rel)
    if not os.path.lexists(abs_):
        if row is None:
            raise NotFound(f"{rel!r} not found")
        check_can_change(session, scope, rel, tree=row.is_dir)
        _remove_subtree(session, scope.key, rel)
        return Deleted(rel, None)
    is_dir = abs_.is_dir()
    if is_dir and not recursive and any(abs_.iterdir()):
        raise Conflict(f"directory {rel!r} is not empty (recursive=true deletes it)", code="not_empty")
    check_can_change(session, scope, rel, tree=is_dir)
    row_id = row.id if row else None
    trash = _trash_name(settings, abs_)
    os.rename(abs_, trash)
    session.info.setdefault("on_rollback", []).append(lambda: os.rename(trash, abs_))
    n_files, n_bytes = _remove_subtree(session, scope.key, rel)
    _event(session, scope, "file.deleted", row_id, rel, f"deleted {rel}", is_dir=is_dir,
           files=int(n_files), bytes=int(n_bytes))
    return Deleted(rel, trash, int(n_files), int(n_bytes))


def _trash_name(settings: Settings, abs_: Path) -> Path:
    """A name outside every root on the same filesystem (rename is atomic there)."""
    trash = settings.uploads_dir / f"{SCRATCH_PREFIX}trash-{new_id()}"
    try:
        if os.stat(settings.uploads_dir).st_dev == os.stat(abs_.parent).st_dev:
            return trash
    except OSError:
        pass
    return abs_.parent / f"{SCRATCH_PREFIX}trash-{new_id()}"


def finish_delete(deleted: Deleted) -> None:
    if deleted.trash is None:
        return
    if deleted.trash.is_dir() and not deleted.trash.is_symlink():
        shutil.rmtree(deleted.trash, ignore_errors=True)
    else:
        try:
            os.unlink(deleted.trash)
        except FileNotFoundError:
            pass


@dataclass
class Placement:
    """A finished temp file to put at rel (validated) inside a scope."""

    rel: str
    abs: Path
    tmp: Path
    size: int
    sha256: str | None


def plan_placement(scope: Scope, target_text: str, tmp: Path, size: int, sha256: str | None, *,
                   strict: bool = True) -> Placement:
    abs_, rel = resolve(scope, target_text, strict=strict)
    if rel == "":
        raise InvalidPath("a file cannot replace the root")
    return Placement(rel, abs_, tmp, size, sha256)


def place_files(session: Session, settings: Settings, scope: Scope, items: list[Placement], *, overwrite: bool,
                exclude_upload: str | None = None, kind: str = "file.uploaded", data: dict | None = None,
                event_per_file: bool = True) -> list[FileModel]:
    """Put finished temp files in place, atomically each (os.replace), with their index rows.
    All targets are checked (conflicts, permissions, quota for the batch) before any is placed."""
    ensure_indexed(session, scope)
    last: dict[str, Placement] = {}
    for it in items:
        last[it.rel] = it
    items = list(last.values())
    add_bytes = add_files = 0
    for it in items:
        if it.abs.is_dir():
            raise Conflict(f"{it.rel!r} is a directory", code="is_a_directory")
        for anc in ancestors(it.rel):
            a = scope.root / anc
            if a.is_symlink() or (a.exists() and not a.is_dir()):
                raise Conflict(f"{anc!r} is a file, not a directory", code="not_a_directory")
        if os.path.lexists(it.abs):
            if not overwrite:
                raise Conflict(f"{it.rel!r} exists (overwrite=true replaces it)", code="exists")
            check_can_change(session, scope, it.rel, tree=False)
            old = get_row(session, scope.key, it.rel)
            if old is not None and old.owner_id == scope.owner_id:
                add_bytes += it.size - old.size
            else:
                add_bytes += it.size
                add_files += 1
        else:
            check_can_create(session, scope, parent_of(it.rel))
            add_bytes += it.size
            add_files += 1
    check_quota(session, settings, scope.owner_id, add_bytes=add_bytes, add_files=add_files,
                exclude_upload=exclude_upload)
    placed: list[FileModel] = []
    all_created: list[str] = []  # filled below; the hook undoes whatever it holds then
    session.info.setdefault("on_rollback", []).append(lambda: undo_dirs(scope, all_created))
    hooks = session.info.setdefault("on_rollback", [])
    for it in items:
        all_created += make_dirs(session, scope, parent_of(it.rel))
        existed = os.path.lexists(it.abs)
        _replace_into(it.tmp, it.abs)
        if not existed:
            hooks.append(lambda p=it.abs: p.unlink(missing_ok=True))
        st = it.abs.stat()
        row = get_row(session, scope.key, it.rel)
        if row is None:
            row = _insert_row(session, scope.key, it.rel, is_dir=False, size=st.st_size, sha256=it.sha256,
                              mtime=_mtime(st), owner_id=scope.owner_id)
        else:  # the new content belongs to (and is charged to) its writer
            _set_file(session, row, size=st.st_size, sha256=it.sha256, mtime=_mtime(st), owner_id=scope.owner_id)
        placed.append(row)
        if event_per_file:
            _event(session, scope, kind, row.id, it.rel, f"stored {it.rel} ({st.st_size} bytes)",
                   size=st.st_size, sha256=it.sha256, **(data or {}))
    return placed


def _replace_into(tmp: Path, target: Path) -> None:
    """os.replace (atomic). Temp files live under settings.uploads_dir, normally on the roots'
    filesystem; if it is another one (EXDEV), the data is first copied to a temp file next to the
    target, synced, and that one is renamed into place — still atomic for readers."""
    try:
        os.replace(tmp, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    near = target.with_name(f"{SCRATCH_PREFIX}{new_id()}.part")
    try:
        with open(tmp, "rb") as src, open(near, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        os.replace(near, target)
    except BaseException:
        near.unlink(missing_ok=True)
        raise
    tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def transaction(sessions, *, readonly: bool = False) -> Iterator[Session]:
    """A unit of work whose disk side is undone (hooks in session.info["on_rollback"]) when the
    database side fails. Files routes use it instead of the request session so that long disk I/O
    never runs inside a write transaction (SQLite has one writer at a time)."""
    session = None
    try:
        with session_scope(sessions, readonly=readonly) as session:
            yield session
    except BaseException:
        if session is not None:  # session_scope has rolled the database side back already
            run_rollback_hooks(session)
        raise
    finally:
        if session is not None:
            clear_rollback_hooks(session)


def run_rollback_hooks(session: Session) -> None:
    """Undo the disk side of a failed transaction (renames back, directories removed)."""
    for fn in reversed(session.info.pop("on_rollback", [])):
        try:
            fn()
        except OSError:
            log.exception("undoing a files operation failed")


def clear_rollback_hooks(session: Session) -> None:
    session.info.pop("on_rollback", None)
