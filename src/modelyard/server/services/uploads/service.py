"""Uploads: streaming multipart (small files, the seed's §1.1/§1.2) and resumable sessions
(multi-GB files).

Resumable protocol (native /api/v1/uploads):
  POST   /uploads {path, size, sha256, public?, overwrite?, chunk_size?} -> 201 session
         (path checked, quota checked BEFORE accepting: size and +1 file against what is left,
         counting other open sessions; the bytes of all of a user's open sessions together are
         capped (settings.upload_open_max_bytes, 409 open_uploads_limit); a size that does not fit
         on the volume above the free-space floor is refused with 507 disk_full. The partial file
         under settings.uploads_dir is sparse: disk is taken as chunks arrive, not at open)
  PUT    /uploads/{id}/chunks/{index}   body = bytes [index*chunk_size, +chunk_size) (the last chunk
         shorter). A new chunk that would leave less than settings.upload_free_space_floor_bytes
         free on the volume is refused (507 disk_full); its range is allocated before the body is
         read. Any order, any number of times (idempotent: same bytes, same place). Optional
         header X-Chunk-SHA256 verifies the chunk. The body is streamed: pieces gathered up to ~1 MiB
         go to os.pwritev in an I/O thread while the next ones arrive. Only once all its bytes are
         written is the chunk recorded as received (a row in upload_chunks), so a crash mid-chunk
         leaves it missing, never half-counted. Written chunks are in the page cache, which outlives
         a server crash; the partial file is fsync'ed at completion (data an OS crash would lose
         is caught by the SHA-256 check there).
  GET    /uploads/{id}                  received chunks, missing chunks, byte ranges
  POST   /uploads/{id}/complete         all chunks present -> SHA-256 of the partial file (kept
         incrementally while chunks arrive in order; otherwise read back streaming), compared with
         the announced one (mismatch: 400, session failed, partial removed, nothing placed), quota
         checked again, os.replace into place, index row, event.
  DELETE /uploads/{id}                  abort (partial removed)
Session rows and the partial file survive a server restart; the incremental hash does not (it
is recomputed from disk at completion then).

Code: services/uploads_io.py (partial files, running hash, streaming a body to disk),
services/uploads_multipart.py (streaming multipart); both re-exported here.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import logging
import math
import os
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from modelyard.core.errors import BadRequest, Conflict, ModelyardError, NotFound, QuotaExceeded
from modelyard.core.ids import new_id
from modelyard.server.auth import Principal
from modelyard.server.orm.base import utcnow
from modelyard.server.orm.files import PUBLIC_ROOT, FileModel, UploadChunkModel, UploadModel
from modelyard.server.services import events
from modelyard.server.services import files as fs
from modelyard.server.services.common.door import StaleState
from modelyard.server.services.uploads.io import (
    _IO,
    _RUNNING,
    _RUNNING_LOCK,
    LIVE,
    PIECE,
    _advance,
    _claim,
    _guard,
    _invalidate_if_hashed,
    _Running,
    _running_digest,
    _settle,
    _wait_writers,
    _writer,
    forget,
    partial_path,
    write_stream,
)
from modelyard.server.services.uploads.states import move_upload
from modelyard.server.settings import Settings

log = logging.getLogger(__name__)

MIN_CHUNK = 64 * 1024
DEFAULT_CHUNK = 32 * 1024 * 1024
_SHA = re.compile(r"^[0-9a-f]{64}$")


# Defaults of settings that may not exist yet (read with getattr).


class InsufficientStorage(ModelyardError):
    status, code = 507, "insufficient_storage"


def open_uploads_max(settings: Settings) -> int:
    return settings.upload_open_max_bytes


def free_space_floor(settings: Settings) -> int:
    return settings.upload_free_space_floor_bytes


def check_free_space(settings: Settings, need: int) -> None:
    """507 disk_full if writing `need` more bytes would leave less than the floor free."""
    settings.uploads_dir.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(settings.uploads_dir).free
    floor = free_space_floor(settings)
    if free - need < floor:
        raise InsufficientStorage(f"not enough disk space: {need} bytes would leave {max(free - need, 0)} free, "
                                  f"the server keeps {floor} free", code="disk_full",
                                  details={"free_bytes": free, "floor_bytes": floor, "need_bytes": need})


# --- resumable sessions -------------------------------------------------------------------------

def chunk_len(up: UploadModel, index: int) -> int:
    return max(0, min(up.chunk_size, up.size - index * up.chunk_size))


def scope_of(settings: Settings, principal: Principal, up: UploadModel) -> fs.Scope:
    public = up.root == PUBLIC_ROOT
    root = settings.public_root if public else settings.users_root / up.root
    return fs.Scope(key=up.root, root=root.resolve(), public=public, owner_id=up.owner_id,
                    is_admin=principal.is_admin, actor_id=principal.id)


def create_upload(session: Session, settings: Settings, scope: fs.Scope, *, path: str, size: int, sha256: str,
                  chunk_size: int | None = None, overwrite: bool = False) -> UploadModel:
    abs_, rel = fs.resolve(scope, path)
    sha256 = (sha256 or "").lower()
    if not _SHA.match(sha256):
        raise BadRequest("sha256 must be 64 hexadecimal characters", code="invalid_sha256")
    if size < 0:
        raise BadRequest("size must be >= 0", code="invalid_size")
    cs = chunk_size or min(DEFAULT_CHUNK, settings.upload_chunk_max_bytes)
    if not MIN_CHUNK <= cs <= settings.upload_chunk_max_bytes:
        raise BadRequest(f"chunk_size must be between {MIN_CHUNK} and {settings.upload_chunk_max_bytes} bytes",
                         code="invalid_chunk_size")
    if rel == "":
        raise BadRequest("a file cannot replace the root", code="is_a_directory")
    fs.ensure_indexed(session, scope)
    if abs_.is_dir():
        raise Conflict(f"{rel!r} is a directory", code="is_a_directory")
    for anc in fs.ancestors(rel):
        a = scope.root / anc
        if a.exists() and not a.is_dir():
            raise Conflict(f"{anc!r} is a file, not a directory", code="not_a_directory")
    add_bytes, add_files = size, 1
    if os.path.lexists(abs_):
        if not overwrite:
            raise Conflict(f"{rel!r} exists (overwrite=true replaces it)", code="exists")
        fs.check_can_change(session, scope, rel, tree=False)
        old = fs.get_row(session, scope.key, rel)
        if old is not None and old.owner_id == scope.owner_id:
            add_bytes, add_files = size - old.size, 0
    else:
        fs.check_can_create(session, scope, fs.parent_of(rel))
    expire_uploads(session, settings)
    fs.check_quota(session, settings, scope.owner_id, add_bytes=add_bytes, add_files=add_files)
    open_bytes, _ = fs.reserved(session, scope.owner_id)  # under the owner's storage lock (check_quota)
    cap = open_uploads_max(settings)
    if open_bytes + size > cap:
        raise Conflict(f"open uploads would hold {open_bytes + size} bytes, at most {cap} are allowed; complete "
                       "or abort some first", code="open_uploads_limit",
                       details={"open_bytes": open_bytes, "limit_bytes": cap, "adding_bytes": size})
    check_free_space(settings, size)
    up = UploadModel(id=new_id(), owner_id=scope.owner_id, actor_id=scope.actor_id, root=scope.key, path=rel,
                     size=size, sha256=sha256, chunk_size=cs, chunk_count=math.ceil(size / cs), overwrite=overwrite,
                     state="open", expires_at=utcnow() + fs.UPLOAD_TTL)
    session.add(up)
    session.flush()
    part = partial_path(settings, up.id)
    part.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(part, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        os.ftruncate(fd, size)  # sparse: each chunk's range is allocated when it arrives
    except BaseException:
        os.close(fd)
        part.unlink(missing_ok=True)
        raise
    os.close(fd)
    session.info.setdefault("on_rollback", []).append(lambda: part.unlink(missing_ok=True))
    events.record(session, actor_id=scope.actor_id, kind="upload.created", object_type="upload", object_id=up.id,
                  message=f"resumable upload of {rel} ({size} bytes)",
                  data={"root": scope.key, "path": rel, "size": size, "sha256": sha256, "chunk_size": cs})
    with _RUNNING_LOCK:
        _RUNNING[up.id] = _Running()
    return up


def get_upload(session: Session, principal: Principal, upload_id: str, *, for_update: bool = False) -> UploadModel:
    up = session.get(UploadModel, upload_id, with_for_update=for_update)
    if up is None or not (principal.is_admin or principal.id in (up.owner_id, up.actor_id)):
        raise NotFound(f"upload {upload_id} not found")
    return up


def _ranges(indices: list[int], up: UploadModel) -> list[list[int]]:
    out: list[list[int]] = []
    for i in indices:
        start, end = i * up.chunk_size, i * up.chunk_size + chunk_len(up, i)
        if out and out[-1][1] == start:
            out[-1][1] = end
        else:
            out.append([start, end])
    return out


def upload_view(session: Session, up: UploadModel) -> dict:
    received = sorted(session.scalars(select(UploadChunkModel.index).where(UploadChunkModel.upload_id == up.id)))
    have = set(received)
    missing = [i for i in range(up.chunk_count) if i not in have] if up.state in LIVE else []
    view = {"id": up.id, "path": up.path, "public": up.root == PUBLIC_ROOT, "owner_id": up.owner_id,
            "size": up.size, "sha256": up.sha256, "chunk_size": up.chunk_size, "chunk_count": up.chunk_count,
            "overwrite": up.overwrite, "state": up.state, "error": up.error or None,
            "received": received, "missing": missing,
            "received_bytes": sum(chunk_len(up, i) for i in received) if up.state in LIVE else
            (up.size if up.state == "completed" else 0),
            "received_ranges": _ranges(received, up), "created_at": up.created_at, "updated_at": up.updated_at,
            "expires_at": up.expires_at, "completed_at": up.completed_at, "file": None}
    if up.file_id is not None:
        row = session.get(FileModel, up.file_id)
        if row is not None:
            view["file"] = fs.entry(row, public=up.root == PUBLIC_ROOT)
    return view


def list_uploads(session: Session, principal: Principal, *, state: str | None = "live", path: str | None = None,
                 public: bool | None = None) -> list[dict]:
    """The caller's uploads, newest first: state "live" (open or completing, the default), one
    state, or None for all."""
    stmt = select(UploadModel).where(UploadModel.owner_id == principal.id).order_by(UploadModel.created_at.desc())
    if state == "live":
        stmt = stmt.where(UploadModel.state.in_(LIVE))
    elif state:
        stmt = stmt.where(UploadModel.state == state)
    if path is not None:
        stmt = stmt.where(UploadModel.path == path.lstrip("/"))
    if public is not None:
        stmt = stmt.where((UploadModel.root == PUBLIC_ROOT) if public else (UploadModel.root != PUBLIC_ROOT))
    return [upload_view(session, up) for up in session.scalars(stmt.limit(200))]


def _chunk_begin(sessions, principal: Principal, upload_id: str, index: int) -> tuple[int, int, int, bool]:
    with fs.transaction(sessions, readonly=True) as s:
        up = get_upload(s, principal, upload_id)
        if up.state != "open":
            raise Conflict(f"upload {upload_id} is {up.state}", code=f"upload_{up.state}")
        if not 0 <= index < up.chunk_count:
            raise BadRequest(f"chunk index {index} out of range 0..{up.chunk_count - 1}", code="invalid_chunk")
        done = s.get(UploadChunkModel, (upload_id, index)) is not None
        return index * up.chunk_size, chunk_len(up, index), up.chunk_count, done


def _chunk_done(sessions, principal: Principal, upload_id: str, index: int, size: int, sha: str | None) -> dict:
    with fs.transaction(sessions) as s:
        up = get_upload(s, principal, upload_id, for_update=True)
        if up.state != "open":
            raise Conflict(f"upload {upload_id} is {up.state}", code=f"upload_{up.state}")
        row = s.get(UploadChunkModel, (upload_id, index))
        if row is None:
            try:
                with s.begin_nested():
                    s.add(UploadChunkModel(upload_id=upload_id, index=index, size=size, sha256=sha))
            except IntegrityError:  # the same chunk recorded concurrently (PostgreSQL)
                pass
        else:
            row.size, row.sha256, row.received_at = size, sha, utcnow()
        up.updated_at = utcnow()
        up.expires_at = utcnow() + fs.UPLOAD_TTL
        s.flush()
        received = list(s.scalars(select(UploadChunkModel.index).where(UploadChunkModel.upload_id == upload_id)))
        return {"id": upload_id, "index": index, "size": size, "received_count": len(received),
                "chunk_count": up.chunk_count,
                "received_bytes": sum(chunk_len(up, i) for i in received)}


async def receive_chunk(ctx, principal: Principal, upload_id: str, index: int, stream: AsyncIterator[bytes], *,
                        chunk_sha256: str | None = None) -> dict:
    if chunk_sha256 is not None:
        chunk_sha256 = chunk_sha256.strip().lower()
        if not _SHA.match(chunk_sha256):
            raise BadRequest("X-Chunk-SHA256 must be 64 hexadecimal characters", code="invalid_sha256")
    with _writer(upload_id):  # entered before the state check: completion waits for us or refuses us
        offset, length, _count, done = await run_in_threadpool(_chunk_begin, ctx.sessions, principal, upload_id,
                                                               index)
        if done:
            _invalidate_if_hashed(upload_id, offset)
        try:
            fd = os.open(partial_path(ctx.settings, upload_id), os.O_WRONLY)
        except FileNotFoundError as exc:
            raise Conflict(f"upload {upload_id} has lost its partial file; abort it and start again",
                           code="upload_partial_missing") from exc
        if not done and length:  # a resent chunk rewrites blocks it already has
            try:
                check_free_space(ctx.settings, length)
                _allocate(fd, offset, length)
            except BaseException:
                os.close(fd)
                raise
        running = _claim(upload_id, offset)
        check = hashlib.sha256() if chunk_sha256 else None
        hashers = [h for h in (running, check) if h is not None]
        ok = False
        loop = asyncio.get_running_loop()
        try:
            await write_stream(fd, offset, length, _guard(stream), hashers)
            if check is not None and check.hexdigest() != chunk_sha256:
                raise BadRequest(f"chunk {index} SHA-256 is {check.hexdigest()}, expected {chunk_sha256}",
                                 code="chunk_checksum_mismatch")
            result = await run_in_threadpool(_chunk_done, ctx.sessions, principal, upload_id, index, length,
                                             chunk_sha256)
            ok = True
        finally:
            os.close(fd)
            if running is not None:
                _settle(upload_id, running if ok else None, offset + length if ok else None)
        await loop.run_in_executor(_IO, _advance, ctx.sessions, ctx.settings, upload_id)
    return result


def _allocate(fd: int, offset: int, length: int) -> None:
    """Take the disk for a chunk's range before its body is read (a full disk: 507 at once)."""
    try:
        os.posix_fallocate(fd, offset, length)
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise InsufficientStorage(f"not enough disk space for {length} bytes", code="disk_full") from exc
        # a filesystem without fallocate: the writes find out


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            data = os.read(fd, PIECE)
            if not data:
                break
            h.update(data)
    finally:
        os.close(fd)
    return h.hexdigest()


def _fail(ctx, principal: Principal, upload_id: str, reason: str, kind: str = "upload.failed") -> None:
    with fs.transaction(ctx.sessions) as s:
        up = get_upload(s, principal, upload_id, for_update=True)
        if up.state in LIVE:
            move_upload(s, up, "failed", reason=reason, actor_id=principal.id, event_kind=kind,
                        message=reason[:1024], data={"root": up.root, "path": up.path})
    partial_path(ctx.settings, upload_id).unlink(missing_ok=True)
    _RUNNING.pop(upload_id, None)


def _reopen(ctx, upload_id: str) -> None:
    """A completion that could not finish (conflict, I/O error): the session is open again."""
    with fs.transaction(ctx.sessions) as s:
        up = s.get(UploadModel, upload_id, with_for_update=True)
        if up is not None and up.state == "completing":
            move_upload(s, up, "open", reason="the completion could not finish")


def complete_upload(ctx, principal: Principal, upload_id: str) -> dict:
    """Verify and place (see the module doc). Calling it again after success answers the same.

    The session goes `completing` first (chunk requests are refused from then on, and the ones
    already writing are waited for), so the bytes verified are the bytes placed."""
    settings = ctx.settings
    with fs.transaction(ctx.sessions) as s:
        up = get_upload(s, principal, upload_id, for_update=True)
        if up.state == "completed":
            return upload_view(s, up)
        if up.state not in LIVE:
            raise Conflict(f"upload {upload_id} is {up.state}" + (f": {up.error}" if up.error else ""),
                           code=f"upload_{up.state}")
        view = upload_view(s, up)
        if view["missing"]:
            raise Conflict(f"{len(view['missing'])} of {view['chunk_count']} chunks missing",
                           code="upload_incomplete", details={"missing": view["missing"][:1000]})
        if up.state == "open":  # a second completer of a session already completing goes on with it
            move_upload(s, up, "completing", actor_id=principal.id)
        size, expected = up.size, up.sha256
    try:
        if not _wait_writers(upload_id):
            raise Conflict("chunk requests are still writing; try again", code="upload_busy")
        part = partial_path(settings, upload_id)
        try:
            st = part.stat()
        except FileNotFoundError as exc:
            raise Conflict(f"upload {upload_id} has lost its partial file", code="upload_partial_missing") from exc
        if st.st_size != size:
            os.truncate(part, size)
        actual = _running_digest(upload_id, size) or _file_sha256(part)
        if actual != expected:
            _fail(ctx, principal, upload_id, f"SHA-256 mismatch: announced {expected}, received {actual}")
            raise BadRequest(f"SHA-256 of the received data is {actual}, announced {expected}; nothing was stored",
                             code="sha256_mismatch", details={"expected": expected, "actual": actual})
        fd = os.open(part, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        with fs.transaction(ctx.sessions) as s:
            up = get_upload(s, principal, upload_id, for_update=True)
            if up.state == "completed":
                return upload_view(s, up)
            if up.state != "completing":
                raise Conflict(f"upload {upload_id} is {up.state}", code=f"upload_{up.state}")
            scope = scope_of(settings, principal, up)
            item = fs.plan_placement(scope, up.path, part, size, actual)
            (row,) = fs.place_files(s, settings, scope, [item], overwrite=up.overwrite, exclude_upload=up.id,
                                    data={"upload_id": up.id})
            move_upload(s, up, "completed", values={"file_id": row.id}, actor_id=principal.id,
                        event_kind="upload.completed", message=f"stored {up.path}",
                        data={"root": up.root, "path": up.path, "size": size, "sha256": actual, "file_id": row.id})
            s.flush()
            view = upload_view(s, up)
    except QuotaExceeded as exc:
        _fail(ctx, principal, upload_id, f"storage quota exceeded at completion: {exc.message}")
        raise
    except BaseException:
        _reopen(ctx, upload_id)  # no-op once failed
        raise
    forget(upload_id)
    return view


def abort_upload(ctx, principal: Principal, upload_id: str) -> None:
    with fs.transaction(ctx.sessions) as s:
        up = get_upload(s, principal, upload_id, for_update=True)
        if up.state == "completed":
            raise Conflict(f"upload {upload_id} is already completed", code="upload_completed")
        if up.state in LIVE:
            move_upload(s, up, "aborted", actor_id=principal.id, event_kind="upload.aborted",
                        message=f"aborted upload of {up.path}", data={"root": up.root, "path": up.path})
    partial_path(ctx.settings, upload_id).unlink(missing_ok=True)
    _RUNNING.pop(upload_id, None)


def expire_uploads(session: Session, settings: Settings) -> int:
    """Mark idle open uploads past their expiry as expired and remove their partial files."""
    now = utcnow()
    stale = list(session.scalars(select(UploadModel).where(UploadModel.state.in_(("open", "completing")),
                                                           UploadModel.expires_at < now)))
    for up in stale:
        try:
            move_upload(session, up, "expired", reason="expired before completion", event_kind="upload.expired",
                        message=f"upload of {up.path} expired", data={"root": up.root, "path": up.path})
        except StaleState:  # completed or aborted meanwhile
            continue
        try:
            os.unlink(settings.uploads_dir / f"{up.id}.part")
        except FileNotFoundError:
            pass
        forget(up.id)
    tmp = settings.uploads_dir / "tmp"
    if tmp.is_dir():
        cutoff = now.timestamp() - 86400
        for e in os.scandir(tmp):
            try:
                if e.stat().st_mtime < cutoff:
                    os.unlink(e.path)
            except OSError:
                pass
    return len(stale)
