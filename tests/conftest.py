"""Fixtures: a fresh app + temp MODELYARD_HOME per test.

`app`/`client` run on SQLite. `db_url` is parametrized over SQLite and PostgreSQL (a fresh
database per test on the cluster named by MODELYARD_TEST_POSTGRES_URL, which `make test` starts);
use the `any_db_*` fixtures for database-facing tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from modelyard.server.app import create_app
from modelyard.server.settings import Settings

ADMIN_TOKEN = "my_test_admin_token"
PG_URL = os.environ.get("MODELYARD_TEST_POSTGRES_URL")


def _pg_database() -> Iterator[str]:
    if not PG_URL:
        if os.environ.get("MODELYARD_REQUIRE_POSTGRES") == "1":
            pytest.fail("MODELYARD_REQUIRE_POSTGRES=1 but MODELYARD_TEST_POSTGRES_URL is not set")
        pytest.skip("PostgreSQL not available (set MODELYARD_TEST_POSTGRES_URL or install postgresql)")
    from sqlalchemy import create_engine, text

    name = "t_" + uuid.uuid4().hex[:12]
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'modelyard.db'}"
    else:
        yield from _pg_database()


def make_settings(home: Path, db: str | None = None, **overrides) -> Settings:
    kw = dict(home=home, database_url=db, admin_token=ADMIN_TOKEN, background=False, schema_mode="create_all")
    kw.update(overrides)
    return Settings(**kw)


@pytest.fixture
def settings(tmp_path) -> Settings:
    return make_settings(tmp_path / "home")


class UserClient:
    """A TestClient bound to one user's token."""

    def __init__(self, tc: TestClient, token: str, user: dict):
        self.tc, self.token, self.user = tc, token, user
        self.id, self.name = user["id"], user["name"]
        self.headers = {"Authorization": f"Bearer {token}"}

    def __getattr__(self, method):  # get/post/put/patch/delete/request with auth
        fn = getattr(self.tc, method)

        def call(*args, **kwargs):
            kwargs["headers"] = {**self.headers, **(kwargs.get("headers") or {})}
            return fn(*args, **kwargs)

        return call


def _started(settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings)
    with TestClient(app) as tc:
        yield tc


@pytest.fixture
def app_client(settings) -> Iterator[TestClient]:
    """Unauthenticated TestClient over a fresh app on SQLite."""
    yield from _started(settings)


def _admin_of(tc: TestClient) -> UserClient:
    me = tc.get("/api/v1/users/me", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
    return UserClient(tc, ADMIN_TOKEN, me)


def _user_factory(admin: UserClient):
    def make(name: str | None = None, role: str = "user") -> UserClient:
        resp = admin.post("/api/v1/users", json={"name": name or "u" + uuid.uuid4().hex[:8], "role": role})
        assert resp.status_code == 201, resp.text
        body = resp.json()
        return UserClient(admin.tc, body["token"], body)

    return make


@pytest.fixture
def admin(app_client) -> UserClient:
    return _admin_of(app_client)


@pytest.fixture
def make_user(admin):
    return _user_factory(admin)


@pytest.fixture
def alice(make_user) -> UserClient:
    return make_user("alice")


@pytest.fixture
def bob(make_user) -> UserClient:
    return make_user("bob")


# --- the same, over both databases ---------------------------------------------------------

@pytest.fixture
def any_db_settings(tmp_path, db_url) -> Settings:
    return make_settings(tmp_path / "home", db_url)


@pytest.fixture
def any_db_client(any_db_settings) -> Iterator[TestClient]:
    yield from _started(any_db_settings)


@pytest.fixture
def any_db_admin(any_db_client) -> UserClient:
    return _admin_of(any_db_client)


@pytest.fixture
def any_db_make_user(any_db_admin):
    return _user_factory(any_db_admin)


# --- the SDK against the in-process app ---------------------------------------------------

class InProcessTransport(httpx.BaseTransport):
    """Hands an SDK's requests to an in-process TestClient, so SDK and CLI tests need no socket."""

    def __init__(self, tc: TestClient):
        self.tc = tc

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        r = self.tc.request(request.method, request.url.raw_path.decode(), headers=dict(request.headers),
                            content=request.read())
        return httpx.Response(r.status_code, headers=r.headers, content=r.content)


def sdk_for(user: UserClient):
    """A modelyard.sdk.Client acting as `user` against the test app."""
    from modelyard.sdk import Client

    return Client("http://testserver", user.token, transport=InProcessTransport(user.tc))
