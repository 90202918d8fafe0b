"""Inference services (seed 000 §7): a service, its versions (what runs and how many), its replicas.

A service's and a replica's state change only through services/serving/states.py. A replica row is
never reused: a replacement is a new row (`replaces_id` names the one it replaces). Each replica is
backed by a job of kind `serve` (`job_id`): placement, quota, sandbox and recovery are the jobs'."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, IdMixin, TimestampMixin, utcnow


class ServiceModel(IdMixin, TimestampMixin, Base):
    __tablename__ = "services"
    __table_args__ = (UniqueConstraint("owner_id", "name", name="uq_services_owner_name"),)

    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True, nullable=False)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    description: Mapped[str] = mapped_column(String(1024), default="")
    # saved | deploying | running | degraded | stopping | stopped | failed (core/states.SERVICE)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="saved", index=True)
    path: Mapped[str] = mapped_column(String(1024), default="")  # the seed's modelServer.path (kept, shown)
    origin: Mapped[str] = mapped_column(String(16), default="api")  # api | seed
    invocations: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)


class ServiceVersionModel(IdMixin, TimestampMixin, Base):
    __tablename__ = "service_versions"
    __table_args__ = (UniqueConstraint("service_id", "number", name="uq_service_versions_number"),)

    service_id: Mapped[str] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"), index=True,
                                            nullable=False)
    number: Mapped[int] = mapped_column(Integer, nullable=False)  # 1..n within the service
    runtime: Mapped[str] = mapped_column(String(16), default="auto")  # auto | transformers | vllm | template | image
    model_version_id: Mapped[str | None] = mapped_column(String(32), index=True)
    adapters: Mapped[dict] = mapped_column(JSON, default=dict)  # served name -> model version id
    template_id: Mapped[str | None] = mapped_column(String(64))
    image_version_id: Mapped[str | None] = mapped_column(String(32), index=True)
    command: Mapped[str] = mapped_column(Text, default="")
    image_ports: Mapped[str] = mapped_column(String(256), default="")
    envs: Mapped[dict] = mapped_column(JSON, default=dict)
    volumes: Mapped[list] = mapped_column(JSON, default=list)  # [{"src": user path, "dst": inside}]
    cpu: Mapped[float] = mapped_column(Float, default=1.0)
    memory_mib: Mapped[int] = mapped_column(Integer, default=2048)
    gpu: Mapped[int] = mapped_column(Integer, default=0)
    gpu_share: Mapped[str] = mapped_column(String(32), default="none")
    gpu_mem: Mapped[int | None] = mapped_column(Integer)  # GiB per GPU (seed gpuMem)
    gpu_cores: Mapped[int | None] = mapped_column(Integer)
    mig_res: Mapped[str] = mapped_column(String(64), default="")
    resource_group_id: Mapped[str | None] = mapped_column(String(64))
    resource_group_name: Mapped[str | None] = mapped_column(String(128))
    replicas: Mapped[int] = mapped_column(Integer, default=1)  # desired
    min_replicas: Mapped[int] = mapped_column(Integer, default=1)
    max_replicas: Mapped[int] = mapped_column(Integer, default=1)
    metric: Mapped[int] = mapped_column(Integer, default=1)  # 1 rps, 2 concurrency, 3 gpu use
    monitor_threshold: Mapped[float] = mapped_column(Float, default=100.0)
    rate: Mapped[int] = mapped_column(Integer, default=100)  # traffic share in percent
    req_method: Mapped[str] = mapped_column(String(16), default="rest")
    state: Mapped[str] = mapped_column(String(16), default="active")  # active | failed (core/states.SERVICE_VERSION)
    error: Mapped[str | None] = mapped_column(Text)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)  # replicas failed before ready, in a row
    seed_fields: Mapped[dict] = mapped_column(JSON, default=dict)  # the seed body's raw version, for display


class ServiceReplicaModel(IdMixin, Base):
    __tablename__ = "service_replicas"

    service_id: Mapped[str] = mapped_column(ForeignKey("services.id", ondelete="CASCADE"), index=True,
                                            nullable=False)
    version_id: Mapped[str] = mapped_column(ForeignKey("service_versions.id", ondelete="CASCADE"), index=True,
                                            nullable=False)
    index: Mapped[int] = mapped_column(Integer, nullable=False)  # 0.. within its version, never reused
    # pending | starting | ready | draining | exited | failed (core/states.SERVICE_REPLICA)
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="pending", index=True)
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    socket_path: Mapped[str] = mapped_column(String(256), default="")
    plan: Mapped[dict] = mapped_column(JSON, default=dict)  # ready/live paths, boot timeout, served names, kind
    replaces_id: Mapped[str | None] = mapped_column(String(32))
    restarts: Mapped[int] = mapped_column(Integer, default=0)  # replicas of this slot that ended before it
    live_failures: Mapped[int] = mapped_column(Integer, default=0)  # liveness probes failed in a row
    exit_code: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(String(4000), default="")
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    ready_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
