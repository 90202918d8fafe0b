"""Native inference-service bodies (/api/v1/services). The seed's §7 bodies
(schemas/seed/serving.py) map onto ServiceCreate / VersionSpec."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from .common import MAX_DESCRIPTION, MAX_NAME, MAX_PATH

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class VolumeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    src: str = Field(..., max_length=MAX_PATH, description="a folder (or file) in your files, e.g. /Data/ref")
    dst: str = Field(..., max_length=MAX_PATH, description="where the replica sees it (an absolute path)")


class VersionSpec(BaseModel):
    """One version of a service: what it runs, its resources per replica, how many replicas, its
    traffic share."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    model: str | None = Field(None, max_length=MAX_NAME,
                              description="model version: its id, or MODEL[:VERSION] (latest ready version)")
    runtime: str = Field("auto", max_length=16,
                         description="auto | transformers | vllm | template | image (auto: vLLM when prepared)")
    adapters: dict[str, str] = Field(default_factory=dict, max_length=32,
                                     description="served name -> LoRA adapter model version, served next to the base")
    template_id: str | None = Field(None, max_length=MAX_NAME, description="a service template (runtime template)")
    image: str | None = Field(None, max_length=MAX_NAME,
                              description="custom image (runtime image): its root filesystem runs the command")
    command: str = Field("", max_length=64 * 1024, description="runtime image: the command serving HTTP on the port")
    image_ports: str = Field("", max_length=256, description="runtime image: the port(s) it listens on, first used")
    env: dict[str, str] = Field(default_factory=dict, max_length=256, description="added to each replica's env")
    volumes: list[VolumeSpec] = Field(default_factory=list, max_length=32,
                                      description="folders of your files shown inside each replica")
    cpu: float = Field(1.0, gt=0, le=4096, description="CPU cores per replica")
    memory_mib: int = Field(2048, gt=0, le=1 << 30, description="memory per replica, MiB")
    gpu: int = Field(0, ge=0, le=64, description="GPUs per replica")
    gpu_share: str = Field("none", max_length=32, description="none: whole GPUs; anything else: shared vGPUs")
    gpu_mem: int | None = Field(None, ge=0, le=1 << 20, description="GPU memory needed per GPU, GiB")
    gpu_cores: int | None = Field(None, ge=0, le=1 << 20, description="GPU compute share (kept, as for jobs)")
    mig_res: str = Field("", max_length=64, description="a MIG profile (e.g. 1g.10gb): GPUs as MIG slices")
    resource_group: str | None = Field(None, max_length=MAX_NAME,
                                       description="resource group id, key or name: replicas run on its nodes")
    replicas: int | None = Field(None, ge=1, le=64, description="replicas wanted (default: min_replicas or 1)")
    min_replicas: int | None = Field(None, ge=1, le=64, description="autoscaling floor (stored)")
    max_replicas: int | None = Field(None, ge=1, le=64, description="autoscaling ceiling (stored)")
    metric: Literal[1, 2, 3] = Field(1, description="autoscaling metric: 1 req/s, 2 concurrency, 3 GPU use (stored; "
                                                    "the autoscaler comes with the gateway)")
    monitor_threshold: float = Field(100.0, ge=0, le=1e12, description="the metric's target value")
    rate: int | None = Field(None, ge=0, le=100, description="traffic share in percent; a service's versions sum to 100")
    req_method: str = Field("rest", max_length=16, description="rest (grpc is not served)")

    @model_validator(mode="after")
    def _bounds(self) -> VersionSpec:
        if self.min_replicas is not None and self.max_replicas is not None and self.min_replicas > self.max_replicas:
            raise ValueError(f"min_replicas {self.min_replicas} > max_replicas {self.max_replicas}")
        return self


class ServiceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: str = Field(..., min_length=1, max_length=128, pattern=NAME_PATTERN,
                      description="unique among your services; the OpenAI `model` name clients use")
    description: str = Field("", description="free text shown with the service", max_length=MAX_DESCRIPTION)
    path: str = Field("", max_length=MAX_PATH, description="the seed's modelServer.path (kept and shown)")
    versions: list[VersionSpec] = Field(..., description="the service's versions (1..16): what runs, resources, replicas, traffic share", min_length=1, max_length=16)
    start: bool = Field(True, description="deploy now (false: saved only)")


class ScaleRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    version: int | None = Field(None, ge=1, description="version number (default: every version)")
    replicas: int | None = Field(None, description="replicas wanted", ge=1, le=64)
    min_replicas: int | None = Field(None, description="autoscaling floor (stored)", ge=1, le=64)
    max_replicas: int | None = Field(None, description="autoscaling ceiling (stored)", ge=1, le=64)


class RatesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    rates: dict[int, int] = Field(..., description="version number -> traffic percent; must sum to 100")


class ServiceSummary(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """the service's id"""
    name: str
    """the service's name (the OpenAI `model` name)"""
    owner_id: str
    """the owner's user id"""
    state: str = Field(..., description="saved | deploying | running | degraded | stopping | stopped | failed")
    description: str = ""
    """free text shown with the service"""
    created_at: Any = None
    """when it was created (UTC)"""
    version_count: int = 0
    """how many versions it has"""
    ready_replicas: int = 0
    """replicas answering their ready probe"""
    desired_replicas: int = 0
    """replicas its active versions want"""


class ServiceDetail(ServiceSummary):
    model_config = ConfigDict(extra="allow", use_attribute_docstrings=True)

    progress: int = Field(0, description="percent of the desired replicas ready")
    access_address: str = Field("", description="the OpenAI base URL (<platform>/v1); `model` is a model name below")
    model_names: list[str] = Field(default_factory=list, description="names clients may send as `model`")
    invocations: int = 0
    """calls the gateway counted"""
    failures: int = 0
    """failed calls the gateway counted"""
    error: str | None = None
    """why it failed, if it did"""
    versions: list[dict[str, Any]] = Field(default_factory=list, description="per-version config, weight, instances")
    replicas: list[dict[str, Any]] = Field(description="replicas wanted", default_factory=list)
