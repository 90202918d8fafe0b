"""The allocation ledger on SQLite and PostgreSQL: quotas and node capacity hold under
concurrency (no over-commit), release gives room back, windows and cordons are respected."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from modelyard.core.errors import QuotaExceeded
from modelyard.core.ids import new_id
from modelyard.server.db import make_engine, make_sessionmaker, session_scope
from modelyard.server.orm import AllocationModel, Base, NodeModel, QuotaModel, UserModel
from modelyard.server.orm.base import utcnow
from modelyard.server.services.quota import ledger
from modelyard.server.services.quota.ledger import Part, Resources


@pytest.fixture
def sessions(db_url):
    engine = make_engine(db_url)
    Base.metadata.create_all(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


def add_user(sessions, name: str, *, cpu: float = 4, memory_mib: int = 64 * 1024, gpu: int = 0, jobs: int = 10,
             **quota) -> str:
    with session_scope(sessions) as s:
        u = UserModel(name=name, role="user")
        s.add(u)
        s.flush()
        s.add(QuotaModel(user_id=u.id, cpu=cpu, memory_mib=memory_mib, gpu=gpu, jobs=jobs, **quota))
        return u.id


def add_node(sessions, name: str, *, cpu: float = 8, memory_mib: int = 32 * 1024, gpu: int = 0) -> str:
    with session_scope(sessions) as s:
        n = NodeModel(name=name, cpu=cpu, memory_mib=memory_mib, gpu=gpu)
        s.add(n)
        s.flush()
        return n.id


def one(cpu: float = 1, memory_mib: int = 256, gpu: int = 0, node_id: str | None = None) -> list[Part]:
    return [Part("worker-0", Resources(cpu=cpu, memory_mib=memory_mib, gpu=gpu), node_id=node_id)]


def live_sum(sessions, **where):
    with session_scope(sessions, readonly=True) as s:
        conds = [AllocationModel.released_at.is_(None)]
        conds += [getattr(AllocationModel, k) == v for k, v in where.items()]
        cpu, rows = s.execute(select(func.coalesce(func.sum(AllocationModel.cpu), 0), func.count())
                              .where(*conds)).one()
        return float(cpu), int(rows)


def hammer(sessions, user_ids: list[str], n_threads: int, parts_fn=one) -> list[str]:
    """n_threads threads, each in its own session_scope, try to allocate at the same moment.
    Returns the consumer ids that got their allocation."""
    barrier = threading.Barrier(n_threads)
    won: list[str] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        cid = new_id()
        try:
            barrier.wait(timeout=60)
            with session_scope(sessions) as s:
                rows = ledger.try_allocate(s, user_id=user_ids[i % len(user_ids)], consumer_type="job",
                                           consumer_id=cid, parts=parts_fn())
            if rows is not None:
                with lock:
                    won.append(cid)
        except BaseException as exc:  # noqa: BLE001 - surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not errors, errors[:3]
    return won


def test_50_concurrent_allocations_never_overcommit_the_quota(sessions):
    uid = add_user(sessions, "alice", cpu=4, jobs=10)
    add_node(sessions, "n1", cpu=8)
    won = hammer(sessions, [uid], 50)
    assert len(won) == 4
    assert live_sum(sessions, user_id=uid) == (4.0, 4)
    with session_scope(sessions) as s:
        rem, jobs_left = ledger.remaining(s, uid)
        assert rem.cpu == 0 and jobs_left == 6
        assert ledger.try_allocate(s, user_id=uid, consumer_type="job", consumer_id=new_id(), parts=one()) is None
    # release makes room again, exactly as much as was released
    with session_scope(sessions) as s:
        assert ledger.release(s, consumer_type="job", consumer_id=won[0]) == 1
        assert ledger.release(s, consumer_type="job", consumer_id=won[0]) == 0  # idempotent
    assert live_sum(sessions, user_id=uid) == (3.0, 3)
    won2 = hammer(sessions, [uid], 20)
    assert len(won2) == 1
    assert live_sum(sessions, user_id=uid) == (4.0, 4)


def test_node_capacity_holds_across_users_under_concurrency(sessions):
    users = [add_user(sessions, f"u{i}", cpu=8, jobs=50) for i in range(3)]
    add_node(sessions, "n1", cpu=8)
    won = hammer(sessions, users, 45)
    assert len(won) == 8  # the node, not any one quota, is the limit
    cpu, rows = live_sum(sessions)
    assert (cpu, rows) == (8.0, 8)


def test_node_capacity_limits_across_users(sessions):
    a = add_user(sessions, "a", cpu=8)
    b = add_user(sessions, "b", cpu=8)
    node = add_node(sessions, "n1", cpu=8)
    with session_scope(sessions) as s:
        assert ledger.try_allocate(s, user_id=a, consumer_type="job", consumer_id="ja", parts=one(cpu=6)) is not None
    with session_scope(sessions) as s:
        # b's quota allows 4 but only 2 CPUs are left on the node
        assert ledger.try_allocate(s, user_id=b, consumer_type="job", consumer_id="jb", parts=one(cpu=4)) is None
        with pytest.raises(QuotaExceeded) as exc:
            ledger.allocate(s, user_id=b, consumer_type="job", consumer_id="jb", parts=one(cpu=4))
        assert exc.value.details["remaining"]["cpu"] == 8  # b's quota is untouched
        rows = ledger.allocate(s, user_id=b, consumer_type="job", consumer_id="jb2", parts=one(cpu=2))
        assert rows[0].node_id == node
    with session_scope(sessions, readonly=True) as s:
        assert ledger.node_usage(s, node).cpu == 8


def test_all_or_nothing_multi_part_and_best_fit(sessions):
    uid = add_user(sessions, "alice", cpu=32, jobs=4)
    big = add_node(sessions, "big", cpu=16)
    small = add_node(sessions, "small", cpu=4)
    parts = [Part(f"worker-{i}", Resources(cpu=4, memory_mib=128)) for i in range(3)]
    with session_scope(sessions) as s:
        rows = ledger.allocate(s, user_id=uid, consumer_type="job", consumer_id="j1", parts=parts)
        assert len(rows) == 3
        # best fit fills the small node first; only one part counts as a job
        assert sorted(r.node_id == small for r in rows) == [False, False, True]
        assert sum(r.counts_as_job for r in rows) == 1
    with session_scope(sessions) as s:
        # 8 CPUs free on big, none on small: a 3x4 job does not fit and nothing is written
        assert ledger.try_allocate(s, user_id=uid, consumer_type="job", consumer_id="j2", parts=parts) is None
    assert live_sum(sessions, consumer_id="j2") == (0.0, 0)
    with session_scope(sessions, readonly=True) as s:
        assert ledger.user_usage(s, uid).jobs == 1
        assert ledger.node_usage(s, big).cpu == 8


def test_jobs_quota_and_window_and_cordon(sessions):
    uid = add_user(sessions, "alice", cpu=8, jobs=1)
    node = add_node(sessions, "n1", cpu=8)
    with session_scope(sessions) as s:
        assert ledger.try_allocate(s, user_id=uid, consumer_type="job", consumer_id="j1", parts=one()) is not None
        assert ledger.try_allocate(s, user_id=uid, consumer_type="job", consumer_id="j2", parts=one()) is None
        # a service replica that does not count as a job still fits
        assert ledger.try_allocate(s, user_id=uid, consumer_type="service", consumer_id="s1", parts=one(),
                                   counts_as_job=False) is not None
    with session_scope(sessions) as s:
        ledger.release(s, consumer_type="job", consumer_id="j1")
        q = s.get(QuotaModel, uid)
        q.end_at = utcnow() - timedelta(minutes=1)
    with session_scope(sessions) as s:
        assert ledger.try_allocate(s, user_id=uid, consumer_type="job", consumer_id="j3", parts=one()) is None
        assert any("window ended" in r for r in ledger.never_fits(s, user_id=uid, parts=one()))
        q = s.get(QuotaModel, uid)
        q.end_at, q.start_at = None, utcnow() + timedelta(hours=1)
    with session_scope(sessions) as s:
        assert ledger.try_allocate(s, user_id=uid, consumer_type="job", consumer_id="j3", parts=one()) is None
        s.get(QuotaModel, uid).start_at = utcnow() - timedelta(hours=1)
        s.get(NodeModel, node).status = "cordoned"
    with session_scope(sessions) as s:
        assert ledger.try_allocate(s, user_id=uid, consumer_type="job", consumer_id="j3", parts=one()) is None
        s.get(NodeModel, node).status = "ready"
    with session_scope(sessions) as s:
        assert ledger.try_allocate(s, user_id=uid, consumer_type="job", consumer_id="j3", parts=one()) is not None


def test_never_fits_explains(sessions):
    uid = add_user(sessions, "alice", cpu=4, gpu=0)
    add_node(sessions, "n1", cpu=8, gpu=1)
    with session_scope(sessions) as s:
        reasons = ledger.never_fits(s, user_id=uid, parts=one(cpu=2, gpu=1))
        assert any("gpu" in r and "quota" in r for r in reasons)
        reasons = ledger.never_fits(s, user_id=uid, parts=one(cpu=16))
        assert any("largest node" in r for r in reasons) and any("quota" in r for r in reasons)
        assert ledger.never_fits(s, user_id=uid, parts=one(cpu=2)) == []


def test_long_lived_session_sees_changes_made_elsewhere(sessions):
    """A loop that keeps one session across commits (expire_on_commit=False) must not decide on
    the quota or node rows it loaded earlier."""
    uid = add_user(sessions, "alice", cpu=8)
    node = add_node(sessions, "n1", cpu=8)
    loop = sessions()
    try:
        assert ledger.get_quota(loop, uid).cpu == 8
        loop.scalars(select(NodeModel)).all()
        loop.commit()
        with session_scope(sessions) as s:
            s.get(QuotaModel, uid).cpu = 1
        assert ledger.try_allocate(loop, user_id=uid, consumer_type="job", consumer_id="j1", parts=one(cpu=2)) is None
        loop.commit()
        with session_scope(sessions) as s:
            s.get(QuotaModel, uid).cpu = 8
            s.get(NodeModel, node).status = "cordoned"
        assert ledger.try_allocate(loop, user_id=uid, consumer_type="job", consumer_id="j1", parts=one(cpu=2)) is None
        loop.commit()
    finally:
        loop.close()


def test_allocating_in_a_readonly_session_still_serialises(sessions):
    uid = add_user(sessions, "alice", cpu=4)
    add_node(sessions, "n1", cpu=8)
    with session_scope(sessions, readonly=True) as s:
        assert ledger.try_allocate(s, user_id=uid, consumer_type="job", consumer_id="j1", parts=one()) is not None
    assert live_sum(sessions, user_id=uid) == (1.0, 1)


def test_a_cordoned_node_makes_jobs_wait_not_fail(sessions):
    uid = add_user(sessions, "alice", cpu=8)
    node = add_node(sessions, "n1", cpu=8)
    with session_scope(sessions) as s:
        s.get(NodeModel, node).status = "cordoned"
    with session_scope(sessions) as s:
        assert ledger.never_fits(s, user_id=uid, parts=one(cpu=4)) == []
        assert ledger.try_allocate(s, user_id=uid, consumer_type="job", consumer_id="j", parts=one(cpu=4)) is None
        s.get(NodeModel, node).status = "offline"
    with session_scope(sessions) as s:
        assert any("largest node" in r for r in ledger.never_fits(s, user_id=uid, parts=one(cpu=4)))
