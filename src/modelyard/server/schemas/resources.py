"""Request/response bodies of the resources domain: nodes, resource groups, flavors
("specifications"), quotas, pool statistics, tags and events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from .common import MAX_SAFE_INT, ORMModel, UTCDateTime


class ResourceAmounts(BaseModel):
    """One amount per dimension. Memory in MiB."""

    cpu: float = 0
    memory_mib: int = 0
    gpu: int = 0
    vgpu: int = 0
    mig: int = 0


class Tag(BaseModel):
    key: str = Field(min_length=1, max_length=128)
    value: str = Field(default="", max_length=256)


class TagsBody(BaseModel):
    tags: list[Tag]


class TagsResponse(BaseModel):
    resource_type: str
    resource_id: str
    tags: list[Tag]


class PoolTag(BaseModel):
    """ModelArts PoolTag: a key and every value it has across resources of a type."""

    key: str
    values: list[str]


class PoolTagsResponse(BaseModel):
    tags: list[PoolTag]


class TaggedResource(BaseModel):
    resource_type: str
    resource_id: str
    name: str
    tags: dict[str, str]


class TaggedResourcesResponse(BaseModel):
    total: int
    resources: list[TaggedResource]


# --- nodes ------------------------------------------------------------------------------------

class NodeResponse(BaseModel):
    id: str
    name: str
    address: str
    group_id: str | None
    group_key: str | None = None
    executor: str
    arch: str
    status: str = Field(description="ready | cordoned | offline")
    gpu_info: list[dict[str, Any]]
    labels: dict[str, str] = Field(description="the node's tags")
    capacity: ResourceAmounts
    allocated: ResourceAmounts = Field(description="sum of live allocations on the node")
    free: ResourceAmounts = Field(description="capacity - allocated (never below 0)")
    allocations: int = Field(description="live allocation rows on the node")
    consumers: int = Field(description="distinct consumers (jobs, services) holding allocations on the node")
    heartbeat_at: UTCDateTime
    created_at: UTCDateTime


class NodeAllocation(BaseModel):
    id: str
    user_id: str
    consumer_type: str
    consumer_id: str
    part: str
    counts_as_job: bool
    resources: ResourceAmounts
    created_at: UTCDateTime


class NodeDetailResponse(NodeResponse):
    live_allocations: list[NodeAllocation] = Field(default_factory=list,
                                                   description="visible to admins only (empty for users)")


class LabelsBody(BaseModel):
    labels: dict[Annotated[str, StringConstraints(max_length=128)], Annotated[str, StringConstraints(max_length=256)]]


# --- resource groups --------------------------------------------------------------------------

class ResourceGroupCreate(BaseModel):
    name: str = Field(min_length=1, max_length=128)
    key: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = Field(default="", max_length=512)


class ResourceGroupUpdate(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=128)
    description: str | None = Field(default=None, max_length=512)


class ResourceGroupResponse(ORMModel):
    id: str
    name: str
    key: str
    description: str
    nodes: int = 0
    tags: dict[str, str] = Field(default_factory=dict)
    created_at: UTCDateTime
    updated_at: UTCDateTime


class NodeGroupMove(BaseModel):
    group_id: str | None = Field(description="resource group id or key; null: no group")


# --- flavors ("specifications", seed 002 ModelArts) -------------------------------------------

class FlavorCreate(BaseModel):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    cpu: float = Field(gt=0, le=1e9)
    memory_mib: int = Field(gt=0, le=MAX_SAFE_INT)
    gpu: int = Field(default=0, ge=0, le=MAX_SAFE_INT)
    gpu_memory_mib: int = Field(default=0, ge=0, le=MAX_SAFE_INT)
    vgpu: int = Field(default=0, ge=0, le=MAX_SAFE_INT)
    mig: int = Field(default=0, ge=0, le=MAX_SAFE_INT)
    description: str = Field(default="", max_length=512)


class FlavorUpdate(BaseModel):
    cpu: float | None = Field(default=None, gt=0, le=1e9)
    memory_mib: int | None = Field(default=None, gt=0, le=MAX_SAFE_INT)
    gpu: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)
    gpu_memory_mib: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)
    vgpu: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)
    mig: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)
    description: str | None = Field(default=None, max_length=512)


class CpuInfo(BaseModel):
    arch: str
    cpu: float


class MemoryInfo(BaseModel):
    unit: str = "MB"
    memory: int


class GpuInfo(BaseModel):
    brand: str
    version: str
    unit: str = "GB"
    memory: int
    gpu: int


class FlavorResponse(BaseModel):
    """Our flavor plus ModelArts Specification fields (specification, category, spec_status, ...)."""

    id: str
    name: str
    cpu: float
    memory_mib: int
    gpu: int
    gpu_memory_mib: int
    vgpu: int
    mig: int
    description: str
    tags: dict[str, str]
    created_at: UTCDateTime
    # ModelArts Specification
    specification: str = Field(description="the flavor's unique name")
    billing_spec: str
    category: str = Field(description="CPU | GPU")
    spec_status: str = Field(description="normal: some ready node can place it now; sellout: none can")
    is_open: bool
    is_free: bool
    over_quota: bool = Field(description="exceeds the caller's quota (total limits)")
    source_type: str = ""
    cpu_info: CpuInfo
    memory_info: MemoryInfo
    gpu_info: GpuInfo | None
    display_en: str
    display_cn: str


class FlavorListResponse(BaseModel):
    """ModelArts shape: total_count, count, specifications."""

    total_count: int
    count: int
    specifications: list[FlavorResponse]


# --- quotas -----------------------------------------------------------------------------------

def _naive_utc(v: datetime | None) -> datetime | None:
    if v is not None and v.tzinfo is not None:
        return v.astimezone(UTC).replace(tzinfo=None)
    return v


class QuotaUpdate(BaseModel):
    """Admin: set any subset. A field given as null clears it (start_at/end_at: no bound;
    storage_bytes/storage_files: storage quota not enabled). Times are UTC
    ("YYYY-MM-DD HH:MM:SS" or ISO 8601; an offset is converted)."""

    model_config = ConfigDict(extra="forbid")

    cpu: float | None = Field(default=None, ge=0, le=1e9)
    memory_mib: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)
    gpu: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)
    vgpu: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)
    mig: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)
    jobs: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)
    start_at: datetime | None = None
    end_at: datetime | None = None
    storage_bytes: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)
    storage_files: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)
    max_priority: int | None = Field(default=None, ge=-1000, le=1000,
                                     description="the highest job priority the user may ask for (null: the "
                                                 "server's scheduler.priority_ceiling)")
    can_urgent: bool | None = Field(default=None, description="may submit urgent jobs (they jump the queue)")

    @field_validator("start_at", "end_at")
    @classmethod
    def _tz(cls, v: datetime | None) -> datetime | None:
        return _naive_utc(v)

    @field_validator("cpu", "memory_mib", "gpu", "vgpu", "mig", "jobs", "can_urgent")
    @classmethod
    def _not_null(cls, v: float | int | None) -> float | int:
        if v is None:  # only the fields the doc above names can be cleared
            raise ValueError("this field cannot be null (compute limits: give a number, 0 for none)")
        return v


class StorageUsage(BaseModel):
    enabled: bool = Field(description="false: storage quota not enabled (unlimited)")
    bytes_quota: int | None
    bytes_used: int | None = Field(description="null when usage could not be measured")
    bytes_remaining: int | None
    files_quota: int | None
    files_used: int | None
    files_remaining: int | None


class QuotaResponse(BaseModel):
    user_id: str
    user_name: str | None = None
    limits: ResourceAmounts
    used: ResourceAmounts = Field(description="sum of the user's live allocations")
    remaining: ResourceAmounts = Field(description="limits - used (never below 0)")
    jobs: int = Field(description="concurrent jobs allowed")
    jobs_used: int
    jobs_remaining: int
    start_at: UTCDateTime | None
    end_at: UTCDateTime | None
    active: bool = Field(description="now is inside the validity window")
    is_init_config: bool = Field(description="an admin configured this quota explicitly")
    max_priority: int | None = Field(None, description="highest priority allowed (null: the server's ceiling)")
    can_urgent: bool = False
    storage: StorageUsage | None = None
    updated_at: UTCDateTime


# --- statistics -------------------------------------------------------------------------------

class UsageTable(BaseModel):
    capacity: ResourceAmounts
    allocated: ResourceAmounts
    free: ResourceAmounts
    allocations: int = Field(description="live allocation rows")
    consumers: int = Field(description="distinct live consumers (jobs, services)")


class NodeStatistics(UsageTable):
    id: str
    name: str
    status: str


class GroupStatistics(UsageTable):
    id: str | None = Field(description="null for the nodes that belong to no group")
    key: str | None
    name: str
    nodes_total: int
    nodes_ready: int
    nodes: list[NodeStatistics]


class PoolStatisticsResponse(BaseModel):
    operation_time: UTCDateTime
    totals: UsageTable
    groups: list[GroupStatistics]


# --- events -----------------------------------------------------------------------------------

class EventResponse(ORMModel):
    id: int
    at: UTCDateTime
    actor_id: str | None
    kind: str
    object_type: str
    object_id: str
    message: str
    data: dict[str, Any]
