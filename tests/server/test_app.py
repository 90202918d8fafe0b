"""App start-up, auth and users, on SQLite and PostgreSQL."""

from __future__ import annotations

from tests.conftest import ADMIN_TOKEN


def test_healthz_is_open_everything_else_needs_a_token(app_client):
    assert app_client.get("/healthz").json()["status"] == "ok"
    r = app_client.get("/api/v1/users/me")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    r = app_client.get("/api/v1/users/me", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401


def test_docs_and_metrics(admin, settings):
    from modelyard.server.db import session_scope
    from modelyard.server.services.quota import ledger

    tc = admin.tc
    assert tc.get("/docs").status_code == 200
    assert "/api/v1/users" in tc.get("/openapi.json").json()["paths"]
    admin.get("/api/v1/users/me")
    assert tc.get("/api/v1/users/me").status_code == 401
    assert admin.get("/api/v1/jobs/" + "f" * 32).status_code == 404
    # a live allocation in the ledger shows up in the scrape
    with session_scope(tc.app.state.ctx.sessions) as s:
        ledger.allocate(s, user_id=admin.id, consumer_type="job", consumer_id="m" * 32,
                        parts=[ledger.Part("master-0", ledger.Resources(cpu=1.5, memory_mib=256))])
    assert tc.get("/metrics/").status_code == 401  # a scrape needs an admin (or the metrics) token
    text = admin.get("/metrics/").text
    assert "python_info" in text and "process_resident_memory_bytes" in text
    assert 'modelyard_http_request_duration_seconds_count{method="GET",route="/api/v1/users/me",status="200"}' \
        in text
    assert 'route="/api/v1/users/me",status="401"' in text
    assert 'route="/api/v1/jobs/{job_id}",status="404"' in text and "f" * 32 not in text  # ids never become labels
    assert 'modelyard_allocated{resource="cpu"} 1.5' in text
    assert 'modelyard_allocated{resource="memory_mib"} 256.0' in text
    assert "modelyard_users 1.0" in text


def test_admin_creates_user_and_user_cannot(any_db_admin, any_db_make_user):
    me = any_db_admin.get("/api/v1/users/me").json()
    assert me["name"] == "admin" and me["role"] == "admin"
    alice = any_db_make_user("alice")
    assert alice.get("/api/v1/users/me").json()["name"] == "alice"
    r = alice.post("/api/v1/users", json={"name": "mallory"})
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = any_db_admin.post("/api/v1/users", json={"name": "alice"})
    assert r.status_code == 409
    r = any_db_admin.post("/api/v1/users", json={"name": "../x"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_name"


def test_tokens_are_hashed_several_and_revocable(any_db_make_user, any_db_settings):
    alice = any_db_make_user("alice")
    second = alice.post("/api/v1/tokens", json={"name": "ci"}).json()
    assert second["token"].startswith("my_")
    toks = alice.get("/api/v1/tokens").json()
    assert len(toks) == 2 and all("token" not in t for t in toks)
    # the plaintext is nowhere in the database
    from sqlalchemy import create_engine, text

    eng = create_engine(any_db_settings.db_url)
    with eng.connect() as c:
        hashes = [r[0] for r in c.execute(text("select token_hash from api_tokens"))]
    eng.dispose()
    assert alice.token not in hashes and second["token"] not in hashes
    assert alice.delete(f"/api/v1/tokens/{second['id']}").status_code == 204
    r = alice.tc.get("/api/v1/users/me", headers={"Authorization": f"Bearer {second['token']}"})
    assert r.status_code == 401
    assert alice.get("/api/v1/users/me").status_code == 200


def test_generated_admin_token_printed_once(tmp_path, capsys):
    from fastapi.testclient import TestClient

    from modelyard.server.app import create_app
    from tests.conftest import make_settings

    s = make_settings(tmp_path / "h", admin_token=None)
    with TestClient(create_app(s)) as tc:
        out = capsys.readouterr().out
        token = out.split("(shown once): ")[1].split()[0]
        assert tc.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}).json()["role"] == "admin"
    with TestClient(create_app(s)):
        assert "shown once" not in capsys.readouterr().out
    assert ADMIN_TOKEN not in token
