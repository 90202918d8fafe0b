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

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    num: int = Field(0, ge=0, le=64)
    """GPUs per replica (0: none)"""
    mem_gib: float | None = Field(None, ge=0, le=1e9)
    """GPU memory each GPU must have, in GiB"""
    share: str | None = Field(None, max_length=64)
    """none or empty: whole GPUs; any other mode (share, vgpu): shared vGPUs"""
    mig: str | None = Field(None, max_length=64)
    """a MIG profile such as 1g.10gb, counted as MIG slices"""
    cores: int | None = Field(None, ge=0, le=MAX_SAFE_INT)
    """GPU cores asked for (recorded; not enforced on this platform)"""


class RoleSpec(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid")

    role: Literal["master", "worker"] = "master"
    """master (rank 0 first) or worker"""
    replicas: int = Field(1, ge=0, le=64)
    """how many processes of this role"""
    cpu: float = Field(1.0, ge=0, le=4096)
    """CPU cores per replica (fractions allowed)"""
    memory_mib: int = Field(2048, ge=0, le=MAX_SAFE_INT)
    """memory limit per replica, in MiB"""
    gpu: GpuSpec = Field(default_factory=GpuSpec)
    """the GPUs per replica"""


class JobSubmit(BaseModel):
    """A job: `custom` (command in an image's environment) or `finetune` / `pretrain`
    (the platform's trainer on a registry model and a dataset)."""

    model_config = ConfigDict(use_attribute_docstrings=True, extra="forbid", str_max_length=MAX_ARG_BYTES, populate_by_name=True)

    name: str | None = Field(None, max_length=128)
    """a name to find the job by (jobs show NAME); default <kind>-<id8>"""
    description: str = Field("", max_length=1024)
    """free text shown with the job"""
    kind: Literal["custom", "finetune", "pretrain"] = "custom"
    """custom (your command), finetune or pretrain (the platform's trainer)"""
    priority: int = Field(0, ge=-1000, le=1000)
    """higher runs first among your queued jobs (above 0 needs an allowance)"""
    is_urgent: bool = False
    """jump the queue (needs an allowance)"""
    roles: list[RoleSpec] = Field(default_factory=list, description="default: one master replica")
    # custom jobs
    image: str | None = Field(None, description="image version id, image id/name (newest version) or name:tag. "
                              "A custom job runs inside the image's root filesystem (sandboxed) with its Env, "
                              "Entrypoint/Cmd, WorkingDir and User; your files at /data, the job folder at "
                              "/workspace, its output at /output. Training jobs apply only the image's Env")
    command: str | list[str] | None = Field(None, description="a shell command line, or an argv list")
    commands: list[str] | None = Field(None, description="shell commands run in order (stop at the first failure)")
    mpi_command: str | None = None
    """a command run under a torchrun launcher across the job's replicas"""
    env: dict[str, str] = Field(default_factory=dict)
    """extra environment variables for every replica"""
    working_dir: str | None = Field(None, description="relative to the user's root (MODELYARD_USER_ROOT)")
    # training (also offered to custom jobs as MODELYARD_MODEL_DIR / MODELYARD_DATA_DIR when given)
    model: str | None = Field(None, description="model version id, model name/id, or name:version")
    model_dir: str | None = Field(None, description="instead of a registry model: a folder in the user's files "
                                                   "holding Hugging Face weights (config.json + safetensors)")
    dataset: str | None = Field(None, description="dataset version id, or dataset name/id (latest version)")
    input_type: Literal["dataset", "local"] | None = None
    """dataset (a registered dataset version) or local (train/ and validate/ folders in your files)"""
    input_dir: str | None = Field(None, description="input_type local: folder with train/ and validate/ (default Data)")
    strategy: str | None = Field(None, description="training strategy: lora (default), full, qlora (4-bit base, "
                                 "needs a CUDA GPU and bitsandbytes) or pretrain (= kind pretrain); the seed's "
                                 "LoRA / FineTune are accepted too")
    config: dict[str, Any] | None = Field(None, description="the seed's config.json structure")
    profile_path: str | None = Field(None, description="a config.json in the user's files")
    common_hyperparameters: list[dict[str, Any]] | dict[str, Any] | None = None
    """hyperparameters for every strategy, as {name: value} or the seed's [{name, value}] (GET /api/v1/hparams lists them)"""
    finetune_hyperparameters: list[dict[str, Any]] | dict[str, Any] | None = None
    """strategy-specific hyperparameters (e.g. lora_r), same forms"""
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
    model_config = ConfigDict(use_attribute_docstrings=True)

    name: str
    """role-index, e.g. master-0"""
    role: str
    """master or worker"""
    index: int
    """the replica's number within its role"""
    rank: int
    """the distributed rank (master-0 is 0)"""
    attempt: int
    """the job attempt this replica ran in"""
    state: str
    """pending, starting, running, succeeded, failed or cancelled"""
    node_id: str | None
    """the node it was placed on"""
    executor: str
    """what runs it (local: a sandboxed host process)"""
    devices: list[int] = []
    """GPU indices given to it"""
    pid: int | None
    """its process-group leader's pid while it runs"""
    exit_code: int | None
    """the process's exit code once it ended"""
    message: str
    """why it ended, in words"""
    started_at: UTCDateTime | None
    """when its process started (UTC)"""
    finished_at: UTCDateTime | None
    """when it ended (UTC)"""


class JobResponse(ORMModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """the job's id (32 hex characters; any unique prefix of 4+ also names it)"""
    name: str
    """the job's name"""
    description: str
    """free text given at submit"""
    kind: str
    """custom, finetune or pretrain"""
    is_pretrain: bool
    """a pre-training job (seed isPretrain)"""
    strategy: str | None
    """training strategy: lora, full, qlora or pretrain (null for custom jobs)"""
    origin: str
    """where it was submitted: api, seed or search"""
    owner_id: str
    """the user it belongs to"""
    state: str
    """pending, queued, starting, running, succeeded, failed or cancelled"""
    priority: int
    """queue priority (higher first)"""
    is_urgent: bool
    """whether it jumps the queue"""
    image_id: str | None
    """the image it runs in, if any"""
    model_version_id: str | None
    """the base model version it trains or uses"""
    dataset_version_id: str | None
    """the dataset version it reads"""
    output_model_version_id: str | None
    """the model version its output became"""
    attempt: int
    """1, then +1 at each resume"""
    error: str | None
    """why it failed, in words"""
    progress: dict[str, Any] = {}
    """the latest step, epoch, loss, learning rate and tokens/s"""
    result: dict[str, Any] = {}
    """the trainer's result: format, global_step and metrics (train_loss = the run's mean loss)"""
    created_at: UTCDateTime
    """when it was submitted (UTC)"""
    queued_at: UTCDateTime | None
    """when it entered the queue"""
    started_at: UTCDateTime | None
    """when its replicas were placed"""
    running_at: UTCDateTime | None
    """when its replicas started running"""
    finished_at: UTCDateTime | None
    """when it ended"""
    cancel_requested_at: UTCDateTime | None
    """when a cancel was asked for (it is being stopped)"""

    @model_validator(mode="after")
    def _native_strategy(self):
        # rows written before the one vocabulary hold LoRA / FineTune
        if self.kind in ("finetune", "pretrain"):
            self.strategy = canonical(self.strategy, self.is_pretrain)
        return self


class JobAllocation(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, extra="allow")

    id: str
    """the allocation's id"""
    part: str
    """the replica it is for, e.g. master-0"""
    node_id: str | None = None
    """the node the resources are on"""
    created_at: UTCDateTime
    """when they were allocated"""
    released_at: UTCDateTime | None = None
    """when they were given back (null while held)"""


class JobEvent(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, extra="allow")

    at: UTCDateTime
    """when it happened (UTC)"""
    kind: str
    """what happened, e.g. job.state_changed"""
    actor_id: str | None = None
    """who caused it (null: the platform)"""
    message: str = ""
    """a human-readable account"""
    data: dict[str, Any] | None = None
    """structured details"""


class JobDetail(JobResponse):
    model_config = ConfigDict(use_attribute_docstrings=True)

    spec: dict[str, Any]
    """the resolved job: command, resources, model, data, hyperparameters, folders"""
    replicas: list[ReplicaResponse]
    """its replicas (processes)"""
    allocations: list[JobAllocation]
    """the resources it holds or held"""
    events: list[JobEvent]
    """its history, oldest first"""
    waiting_reason: str | None = None
    """why a queued job has not started yet"""


class RegisterOutputRequest(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, str_max_length=MAX_DESCRIPTION)

    model_name: str = Field(min_length=1, max_length=128)
    """the model the output becomes a version of (created if needed)"""
    description: str = ""
    """the version's description"""
    path: str | None = Field(None, description="a folder inside the job's output dir (default: all of it)")
