"""Container images (seed §2): an image is a named repository owned by a user; each imported tag
is an immutable version whose blobs (manifest, config, layers) live content-addressed in
settings.blobs_dir/sha256/<hex>, shared between versions (deduplicated by digest)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Boolean, DateTime, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import Base, IdMixin, TimestampMixin, utcnow


class ImageModel(IdMixin, TimestampMixin, Base):
    """Seed §2.1: imageName / imageIcon / imageOverView / imageLabel / imageDescribe."""

    __tablename__ = "images"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True, nullable=False)
    name: Mapped[str] = mapped_column(String(255), nullable=False, index=True)
    icon: Mapped[str] = mapped_column(String(1024), default="")
    overview: Mapped[str] = mapped_column(Text, default="")
    labels: Mapped[list] = mapped_column(JSON, default=list)
    description: Mapped[str] = mapped_column(Text, default="")
    is_public: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)

    versions: Mapped[list[ImageVersionModel]] = relationship(
        back_populates="image", cascade="all, delete-orphan", order_by="ImageVersionModel.created_at")


class ImageVersionModel(IdMixin, Base):
    """One imported tag of an image. Immutable once written."""

    __tablename__ = "image_versions"
    __table_args__ = (UniqueConstraint("image_id", "tag"),)

    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True, nullable=False)
    tag: Mapped[str] = mapped_column(String(128), nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="done")
    archive_format: Mapped[str] = mapped_column(String(16), nullable=False)  # "docker" | "oci"
    manifest_digest: Mapped[str] = mapped_column(String(80), nullable=False, index=True)
    manifest_media_type: Mapped[str] = mapped_column(String(128), default="")
    config_digest: Mapped[str] = mapped_column(String(80), nullable=False)
    layers: Mapped[list] = mapped_column(JSON, default=list)  # [{digest,size,mediaType,diff_id,uncompressed_size}]
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)  # config + layers as stored
    uncompressed_size_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    os: Mapped[str] = mapped_column(String(32), default="")
    architecture: Mapped[str] = mapped_column(String(32), default="")
    variant: Mapped[str] = mapped_column(String(32), default="")
    env: Mapped[list] = mapped_column(JSON, default=list)
    entrypoint: Mapped[list | None] = mapped_column(JSON)
    cmd: Mapped[list | None] = mapped_column(JSON)
    working_dir: Mapped[str] = mapped_column(String(1024), default="")
    config_user: Mapped[str] = mapped_column(String(256), default="")  # the config's User
    config_labels: Mapped[dict] = mapped_column(JSON, default=dict)
    exposed_ports: Mapped[list] = mapped_column(JSON, default=list)
    image_created: Mapped[str] = mapped_column(String(64), default="")  # the config's "created"
    repo_tags: Mapped[list] = mapped_column(JSON, default=list)  # names found in the archive
    source_path: Mapped[str] = mapped_column(String(4096), default="")  # fileUrl, relative to the owner's root
    created_by: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)

    image: Mapped[ImageModel] = relationship(back_populates="versions")


class ImageBlobModel(Base):
    """A stored blob (settings.blobs_dir/sha256/<hex>); deleted when no version references it."""

    __tablename__ = "image_blobs"

    digest: Mapped[str] = mapped_column(String(80), primary_key=True)  # "sha256:<64 hex>"
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    media_type: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)


class ImageVersionBlobModel(Base):
    """Which blobs a version uses (its manifest, config and layers)."""

    __tablename__ = "image_version_blobs"
    __table_args__ = (Index("ix_image_version_blobs_digest", "digest"),)

    version_id: Mapped[str] = mapped_column(ForeignKey("image_versions.id", ondelete="CASCADE"), primary_key=True)
    digest: Mapped[str] = mapped_column(ForeignKey("image_blobs.digest"), primary_key=True)
    role: Mapped[str] = mapped_column(String(16), default="layer")  # manifest | config | layer
