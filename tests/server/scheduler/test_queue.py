"""Admission and queue order: never-fitting jobs refused at submit, urgent/priority/FIFO order,
who may pass a job that does not fit, and all-or-nothing placement. Passes are run by hand here
(the app's background loop is off); test_concurrency.py runs the real loop."""

from __future__ import annotations

from sqlalchemy import func, select

from modelyard.server.db import session_scope
from modelyard.server.orm import AllocationModel, NodeModel
from modelyard.server.orm.jobs import JobModel, JobReplicaModel
from modelyard.server.scheduler import queue
from modelyard.server.services.jobs import transition


def _ctx(client):
    return client.tc.app.state.ctx


def _quota(client, uid, **kw):
    from modelyard.server.services.quota import ledger

    with session_scope(_ctx(client).sessions) as s:
        q = ledger.get_quota(s, uid)
        for k, v in kw.items():
            setattr(q, k, v)


def _node(client, **kw):
    with session_scope(_ctx(client).sessions) as s:
        for n in s.scalars(select(NodeModel)):
            for k, v in kw.items():
                setattr(n, k, v)


def _submit(user, name, *, cpu=0.5, mem=64, expect=201, **kw):
    body = {"kind": "custom", "name": name, "command": "true",
            "roles": [{"role": "master", "replicas": 1, "cpu": cpu, "memory_mib": mem}], **kw}
    r = user.post("/api/v1/jobs", json=body)
    assert r.status_code == expect, r.text
    return r.json()


def _finish(client, job_id):
    with session_scope(_ctx(client).sessions) as s:
        transition(s, s.get(JobModel, job_id), "cancelled", reason="test")


def _state(client, job_id):
    with session_scope(_ctx(client).sessions) as s:
        return s.get(JobModel, job_id).state


def _jobs_count(client):
    with session_scope(_ctx(client).sessions) as s:
        return s.scalar(select(func.count()).select_from(JobModel))


def test_never_fitting_jobs_are_refused_with_what_is_short(alice):
    _quota(alice, alice.id, cpu=2, memory_mib=4096, gpu=0, jobs=2)
    r = alice.post("/api/v1/jobs", json={"kind": "custom", "command": "true",
                                         "roles": [{"role": "master", "cpu": 1, "memory_mib": 1024},
                                                   {"role": "worker", "replicas": 3, "cpu": 1, "memory_mib": 1024}]})
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert err["code"] == "quota_exceeded"
    assert "needs 4 cpu in total but the user's quota is 2 (short by 2)" in err["message"]
    assert any("cpu" in x for x in err["details"]["reasons"])
    r = alice.post("/api/v1/jobs", json={"kind": "custom", "command": "true",
                                         "roles": [{"cpu": 1, "memory_mib": 64, "gpu": {"num": 1}}]})
    assert r.status_code == 403 and "gpu" in r.json()["error"]["message"]
    # bigger than every node (quota large enough): 400 never_fits naming the largest node
    _quota(alice, alice.id, cpu=100000, memory_mib=10**9)
    r = alice.post("/api/v1/jobs", json={"kind": "custom", "command": "true", "roles": [{"cpu": 1000, "memory_mib": 64}]})
    assert r.status_code == 400 and r.json()["error"]["code"] == "never_fits"
    assert "largest node" in r.json()["error"]["message"]
    assert _jobs_count(alice) == 0  # nothing queued, nothing written


def test_urgent_then_priority_then_fifo(alice):
    _quota(alice, alice.id, jobs=1, can_urgent=True)  # urgent needs the allowance
    a = _submit(alice, "a")
    b = _submit(alice, "b", priority=5)
    c = _submit(alice, "c", is_urgent=True)
    d = _submit(alice, "d")
    e = _submit(alice, "e", priority=5)
    order = []
    for _ in range(5):
        res = queue.schedule_pass(_ctx(alice), launch=False)
        assert len(res.started) == 1, res
        order.append(res.started[0])
        _finish(alice, res.started[0])
    assert order == [c["id"], b["id"], e["id"], a["id"], d["id"]]


def test_quota_blocked_job_holds_back_its_owner_only(alice, bob):
    _quota(alice, alice.id, cpu=1, jobs=4)
    big = _submit(alice, "big", cpu=1)
    small1 = _submit(alice, "small1", cpu=0.25)
    # alice's 'big' runs; then her next job does not fit her quota
    assert queue.schedule_pass(_ctx(alice), launch=False).started == [big["id"]]
    wants_all = _submit(alice, "wants-all", cpu=1)
    small2 = _submit(alice, "small2", cpu=0.25)
    bobs = _submit(bob, "bobs", cpu=0.5)
    res = queue.schedule_pass(_ctx(alice), launch=False)
    # small1 was queued before big finished and fits (0 left?) -> no: big holds alice's whole cpu
    assert res.started == [bobs["id"]], res
    assert _state(alice, small1["id"]) == "queued" and _state(alice, small2["id"]) == "queued"
    detail = alice.get(f"/api/v1/jobs/{small1['id']}").json()
    assert "quota" in detail["waiting_reason"]
    _finish(alice, big["id"])
    res = queue.schedule_pass(_ctx(alice), launch=False)
    # FIFO for alice: small1 (0.25) then wants-all (1.0) does not fit -> small2 must not pass it
    assert res.started == [small1["id"]]
    assert _state(alice, wants_all["id"]) == "queued" and _state(alice, small2["id"]) == "queued"
    _finish(alice, small1["id"])
    assert queue.schedule_pass(_ctx(alice), launch=False).started == [wants_all["id"]]


def _hog_head_tiny(alice, bob, carol) -> tuple[dict, dict, dict]:
    """alice's hog holds 1.5 of 2 cores; bob's head needs 1 (cannot fit); carol's tiny needs 0.1."""
    _node(alice, cpu=2.0, memory_mib=8192)
    hog = _submit(alice, "hog", cpu=1.5)
    assert queue.schedule_pass(_ctx(alice), launch=False).started == [hog["id"]]
    return hog, _submit(bob, "needs-1", cpu=1.0), _submit(carol, "tiny", cpu=0.1)


def test_capacity_blocked_head_is_not_starved(alice, bob, make_user):
    _ctx(alice).settings.scheduler.backfill_head_max_wait_s = 0  # the head has waited long enough
    hog, head, tiny = _hog_head_tiny(alice, bob, make_user("carol"))
    res = queue.schedule_pass(_ctx(alice), launch=False)
    assert res.started == [] and res.waiting_capacity == head["id"]
    assert "node capacity" in bob.get(f"/api/v1/jobs/{head['id']}").json()["waiting_reason"]
    assert _state(alice, tiny["id"]) == "queued"  # no backfill past the head
    _finish(alice, hog["id"])
    assert queue.schedule_pass(_ctx(alice), launch=False).started == [head["id"], tiny["id"]]


def test_backfill_passes_a_young_head_then_stops(alice, bob, make_user):
    carol = make_user("carol")
    _hog, head, tiny = _hog_head_tiny(alice, bob, carol)
    # the head cannot fit; it has waited less than the bound: the tiny job uses the idle capacity
    res = queue.schedule_pass(_ctx(alice), launch=False)
    assert res.started == [tiny["id"]] and res.waiting_capacity == head["id"]
    assert _state(bob, head["id"]) == "queued"
    # once the head has waited past the bound, nothing more passes it
    _ctx(alice).settings.scheduler.backfill_head_max_wait_s = 0
    tiny2 = _submit(carol, "tiny2", cpu=0.1)
    res = queue.schedule_pass(_ctx(alice), launch=False)
    assert res.started == [] and _state(carol, tiny2["id"]) == "queued"


def test_node_placement_is_honoured(alice, admin):
    with session_scope(_ctx(alice).sessions) as s:  # a roomier second node: best fit alone would avoid it
        n = NodeModel(name="node-b", cpu=8.0, memory_mib=16384)
        s.add(n)
        s.flush()
        other = {"id": n.id, "name": n.name}
    r = alice.post("/api/v1/jobs", json={"kind": "custom", "command": "true", "node_names": [other["name"]],
                                         "roles": [{"cpu": 0.5, "memory_mib": 64}]})
    assert r.status_code == 201, r.text
    assert queue.schedule_pass(_ctx(alice), launch=False).started == [r.json()["id"]]
    with session_scope(_ctx(alice).sessions, readonly=True) as s:
        nodes = set(s.scalars(select(AllocationModel.node_id).where(AllocationModel.consumer_id == r.json()["id"])))
    assert nodes == {other["id"]}
    r = alice.post("/api/v1/jobs", json={"kind": "custom", "command": "true", "node_names": ["nope"]})
    assert r.status_code == 404 and r.json()["error"]["code"] == "node_not_found"


def test_multi_replica_all_or_nothing_and_replica_rows(alice):
    _node(alice, cpu=2.0, memory_mib=8192)
    _quota(alice, alice.id, cpu=8, jobs=4)
    blocker = _submit(alice, "blocker", cpu=1.0)
    assert queue.schedule_pass(_ctx(alice), launch=False).started == [blocker["id"]]
    r = alice.post("/api/v1/jobs", json={"kind": "custom", "command": "true",
                                         "roles": [{"role": "master", "cpu": 0.5, "memory_mib": 64},
                                                   {"role": "worker", "replicas": 2, "cpu": 0.5, "memory_mib": 64}]})
    dist = r.json()
    assert r.status_code == 201
    assert queue.schedule_pass(_ctx(alice), launch=False).started == []  # 1.5 cpu > 1.0 free: none placed
    with session_scope(_ctx(alice).sessions) as s:
        assert s.scalar(select(func.count()).select_from(AllocationModel).where(
            AllocationModel.consumer_id == dist["id"])) == 0
    _finish(alice, blocker["id"])
    assert queue.schedule_pass(_ctx(alice), launch=False).started == [dist["id"]]
    with session_scope(_ctx(alice).sessions) as s:
        reps = s.scalars(select(JobReplicaModel).where(JobReplicaModel.job_id == dist["id"])
                         .order_by(JobReplicaModel.rank)).all()
        assert [(r.role, r.index, r.rank, r.state) for r in reps] == [
            ("master", 0, 0, "starting"), ("worker", 0, 1, "starting"), ("worker", 1, 2, "starting")]
        allocs = s.scalars(select(AllocationModel).where(AllocationModel.consumer_id == dist["id"])).all()
        assert sorted(a.part for a in allocs) == ["master-0", "worker-0", "worker-1"]
        assert sum(a.counts_as_job for a in allocs) == 1


def test_cancel_queued_job_is_immediate_and_pass_skips_it(alice):
    _quota(alice, alice.id, jobs=1)
    a = _submit(alice, "a")
    b = _submit(alice, "b")
    r = alice.post(f"/api/v1/jobs/{a['id']}/cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    assert alice.post(f"/api/v1/jobs/{a['id']}/cancel").status_code == 409
    assert queue.schedule_pass(_ctx(alice), launch=False).started == [b["id"]]


def test_one_pass_over_a_thousand_queued_jobs_is_fast(alice, make_user):
    import time

    users = [alice] + [make_user() for _ in range(9)]
    ctx = _ctx(alice)
    with session_scope(ctx.sessions) as s:
        from modelyard.core.enums import JobState
        from modelyard.server.orm.base import utcnow

        now = utcnow()
        for i in range(1000):
            u = users[i % len(users)]
            roles = [{"role": "master", "replicas": 1, "cpu": 0.01, "memory_mib": 1, "gpu": {}}]
            s.add(JobModel(owner_id=u.id, name=f"j{i}", kind="custom", state=JobState.queued.value, queued_at=now,
                           roles=roles, spec={"roles": roles, "argv": ["true"]}))
    t0 = time.perf_counter()
    res = queue.schedule_pass(ctx, launch=False)
    took = time.perf_counter() - t0
    assert len(res.started) == 40  # 10 users x default quota of 4 concurrent jobs
    assert took < 5.0, took  # bench/bench_jobs.py measures it properly (target < 1 s)


def test_job_caught_in_starting_is_relaunched_at_recovery(alice, wait_for):
    """The server died after admitting a job (starting, resources held) and maybe after starting a
    replica it never recorded: recovery kills that orphan and launches the job properly."""
    import psutil

    from modelyard.server.executors.local import LocalProcessExecutor
    from modelyard.server.scheduler import runner

    ctx = _ctx(alice)
    body = {"kind": "custom", "command": "sleep 0.2", "roles": [{"cpu": 0.1, "memory_mib": 16}]}
    job = alice.post("/api/v1/jobs", json=body).json()
    res = queue.schedule_pass(ctx, launch=False)
    assert res.started == [job["id"]] and _state(alice, job["id"]) == "starting"
    # a replica started by the dead server but never recorded (only its launch.json exists)
    with session_scope(ctx.sessions, readonly=True) as s:
        row = s.get(JobModel, job["id"])
        launches = runner.build_launches(ctx, row, list(s.scalars(select(JobReplicaModel).where(
            JobReplicaModel.job_id == job["id"]))), {n.id: n for n in s.scalars(select(NodeModel))})
    launches[0].argv = ["/bin/sh", "-c", "sleep 60"]
    (orphan,) = LocalProcessExecutor().submit(launches)
    assert psutil.pid_exists(orphan.pid)
    stats = runner.recover(ctx)
    assert stats["relaunched"] >= 1
    wait_for(lambda: not psutil.pid_exists(orphan.pid) or psutil.Process(orphan.pid).status() == "zombie",
             what="orphan killed")

    def ended():
        runner.reconcile(ctx)
        return _state(alice, job["id"]) == "succeeded"

    wait_for(ended, timeout=20, what="relaunched job succeeded")
    with session_scope(ctx.sessions, readonly=True) as s:
        assert s.scalar(select(func.count()).select_from(AllocationModel).where(
            AllocationModel.consumer_id == job["id"], AllocationModel.released_at.is_(None))) == 0
