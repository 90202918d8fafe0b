"""(owned by the files domain)"""
from __future__ import annotations

from .base import Base, IdMixin, TimestampMixin, utcnow  # noqa: F401
