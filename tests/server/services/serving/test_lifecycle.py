"""Services end to end on the real scheduler, ledger and sandbox, with the stand-in replica
(conftest.FAKE_REPLICA) as the runtime: seed §7.1 deploy -> ready, a replica killed -9 replaced,
a crashing version failing after 3 tries with its log tail, stop releasing every allocation."""

from __future__ import annotations

import copy
import os
import re
import signal
from pathlib import Path

import httpx
import pytest

from tests.server.services.serving.conftest import CRASHING_REPLICA, import_model, wait_service

pytestmark = pytest.mark.background

SEED_71 = {
    "modelServer": {"name": "334", "description": "", "createUser": "4", "userName": "zjm", "path": ""},
    "modelServerVersions": [{
        "createUser": "4", "userName": "zjm", "cpu": 1, "memory": 1, "command": "", "imagePorts": "5050",
        "envs": "[{\"At\":\"122\"}]", "rate": 100, "aiApplicationVersionId": "3131d20c8b7e5d3d018b8ce8a08b0006",
        "rates": [], "reqMethod": "rest", "resourceGroupName": "ai",
        "resourceGroupId": "3131d23a8b5f0f12018b5fedad1e0003", "resourceGroupKey": "resourceGroupOBwEzW5u6RjazuzI",
        "gpuShare": "none", "gpu": 0, "predictMinReplicas": 1, "predictMaxReplicas": 1, "metric": 1,
        "monitorThreshold": "100", "volumes": "[]", "hyperParameterList": "null"}],
}


def seed_body(user, version_id: str, group: dict, **changes) -> dict:
    body = copy.deepcopy(SEED_71)
    body["modelServer"].update(createUser=user.id, userName=user.user["name"])
    v = body["modelServerVersions"][0]
    v.update(createUser=user.id, userName=user.user["name"], aiApplicationVersionId=version_id,
             resourceGroupId=group["id"], resourceGroupKey=group["key"], resourceGroupName=group["name"])
    v.update(changes)
    return body


def default_group(admin) -> dict:
    r = admin.get("/api/v1/resource-groups")
    assert r.status_code == 200, r.text
    items = r.json()["items"] if isinstance(r.json(), dict) else r.json()
    return next(g for g in items if g["key"] == "default")


def ready(d: dict) -> bool:
    return d["state"] == "running" and d["ready_replicas"] == d["desired_replicas"] > 0


def live_allocations(ctx) -> list:
    from sqlalchemy import select

    from modelyard.server.db import session_scope
    from modelyard.server.orm import AllocationModel

    with session_scope(ctx.sessions, readonly=True) as s:
        return list(s.scalars(select(AllocationModel).where(AllocationModel.released_at.is_(None))))


def replica_pid(ctx, job_id: str) -> int:
    from modelyard.server.db import session_scope
    from modelyard.server.services import jobs

    with session_scope(ctx.sessions, readonly=True) as s:
        return jobs.replicas_of(s, job_id)[0].pid


def test_seed_71_deploys_a_ready_replica_and_stop_releases_it(alice, admin, settings, ctx_of):
    ctx = ctx_of(alice)
    mv = import_model(settings, alice)
    body = seed_body(alice, mv["id"], default_group(admin), replica=2, predictMaxReplicas=2)
    r = alice.post("/model/modelServer/createModelInferenceServer", json=body)
    assert r.status_code == 200, r.text
    env = r.json()
    assert env["success"] is True and env["code"] == 200
    sid = env["data"]["id"]
    assert "autoscaling comes with the gateway" in env["message"]
    d = wait_service(alice, sid, ready, what="2 ready replicas")
    assert d["ready_replicas"] == 2 and d["access_address"].endswith("/v1") and "334" in d["model_names"]
    v = d["versions"][0]
    assert v["resources"]["memory_mib"] == 1024 and v["env"] == {"At": "122"} and v["weight"] == 100
    # the replica answers on its socket (through the sandbox's bind)
    rep = next(x for x in d["replicas"] if x["state"] == "ready")
    with httpx.Client(transport=httpx.HTTPTransport(uds=rep["socket_path"])) as c:
        assert c.get("http://r/v1/models").json()["data"][0]["id"] == "334"
    assert len(rep["socket_path"].encode()) < 108
    # the deployment stages, natively and in ModelArts' shape
    infos = [e["event_info"] for e in alice.get(f"/v1/{alice.id}/services/{sid}/events").json()["events"]]
    for stage in ("accepted", "resources allocated", "environment prepared", "weights loaded", "running"):
        assert any(stage in i for i in infos), (stage, infos)
    ma = alice.get(f"/v1/{alice.id}/services/{sid}").json()
    assert ma["status"] == "running" and ma["config"][0]["weight"] == 100 and ma["config"][0]["instance_count"] == 2
    # serve jobs are hidden from the job list, shown by kind; one allocation per replica, no job slot
    assert alice.get("/api/v1/jobs").json()["total"] == 0
    serve = alice.get("/api/v1/jobs", params={"kind": "serve"}).json()
    assert serve["total"] == 2 and {j["kind"] for j in serve["items"]} == {"serve"}
    allocs = live_allocations(ctx)
    assert len(allocs) == 2 and not any(a.counts_as_job for a in allocs)
    assert {a.memory_mib for a in allocs} == {1024}
    # seed §7.3 / §7.4 / §7.5
    page = alice.post("/model/modelServer/findModelServerPageList",
                      json={"pageNum": 1, "pageSize": 10, "queryCriteria": {"createUser": alice.id, "name": ""}}).json()
    assert page["data"]["total"] == 1 and page["data"]["list"][0]["id"] == sid
    one = alice.post("/model/modelServer/findModelServerById", json={"id": sid}).json()["data"]
    assert one["status"] == "running" and one["modelServerVersions"][0]["aiApplicationVersionId"] == mv["id"]
    ver = alice.post("/model/modelServerVersion/findModelServerVersionById",
                     json={"id": one["modelServerVersions"][0]["id"]}).json()["data"]
    assert ver["replica"] == 2 and ver["memory"] == 1 and ver["monitorThreshold"] == "100.0"
    # a running service is not deleted; stop drains it and releases every allocation
    assert alice.delete(f"/api/v1/services/{sid}").status_code == 409
    assert alice.post(f"/api/v1/services/{sid}/stop").status_code == 200
    wait_service(alice, sid, lambda d: d["state"] == "stopped", what="stopped")
    assert live_allocations(ctx) == []
    assert alice.delete("/api/v1/services/334").status_code == 204
    assert alice.get(f"/api/v1/services/{sid}").status_code == 404


def test_replica_killed_is_replaced(alice, settings, ctx_of):
    ctx = ctx_of(alice)
    mv = import_model(settings, alice)
    r = alice.post("/api/v1/services", json={"name": "kill", "versions": [{"model": mv["id"], "cpu": 0.5,
                                                                          "memory_mib": 512}]})
    assert r.status_code == 201, r.text
    d = wait_service(alice, "kill", ready, what="ready")
    first = next(x for x in d["replicas"] if x["state"] == "ready")
    os.killpg(replica_pid(ctx, first["job_id"]), signal.SIGKILL)
    d = wait_service(alice, "kill", lambda d: ready(d) and all(x["id"] != first["id"] for x in d["replicas"]
                                                                if x["state"] == "ready"), what="a replacement")
    new = next(x for x in d["replicas"] if x["state"] == "ready")
    assert new["replaces_id"] == first["id"] and new["restarts"] == 1
    events = alice.get("/api/v1/services/kill/events").json()["events"]
    died = [e for e in events if "died" in e["message"] and "replacing" in e["message"]]
    assert died and died[0]["event_type"] == "abnormal", events
    assert "signal 9" in died[0]["message"] or "-9" in died[0]["message"] or "SIGKILL" in died[0]["message"]
    assert len(live_allocations(ctx)) == 1


def test_a_replica_failing_its_liveness_probe_is_replaced(alice, settings):
    mv = import_model(settings, alice)
    r = alice.post("/api/v1/services", json={"name": "sick", "versions": [{"model": mv["id"], "cpu": 0.5,
                                                                          "memory_mib": 256}]})
    assert r.status_code == 201, r.text
    d = wait_service(alice, "sick", ready, what="ready")
    first = next(x for x in d["replicas"] if x["state"] == "ready")
    (Path(first["socket_path"]).parent / "unhealthy").touch()
    d = wait_service(alice, "sick", lambda d: ready(d) and first["id"] not in
                     [x["id"] for x in d["replicas"] if x["state"] == "ready"], what="replaced")
    events = [e["message"] for e in alice.get("/api/v1/services/sick/events").json()["events"]]
    assert any("failed 3 liveness probes; replacing" in m for m in events), events


def test_a_version_that_exits_at_once_fails_after_three_tries(alice, settings, ctx_of):
    ctx = ctx_of(alice)
    mv = import_model(settings, alice)
    settings.serving.runtime_argv = [settings.serving.runtime_argv[0], "-c", CRASHING_REPLICA]
    r = alice.post("/api/v1/services", json={"name": "crash", "versions": [{"model": mv["id"], "cpu": 0.5,
                                                                           "memory_mib": 256, "replicas": 2}]})
    assert r.status_code == 201, r.text
    d = wait_service(alice, "crash", lambda d: d["state"] == "failed", what="failed")
    v = d["versions"][0]
    assert v["state"] == "failed" and re.match(r"[34] replicas in a row failed before becoming ready", v["error"])
    assert "boom: the weights are corrupt" in v["error"]  # the log tail is the reason
    assert "boom" in d["error"]
    # no endless retry: 3 failures (4 when two fail in one pass, + a replacement started beside them)
    started = alice.get("/api/v1/jobs", params={"kind": "serve"}).json()["total"]
    assert 3 <= started <= 5
    wait_service(alice, "crash", lambda d: not [x for x in d["replicas"] if x["state"] in
                                                ("pending", "starting", "ready", "draining")], what="drained")
    assert live_allocations(ctx) == []
    assert alice.get("/api/v1/jobs", params={"kind": "serve"}).json()["total"] == started
    assert alice.delete("/api/v1/services/crash").status_code == 204


def test_a_command_version_serves_behind_the_relay_or_says_it_is_missing(alice, settings):
    """A seed version with a command runs the user's own HTTP server on imagePorts, fronted by the
    relay (modelyard.runtime.relay) on the replica's socket; a server without the relay refuses it."""
    import importlib.util

    mv = import_model(settings, alice)
    body = seed_body(alice, mv["id"], {"id": None, "key": None, "name": None},
                     command="python -m http.server 5050 --bind 127.0.0.1", imagePorts="5050", cpu=1, memory=1)
    r = alice.post("/model/modelServer/createModelInferenceServer", json=body)
    if importlib.util.find_spec("modelyard.runtime.relay") is None:
        assert r.status_code == 400 and r.json()["reason"] == "runtime_unavailable", r.text
        assert "relay" in r.json()["message"]
        assert alice.get("/api/v1/jobs", params={"kind": "serve"}).json()["total"] == 0
        return
    assert r.status_code == 200, r.text
    d = wait_service(alice, r.json()["data"]["id"], ready, what="the command's server ready")
    assert d["versions"][0]["runtime"] == "image"


def test_route_snapshot_lists_ready_replicas_and_invocations_add_up(alice, settings, ctx_of):
    from modelyard.server.db import session_scope
    from modelyard.server.services import serving

    ctx = ctx_of(alice)
    mv = import_model(settings, alice)
    r = alice.post("/api/v1/services", json={"name": "routed", "versions": [
        {"model": mv["id"], "cpu": 0.5, "memory_mib": 256, "rate": 100}]})
    assert r.status_code == 201, r.text
    d = wait_service(alice, "routed", ready, what="ready")
    with session_scope(ctx.sessions, readonly=True) as s:
        snap = serving.route_snapshot(s)
    (entry,) = [e for e in snap if e.name == "routed"]
    assert entry.owner_id == alice.id and entry.kind == "openai" and entry.state == "running"
    (ver,) = entry.versions
    rep = next(x for x in d["replicas"] if x["state"] == "ready")
    assert ver.weight == 100 and [x.socket_path for x in ver.replicas] == [rep["socket_path"]]
    assert "routed" in ver.replicas[0].served_names
    # monitor: the replica's process tree (psutil) and its /metrics
    with httpx.Client(transport=httpx.HTTPTransport(uds=rep["socket_path"])) as c:
        assert c.post("http://r/v1/chat/completions", json={"model": "routed", "messages": []}).status_code == 200
    mon = alice.get("/api/v1/services/routed/monitor").json()
    (row,) = mon["replicas"]
    assert row["replica_id"] == rep["id"] and row["cpu_memory_usage"] > 5 and row["requests"] == 1
    assert mon["monitors"][0]["model_running_instance_count"] == 1 and mon["monitors"][0]["requests"] == 1
    assert alice.get(f"/v1/{alice.id}/services/routed/monitor").json()["service_running_instance_count"] == 1
    with session_scope(ctx.sessions) as s:
        serving.record_invocations(s, {d["id"]: (5, 1)})
    with session_scope(ctx.sessions) as s:
        serving.record_invocations(s, {d["id"]: (2, 0)})
    d = alice.get("/api/v1/services/routed").json()
    assert (d["invocations"], d["failures"]) == (7, 1)
    seed = alice.post("/model/modelServer/findModelServerById", json={"id": d["id"]}).json()["data"]
    assert (seed["invocationTimes"], seed["failedTimes"]) == (7, 1)
    alice.post("/api/v1/services/routed/stop")
    with session_scope(ctx.sessions, readonly=True) as s:
        assert not [e for e in serving.route_snapshot(s) if e.name == "routed"]


def test_a_replica_waits_for_quota_and_says_why(alice, admin, settings, set_quota, ctx_of):
    """Replicas are accounted like jobs: one beyond the owner's CPU quota waits (pending, with the
    queue's reason) while the other runs; serve jobs take no job slot."""
    mv = import_model(settings, alice)
    set_quota(admin, alice.id, cpu=1.0, jobs=0)
    r = alice.post("/api/v1/services", json={"name": "tight", "versions": [
        {"model": mv["id"], "cpu": 0.6, "memory_mib": 256, "replicas": 2}]})
    assert r.status_code == 201, r.text
    d = wait_service(alice, "tight", lambda d: d["ready_replicas"] == 1 and any(
        x.get("waiting_reason") for x in d["replicas"]), what="one ready, one waiting")
    assert d["state"] == "degraded"
    waiting = next(x for x in d["replicas"] if x["state"] == "pending")
    assert "quota" in waiting["waiting_reason"] and "cpu" in waiting["waiting_reason"]
    assert len(live_allocations(ctx_of(alice))) == 1
