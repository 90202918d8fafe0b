"""Engine and sessions.

SQLite runs in WAL mode. Writers begin with BEGIN IMMEDIATE so two writers queue on the busy
timeout instead of failing with SQLITE_BUSY when a read lock cannot be upgraded; read-only
sessions (GET requests) begin deferred and never block writers. PostgreSQL uses its normal
READ COMMITTED transactions plus row locks / advisory locks where a decision needs one
(see scheduler/ledger.py).
"""

from __future__ import annotations

import contextlib
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Select, create_engine, event, func, select, text
from sqlalchemy.orm import Session, sessionmaker

_MIGRATIONS = Path(__file__).parent / "migrations"


def _private_sqlite_file(url: str) -> None:
    """Create the SQLite file 0600 before SQLite does (it would follow the umask)."""
    path = (url.split("///", 1)[1] if "///" in url else "").split("?", 1)[0]
    if path and path != ":memory:" and not path.startswith("file:") and os.path.isdir(os.path.dirname(path) or "."):
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        _private_sqlite_file(url)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 60})

        @event.listens_for(engine, "connect")
        def _sqlite_connect(dbapi_conn, _record):  # pragma: no cover - trivial
            dbapi_conn.isolation_level = None  # we emit BEGIN ourselves (see _sqlite_begin)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            mode = conn.get_execution_options().get("sqlite_begin", "IMMEDIATE")
            conn.exec_driver_sql(f"BEGIN {mode}")

        return engine
    return create_engine(url, pool_size=10, max_overflow=40, pool_pre_ping=True)


def is_sqlite(session_or_engine: Session | Engine) -> bool:
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "sqlite"


def make_sessionmaker(engine: Engine, *, settings: Any = None) -> sessionmaker[Session]:
    """Sessions carry the settings in session.info["settings"], so a service deep in a call
    (a quota row created on first use) reads the configured defaults without a module global."""
    return sessionmaker(engine, expire_on_commit=False, info={"settings": settings} if settings is not None else {})


@contextlib.contextmanager
def session_scope(factory: sessionmaker[Session], *, readonly: bool = False) -> Iterator[Session]:
    """A unit of work: commit on success, roll back on error."""
    session = factory()
    if readonly:
        session.connection(execution_options={"sqlite_begin": "DEFERRED"})
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def paginate(session: Session, stmt: Select, *, page: int = 1, page_size: int = 20) -> tuple[list, int]:
    """(items, total) for a 1-based page. page_size is capped at 1000, page at 10**6 (the routes
    refuse or clamp beyond that first; this keeps the OFFSET inside a database integer)."""
    page = min(max(page, 1), 10**6)
    page_size = min(max(page_size, 1), 1000)
    total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    items = list(session.scalars(stmt.limit(page_size).offset((page - 1) * page_size)))
    return items, int(total)


def advisory_lock(session: Session, name: str) -> None:
    """Serialise a decision across processes for the rest of this transaction.

    SQLite sessions already hold the database write lock (BEGIN IMMEDIATE), which is stronger;
    PostgreSQL takes a transaction-scoped advisory lock keyed by the name."""
    if not is_sqlite(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": zlib.crc32(name.encode())})


def alembic_config(url: str):
    from alembic.config import Config  # lazy: only schema upgrades need alembic

    cfg = Config(str(_MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade_schema(url: str) -> None:
    """Bring the database to the newest migration (run on every server start; idempotent)."""
    from alembic import command  # lazy: only schema upgrades need alembic

    command.upgrade(alembic_config(url), "head")
