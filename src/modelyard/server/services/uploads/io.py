"""Uploads: the disk side shared by resumable and multipart uploads: partial files, the I/O thread
pool, the running SHA-256 of each open resumable upload (in this process) and streaming a
request body to disk. Described in services/uploads.py, which re-exports it."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import hashlib
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from starlette.requests import ClientDisconnect

from modelyard.core.errors import BadRequest
from modelyard.server.orm.files import UploadChunkModel, UploadModel
from modelyard.server.services import files as fs
from modelyard.server.settings import Settings

log = logging.getLogger("modelyard.server.services.uploads")  # the name it always logged under

PIECE = 1 << 20  # largest buffer held per stream

# Disk I/O (pwrite, fsync, hashing: all release the GIL) runs here, off the event loop.
_IO = ThreadPoolExecutor(max_workers=16, thread_name_prefix="modelyard-files-io")


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
