"""Native job API bodies. The seed's CreateTaskBO (routers/compat/finetune.py) maps onto JobSubmit."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .common import ORMModel


class GpuSpec(BaseModel):
    """The seed's gpuResource. share: "none"/"" = whole GPUs (counted as `gpu`); any other mode
    ("share", "vgpu", ...) = shared vGPUs (counted as `vgpu`); mig: a MIG profile such as
    "1g.10gb" (counted as `mig`). mem_gib is checked against the largest GPU of any node."""

    model_config = ConfigDict(extra="forbid")

    num: int = Field(0, ge=0, le=64)
    mem_gib: float | None = Field(None, ge=0)
    share: str | None = None
    mig: str | None = None
    cores: int | None = Field(None, ge=0)


class RoleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["master", "worker"] = "master"
    replicas: int = Field(1, ge=0, le=64)
    cpu: float = Field(1.0, ge=0, le=4096)
    memory_mib: int = Field(2048, ge=0)
    gpu: GpuSpec = Field(default_factory=GpuSpec)


class JobSubmit(BaseModel):
    """A job: `custom` (command in an image's environment) or `finetune` / `pretrain`
    (the platform's trainer on a registry model and a dataset)."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=128)
    description: str = Field("", max_length=1024)
    kind: Literal["custom", "finetune", "pretrain"] = "custom"
    priority: int = Field(0, ge=-1000, le=1000)
    is_urgent: bool = False
    roles: list[RoleSpec] = Field(default_factory=list, description="default: one master replica")
    # custom jobs
    image: str | None = Field(None, description="image version id, image id/name (newest version) or name:tag. "
                              "No container runtime: the replica is a host process; the image's Env (not PATH/"
                              "HOME), Entrypoint/Cmd and WorkingDir (when it exists in your files) are applied")
    command: str | list[str] | None = Field(None, description="a shell command line, or an argv list")
    commands: list[str] | None = Field(None, description="shell commands run in order (stop at the first failure)")
    mpi_command: str | None = None
    env: dict[str, str] = Field(default_factory=dict)
    working_dir: str | None = Field(None, description="relative to the user's root (MODELYARD_USER_ROOT)")
    # training (also offered to custom jobs as MODELYARD_MODEL_DIR / MODELYARD_DATA_DIR when given)
    model: str | None = Field(None, description="model version id, model name/id, or name:version")
    model_dir: str | None = Field(None, description="instead of a registry model: a folder in the user's files "
                                                   "holding Hugging Face weights (config.json + safetensors)")
    dataset: str | None = Field(None, description="dataset version id, or dataset name/id (latest version)")
    input_type: Literal["dataset", "local"] | None = None
    input_dir: str | None = Field(None, description="input_type local: folder with train/ and validate/ (default Data)")
    strategy: str | None = Field(None, description="LoRA | FineTune")
    config: dict[str, Any] | None = Field(None, description="the seed's config.json structure")
    profile_path: str | None = Field(None, description="a config.json in the user's files")
    common_hyperparameters: list[dict[str, Any]] | dict[str, Any] | None = None
    finetune_hyperparameters: list[dict[str, Any]] | dict[str, Any] | None = None
    checkpoint_dir: str | None = Field(None, description="relative to the user's root (default: the job's folder)")
    output_dir: str | None = None
    output_model_name: str | None = Field(None, description="registry model the output becomes a version of")
    resume: bool = Field(False, description="continue from the newest checkpoint in checkpoint_dir")
    search_id: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            return None
        return v.strip() if v else v


class ReplicaResponse(ORMModel):
    name: str
    role: str
    index: int
    rank: int
    attempt: int
    state: str
    node_id: str | None
    executor: str
    devices: list[int] = []
    pid: int | None
    exit_code: int | None
    message: str
    started_at: datetime | None
    finished_at: datetime | None


class JobResponse(ORMModel):
    id: str
    name: str
    description: str
    kind: str
    is_pretrain: bool
    strategy: str | None
    origin: str
    owner_id: str
    state: str
    priority: int
    is_urgent: bool
    image_id: str | None
    model_version_id: str | None
    dataset_version_id: str | None
    output_model_version_id: str | None
    attempt: int
    error: str | None
    progress: dict[str, Any] = {}
    result: dict[str, Any] = {}
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    running_at: datetime | None
    finished_at: datetime | None
    cancel_requested_at: datetime | None


class JobDetail(JobResponse):
    spec: dict[str, Any]
    replicas: list[ReplicaResponse]
    allocations: list[dict[str, Any]]
    events: list[dict[str, Any]]
    waiting_reason: str | None = None


class RegisterOutputRequest(BaseModel):
    model_name: str = Field(min_length=1, max_length=128)
    description: str = ""
    path: str | None = Field(None, description="a folder inside the job's output dir (default: all of it)")
