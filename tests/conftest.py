"""Fixtures: a fresh app + temp MODELYARD_HOME per test.

`app`/`client` run on SQLite. `db_url` is parametrized over SQLite and PostgreSQL (a fresh
database per test on the cluster named by MODELYARD_TEST_POSTGRES_URL, which `make test` starts);
use the `any_db_*` fixtures for database-facing tests.

Mark a module or test `@pytest.mark.background` (module: `pytestmark = pytest.mark.background`)
to run the app's background loops (scheduler, reconcilers) with a short poll interval and a 1 s
cancel grace; job processes left behind by such a test are killed after it. Shared helpers are
fixtures here: `wait_for`, `ctx_of`, `set_quota`, `submit_custom`, `wait_state`, `server_process`
(implementations in tests/harness.py)."""

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
from tests import harness
from tests.harness import ADMIN_TOKEN

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


def _background(request) -> dict:
    """Overrides for tests marked `background`: loops on, short poll and grace."""
    marker = request.node.get_closest_marker("background")
    if marker is None:
        return {}
    return dict(background=True, scheduler={"poll_interval_s": 0.5,
                                            "cancel_grace_s": marker.kwargs.get("cancel_grace_s", 1.0)})


@pytest.fixture
def settings(request, tmp_path) -> Settings:
    return make_settings(tmp_path / "home", **_background(request))


@pytest.fixture(autouse=True)
def _kill_job_leftovers(request, tmp_path):
    """Replica processes a background test left running (a failed assertion mid-job) are killed."""
    yield
    if request.node.get_closest_marker("background") or "server_process" in request.fixturenames:
        for p in harness.job_processes(tmp_path):
            harness.kill_tree(p.pid)


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
def any_db_settings(request, tmp_path, db_url) -> Settings:
    return make_settings(tmp_path / "home", db_url, **_background(request))


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


# --- shared helpers as fixtures ------------------------------------------------------------

@pytest.fixture
def wait_for():
    """wait_for(fn, timeout=20, interval=0.05, what=...) -> fn's first truthy value."""
    return harness.wait_for


@pytest.fixture
def ctx_of():
    """ctx_of(client_or_user) -> the test app's AppContext."""
    return harness.ctx_of


@pytest.fixture
def set_quota():
    """set_quota(client, user_id, cpu=..., jobs=..., ...) writes the user's quota row."""
    return harness.set_quota


@pytest.fixture
def submit_custom():
    """submit_custom(user, command, cpu=0.1, memory_mib=64, expect=201, **body) -> the job."""
    return harness.submit_custom


@pytest.fixture
def wait_state():
    """wait_state(user, job_id, state(s), timeout=30) -> the job once it is in one of the states."""
    return harness.wait_state


@pytest.fixture
def server_process(tmp_path):
    """server_process(background=False, extra_env=None, home=None) -> a started
    harness.ServerProcess (a real `modelyard server`); all are stopped after the test."""
    started: list[harness.ServerProcess] = []

    def make(*, background: bool = False, extra_env: dict | None = None, home=None) -> harness.ServerProcess:
        srv = harness.ServerProcess(home or tmp_path / "home", background=background, extra_env=extra_env)
        started.append(srv)
        return srv.start()

    yield make
    for srv in started:
        srv.stop()
