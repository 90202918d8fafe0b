from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, DateTime, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, utcnow


class EventModel(Base):
    """Every state change: who did what to which object, when."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_object", "object_type", "object_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor_id: Mapped[str | None] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(64), nullable=False)  # e.g. "job.state_changed"
    object_type: Mapped[str] = mapped_column(String(32), nullable=False)
    object_id: Mapped[str] = mapped_column(String(32), nullable=False)
    message: Mapped[str] = mapped_column(String(1024), default="")
    data: Mapped[dict] = mapped_column(JSON, default=dict)
