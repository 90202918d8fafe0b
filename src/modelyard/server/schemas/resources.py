"""Request/response bodies of the resources domain: nodes, resource groups, flavors
("specifications"), quotas, pool statistics, tags and events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from .common import MAX_SAFE_INT, ORMModel, UTCDateTime


class ResourceAmounts(BaseModel):
    """One amount per dimension. Memory in MiB."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    cpu: float = 0
    """CPU cores"""
    memory_mib: int = 0
    """memory in MiB"""
    gpu: int = 0
    """whole GPUs"""
    vgpu: int = 0
    """shared virtual GPUs"""
    mig: int = 0
    """MIG slices"""


class Tag(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    key: str = Field(min_length=1, max_length=128)
    """the tag's key"""
    value: str = Field(default="", max_length=256)
    """its value"""


class TagsBody(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    tags: list[Tag]
    """the tags to set"""


class TagsResponse(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    resource_type: str
    """node, resource_group or flavor"""
    resource_id: str
    """the resource's id"""
    tags: list[Tag]
    """its tags"""


class PoolTag(BaseModel):
    """ModelArts PoolTag: a key and every value it has across resources of a type."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    key: str
    """a tag key in use"""
    values: list[str]
    """the values it takes"""


class PoolTagsResponse(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    tags: list[PoolTag]
    """every tag key with its values"""


class TaggedResource(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    resource_type: str
    """node, resource_group or flavor"""
    resource_id: str
    """its id"""
    name: str
    """its name"""
    tags: dict[str, str]
    """its tags"""


class TaggedResourcesResponse(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    total: int
    """how many resources match"""
    resources: list[TaggedResource]
    """the matching resources"""


# --- nodes ------------------------------------------------------------------------------------

class NodeResponse(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """the node's id"""
    name: str
    """its name (also names it in paths)"""
    address: str
    """where its executor is reached"""
    group_id: str | None
    """its resource group's id"""
    group_key: str | None = None
    """its resource group's key"""
    executor: str
    """what runs replicas there (local)"""
    arch: str
    """its CPU architecture"""
    status: str = Field(description="ready | cordoned | offline")
    gpu_info: list[dict[str, Any]]
    """each GPU's model, memory and compute capability"""
    labels: dict[str, str] = Field(description="the node's tags")
    capacity: ResourceAmounts
    """what it holds in all"""
    allocated: ResourceAmounts = Field(description="sum of live allocations on the node")
    free: ResourceAmounts = Field(description="capacity - allocated (never below 0)")
    allocations: int = Field(description="live allocation rows on the node")
    consumers: int = Field(description="distinct consumers (jobs, services) holding allocations on the node")
    heartbeat_at: UTCDateTime
    """when it last reported in"""
    created_at: UTCDateTime
    """when it was registered (UTC)"""


class NodeAllocation(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """the allocation's id"""
    user_id: str
    """whose it is"""
    consumer_type: str
    """what holds it (job)"""
    consumer_id: str
    """that job's id"""
    part: str
    """the replica it is for, e.g. master-0"""
    counts_as_job: bool
    """whether it counts against the user's job slots"""
    resources: ResourceAmounts
    """what it holds"""
    created_at: UTCDateTime
    """when it was allocated (UTC)"""


class NodeDetailResponse(NodeResponse):
    live_allocations: list[NodeAllocation] = Field(default_factory=list,
                                                   description="visible to admins only (empty for users)")


class LabelsBody(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    labels: dict[Annotated[str, StringConstraints(max_length=128)], Annotated[str, StringConstraints(max_length=256)]]
    """labels as {key: value}"""


# --- resource groups --------------------------------------------------------------------------

class ResourceGroupCreate(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    name: str = Field(min_length=1, max_length=128)
    """a display name"""
    key: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    """a short unique identifier (letters, digits, '-', '_')"""
    description: str = Field(default="", max_length=512)
    """what the group is for"""


class ResourceGroupUpdate(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    name: str | None = Field(default=None, min_length=1, max_length=128)
    """a new display name"""
    description: str | None = Field(default=None, max_length=512)
    """a new description"""


class ResourceGroupResponse(ORMModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """the group's id"""
    name: str
    """its display name"""
    key: str
    """its unique key (also names it in paths)"""
    description: str
    """what it is for"""
    nodes: int = 0
    """how many nodes it has"""
    tags: dict[str, str] = Field(default_factory=dict)
    """its tags"""
    created_at: UTCDateTime
    """when it was created (UTC)"""
    updated_at: UTCDateTime
    """when it last changed"""


class NodeGroupMove(BaseModel):
    group_id: str | None = Field(description="resource group id or key; null: no group")


# --- flavors ("specifications", seed 002 ModelArts) -------------------------------------------

class FlavorCreate(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
    """a unique name, e.g. gpu.1x"""
    cpu: float = Field(gt=0, le=1e9)
    """CPU cores"""
    memory_mib: int = Field(gt=0, le=MAX_SAFE_INT)
    """memory in MiB"""
    gpu: int = Field(default=0, ge=0, le=MAX_SAFE_INT)
    """whole GPUs"""
    gpu_memory_mib: int = Field(default=0, ge=0, le=MAX_SAFE_INT)
    """memory of each GPU, in MiB"""
    vgpu: int = Field(default=0, ge=0, le=MAX_SAFE_INT)
    """shared virtual GPUs"""
    mig: int = Field(default=0, ge=0, le=MAX_SAFE_INT)
    """MIG slices"""
    description: str = Field(default="", max_length=512)
    """what it is for"""


class FlavorUpdate(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    cpu: float | None = Field(default=None, gt=0, le=1e9)
    """new CPU cores"""
    memory_mib: int | None = Field(default=None, gt=0, le=MAX_SAFE_INT)
    """new memory in MiB"""
    gpu: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)
    """new whole GPUs"""
    gpu_memory_mib: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)
    """new memory per GPU, in MiB"""
    vgpu: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)
    """new shared GPUs"""
    mig: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)
    """new MIG slices"""
    description: str | None = Field(default=None, max_length=512)
    """a new description"""


class CpuInfo(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    arch: str
    """the CPU architecture"""
    cpu: float
    """CPU cores"""


class MemoryInfo(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    unit: str = "MB"
    """the unit of memory (GiB)"""
    memory: int
    """the amount"""


class GpuInfo(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    brand: str
    """the GPU maker"""
    version: str
    """the GPU model"""
    unit: str = "GB"
    """the unit of memory (GiB)"""
    memory: int
    """memory per GPU"""
    gpu: int
    """how many GPUs"""


class FlavorResponse(BaseModel):
    """Our flavor plus ModelArts Specification fields (specification, category, spec_status, ...)."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """the flavor's id"""
    name: str
    """its name (also names it in paths)"""
    cpu: float
    """CPU cores"""
    memory_mib: int
    """memory in MiB"""
    gpu: int
    """whole GPUs"""
    gpu_memory_mib: int
    """memory per GPU, in MiB"""
    vgpu: int
    """shared virtual GPUs"""
    mig: int
    """MIG slices"""
    description: str
    """what it is for"""
    tags: dict[str, str]
    """its tags"""
    created_at: UTCDateTime
    """when it was created (UTC)"""
    # ModelArts Specification
    specification: str = Field(description="the flavor's unique name")
    billing_spec: str
    """the ModelArts billing code (informational)"""
    category: str = Field(description="CPU | GPU")
    spec_status: str = Field(description="normal: some ready node can place it now; sellout: none can")
    is_open: bool
    """whether users may pick it"""
    is_free: bool
    """whether it is free of charge"""
    over_quota: bool = Field(description="exceeds the caller's quota (total limits)")
    source_type: str = ""
    """the ModelArts source type"""
    cpu_info: CpuInfo
    """its CPU in the ModelArts shape"""
    memory_info: MemoryInfo
    """its memory in the ModelArts shape"""
    gpu_info: GpuInfo | None
    """its GPUs in the ModelArts shape"""
    display_en: str
    """its English display name"""
    display_cn: str
    """its Chinese display name"""


class FlavorListResponse(BaseModel):
    """ModelArts shape: total_count, count, specifications."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    total_count: int
    """how many flavors exist"""
    count: int
    """how many are listed"""
    specifications: list[FlavorResponse]
    """the flavors"""


# --- quotas -----------------------------------------------------------------------------------

def _naive_utc(v: datetime | None) -> datetime | None:
    if v is not None and v.tzinfo is not None:
        return v.astimezone(UTC).replace(tzinfo=None)
    return v


class QuotaUpdate(BaseModel):
    """Admin: set any subset. A field given as null clears it (start_at/end_at: no bound;
    storage_bytes/storage_files: storage quota not enabled). Times are UTC
    ("YYYY-MM-DD HH:MM:SS" or ISO 8601; an offset is converted)."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    cpu: float | None = Field(default=None, ge=0, le=1e9)
    """CPU cores the user may hold at once"""
    memory_mib: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)
    """memory in MiB"""
    gpu: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)
    """whole GPUs"""
    vgpu: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)
    """shared virtual GPUs"""
    mig: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)
    """MIG slices"""
    jobs: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)
    """jobs running at once"""
    start_at: datetime | None = None
    """when the quota starts to apply (null: always)"""
    end_at: datetime | None = None
    """when it stops (null: never)"""
    storage_bytes: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)
    """bytes of files (null: no storage quota)"""
    storage_files: int | None = Field(default=None, ge=0, le=MAX_SAFE_INT)
    """number of files (null: unlimited)"""
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
    model_config = ConfigDict(use_attribute_docstrings=True)

    enabled: bool = Field(description="false: storage quota not enabled (unlimited)")
    bytes_quota: int | None
    """the byte quota (null: none)"""
    bytes_used: int | None = Field(description="null when usage could not be measured")
    bytes_remaining: int | None
    """bytes still free"""
    files_quota: int | None
    """the file-count quota (null: none)"""
    files_used: int | None
    """files stored"""
    files_remaining: int | None
    """files still allowed"""


class QuotaResponse(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    user_id: str
    """whose quota this is"""
    user_name: str | None = None
    """that user's name"""
    limits: ResourceAmounts
    """what the user may hold at once"""
    used: ResourceAmounts = Field(description="sum of the user's live allocations")
    remaining: ResourceAmounts = Field(description="limits - used (never below 0)")
    jobs: int = Field(description="concurrent jobs allowed")
    jobs_used: int
    """jobs running now"""
    jobs_remaining: int
    """jobs that may still start"""
    start_at: UTCDateTime | None
    """when the quota window opens"""
    end_at: UTCDateTime | None
    """when it closes"""
    active: bool = Field(description="now is inside the validity window")
    is_init_config: bool = Field(description="an admin configured this quota explicitly")
    max_priority: int | None = Field(None, description="highest priority allowed (null: the server's ceiling)")
    can_urgent: bool = False
    """whether the user may submit urgent jobs"""
    storage: StorageUsage | None = None
    """storage quota and use"""
    updated_at: UTCDateTime
    """when it last changed"""


# --- statistics -------------------------------------------------------------------------------

class UsageTable(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    capacity: ResourceAmounts
    """what there is in all"""
    allocated: ResourceAmounts
    """what is held by live allocations"""
    free: ResourceAmounts
    """what is left"""
    allocations: int = Field(description="live allocation rows")
    consumers: int = Field(description="distinct live consumers (jobs, services)")


class NodeStatistics(UsageTable):
    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """the node's id"""
    name: str
    """its name"""
    status: str
    """ready or cordoned"""


class GroupStatistics(UsageTable):
    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str | None = Field(description="null for the nodes that belong to no group")
    key: str | None
    """the group's key"""
    name: str
    """its name"""
    nodes_total: int
    """nodes in it"""
    nodes_ready: int
    """nodes taking work"""
    nodes: list[NodeStatistics]
    """its nodes"""


class PoolStatisticsResponse(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    operation_time: UTCDateTime
    """when the figures were taken (UTC)"""
    totals: UsageTable
    """counts over all groups"""
    groups: list[GroupStatistics]
    """each group's counts"""


# --- events -----------------------------------------------------------------------------------

class EventResponse(ORMModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    id: int
    """the event's id"""
    at: UTCDateTime
    """when it happened (UTC)"""
    actor_id: str | None
    """who caused it (null: the platform)"""
    kind: str
    """what happened, e.g. job.deleted"""
    object_type: str
    """the kind of object it is about"""
    object_id: str
    """that object's id"""
    message: str
    """a human-readable account"""
    data: dict[str, Any]
    """structured details"""
