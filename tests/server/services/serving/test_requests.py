"""Bad bodies are refused with a 4xx and nothing started (no service row, no job); another user can
neither see (404) nor change a service. No background loops: nothing here needs a replica."""

from __future__ import annotations

import copy

import pytest

from tests.server.services.serving.conftest import import_model
from tests.server.services.serving.test_lifecycle import SEED_71


def _seed(user, mv_id: str, **changes) -> dict:
    body = copy.deepcopy(SEED_71)
    body["modelServer"].update(createUser=user.id, userName=user.user["name"], name="svc")
    v = body["modelServerVersions"][0]
    v.update(createUser=user.id, userName=user.user["name"], aiApplicationVersionId=mv_id, resourceGroupId=None,
             resourceGroupKey=None, resourceGroupName=None)
    v.update(changes)
    return body


def _nothing_started(admin) -> None:
    assert admin.get("/api/v1/services").json()["total"] == 0
    assert admin.get("/api/v1/jobs", params={"kind": "serve"}).json()["total"] == 0


@pytest.mark.parametrize("changes, status, code", [
    ({"aiApplicationVersionId": "0" * 32}, 404, None),
    ({"replica": -1}, 400, "invalid_replicas"),
    ({"predictMinReplicas": 3, "predictMaxReplicas": 2}, 400, "invalid_request"),
    ({"rate": 60}, 400, "invalid_rates"),
    ({"reqMethod": "grpc"}, 400, "unsupported_field"),
    ({"envs": "[{not json"}, 400, "invalid_request"),
    ({"volumes": "[{\"src\": \"../../etc\", \"dst\": \"/x\"}]"}, 400, "invalid_path"),
    ({"volumes": "[{\"src\": \"/nothere\", \"dst\": \"/x\"}]"}, 400, "invalid_path"),
    ({"rates": [{"v1": 100}]}, 400, "unsupported_field"),
    ({"hyperParameterList": "[{\"name\": \"lr\", \"value\": 1}]"}, 400, "unsupported_field"),
    ({"volumePath": "/data"}, 400, "unsupported_field"),
    ({"notAField": 1}, 400, "unsupported_field"),
    ({"resourceGroupId": "nosuchgroup"}, 404, "resource_group_not_found"),
    ({"cpu": 10_000}, 400, "invalid_request"),
    ({"cpu": 64}, 403, "quota_exceeded"),  # more than the user's quota: it could never run
    ({"gpu": 1, "gpuMem": 80}, 403, "quota_exceeded"),  # no GPU quota (nor an 80 GiB GPU)
])
def test_seed_bad_version_fields_start_nothing(alice, admin, settings, changes, status, code):
    mv = import_model(settings, alice)
    r = alice.post("/model/modelServer/createModelInferenceServer", json=_seed(alice, mv["id"], **changes))
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False and body["code"] == status
    if code:
        assert body["reason"] == code, body
    _nothing_started(admin)


def test_seed_create_user_must_be_the_caller(alice, bob, admin, settings):
    mv = import_model(settings, alice)
    body = _seed(alice, mv["id"])
    r = bob.post("/model/modelServer/createModelInferenceServer", json=body)
    assert r.status_code in (403, 404), r.text  # bob names alice (403) — or cannot see her model
    body["modelServer"]["createUser"] = bob.id
    for v in body["modelServerVersions"]:
        v["createUser"] = bob.id
    r = alice.post("/model/modelServer/createModelInferenceServer", json=body)
    assert r.status_code == 403 and r.json()["reason"] == "not_caller", r.text
    _nothing_started(admin)


def test_native_bad_bodies_start_nothing(alice, admin, settings):
    mv = import_model(settings, alice)
    m = mv["id"]
    cases = [
        ({"name": "a", "versions": [{"model": "0" * 32}]}, 404),
        ({"name": "a", "versions": [{"model": m, "replicas": -1}]}, 422),
        ({"name": "a", "versions": [{"model": m, "min_replicas": 3, "max_replicas": 1}]}, 422),
        ({"name": "a", "versions": [{"model": m, "rate": 50}, {"model": m, "rate": 40}]}, 400),
        ({"name": "a", "versions": [{"model": m, "runtime": "tensorrt"}]}, 400),
        ({"name": "a", "versions": [{"model": m, "req_method": "grpc"}]}, 400),
        ({"name": "a", "versions": [{"runtime": "transformers"}]}, 400),
        ({"name": "a/b", "versions": [{"model": m}]}, 422),
    ]
    for body, status in cases:
        r = alice.post("/api/v1/services", json=body)
        assert r.status_code == status, (body, r.text)
        assert "error" in r.json()
    r = alice.post("/api/v1/services", json={"name": "a", "versions": [{"model": m, "runtime": "tensorrt"}]})
    assert r.json()["error"]["code"] == "unknown_runtime"
    # vllm: refused until its environment is prepared (or while its planner is not installed)
    from modelyard.server.services.serving import planning

    if not planning.vllm_ready(settings):
        r = alice.post("/api/v1/services", json={"name": "a", "versions": [{"model": m, "runtime": "vllm"}]})
        assert (r.status_code, r.json()["error"]["code"]) in ((409, "runtime_not_ready"), (400, "runtime_unavailable"))
    r = alice.post("/api/v1/services", json={"name": "a", "versions": [{"model": m, "req_method": "grpc"}]})
    assert r.json()["error"] == {"code": "unsupported_field", "message": "grpc is not served; use rest"} or \
        r.json()["error"]["message"] == "grpc is not served; use rest"
    _nothing_started(admin)


def test_another_user_can_neither_see_nor_change_a_service(alice, bob, settings):
    mv = import_model(settings, alice)
    r = alice.post("/api/v1/services", json={"name": "mine", "start": False, "versions": [{"model": mv["id"]}]})
    assert r.status_code == 201, r.text
    d = r.json()
    sid, vid = d["id"], d["versions"][0]["id"]
    assert d["state"] == "saved"
    for ref in (sid, sid[:10], "mine"):
        assert bob.get(f"/api/v1/services/{ref}").status_code == 404
    assert bob.get("/api/v1/services").json()["total"] == 0
    for method, path, kw in [
        ("post", f"/api/v1/services/{sid}/start", {}), ("post", f"/api/v1/services/{sid}/stop", {}),
        ("post", f"/api/v1/services/{sid}/scale", {"json": {"replicas": 2}}),
        ("put", f"/api/v1/services/{sid}/rates", {"json": {"rates": {"1": 100}}}),
        ("post", f"/api/v1/services/{sid}/versions", {"json": {"model": mv["id"]}}),
        ("delete", f"/api/v1/services/{sid}/versions/1", {}), ("delete", f"/api/v1/services/{sid}", {}),
        ("get", f"/api/v1/services/{sid}/events", {}), ("get", f"/api/v1/services/{sid}/logs", {}),
        ("get", f"/api/v1/services/{sid}/monitor", {}),
        ("get", f"/v1/{bob.id}/services/{sid}", {}), ("get", f"/v1/{bob.id}/services/{sid}/events", {}),
        ("get", f"/v1/{bob.id}/services/{sid}/monitor", {}),
    ]:
        r = getattr(bob, method)(path, **kw)
        assert r.status_code == 404, (path, r.text)
    for path, body in [("/model/modelServer/findModelServerById", {"id": sid}),
                       ("/model/modelServerVersion/findModelServerVersionById", {"id": vid})]:
        r = bob.post(path, json=body)
        assert r.status_code == 404 and r.json()["success"] is False, r.text
    page = bob.post("/model/modelServer/findModelServerPageList", json={"pageNum": 1, "pageSize": 10,
                                                                         "queryCriteria": {"createUser": bob.id}})
    assert page.json()["data"]["total"] == 0
    r = bob.post("/model/modelServer/findModelServerPageList", json={"queryCriteria": {"createUser": alice.id}})
    assert r.status_code == 403
    # still saved, untouched
    assert alice.get(f"/api/v1/services/{sid}").json()["state"] == "saved"


def test_saved_service_versions_rates_and_scale(alice, settings):
    """§7.2 saves without starting; versions, rates and scale validate and change only the asked."""
    mv = import_model(settings, alice)
    body = _seed(alice, mv["id"])
    r = alice.post("/model/modelServer/createModelServer", json=body)
    assert r.status_code == 200, r.text
    sid = r.json()["data"]["id"]
    d = alice.get("/api/v1/services/svc").json()
    assert d["state"] == "saved" and d["replicas"] == []
    r = alice.post("/api/v1/services/svc/versions", json={"model": mv["id"], "rate": 10})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_rates"
    r = alice.post("/api/v1/services/svc/versions", json={"model": mv["id"]})
    assert r.status_code == 201, r.text
    assert [v["weight"] for v in r.json()["versions"]] == [100, 0]
    assert alice.put("/api/v1/services/svc/rates", json={"rates": {"1": 70, "2": 20}}).status_code == 400
    r = alice.put("/api/v1/services/svc/rates", json={"rates": {"1": 70, "2": 30}})
    assert [v["weight"] for v in r.json()["versions"]] == [70, 30]
    assert alice.delete("/api/v1/services/svc/versions/2").status_code == 409  # still takes traffic
    r = alice.post("/api/v1/services/svc/scale", json={"version": 1, "min_replicas": 3, "max_replicas": 2})
    assert r.status_code == 400
    r = alice.post("/api/v1/services/svc/scale", json={"version": 1, "replicas": 3})
    v1 = r.json()["versions"][0]["scaling"]
    assert (v1["replicas"], v1["max_replicas"]) == (3, 3)
    assert alice.get("/api/v1/jobs", params={"kind": "serve"}).json()["total"] == 0  # saved: nothing runs
    r = alice.delete(f"/api/v1/models/tiny/versions/{mv['version']}")
    assert r.status_code == 409 and "service svc" in r.json()["error"]["message"], r.text  # the service needs it
    assert alice.delete(f"/api/v1/services/{sid}").status_code == 204
    assert alice.delete(f"/api/v1/models/tiny/versions/{mv['version']}").status_code == 204
