"""Native resources API: nodes, resource groups, flavors ("specifications"), quotas, pool
statistics and tags. Reads are open to every user; changes are admin-only. Memory is in MiB."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, status

from modelyard.core.errors import Forbidden
from modelyard.server.deps import AdminDep, SessionDep, SettingsDep, UserDep
from modelyard.server.schemas.resources import (
    FlavorCreate,
    FlavorListResponse,
    FlavorResponse,
    FlavorUpdate,
    LabelsBody,
    NodeDetailResponse,
    NodeGroupMove,
    NodeResponse,
    PoolStatisticsResponse,
    PoolTagsResponse,
    QuotaResponse,
    QuotaUpdate,
    ResourceGroupCreate,
    ResourceGroupResponse,
    ResourceGroupUpdate,
    TaggedResourcesResponse,
    TagsBody,
    TagsResponse,
)
from modelyard.server.services import quota as quota_svc
from modelyard.server.services import resources as svc
from modelyard.server.services import usage
from modelyard.server.services import users as users_svc
from modelyard.server.services.resources import nodes as node_svc

router = APIRouter(tags=["resources"])

TagQuery = Annotated[list[str] | None, Query(description="filter: `key` or `key=value`; repeat to AND")]


# --- nodes ------------------------------------------------------------------------------------

@router.get("/nodes", response_model=list[NodeResponse], summary="List nodes with capacity / allocated / free")
def list_nodes(session: SessionDep, _user: UserDep, group: str | None = None, status: str | None = None,
               tag: TagQuery = None):
    """Every registered node with its capacity, what is allocated on it and what is free, per dimension (cpu, memory, gpu, vgpu, mig)."""
    return svc.list_nodes(session, group=group, status=status, tags=tag)


@router.get("/nodes/{ref}", response_model=NodeDetailResponse,
            summary="A node (by id or name): capacity, allocated, free per dimension and its live allocations")
def get_node(ref: str, session: SessionDep, principal: UserDep):
    """Addressed by id, unique id prefix or name; includes the live allocations placed on it."""
    node = node_svc.find_node(session, ref)
    view = svc.node_view(session, node)
    allocs = svc.node_allocations(session, node.id)
    # users see only their own pieces of the node; admins see everything on it
    view["live_allocations"] = allocs if principal.is_admin else [a for a in allocs if a["user_id"] == principal.id]
    return view


@router.post("/nodes/{ref}/cordon", response_model=NodeResponse,
             summary="Admin: place nothing new on the node (live allocations stay)")
def cordon(ref: str, session: SessionDep, admin: AdminDep):
    """A cordoned node keeps running what it has but the scheduler places no new replica there."""
    node = node_svc.set_status(session, actor_id=admin.id, node=node_svc.find_node(session, ref), status="cordoned")
    return svc.node_view(session, node)


@router.post("/nodes/{ref}/uncordon", response_model=NodeResponse, summary="Admin: make the node schedulable")
def uncordon(ref: str, session: SessionDep, admin: AdminDep):
    """The node takes new replicas again."""
    node = node_svc.set_status(session, actor_id=admin.id, node=node_svc.find_node(session, ref), status="ready")
    return svc.node_view(session, node)


@router.put("/nodes/{ref}/group", response_model=NodeResponse, summary="Admin: move the node to a resource group")
def move_node(ref: str, req: NodeGroupMove, session: SessionDep, admin: AdminDep):
    """Puts the node in another resource group (group_id: id or key; null: no group)."""
    node = node_svc.find_node(session, ref)
    group = svc.find_group(session, req.group_id) if req.group_id else None
    node_svc.move_to_group(session, actor_id=admin.id, node=node, group=group)
    return svc.node_view(session, node)


@router.get("/nodes/{ref}/labels", response_model=dict[str, str], summary="A node's labels (= its tags)")
def node_labels(ref: str, session: SessionDep, _user: UserDep):
    """Labels are the node's tags as a flat key/value map; jobs may ask for nodes by label."""
    return svc.get_tags(session, "node", node_svc.find_node(session, ref).id)


@router.put("/nodes/{ref}/labels", response_model=dict[str, str],
            summary="Admin: set labels (given keys upserted; replace=true: exactly these)")
def set_node_labels(ref: str, req: LabelsBody, session: SessionDep, admin: AdminDep, replace: bool = False):
    """Upserts the given labels; with replace=true the node ends with exactly these."""
    node = node_svc.find_node(session, ref)
    return svc.set_tags(session, actor_id=admin.id, resource_type="node", resource_id=node.id, tags=req.labels,
                        replace=replace)


@router.delete("/nodes/{ref}/labels/{key}", response_model=dict[str, str], summary="Admin: remove a label")
def delete_node_label(ref: str, key: str, session: SessionDep, admin: AdminDep):
    """Removes one label from the node (404 if it has no such key)."""
    node = node_svc.find_node(session, ref)
    return svc.delete_tags(session, actor_id=admin.id, resource_type="node", resource_id=node.id, keys=[key])


# --- resource groups --------------------------------------------------------------------------

@router.get("/resource-groups", response_model=list[ResourceGroupResponse])
def list_groups(session: SessionDep, _user: UserDep, tag: TagQuery = None):
    """List resource groups

    Every resource group with its key, description and node count."""
    return svc.list_groups(session, tags=tag)


@router.get("/resource-groups/statistics", response_model=PoolStatisticsResponse,
            summary="Per resource group and per node: capacity, allocated, free and live allocation counts")
def statistics(session: SessionDep, _user: UserDep):
    """Capacity, allocation and free resources summed per resource group and per node, with live allocation counts."""
    return svc.pool_statistics(session)


@router.get("/resource-groups/{ref}", response_model=ResourceGroupResponse)
def get_group(ref: str, session: SessionDep, _user: UserDep):
    """One resource group

    Addressed by id, unique id prefix or key."""
    return svc.group_view(session, svc.find_group(session, ref))


@router.get("/resource-groups/{ref}/statistics", response_model=PoolStatisticsResponse)
def group_statistics(ref: str, session: SessionDep, _user: UserDep):
    """Statistics of one resource group

    Capacity, allocated and free per dimension over the group's nodes."""
    return svc.pool_statistics(session, group=ref)


@router.post("/resource-groups", response_model=ResourceGroupResponse, status_code=status.HTTP_201_CREATED)
def create_group(req: ResourceGroupCreate, session: SessionDep, admin: AdminDep):
    """Admin: create a resource group

    A named set of nodes jobs can be placed on (key: a short unique identifier)."""
    g = svc.create_group(session, actor_id=admin.id, name=req.name, key=req.key, description=req.description)
    return svc.group_view(session, g)


@router.patch("/resource-groups/{ref}", response_model=ResourceGroupResponse)
def update_group(ref: str, req: ResourceGroupUpdate, session: SessionDep, admin: AdminDep):
    """Admin: change a resource group

    Renames it or changes its description; the key stays."""
    g = svc.update_group(session, actor_id=admin.id, group=svc.find_group(session, ref),
                         changes=req.model_dump(exclude_unset=True, exclude_none=True))
    return svc.group_view(session, g)


@router.delete("/resource-groups/{ref}", status_code=status.HTTP_204_NO_CONTENT,
               summary="Admin: delete an empty resource group (409 in_use while nodes are in it)")
def delete_group(ref: str, session: SessionDep, admin: AdminDep):
    """Only a group without nodes can be deleted; move its nodes elsewhere first."""
    svc.delete_group(session, actor_id=admin.id, group=svc.find_group(session, ref))


# --- flavors ----------------------------------------------------------------------------------

@router.get("/flavors", response_model=FlavorListResponse,
            summary="Flavors as ModelArts specifications (over_quota is judged against the caller's quota)")
def list_flavors(session: SessionDep, principal: UserDep, tag: TagQuery = None, category: str | None = None):
    """Each flavor is a named resource bundle (cpu, memory, gpus); over_quota tells whether the caller's quota could hold it."""
    items = svc.list_flavors(session, user_id=principal.id, tags=tag, category=category)
    return {"total_count": len(items), "count": len(items), "specifications": items}


@router.get("/flavors/{ref}", response_model=FlavorResponse)
def get_flavor(ref: str, session: SessionDep, principal: UserDep):
    """One flavor

    Addressed by id, unique id prefix or name, in the ModelArts specification shape."""
    return svc.flavor_view(session, svc.find_flavor(session, ref), svc.FlavorContext(session, principal.id))


@router.post("/flavors", response_model=FlavorResponse, status_code=status.HTTP_201_CREATED)
def create_flavor(req: FlavorCreate, session: SessionDep, admin: AdminDep):
    """Admin: create a flavor

    A named resource bundle users can pick instead of spelling out cpu, memory and gpus."""
    f = svc.create_flavor(session, actor_id=admin.id, **req.model_dump())
    return svc.flavor_view(session, f, svc.FlavorContext(session, admin.id))


@router.patch("/flavors/{ref}", response_model=FlavorResponse)
def update_flavor(ref: str, req: FlavorUpdate, session: SessionDep, admin: AdminDep):
    """Admin: change a flavor

    Any subset of its resources and description."""
    f = svc.update_flavor(session, actor_id=admin.id, flavor=svc.find_flavor(session, ref),
                          changes=req.model_dump(exclude_unset=True, exclude_none=True))
    return svc.flavor_view(session, f, svc.FlavorContext(session, admin.id))


@router.delete("/flavors/{ref}", status_code=status.HTTP_204_NO_CONTENT)
def delete_flavor(ref: str, session: SessionDep, admin: AdminDep):
    """Admin: delete a flavor

    Jobs already submitted with it keep their resources."""
    svc.delete_flavor(session, actor_id=admin.id, flavor=svc.find_flavor(session, ref))


# --- quotas -----------------------------------------------------------------------------------

@router.get("/quotas", response_model=list[QuotaResponse], summary="Admin: every user's quota and usage")
def list_quotas(session: SessionDep, settings: SettingsDep, _admin: AdminDep, storage: bool = False):
    """Limits, live usage and what is left, for every user."""
    users = users_svc.list_users(session, order="name")
    return [usage.quota_view(session, settings, u, with_storage=storage) for u in users]


@router.get("/quotas/me", response_model=QuotaResponse,
            summary="The caller's quota: limits, used (live allocations), remaining, window, storage")
def my_quota(session: SessionDep, settings: SettingsDep, principal: UserDep):
    """What the caller may hold and what it holds now: jobs, cpu, memory, gpus, the time window and storage."""
    return usage.quota_view(session, settings, quota_svc.find_user(session, principal.id))


@router.get("/quotas/{user}", response_model=QuotaResponse, summary="A user's quota (by id or name; admin or self)")
def get_quota(user: str, session: SessionDep, settings: SettingsDep, principal: UserDep):
    """An admin may read anyone's; a user only their own (403 otherwise)."""
    u = quota_svc.find_user(session, user)
    if u.id != principal.id and not principal.is_admin:
        raise Forbidden("only admins read other users' quotas")
    return usage.quota_view(session, settings, u)


@router.put("/quotas/{user}", response_model=QuotaResponse,
            summary="Admin: set any subset of the quota (null clears window bounds / disables storage quota); "
                    "marks it configured (seed isInitConfig)")
def put_quota(user: str, req: QuotaUpdate, session: SessionDep, settings: SettingsDep, admin: AdminDep):
    """Only the given fields change; the quota is marked configured."""
    u = quota_svc.find_user(session, user)
    quota_svc.set_quota(session, actor_id=admin.id, user_id=u.id, changes=req.model_dump(exclude_unset=True))
    return usage.quota_view(session, settings, u)


# --- ModelArts-style pool views ---------------------------------------------------------------

@router.get("/pools/statistics", summary="ModelArts pool statistics: resource groups by status")
def pools_statistics(session: SessionDep, _user: UserDep):
    """Resource groups counted by status, in the ModelArts pool statistics shape."""
    return svc.pool_status_counts(session)


@router.get("/pools/metrics", summary="ModelArts PoolMetricsList: allocated and capacity per resource group")
def pools_metrics(session: SessionDep, _user: UserDep):
    """Allocated and total capacity per resource group, in the ModelArts PoolMetricsList shape."""
    return svc.pool_metrics(session)


# --- tags -------------------------------------------------------------------------------------

@router.get("/tags", response_model=PoolTagsResponse, summary="Every tag key with its values (ModelArts PoolTag)")
def all_tags(session: SessionDep, _user: UserDep, resource_type: str | None = None):
    """Every tag key in use with the values it takes, over nodes, resource groups and flavors."""
    return {"tags": svc.aggregate_tags(session, resource_type)}


@router.get("/tags/resources", response_model=TaggedResourcesResponse,
            summary="Resources (nodes, resource groups, flavors) carrying the given tags")
def tagged_resources(session: SessionDep, _user: UserDep, resource_type: str | None = None, tag: TagQuery = None):
    """Nodes, resource groups and flavors matching all the given tags."""
    items = svc.resources_by_tag(session, resource_type=resource_type, tags=tag or [])
    return {"total": len(items), "resources": items}


def _tag_routes(path: str, resource_type: str) -> None:
    def get_tags(ref: str, session: SessionDep, _user: UserDep):
        """The tags set on this resource, as key/value pairs."""
        obj = svc.find_taggable(session, resource_type, ref)
        return {"resource_type": resource_type, "resource_id": obj.id, "tags": _as_list(svc.get_tags(
            session, resource_type, obj.id))}

    def put_tags(ref: str, req: TagsBody, session: SessionDep, admin: AdminDep, replace: bool = False):
        """Upserts the given tags; with replace=true the resource ends with exactly these."""
        obj = svc.find_taggable(session, resource_type, ref)
        tags = svc.set_tags(session, actor_id=admin.id, resource_type=resource_type, resource_id=obj.id,
                            tags={t.key: t.value for t in req.tags}, replace=replace)
        return {"resource_type": resource_type, "resource_id": obj.id, "tags": _as_list(tags)}

    def delete_tags(ref: str, session: SessionDep, admin: AdminDep,
                    key: Annotated[list[str] | None, Query(description="keys to remove; none: all")] = None):
        """Removes the named tag keys from the resource."""
        obj = svc.find_taggable(session, resource_type, ref)
        tags = svc.delete_tags(session, actor_id=admin.id, resource_type=resource_type, resource_id=obj.id,
                               keys=key)
        return {"resource_type": resource_type, "resource_id": obj.id, "tags": _as_list(tags)}

    router.add_api_route(f"/{path}/{{ref}}/tags", get_tags, methods=["GET"], response_model=TagsResponse,
                         name=f"get_{resource_type}_tags", summary=f"Tags of a {resource_type}")
    router.add_api_route(f"/{path}/{{ref}}/tags", put_tags, methods=["PUT"], response_model=TagsResponse,
                         name=f"put_{resource_type}_tags",
                         summary=f"Admin: upsert tags of a {resource_type} (replace=true: exactly these)")
    router.add_api_route(f"/{path}/{{ref}}/tags", delete_tags, methods=["DELETE"], response_model=TagsResponse,
                         name=f"delete_{resource_type}_tags", summary=f"Admin: remove tags of a {resource_type}")


def _as_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in tags.items()]


for _path, _rt in (("nodes", "node"), ("resource-groups", "resource_group"), ("flavors", "flavor")):
    _tag_routes(_path, _rt)
