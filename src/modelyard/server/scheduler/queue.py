"""The queue: which queued job starts next, and admission (queued -> starting).

Order: is_urgent desc, priority desc, queued_at asc (FIFO within a priority; a resumed job queues
again at the time of its resume), id asc.

Each job is admitted in ONE transaction: ledger.try_allocate places every replica on a node and
takes the resources from the owner's quota (all replicas or none), the replica rows are written
with their node and GPU devices, and the job moves to `starting` (compare-and-set). Concurrent
passes (threads, or another process on the same PostgreSQL database) therefore never over-commit
and never admit a job twice: the ledger lock serialises the resource decision and the state CAS
lets exactly one of them move the job.

A job that does not fit now stays queued, and the pass decides who may pass it:
- short of its owner's QUOTA (cpu, memory, GPUs, job slots, quota window): the owner's later jobs
  are held back behind it (no passing within a user, so a big job is not starved by its owner's
  own stream of small ones), but other users' jobs go on: they do not compete for that quota.
- short of NODE CAPACITY: jobs behind it that fit may start (backfill: idle capacity is used)
  until the head has waited settings.scheduler.backfill_head_max_wait_s; from then on nothing
  passes it (the pass stops there), so freed capacity goes to it first and a large job cannot be
  starved by a stream of smaller ones that keep slipping into the gaps.
Because the head job is retried first on every pass, a job only waits for jobs ahead of it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from modelyard.core.enums import JobState
from modelyard.server.db import session_scope
from modelyard.server.orm import AllocationModel, NodeModel, QuotaModel
from modelyard.server.orm.base import utcnow
from modelyard.server.orm.jobs import JobModel, JobReplicaModel
from modelyard.server.scheduler.runner import launch_job
from modelyard.server.services import jobs as jobs_svc
from modelyard.server.services.jobs import StaleState, move_replica, transition
from modelyard.server.services.quota import ledger

log = logging.getLogger(__name__)

QUEUE_ORDER = (JobModel.is_urgent.desc(), JobModel.priority.desc(), JobModel.queued_at.asc(), JobModel.id.asc())


@dataclass
class PassResult:
    started: list[str] = field(default_factory=list)
    waiting_quota: list[str] = field(default_factory=list)
    waiting_capacity: str | None = None
    considered: int = 0


@dataclass
class _Queued:
    id: str
    owner_id: str
    roles: list
    waiting_reason: str | None
    queued_at: Any = None
    counts_as_job: bool = True  # serve jobs (service replicas) take no job slot


class PassView:
    """What one pass believes about free resources, read once at its start and updated in memory
    as it admits. Only a filter: a job it says fits is still decided by ledger.try_allocate under
    the ledger lock; a job it says does not fit waits for the next pass (every release wakes one
    after its commit), so a stale view never over-commits and never loses a wake-up."""

    def __init__(self, session, owners: set[str]):
        self.now = utcnow()
        self.nodes = {n.id: n for n in session.scalars(select(NodeModel).where(NodeModel.status == "ready")
                                                         .order_by(NodeModel.name))}
        dims = [func.coalesce(func.sum(getattr(AllocationModel, d)), 0) for d in ledger.DIMS]
        live = AllocationModel.released_at.is_(None)
        used_node = {r[0]: ledger.Resources(*r[1:]) for r in session.execute(
            select(AllocationModel.node_id, *dims).where(live).group_by(AllocationModel.node_id))}
        self.free = {nid: ledger.node_capacity(n) - used_node.get(nid, ledger.Resources())
                     for nid, n in self.nodes.items()}
        self.quotas = {q.user_id: q for q in session.scalars(select(QuotaModel).where(QuotaModel.user_id.in_(owners)))}
        used_user = {r[0]: ledger.Resources(*r[1:]) for r in session.execute(
            select(AllocationModel.user_id, *dims).where(live, AllocationModel.user_id.in_(owners))
            .group_by(AllocationModel.user_id))}
        jobs_user = dict(session.execute(
            select(AllocationModel.user_id, func.count(func.distinct(AllocationModel.consumer_id)))
            .where(live, AllocationModel.counts_as_job.is_(True), AllocationModel.user_id.in_(owners))
            .group_by(AllocationModel.user_id)).all())
        self.remaining = {u: (ledger.quota_limits(q) - used_user.get(u, ledger.Resources()),
                              q.jobs - int(jobs_user.get(u, 0))) for u, q in self.quotas.items()}

    def check(self, owner: str, parts: list[ledger.Part], *, counts_as_job: bool = True) -> tuple[str, str] | None:
        """(why, reason) when it clearly does not fit now; None when it may."""
        quota = self.quotas.get(owner)
        if quota is None:  # no quota row yet: let try_allocate create and decide
            return None
        if quota.start_at and quota.start_at > self.now:
            return "quota", f"the quota window opens at {quota.start_at:%Y-%m-%d %H:%M:%S}"
        if quota.end_at and quota.end_at < self.now:
            return "quota", f"the quota window ended at {quota.end_at:%Y-%m-%d %H:%M:%S}"
        rem, jobs_left = self.remaining[owner]
        if counts_as_job and jobs_left < 1:
            return "quota", f"the user already runs {quota.jobs} job(s), the most the quota allows"
        total = sum((p.resources for p in parts), ledger.Resources())
        short = total.shortfall(rem)
        if short:
            return "quota", "waiting for the user's quota: short of " + ", ".join(
                f"{v:g} {k}" for k, v in short.items())
        if self._place(parts) is None:
            return "capacity", "waiting for node capacity (" + ", ".join(
                f"{p.name}: {p.resources.as_dict()}" for p in parts[:4]) + ")"
        return None

    def _place(self, parts: list[ledger.Part]) -> list | None:
        return ledger.place(parts, dict(self.free))

    def took(self, owner: str, allocations) -> None:
        for a in allocations:
            res = ledger.Resources(a.cpu, a.memory_mib, a.gpu, a.vgpu, a.mig)
            if a.node_id in self.free:
                self.free[a.node_id] = self.free[a.node_id] - res
            if owner in self.remaining:
                rem, jobs_left = self.remaining[owner]
                self.remaining[owner] = (rem - res, jobs_left - (1 if a.counts_as_job else 0))


def queued_jobs(session) -> list[_Queued]:
    rows = session.execute(select(JobModel.id, JobModel.owner_id, JobModel.roles, JobModel.waiting_reason,
                                  JobModel.queued_at, JobModel.kind)
                           .where(JobModel.state == JobState.queued.value).order_by(*QUEUE_ORDER)).all()
    missing = [r.id for r in rows if not r.roles]  # rows written without the roles column
    spec_roles = dict(session.execute(select(JobModel.id, JobModel.spec).where(JobModel.id.in_(missing))).all()) \
        if missing else {}
    return [_Queued(r.id, r.owner_id, r.roles or spec_roles[r.id]["roles"], r.waiting_reason, r.queued_at,
                    jobs_svc.counts_as_job(r.kind)) for r in rows]


def schedule_pass(ctx: Any, *, launch: bool = True, limit: int | None = None) -> PassResult:
    """Admit what fits, in queue order; then (launch=True) start the admitted jobs' replicas."""
    res = PassResult()
    with session_scope(ctx.sessions, readonly=True) as s:
        queue = queued_jobs(s)
        if not queue:
            return res
        view = PassView(s, {q.owner_id for q in queue})
    blocked_users: set[str] = set()
    reasons: dict[str, str] = {}
    for q in queue:
        if q.owner_id in blocked_users:
            continue
        if limit is not None and len(res.started) >= limit:
            break
        res.considered += 1
        try:
            parts = jobs_svc.parts_for(q.roles)
            verdict = view.check(q.owner_id, parts, counts_as_job=q.counts_as_job)
            if verdict is not None:
                outcome = verdict[0]
                if q.waiting_reason != verdict[1][:1024]:
                    reasons[q.id] = verdict[1]
            else:
                outcome, allocations = admit(ctx, q.id, view)
                if allocations:
                    view.took(q.owner_id, allocations)
        except Exception:  # one bad job must not stop the queue
            log.exception("admitting job %s failed", q.id)
            continue
        if outcome == "started":
            res.started.append(q.id)
        elif outcome == "quota":
            blocked_users.add(q.owner_id)
            res.waiting_quota.append(q.id)
        elif outcome == "capacity":
            if res.waiting_capacity is None:
                res.waiting_capacity = q.id
            # backfill: smaller jobs behind it may start, until it has waited long enough; then
            # nothing passes it, so the resources that free up go to it
            waited = (view.now - q.queued_at).total_seconds() if q.queued_at is not None else float("inf")
            if waited >= ctx.settings.scheduler.backfill_head_max_wait_s:
                break
    if reasons:
        _record_waiting(ctx, reasons)
    if launch and res.started:
        for job_id in res.started:
            launch_job(ctx, job_id)
    return res


def _record_waiting(ctx: Any, reasons: dict[str, str]) -> None:
    """Why queued jobs wait (shown in their detail); one small transaction for the whole pass."""
    try:
        with session_scope(ctx.sessions) as s:
            for job in s.scalars(select(JobModel).where(JobModel.id.in_(list(reasons)),
                                                        JobModel.state == JobState.queued.value)):
                job.waiting_reason = reasons[job.id][:1024]
    except Exception:  # noqa: BLE001 - cosmetic; the next pass retries
        log.warning("recording why jobs wait failed", exc_info=True)


def _set_waiting(job: JobModel, reason: str) -> None:
    if job.waiting_reason != reason[:1024]:
        job.waiting_reason = reason[:1024]


class _NoFreeDevice(Exception):
    """The ledger has GPU capacity but no device is free to pin (vGPU replicas share some)."""


def admit(ctx: Any, job_id: str, view: PassView | None = None) -> tuple[str, list]:
    """One job in one transaction: ('started', allocations) -- now starting, resources held -- or
    ('quota' | 'capacity' | 'gone', [])."""
    try:
        return _admit(ctx, job_id, view)
    except _NoFreeDevice as exc:  # the transaction rolled back: nothing held
        _record_waiting(ctx, {job_id: str(exc)})
        return "capacity", []


def _admit(ctx: Any, job_id: str, view: PassView | None) -> tuple[str, list]:
    with session_scope(ctx.sessions) as s:
        # row lock first (PostgreSQL; SQLite's write lock is already held): a concurrent pass that
        # admitted this job commits before we read it, so we see `starting` and leave it alone
        job = s.get(JobModel, job_id, with_for_update=True, populate_existing=True)
        if job is None or job.state != JobState.queued.value:
            return "gone", []
        roles = job.spec["roles"]
        parts = jobs_svc.parts_for(roles)
        as_job = jobs_svc.counts_as_job(job.kind)
        rows = ledger.try_allocate(s, user_id=job.owner_id, consumer_type="job", consumer_id=job.id, parts=parts,
                                   counts_as_job=as_job)
        if rows is None:
            why, reason = classify_wait(s, job.owner_id, parts, counts_as_job=as_job)
            _set_waiting(job, reason)
            return ("quota" if why == "quota" else "capacity"), []
        nodes = view.nodes if view is not None else {}
        missing = {r.node_id for r in rows} - set(nodes)
        if missing:
            nodes = {**nodes, **{n.id: n for n in s.scalars(select(NodeModel).where(NodeModel.id.in_(missing)))}}
        by_part = {r.part: r for r in rows}
        existing = {} if job.attempt <= 1 else {(r.role, r.index): r for r in s.scalars(
            select(JobReplicaModel).where(JobReplicaModel.job_id == job.id))}
        taken: dict[str, set[int]] = {}
        for role, index, rank, _spec in jobs_svc.replica_slots(roles):
            alloc = by_part[f"{role}-{index}"]
            node = nodes[alloc.node_id]
            devices = pick_devices(s, node, alloc, taken.setdefault(node.id, set()))
            if alloc.gpu and len(devices) < alloc.gpu:
                raise _NoFreeDevice(f"waiting for {alloc.gpu:g} whole GPU(s) free on node {node.name} "
                                    "(the others are in use or shared by vGPU replicas)")
            rep = existing.get((role, index))
            rdir = jobs_svc.replica_dir(ctx.settings, job.id, role, index)
            if rep is None:  # a new row starts out placed; an earlier attempt's row goes through its door
                rep = JobReplicaModel(job_id=job.id, role=role, index=index, state="starting")
                s.add(rep)
            elif rep.state != "starting":
                move_replica(s, rep, "starting", reason=f"attempt {job.attempt}")
            rep.rank, rep.attempt = rank, job.attempt
            rep.node_id, rep.executor, rep.devices = node.id, node.executor or "local", devices
            rep.pid = rep.pid_start_time = rep.external_id = rep.exit_code = None
            rep.message, rep.started_at, rep.finished_at = "", None, None
            rep.replica_dir, rep.log_path = str(rdir), str(rdir / "output.log")
        for (role, index), rep in existing.items():
            if f"{role}-{index}" not in by_part:  # a slot that no longer exists
                s.delete(rep)
        job.waiting_reason = None
        try:
            transition(s, job, JobState.starting, reason="resources allocated",
                       data={"allocations": [{"part": r.part, "node_id": r.node_id, "cpu": r.cpu,
                                              "memory_mib": r.memory_mib, "gpu": r.gpu, "vgpu": r.vgpu,
                                              "mig": r.mig} for r in rows]})
        except StaleState:
            s.rollback()
            return "gone", []
        return "started", rows


def classify_wait(session, user_id: str, parts: list[ledger.Part], *, counts_as_job: bool = True
                  ) -> tuple[str, str]:
    """Why try_allocate said no: the owner's quota, or node capacity."""
    quota = ledger.get_quota(session, user_id)
    now = utcnow()
    if quota.start_at and quota.start_at > now:
        return "quota", f"the quota window opens at {quota.start_at:%Y-%m-%d %H:%M:%S}"
    if quota.end_at and quota.end_at < now:
        return "quota", f"the quota window ended at {quota.end_at:%Y-%m-%d %H:%M:%S}"
    rem, jobs_left = ledger.remaining(session, user_id)
    total = sum((p.resources for p in parts), ledger.Resources())
    short = total.shortfall(rem)
    if counts_as_job and jobs_left < 1:
        return "quota", f"the user already runs {quota.jobs} job(s), the most the quota allows"
    if short:
        return "quota", "waiting for the user's quota: short of " + ", ".join(f"{v:g} {k}" for k, v in short.items())
    return "fits-quota", "waiting for node capacity (" + ", ".join(
        f"{p.name}: {p.resources.as_dict()}" for p in parts[:4]) + ")"


def pick_devices(session, node: NodeModel, alloc, taken: set[int]) -> list[int]:
    """GPU indices for a replica on a node: whole GPUs are exclusive; vGPUs share the least used
    GPU; MIG slices are not pinned (their UUIDs are not tracked)."""
    if not (alloc.gpu or alloc.vgpu):
        return []
    total = len(node.gpu_info or []) or int(node.gpu or 0)
    # replicas whose job still holds an allocation here: a job that just ended has released its
    # GPUs in the ledger before its replica rows are all marked ended
    held = select(AllocationModel.consumer_id).where(AllocationModel.node_id == node.id,
                                                     AllocationModel.released_at.is_(None))
    live = session.execute(select(JobReplicaModel.devices).where(
        JobReplicaModel.node_id == node.id, JobReplicaModel.state.in_(("starting", "running")),
        JobReplicaModel.job_id.in_(held))).scalars().all()
    use: dict[int, int] = {i: 0 for i in range(total)}
    for devs in live:
        for d in devs or []:
            if d in use:
                use[d] += 1
    if alloc.gpu:
        free = [i for i in range(total) if use[i] == 0 and i not in taken]
        chosen = free[: alloc.gpu]
        taken.update(chosen)
        return chosen
    order = sorted(range(total), key=lambda i: (i in taken, use[i], i))
    return order[: max(1, min(alloc.vgpu, total))] if total else []
