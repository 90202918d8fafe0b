"""Alembic migrations from an empty database on SQLite and PostgreSQL match the ORM exactly."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from modelyard.server.db import alembic_config, upgrade_schema
from modelyard.server.orm import Base


def test_upgrade_from_empty_matches_models_and_downgrades(db_url):
    upgrade_schema(db_url)
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
            assert diff == [], f"models and migrations differ: {diff}"
            tables = set(inspect(conn).get_table_names())
        assert set(Base.metadata.tables) <= tables
        upgrade_schema(db_url)  # idempotent on a second start
        command.downgrade(alembic_config(db_url), "base")
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()


def test_server_start_migrates(tmp_path):
    from fastapi.testclient import TestClient

    from modelyard.server.app import create_app
    from tests.conftest import ADMIN_TOKEN, make_settings

    s = make_settings(tmp_path / "h", schema_mode="migrate")
    with TestClient(create_app(s)) as tc:
        assert tc.get("/api/v1/users/me", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
