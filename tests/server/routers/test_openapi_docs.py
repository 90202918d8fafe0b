"""The OpenAPI document and its viewers: every operation but /healthz declares the bearer scheme
(Swagger UI's Authorize works, and a token sent that way is accepted); every operation has a
summary and a description; every field of every body is described; a malformed request is
documented with the error body the server really sends; seed routes are tagged by seed section;
/docs and /redoc load their assets from this server only."""

from __future__ import annotations

import re

API = "/api/v1"


def _ops(spec):
    for path, item in spec["paths"].items():
        for method, op in item.items():
            yield method, path, op


def test_bearer_scheme_on_every_protected_operation(app_client, alice):
    spec = app_client.get("/openapi.json").json()
    scheme = spec["components"]["securitySchemes"]["bearer"]
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    missing = [(m, p) for m, p, op in _ops(spec) if p != "/healthz" and op.get("security") != [{"bearer": []}]]
    assert missing == []
    assert "security" not in spec["paths"]["/healthz"]["get"]
    assert len(list(_ops(spec))) > 130
    # what Swagger UI sends after Authorize is what the server accepts
    assert app_client.get(f"{API}/users/me", headers={"Authorization": f"Bearer {alice.token}"}).status_code == 200
    assert app_client.get(f"{API}/users/me").status_code == 401


def test_every_operation_has_a_summary_and_a_description(app_client):
    spec = app_client.get("/openapi.json").json()
    bad = [(m, p) for m, p, op in _ops(spec)
           if not op.get("summary", "").strip() or not op.get("description", "").strip()]
    assert bad == []
    # seed routes: grouped by seed section, and explained beyond the section number
    seed = [(p, op) for m, p, op in _ops(spec) if not p.startswith(API) and p not in ("/healthz",)]
    assert seed and all(op["tags"][0].startswith("seed §") for p, op in seed)
    assert all(not re.fullmatch(r"(Seed )?§[\d./ ]+:?", op["description"]) for p, op in seed)
    native_tags = {t for m, p, op in _ops(spec) if p.startswith(API) for t in op["tags"]}
    assert {"jobs", "searches", "users", "models", "datasets", "hyperparameters"} <= native_tags


def test_every_field_is_described(app_client, alice):
    spec = app_client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    missing = {name: [f for f, fs in schema.get("properties", {}).items()
                      if not fs.get("description") or fs["description"].strip().lower() == f.lower()]
               for name, schema in schemas.items()}
    assert {k: v for k, v in missing.items() if v} == {}
    # 422 is documented as the body the server sends, and that is what it sends
    assert "HTTPValidationError" not in schemas
    bad = spec["paths"]["/api/v1/jobs"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]
    assert bad == {"$ref": "#/components/schemas/ErrorResponse"}
    r = alice.post(f"{API}/jobs", json={"kind": "custom", "priority": "high"})
    assert r.status_code == 422 and set(r.json()["error"]) >= {"code", "message"}


def test_docs_and_redoc_work_offline(app_client):
    for page in ("/docs", "/redoc"):
        r = app_client.get(page)
        assert r.status_code == 200
        assert re.findall(r"https?://", r.text) == [], page
        assets = re.findall(r'(?:src|href)="([^"]+)"', r.text)
        assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets)
        for a in assets:
            got = app_client.get(a)
            assert got.status_code == 200 and len(got.content) > 1000, a
    assert "/openapi.json" in app_client.get("/docs").text
