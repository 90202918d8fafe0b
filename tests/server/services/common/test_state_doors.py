"""Every entity's door: an illegal edge is refused (IllegalTransition, 409) and changes nothing; a
legal move compare-and-sets, so a second move from the same stale state raises StaleState."""

from __future__ import annotations

from datetime import timedelta

import pytest

from modelyard.core.states import IllegalTransition
from modelyard.server.db import session_scope
from modelyard.server.orm.base import utcnow
from modelyard.server.orm.files import UploadModel
from modelyard.server.orm.jobs import JobModel, JobReplicaModel
from modelyard.server.orm.searches import SearchModel, SearchTrialModel
from modelyard.server.services.common.door import StaleState
from modelyard.server.services.jobs.states import JOB_DOOR, REPLICA_DOOR
from modelyard.server.services.searches.states import SEARCH_DOOR, TRIAL_DOOR
from modelyard.server.services.uploads.states import UPLOAD_DOOR

SPEC = {"roles": [{"role": "master", "replicas": 1, "cpu": 0.5, "memory_mib": 64, "gpu": {}}]}


def _job(s, owner_id, state="running"):
    j = JobModel(owner_id=owner_id, name="t", kind="custom", state=state, spec=SPEC)
    s.add(j)
    s.flush()
    return j


def _search(s, owner_id):
    row = SearchModel(owner_id=owner_id, name="s", state="running", algorithm="random", objective_metric="loss",
                      direction="minimize", max_trials=2)
    s.add(row)
    s.flush()
    return row


def make_job(s, uid):
    return _job(s, uid)


def make_replica(s, uid):
    rep = JobReplicaModel(job_id=_job(s, uid).id, role="master", index=0, state="running")
    s.add(rep)
    s.flush()
    return rep


def make_upload(s, uid):
    up = UploadModel(owner_id=uid, root="users", path="a.bin", size=1, sha256="0" * 64, chunk_size=1,
                     chunk_count=1, state="open", expires_at=utcnow() + timedelta(hours=1))
    s.add(up)
    s.flush()
    return up


def make_search(s, uid):
    return _search(s, uid)


def make_trial(s, uid):
    t = SearchTrialModel(search_id=_search(s, uid).id, number=0, state="running")
    s.add(t)
    s.flush()
    return t


# door, factory, an illegal target from the initial state, a legal one, a second legal one
CASES = {
    "job": (JOB_DOOR, make_job, "queued", "cancelled", "failed"),
    "replica": (REPLICA_DOOR, make_replica, "pending", "succeeded", "failed"),
    "upload": (UPLOAD_DOOR, make_upload, "completed", "completing", "aborted"),
    "search": (SEARCH_DOOR, make_search, "running", "cancelled", "failed"),
    "trial": (TRIAL_DOOR, make_trial, "running", "complete", "pruned"),
}


@pytest.mark.parametrize("entity", sorted(CASES))
def test_illegal_edge_is_refused(app_client, admin, entity):
    door, make, illegal, _, _ = CASES[entity]
    ctx = app_client.app.state.ctx
    with session_scope(ctx.sessions) as s:
        obj = make(s, admin.id)
        model, oid, before = type(obj), obj.id, obj.state
    with session_scope(ctx.sessions) as s:
        obj = s.get(model, oid)
        with pytest.raises(IllegalTransition) as ei:
            door.move(s, obj, illegal)
        assert ei.value.code == "invalid_transition" and ei.value.status == 409
    with session_scope(ctx.sessions) as s:
        assert s.get(model, oid).state == before


@pytest.mark.parametrize("entity", sorted(CASES))
def test_legal_move_compare_and_sets(app_client, admin, entity):
    door, make, _, legal, other = CASES[entity]
    ctx = app_client.app.state.ctx
    with session_scope(ctx.sessions) as s:
        obj = make(s, admin.id)
        model, oid, before = type(obj), obj.id, obj.state
    s1 = ctx.sessions()
    stale = s1.get(model, oid)
    s1.commit()  # keep the loaded (soon stale) object, release SQLite's lock
    with session_scope(ctx.sessions) as s:
        door.move(s, s.get(model, oid), legal, reason="first")
    assert stale.state == before
    with pytest.raises(StaleState):
        door.move(s1, stale, other, reason="late")
    s1.rollback()
    s1.close()
    with session_scope(ctx.sessions) as s:
        assert s.get(model, oid).state == legal
