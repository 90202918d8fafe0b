"""The allocation ledger: the one place where compute is taken from a user's quota and a node's
capacity, and given back. Everything runs inside the caller's transaction after taking the
ledger lock, so concurrent callers (threads, processes, SQLite or PostgreSQL) never over-commit.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from modelyard.core.errors import QuotaExceeded
from modelyard.server.db import advisory_lock, is_sqlite
from modelyard.server.orm import AllocationModel, NodeModel, QuotaModel
from modelyard.server.orm.base import utcnow
from modelyard.server.services.quota.service import ensure_quota

DIMS = ("cpu", "memory_mib", "gpu", "vgpu", "mig")


@dataclass
class Resources:
    cpu: float = 0
    memory_mib: int = 0
    gpu: int = 0
    vgpu: int = 0
    mig: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(**{d: getattr(self, d) + getattr(other, d) for d in DIMS})

    def __sub__(self, other: Resources) -> Resources:
        return Resources(**{d: getattr(self, d) - getattr(other, d) for d in DIMS})

    def shortfall(self, limit: Resources) -> dict[str, float]:
        """Dimensions where self exceeds limit, with the amount missing."""
        return {d: getattr(self, d) - getattr(limit, d) for d in DIMS
                if getattr(self, d) > getattr(limit, d) + 1e-9}

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Part:
    """One placeable piece (a replica): it lands on exactly one node."""

    name: str
    resources: Resources
    node_id: str | None = None  # pin to a node
    allowed: tuple[str, ...] | None = None  # or: only these nodes (a job's nodeName / resource group)

    def may_use(self, node_id: str) -> bool:
        return self.node_id in (None, node_id) and (self.allowed is None or node_id in self.allowed)


def place(parts: list[Part], free: dict[str, Resources]) -> list[tuple[Part, str]] | None:
    """Where each part goes given the nodes' free resources (updated in place), or None when one
    does not fit. Best fit: the node that keeps the least free CPU, to limit fragmentation. THE
    placement rule: the scheduler's pass view and try_allocate both use it."""
    out: list[tuple[Part, str]] = []
    for p in parts:
        fitting = [nid for nid, f in free.items() if p.may_use(nid) and not p.resources.shortfall(f)]
        if not fitting:
            return None
        nid = min(fitting, key=lambda i: (free[i] - p.resources).cpu)
        free[nid] = free[nid] - p.resources
        out.append((p, nid))
    return out


@dataclass
class Usage:
    used: Resources = field(default_factory=Resources)
    jobs: int = 0


def _sum_live(session: Session, *where) -> Resources:
    cols = [func.coalesce(func.sum(getattr(AllocationModel, d)), 0) for d in DIMS]
    row = session.execute(select(*cols).where(AllocationModel.released_at.is_(None), *where)).one()
    return Resources(*row)


def user_usage(session: Session, user_id: str) -> Usage:
    used = _sum_live(session, AllocationModel.user_id == user_id)
    jobs = session.scalar(
        select(func.count(func.distinct(AllocationModel.consumer_id))).where(
            AllocationModel.user_id == user_id, AllocationModel.released_at.is_(None),
            AllocationModel.counts_as_job.is_(True)))
    return Usage(used, int(jobs or 0))


def node_usage(session: Session, node_id: str) -> Resources:
    return _sum_live(session, AllocationModel.node_id == node_id)


def quota_limits(quota: QuotaModel) -> Resources:
    return Resources(quota.cpu, quota.memory_mib, quota.gpu, quota.vgpu, quota.mig)


def node_capacity(node: NodeModel) -> Resources:
    return Resources(node.cpu, node.memory_mib, node.gpu, node.vgpu, node.mig)


def get_quota(session: Session, user_id: str, *, fresh: bool = False) -> QuotaModel:
    """fresh=True re-reads the row even if this session already holds it (a long-lived session
    with expire_on_commit=False would otherwise decide on a stale quota)."""
    quota = session.get(QuotaModel, user_id, populate_existing=fresh)
    if quota is None:
        quota = ensure_quota(session, user_id=user_id)
    return quota


def remaining(session: Session, user_id: str) -> tuple[Resources, int]:
    quota = get_quota(session, user_id)
    usage = user_usage(session, user_id)
    return quota_limits(quota) - usage.used, quota.jobs - usage.jobs


def never_fits(session: Session, *, user_id: str, parts: list[Part], counts_as_job: bool = True) -> list[str]:
    """Reasons the request could not be admitted even on an idle platform (empty: it may fit later)."""
    reasons: list[str] = []
    quota = get_quota(session, user_id)
    total = sum((p.resources for p in parts), Resources())
    for dim, miss in total.shortfall(quota_limits(quota)).items():
        reasons.append(f"needs {getattr(total, dim):g} {dim} in total but the user's quota is "
                       f"{getattr(quota, dim):g} (short by {miss:g})")
    if counts_as_job and quota.jobs < 1:
        reasons.append("the user's quota allows no concurrent jobs")
    if quota.end_at is not None and quota.end_at < utcnow():
        reasons.append(f"the user's quota window ended at {quota.end_at:%Y-%m-%d %H:%M:%S}")
    # a cordoned node is out of rotation for now, not for good: a job that fits it may wait for it
    nodes = session.scalars(select(NodeModel).where(NodeModel.status.in_(("ready", "cordoned")))).all()
    for p in parts:
        candidates = [n for n in nodes if p.may_use(n.id)]
        if not any(not p.resources.shortfall(node_capacity(n)) for n in candidates):
            biggest = max((node_capacity(n) for n in candidates), key=lambda r: (r.gpu, r.cpu, r.memory_mib),
                          default=Resources())
            reasons.append(f"replica {p.name} needs {p.resources.as_dict()} but the largest node "
                           f"has {biggest.as_dict()}")
    return reasons


def _lock(session: Session) -> None:
    """Take the ledger lock for the rest of the caller's transaction.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: the database write lock — already held
    by a session begun IMMEDIATE (the default); a no-op write takes it in a DEFERRED (read-only)
    session too, or fails with 'database is locked' if that session's snapshot is stale, rather
    than deciding on old figures."""
    session.flush()
    advisory_lock(session, "ledger")
    if is_sqlite(session):
        session.execute(text("UPDATE allocations SET id = id WHERE 0"))


def try_allocate(session: Session, *, user_id: str, consumer_type: str, consumer_id: str,
                 parts: list[Part], counts_as_job: bool = True) -> list[AllocationModel] | None:
    """Allocate all parts or nothing. Returns None when it does not fit right now.

    Caller must commit; the ledger lock is held until then."""
    _lock(session)
    quota = get_quota(session, user_id, fresh=True)
    now = utcnow()
    if (quota.start_at and quota.start_at > now) or (quota.end_at and quota.end_at < now):
        return None
    usage = user_usage(session, user_id)
    total = sum((p.resources for p in parts), Resources())
    if (usage.used + total).shortfall(quota_limits(quota)):
        return None
    if counts_as_job and usage.jobs + 1 > quota.jobs:
        return None
    nodes = session.scalars(select(NodeModel).where(NodeModel.status == "ready").order_by(NodeModel.name)
                            .execution_options(populate_existing=True)).all()
    free = {n.id: node_capacity(n) - node_usage(session, n.id) for n in nodes}
    placement = place(parts, free)
    if placement is None:
        return None
    rows = []
    for i, (p, nid) in enumerate(placement):
        row = AllocationModel(user_id=user_id, node_id=nid, consumer_type=consumer_type, consumer_id=consumer_id,
                              part=p.name, counts_as_job=counts_as_job and i == 0, **p.resources.as_dict())
        session.add(row)
        rows.append(row)
    session.flush()
    return rows


def allocate(session: Session, **kwargs) -> list[AllocationModel]:
    """try_allocate, raising QuotaExceeded with what is short when it does not fit now."""
    rows = try_allocate(session, **kwargs)
    if rows is None:
        rem, jobs_left = remaining(session, kwargs["user_id"])
        raise QuotaExceeded("not enough quota or node capacity right now",
                            details={"remaining": rem.as_dict(), "remaining_jobs": jobs_left})
    return rows


def release(session: Session, *, consumer_type: str, consumer_id: str, part: str | None = None) -> int:
    """Give back a consumer's live allocations (idempotent). Returns rows released."""
    stmt = update(AllocationModel).where(
        AllocationModel.consumer_type == consumer_type, AllocationModel.consumer_id == consumer_id,
        AllocationModel.released_at.is_(None)).values(released_at=utcnow())
    if part is not None:
        stmt = stmt.where(AllocationModel.part == part)
    return session.execute(stmt).rowcount or 0
