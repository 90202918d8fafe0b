"""Native files API: /api/v1/files (list, stat, mkdir, move, delete, download with Range, small
uploads, extract, usage, reindex) and /api/v1/uploads (resumable uploads).

Paths are relative to a root: the caller's private root, or the public root with `public=true`.
Admins may name another user's root with `user_id`; anyone else doing so gets 403. Handlers keep
their own short transactions (services/files.transaction) so streaming and disk work never hold
the database's write lock."""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse, StreamingResponse

from modelyard.core.errors import BadRequest, Forbidden
from modelyard.server.auth import Principal
from modelyard.server.deps import CtxDep, UserDep
from modelyard.server.routers.params import IdQ, PageQ, PageSizeQ, PathQ
from modelyard.server.schemas.common import MAX_PATH
from modelyard.server.schemas.files import (
    ChunkReceipt,
    DeleteResult,
    ExtractRequest,
    ExtractResult,
    FileEntry,
    FileList,
    MkdirRequest,
    MoveRequest,
    ReindexResult,
    StorageUsage,
    UploadCreate,
    UploadState,
)
from modelyard.server.services import files as fs
from modelyard.server.services import uploads as up
from modelyard.server.services.files import archives

router = APIRouter(tags=["files"])

PIECE = 1 << 20


def _read(ctx, principal: Principal, public: bool, user_id: str | None, fn: Callable[[Any, fs.Scope], Any]) -> Any:
    """Run fn(session, scope) in a read transaction; a root (or directory) not indexed yet is
    indexed first in a short write transaction."""
    for attempt in range(3):
        try:
            with fs.transaction(ctx.sessions, readonly=True) as s:
                scope = fs.scope_for(s, ctx.settings, principal, public=public, user_id=user_id)
                if not fs.is_indexed(s, scope.key):
                    raise fs.NotIndexedYet("")
                return fn(s, scope)
        except fs.NotIndexedYet as exc:
            if attempt == 2:
                raise
            with fs.transaction(ctx.sessions) as s:
                scope = fs.scope_for(s, ctx.settings, principal, public=public, user_id=user_id)
                fs.ensure_indexed(s, scope)
                if exc.rel:
                    fs.reindex(s, scope, exc.rel)
    raise AssertionError("unreachable")


def _write(ctx, principal: Principal, public: bool, user_id: str | None, fn: Callable[[Any, fs.Scope], Any]) -> Any:
    with fs.transaction(ctx.sessions) as s:
        scope = fs.scope_for(s, ctx.settings, principal, public=public, user_id=user_id)
        return fn(s, scope)


@router.get("/files", response_model=FileList, summary="List a directory (paged)")
def list_files(ctx: CtxDep, principal: UserDep, path: PathQ = "", public: bool = False, user_id: IdQ = None,
               page: PageQ = 1, page_size: PageSizeQ = 100,
               after: str | None = Query(None, description="keyset paging: the last name of the previous page",
                                         max_length=MAX_PATH)):
    """Entries of a folder in your files (or the public root), with size, type and modification time, paged."""
    return _read(ctx, principal, public, user_id,
                 lambda s, sc: fs.list_dir(s, sc, path, page=page, page_size=page_size, after=after))


@router.get("/files/stat", response_model=FileEntry)
def stat_file(ctx: CtxDep, principal: UserDep, path: str = "", public: bool = False, user_id: str | None = None):
    """Stat a path

    Size, type, modification time and (for files) the SHA-256 of one entry in your files."""
    return _read(ctx, principal, public, user_id, lambda s, sc: fs.stat(s, sc, path))


@router.post("/files/mkdir", response_model=FileEntry, status_code=status.HTTP_201_CREATED)
def make_dir(req: MkdirRequest, ctx: CtxDep, principal: UserDep):
    """Create a folder

    Creates the folder and any missing parents in your files (or the public root, admin)."""
    return _write(ctx, principal, req.public, req.user_id,
                  lambda s, sc: fs.mkdir(s, sc, req.path, parents=req.parents, exist_ok=req.exist_ok))


@router.post("/files/move", response_model=FileEntry, summary="Move or rename (inside one root)")
def move_file(req: MoveRequest, ctx: CtxDep, principal: UserDep):
    """Moves or renames a file or folder within the same root; refuses to overwrite unless asked."""
    return _write(ctx, principal, req.public, req.user_id,
                  lambda s, sc: fs.move(s, sc, req.src, req.dst, overwrite=req.overwrite))


@router.delete("/files", response_model=DeleteResult, summary="Delete a file or a directory tree")
def delete_file(ctx: CtxDep, principal: UserDep, path: str, public: bool = False, user_id: str | None = None,
                recursive: bool = True):
    """Removes a file, or a folder with everything in it, from your files; its space returns to your quota."""
    deleted = _write(ctx, principal, public, user_id,
                     lambda s, sc: fs.delete_path(s, ctx.settings, sc, path, recursive=recursive))
    fs.finish_delete(deleted)  # after the commit: the tree is already out of the root
    return DeleteResult(path=deleted.rel, public=public, files=deleted.files, bytes=deleted.bytes)


@router.get("/files/usage", response_model=StorageUsage)
def usage(ctx: CtxDep, principal: UserDep, user_id: str | None = None):
    """Storage usage

    Bytes and files used in your root, against your storage quota."""
    uid = principal.ensure_acting_as(user_id)
    with fs.transaction(ctx.sessions) as s:
        return StorageUsage(**fs.usage_summary(s, ctx.settings, uid))


@router.post("/files/reindex", response_model=ReindexResult,
             summary="Rescan a path on disk into the index (after out-of-band changes)")
def reindex(ctx: CtxDep, principal: UserDep, path: str = "", public: bool = False, user_id: str | None = None):
    """Re-reads a path from disk into the file index, for changes made outside the API."""
    if public and not principal.is_admin:
        raise Forbidden("only an admin reindexes the public root")

    def run(s, sc):
        first = fs.ensure_indexed(s, sc)
        if first is not None and not path:
            return first  # the first scan of the root was this reindex
        return fs.reindex(s, sc, path, must_exist=True)

    return _write(ctx, principal, public, user_id, run)


@router.post("/files/extract", response_model=ExtractResult, summary="Extract a tar / tar.gz / zip into a folder")
def extract(req: ExtractRequest, ctx: CtxDep, principal: UserDep):
    """Unpacks an archive already in your files into a folder (entries that would escape it are refused)."""
    return archives.extract(ctx, principal, path=req.path, dest=req.dest, public=req.public,
                            dest_public=req.dest_public, user_id=req.user_id, overwrite=req.overwrite)


@router.post("/files/upload", response_model=list[FileEntry], status_code=status.HTTP_201_CREATED,
             summary="Upload small files (multipart `file`, one or more) into a directory",
             openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
                 "type": "object", "properties": {"file": {"type": "array", "items": {
                     "type": "string", "format": "binary"}}}, "required": ["file"]}}}}})
async def upload_small(request: Request, ctx: CtxDep, principal: UserDep,
                       path: str = Query("", description="directory to put the files in"),
                       public: bool = False, overwrite: bool = False, user_id: str | None = None):
    """One request for small files; use the resumable /uploads API for large ones."""
    return await up.multipart_upload(ctx, principal, request.headers.get("content-type", ""), request.stream(),
                                     public=public, dir_text=path, user_id=user_id, strict=True,
                                     overwrite=overwrite)


# --- download ----------------------------------------------------------------------------------

_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """(start, end inclusive) of a single `bytes=` range; None: serve the whole file (multiple
    ranges are not supported and, as RFC 9110 allows, answered with the whole file). Raises
    ValueError for a range that cannot be satisfied or parsed (-> 416)."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or not spec.strip():
        raise ValueError("only a `bytes=` range is supported")
    if "," in spec:
        return None
    m = _RANGE.match(spec)
    if not m or (m.group(1) == "" and m.group(2) == ""):
        raise ValueError(f"malformed range {header!r}")
    if m.group(1) == "":
        n = int(m.group(2))
        if n == 0 or size == 0:
            raise ValueError("empty suffix range")
        return max(0, size - n), size - 1
    start = int(m.group(1))
    end = int(m.group(2)) if m.group(2) else size - 1
    if start >= size or end < start:
        raise ValueError(f"range {header!r} outside the file's {size} bytes")
    return start, min(end, size - 1)


def _iter_file(path, start: int, length: int) -> Iterator[bytes]:
    fd = os.open(path, os.O_RDONLY)
    try:
        pos, end = start, start + length
        while pos < end:
            data = os.pread(fd, min(PIECE, end - pos), pos)
            if not data:
                break
            pos += len(data)
            yield data
    finally:
        os.close(fd)


_DOWNLOAD_RESPONSES = {206: {"description": "partial content"}, 416: {"description": "range not satisfiable"}}


def _download(request: Request, ctx, principal: Principal, path: str, public: bool, user_id: str | None,
              range_: str | None) -> Response:
    d: fs.Download = _read(ctx, principal, public, user_id, lambda s, sc: fs.open_download(s, sc, path))
    name = fs.name_of(d.rel)
    headers = {"Accept-Ranges": "bytes", "ETag": f'"{d.size:x}-{d.mtime_ns:x}"',
               "Last-Modified": d.mtime.strftime("%a, %d %b %Y %H:%M:%S GMT"),
               "Content-Disposition": f"attachment; filename*=UTF-8''{urllib.parse.quote(name)}"}
    if d.sha256:
        headers["X-Content-SHA256"] = d.sha256
    start, end, code = 0, d.size - 1, 200
    if range_:
        try:
            r = parse_range(range_, d.size)
        except ValueError as exc:
            return JSONResponse({"error": {"code": "range_not_satisfiable", "message": str(exc)}}, status_code=416,
                                headers={"Content-Range": f"bytes */{d.size}", "Accept-Ranges": "bytes"})
        if r is not None:
            start, end, code = r[0], r[1], 206
            headers["Content-Range"] = f"bytes {start}-{end}/{d.size}"
    length = max(0, end - start + 1)
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        return Response(status_code=code, headers=headers, media_type="application/octet-stream")
    return StreamingResponse(_iter_file(d.path, start, length), status_code=code, headers=headers,
                             media_type="application/octet-stream")


@router.get("/files/download", summary="Download a file (HTTP Range: one `bytes=` range -> 206; bad range -> 416)",
            response_class=StreamingResponse, responses=_DOWNLOAD_RESPONSES)
def download(request: Request, ctx: CtxDep, principal: UserDep, path: str, public: bool = False,
             user_id: str | None = None, range_: str | None = Header(None, alias="range")):
    """Streams a file from your files; a Range header resumes or parts the download."""
    return _download(request, ctx, principal, path, public, user_id, range_)


@router.head("/files/download", summary="A download's headers (size, ranges, checksum) without the body",
             response_class=StreamingResponse, responses=_DOWNLOAD_RESPONSES)
def download_head(request: Request, ctx: CtxDep, principal: UserDep, path: str, public: bool = False,
                  user_id: str | None = None, range_: str | None = Header(None, alias="range")):
    """Size, accepted ranges and checksum of a file, without sending it."""
    return _download(request, ctx, principal, path, public, user_id, range_)


# --- resumable uploads ---------------------------------------------------------------------------

@router.post("/uploads", response_model=UploadState, status_code=status.HTTP_201_CREATED, tags=["uploads"],
             summary="Open a resumable upload (quota checked before anything is accepted)")
def create_upload(req: UploadCreate, ctx: CtxDep, principal: UserDep):
    """Declares a file's size and SHA-256; the space is reserved against your quota before any chunk is sent."""
    with fs.transaction(ctx.sessions) as s:
        scope = fs.scope_for(s, ctx.settings, principal, public=req.public, user_id=req.user_id)
        u = up.create_upload(s, ctx.settings, scope, path=req.path, size=req.size, sha256=req.sha256,
                             chunk_size=req.chunk_size, overwrite=req.overwrite)
        return up.upload_view(s, u)


@router.get("/uploads", response_model=list[UploadState], tags=["uploads"],
            summary="My uploads: `live` (open or completing, the default), a state, or '' for all")
def list_uploads(ctx: CtxDep, principal: UserDep, state: str | None = "live", path: str | None = None,
                 public: bool | None = None):
    """Your resumable uploads, newest first."""
    with fs.transaction(ctx.sessions, readonly=True) as s:
        return up.list_uploads(s, principal, state=state or None, path=path, public=public)


@router.get("/uploads/{upload_id}", response_model=UploadState, tags=["uploads"],
            summary="An upload's state: which chunks / byte ranges are received")
def get_upload(upload_id: str, ctx: CtxDep, principal: UserDep):
    """Which chunks have arrived, so an interrupted upload can resume with the missing ones."""
    with fs.transaction(ctx.sessions, readonly=True) as s:
        return up.upload_view(s, up.get_upload(s, principal, upload_id))


@router.put("/uploads/{upload_id}/chunks/{index}", response_model=ChunkReceipt, tags=["uploads"],
            summary="Send one chunk (raw body); any order, retry freely",
            openapi_extra={"requestBody": {"content": {"application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}}}, "required": True}})
async def put_chunk(upload_id: str, index: int, request: Request, ctx: CtxDep, principal: UserDep,
                    x_chunk_sha256: str | None = Header(None)):
    """Chunks may arrive in any order and be sent again; each is written at its offset."""
    if index < 0:
        raise BadRequest("chunk index must be >= 0", code="invalid_chunk")
    return await up.receive_chunk(ctx, principal, upload_id, index, request.stream(), chunk_sha256=x_chunk_sha256)


@router.post("/uploads/{upload_id}/complete", response_model=UploadState, tags=["uploads"],
             summary="Verify the SHA-256 and put the file in place")
def complete_upload(upload_id: str, ctx: CtxDep, principal: UserDep):
    """Checks the whole file's SHA-256 against the declared one and moves it to its path."""
    return up.complete_upload(ctx, principal, upload_id)


@router.delete("/uploads/{upload_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["uploads"],
               summary="Abort an upload (its partial data is removed)")
def abort_upload(upload_id: str, ctx: CtxDep, principal: UserDep):
    """Drops the partial file and releases the reserved space."""
    up.abort_upload(ctx, principal, upload_id)
    return Response(status_code=204)
