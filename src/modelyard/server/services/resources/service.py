"""Resource groups, flavors ("specifications"), tags, and the usage views of nodes and pools.

Capacity comes from the node rows; what is allocated is always the sum of the live rows of the
allocation ledger (scheduler/ledger.py), read in one GROUP BY per request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from modelyard.core.errors import BadRequest, Conflict, InUse, NotFound
from modelyard.server.orm import AllocationModel, FlavorModel, NodeModel, ResourceGroupModel, TagModel
from modelyard.server.orm.base import utcnow
from modelyard.server.services import events
from modelyard.server.services.common.refs import resolve_ref
from modelyard.server.services.quota import ledger
from modelyard.server.services.quota.ledger import DIMS, Resources, node_capacity
from modelyard.server.services.resources.nodes import find_node

# resource_type (as stored in tags / events) -> ORM class and the column that names it
TAGGABLE: dict[str, tuple[type, str]] = {
    "node": (NodeModel, "name"),
    "resource_group": (ResourceGroupModel, "key"),
    "flavor": (FlavorModel, "name"),
}


# --- usage ------------------------------------------------------------------------------------

@dataclass
class NodeUse:
    allocated: Resources
    allocations: int = 0
    consumers: int = 0


def live_by_node(session: Session, node_ids: list[str] | None = None) -> dict[str, NodeUse]:
    """Sums of live allocations per node, with row and distinct-consumer counts."""
    cols = [func.coalesce(func.sum(getattr(AllocationModel, d)), 0) for d in DIMS]
    stmt = (select(AllocationModel.node_id, *cols, func.count(AllocationModel.id),
                   func.count(func.distinct(AllocationModel.consumer_id)))
            .where(AllocationModel.released_at.is_(None)).group_by(AllocationModel.node_id))
    if node_ids is not None:
        stmt = stmt.where(AllocationModel.node_id.in_(node_ids))
    out = {}
    for row in session.execute(stmt):
        out[row[0]] = NodeUse(Resources(*row[1:6]), int(row[6]), int(row[7]))
    return out


def _free(cap: Resources, alloc: Resources) -> Resources:
    return Resources(**{d: max(0, getattr(cap, d) - getattr(alloc, d)) for d in DIMS})


def usage_table(cap: Resources, use: NodeUse | None) -> dict[str, Any]:
    use = use or NodeUse(Resources())
    return {"capacity": cap.as_dict(), "allocated": use.allocated.as_dict(),
            "free": _free(cap, use.allocated).as_dict(), "allocations": use.allocations, "consumers": use.consumers}


def node_view(session: Session, node: NodeModel, use: NodeUse | None = None,
              tags: dict[str, str] | None = None, group_key: str | None = None) -> dict[str, Any]:
    if use is None:
        use = live_by_node(session, [node.id]).get(node.id)
    if tags is None:
        tags = get_tags(session, "node", node.id)
    if group_key is None and node.group_id:
        g = session.get(ResourceGroupModel, node.group_id)
        group_key = g.key if g else None
    return {"id": node.id, "name": node.name, "address": node.address, "group_id": node.group_id,
            "group_key": group_key, "executor": node.executor, "arch": node.arch, "status": node.status,
            "gpu_info": node.gpu_info or [], "labels": tags, "heartbeat_at": node.heartbeat_at,
            "created_at": node.created_at, **usage_table(node_capacity(node), use)}


def list_nodes(session: Session, *, group: str | None = None, status: str | None = None,
               tags: list[str] | None = None) -> list[dict[str, Any]]:
    stmt = select(NodeModel).order_by(NodeModel.name)
    if group:
        stmt = stmt.where(NodeModel.group_id == find_group(session, group).id)
    if status:
        stmt = stmt.where(NodeModel.status == status)
    if tags:
        stmt = stmt.where(*tag_conditions(NodeModel.id, "node", tags))
    nodes = list(session.scalars(stmt))
    ids = [n.id for n in nodes]
    uses = live_by_node(session, ids)
    all_tags = tags_of(session, "node", ids)
    keys = {g.id: g.key for g in session.scalars(select(ResourceGroupModel))}
    return [node_view(session, n, uses.get(n.id), all_tags.get(n.id, {}), keys.get(n.group_id)) for n in nodes]


def node_allocations(session: Session, node_id: str) -> list[dict[str, Any]]:
    rows = session.scalars(select(AllocationModel).where(AllocationModel.node_id == node_id,
                                                         AllocationModel.released_at.is_(None))
                           .order_by(AllocationModel.created_at))
    return [{"id": a.id, "user_id": a.user_id, "consumer_type": a.consumer_type, "consumer_id": a.consumer_id,
             "part": a.part, "counts_as_job": a.counts_as_job, "created_at": a.created_at,
             "resources": {d: getattr(a, d) for d in DIMS}} for a in rows]


def pool_statistics(session: Session, *, group: str | None = None) -> dict[str, Any]:
    """Per resource group and per node: capacity, allocated, free (cpu, memory_mib, gpu, vgpu,
    mig) and counts of live allocations. Nodes without a group are reported under a group with
    id null. Totals over every node (or over the one group asked for)."""
    groups = list(session.scalars(select(ResourceGroupModel).order_by(ResourceGroupModel.key)))
    if group:
        g = find_group(session, group)
        groups = [g]
    nodes = list(session.scalars(select(NodeModel).order_by(NodeModel.name)))
    uses = live_by_node(session)
    by_group: dict[str | None, list[NodeModel]] = {}
    for n in nodes:
        by_group.setdefault(n.group_id, []).append(n)
    entries: list[tuple[str | None, str | None, str]] = [(g.id, g.key, g.name) for g in groups]
    if not group and by_group.get(None):
        entries.append((None, None, "(no group)"))
    out_groups = []
    tot_cap, tot_use = Resources(), NodeUse(Resources())
    for gid, key, name in entries:
        members = by_group.get(gid, [])
        cap, use = Resources(), NodeUse(Resources())
        node_stats = []
        consumers: set[str] = set()
        for n in members:
            u = uses.get(n.id) or NodeUse(Resources())
            cap = cap + node_capacity(n)
            use.allocated = use.allocated + u.allocated
            use.allocations += u.allocations
            node_stats.append({"id": n.id, "name": n.name, "status": n.status, **usage_table(node_capacity(n), u)})
        if members:
            consumers = _consumers(session, [n.id for n in members])
        use.consumers = len(consumers)
        out_groups.append({"id": gid, "key": key, "name": name, "nodes_total": len(members),
                           "nodes_ready": sum(1 for n in members if n.status == "ready"),
                           "nodes": node_stats, **usage_table(cap, use)})
        tot_cap = tot_cap + cap
        tot_use.allocated = tot_use.allocated + use.allocated
        tot_use.allocations += use.allocations
    counted = [n.id for gid, _, _ in entries for n in by_group.get(gid, [])]
    tot_use.consumers = len(_consumers(session, counted)) if counted else 0
    return {"operation_time": utcnow(), "totals": usage_table(tot_cap, tot_use), "groups": out_groups}


def _consumers(session: Session, node_ids: list[str]) -> set[str]:
    return set(session.scalars(select(AllocationModel.consumer_id).distinct().where(
        AllocationModel.released_at.is_(None), AllocationModel.node_id.in_(node_ids))))


def _quantity_mi(mib: int) -> str:
    return f"{int(mib)}Mi"


def pool_metrics(session: Session) -> dict[str, Any]:
    """The ModelArts PoolMetricsList shape over the same figures (memory as "<n>Mi")."""
    stats = pool_statistics(session)
    ts = stats["operation_time"].strftime("%Y-%m-%dT%H:%M:%SZ")
    items = []
    for g in stats["groups"]:
        labels = get_tags(session, "resource_group", g["id"]) if g["id"] else {}

        def val(r: dict) -> dict:
            return {"cpu": r["cpu"], "memory": _quantity_mi(r["memory_mib"]), "gpu": r["gpu"],
                    "vgpu": r["vgpu"], "mig": r["mig"]}

        items.append({"metadata": {"name": g["key"] or "(no group)", "labels": labels},
                      "table": {"allocated": {"value": val(g["allocated"]), "timestamp": ts, "window": "1m"},
                                "capacity": {"value": val(g["capacity"]), "maxValue": val(g["capacity"]),
                                             "timestamp": ts, "window": "1m"}}})
    return {"apiVersion": "v2", "kind": "PoolMetricsList", "items": items}


def pool_status_counts(session: Session) -> dict[str, Any]:
    """ModelArts pool statistics: pools by status. A group with at least one ready node is
    'created'; one whose nodes are all cordoned/offline, or that has none, is 'pending'."""
    groups = list(session.scalars(select(ResourceGroupModel)))
    ready_groups = set(session.scalars(select(NodeModel.group_id).distinct().where(NodeModel.status == "ready")))
    created = sum(1 for g in groups if g.id in ready_groups)
    return {"statistics": {"status": {"created": created, "creating": 0, "failed": 0,
                                      "pending": len(groups) - created}},
            "operationTime": utcnow().strftime("%Y-%m-%d %H:%M:%S.%f +0000 UTC")}


# --- resource groups --------------------------------------------------------------------------

def find_group(session: Session, ref: str) -> ResourceGroupModel:
    """By id, id prefix or key (services/common/refs.py); else by its display name."""
    try:
        return resolve_ref(session, ResourceGroupModel, ref, None, what="resource group", name_col="key",
                           owned=False, not_found_code="resource_group_not_found")
    except NotFound:
        return resolve_ref(session, ResourceGroupModel, ref, None, what="resource group", owned=False,
                           not_found_code="resource_group_not_found")


def group_view(session: Session, g: ResourceGroupModel, counts: dict[str, int] | None = None,
               tags: dict[str, str] | None = None) -> dict[str, Any]:
    if counts is None:
        counts = {g.id: session.scalar(select(func.count()).where(NodeModel.group_id == g.id)) or 0}
    return {"id": g.id, "name": g.name, "key": g.key, "description": g.description,
            "nodes": int(counts.get(g.id, 0)), "tags": get_tags(session, "resource_group", g.id) if tags is None
            else tags, "created_at": g.created_at, "updated_at": g.updated_at}


def list_groups(session: Session, *, tags: list[str] | None = None) -> list[dict[str, Any]]:
    stmt = select(ResourceGroupModel).order_by(ResourceGroupModel.key)
    if tags:
        stmt = stmt.where(*tag_conditions(ResourceGroupModel.id, "resource_group", tags))
    groups = list(session.scalars(stmt))
    counts = dict(session.execute(select(NodeModel.group_id, func.count()).group_by(NodeModel.group_id)).all())
    all_tags = tags_of(session, "resource_group", [g.id for g in groups])
    return [group_view(session, g, counts, all_tags.get(g.id, {})) for g in groups]


def create_group(session: Session, *, actor_id: str | None, name: str, key: str,
                 description: str = "") -> ResourceGroupModel:
    if session.scalar(select(ResourceGroupModel).where(ResourceGroupModel.key == key)):
        raise Conflict(f"resource group {key!r} already exists", code="resource_group_exists")
    g = ResourceGroupModel(name=name, key=key, description=description)
    session.add(g)
    session.flush()
    events.record(session, actor_id=actor_id, kind="resource_group.created", object_type="resource_group",
                  object_id=g.id, data={"key": key, "name": name})
    return g


def update_group(session: Session, *, actor_id: str | None, group: ResourceGroupModel,
                 changes: dict[str, Any]) -> ResourceGroupModel:
    for k, v in changes.items():
        setattr(group, k, v)
    group.updated_at = utcnow()
    session.flush()
    events.record(session, actor_id=actor_id, kind="resource_group.updated", object_type="resource_group",
                  object_id=group.id, data=changes)
    return group


def delete_group(session: Session, *, actor_id: str | None, group: ResourceGroupModel) -> None:
    n = session.scalar(select(func.count()).where(NodeModel.group_id == group.id)) or 0
    if n:
        raise InUse(f"resource group {group.key!r} still has {n} node(s); move them first",
                    details={"nodes": n})
    session.execute(delete(TagModel).where(TagModel.resource_type == "resource_group",
                                           TagModel.resource_id == group.id))
    events.record(session, actor_id=actor_id, kind="resource_group.deleted", object_type="resource_group",
                  object_id=group.id, data={"key": group.key})
    session.delete(group)
    session.flush()


# --- flavors ----------------------------------------------------------------------------------

def find_flavor(session: Session, ref: str) -> FlavorModel:
    return resolve_ref(session, FlavorModel, ref, None, what="flavor", owned=False, not_found_code="flavor_not_found")


def flavor_resources(f: FlavorModel) -> Resources:
    return Resources(f.cpu, f.memory_mib, f.gpu, f.vgpu, f.mig)


class FlavorContext:
    """What a flavor's ModelArts fields are judged against, computed once per request."""

    def __init__(self, session: Session, user_id: str | None):
        nodes = list(session.scalars(select(NodeModel).where(NodeModel.status == "ready")))
        uses = live_by_node(session, [n.id for n in nodes])
        self.free = [node_capacity(n) - (uses[n.id].allocated if n.id in uses else Resources()) for n in nodes]
        self.arch = next((n.arch for n in nodes if n.arch), "x86_64")
        self.gpu = next((g for n in nodes for g in (n.gpu_info or [])), None)
        self.limits = ledger.quota_limits(ledger.get_quota(session, user_id)) if user_id else None


def flavor_view(session: Session, f: FlavorModel, ctx: FlavorContext, tags: dict[str, str] | None = None) -> dict:
    need = flavor_resources(f)
    fits_now = any(not need.shortfall(free) for free in ctx.free)
    gpu_info = None
    if f.gpu:
        name = (ctx.gpu or {}).get("name", "")
        brand = name.split()[0] if name else "NVIDIA"
        gpu_mem = f.gpu_memory_mib or int((ctx.gpu or {}).get("memory_mib", 0))
        gpu_info = {"brand": brand, "version": name or "unknown", "unit": "GB", "memory": round(gpu_mem / 1024),
                    "gpu": f.gpu}
    gib = f.memory_mib / 1024
    mem = f"{gib:g}GiB"
    display_en = f"{f.cpu:g} vCPUs | {mem}" + (f" | {f.gpu}*{gpu_info['version']}" if gpu_info else "")
    display_cn = f"{f.cpu:g}核 | {mem}" + (f" | {f.gpu}*{gpu_info['version']}" if gpu_info else "")
    return {"id": f.id, "name": f.name, "cpu": f.cpu, "memory_mib": f.memory_mib, "gpu": f.gpu,
            "gpu_memory_mib": f.gpu_memory_mib, "vgpu": f.vgpu, "mig": f.mig, "description": f.description,
            "tags": get_tags(session, "flavor", f.id) if tags is None else tags, "created_at": f.created_at,
            "specification": f.name, "billing_spec": f.name, "category": "GPU" if f.gpu or f.vgpu or f.mig else "CPU",
            "spec_status": "normal" if fits_now else "sellout", "is_open": True, "is_free": True,
            "over_quota": bool(ctx.limits is not None and need.shortfall(ctx.limits)), "source_type": "",
            "cpu_info": {"arch": ctx.arch, "cpu": f.cpu}, "memory_info": {"unit": "MB", "memory": f.memory_mib},
            "gpu_info": gpu_info, "display_en": display_en, "display_cn": display_cn}


def list_flavors(session: Session, *, user_id: str | None, tags: list[str] | None = None,
                 category: str | None = None) -> list[dict[str, Any]]:
    stmt = select(FlavorModel).order_by(FlavorModel.gpu, FlavorModel.cpu, FlavorModel.memory_mib, FlavorModel.name)
    if tags:
        stmt = stmt.where(*tag_conditions(FlavorModel.id, "flavor", tags))
    flavors = list(session.scalars(stmt))
    ctx = FlavorContext(session, user_id)
    all_tags = tags_of(session, "flavor", [f.id for f in flavors])
    out = [flavor_view(session, f, ctx, all_tags.get(f.id, {})) for f in flavors]
    if category:
        out = [v for v in out if v["category"].lower() == category.lower()]
    return out


def create_flavor(session: Session, *, actor_id: str | None, **fields) -> FlavorModel:
    if session.scalar(select(FlavorModel).where(FlavorModel.name == fields["name"])):
        raise Conflict(f"flavor {fields['name']!r} already exists", code="flavor_exists")
    f = FlavorModel(**fields)
    session.add(f)
    session.flush()
    events.record(session, actor_id=actor_id, kind="flavor.created", object_type="flavor", object_id=f.id,
                  data=fields)
    return f


def update_flavor(session: Session, *, actor_id: str | None, flavor: FlavorModel, changes: dict) -> FlavorModel:
    for k, v in changes.items():
        setattr(flavor, k, v)
    flavor.updated_at = utcnow()
    session.flush()
    events.record(session, actor_id=actor_id, kind="flavor.updated", object_type="flavor", object_id=flavor.id,
                  data=changes)
    return flavor


def delete_flavor(session: Session, *, actor_id: str | None, flavor: FlavorModel) -> None:
    session.execute(delete(TagModel).where(TagModel.resource_type == "flavor", TagModel.resource_id == flavor.id))
    events.record(session, actor_id=actor_id, kind="flavor.deleted", object_type="flavor", object_id=flavor.id,
                  data={"name": flavor.name})
    session.delete(flavor)
    session.flush()


# --- tags -------------------------------------------------------------------------------------

def find_taggable(session: Session, resource_type: str, ref: str):
    if resource_type == "node":
        return find_node(session, ref)
    if resource_type == "resource_group":
        return find_group(session, ref)
    if resource_type == "flavor":
        return find_flavor(session, ref)
    raise BadRequest(f"resource_type must be one of {sorted(TAGGABLE)}", code="invalid_resource_type")


def get_tags(session: Session, resource_type: str, resource_id: str) -> dict[str, str]:
    rows = session.scalars(select(TagModel).where(TagModel.resource_type == resource_type,
                                                  TagModel.resource_id == resource_id).order_by(TagModel.key))
    return {t.key: t.value for t in rows}


def tags_of(session: Session, resource_type: str, ids: list[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    if not ids:
        return out
    for t in session.scalars(select(TagModel).where(TagModel.resource_type == resource_type,
                                                    TagModel.resource_id.in_(ids)).order_by(TagModel.key)):
        out.setdefault(t.resource_id, {})[t.key] = t.value
    return out


def parse_tag_filters(raw: list[str] | None) -> list[tuple[str, str | None]]:
    """`key` (has the key) or `key=value` (exact value)."""
    out = []
    for item in raw or []:
        key, sep, value = item.partition("=")
        if not key:
            raise BadRequest(f"bad tag filter {item!r}: use key or key=value", code="invalid_tag_filter")
        out.append((key, value if sep else None))
    return out


def tag_conditions(id_col, resource_type: str, raw: list[str] | None) -> list:
    """WHERE conditions on id_col: the resource carries every tag filter (AND)."""
    conds = []
    for key, value in parse_tag_filters(raw):
        q = select(TagModel.resource_id).where(TagModel.resource_type == resource_type, TagModel.key == key)
        if value is not None:
            q = q.where(TagModel.value == value)
        conds.append(id_col.in_(q))
    return conds


def set_tags(session: Session, *, actor_id: str | None, resource_type: str, resource_id: str,
             tags: dict[str, str], replace: bool = False) -> dict[str, str]:
    """Upsert the given keys (replace=True: the resource ends with exactly these tags)."""
    for k in tags:
        if not k or len(k) > 128:
            raise BadRequest("tag keys must be 1-128 characters", code="invalid_tag")
    current = {t.key: t for t in session.scalars(select(TagModel).where(
        TagModel.resource_type == resource_type, TagModel.resource_id == resource_id))}
    removed = []
    if replace:
        for k, t in current.items():
            if k not in tags:
                session.delete(t)
                removed.append(k)
    for k, v in tags.items():
        if k in current:
            current[k].value = v
        else:
            session.add(TagModel(resource_type=resource_type, resource_id=resource_id, key=k, value=v))
    session.flush()
    events.record(session, actor_id=actor_id, kind=f"{resource_type}.tags_changed", object_type=resource_type,
                  object_id=resource_id, data={"set": tags, "removed": removed})
    return get_tags(session, resource_type, resource_id)


def delete_tags(session: Session, *, actor_id: str | None, resource_type: str, resource_id: str,
                keys: list[str] | None) -> dict[str, str]:
    """Remove the given keys (None: every tag)."""
    stmt = delete(TagModel).where(TagModel.resource_type == resource_type, TagModel.resource_id == resource_id)
    if keys:
        stmt = stmt.where(TagModel.key.in_(keys))
    session.execute(stmt)
    session.flush()
    events.record(session, actor_id=actor_id, kind=f"{resource_type}.tags_changed", object_type=resource_type,
                  object_id=resource_id, data={"removed": keys or "all"})
    return get_tags(session, resource_type, resource_id)


def aggregate_tags(session: Session, resource_type: str | None = None) -> list[dict[str, Any]]:
    """ModelArts PoolTag list: each key with all its distinct values."""
    stmt = select(TagModel.key, TagModel.value).distinct().order_by(TagModel.key, TagModel.value)
    if resource_type:
        stmt = stmt.where(TagModel.resource_type == resource_type)
    out: dict[str, list[str]] = {}
    for k, v in session.execute(stmt):
        out.setdefault(k, []).append(v)
    return [{"key": k, "values": vs} for k, vs in out.items()]


def resources_by_tag(session: Session, *, resource_type: str | None, tags: list[str]) -> list[dict[str, Any]]:
    types = [resource_type] if resource_type else list(TAGGABLE)
    out = []
    for rt in types:
        if rt not in TAGGABLE:
            raise BadRequest(f"resource_type must be one of {sorted(TAGGABLE)}", code="invalid_resource_type")
        cls, name_col = TAGGABLE[rt]
        stmt = select(cls).order_by(getattr(cls, name_col))
        if tags:
            stmt = stmt.where(*tag_conditions(cls.id, rt, tags))
        else:
            stmt = stmt.where(cls.id.in_(select(TagModel.resource_id).where(TagModel.resource_type == rt)))
        objs = list(session.scalars(stmt))
        all_tags = tags_of(session, rt, [o.id for o in objs])
        out += [{"resource_type": rt, "resource_id": o.id, "name": getattr(o, name_col),
                 "tags": all_tags.get(o.id, {})} for o in objs]
    return out
