"""Native /api/v1/templates: create, list, show, delete; another user's template is 404, a public
(system) one is visible but 403 on delete."""

from __future__ import annotations

import pytest

YAML = "services:\n  - ports: [8080]\n    serviceBootupTime: 5\nenv: ['A:1']\n"


def _body(name="t1", **over):
    return {"name": name, "yaml": YAML, "start_command": "python3 -m http.server 8080", "request_cpu": 1,
            "request_memory_mib": 256, **over}


def test_create_list_show_delete(alice):
    r = alice.post("/api/v1/templates", json=_body())
    assert r.status_code == 201, r.text
    t = r.json()
    assert t["spec"]["services"][0]["ports"] == [8080] and t["spec"]["env"] == {"A": "1"}
    assert t["environment"]["state"] == "ready"  # no requirements: nothing to prepare
    assert alice.get("/api/v1/templates").json()["total"] == 1
    assert alice.get("/api/v1/templates/t1").json()["id"] == t["id"]
    assert alice.delete(f"/api/v1/templates/{t['id']}").status_code == 204
    assert alice.get(f"/api/v1/templates/{t['id']}").status_code == 404


def test_other_users_cannot_see_or_delete(alice, bob, admin):
    tid = alice.post("/api/v1/templates", json=_body()).json()["id"]
    assert bob.get(f"/api/v1/templates/{tid}").status_code == 404
    assert bob.delete(f"/api/v1/templates/{tid}").status_code == 404
    assert bob.get("/api/v1/templates").json()["total"] == 0
    pub = admin.post("/api/v1/templates", json=_body("system-one", public=True))
    assert pub.status_code == 201, pub.text
    assert bob.get(f"/api/v1/templates/{pub.json()['id']}").status_code == 200
    r = bob.delete(f"/api/v1/templates/{pub.json()['id']}")
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("over, code", [
    ({"type": "Batch"}, "unsupported_type"),
    ({"yaml": "services: [\n"}, "invalid_template"),
    ({"gpu_compute_capability": "7.5"}, "no_matching_node"),  # this node records no GPU
    ({"public": True}, "forbidden"),
    ({"extra": 1}, None),
])
def test_refusals(alice, over, code):
    r = alice.post("/api/v1/templates", json=_body(**over))
    assert 400 <= r.status_code < 500, r.text
    if code:
        assert r.json()["error"]["code"] == code
    assert alice.get("/api/v1/templates").json()["total"] == 0
