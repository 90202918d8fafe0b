"""Native /api/v1/runtimes: listing with readiness and how to prepare; install is admin only."""

from __future__ import annotations


def test_list_and_show(alice):
    items = {r["name"]: r for r in alice.get("/api/v1/runtimes").json()["items"]}
    assert items["transformers"]["ready"] is True
    assert items["vllm"]["ready"] is False and items["vllm"]["status"] == "absent"
    assert "modelyard runtimes install vllm" in items["vllm"]["prepare"]
    assert alice.get("/api/v1/runtimes/vllm").json()["status"] == "absent"
    r = alice.get("/api/v1/runtimes/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "runtime_not_found"


def test_install_is_admin_only(alice, admin):
    r = alice.post("/api/v1/runtimes/vllm/install")
    assert r.status_code == 403
    assert alice.get("/api/v1/runtimes/vllm").json()["status"] == "absent"  # nothing started
    r = admin.post("/api/v1/runtimes/transformers/install")
    assert r.status_code == 202 and r.json()["ready"] is True
    assert admin.post("/api/v1/runtimes/nope/install").status_code == 404
