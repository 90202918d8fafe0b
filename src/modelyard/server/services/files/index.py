"""Files: the index that mirrors the roots (`files` rows and the aggregates kept in step with them),
the public root's write permissions, and storage usage / quota checks answered from the index.

The roots, the path rules and how the index is used are described in services/files.py."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.core.errors import Conflict, Forbidden, InvalidPath, NotFound, QuotaExceeded
from modelyard.server.db import advisory_lock
from modelyard.server.orm import UserModel
from modelyard.server.orm.base import utcnow
from modelyard.server.orm.files import (
    MAX_PATH_BYTES,
    FileModel,
    FileRootModel,
    FileUsageModel,
    UploadModel,
)
from modelyard.server.services.files.layout import (
    SCRATCH_PREFIX,
    Scope,
    _mtime,
    join,
    name_of,
    parent_of,
    resolve,
)
from modelyard.server.services.quota import ensure_quota
from modelyard.server.settings import Settings

log = logging.getLogger(__name__)


# --- the index ----------------------------------------------------------------------------------
#
# Every change of the index goes through the helpers below, which keep two aggregates in step in
# the same transaction: `entries` (direct children) on directory rows and on the root's marker
# (a listing's total), and file_usage (bytes, files per owner: a quota check's figure).
# reindex() recomputes both from the rows; verify_index() checks them (tests, diagnostics).

_INDEXED: set[tuple[str, str]] = set()
_INDEX_LOCK = threading.Lock()


def _cache_key(session: Session, key: str) -> tuple[str, str]:
    return (str(session.get_bind().url), key)


def is_indexed(session: Session, key: str) -> bool:
    ck = _cache_key(session, key)
    if ck in _INDEXED:
        return True
    if session.get(FileRootModel, key) is not None:
        _INDEXED.add(ck)
        return True
    return False


def ensure_indexed(session: Session, scope: Scope) -> dict[str, int] | None:
    """Scan the root into the index the first time it is used (returns what reindex found then)."""
    if is_indexed(session, scope.key):
        return None
    with _INDEX_LOCK:
        if session.get(FileRootModel, scope.key) is not None:
            return None
        session.add(FileRootModel(root=scope.key, entries=0))
        session.flush()
        return reindex(session, scope, "")
    # cached once seen committed (is_indexed); until then a concurrent request checks the table


def _subtree(key: str, rel: str, *, include_self: bool = True):
    """WHERE clause: rel and everything below it (binary prefix comparison, collation-proof)."""
    if rel == "":
        return FileModel.root == key
    below = func.substr(FileModel.path, 1, len(rel) + 1) == rel + "/"
    return (FileModel.root == key) & (or_(FileModel.path == rel, below) if include_self else below)


def get_row(session: Session, key: str, rel: str) -> FileModel | None:
    if rel == "":
        return None
    return session.scalar(select(FileModel).where(FileModel.root == key, FileModel.path == rel))


def _bump(session: Session, key: str, dir_rel: str, delta: int) -> None:
    """entries += delta on a directory (or the root's marker)."""
    if delta == 0:
        return
    if dir_rel == "":
        session.execute(update(FileRootModel).where(FileRootModel.root == key)
                        .values(entries=FileRootModel.entries + delta).execution_options(synchronize_session=False))
    else:
        session.execute(update(FileModel).where(FileModel.root == key, FileModel.path == dir_rel)
                        .values(entries=FileModel.entries + delta).execution_options(synchronize_session=False))


def _usage_add(session: Session, owner: str | None, dbytes: int, dfiles: int) -> None:
    """file_usage += (dbytes, dfiles) for owner; call after the rows are flushed (a missing usage
    row is created by counting them)."""
    if owner is None or (dbytes == 0 and dfiles == 0):
        return
    res = session.execute(update(FileUsageModel).where(FileUsageModel.owner_id == owner)
                          .values(bytes=FileUsageModel.bytes + dbytes, files=FileUsageModel.files + dfiles)
                          .execution_options(synchronize_session=False))
    if res.rowcount == 0:
        recount_usage(session, [owner])


def recount_usage(session: Session, owners: Iterable[str | None]) -> None:
    """Set file_usage of owners from the rows (SUM/COUNT over the covering owner index)."""
    session.flush()
    for owner in {o for o in owners if o}:
        b, n = session.execute(select(func.coalesce(func.sum(FileModel.size), 0), func.count())
                               .where(FileModel.owner_id == owner, FileModel.is_dir.is_(False))).one()
        row = session.get(FileUsageModel, owner)
        if row is not None:
            row.bytes, row.files = int(b), int(n)
            continue
        if session.get(UserModel, owner) is None:
            continue
        try:
            with session.begin_nested():
                session.add(FileUsageModel(owner_id=owner, bytes=int(b), files=int(n)))
        except IntegrityError:  # created concurrently (PostgreSQL): set it
            session.execute(update(FileUsageModel).where(FileUsageModel.owner_id == owner).values(bytes=b, files=n))
    session.flush()


def recount_entries(session: Session, key: str, rel: str) -> None:
    """Recompute `entries` for the directories of a subtree, and for rel's parent."""
    counts = dict(session.execute(select(FileModel.parent, func.count()).where(_subtree(key, rel, include_self=False))
                                  .group_by(FileModel.parent)).all())
    if rel == "":
        counts[""] = session.scalar(select(func.count()).select_from(FileModel)
                                    .where(FileModel.root == key, FileModel.parent == "")) or 0
    else:
        counts[rel] = counts.get(rel, 0)
        up = parent_of(rel)
        counts[up] = session.scalar(select(func.count()).select_from(FileModel)
                                    .where(FileModel.root == key, FileModel.parent == up)) or 0
    session.execute(update(FileModel).where(_subtree(key, rel), FileModel.is_dir.is_(True)).values(entries=0)
                    .execution_options(synchronize_session=False))
    for d, n in counts.items():
        if n:
            _set_entries(session, key, d, int(n))
    if "" in counts and counts[""] == 0:
        _set_entries(session, key, "", 0)


def _set_entries(session: Session, key: str, dir_rel: str, n: int) -> None:
    if dir_rel == "":
        session.execute(update(FileRootModel).where(FileRootModel.root == key).values(entries=n)
                        .execution_options(synchronize_session=False))
    else:
        session.execute(update(FileModel).where(FileModel.root == key, FileModel.path == dir_rel)
                        .values(entries=n).execution_options(synchronize_session=False))


def _insert_row(session: Session, key: str, rel: str, *, is_dir: bool, size: int = 0, sha256: str | None = None,
                mtime: datetime | None = None, owner_id: str | None) -> FileModel:
    row = FileModel(root=key, path=rel, parent=parent_of(rel), name=name_of(rel), is_dir=is_dir, size=size,
                    sha256=sha256, mtime=mtime or utcnow(), owner_id=owner_id, entries=0)
    session.add(row)
    session.flush()
    _bump(session, key, parent_of(rel), 1)
    if not is_dir:
        _usage_add(session, owner_id, size, 1)
    return row


def _remove_subtree(session: Session, key: str, rel: str) -> tuple[int, int]:
    """Delete rel's rows (and everything below); returns (files, bytes) removed."""
    agg = session.execute(select(FileModel.owner_id, func.coalesce(func.sum(FileModel.size), 0), func.count())
                          .where(_subtree(key, rel), FileModel.is_dir.is_(False)).group_by(FileModel.owner_id)).all()
    top = rel != "" and session.scalar(select(func.count()).select_from(FileModel)
                                       .where(FileModel.root == key, FileModel.path == rel))
    session.execute(delete(FileModel).where(_subtree(key, rel)).execution_options(synchronize_session=False))
    session.expire_all()
    files = nbytes = 0
    for owner, b, n in agg:
        _usage_add(session, owner, -int(b), -int(n))
        files, nbytes = files + int(n), nbytes + int(b)
    if top:
        _bump(session, key, parent_of(rel), -1)
    return files, nbytes


def _set_file(session: Session, row: FileModel, *, size: int, sha256: str | None, mtime: datetime,
              owner_id: str | None) -> None:
    """Change a file row's content/owner, moving usage between owners."""
    if not row.is_dir:
        _usage_add(session, row.owner_id, -row.size, -1)
    row.is_dir, row.size, row.sha256, row.mtime, row.owner_id = False, size, sha256, mtime, owner_id
    session.flush()
    _usage_add(session, owner_id, size, 1)


def verify_index(session: Session, key: str) -> list[str]:
    """Problems with the maintained aggregates of a root (empty when consistent)."""
    problems = []
    counts = dict(session.execute(select(FileModel.parent, func.count()).where(FileModel.root == key)
                                  .group_by(FileModel.parent)).all())
    for row in session.scalars(select(FileModel).where(FileModel.root == key, FileModel.is_dir.is_(True))):
        if row.entries != counts.get(row.path, 0):
            problems.append(f"{row.path}: entries {row.entries} != {counts.get(row.path, 0)}")
    marker = session.get(FileRootModel, key)
    if marker is not None and marker.entries != counts.get("", 0):
        problems.append(f"root: entries {marker.entries} != {counts.get('', 0)}")
    owners = set(session.scalars(select(FileModel.owner_id).where(FileModel.root == key).distinct()))
    for owner in owners - {None}:
        b, n = session.execute(select(func.coalesce(func.sum(FileModel.size), 0), func.count())
                               .where(FileModel.owner_id == owner, FileModel.is_dir.is_(False))).one()
        u = session.get(FileUsageModel, owner)
        have = (int(u.bytes), int(u.files)) if u is not None else (0, 0)
        if have != (int(b), int(n)):
            problems.append(f"usage of {owner}: {have} != {(int(b), int(n))}")
    return problems


def walk_disk(base: Path, rel: str) -> Iterable[tuple[str, bool, int, datetime]]:
    """(rel, is_dir, size, mtime) of everything below base (symlinks and special files skipped)."""
    stack = [(base, rel)]
    while stack:
        d, drel = stack.pop()
        try:
            it = os.scandir(d)
        except OSError:
            continue
        with it:
            for e in it:
                if e.name.startswith(SCRATCH_PREFIX) or "\\" in e.name:
                    continue
                erel = join(drel, e.name)
                if len(erel.encode("utf-8", "surrogateescape")) > MAX_PATH_BYTES:
                    log.warning("not indexed (path too long): %s", e.path)
                    continue
                try:
                    if e.is_symlink():
                        continue
                    st = e.stat(follow_symlinks=False)
                    if e.is_dir(follow_symlinks=False):
                        yield erel, True, 0, _mtime(st)
                        stack.append((Path(e.path), erel))
                    elif e.is_file(follow_symlinks=False):
                        yield erel, False, st.st_size, _mtime(st)
                except OSError:
                    continue


def reindex(session: Session, scope: Scope, text: str | None = "", *, strict: bool = True,
            must_exist: bool = False) -> dict[str, int]:
    """Make the index match the disk under a path (the whole root for ''). New entries belong to
    the private root's user; in the public root to nobody (admin-managed). Returns counts of rows
    added, updated and removed; the aggregates are recomputed. must_exist: a path neither on disk
    nor in the index is 404 (a path removed out of band but still indexed is what reindex is for)."""
    base, rel = resolve(scope, text, strict=strict)
    if must_exist and rel and not os.path.lexists(base) and session.scalar(
            select(func.count()).select_from(FileModel).where(_subtree(scope.key, rel))) == 0:
        raise NotFound(f"{rel!r} does not exist", code="not_found")
    if session.get(FileRootModel, scope.key) is None:
        session.add(FileRootModel(root=scope.key, entries=0))
        session.flush()
    disk: dict[str, tuple[bool, int, datetime]] = {}
    if rel and base.is_dir():
        disk[rel] = (True, 0, _mtime(base.stat()))
    elif rel and base.is_file():
        disk[rel] = (False, base.stat().st_size, _mtime(base.stat()))
    if base.is_dir():
        for erel, is_dir, size, mtime in walk_disk(base, rel):
            disk[erel] = (is_dir, size, mtime)
    rows = {r.path: r for r in session.scalars(select(FileModel).where(_subtree(scope.key, rel)))}
    owners = {r.owner_id for r in rows.values()}
    default_owner = None if scope.public else scope.key
    owners.add(default_owner)
    gone = [r.id for p, r in rows.items() if p not in disk]
    for i in range(0, len(gone), 500):
        session.execute(delete(FileModel).where(FileModel.id.in_(gone[i:i + 500]))
                        .execution_options(synchronize_session=False))
    if rel:
        _index_dirs(session, scope, parent_of(rel), owner=default_owner)
    new, updated = [], 0
    for p, (is_dir, size, mtime) in disk.items():
        row = rows.get(p)
        if row is None:
            new.append(dict(root=scope.key, path=p, parent=parent_of(p), name=name_of(p), is_dir=is_dir, size=size,
                            sha256=None, mtime=mtime, owner_id=default_owner, entries=0, created_at=utcnow()))
        elif row.is_dir != is_dir or row.size != size or row.mtime != mtime:
            if row.is_dir != is_dir or row.size != size:
                row.sha256 = None
            row.is_dir, row.size, row.mtime = is_dir, size, mtime
            updated += 1
    session.flush()
    for i in range(0, len(new), 1000):
        session.execute(insert(FileModel), new[i:i + 1000])
    session.expire_all()
    recount_entries(session, scope.key, rel)
    recount_usage(session, owners)
    return {"added": len(new), "updated": updated, "removed": len(gone)}


def index_path(session: Session, settings: Settings, user_id: str, rel: str) -> dict[str, int]:
    """For other domains that wrote into a user's tree directly (e.g. a job's checkpoints): bring
    the index in step for that path."""
    scope = Scope(key=user_id, root=(settings.users_root / user_id).resolve(), public=False, owner_id=user_id,
                  is_admin=True, actor_id=None)
    if not is_indexed(session, user_id):
        ensure_indexed(session, scope)
        return {"added": 0, "updated": 0, "removed": 0}
    return reindex(session, scope, rel, strict=False)


def _index_dirs(session: Session, scope: Scope, rel_dir: str, *, owner: str | None) -> None:
    """Index rows for rel_dir and its ancestors that exist on disk but are not indexed yet."""
    cur = ""
    for p in [p for p in rel_dir.split("/") if p]:
        cur = join(cur, p)
        if get_row(session, scope.key, cur) is None:
            _insert_row(session, scope.key, cur, is_dir=True, mtime=_mtime((scope.root / cur).stat()), owner_id=owner)


def make_dirs(session: Session, scope: Scope, rel_dir: str) -> list[str]:
    """mkdir -p with index rows (new directories belong to scope.owner_id). Returns created paths.
    A file in the way -> 409."""
    created = []
    cur = ""
    for p in [p for p in rel_dir.split("/") if p]:
        cur = join(cur, p)
        abs_ = scope.root / cur
        if abs_.is_symlink():
            raise InvalidPath(f"path component is a symlink: {cur!r}")
        if abs_.exists():
            if not abs_.is_dir():
                raise Conflict(f"{cur!r} is a file, not a directory", code="not_a_directory")
            if get_row(session, scope.key, cur) is None:
                _index_dirs(session, scope, cur, owner=None if scope.public else scope.key)
            continue
        try:
            os.mkdir(abs_)
        except FileExistsError:
            pass
        except NotADirectoryError as exc:
            raise Conflict(f"a parent of {cur!r} is a file", code="not_a_directory") from exc
        created.append(cur)
        _insert_row(session, scope.key, cur, is_dir=True, mtime=_mtime(abs_.stat()), owner_id=scope.owner_id)
    return created


def undo_dirs(scope: Scope, created: list[str]) -> None:
    for rel in reversed(created):
        try:
            os.rmdir(scope.root / rel)
        except OSError:
            pass


# --- permissions (public root) ------------------------------------------------------------------

def check_can_create(session: Session, scope: Scope, rel_dir: str) -> None:
    """New entries in rel_dir: private roots and admins always; in the public root the nearest
    existing ancestor must be the root or a directory the caller created."""
    if scope.can_write_any():
        return
    cur = rel_dir
    while cur:
        row = get_row(session, scope.key, cur)
        if row is not None:
            if row.owner_id != scope.owner_id:
                raise Forbidden(f"public directory {cur!r} belongs to another user", code="not_owner")
            return
        cur = parent_of(cur)


def check_can_change(session: Session, scope: Scope, rel: str, *, tree: bool) -> None:
    """Overwrite/move/delete an existing public entry: its creator (every entry of a tree) or an admin."""
    if scope.can_write_any():
        return
    row = get_row(session, scope.key, rel)
    if row is None or row.owner_id != scope.owner_id:
        raise Forbidden(f"public entry {rel!r} belongs to another user", code="not_owner")
    if tree:
        foreign = session.scalar(select(func.count()).select_from(FileModel).where(
            _subtree(scope.key, rel, include_self=False),
            or_(FileModel.owner_id.is_(None), FileModel.owner_id != scope.owner_id)))
        if foreign:
            raise Forbidden(f"{foreign} entries under public {rel!r} belong to other users", code="not_owner")


# --- storage usage and quota ---------------------------------------------------------------------

def storage_usage(session: Session, settings: Settings, user_id: str) -> tuple[int, int]:
    """(bytes, regular files) the user really stores: their private root and what they created in
    the public root — the sums over the index, maintained with every change (file_usage). Not
    counting open resumable uploads (see `reserved`)."""
    if not is_indexed(session, user_id):
        root = settings.users_root / user_id
        if root.is_dir():
            ensure_indexed(session, Scope(key=user_id, root=root.resolve(), public=False, owner_id=user_id,
                                          is_admin=True, actor_id=None))
    row = session.get(FileUsageModel, user_id)
    if row is None:
        recount_usage(session, [user_id])
        row = session.get(FileUsageModel, user_id)
        if row is None:
            return 0, 0
    return int(row.bytes), int(row.files)


def usage_summary(session: Session, settings: Settings, user_id: str) -> dict[str, int | str | None]:
    """A user's storage: stored, reserved by open uploads, and the quota (404 for an unknown user)."""
    if session.get(UserModel, user_id) is None:
        raise NotFound(f"user {user_id} not found", code="user_not_found")
    b, n = storage_usage(session, settings, user_id)
    rb, rn = reserved(session, user_id)
    q = ensure_quota(session, user_id=user_id)
    return {"user_id": user_id, "bytes": b, "files": n, "reserved_bytes": rb, "reserved_files": rn,
            "quota_bytes": q.storage_bytes, "quota_files": q.storage_files}


def reserved(session: Session, owner_id: str, *, exclude_upload: str | None = None) -> tuple[int, int]:
    """(bytes, files) reserved by the user's open resumable uploads."""
    stmt = select(func.coalesce(func.sum(UploadModel.size), 0), func.count()).where(
        UploadModel.owner_id == owner_id, UploadModel.state.in_(("open", "completing")))
    if exclude_upload:
        stmt = stmt.where(UploadModel.id != exclude_upload)
    row = session.execute(stmt).one()
    return int(row[0]), int(row[1])


@dataclass
class Headroom:
    bytes_left: int | None  # None: unlimited
    files_left: int | None


def headroom(session: Session, settings: Settings, owner_id: str, *, exclude_upload: str | None = None) -> Headroom:
    quota = ensure_quota(session, user_id=owner_id)
    if quota.storage_bytes is None and quota.storage_files is None:
        return Headroom(None, None)
    used_b, used_f = storage_usage(session, settings, owner_id)
    res_b, res_f = reserved(session, owner_id, exclude_upload=exclude_upload)
    return Headroom(None if quota.storage_bytes is None else quota.storage_bytes - used_b - res_b,
                    None if quota.storage_files is None else quota.storage_files - used_f - res_f)


def check_quota(session: Session, settings: Settings, owner_id: str, *, add_bytes: int, add_files: int,
                exclude_upload: str | None = None) -> None:
    """403 quota_exceeded if storing add_bytes/add_files more would pass the owner's storage quota
    (counting open uploads' reservations). Takes the owner's storage lock for the transaction so
    two writers cannot both pass the check."""
    advisory_lock(session, f"storage:{owner_id}")
    room = headroom(session, settings, owner_id, exclude_upload=exclude_upload)
    if room.bytes_left is not None and add_bytes > 0 and add_bytes > room.bytes_left:
        raise QuotaExceeded(f"storage quota exceeded: storing {add_bytes} more bytes, {max(room.bytes_left, 0)} left",
                            details={"bytes_left": max(room.bytes_left, 0), "adding_bytes": add_bytes})
    if room.files_left is not None and add_files > 0 and add_files > room.files_left:
        raise QuotaExceeded(f"file count quota exceeded: storing {add_files} more files, {max(room.files_left, 0)} left",
                            details={"files_left": max(room.files_left, 0), "adding_files": add_files})
