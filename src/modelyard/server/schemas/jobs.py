"""Native job API bodies. The seed's CreateTaskBO (routers/compat/finetune.py) maps onto JobSubmit."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator, model_validator

from modelyard.core.strategies import canonical, normalize_strategy

from .common import MAX_DESCRIPTION, MAX_SAFE_INT, ORMModel, UTCDateTime

MAX_ARG_BYTES = 128 * 1024  # a replica's argv, all entries together (and one NAME=value of its environment)
MAX_ENV_BYTES = 1024 * 1024  # its environment, all entries together


def _arg_bytes(items) -> int:
    return sum(len(a.encode("utf-8", "surrogatepass")) + 1 for a in items)


class GpuSpec(BaseModel):
    """The seed's gpuResource. share: "none"/"" = whole GPUs (counted as `gpu`); any other mode
    ("share", "vgpu", ...) = shared vGPUs (counted as `vgpu`); mig: a MIG profile such as
    "1g.10gb" (counted as `mig`). mem_gib is checked against the largest GPU of any node."""

    model_config = ConfigDict(extra="forbid")

    num: int = Field(0, ge=0, le=64)
    mem_gib: float | None = Field(None, ge=0, le=1e9)
    share: str | None = Field(None, max_length=64)
    mig: str | None = Field(None, max_length=64)
    cores: int | None = Field(None, ge=0, le=MAX_SAFE_INT)


class RoleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["master", "worker"] = "master"
    replicas: int = Field(1, ge=0, le=64)
    cpu: float = Field(1.0, ge=0, le=4096)
    memory_mib: int = Field(2048, ge=0, le=MAX_SAFE_INT)
    gpu: GpuSpec = Field(default_factory=GpuSpec)


class JobSubmit(BaseModel):
    """A job: `custom` (command in an image's environment) or `finetune` / `pretrain`
    (the platform's trainer on a registry model and a dataset)."""

    model_config = ConfigDict(extra="forbid", str_max_length=MAX_ARG_BYTES, populate_by_name=True)

    name: str | None = Field(None, max_length=128)
    description: str = Field("", max_length=1024)
    kind: Literal["custom", "finetune", "pretrain"] = "custom"
    priority: int = Field(0, ge=-1000, le=1000)
    is_urgent: bool = False
    roles: list[RoleSpec] = Field(default_factory=list, description="default: one master replica")
    # custom jobs
    image: str | None = Field(None, description="image version id, image id/name (newest version) or name:tag. "
                              "A custom job runs inside the image's root filesystem (sandboxed) with its Env, "
                              "Entrypoint/Cmd, WorkingDir and User; your files at /data, the job folder at "
                              "/workspace, its output at /output. Training jobs apply only the image's Env")
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
    strategy: str | None = Field(None, description="training strategy: lora (default), full, qlora (4-bit base, "
                                 "needs a CUDA GPU and bitsandbytes) or pretrain (= kind pretrain); the seed's "
                                 "LoRA / FineTune are accepted too")
    config: dict[str, Any] | None = Field(None, description="the seed's config.json structure")
    profile_path: str | None = Field(None, description="a config.json in the user's files")
    common_hyperparameters: list[dict[str, Any]] | dict[str, Any] | None = None
    finetune_hyperparameters: list[dict[str, Any]] | dict[str, Any] | None = None
    checkpoint_dir: str | None = Field(None, description="relative to the user's root (default: the job's folder)")
    output_dir: str | None = Field(None, description="a folder in your files the job writes its output to "
                                                     "(${output_dir}, OUTPUT_DIR; default: the job's folder)")
    output_model_name: str | None = Field(None, validation_alias=AliasChoices("output_model", "output_model_name"),
                                          description="the registry model the output becomes the next version of "
                                                      "(also accepted as output_model); default "
                                                      "<base model name>-<strategy>, e.g. smollm2-135m-lora")
    resume: bool = Field(False, description="continue from the newest checkpoint in checkpoint_dir")
    search_id: str | None = Field(None, description="one of your own searches (its trial jobs name it)")
    # sandbox and placement
    network: Literal["none", "host"] | None = Field(
        None, description="none (default: loopback only, shared by the job's replicas) or host (the host's "
                          "network: an admin, or a user the server's sandbox.network_users lists)")
    node_names: list[str] | None = Field(None, description="run only on these nodes (seed nodeName)")
    resource_group: str | None = Field(None, description="run only on the nodes of this resource group "
                                                         "(key, id or name: seed zoneId / resourceGroupKey / zoneName)")
    # kept and shown (seed type / createWay / algorithmId / resourceType / podDelete)
    labels: dict[str, str] = Field(default_factory=dict, description="free-form facts about the job, shown back")

    @model_validator(mode="after")
    def _pretrain_strategy_is_a_kind(self):
        # strategy pretrain on a training job means kind pretrain (one vocabulary, two ways to say it)
        if self.strategy and self.kind == "finetune" and normalize_strategy(self.strategy) == "pretrain":
            self.kind = "pretrain"
        return self

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            return None
        return v.strip() if v else v

    @field_validator("env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for key, value in v.items():
            if not key or "=" in key or "\0" in key:
                raise ValueError(f"environment variable name {key!r} is empty or holds '=' or NUL")
            if "\0" in value:
                raise ValueError(f"environment variable {key!r} holds a NUL byte")
            if _arg_bytes([f"{key}={value}"]) > MAX_ARG_BYTES:
                raise ValueError(f"environment variable {key!r} is larger than {MAX_ARG_BYTES} bytes")
        if _arg_bytes(f"{k}={x}" for k, x in v.items()) > MAX_ENV_BYTES:
            raise ValueError(f"the environment is larger than {MAX_ENV_BYTES} bytes")
        return v

    @field_validator("command", "commands", "mpi_command")
    @classmethod
    def _argv(cls, v: str | list[str] | None) -> str | list[str] | None:
        if v is None:
            return v
        items = [v] if isinstance(v, str) else v
        if any("\0" in a for a in items):
            raise ValueError("a command (or argv entry) holds a NUL byte")
        if _arg_bytes(items) > MAX_ARG_BYTES:
            raise ValueError(f"the command line is larger than {MAX_ARG_BYTES} bytes")
        return v


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
    started_at: UTCDateTime | None
    finished_at: UTCDateTime | None


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
    created_at: UTCDateTime
    queued_at: UTCDateTime | None
    started_at: UTCDateTime | None
    running_at: UTCDateTime | None
    finished_at: UTCDateTime | None
    cancel_requested_at: UTCDateTime | None

    @model_validator(mode="after")
    def _native_strategy(self):
        # rows written before the one vocabulary hold LoRA / FineTune
        if self.kind in ("finetune", "pretrain"):
            self.strategy = canonical(self.strategy, self.is_pretrain)
        return self


class JobAllocation(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str
    part: str
    node_id: str | None = None
    created_at: UTCDateTime
    released_at: UTCDateTime | None = None


class JobEvent(BaseModel):
    model_config = ConfigDict(extra="allow")

    at: UTCDateTime
    kind: str
    actor_id: str | None = None
    message: str = ""
    data: dict[str, Any] | None = None


class JobDetail(JobResponse):
    spec: dict[str, Any]
    replicas: list[ReplicaResponse]
    allocations: list[JobAllocation]
    events: list[JobEvent]
    waiting_reason: str | None = None


class RegisterOutputRequest(BaseModel):
    model_config = ConfigDict(str_max_length=MAX_DESCRIPTION)

    model_name: str = Field(min_length=1, max_length=128)
    description: str = ""
    path: str | None = Field(None, description="a folder inside the job's output dir (default: all of it)")
