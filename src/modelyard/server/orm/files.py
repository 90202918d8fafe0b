"""The files domain: an index of what is stored under the user and public roots, and resumable
upload sessions.

The index (`files`) mirrors the disk: every files operation changes both in one step, so listing,
paging and storage usage are answered from the database (indexed queries) instead of walking the
disk. A root that was never indexed (a new user's layout, data written before the index existed)
is scanned once on first use (`file_roots` records that it was).

Paths are stored relative to their root, '/'-separated, without a leading slash ('' is the root
itself and has no row). Columns compared by prefix use binary comparisons (substr equality), so the
database's collation never matters."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, IdMixin, TimestampMixin, utcnow

# The longest relative path (UTF-8 bytes) the index holds: keeps every index entry far below
# PostgreSQL's btree limit (~2.7 KB) whatever the characters.
MAX_PATH_BYTES = 1024
PUBLIC_ROOT = "public"


class FileModel(Base):
    """One file or directory under a root.

    root: the owning user's id for a private root, "public" for the public root.
    owner_id: who the entry belongs to and whose storage quota it counts against (the user of a
    private root; the creator in the public root; NULL for public entries found on disk)."""

    __tablename__ = "files"
    __table_args__ = (
        UniqueConstraint("root", "path", name="uq_files_root_path"),
        # a directory listing: WHERE root=? AND parent=? ORDER BY name (keyset or offset)
        Index("ix_files_root_parent_name", "root", "parent", "name"),
        # recounting an owner's usage: SUM(size), COUNT(*) WHERE owner_id=? AND is_dir=false (covering)
        Index("ix_files_owner_usage", "owner_id", "is_dir", "size"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    root: Mapped[str] = mapped_column(String(32), nullable=False)
    path: Mapped[str] = mapped_column(String(MAX_PATH_BYTES), nullable=False)
    parent: Mapped[str] = mapped_column(String(MAX_PATH_BYTES), nullable=False)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    is_dir: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))
    mtime: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    owner_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    # directories: how many entries are directly inside (kept with every change; a listing's total)
    entries: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class FileRootModel(Base):
    """A root whose disk content has been indexed (scanned once; kept in step afterwards)."""

    __tablename__ = "file_roots"

    root: Mapped[str] = mapped_column(String(32), primary_key=True)
    indexed_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    entries: Mapped[int] = mapped_column(Integer, nullable=False, default=0)  # directly in the root


class FileUsageModel(Base):
    """Per owner: SUM(size) and COUNT(*) of the regular files they own in the index, maintained
    with every change of the index (so a quota check is a primary-key read, not a scan)."""

    __tablename__ = "file_usage"

    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    bytes: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    files: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)


class UploadModel(IdMixin, TimestampMixin, Base):
    """A resumable upload: size and SHA-256 announced up front, chunks of chunk_size bytes (the last
    one shorter) sent in any order into <uploads_dir>/<id>.part, verified and renamed on complete.

    state: open | completing | completed | aborted | failed | expired (table: core/states.UPLOAD,
    moved only through services/uploads/states.UPLOAD_DOOR). Live sessions reserve their size against
    the owner's storage quota."""

    __tablename__ = "uploads"
    __table_args__ = (Index("ix_uploads_owner_state", "owner_id", "state"),)

    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    actor_id: Mapped[str | None] = mapped_column(String(32))
    root: Mapped[str] = mapped_column(String(32), nullable=False)
    path: Mapped[str] = mapped_column(String(MAX_PATH_BYTES), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    chunk_size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    chunk_count: Mapped[int] = mapped_column(Integer, nullable=False)
    overwrite: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    state: Mapped[str] = mapped_column(String(16), default="open", nullable=False)
    error: Mapped[str] = mapped_column(String(1024), default="", nullable=False)
    file_id: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[datetime] = mapped_column(DateTime, nullable=False)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime)


class UploadChunkModel(Base):
    """A chunk fully written (and synced) into the session's partial file."""

    __tablename__ = "upload_chunks"

    upload_id: Mapped[str] = mapped_column(ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True)
    index: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    sha256: Mapped[str | None] = mapped_column(String(64))
    received_at: Mapped[datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
