"""Custom jobs through the native API with the real background loop: lifecycle, detail, env,
cancel (SIGTERM then SIGKILL), logs with follow, multi-replica ranks, failures, resume, metrics,
images, in-use checks, and event-driven starts (no polling delay)."""

from __future__ import annotations

import json
import threading
import time

import pytest
from sqlalchemy import select

from modelyard.server.db import session_scope
from modelyard.server.orm import AllocationModel
from tests.harness import ctx_of

pytestmark = [pytest.mark.background, pytest.mark.timeout(120)]


def _live_allocs(client, job_id):
    with session_scope(ctx_of(client).sessions, readonly=True) as s:
        return s.scalars(select(AllocationModel).where(AllocationModel.consumer_id == job_id,
                                                       AllocationModel.released_at.is_(None))).all()


def _log(user, job_id, **params):
    r = user.get(f"/api/v1/jobs/{job_id}/logs", params=params)
    assert r.status_code == 200, r.text
    return r.text


def test_custom_job_lifecycle_detail_and_visibility(alice, bob, admin, submit_custom, wait_state):
    job = submit_custom(alice, "echo hello from $MODELYARD_ROLE-$MODELYARD_REPLICA_INDEX", name="hello")
    assert job["state"] == "queued" and job["kind"] == "custom" and job["owner_id"] == alice.id
    done = wait_state(alice, job["id"], "succeeded")
    assert [r["state"] for r in done["replicas"]] == ["succeeded"] and done["replicas"][0]["exit_code"] == 0
    assert [a["part"] for a in done["allocations"]] == ["master-0"] and done["allocations"][0]["released_at"]
    transitions = [e["message"].split(":")[0] for e in done["events"] if e["kind"] == "job.state_changed"]
    assert transitions == ["pending -> queued", "queued -> starting", "starting -> running", "running -> succeeded"]
    assert done["queued_at"] <= done["started_at"] <= done["running_at"] <= done["finished_at"]
    assert "hello from master-0" in _log(alice, job["id"])
    # visibility: others get 404, admins see everything
    assert bob.get(f"/api/v1/jobs/{job['id']}").status_code == 404
    assert bob.post(f"/api/v1/jobs/{job['id']}/cancel").status_code == 404
    assert admin.get(f"/api/v1/jobs/{job['id']}").status_code == 200
    page = alice.get("/api/v1/jobs", params={"page_size": 1}).json()
    assert page["total"] == 1 and page["items"][0]["id"] == job["id"]
    assert bob.get("/api/v1/jobs").json()["total"] == 0
    assert alice.get("/api/v1/jobs", params={"state": "queued,running"}).json()["total"] == 0
    hp = alice.get("/api/v1/jobs/hyperparameters", params={"strategy": "lora"}).json()
    assert hp["strategy"] == "lora" and "lora_r" in {h["name"] for h in hp["hyperparameters"]}


def test_env_contract_and_user_root(alice, settings, submit_custom, wait_state):
    (settings.users_root / alice.id / "Data" / "train").mkdir(parents=True, exist_ok=True)
    (settings.users_root / alice.id / "Data" / "train" / "a.jsonl").write_text('{"text": "x"}\n')
    job = submit_custom(alice, "env | sort; ls $MODELYARD_USER_ROOT", input_type="local", env={"MINE": "1"})
    wait_state(alice, job["id"], "succeeded")
    log = _log(alice, job["id"])
    env = dict(line.split("=", 1) for line in log.splitlines() if "=" in line and line.split("=", 1)[0].isupper())
    jdir = str(settings.jobs_dir / job["id"])
    assert env["MODELYARD_JOB_ID"] == job["id"]
    assert env["MODELYARD_OUTPUT_DIR"] == jdir + "/output"
    assert env["MODELYARD_CHECKPOINT_DIR"] == jdir + "/checkpoints"
    assert env["MODELYARD_METRICS_FILE"] == jdir + "/metrics.jsonl"
    assert env["MODELYARD_USER_ROOT"] == str(settings.users_root / alice.id)
    assert env["MODELYARD_DATA_DIR"] == str(settings.users_root / alice.id / "Data")
    assert (env["RANK"], env["LOCAL_RANK"], env["WORLD_SIZE"], env["MASTER_ADDR"]) == ("0", "0", "1", "127.0.0.1")
    assert int(env["MASTER_PORT"]) > 0 and env["CUDA_VISIBLE_DEVICES"] == "" and env["MINE"] == "1"
    assert "MODELYARD_ADMIN_TOKEN" not in env and "MODELYARD_DATABASE_URL" not in env
    assert "Data" in log and "Config" in log  # ls of the user's root


def test_failed_job_reports_the_replica_and_releases(alice, submit_custom, wait_state):
    job = submit_custom(alice, "echo boom; exit 3")
    done = wait_state(alice, job["id"], "failed")
    assert done["error"] == "replica master-0 failed: exit code 3"
    assert done["replicas"][0]["exit_code"] == 3 and not _live_allocs(alice, job["id"])


def test_cancel_sigterm_then_sigkill_after_grace(alice, settings, submit_custom, wait_for, wait_state):
    assert settings.scheduler.cancel_grace_s == 1.0
    job = submit_custom(alice, "trap 'echo got TERM' TERM; echo started; while true; do sleep 0.05; done")
    wait_state(alice, job["id"], "running")
    wait_for(lambda: "started" in _log(alice, job["id"]), what="started")
    t0 = time.monotonic()
    r = alice.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert r.status_code == 200 and r.json()["cancel_requested_at"]
    done = wait_state(alice, job["id"], "cancelled", timeout=20)
    took = time.monotonic() - t0
    assert 0.9 <= took < 6, took
    msgs = [e["message"] for e in done["events"]]
    assert any("SIGTERM" in m for m in msgs) and any("SIGKILL" in m for m in msgs)
    assert "got TERM" in _log(alice, job["id"])
    assert done["replicas"][0]["state"] == "cancelled" and done["replicas"][0]["exit_code"] == -9
    assert not _live_allocs(alice, job["id"])
    assert alice.post(f"/api/v1/jobs/{job['id']}/cancel").status_code == 409


def test_cancel_a_well_behaved_job_is_quick(alice, submit_custom, wait_state):
    ctx_of(alice).settings.scheduler.cancel_grace_s = 30  # read at each reconcile
    job = submit_custom(alice, "sleep 30")
    wait_state(alice, job["id"], "running")
    t0 = time.monotonic()
    alice.post(f"/api/v1/jobs/{job['id']}/cancel")
    done = wait_state(alice, job["id"], "cancelled")
    assert time.monotonic() - t0 < 10  # SIGTERM was enough: far before the 30 s SIGKILL deadline
    assert not any("SIGKILL" in e["message"] for e in done["events"])
    assert done["replicas"][0]["exit_code"] == -15 and done["replicas"][0]["state"] == "cancelled"


def test_logs_follow_streams_until_the_job_ends(alice, submit_custom):
    job = submit_custom(alice, "for i in 1 2 3 4 5; do echo line-$i; sleep 0.2; done")
    chunks: list[tuple[float, str]] = []
    t0 = time.monotonic()
    with alice.tc.stream("GET", f"/api/v1/jobs/{job['id']}/logs", params={"follow": "true"},
                         headers=alice.headers) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/plain")
        for chunk in resp.iter_text():
            chunks.append((time.monotonic() - t0, chunk))
    text = "".join(c for _, c in chunks)
    assert [f"line-{i}" for i in range(1, 6)] == [x for x in text.split() if x.startswith("line-")]
    assert len(chunks) >= 2  # it arrived in pieces, as written
    assert alice.get(f"/api/v1/jobs/{job['id']}").json()["state"] == "succeeded"
    # offset: only what follows
    full = _log(alice, job["id"])
    assert _log(alice, job["id"], offset=len(full.encode()) - 7) == "line-5\n"
    assert alice.get(f"/api/v1/jobs/{job['id']}/logs", params={"replica": "worker-3"}).status_code == 404


def test_multi_replica_ranks_and_logs_per_replica(alice, wait_state):
    r = alice.post("/api/v1/jobs", json={
        "kind": "custom", "command": "echo rank=$RANK world=$WORLD_SIZE addr=$MASTER_ADDR port=$MASTER_PORT local=$LOCAL_RANK",
        "roles": [{"role": "master", "cpu": 0.1, "memory_mib": 16},
                  {"role": "worker", "replicas": 2, "cpu": 0.1, "memory_mib": 16}]})
    assert r.status_code == 201
    jid = r.json()["id"]
    done = wait_state(alice, jid, "succeeded")
    assert [(x["name"], x["rank"]) for x in done["replicas"]] == [("master-0", 0), ("worker-0", 1), ("worker-1", 2)]
    lines = {name: _log(alice, jid, replica=name) for name in ("master-0", "worker-0", "worker-1")}
    ports = set()
    for rank, name in enumerate(("master-0", "worker-0", "worker-1")):
        line = [x for x in lines[name].splitlines() if x.startswith("rank=")][0]
        kv = dict(p.split("=") for p in line.split())
        assert kv["rank"] == str(rank) and kv["world"] == "3" and kv["addr"] == "127.0.0.1"
        assert kv["local"] == str(rank)
        ports.add(kv["port"])
    assert len(ports) == 1


def test_one_replica_failing_fails_the_job_and_stops_the_others(alice, wait_for, wait_state):
    r = alice.post("/api/v1/jobs", json={
        "kind": "custom", "command": 'if [ "$RANK" = 1 ]; then sleep 0.3; exit 5; fi; sleep 60',
        "roles": [{"role": "master", "cpu": 0.1, "memory_mib": 16},
                  {"role": "worker", "replicas": 1, "cpu": 0.1, "memory_mib": 16}]})
    jid = r.json()["id"]
    done = wait_state(alice, jid, "failed", timeout=20)
    assert done["error"] == "replica worker-0 failed: exit code 5"
    wait_for(lambda: all(x["state"] == "failed" for x in alice.get(f"/api/v1/jobs/{jid}").json()["replicas"]),
             what="replicas failed")
    assert not _live_allocs(alice, jid)


def test_resume_runs_a_new_attempt(alice, submit_custom, wait_state):
    cmd = ('echo attempt=$MODELYARD_ATTEMPT resume=$MODELYARD_RESUME; '
           'if [ ! -f $MODELYARD_CHECKPOINT_DIR/ckpt ]; then touch $MODELYARD_CHECKPOINT_DIR/ckpt; exit 1; fi')
    job = submit_custom(alice, cmd)
    failed = wait_state(alice, job["id"], "failed")
    assert failed["attempt"] == 1
    r = alice.post(f"/api/v1/jobs/{job['id']}/resume")
    assert r.status_code == 200 and r.json()["attempt"] == 2 and r.json()["state"] == "queued"
    done = wait_state(alice, job["id"], "succeeded")
    assert done["attempt"] == 2 and done["error"] is None and done["spec"]["resume"] is True
    log = _log(alice, job["id"])
    assert "attempt=1 resume=0" in log and "attempt=2 resume=1" in log
    assert alice.post(f"/api/v1/jobs/{job['id']}/resume").status_code == 409  # succeeded: not resumable


def test_metrics_are_ingested_as_time_series(alice, submit_custom, wait_for, wait_state):
    lines = "".join(json.dumps({"step": s, "epoch": s / 10, "loss": 2.0 / s, "learning_rate": 1e-4, "ts": 1000 + s})
                    + "\\n" for s in range(1, 6))
    cmd = f"printf '{lines}' >> $MODELYARD_METRICS_FILE; printf '{{\"step\": 6, \"loss\"' >> $MODELYARD_METRICS_FILE"
    job = submit_custom(alice, cmd)
    wait_state(alice, job["id"], "succeeded")
    m = wait_for(lambda: (lambda x: x if x["series"].get("loss") else None)(
        alice.get(f"/api/v1/jobs/{job['id']}/metrics").json()), what="metrics")
    assert m["series"]["loss"]["step"] == [1, 2, 3, 4, 5]  # the partial last line is not ingested
    assert m["series"]["loss"]["value"][0] == pytest.approx(2.0)
    assert set(m["series"]) == {"loss", "learning_rate", "epoch"}
    assert m["progress"]["step"] == 5 and m["progress"]["loss"] == pytest.approx(0.4)
    only = alice.get(f"/api/v1/jobs/{job['id']}/metrics", params={"name": "loss", "since_step": 3}).json()
    assert list(only["series"]) == ["loss"] and only["series"]["loss"]["step"] == [4, 5]
    png = alice.get(f"/api/v1/jobs/{job['id']}/metrics.png")
    assert png.status_code == 200 and png.content[:4] == b"\x89PNG"


def test_refused_custom_bodies_queue_nothing(alice):
    r = alice.post("/api/v1/jobs", json={"kind": "custom"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_command"
    r = alice.post("/api/v1/jobs", json={"kind": "custom", "command": "true", "working_dir": "../../etc"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_path"
    r = alice.post("/api/v1/jobs", json={"kind": "custom", "command": "true", "image": "nope:1"})
    assert r.status_code == 404
    r = alice.post("/api/v1/jobs", json={"kind": "custom", "command": "true", "roles": [{"role": "boss"}]})
    assert r.status_code == 422
    r = alice.post("/api/v1/jobs", json={"kind": "custom", "command": "true",
                                         "roles": [{"role": "master", "replicas": 2}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_resource"
    assert alice.get("/api/v1/jobs").json()["total"] == 0


def test_released_resources_start_the_next_job_without_polling(tmp_path, set_quota, submit_custom, wait_state):
    """poll_interval 30 s: only the event-driven wake-ups can start the second job in time."""
    from fastapi.testclient import TestClient

    from modelyard.server.app import create_app
    from tests.conftest import ADMIN_TOKEN, UserClient, make_settings

    s = make_settings(tmp_path / "h", background=True, scheduler={"poll_interval_s": 30, "cancel_grace_s": 1})
    with TestClient(create_app(s)) as tc:
        admin = UserClient(tc, ADMIN_TOKEN, tc.get("/api/v1/users/me",
                                                   headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json())
        set_quota(admin, admin.id, jobs=1)
        a = submit_custom(admin, "sleep 0.5")
        b = submit_custom(admin, "true")
        t0 = time.monotonic()
        da = wait_state(admin, a["id"], "succeeded", timeout=10)
        db = wait_state(admin, b["id"], "succeeded", timeout=10)
        assert time.monotonic() - t0 < 15
        from datetime import datetime

        gap = (datetime.fromisoformat(db["running_at"]) - datetime.fromisoformat(da["finished_at"])).total_seconds()
        assert 0 <= gap < 2.0, gap  # milliseconds when idle; the poll interval is 30 s
        first = (datetime.fromisoformat(da["running_at"]) - datetime.fromisoformat(da["queued_at"])).total_seconds()
        assert first < 2.0, first


def test_scheduler_loop_survives_a_bad_iteration(alice, monkeypatch, submit_custom, wait_state):
    from modelyard.server.scheduler import runner

    calls = {"n": 0}
    real = runner.reconcile

    def flaky(ctx):
        calls["n"] += 1
        if calls["n"] <= 2:
            raise RuntimeError("boom")
        return real(ctx)

    monkeypatch.setattr(runner, "reconcile", flaky)
    job = submit_custom(alice, "true")
    wait_state(alice, job["id"], "succeeded", timeout=20)
    assert calls["n"] > 2
    loop = ctx_of(alice).components["modelyard.server.scheduler.loop:component"]
    assert loop._thread.is_alive()


def test_concurrent_cancel_and_completion_never_double_release(alice, submit_custom, wait_state):
    """A job ending while it is being cancelled: exactly one terminal transition."""
    ids = [submit_custom(alice, "sleep 0.2")["id"] for _ in range(3)]
    for jid in ids:
        wait_state(alice, jid, "running")
    threads = [threading.Thread(target=alice.post, args=(f"/api/v1/jobs/{jid}/cancel",)) for jid in ids]
    time.sleep(0.15)
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for jid in ids:
        d = wait_state(alice, jid, ("succeeded", "cancelled"))
        terminal = [e for e in d["events"] if e["kind"] == "job.state_changed"
                    and e["data"]["to"] in ("succeeded", "cancelled", "failed")]
        assert len(terminal) == 1
        assert not _live_allocs(alice, jid)


def test_gpu_devices_are_assigned_per_replica(alice, set_quota, wait_state):
    """A node that reports 2 GPUs (faked in the database; the test needs no GPU): whole-GPU
    replicas get distinct CUDA_VISIBLE_DEVICES, a third waits for capacity, a vGPU replica shares."""
    from modelyard.server.orm import NodeModel

    with session_scope(ctx_of(alice).sessions) as s:
        for n in s.scalars(select(NodeModel)):
            n.gpu, n.vgpu = 2, 4
            n.gpu_info = [{"name": "FakeGPU", "memory_mib": 81920}, {"name": "FakeGPU", "memory_mib": 81920}]
    set_quota(alice, alice.id, gpu=4, vgpu=4, jobs=4)
    cmd = "echo cvd=[$CUDA_VISIBLE_DEVICES]; sleep 1"
    gpu_role = [{"role": "master", "cpu": 0.1, "memory_mib": 16, "gpu": {"num": 1, "mem_gib": 40}}]
    a = alice.post("/api/v1/jobs", json={"kind": "custom", "command": cmd, "roles": gpu_role}).json()
    b = alice.post("/api/v1/jobs", json={"kind": "custom", "command": cmd, "roles": gpu_role}).json()
    c = alice.post("/api/v1/jobs", json={"kind": "custom", "command": cmd, "roles": gpu_role}).json()
    v = alice.post("/api/v1/jobs", json={"kind": "custom", "command": cmd, "roles": [
        {"role": "master", "cpu": 0.1, "memory_mib": 16, "gpu": {"num": 1, "share": "vgpu"}}]}).json()
    too_big = alice.post("/api/v1/jobs", json={"kind": "custom", "command": cmd, "roles": [
        {"role": "master", "cpu": 0.1, "memory_mib": 16, "gpu": {"num": 1, "mem_gib": 100}}]})
    assert too_big.status_code == 400 and "GiB" in too_big.json()["error"]["message"]
    da, db = wait_state(alice, a["id"], "running"), wait_state(alice, b["id"], "running")
    assert sorted(da["replicas"][0]["devices"] + db["replicas"][0]["devices"]) == [0, 1]
    assert alice.get(f"/api/v1/jobs/{c['id']}").json()["state"] == "queued"  # both GPUs taken
    for j in (a, b, c, v):
        wait_state(alice, j["id"], "succeeded", timeout=30)
    logs = {j["id"]: _log(alice, j["id"]) for j in (a, b, c, v)}
    assert {logs[a["id"]].split("cvd=")[1][:3], logs[b["id"]].split("cvd=")[1][:3]} == {"[0]", "[1]"}
    assert logs[c["id"]].split("cvd=")[1][:3] in ("[0]", "[1]")
    assert logs[v["id"]].split("cvd=")[1][:3] in ("[0]", "[1]")
