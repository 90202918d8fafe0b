"""What a submit may ask of the queue and the cluster, checked before anything is written:
- priority above settings.scheduler.priority_ceiling, and urgent jobs (they jump the queue), need
  the admin role or the owner's quota allowance (quota.max_priority / quota.can_urgent);
- placement: node names and a resource group (seed nodeName / zoneId / resourceGroupKey /
  zoneName) must exist; the job's roles then carry the allowed node ids, which the scheduler's
  placement honours (ledger.Part.allowed);
- a search_id must be one of the owner's own searches;
- network: host needs an admin or an owner listed in settings.sandbox.network_users."""

from __future__ import annotations

from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from modelyard.core.errors import BadRequest, Forbidden, NotFound
from modelyard.server.auth import Principal
from modelyard.server.orm import NodeModel, QuotaModel, UserModel
from modelyard.server.orm.resources import ResourceGroupModel
from modelyard.server.orm.searches import SearchModel
from modelyard.server.schemas.jobs import JobSubmit
from modelyard.server.services.jobs.sandbox import check_host_network
from modelyard.server.settings import Settings


def check_queue_rights(session: Session, settings: Settings, principal: Principal, owner_id: str,
                       req: JobSubmit) -> None:
    if principal.is_admin:
        return
    quota = session.get(QuotaModel, owner_id)
    ceiling = settings.scheduler.priority_ceiling
    allowed = quota.max_priority if quota is not None and quota.max_priority is not None else ceiling
    if req.priority > allowed:
        raise Forbidden(f"priority {req.priority} is above the {allowed} you may ask for: an admin can raise your "
                        "quota's max_priority", code="priority_not_allowed")
    if req.is_urgent and not (quota is not None and quota.can_urgent):
        raise Forbidden("urgent jobs jump the queue: they need the admin role or your quota's can_urgent",
                        code="priority_not_allowed")


def check_search(session: Session, owner_id: str, search_id: str | None) -> None:
    if not search_id:
        return
    search = session.get(SearchModel, search_id)
    if search is None or search.owner_id != owner_id:
        raise NotFound(f"search {search_id} not found among your searches", code="search_not_found")


def check_network(session: Session, settings: Settings, owner_id: str, network: str | None) -> None:
    if network != "host":
        return
    owner = session.get(UserModel, owner_id)
    check_host_network(settings, owner_id=owner_id, owner_name=owner.name if owner else "",
                       is_admin=owner is not None and owner.role == "admin")


def placement(session: Session, req: JobSubmit) -> dict[str, Any] | None:
    """{"node_ids", "node_names", "group"} the job is restricted to, or None (anywhere)."""
    names = [n.strip() for n in (req.node_names or []) if n and n.strip()]
    group_ref = (req.resource_group or "").strip()
    if not names and not group_ref:
        return None
    group = None
    if group_ref:
        group = session.scalars(select(ResourceGroupModel).where(or_(
            ResourceGroupModel.id == group_ref, ResourceGroupModel.key == group_ref,
            ResourceGroupModel.name == group_ref))).first()
        if group is None:
            raise NotFound(f"resource group {group_ref!r} not found", code="resource_group_not_found")
    if names:
        nodes = list(session.scalars(select(NodeModel).where(NodeModel.name.in_(names))))
        missing = sorted(set(names) - {n.name for n in nodes})
        if missing:
            raise NotFound(f"no node named {', '.join(map(repr, missing))}", code="node_not_found")
        if group is not None:
            outside = sorted(n.name for n in nodes if n.group_id != group.id)
            if outside:
                raise BadRequest(f"node(s) {', '.join(outside)} are not in resource group {group.key}",
                                 code="invalid_placement")
    else:
        nodes = list(session.scalars(select(NodeModel).where(NodeModel.group_id == group.id)))
        if not nodes:
            raise BadRequest(f"resource group {group.key} has no nodes", code="invalid_placement")
    return {"node_ids": sorted(n.id for n in nodes), "node_names": sorted(n.name for n in nodes),
            "group": group.key if group is not None else None}
