"""What a running server holds: settings, the database, the executor and background loops."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from modelyard.server.settings import Settings


@dataclass
class AppContext:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    # filled by later subsystems (executor, scheduler, gateway); keyed by name
    components: dict[str, Any] = field(default_factory=dict)
