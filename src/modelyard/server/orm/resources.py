"""Nodes, resource groups, flavors, quotas and the allocation ledger."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, IdMixin, TimestampMixin, utcnow


class ResourceGroupModel(IdMixin, TimestampMixin, Base):
    """Seed resourceGroupId / resourceGroupName / resourceGroupKey."""

    __tablename__ = "resource_groups"

    name: Mapped[str] = mapped_column(String(128), nullable=False)
    key: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    description: Mapped[str] = mapped_column(String(512), default="")


class NodeModel(IdMixin, TimestampMixin, Base):
    __tablename__ = "nodes"

    name: Mapped[str] = mapped_column(String(128), unique=True, nullable=False)
    address: Mapped[str] = mapped_column(String(256), default="127.0.0.1")
    group_id: Mapped[str | None] = mapped_column(ForeignKey("resource_groups.id"), index=True)
    executor: Mapped[str] = mapped_column(String(32), default="local")
    cpu: Mapped[float] = mapped_column(Float, nullable=False)
    memory_mib: Mapped[int] = mapped_column(Integer, nullable=False)
    gpu: Mapped[int] = mapped_column(Integer, default=0)
    vgpu: Mapped[int] = mapped_column(Integer, default=0)
    mig: Mapped[int] = mapped_column(Integer, default=0)
    gpu_info: Mapped[list] = mapped_column(JSON, default=list)  # [{"name","memory_mib","compute_capability"}]
    arch: Mapped[str] = mapped_column(String(32), default="")
    status: Mapped[str] = mapped_column(String(16), default="ready")  # ready | cordoned | offline
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class FlavorModel(IdMixin, TimestampMixin, Base):
    """A named resource bundle ("specification" in ModelArts)."""

    __tablename__ = "flavors"

    name: Mapped[str] = mapped_column(String(64), unique=True, nullable=False)
    cpu: Mapped[float] = mapped_column(Float, nullable=False)
    memory_mib: Mapped[int] = mapped_column(Integer, nullable=False)
    gpu: Mapped[int] = mapped_column(Integer, default=0)
    gpu_memory_mib: Mapped[int] = mapped_column(Integer, default=0)
    vgpu: Mapped[int] = mapped_column(Integer, default=0)
    mig: Mapped[int] = mapped_column(Integer, default=0)
    description: Mapped[str] = mapped_column(String(512), default="")


class QuotaModel(TimestampMixin, Base):
    """Per-user limits. storage_* None = not enabled (seed: 存储配额未开启-无限制)."""

    __tablename__ = "quotas"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    cpu: Mapped[float] = mapped_column(Float, nullable=False)
    memory_mib: Mapped[int] = mapped_column(Integer, nullable=False)
    gpu: Mapped[int] = mapped_column(Integer, default=0)
    vgpu: Mapped[int] = mapped_column(Integer, default=0)
    mig: Mapped[int] = mapped_column(Integer, default=0)
    jobs: Mapped[int] = mapped_column(Integer, default=4)
    start_at: Mapped[datetime | None] = mapped_column(DateTime)
    end_at: Mapped[datetime | None] = mapped_column(DateTime)
    storage_bytes: Mapped[int | None] = mapped_column(BigInteger)
    storage_files: Mapped[int | None] = mapped_column(BigInteger)
    # seed isInitConfig: True once an admin configured this quota explicitly
    is_init_config: Mapped[bool] = mapped_column(Boolean, default=False)
    # queue allowances: None = the server's scheduler.priority_ceiling; urgent tasks jump the queue
    max_priority: Mapped[int | None] = mapped_column(Integer)
    can_urgent: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class AllocationModel(IdMixin, Base):
    """One row per placed piece of a consumer (a job replica, a service replica).

    Live rows (released_at IS NULL) are the ledger: a user's usage and a node's usage are sums
    over them. Rows are never deleted, so history stays auditable."""

    __tablename__ = "allocations"

    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    node_id: Mapped[str] = mapped_column(ForeignKey("nodes.id"), index=True)
    consumer_type: Mapped[str] = mapped_column(String(32), nullable=False)  # job | service
    consumer_id: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    part: Mapped[str] = mapped_column(String(64), default="")  # e.g. "master-0"
    counts_as_job: Mapped[bool] = mapped_column(Boolean, default=False)
    cpu: Mapped[float] = mapped_column(Float, default=0)
    memory_mib: Mapped[int] = mapped_column(Integer, default=0)
    gpu: Mapped[int] = mapped_column(Integer, default=0)
    vgpu: Mapped[int] = mapped_column(Integer, default=0)
    mig: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(DateTime, index=True)


class TagModel(IdMixin, Base):
    __tablename__ = "tags"
    __table_args__ = (UniqueConstraint("resource_type", "resource_id", "key"),)

    resource_type: Mapped[str] = mapped_column(String(32), nullable=False)
    resource_id: Mapped[str] = mapped_column(String(32), nullable=False, index=True)
    key: Mapped[str] = mapped_column(String(128), nullable=False)
    value: Mapped[str] = mapped_column(String(256), default="")
