"""Service templates (seed 003 ZStack "add a model service"): a user's own HTTP service described
by a YAML (ports, probes, boot time, env, distro packages, Python requirements) plus a start
command; deployed by the serving service through templates.plan_template."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, IdMixin, TimestampMixin


class ServiceTemplateModel(IdMixin, TimestampMixin, Base):
    __tablename__ = "service_templates"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)

    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True, nullable=False)
    name: Mapped[str] = mapped_column(String(255), nullable=False)
    description: Mapped[str] = mapped_column(Text, default="")
    yaml: Mapped[str] = mapped_column(Text, nullable=False)  # as sent
    # the YAML parsed and validated: {"services": [...], "env": {...}, "distro": [...], "python": {...}}
    spec: Mapped[dict] = mapped_column(JSON, default=dict)
    request_cpu: Mapped[float] = mapped_column(Float, nullable=False)
    request_memory_mib: Mapped[int] = mapped_column(BigInteger, nullable=False)
    install_path: Mapped[str] = mapped_column(String(1024), default="")  # in the owner's files
    start_command: Mapped[str] = mapped_column(Text, nullable=False)
    gpu_compute_capability: Mapped[str] = mapped_column(String(16), default="")
    python_version: Mapped[str] = mapped_column(String(32), default="")
    type: Mapped[str] = mapped_column(String(32), default="Endpoint")
    framework: Mapped[str] = mapped_column(String(64), default="")
    source: Mapped[str] = mapped_column(String(64), default="")
    model_center_uuid: Mapped[str] = mapped_column(String(64), default="")
    support_distributed: Mapped[bool] = mapped_column(Boolean, default=False)
    # seed `system`: a platform template every user sees (admins only)
    is_public: Mapped[bool] = mapped_column(Boolean, default=False, nullable=False)
    # [{"arch": "x86_64", "field": "dockerImage", "ref": as sent, "image_version_id": ...}]
    images: Mapped[list] = mapped_column(JSON, default=list)
    model_ids: Mapped[list] = mapped_column(JSON, default=list)  # seed modelUuids (modelServiceRefs)
    env_key: Mapped[str] = mapped_column(String(32), default="")  # its prepared environment ("" = none)
