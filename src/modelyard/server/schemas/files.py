"""Request and response bodies of the files API (/api/v1/files, /api/v1/uploads)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .common import MAX_NAME, MAX_PATH, MAX_SAFE_INT, UTCDateTime


class FileEntry(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    path: str = Field(description="relative to the root; '' is the root itself")
    name: str
    """the entry's name"""
    is_dir: bool
    """true for a folder"""
    size: int
    """its size in bytes (folders: 0)"""
    sha256: str | None = Field(None, description="known for files stored through the API")
    mtime: UTCDateTime
    """when it last changed (UTC)"""
    owner_id: str | None
    """the user whose root holds it (null: the public root)"""
    public: bool
    """true when it is in the public root"""
    id: int | None = None
    """the index entry's id"""


class FileList(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    path: str
    """the folder listed, relative to its root"""
    public: bool
    """true for the public root"""
    items: list[FileEntry]
    """the entries on this page"""
    total: int
    """entries in the folder"""
    page: int
    """this page's number, from 1"""
    page_size: int
    """entries per page"""
    next_after: str | None = Field(None, description="pass as `after` for the next page (keyset paging)")


class MkdirRequest(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    path: str = Field(max_length=MAX_PATH)
    """the folder to create, relative to your root"""
    public: bool = False
    """create it in the public root (admin)"""
    parents: bool = True
    """create missing parent folders too"""
    exist_ok: bool = True
    """succeed if it already exists"""
    user_id: str | None = Field(None, max_length=MAX_NAME, description="admin only: work in this user's root")


class MoveRequest(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    src: str = Field(max_length=MAX_PATH)
    """the path to move"""
    dst: str = Field(max_length=MAX_PATH)
    """where it goes (same root)"""
    public: bool = False
    """both paths are in the public root (admin)"""
    overwrite: bool = False
    """replace an existing destination"""
    user_id: str | None = Field(None, max_length=MAX_NAME)
    """act in this user's root (admin only)"""


class DeleteResult(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    path: str
    """what was deleted"""
    public: bool
    """true when it was in the public root"""
    files: int
    """how many files went"""
    bytes: int
    """how many bytes were freed"""


class ExtractRequest(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    path: str = Field(description="the archive (tar, tar.gz/.bz2/.xz, zip)", max_length=MAX_PATH)
    dest: str | None = Field(None, max_length=MAX_PATH, description="folder to extract into; default: next to the archive, named after it")
    public: bool = Field(False, description="the archive is in the public root")
    dest_public: bool | None = Field(None, description="extract into the public root (default: same as `public`)")
    overwrite: bool = False
    """replace files that already exist"""
    user_id: str | None = Field(None, max_length=MAX_NAME)
    """act in this user's root (admin only)"""


class ExtractResult(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    path: str
    """the archive extracted"""
    dest: str
    """the folder it was extracted into"""
    public: bool
    """true when in the public root"""
    format: str
    """tar, tar.gz or zip"""
    files: int
    """files written"""
    directories: int
    """folders created"""
    bytes: int
    """bytes written"""


class StorageUsage(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    user_id: str
    """whose usage this is"""
    bytes: int
    """bytes stored"""
    files: int
    """files stored"""
    reserved_bytes: int = Field(description="held by open resumable uploads")
    reserved_files: int
    """files reserved by open uploads"""
    quota_bytes: int | None
    """the storage quota in bytes (null: none)"""
    quota_files: int | None
    """the file-count quota (null: none)"""


class ReindexResult(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    added: int
    """entries newly found on disk"""
    updated: int
    """entries whose size or time changed"""
    removed: int
    """entries no longer on disk"""


class UploadCreate(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    path: str = Field(description="target file path, relative to the root", max_length=MAX_PATH)
    size: int = Field(ge=0, le=MAX_SAFE_INT)
    """the file's size in bytes (reserved against your quota)"""
    sha256: str = Field(description="SHA-256 of the whole file, hex", max_length=64)
    public: bool = False
    """upload into the public root (admin)"""
    overwrite: bool = False
    """replace an existing file at the path"""
    chunk_size: int | None = Field(None, description="bytes per chunk (default 32 MiB, at most the server's limit)",
                                   ge=0, le=MAX_SAFE_INT)
    user_id: str | None = Field(None, description="admin only: upload into this user's root", max_length=MAX_NAME)


class UploadState(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """the upload's id"""
    path: str
    """where the file goes once complete"""
    public: bool
    """true for the public root"""
    owner_id: str
    """whose root it goes into"""
    size: int
    """the declared size in bytes"""
    sha256: str
    """the declared SHA-256, checked at completion"""
    chunk_size: int
    """bytes per chunk (the last may be shorter)"""
    chunk_count: int
    """how many chunks make the file"""
    overwrite: bool
    """whether it replaces an existing file"""
    state: str = Field(description="open | completing | completed | aborted | failed | expired")
    error: str | None
    """why it failed"""
    received: list[int]
    """the chunk indices received"""
    missing: list[int]
    """the chunk indices still to send"""
    received_bytes: int
    """bytes received so far"""
    received_ranges: list[list[int]] = Field(description="[start, end) byte ranges received")
    created_at: UTCDateTime
    """when it was opened (UTC)"""
    updated_at: UTCDateTime
    """when a chunk last arrived"""
    expires_at: UTCDateTime
    """when it expires if idle"""
    completed_at: UTCDateTime | None
    """when it completed"""
    file: FileEntry | None
    """the finished file's entry, once complete"""


class ChunkReceipt(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """the upload's id"""
    index: int
    """the chunk just received"""
    size: int
    """its size in bytes"""
    received_count: int
    """chunks received so far"""
    chunk_count: int
    """chunks in all"""
    received_bytes: int
    """bytes received so far"""
