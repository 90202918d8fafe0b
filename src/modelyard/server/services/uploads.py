"""Uploads: streaming multipart (small files, the seed's §1.1/§1.2) and resumable sessions
(multi-GB files).

Resumable protocol (native /api/v1/uploads):
  POST   /uploads {path, size, sha256, public?, overwrite?, chunk_size?} -> 201 session
         (path checked, quota checked BEFORE accepting: size and +1 file against what is left,
         counting other open sessions; a partial file of `size` bytes is preallocated under
         settings.uploads_dir, so a full disk is refused at once with 507)
  PUT    /uploads/{id}/chunks/{index}   body = bytes [index*chunk_size, +chunk_size) (the last chunk
         shorter). Any order, any number of times (idempotent: same bytes, same place). Optional
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
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import re
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.core.errors import BadRequest, Conflict, ModelyardError, NotFound, QuotaExceeded
from modelyard.core.ids import new_id
from modelyard.server.auth import Principal
from modelyard.server.orm.base import utcnow
from modelyard.server.orm.files import PUBLIC_ROOT, UploadChunkModel, UploadModel
from modelyard.server.services import events
from modelyard.server.services import files as fs
from modelyard.server.settings import Settings

log = logging.getLogger(__name__)

PIECE = 1 << 20  # largest buffer held per stream
MIN_CHUNK = 64 * 1024
DEFAULT_CHUNK = 32 * 1024 * 1024
MAX_FIELD_BYTES = 64 * 1024
_SHA = re.compile(r"^[0-9a-f]{64}$")

# Disk I/O (pwrite, fsync, hashing: all release the GIL) runs here, off the event loop.
_IO = ThreadPoolExecutor(max_workers=16, thread_name_prefix="modelyard-files-io")


class InsufficientStorage(ModelyardError):
    status, code = 507, "insufficient_storage"


def partial_path(settings: Settings, upload_id: str) -> Path:
    return settings.uploads_dir / f"{upload_id}.part"


def tmp_dir(settings: Settings) -> Path:
    d = settings.uploads_dir / "tmp"
    d.mkdir(parents=True, exist_ok=True)
    return d


# --- the running hash of each open upload (in this process) ------------------------------------

@dataclass
class _Running:
    h: object = field(default_factory=hashlib.sha256)
    offset: int = 0
    busy: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


_RUNNING: dict[str, _Running] = {}
_RUNNING_LOCK = threading.Lock()


_WRITERS: dict[str, int] = {}
_WRITERS_COND = threading.Condition()
LIVE = ("open", "completing")  # states that hold a partial file and a quota reservation


@contextlib.contextmanager
def _writer(upload_id: str):
    """Count a chunk request working on an upload's partial file (completion waits for none)."""
    with _WRITERS_COND:
        _WRITERS[upload_id] = _WRITERS.get(upload_id, 0) + 1
    try:
        yield
    finally:
        with _WRITERS_COND:
            n = _WRITERS.get(upload_id, 1) - 1
            if n:
                _WRITERS[upload_id] = n
            else:
                _WRITERS.pop(upload_id, None)
            _WRITERS_COND.notify_all()


def _wait_writers(upload_id: str, timeout: float = 300.0) -> bool:
    with _WRITERS_COND:
        return _WRITERS_COND.wait_for(lambda: upload_id not in _WRITERS, timeout)


def forget(upload_id: str) -> None:
    """Drop the running hash of an upload that will not complete."""
    with _RUNNING_LOCK:
        _RUNNING.pop(upload_id, None)


def _claim(upload_id: str, offset: int):
    """The hash state to extend while chunk data at `offset` streams in, if it is the next one."""
    with _RUNNING_LOCK:
        r = _RUNNING.get(upload_id)
        if r is None and offset == 0:
            r = _RUNNING[upload_id] = _Running()
    if r is None:
        return None
    with r.lock:
        if r.busy or r.offset != offset:
            return None
        r.busy = True
        return r.h.copy()


def _settle(upload_id: str, h, new_offset: int | None) -> None:
    r = _RUNNING.get(upload_id)
    if r is None:
        return
    with r.lock:
        if h is not None and new_offset is not None:
            r.h, r.offset = h, new_offset
        r.busy = False


def _invalidate_if_hashed(upload_id: str, offset: int) -> None:
    """A chunk already folded into the running hash is being sent again (maybe different bytes):
    forget the running hash; completion reads the file back instead."""
    with _RUNNING_LOCK:
        r = _RUNNING.get(upload_id)
        if r is not None and offset < r.offset:
            _RUNNING.pop(upload_id, None)


def _advance(sessions, settings: Settings, upload_id: str) -> None:
    """Fold received chunks that follow the running hash's offset into it (read back from disk)."""
    r = _RUNNING.get(upload_id)
    if r is None:
        return
    with r.lock:
        if r.busy:
            return
        r.busy = True
        h, off = r.h.copy(), r.offset
    try:
        with fs.transaction(sessions, readonly=True) as s:
            up = s.get(UploadModel, upload_id)
            if up is None or up.state not in LIVE:
                return
            size, cs = up.size, up.chunk_size
            received = set(s.scalars(select(UploadChunkModel.index).where(UploadChunkModel.upload_id == upload_id)))
        if off >= size or (off // cs) not in received:
            return
        fd = os.open(partial_path(settings, upload_id), os.O_RDONLY)
        try:
            while off < size and (off // cs) in received:
                end = min(off + cs, size)
                while off < end:
                    data = os.pread(fd, min(PIECE, end - off), off)
                    if not data:
                        raise OSError("partial file shorter than expected")
                    h.update(data)
                    off += len(data)
        finally:
            os.close(fd)
    except Exception:
        log.exception("advancing the running hash of upload %s failed", upload_id)
        h = None
    finally:
        with r.lock:
            if h is not None:
                r.h, r.offset = h, off
            r.busy = False


def _running_digest(upload_id: str, size: int, wait_s: float = 60.0) -> str | None:
    deadline = time.monotonic() + wait_s
    while True:
        r = _RUNNING.get(upload_id)
        if r is None:
            return None
        with r.lock:
            if not r.busy:
                return r.h.hexdigest() if r.offset == size else None
        if time.monotonic() > deadline:
            return None
        time.sleep(0.01)


# --- streaming a body to disk -------------------------------------------------------------------

def _writeback_starter() -> Callable[[int, int, int], None]:
    """start_writeback(fd, offset, length): ask the kernel to begin writing a just-written range
    to disk without waiting for it (Linux sync_file_range(SYNC_FILE_RANGE_WRITE)). The disk then
    works while the rest of the upload arrives, instead of everything waiting for the final fsync
    (which only makes it durable). Elsewhere: a no-op."""
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.sync_file_range
        fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
        fn.restype = ctypes.c_int
    except (OSError, AttributeError):
        return lambda fd, offset, length: None
    SYNC_FILE_RANGE_WRITE = 2

    def start(fd: int, offset: int, length: int) -> None:
        fn(fd, offset, length, SYNC_FILE_RANGE_WRITE)  # best effort: errors only mean no head start

    return start


start_writeback = _writeback_starter()


async def _guard(stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """A body whose client went away mid-way ends as a 400 (never a 500 with a traceback)."""
    from starlette.requests import ClientDisconnect

    try:
        async for piece in stream:
            yield piece
    except ClientDisconnect as exc:
        raise BadRequest("the client disconnected before the body was complete", code="client_disconnected") from exc


async def write_stream(fd: int, offset: int, length: int, stream: AsyncIterator[bytes], hashers: list) -> int:
    """Write exactly `length` bytes of stream at `offset`. Received pieces are gathered up to
    ~1 MiB; each batch is written with one os.pwritev (no joining copy) in an I/O thread and hashed
    in another, both while the next batch arrives (at most one batch of each in flight, so memory
    stays at a few MiB). Refuses a body longer or shorter than `length`."""
    loop = asyncio.get_running_loop()

    def write(pieces: list[bytes], at: int) -> None:
        total = sum(len(p) for p in pieces)
        done = os.pwritev(fd, pieces, at)
        if done < total:  # short write (rare): finish piece by piece
            data = b"".join(pieces)[done:]
            while data:
                n = os.pwrite(fd, data, at + done)
                done += n
                data = data[n:]
        start_writeback(fd, at, total)

    def digest(pieces: list[bytes]) -> None:
        for h in hashers:
            for p in pieces:
                h.update(p)

    pieces: list[bytes] = []
    held = 0
    pos, got = offset, 0
    writing = hashing = None

    async def submit(batch: list[bytes], at: int) -> None:
        nonlocal writing, hashing
        if writing is not None:
            await writing
        writing = loop.run_in_executor(_IO, write, batch, at)
        if hashers:
            if hashing is not None:
                await hashing
            hashing = loop.run_in_executor(_IO, digest, batch)

    try:
        async for piece in stream:
            if not piece:
                continue
            got += len(piece)
            if got > length:
                raise BadRequest(f"chunk body longer than the {length} bytes expected", code="chunk_size_mismatch")
            pieces.append(piece)
            held += len(piece)
            if held >= PIECE or len(pieces) >= 512:
                await submit(pieces, pos)
                pos += held
                pieces, held = [], 0
        if pieces:
            await submit(pieces, pos)
        for fut in (writing, hashing):
            if fut is not None:
                await fut
        writing = hashing = None
    finally:
        for fut in (writing, hashing):
            if fut is not None:
                with contextlib.suppress(Exception):
                    await fut
    if got != length:
        raise BadRequest(f"chunk body has {got} bytes, expected {length}", code="chunk_size_mismatch")
    return got


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
    for anc in fs._ancestors(rel):
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
    fs.expire_uploads(session, settings)
    fs.check_quota(session, settings, scope.owner_id, add_bytes=add_bytes, add_files=add_files)
    up = UploadModel(id=new_id(), owner_id=scope.owner_id, actor_id=scope.actor_id, root=scope.key, path=rel,
                     size=size, sha256=sha256, chunk_size=cs, chunk_count=math.ceil(size / cs), overwrite=overwrite,
                     state="open", expires_at=utcnow() + fs.UPLOAD_TTL)
    session.add(up)
    session.flush()
    part = partial_path(settings, up.id)
    part.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(part, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        if size:
            try:
                os.posix_fallocate(fd, 0, size)
            except OSError as exc:
                if exc.errno == 28:  # ENOSPC
                    raise InsufficientStorage(f"not enough disk space for {size} bytes") from exc
                os.ftruncate(fd, size)  # filesystem without fallocate: a sparse file
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
        from modelyard.server.orm.files import FileModel

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
    from starlette.concurrency import run_in_threadpool

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
            up.state, up.error = "failed", reason[:1024]
            s.execute(delete(UploadChunkModel).where(UploadChunkModel.upload_id == upload_id))
            events.record(s, actor_id=principal.id, kind=kind, object_type="upload", object_id=upload_id,
                          message=reason[:1024], data={"root": up.root, "path": up.path})
    partial_path(ctx.settings, upload_id).unlink(missing_ok=True)
    _RUNNING.pop(upload_id, None)


def _reopen(ctx, upload_id: str) -> None:
    """A completion that could not finish (conflict, I/O error): the session is open again."""
    with fs.transaction(ctx.sessions) as s:
        up = s.get(UploadModel, upload_id, with_for_update=True)
        if up is not None and up.state == "completing":
            up.state = "open"


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
        up.state = "completing"
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
            up.state, up.file_id, up.completed_at = "completed", row.id, utcnow()
            s.execute(delete(UploadChunkModel).where(UploadChunkModel.upload_id == upload_id))
            events.record(s, actor_id=principal.id, kind="upload.completed", object_type="upload",
                          object_id=upload_id, message=f"stored {up.path}",
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
            up.state = "aborted"
            s.execute(delete(UploadChunkModel).where(UploadChunkModel.upload_id == upload_id))
            events.record(s, actor_id=principal.id, kind="upload.aborted", object_type="upload", object_id=upload_id,
                          message=f"aborted upload of {up.path}", data={"root": up.root, "path": up.path})
    partial_path(ctx.settings, upload_id).unlink(missing_ok=True)
    _RUNNING.pop(upload_id, None)


# --- streaming multipart ------------------------------------------------------------------------

@dataclass
class Received:
    field: str
    filename: str
    tmp: Path
    size: int = 0
    sha256: str = ""


@dataclass
class _FilePart:
    rec: Received
    fd: int
    h: object = field(default_factory=hashlib.sha256)
    buf: bytearray = field(default_factory=bytearray)


def _decode(b: bytes) -> str:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b.decode("latin-1")


class _Multipart:
    """python-multipart callbacks queue the work; the async loop does the disk writes in the I/O
    pool between parser.write() calls, so memory per file stays under ~1 MiB."""

    def __init__(self, tmp: Path, on_field: Callable[[str, str], None] | None,
                 on_file: Callable[[str, str], None] | None, max_bytes: int | None, max_files: int | None):
        self.tmp, self.on_field, self.on_file = tmp, on_field, on_file
        self.max_bytes, self.max_files = max_bytes, max_files
        self.fields: dict[str, str] = {}
        self.files: list[Received] = []
        self.created: list[Path] = []
        self.open_fds: list[int] = []
        self.actions: list[tuple] = []
        self.total = 0
        self._hname = self._hval = b""
        self._disp = b""
        self._cur: _FilePart | None = None
        self._field: tuple[str, bytearray] | None = None

    # callbacks
    def on_part_begin(self) -> None:
        self._hname = self._hval = self._disp = b""
        self._cur, self._field = None, None

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._hname += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._hval += data[start:end]

    def on_header_end(self) -> None:
        if self._hname.lower() == b"content-disposition":
            self._disp = self._hval
        self._hname = self._hval = b""

    def on_headers_finished(self) -> None:
        from python_multipart.multipart import parse_options_header

        _, opts = parse_options_header(self._disp)
        if b"name" not in opts:
            raise BadRequest('a multipart part has no Content-Disposition "name"', code="invalid_multipart")
        name = _decode(opts[b"name"])
        filename = None
        if b"filename*" in opts:
            raw = _decode(opts[b"filename*"])
            filename = urllib.parse.unquote(raw.split("''", 1)[1] if "''" in raw else raw)
        elif b"filename" in opts:
            filename = _decode(opts[b"filename"])
        if filename is None:
            self._field = (name, bytearray())
            return
        if self.max_files is not None and len(self.files) + 1 > self.max_files:
            raise QuotaExceeded(f"file count quota exceeded: {self.max_files} more files allowed",
                                details={"files_left": self.max_files})
        if self.on_file:
            self.on_file(name, filename)
        path = self.tmp / f"{fs.SCRATCH_PREFIX}{new_id()}.part"
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        self.created.append(path)
        self.open_fds.append(fd)
        rec = Received(name, filename, path)
        self._cur = _FilePart(rec, fd)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._cur is not None:
            n = end - start
            self.total += n
            self._cur.rec.size += n
            if self.max_bytes is not None and self.total > self.max_bytes:
                raise QuotaExceeded(f"storage quota exceeded: only {max(self.max_bytes, 0)} more bytes allowed",
                                    details={"bytes_left": max(self.max_bytes, 0)})
            self._cur.buf += data[start:end]
            if len(self._cur.buf) >= PIECE:
                self.actions.append(("write", self._cur, self._cur.buf))
                self._cur.buf = bytearray()
        elif self._field is not None:
            if len(self._field[1]) + end - start > MAX_FIELD_BYTES:
                raise BadRequest(f"form field {self._field[0]!r} longer than {MAX_FIELD_BYTES} bytes",
                                 code="invalid_multipart")
            self._field[1].extend(data[start:end])

    def on_part_end(self) -> None:
        if self._cur is not None:
            self.actions.append(("write", self._cur, self._cur.buf))
            self.actions.append(("end", self._cur, None))
            self._cur = None
        elif self._field is not None:
            name, value = self._field[0], _decode(bytes(self._field[1]))
            self.fields[name] = value
            self._field = None
            if self.on_field:
                self.on_field(name, value)

    def on_end(self) -> None:
        pass

    # disk side
    @staticmethod
    def _write(part: _FilePart, data: bytearray) -> None:
        mv = memoryview(data)
        done = 0
        while done < len(mv):
            done += os.write(part.fd, mv[done:])
        part.h.update(data)

    async def drain(self) -> None:
        loop = asyncio.get_running_loop()
        actions, self.actions = self.actions, []
        for kind, part, data in actions:
            if kind == "write":
                if data:
                    await loop.run_in_executor(_IO, self._write, part, data)
            else:
                await loop.run_in_executor(_IO, os.fsync, part.fd)
                os.close(part.fd)
                self.open_fds.remove(part.fd)
                part.rec.sha256 = part.h.hexdigest()
                self.files.append(part.rec)

    def cleanup(self) -> None:
        for fd in self.open_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self.open_fds.clear()
        for p in self.created:
            p.unlink(missing_ok=True)


async def receive_multipart(content_type: str, stream: AsyncIterator[bytes], tmp: Path, *,
                            on_field: Callable[[str, str], None] | None = None,
                            on_file: Callable[[str, str], None] | None = None,
                            max_bytes: int | None = None, max_files: int | None = None
                            ) -> tuple[dict[str, str], list[Received], Callable[[], None]]:
    """Parse a multipart/form-data body as it streams: fields in memory (<= 64 KiB each), files
    straight to temp files under `tmp` with their SHA-256. on_field/on_file are called as soon as a
    field's value / a file's name is known and may raise to refuse the request before more is
    written; max_bytes/max_files stop the stream once passed (403 quota_exceeded).
    Returns (fields, files, cleanup); cleanup() removes whatever temp file is left."""
    from python_multipart import MultipartParser
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import parse_options_header

    ctype, params = parse_options_header(content_type or "")
    if ctype != b"multipart/form-data" or b"boundary" not in params:
        raise BadRequest("expected a multipart/form-data body", code="invalid_multipart")
    sink = _Multipart(tmp, on_field, on_file, max_bytes, max_files)
    callbacks = {k: getattr(sink, k) for k in ("on_part_begin", "on_part_data", "on_part_end", "on_header_field",
                                               "on_header_value", "on_header_end", "on_headers_finished", "on_end")}
    parser = MultipartParser(params[b"boundary"], callbacks)
    try:
        async for chunk in stream:
            if chunk:
                parser.write(chunk)
                await sink.drain()
        parser.finalize()
        await sink.drain()
    except FormParserError as exc:
        sink.cleanup()
        raise BadRequest(f"malformed multipart body: {exc}", code="invalid_multipart") from exc
    except BaseException:
        sink.cleanup()
        raise
    if sink.open_fds:
        sink.cleanup()
        raise BadRequest("multipart body ended inside a part", code="invalid_multipart")
    return sink.fields, sink.files, sink.cleanup


async def multipart_upload(ctx, principal: Principal, content_type: str, stream: AsyncIterator[bytes], *,
                           public: bool, dir_text: str | None = None, dir_field: str | None = None,
                           user_field: str | None = None, user_id: str | None = None, strict: bool = True,
                           overwrite: bool = False) -> list[dict]:
    """Receive a multipart body's files into the directory dir_text (or the form field dir_field)
    of the caller's private root or the public root; user_field (the seed's publicUserId) / user_id
    name who the files belong to (the caller unless admin). Paths are checked as soon as they are
    known; on any refusal nothing stays anywhere.

    Each file streams into a temp file under settings.uploads_dir/tmp — the roots' filesystem,
    outside every root, because the target folder may only be known after the file (currentPath
    can follow the file part) and a half-received file must never be visible in a user's tree —
    and is then renamed into place atomically (services/files.place_files; a different
    filesystem falls back to a synced temp file next to the target)."""
    from starlette.concurrency import run_in_threadpool

    settings = ctx.settings
    state = {"dir": dir_text, "user": user_id}

    def prepare():
        with fs.transaction(ctx.sessions) as s:  # may index the root / create the usage row
            scope = fs.scope_for(s, settings, principal, public=public, user_id=user_id)
            if dir_text is not None:
                fs.resolve(scope, dir_text, strict=strict)
            room = fs.headroom(s, settings, scope.owner_id)
            return scope, room

    scope, room = await run_in_threadpool(prepare)

    def on_field(name: str, value: str) -> None:
        if dir_field and name == dir_field:
            fs.resolve(scope, value, strict=strict)
            state["dir"] = value
        elif user_field and name == user_field:
            principal.ensure_acting_as(value or None)
            state["user"] = value or None

    def on_file(_name: str, filename: str) -> None:
        _check_filename(filename)
        if state["dir"] is not None or dir_field is None:
            fs.resolve(scope, fs.join(state["dir"] or "", filename), strict=False)

    fields, received, cleanup = await receive_multipart(content_type, _guard(stream), tmp_dir(settings),
                                                        on_field=on_field,
                                                        on_file=on_file, max_bytes=room.bytes_left,
                                                        max_files=room.files_left)
    try:
        if not received:
            raise BadRequest("no file in the request (multipart field `file`)", code="missing_file")
        if user_field and not fields.get(user_field):
            raise BadRequest(f"form field `{user_field}` is required", code="missing_field")

        def place():
            with fs.transaction(ctx.sessions) as s:
                final = fs.scope_for(s, settings, principal, public=public, user_id=state["user"])
                base = state["dir"] or ""
                items = [fs.plan_placement(final, fs.join(base, r.filename), r.tmp, r.size, r.sha256, strict=False)
                         for r in received]
                rows = fs.place_files(s, settings, final, items, overwrite=overwrite)
                s.flush()
                return [fs.entry(r, public=public) for r in rows]

        return await run_in_threadpool(place)
    finally:
        cleanup()


def _check_filename(filename: str) -> None:
    fs.check_text(filename, strict=True)
    parts = [p for p in filename.split("/") if p not in ("", ".")]
    if not parts:
        from modelyard.core.errors import InvalidPath

        raise InvalidPath(f"invalid file name {filename!r}")
