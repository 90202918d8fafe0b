"""Datasets: a named collection owned by a user; each version is an immutable copy of the data
files under settings.datasets_dir/<dataset_id>/<version>/<split>/<file>, validated on creation."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, IdMixin, TimestampMixin, utcnow

SPLITS = ("train", "validate", "test")


class DatasetModel(IdMixin, TimestampMixin, Base):
    __tablename__ = "datasets"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True, nullable=False)
    name: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    is_public: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)

    versions: Mapped[list[DatasetVersionModel]] = relationship(
        back_populates="dataset", cascade="all, delete-orphan", order_by="DatasetVersionModel.version")


class DatasetVersionModel(IdMixin, Base):
    """Immutable. `splits` = {"train": {"rows": n, "files": [abs paths]}, "validate": {...}, "test": {...}}
    (every split present; an unused one has rows 0 and no files)."""

    __tablename__ = "dataset_versions"
    __table_args__ = (UniqueConstraint("dataset_id", "version"),)

    dataset_id: Mapped[str] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True, nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False)
    shape: Mapped[str] = mapped_column(String(16), nullable=False)  # alpaca | chat | text
    chat_format: Mapped[str] = mapped_column(String(16), default="")  # chat only: messages | sharegpt
    format: Mapped[str] = mapped_column(String(16), nullable=False)  # jsonl | json | csv | parquet | txt | mixed
    splits: Mapped[dict] = mapped_column(JSON, nullable=False)
    files: Mapped[list] = mapped_column(JSON, default=list)  # [{split,name,path,size,sha256,rows,format,source}]
    preview: Mapped[dict] = mapped_column(JSON, default=dict)  # {split: [first rows]}
    total_rows: Mapped[int] = mapped_column(Integer, default=0)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    source: Mapped[str] = mapped_column(String(4096), default="")  # where it came from, relative to the owner's root
    description: Mapped[str] = mapped_column(Text, default="")
    path: Mapped[str] = mapped_column(String(4096), default="")  # the version folder (absolute)
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)

    dataset: Mapped[DatasetModel] = relationship(back_populates="versions")

    def split_files(self, split: str) -> list[str]:
        return list((self.splits or {}).get(split, {}).get("files", []))
