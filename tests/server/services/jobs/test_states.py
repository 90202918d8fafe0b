"""The job state machine: every edge, refused edges, timestamps, events, release on terminal states,
and compare-and-set against a concurrent actor."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from modelyard.core.enums import JobState
from modelyard.core.errors import Conflict
from modelyard.core.states import JOB
from modelyard.server.db import session_scope
from modelyard.server.orm import AllocationModel, EventModel
from modelyard.server.orm.jobs import JobModel
from modelyard.server.services.jobs import StaleState, check_edge, transition
from modelyard.server.services.quota import ledger

S = JobState


def _job(ctx, owner_id: str, state: str = "pending") -> str:
    with session_scope(ctx.sessions) as s:
        j = JobModel(owner_id=owner_id, name="t", kind="custom", state=state,
                     spec={"roles": [{"role": "master", "replicas": 1, "cpu": 0.5, "memory_mib": 64, "gpu": {}}]})
        s.add(j)
        s.flush()
        return j.id


def test_edges_table_is_the_documented_machine():
    assert JOB.edges[S.pending] == {S.queued, S.failed, S.cancelled}
    assert JOB.edges[S.queued] == {S.starting, S.failed, S.cancelled}
    assert JOB.edges[S.starting] == {S.running, S.failed, S.cancelled}
    assert JOB.edges[S.running] == {S.succeeded, S.failed, S.cancelled}
    assert JOB.edges[S.failed] == {S.queued} and JOB.edges[S.cancelled] == {S.queued}  # resume
    assert JOB.edges[S.succeeded] == set()
    allowed = {(a, b) for a, bs in JOB.edges.items() for b in bs}
    for a in S:
        for b in S:
            if (a, b) in allowed:
                check_edge(a, b)
            else:
                with pytest.raises(Conflict) as ei:
                    check_edge(a, b)
                assert ei.value.code == "invalid_transition"


def test_happy_path_timestamps_events_and_release(app_client, admin):
    ctx = app_client.app.state.ctx
    jid = _job(ctx, admin.id)
    with session_scope(ctx.sessions) as s:
        job = s.get(JobModel, jid)
        transition(s, job, S.queued, actor_id=admin.id, reason="admitted")
        assert job.queued_at is not None and job.state == "queued"
    with session_scope(ctx.sessions) as s:
        job = s.get(JobModel, jid)
        rows = ledger.try_allocate(s, user_id=admin.id, consumer_type="job", consumer_id=jid,
                                   parts=[ledger.Part("master-0", ledger.Resources(cpu=0.5, memory_mib=64))])
        assert rows
        transition(s, job, S.starting)
        transition(s, job, S.running)
        assert job.started_at and job.running_at and job.finished_at is None
    with session_scope(ctx.sessions) as s:
        assert ledger.user_usage(s, admin.id).used.cpu == pytest.approx(0.5)
        job = s.get(JobModel, jid)
        transition(s, job, S.succeeded, reason="done")
    with session_scope(ctx.sessions) as s:
        job = s.get(JobModel, jid)
        assert job.state == "succeeded" and job.finished_at is not None and job.error is None
        live = s.scalars(select(AllocationModel).where(AllocationModel.consumer_id == jid,
                                                       AllocationModel.released_at.is_(None))).all()
        assert live == [] and ledger.user_usage(s, admin.id).used.cpu == 0
        evs = s.scalars(select(EventModel).where(EventModel.object_id == jid).order_by(EventModel.id)).all()
        assert [(e.data["from"], e.data["to"]) for e in evs] == [
            ("pending", "queued"), ("queued", "starting"), ("starting", "running"), ("running", "succeeded")]
        assert evs[0].actor_id == admin.id and evs[-1].data["released_allocations"] == 1


def test_refused_edge_changes_nothing(app_client, admin):
    ctx = app_client.app.state.ctx
    jid = _job(ctx, admin.id, state="queued")
    with session_scope(ctx.sessions) as s:
        job = s.get(JobModel, jid)
        with pytest.raises(Conflict):
            transition(s, job, S.running)
        with pytest.raises(Conflict):
            transition(s, job, S.succeeded)
    with session_scope(ctx.sessions) as s:
        assert s.get(JobModel, jid).state == "queued"
        assert s.scalars(select(EventModel).where(EventModel.object_id == jid)).all() == []


def test_failed_records_reason_and_resume_resets(app_client, admin):
    ctx = app_client.app.state.ctx
    jid = _job(ctx, admin.id, state="running")
    with session_scope(ctx.sessions) as s:
        job = s.get(JobModel, jid)
        transition(s, job, S.failed, reason="replica master-0 failed: exit code 3")
    with session_scope(ctx.sessions) as s:
        job = s.get(JobModel, jid)
        assert job.error == "replica master-0 failed: exit code 3" and job.finished_at
        transition(s, job, S.queued, reason="resumed")
        assert job.error is None and job.finished_at is None and job.queued_at


def test_compare_and_set_loses_to_a_concurrent_actor(app_client, admin):
    """Two sessions read the job as running; the first moves it; the second must not."""
    ctx = app_client.app.state.ctx
    jid = _job(ctx, admin.id, state="running")
    s1 = ctx.sessions()
    stale = s1.get(JobModel, jid)
    assert stale.state == "running"
    s1.commit()  # keep the loaded (now stale) object, release SQLite's lock
    with session_scope(ctx.sessions) as s:
        transition(s, s.get(JobModel, jid), S.cancelled, reason="user")
    with pytest.raises(StaleState):
        transition(s1, stale, S.failed, reason="late")
    s1.rollback()
    s1.close()
    with session_scope(ctx.sessions) as s:
        job = s.get(JobModel, jid)
        assert job.state == "cancelled" and job.error is None
        kinds = [e.data["to"] for e in s.scalars(select(EventModel).where(EventModel.object_id == jid))]
        assert kinds == ["cancelled"]
