"""Jobs (fine-tune, pre-train, custom), their replicas and their metric time series.

A job's state changes only through services/jobs/states.py (replicas: the same module). Replica rows carry what is needed to
find a replica's process again after a server restart (executor, node, pid + its start time)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, IdMixin, TimestampMixin, utcnow

ACTIVE_STATES = ("pending", "queued", "starting", "running")


class JobModel(IdMixin, TimestampMixin, Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_queue", "state", "is_urgent", "priority", "queued_at"),)

    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True, nullable=False)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    description: Mapped[str] = mapped_column(String(1024), default="")
    kind: Mapped[str] = mapped_column(String(16), nullable=False)  # finetune | pretrain | custom
    is_pretrain: Mapped[bool] = mapped_column(Boolean, default=False)
    strategy: Mapped[str | None] = mapped_column(String(16))  # LoRA | FineTune (training jobs)
    origin: Mapped[str] = mapped_column(String(16), default="api")  # api | seed | search
    search_id: Mapped[str | None] = mapped_column(String(32), index=True)  # a hyperparameter search's trial
    state: Mapped[str] = mapped_column(String(16), nullable=False, default="pending", index=True)
    priority: Mapped[int] = mapped_column(Integer, default=0)
    is_urgent: Mapped[bool] = mapped_column(Boolean, default=False)
    # the normalised request: roles, command, env, data, hyperparameters ... (see services/jobs.py)
    spec: Mapped[dict] = mapped_column(JSON, default=dict)
    # spec["roles"] again, small, so a scheduling pass over a long queue reads no large documents
    roles: Mapped[list] = mapped_column(JSON, default=list)
    image_id: Mapped[str | None] = mapped_column(String(32), index=True)
    image_version_id: Mapped[str | None] = mapped_column(String(32), index=True)
    model_version_id: Mapped[str | None] = mapped_column(String(32), index=True)
    dataset_version_id: Mapped[str | None] = mapped_column(String(32), index=True)
    output_model_version_id: Mapped[str | None] = mapped_column(String(32))
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    error: Mapped[str | None] = mapped_column(Text)
    # why a queued job waits (quota / node capacity), refreshed by the scheduler when it changes
    waiting_reason: Mapped[str | None] = mapped_column(String(1024))
    # progress of the newest metrics line ({"step", "epoch", "loss", ...}) and the final metrics
    progress: Mapped[dict] = mapped_column(JSON, default=dict)
    result: Mapped[dict] = mapped_column(JSON, default=dict)
    metrics_offset: Mapped[int] = mapped_column(Integer, default=0)  # bytes of metrics.jsonl ingested
    cancel_requested_at: Mapped[datetime | None] = mapped_column(DateTime)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime)
    started_at: Mapped[datetime | None] = mapped_column(DateTime)  # -> starting (resources taken)
    running_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class JobReplicaModel(IdMixin, Base):
    """One process of a job (role master|worker, index). Rows are reused by a resumed attempt."""

    __tablename__ = "job_replicas"
    __table_args__ = (UniqueConstraint("job_id", "role", "index", name="uq_job_replicas_slot"),)

    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True, nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    index: Mapped[int] = mapped_column(Integer, nullable=False)
    rank: Mapped[int] = mapped_column(Integer, default=0)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    state: Mapped[str] = mapped_column(String(16), default="pending")  # pending|starting|running|succeeded|failed|cancelled
    node_id: Mapped[str | None] = mapped_column(String(32))
    executor: Mapped[str] = mapped_column(String(32), default="local")
    devices: Mapped[list] = mapped_column(JSON, default=list)  # GPU indices on the node
    pid: Mapped[int | None] = mapped_column(Integer)
    pid_start_time: Mapped[float | None] = mapped_column(Float)  # psutil create_time of pid
    external_id: Mapped[str | None] = mapped_column(String(128))  # e.g. a Ray actor id
    exit_code: Mapped[int | None] = mapped_column(Integer)
    message: Mapped[str] = mapped_column(String(1024), default="")
    log_path: Mapped[str | None] = mapped_column(String(1024))
    replica_dir: Mapped[str | None] = mapped_column(String(1024))
    started_at: Mapped[datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"


class JobMetricModel(Base):
    """Time series written by the training runtime (metrics.jsonl), one row per (step, name)."""

    __tablename__ = "job_metrics"
    __table_args__ = (Index("ix_job_metrics_series", "job_id", "name", "step"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, default=1)
    step: Mapped[int] = mapped_column(Integer, nullable=False)
    name: Mapped[str] = mapped_column(String(64), nullable=False)
    value: Mapped[float] = mapped_column(Float, nullable=False)
    ts: Mapped[float] = mapped_column(Float, nullable=False)  # unix seconds
