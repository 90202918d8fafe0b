"""Model registry: models (the seed's "aiApplication"), their immutable versions, movable aliases
and a per-version metrics table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
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


class ModelModel(IdMixin, TimestampMixin, Base):
    """A named model (seed `application`): the versions below hold the files."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("owner_id", "name"), Index("ix_models_created_at", "created_at"))

    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True, nullable=False)
    name: Mapped[str] = mapped_column(String(128), nullable=False, index=True)
    description: Mapped[str] = mapped_column(Text, default="", nullable=False)
    type: Mapped[str] = mapped_column(String(32), default="LLM", nullable=False)  # seed `type`
    developer: Mapped[str] = mapped_column(String(128), default="", nullable=False)  # seed `developer`
    # no index: with one, SQLite answers "owner OR public" by merging two indexes and sorting every match;
    # without, it walks ix_models_created_at newest first and stops after the page
    is_public: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)


class ModelVersionModel(IdMixin, TimestampMixin, Base):
    """One immutable set of files (seed `aiApplicationVersion`) plus what inspection found in them.

    `path` is the registry directory holding the files (for gguf: the directory holding the .gguf).
    Files never change once the version is `done`; only metrics are appended."""

    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "version"),)

    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True, nullable=False)
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True, nullable=False)
    version: Mapped[str] = mapped_column(String(64), nullable=False)
    description: Mapped[str] = mapped_column(Text, default="", nullable=False)
    status: Mapped[str] = mapped_column(String(16), default="importing", nullable=False, index=True)
    status_reason: Mapped[str] = mapped_column(Text, default="", nullable=False)
    # where it came from (seed): source 1 training / 2 custom image / 3 local files;
    # save_type 1 object storage / 2 local; save_path as the user gave it
    source: Mapped[int] = mapped_column(Integer, default=3, nullable=False)
    save_type: Mapped[int] = mapped_column(Integer, default=2, nullable=False)
    save_path: Mapped[str] = mapped_column(String(1024), default="", nullable=False)
    config_save_type: Mapped[int | None] = mapped_column(Integer)
    config_path: Mapped[str | None] = mapped_column(String(1024))
    path: Mapped[str] = mapped_column(String(1024), default="", nullable=False)  # absolute registry dir
    # what is really there
    format: Mapped[str] = mapped_column(String(16), default="", nullable=False)  # hf | gguf | peft | image
    architecture: Mapped[str] = mapped_column(String(128), default="", nullable=False)
    model_type: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    parameters: Mapped[int | None] = mapped_column(BigInteger)
    dtype: Mapped[str] = mapped_column(String(32), default="", nullable=False)
    quantization: Mapped[str] = mapped_column(String(32), default="", nullable=False)
    context_length: Mapped[int | None] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger, default=0, nullable=False)
    files: Mapped[list] = mapped_column(JSON, default=list, nullable=False)  # [{path, size, sha256}]
    details: Mapped[dict] = mapped_column(JSON, default=dict, nullable=False)  # layers, hidden, peft/gguf facts
    scale: Mapped[str] = mapped_column(String(32), default="", nullable=False)  # seed `scale`, e.g. "135M"
    model_structure: Mapped[str] = mapped_column(String(512), default="", nullable=False)  # seed `modelStructure`
    hyper_parameter_list: Mapped[list] = mapped_column(JSON, default=list, nullable=False)  # seed hyperParameterList
    # seed image / framework / misc fields, kept as given
    image: Mapped[str] = mapped_column(String(512), default="", nullable=False)
    image_type: Mapped[int | None] = mapped_column(Integer)
    framework: Mapped[int | None] = mapped_column(Integer)
    framework_style: Mapped[int | None] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(String(256), default="", nullable=False)
    train_task_version_id: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    llm_fine_tune_task_id: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    pre_deploy_label: Mapped[str] = mapped_column(String(64), default="", nullable=False)
    # latest value per metric name (the full series is in model_version_metrics)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict, nullable=False)
    # lineage (filled by the jobs domain through register_version)
    job_id: Mapped[str | None] = mapped_column(String(32), index=True)
    base_version_id: Mapped[str | None] = mapped_column(String(32), index=True)
    dataset_version_id: Mapped[str | None] = mapped_column(String(32), index=True)
    hyperparameters: Mapped[dict | None] = mapped_column(JSON)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)


class ModelAliasModel(IdMixin, TimestampMixin, Base):
    """A movable name for one version of a model, e.g. `production`."""

    __tablename__ = "model_aliases"
    __table_args__ = (UniqueConstraint("model_id", "alias"),)

    model_id: Mapped[str] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"), index=True, nullable=False)
    alias: Mapped[str] = mapped_column(String(64), nullable=False)
    version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id"), index=True, nullable=False)


class ModelVersionMetricModel(Base):
    """Per-version metrics, appended (evaluation scores, training summaries)."""

    __tablename__ = "model_version_metrics"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"), index=True,
                                            nullable=False)
    name: Mapped[str] = mapped_column(String(128), nullable=False)
    value: Mapped[float] = mapped_column(Float, nullable=False)
    step: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, nullable=False)
