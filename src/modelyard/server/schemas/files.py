"""Request and response bodies of the files API (/api/v1/files, /api/v1/uploads)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from .common import MAX_NAME, MAX_PATH, MAX_SAFE_INT, UTCDateTime


class FileEntry(BaseModel):
    path: str = Field(description="relative to the root; '' is the root itself")
    name: str
    is_dir: bool
    size: int
    sha256: str | None = Field(None, description="known for files stored through the API")
    mtime: UTCDateTime
    owner_id: str | None
    public: bool
    id: int | None = None


class FileList(BaseModel):
    path: str
    public: bool
    items: list[FileEntry]
    total: int
    page: int
    page_size: int
    next_after: str | None = Field(None, description="pass as `after` for the next page (keyset paging)")


class MkdirRequest(BaseModel):
    path: str = Field(max_length=MAX_PATH)
    public: bool = False
    parents: bool = True
    exist_ok: bool = True
    user_id: str | None = Field(None, max_length=MAX_NAME, description="admin only: work in this user's root")


class MoveRequest(BaseModel):
    src: str = Field(max_length=MAX_PATH)
    dst: str = Field(max_length=MAX_PATH)
    public: bool = False
    overwrite: bool = False
    user_id: str | None = Field(None, max_length=MAX_NAME)


class DeleteResult(BaseModel):
    path: str
    public: bool
    files: int
    bytes: int


class ExtractRequest(BaseModel):
    path: str = Field(description="the archive (tar, tar.gz/.bz2/.xz, zip)", max_length=MAX_PATH)
    dest: str | None = Field(None, max_length=MAX_PATH, description="folder to extract into; default: next to the archive, named after it")
    public: bool = Field(False, description="the archive is in the public root")
    dest_public: bool | None = Field(None, description="extract into the public root (default: same as `public`)")
    overwrite: bool = False
    user_id: str | None = Field(None, max_length=MAX_NAME)


class ExtractResult(BaseModel):
    path: str
    dest: str
    public: bool
    format: str
    files: int
    directories: int
    bytes: int


class StorageUsage(BaseModel):
    user_id: str
    bytes: int
    files: int
    reserved_bytes: int = Field(description="held by open resumable uploads")
    reserved_files: int
    quota_bytes: int | None
    quota_files: int | None


class ReindexResult(BaseModel):
    added: int
    updated: int
    removed: int


class UploadCreate(BaseModel):
    path: str = Field(description="target file path, relative to the root", max_length=MAX_PATH)
    size: int = Field(ge=0, le=MAX_SAFE_INT)
    sha256: str = Field(description="SHA-256 of the whole file, hex", max_length=64)
    public: bool = False
    overwrite: bool = False
    chunk_size: int | None = Field(None, description="bytes per chunk (default 32 MiB, at most the server's limit)",
                                   ge=0, le=MAX_SAFE_INT)
    user_id: str | None = Field(None, description="admin only: upload into this user's root", max_length=MAX_NAME)


class UploadState(BaseModel):
    id: str
    path: str
    public: bool
    owner_id: str
    size: int
    sha256: str
    chunk_size: int
    chunk_count: int
    overwrite: bool
    state: str = Field(description="open | completing | completed | aborted | failed | expired")
    error: str | None
    received: list[int]
    missing: list[int]
    received_bytes: int
    received_ranges: list[list[int]] = Field(description="[start, end) byte ranges received")
    created_at: UTCDateTime
    updated_at: UTCDateTime
    expires_at: UTCDateTime
    completed_at: UTCDateTime | None
    file: FileEntry | None


class ChunkReceipt(BaseModel):
    id: str
    index: int
    size: int
    received_count: int
    chunk_count: int
    received_bytes: int
