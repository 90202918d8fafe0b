"""50 jobs submitted concurrently against a small quota, with several schedulers racing the
background loop, on SQLite and PostgreSQL: the quota is never over-committed at any moment, and
every job eventually runs and succeeds as resources free up (released resources start the next
job at once)."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from modelyard.server.db import session_scope
from modelyard.server.orm import AllocationModel
from modelyard.server.orm.jobs import JobModel
from modelyard.server.scheduler import queue

pytestmark = [pytest.mark.background, pytest.mark.timeout(300)]

QUOTA_CPU, QUOTA_JOBS, JOB_CPU, N = 0.3, 3, 0.1, 50


def _sweep_max(intervals: list[tuple[float, float, float]]) -> tuple[int, float]:
    """Max number of overlapping intervals and max summed weight."""
    points = []
    for start, end, w in intervals:
        points.append((start, 1, w))
        points.append((end, -1, -w))
    points.sort(key=lambda p: (p[0], p[1]))  # ends before starts at the same instant
    n = best_n = 0
    w = best_w = 0.0
    for _t, dn, dw in points:
        n += dn
        w += dw
        best_n, best_w = max(best_n, n), max(best_w, w)
    return best_n, best_w


def test_fifty_concurrent_submits_never_overcommit(any_db_make_user, caplog, ctx_of, set_quota, wait_for):
    alice = any_db_make_user("alice")
    ctx = ctx_of(alice)
    set_quota(alice, alice.id, cpu=QUOTA_CPU, memory_mib=100_000, jobs=QUOTA_JOBS)
    stop = threading.Event()
    samples: list[tuple[float, int]] = []
    errors: list[BaseException] = []

    def sampler():
        while not stop.is_set():
            try:
                with session_scope(ctx.sessions, readonly=True) as s:
                    cpu, n = s.execute(select(func.coalesce(func.sum(AllocationModel.cpu), 0),
                                              func.count(func.distinct(AllocationModel.consumer_id)))
                                       .where(AllocationModel.user_id == alice.id,
                                              AllocationModel.released_at.is_(None))).one()
                samples.append((float(cpu), int(n)))
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
            time.sleep(0.003)

    def racer():  # extra schedulers competing with the background loop
        while not stop.is_set():
            try:
                queue.schedule_pass(ctx)
            except Exception as exc:  # noqa: BLE001
                errors.append(exc)
            time.sleep(0.005)

    def submit(i: int) -> str:
        r = alice.post("/api/v1/jobs", json={
            "kind": "custom", "name": f"c{i}", "command": "sleep 0.3",
            "roles": [{"role": "master", "replicas": 1, "cpu": JOB_CPU, "memory_mib": 16}]})
        assert r.status_code == 201, r.text
        return r.json()["id"]

    threads = [threading.Thread(target=sampler)] + [threading.Thread(target=racer) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        with ThreadPoolExecutor(max_workers=N) as pool:
            ids = list(pool.map(submit, range(N)))
        assert len(set(ids)) == N

        def all_done():
            with session_scope(ctx.sessions, readonly=True) as s:
                states = dict(s.execute(select(JobModel.state, func.count()).group_by(JobModel.state)).all())
            return states if states.get("succeeded") == N else None

        wait_for(all_done, timeout=240, interval=0.2, what="all 50 jobs succeeded")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors, errors[:3]
    # no scheduler step failed along the way (e.g. two passes racing for the same job)
    failures = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not failures, failures[:3]
    assert samples, "sampler saw nothing"
    assert max(c for c, _ in samples) <= QUOTA_CPU + 1e-9
    assert max(n for _, n in samples) <= QUOTA_JOBS
    assert max(n for _, n in samples) == QUOTA_JOBS  # the quota was actually used in full
    with session_scope(ctx.sessions, readonly=True) as s:
        rows = s.execute(select(AllocationModel.created_at, AllocationModel.released_at, AllocationModel.cpu)
                         .where(AllocationModel.user_id == alice.id)).all()
        assert len(rows) == N and all(r.released_at is not None for r in rows)  # nothing leaked
        n_max, cpu_max = _sweep_max([(r.created_at.timestamp(), r.released_at.timestamp(), r.cpu) for r in rows])
        assert n_max <= QUOTA_JOBS and cpu_max <= QUOTA_CPU + 1e-9
        jobs = s.scalars(select(JobModel)).all()
        assert all(j.state == "succeeded" and j.attempt == 1 for j in jobs)
        # each job started exactly once (no double admission by the racing schedulers)
        from modelyard.server.orm import EventModel

        starts = s.scalar(select(func.count()).select_from(EventModel).where(
            EventModel.kind == "job.state_changed", EventModel.message.like("queued -> starting%")))
        assert starts == N
