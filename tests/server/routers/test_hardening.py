"""Issue 8, hardening: input that used to answer 500 (or be accepted and never work) gets a 4xx
JSON error with a code — on native routes {"error": {"code", "message"}}, on seed routes the seed's
envelope with `reason` = the code."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import datetime

import pytest
from fastapi.testclient import TestClient

from modelyard.server.app import create_app
from tests.conftest import ADMIN_TOKEN, UserClient, make_settings

HUGE = 9223372036854775807  # 2**63 - 1: SQLite's largest integer; the offset it implies is larger
GIB = 1024**3


def code(r) -> str:
    body = r.json()
    return body["error"]["code"] if "error" in body else body["reason"]


def set_setting(settings, name: str, value) -> None:
    """Set a setting whether or not settings.py declares it yet (the services read it with getattr)."""
    object.__setattr__(settings, name, value)


def raw_json(user, method: str, url: str, text: str | bytes, content_type: str = "application/json"):
    data = text.encode() if isinstance(text, str) else text
    return user.request(method, url, content=data, headers={"content-type": content_type})


def submit(user, **extra):
    body = {"kind": "custom", "command": "true",
            "roles": [{"role": "master", "replicas": 1, "cpu": 0.1, "memory_mib": 64}], **extra}
    return user.post("/api/v1/jobs", json=body)


# --- 1. integers a database cannot hold --------------------------------------------------------

@pytest.mark.parametrize("url", ["/api/v1/jobs", "/api/v1/models", "/api/v1/datasets", "/api/v1/images",
                                 "/api/v1/searches", "/api/v1/events", "/api/v1/files"])
def test_native_pagination_is_bounded(admin, url):
    for params in ({"page": HUGE}, {"page": 10**6 + 1}, {"page_size": 10**12}, {"page": 0}):
        r = admin.get(url, params=params)
        assert r.status_code == 422, (url, params, r.text)
        assert code(r) == "validation_error"
    assert admin.get(url, params={"page": 10**6, "page_size": 1000}).status_code == 200


def test_seed_pagination_is_clamped(admin):
    r = admin.post("/kernel/fineTune/listLlmFineTuneTask", json={"pageNum": 10**18, "pageSize": 10**18})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True and body["returnCode"] == 0
    assert (body["data"]["pageNum"], body["data"]["pageSize"], body["data"]["list"]) == (10**6, 1000, [])
    r = admin.post("/kernel/fineTuneManage/listFineTuneTaskManage", json={"pageNum": 10**18, "pageSize": -5})
    assert r.status_code == 200 and r.json()["data"]["pageNum"] == 10**6 and r.json()["data"]["pageSize"] == 1
    r = admin.post("/model/aiApplication/getAiApplicationList", json={"pageNum": 10**18, "pageSize": 10**18})
    assert r.status_code == 200, r.text
    assert r.json()["code"] == 200 and r.json()["data"]["pageNum"] == 10**6 and r.json()["data"]["pageSize"] == 1000


def test_job_log_and_metric_offsets_are_bounded(admin):
    job = submit(admin)
    assert job.status_code == 201, job.text
    jid = job.json()["id"]
    for params in ({"since_step": 10**19}, {"since_step": -1}, {"attempt": 10**19}):
        r = admin.get(f"/api/v1/jobs/{jid}/metrics", params=params)
        assert r.status_code == 422 and code(r) == "validation_error", (params, r.text)
    assert admin.get(f"/api/v1/jobs/{jid}/metrics", params={"since_step": 2**53}).status_code == 200
    r = admin.get(f"/api/v1/jobs/{jid}/logs", params={"offset": 10**19})
    assert r.status_code == 422 and code(r) == "validation_error"
    r = admin.get("/api/v1/datasets/x/versions/1/rows", params={"offset": 10**19})
    assert r.status_code == 422 and code(r) == "validation_error"


def test_upload_declared_size_is_bounded(alice):
    for size in (2**63, 10**30, 2**53 + 1):
        r = alice.post("/api/v1/uploads", json={"path": "Data/big.bin", "size": size, "sha256": "0" * 64})
        assert r.status_code == 422 and code(r) == "validation_error", r.text
    r = alice.post("/api/v1/uploads", json={"path": "Data/big.bin", "size": 1, "sha256": "0" * 64,
                                            "chunk_size": 2**64})
    assert r.status_code == 422 and code(r) == "validation_error"


def test_version_numbers_too_large_are_not_found(alice):
    r = alice.post("/api/v1/images", json={"name": "img"})
    assert r.status_code == 201
    for ref in ("99999999999999999999999", "²"):
        r = alice.get(f"/api/v1/datasets/nope/versions/{ref}")
        assert r.status_code == 404 and code(r) == "not_found"


def test_out_of_range_backstop_answers_422_in_both_shapes(admin):
    """Whatever still reaches the database with a number it cannot hold is a 422, not a 500."""
    from modelyard.server.routers.compat.envelope import RESULT, compat_router

    app = admin.tc.app

    def overflow():
        raise OverflowError("Python int too large to convert to SQLite INTEGER")

    app.add_api_route("/api/v1/_test_overflow", overflow)
    seed = compat_router(RESULT)
    seed.add_api_route("/_test_seed_overflow", overflow, methods=["POST"])
    app.include_router(seed)
    r = admin.get("/api/v1/_test_overflow")
    assert r.status_code == 422 and code(r) == "value_out_of_range"
    r = admin.post("/_test_seed_overflow")
    assert r.status_code == 422 and r.json()["success"] is False and r.json()["errorCode"] == 422
    assert code(r) == "value_out_of_range"


# --- 2. NaN / Infinity / lone surrogates -------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ('{"name": NaN}', "json_not_finite"),
    ('{"name": "a", "cpu": Infinity}', "json_not_finite"),
    ('{"name": -Infinity}', "json_not_finite"),
    ('{"name": 1e999}', "json_not_finite"),
    ('{"name": "\\ud800"}', "invalid_unicode"),
    ('{"\\udfff": "x"}', "invalid_unicode"),
    ('{"name": "' + "1" * 5000 + '"}', None),  # a long string is not a long number
    ('{"n": ' + "1" * 5000 + "}", "invalid_json"),
])
def test_non_json_numbers_and_lone_surrogates_are_refused(admin, text, expected):
    r = raw_json(admin, "POST", "/api/v1/users", text)
    if expected is None:
        assert r.status_code in (400, 422) and code(r) not in ("json_not_finite", "invalid_unicode")
        return
    assert r.status_code == 422, r.text
    assert code(r) == expected
    assert admin.get("/api/v1/users").status_code == 200  # and nothing half-stored broke the table


def test_json_checks_on_seed_routes_answer_in_the_envelope(alice):
    r = raw_json(alice, "POST", "/kernel/fineTune/createLlmFineTuneTask", '{"command": "true", "priority": NaN}')
    assert r.status_code == 422
    body = r.json()
    assert body["success"] is False and body["returnCode"] == 422 and body["reason"] == "json_not_finite"
    # seed handlers read the body as JSON whatever its content type: checked all the same
    r = raw_json(alice, "POST", "/kernel/fineTune/createLlmFineTuneTask", '{"command": "\\udc00"}',
                 content_type="text/plain")
    assert r.status_code == 422 and code(r) == "invalid_unicode"
    r = raw_json(alice, "POST", "/model/aiApplication/getAiApplicationList", '{"pageNum": Infinity}')
    assert r.status_code == 422 and r.json()["code"] == 422 and code(r) == "json_not_finite"
    # a well-formed surrogate pair is fine
    r = raw_json(alice, "POST", "/api/v1/tokens", '{"name": "\\ud83d\\ude00"}')
    assert r.status_code == 201 and r.json()["name"] == "\U0001F600"


# --- 3. deep nesting -------------------------------------------------------------------------

def test_deeply_nested_bodies_are_refused_before_parsing(alice):
    deep = "[" * 100_000 + "]" * 100_000
    for url in ("/kernel/fineTune/createLlmFineTuneTask", "/kernel/fineTune/listLlmFineTuneTask",
                "/model/aiApplication/createAiApplication"):
        r = raw_json(alice, "POST", url, deep)
        assert r.status_code == 422, (url, r.text[:200])
        assert r.json()["success"] is False and code(r) == "json_too_deep"
    r = raw_json(alice, "POST", "/api/v1/jobs", '{"config": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert r.status_code == 422 and code(r) == "json_too_deep"
    # unbalanced: still refused, never a RecursionError
    r = raw_json(alice, "POST", "/kernel/fineTune/createLlmFineTuneTask", "[" * 100_000)
    assert r.status_code == 422 and code(r) == "json_too_deep"
    r = raw_json(alice, "POST", "/api/v1/jobs", '{"config": ' + '{"a": ' * 65 + "1" + "}" * 66)
    assert r.status_code == 422 and code(r) == "json_too_deep"
    # 64 levels are fine, and brackets inside strings do not count
    ok = '{"command": "true", "config": ' + '{"a": ' * 62 + "1" + "}" * 62 + ', "name": "' + "[" * 500 + '"}'
    r = raw_json(alice, "POST", "/api/v1/jobs", ok)
    assert code(r) != "json_too_deep", r.text


# --- 4. text lengths --------------------------------------------------------------------------

def test_long_search_patterns_and_texts_are_refused(alice):
    pattern = "%_" * 600  # 1200 characters
    for url, param in (("/api/v1/jobs", "q"), ("/api/v1/models", "q"), ("/api/v1/datasets", "q"),
                       ("/api/v1/images", "name"), ("/api/v1/events", "kind"), ("/api/v1/jobs", "state")):
        r = alice.get(url, params={param: pattern})
        assert r.status_code == 422 and code(r) == "validation_error", (url, r.text[:200])
    assert alice.get("/api/v1/jobs", params={"q": "%_" * 100}).status_code == 200
    r = alice.get("/api/v1/files", params={"path": "a" * (40 * 1024)})
    assert r.status_code == 414 and code(r) == "query_too_long"
    r = alice.post("/kernel/fineTune/listLlmFineTuneTask", json={"taskName": pattern})
    assert r.status_code == 400 and r.json()["success"] is False and code(r) == "invalid_request"
    r = alice.post("/model/aiApplication/getAiApplicationList", json={"queryInfo": {"name": pattern}})
    assert r.status_code == 422 and code(r) == "value_too_long"
    # body texts: names <= 256, descriptions <= 10k
    for url, body in (("/api/v1/models", {"name": "m" * 300}),
                      ("/api/v1/images", {"name": "i" * 300}),
                      ("/api/v1/images", {"name": "ok", "description": "d" * 10_001}),
                      ("/api/v1/datasets", {"name": "ds", "path": "Data", "description": "d" * 10_001}),
                      ("/api/v1/tokens", {"name": "t" * 300})):
        r = alice.post(url, json=body)
        assert r.status_code == 422 and code(r) == "validation_error", (url, r.text[:300])
    r = alice.post("/docker/image/upload", json={"imageName": "x", "imageDescribe": "d" * 10_001})
    assert r.status_code == 400 and code(r) == "invalid_request"


# --- 5. missing paths and users ------------------------------------------------------------------

def test_reindex_of_a_missing_path_and_usage_of_an_unknown_user(alice, admin, settings):
    r = alice.post("/api/v1/files/reindex", params={"path": "Data/no/such/dir"})
    assert r.status_code == 404 and code(r) == "not_found"
    # a path removed out of band but still indexed is what reindex is for
    alice.post("/api/v1/files/upload", params={"path": "Data"}, files={"file": ("gone.txt", b"x")})
    (settings.users_root / alice.id / "Data/gone.txt").unlink()
    r = alice.post("/api/v1/files/reindex", params={"path": "Data/gone.txt"})
    assert r.status_code == 200 and r.json()["removed"] == 1
    r = admin.get("/api/v1/files/usage", params={"user_id": "f" * 32})
    assert r.status_code == 404 and code(r) == "user_not_found"
    r = admin.get("/api/v1/files/usage", params={"user_id": "\x0f\U0001d5f5"})
    assert r.status_code == 404 and code(r) == "user_not_found"
    assert admin.get("/api/v1/files/usage", params={"user_id": alice.id}).json()["user_id"] == alice.id


# --- 6. body size ------------------------------------------------------------------------------

@pytest.fixture
def small_limit_admin(tmp_path):
    s = make_settings(tmp_path / "small")
    set_setting(s, "request_body_max_bytes", 4096)
    with TestClient(create_app(s)) as tc:
        me = tc.get("/api/v1/users/me", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
        yield UserClient(tc, ADMIN_TOKEN, me)


def test_body_size_limit_from_content_length_and_while_streaming(small_limit_admin):
    admin = small_limit_admin
    big = json.dumps({"name": "x", "description": "d" * 5000})
    r = raw_json(admin, "POST", "/api/v1/tokens", big)
    assert r.status_code == 413 and code(r) == "body_too_large"

    def chunks(data: bytes, n: int = 1000):
        for i in range(0, len(data), n):
            yield data[i:i + n]

    # no Content-Length (chunked): counted as it arrives, JSON or not
    r = admin.request("POST", "/api/v1/tokens", content=chunks(big.encode()),
                      headers={"content-type": "application/json"})
    assert r.status_code == 413 and code(r) == "body_too_large"
    r = admin.request("POST", "/api/v1/files/mkdir", content=chunks(b"\0" * 9000),
                      headers={"content-type": "application/octet-stream"})
    assert r.status_code == 413 and code(r) == "body_too_large"
    # seed routes: in the envelope
    r = raw_json(admin, "POST", "/kernel/fineTune/listLlmFineTuneTask", json.dumps({"taskName": "t" * 5000}))
    assert r.status_code == 413 and r.json()["success"] is False and code(r) == "body_too_large"
    # under the limit: fine
    assert raw_json(admin, "POST", "/api/v1/tokens", '{"name": "small"}').status_code == 201
    # the streaming upload endpoints are exempt (their own limits apply)
    r = admin.post("/api/v1/files/upload", params={"path": "Data"}, files={"file": ("big.bin", b"b" * 50_000)})
    assert r.status_code == 201, r.text
    data = os.urandom(70_000)
    up = admin.post("/api/v1/uploads", json={"path": "Data/chunked.bin", "size": len(data),
                                             "sha256": hashlib.sha256(data).hexdigest()})
    assert up.status_code == 201, up.text
    r = admin.put(f"/api/v1/uploads/{up.json()['id']}/chunks/0", content=data)
    assert r.status_code == 200, r.text
    assert admin.post(f"/api/v1/uploads/{up.json()['id']}/complete").json()["state"] == "completed"


def test_default_body_limit_is_16_mib(alice):
    r = raw_json(alice, "POST", "/api/v1/tokens", b'{"name": "' + b"x" * (16 * 1024 * 1024) + b'"}')
    assert r.status_code == 413 and code(r) == "body_too_large"


# --- 7. uploads reserve disk as bytes arrive -----------------------------------------------------

def _open(user, path: str, size: int, **extra):
    return user.post("/api/v1/uploads", json={"path": path, "size": size, "sha256": "0" * 64, **extra})


@pytest.mark.skipif(shutil.disk_usage("/tmp").free < 6 * GIB, reason="needs 6 GiB free for the 5 GiB session")
def test_a_5_gib_session_takes_no_disk_at_open(alice, settings):
    set_setting(settings, "upload_free_space_floor_bytes", 0)
    r = _open(alice, "Data/huge.bin", 5 * GIB, chunk_size=1 << 20)
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    part = settings.uploads_dir / f"{uid}.part"
    st = part.stat()
    assert st.st_size == 5 * GIB and st.st_blocks * 512 < 1 << 20  # sparse: nothing taken yet
    # quota accounting still holds the whole announced size
    usage = alice.get("/api/v1/files/usage").json()
    assert usage["reserved_bytes"] == 5 * GIB and usage["reserved_files"] == 1
    # a chunk takes its own range only
    r = alice.put(f"/api/v1/uploads/{uid}/chunks/3", content=b"z" * (1 << 20))
    assert r.status_code == 200, r.text
    assert (1 << 20) <= part.stat().st_blocks * 512 < 4 << 20
    assert alice.delete(f"/api/v1/uploads/{uid}").status_code == 204
    assert alice.get("/api/v1/files/usage").json()["reserved_bytes"] == 0


def test_open_upload_bytes_per_user_are_capped(alice, bob, settings):
    set_setting(settings, "upload_open_max_bytes", 10 * 1024 * 1024)
    set_setting(settings, "upload_free_space_floor_bytes", 0)
    assert _open(alice, "Data/a.bin", 6 * 1024 * 1024).status_code == 201
    r = _open(alice, "Data/b.bin", 6 * 1024 * 1024)
    assert r.status_code == 409 and code(r) == "open_uploads_limit"
    assert r.json()["error"]["details"]["open_bytes"] == 6 * 1024 * 1024
    assert _open(bob, "Data/b.bin", 6 * 1024 * 1024).status_code == 201  # per user
    assert _open(alice, "Data/c.bin", 4 * 1024 * 1024).status_code == 201  # up to the cap exactly
    assert alice.get("/api/v1/files/usage").json()["reserved_bytes"] == 10 * 1024 * 1024


def test_free_space_floor_refuses_sessions_and_chunks(alice, settings):
    free = shutil.disk_usage(settings.uploads_dir).free
    set_setting(settings, "upload_free_space_floor_bytes", 0)
    data = b"q" * (64 * 1024)
    up = _open(alice, "Data/f.bin", len(data))
    assert up.status_code == 201
    set_setting(settings, "upload_free_space_floor_bytes", free + GIB)  # the volume is "full" from now on
    r = alice.put(f"/api/v1/uploads/{up.json()['id']}/chunks/0", content=data)
    assert r.status_code == 507 and code(r) == "disk_full", r.text
    assert alice.get(f"/api/v1/uploads/{up.json()['id']}").json()["received"] == []
    r = _open(alice, "Data/g.bin", 1024)
    assert r.status_code == 507 and code(r) == "disk_full"
    set_setting(settings, "upload_free_space_floor_bytes", 0)
    assert alice.put(f"/api/v1/uploads/{up.json()['id']}/chunks/0", content=data).status_code == 200


# --- 8. /metrics needs a token -------------------------------------------------------------------

def test_metrics_need_an_admin_or_the_metrics_token(admin, alice, settings):
    tc = admin.tc
    r = tc.get("/metrics/")
    assert r.status_code == 401 and code(r) == "unauthorized"
    r = tc.get("/metrics/", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and code(r) == "unauthorized"
    r = alice.get("/metrics/")
    assert r.status_code == 403 and code(r) == "forbidden"
    assert "modelyard_users" in admin.get("/metrics/").text
    set_setting(settings, "metrics_token", "scrape-me-please")
    r = tc.get("/metrics/", headers={"Authorization": "Bearer scrape-me-please"})
    assert r.status_code == 200 and "modelyard_users" in r.text
    assert tc.get("/metrics/", headers={"Authorization": "Bearer scrape-me-pleasX"}).status_code == 401


# --- 9. timestamps carry their offset --------------------------------------------------------------

def _aware(value: str) -> bool:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).utcoffset() is not None


def test_timestamps_carry_a_utc_offset(admin, alice):
    me = alice.get("/api/v1/users/me").json()
    assert _aware(me["created_at"]) and (me["created_at"].endswith("Z") or me["created_at"].endswith("+00:00"))
    assert all(_aware(t["created_at"]) for t in alice.get("/api/v1/tokens").json())
    job = submit(alice).json()
    assert _aware(job["created_at"]) and _aware(job["queued_at"])
    detail = alice.get(f"/api/v1/jobs/{job['id']}").json()
    assert detail["events"] and all(_aware(e["at"]) for e in detail["events"])
    ev = alice.get("/api/v1/events").json()["items"]
    assert ev and all(_aware(e["at"]) for e in ev)
    alice.post("/api/v1/files/upload", params={"path": "Data"}, files={"file": ("t.txt", b"t")})
    assert _aware(alice.get("/api/v1/files/stat", params={"path": "Data/t.txt"}).json()["mtime"])
    node = admin.get("/api/v1/nodes").json()[0]
    assert _aware(node["heartbeat_at"]) and _aware(node["created_at"])
    # a bound with an offset filters like the same instant in UTC
    at = ev[0]["at"]
    since = datetime.fromisoformat(at.replace("Z", "+00:00")).astimezone().isoformat()
    assert alice.get("/api/v1/events", params={"since": since}).json()["total"] >= 1


# --- 10. job submit: environment and argv ---------------------------------------------------------

@pytest.mark.parametrize("extra", [
    {"env": {"A=B": "x"}},
    {"env": {"": "x"}},
    {"env": {"A\u0000B": "x"}},
    {"env": {"A": "x\u0000y"}},
    {"command": ["echo", "a\u0000b"]},
    {"command": "echo a\u0000b"},
    {"commands": ["true", "echo \u0000"]},
    {"command": ["echo"] + ["x" * 1024] * 130},  # > 128 KiB of argv
    {"env": {"BIG": "v" * (130 * 1024)}},
])
def test_unusable_env_and_argv_are_refused(alice, extra):
    r = submit(alice, **extra)
    assert r.status_code == 422, r.text[:300]
    assert code(r) == "validation_error"
    assert alice.get("/api/v1/jobs").json()["total"] == 0


def test_seed_task_with_nul_in_a_variable_is_refused(alice):
    r = alice.post("/kernel/fineTune/createLlmFineTuneTask",
                   json={"command": "true", "variable": [{"name": "A", "value": "x\u0000"}]})
    assert r.status_code == 400 and r.json()["success"] is False and code(r) == "invalid_request"
    assert submit(alice, env={"OK_NAME": "fine"}, command=["echo", "ok"]).status_code == 201
