"""Model registry bodies: the native /api/v1 models API and the seed §3 (aiApplication) shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from .common import MAX_DESCRIPTION, MAX_NAME, ORMModel, UTCDateTime

# --- native ----------------------------------------------------------------------------------------


class ModelCreateRequest(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, str_max_length=MAX_DESCRIPTION)  # every text: schemas/common.py

    name: str = Field(description="unique per owner; no '/', ':' or control characters", max_length=MAX_NAME)
    description: str = ""
    """what the model is, shown with it"""
    type: str = "LLM"
    """a free category, e.g. llm or embedding"""
    developer: str = ""
    """who made the weights, e.g. HuggingFaceTB"""
    is_public: bool = False
    """visible (read-only) to every user"""
    owner_id: str | None = Field(None, description="admin only: create for another user")
    path: str | None = Field(None, description="first version: folder (HF / PEFT) or .gguf file, relative to "
                                               "the owner's file root")
    version: str | None = Field(None, description="first version's name (default '1')")
    source: int = Field(3, description="1 training result / 2 custom image / 3 local files")
    image: str = ""
    """an image the model is meant to run in (recorded)"""
    hyper_parameter_list: list[dict[str, Any]] = Field(default_factory=list)
    """the seed's hyperParameterList shown with the model"""


class ModelUpdateRequest(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, str_max_length=MAX_DESCRIPTION)  # every text: schemas/common.py

    name: str | None = Field(None, max_length=MAX_NAME)
    """a new name (unique among your models)"""
    description: str | None = None
    """a new description"""
    type: str | None = None
    """a new category"""
    developer: str | None = None
    """a new developer"""
    is_public: bool | None = None
    """make it visible to every user, or private again"""


class VersionCreateRequest(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, str_max_length=MAX_DESCRIPTION)  # every text: schemas/common.py

    path: str | None = Field(None, description="folder (HF / PEFT) or .gguf file, relative to the owner's root")
    version: str | None = Field(None, description="default: next integer")
    description: str = ""
    """what this version is"""
    source: int = 3
    """the seed's source code (1 training output, 2 upload, 3 import)"""
    image: str = ""
    """an image the version is meant to run in (recorded)"""
    hyper_parameter_list: list[dict[str, Any]] = Field(default_factory=list)
    """the seed's hyperParameterList for this version"""


class AliasSetRequest(BaseModel):
    model_config = ConfigDict(str_max_length=MAX_DESCRIPTION)  # every text: schemas/common.py

    version: str = Field(description="version id, version string or another alias of the same model")


class MetricItem(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    name: str
    """the metric's name, e.g. eval_loss or bleu"""
    value: float
    """its value (a finite number)"""
    step: int | None = None
    """the training step it was measured at, if any"""


class MetricsAddRequest(BaseModel):
    """Either `metrics` ({name: value}, with an optional shared `step`) or `items` ([{name, value, step}])."""

    model_config = ConfigDict(use_attribute_docstrings=True)

    metrics: dict[str, float] = Field(default_factory=dict)
    """several metrics at once as {name: value}"""
    step: int | None = None
    """the step the metrics dict was measured at"""
    items: list[MetricItem] = Field(default_factory=list)
    """metrics as a list of {name, value, step}"""

    def as_items(self) -> list[dict[str, Any]]:
        out = [{"name": k, "value": v, "step": self.step} for k, v in self.metrics.items()]
        out += [i.model_dump() for i in self.items]
        return out


class MetricResponse(ORMModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    id: int
    """the metric row's id"""
    version_id: str
    """the model version it belongs to"""
    name: str
    """the metric's name"""
    value: float
    """its value"""
    step: int | None
    """the step it was measured at"""
    created_at: UTCDateTime
    """when it was recorded (UTC)"""


class FileEntry(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    path: str
    """the file's path inside the version"""
    size: int
    """its size in bytes"""
    sha256: str
    """its SHA-256, hex"""


class VersionResponse(ORMModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """the version's id (any unique prefix of 4+ also names it)"""
    model_id: str
    """the model it is a version of"""
    owner_id: str
    """the user it belongs to"""
    version: str
    """its version string: 1, 2, ..."""
    description: str
    """what this version is"""
    status: str
    """importing, done or failed"""
    status_reason: str
    """why an import failed"""
    source: int
    """the seed's source code (1 training output, 2 upload, 3 import)"""
    save_type: int
    """the seed's saveType (where the weights came from)"""
    save_path: str
    """the path the weights were imported from"""
    path: str
    """where the registry keeps its files on the server"""
    format: str
    """hf (Hugging Face weights), peft (an adapter), gguf or image"""
    architecture: str
    """the model class, e.g. LlamaForCausalLM"""
    model_type: str
    """the config's model_type, e.g. llama"""
    parameters: int | None
    """parameter count read from the weights"""
    dtype: str
    """the weights' dtype, e.g. bfloat16"""
    quantization: str
    """the quantisation, if any (GGUF type, bitsandbytes)"""
    context_length: int | None
    """the longest input the config allows, in tokens"""
    size_bytes: int
    """total size of its files"""
    scale: str
    """the parameter count in words, e.g. 135M"""
    model_structure: str
    """a one-line summary of its layers"""
    image: str
    """the image recorded with it"""
    metrics: dict[str, Any]
    """the latest value of each metric recorded on it"""
    job_id: str | None
    """the job that produced it (lineage)"""
    base_version_id: str | None
    """the version it was trained from (lineage; an adapter's base)"""
    dataset_version_id: str | None
    """the dataset version it was trained on (lineage)"""
    hyperparameters: dict[str, Any] | None
    """the hyperparameters it was trained with"""
    aliases: list[str] = Field(default_factory=list)
    """the aliases pointing to it"""
    created_at: UTCDateTime
    """when it was registered (UTC)"""
    finished_at: UTCDateTime | None
    """when its import finished"""


class VersionDetailResponse(VersionResponse):
    model_config = ConfigDict(use_attribute_docstrings=True)

    files: list[FileEntry]
    """every file with its size and SHA-256"""
    details: dict[str, Any]
    """what inspection found: layers, hidden size, heads, vocabulary, adapter or GGUF facts"""
    hyper_parameter_list: list[dict[str, Any]]
    """the seed's hyperParameterList"""


class AliasResponse(ORMModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    alias: str
    """the movable name, e.g. production or best"""
    version_id: str
    """the version it points to"""
    version: str | None = None
    """that version's string"""
    updated_at: UTCDateTime
    """when it was last moved"""


class ModelResponse(ORMModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """the model's id (any unique prefix of 4+ also names it)"""
    owner_id: str
    """the user it belongs to"""
    owner_name: str | None = None
    """that user's name (owner/name also names the model)"""
    name: str
    """the model's name, unique per owner"""
    description: str
    """what the model is"""
    type: str
    """its category"""
    developer: str
    """who made the weights"""
    is_public: bool
    """visible to every user"""
    versions_count: int = 0
    """how many versions it has"""
    size_bytes: int = 0
    """total size of its versions"""
    latest_version: str | None = None
    """its newest ready version's string"""
    latest_status: str | None = None
    """the newest version's status"""
    created_at: UTCDateTime
    """when it was created (UTC)"""
    updated_at: UTCDateTime
    """when it last changed"""


class ModelDetailResponse(ModelResponse):
    model_config = ConfigDict(use_attribute_docstrings=True)

    versions: list[VersionResponse] = Field(default_factory=list)
    """every version, oldest first"""
    aliases: list[AliasResponse] = Field(default_factory=list)
    """every alias and the version it points to"""


# --- seed §3 requests ---------------------------------------------------------------------------------

def _blank_none(v: Any) -> Any:
    return None if v is None or (isinstance(v, str) and not v.strip()) else v


def _as_str(v: Any) -> Any:
    return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v


LenientInt = Annotated[int | None, BeforeValidator(_blank_none)]
LenientStr = Annotated[Annotated[str, Field(max_length=MAX_DESCRIPTION)] | None, BeforeValidator(_as_str)]


class _Seed(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, str_max_length=MAX_DESCRIPTION)


class SeedApplication(_Seed):
    model_config = ConfigDict(use_attribute_docstrings=True)

    name: LenientStr = None
    """the model's name"""
    createUser: LenientStr = None
    """the owner's id (must be the caller unless admin)"""
    description: LenientStr = ""
    """what the model is"""
    userName: LenientStr = None
    """the owner's name"""
    type: LenientStr = "LLM"
    """the model's category"""
    developer: LenientStr = ""
    """who made the weights"""
    loginUser: LenientInt = None
    """the seed's logged-in user (must be the caller unless admin)"""
    isPublic: bool | None = None
    """1: visible to every user"""


class SeedVersion(_Seed):
    model_config = ConfigDict(use_attribute_docstrings=True)

    applicationName: LenientStr = None
    """the model this version belongs to"""
    createUser: LenientStr = None
    """the owner's id"""
    userName: LenientStr = None
    """the owner's name"""
    description: LenientStr = ""
    """what this version is"""
    version: LenientStr = None
    """its version string"""
    source: LenientInt = 3
    """1 training output, 2 upload, 3 import"""
    trainTaskVersionId: LenientStr = ""
    """the training task version it came from"""
    llmFineTuneTaskId: LenientStr = ""
    """the fine-tune task that produced it"""
    image: LenientStr = ""
    """an image it is meant to run in"""
    imageType: LenientInt = None
    """the seed's image type code"""
    framework: LenientInt = None
    """the seed's framework code"""
    frameworkStyle: LenientInt = None
    """the seed's framework style code"""
    saveType: LenientInt = 2
    """where the weights are (the seed's saveType)"""
    savePath: LenientStr = ""
    """the folder in your files to import the weights from"""
    configSaveType: LenientInt = None
    """where the config is (the seed's configSaveType)"""
    configPath: LenientStr = None
    """a config file in your files"""
    label: LenientStr = ""
    """a free label"""
    scale: LenientStr = ""
    """the parameter count in words, e.g. 135M"""
    modelStructure: LenientStr = ""
    """a one-line summary of its layers"""
    preDeployLabel: LenientStr = None
    """the seed's pre-deployment label"""
    loginUser: LenientInt = None
    """the seed's logged-in user"""


class SeedHyperParameter(_Seed):
    model_config = ConfigDict(use_attribute_docstrings=True)

    paramName: LenientStr = None
    """the hyperparameter's name"""
    type: LenientStr = None
    """its type as the seed names it"""
    value: LenientStr = None
    """its value"""
    valueRange: list[Any] | None = None
    """the values it may take"""
    edit: bool | None = None
    """whether users may change it"""


class SeedCreateRequest(_Seed):
    model_config = ConfigDict(use_attribute_docstrings=True)

    application: SeedApplication
    """the model to create"""
    aiApplicationVersionList: list[SeedVersion] = Field(default_factory=list)
    """the versions to import into it"""
    hyperParameterList: list[SeedHyperParameter] = Field(default_factory=list)
    """hyperparameters shown with the model"""


class SeedPageRequest(_Seed):
    model_config = ConfigDict(use_attribute_docstrings=True)

    pageNum: LenientInt = 1
    """the page, from 1"""
    pageSize: LenientInt = 10
    """models per page"""
    queryInfo: dict[str, Any] | None = None
    """filters: name, type, owner"""


# --- seed §3 responses ---------------------------------------------------------------------------------

def java_timestamp(dt: datetime | None) -> dict[str, int] | None:
    """A java.sql.Timestamp as the seed's schema spells it (UTC; month 0-based, year since 1900,
    day = day of week with Sunday 0, time = epoch milliseconds)."""
    if dt is None:
        return None
    aware = dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    return {"date": aware.day, "day": (aware.weekday() + 1) % 7, "hours": aware.hour, "minutes": aware.minute,
            "month": aware.month - 1, "nanos": aware.microsecond * 1000, "seconds": aware.second,
            "time": int(aware.timestamp() * 1000), "timezoneOffset": 0, "year": aware.year - 1900}


SEED_STATUS = {"importing": 1, "done": 2, "failed": 3}
_PARAMETER_STATUS = {"importing": 1, "done": 2, "failed": 0}


def _login_user(user) -> int:
    return 0 if user is not None and user.role == "admin" else 1


def seed_hyper_parameters(items: list[dict] | None) -> list[dict]:
    return [{"paramName": i.get("paramName"), "type": i.get("type"), "value": i.get("value"),
             "valueRange": i.get("valueRange"), "edit": i.get("edit")} for i in (items or [])]


def seed_version(v, model, owner) -> dict[str, Any]:
    """An aiApplicationVersion: the seed's fields in its order, then ours (format, files, ...)."""
    size_kb = round((v.size_bytes or 0) / 1024, 5)
    parsed = None
    if v.status == "done":
        parsed = json.dumps({"format": v.format, "architecture": v.architecture, "parameters": v.parameters,
                             "dtype": v.dtype, "contextLength": v.context_length}, separators=(",", ":"))
    return {
        "id": v.id,
        "createUser": v.owner_id,
        "createTime": java_timestamp(v.created_at),
        "version": v.version,
        "metrics": json.dumps(v.metrics, separators=(",", ":")) if v.metrics else None,
        "use": None,
        "softVersion": None,
        "description": v.description,
        "source": v.source,
        "image": v.image,
        "framework": v.framework,
        "frameworkStyle": v.framework_style,
        "saveType": v.save_type,
        "savePath": v.save_path,
        "trainTaskVersionId": v.train_task_version_id,
        "llmFineTuneTaskId": v.llm_fine_tune_task_id,
        "size": size_kb,
        "applicationId": v.model_id,
        "applicationName": model.name if model is not None else None,
        "userName": owner.name if owner is not None else None,
        "modifiedTime": java_timestamp(v.updated_at),
        "hideSourcePath": v.path or None,
        "status": SEED_STATUS.get(v.status, 0),
        "deployJson": None,
        "label": v.label,
        "parameters": parsed,
        "originalParameters": None,
        "fromMarket": 0,
        "configPath": v.config_path,
        "configSaveType": v.config_save_type,
        "preDeployLabel": v.pre_deploy_label,
        "parameterStatus": _PARAMETER_STATUS.get(v.status, 0),
        "isDelete": 0,
        "scale": v.scale,
        "hyperParameterList": json.dumps(seed_hyper_parameters(v.hyper_parameter_list), ensure_ascii=False)
        if v.hyper_parameter_list else None,
        "modelStructure": v.model_structure,
        "imageType": v.image_type,
        "loginUser": _login_user(owner),
        "absolutePath": v.path or None,
        # ours
        "statusText": v.status,
        "statusReason": v.status_reason,
        "format": v.format,
        "architecture": v.architecture,
        "parameterCount": v.parameters,
        "dtype": v.dtype,
        "contextLength": v.context_length,
        "sizeBytes": v.size_bytes,
        "baseVersionId": v.base_version_id,
        "jobId": v.job_id,
        "datasetVersionId": v.dataset_version_id,
    }


def seed_version_detail(v, model, owner, *, aliases: list[str]) -> dict[str, Any]:
    out = seed_version(v, model, owner)
    out.update(files=v.files, details=v.details, aliases=aliases, hyperparameters=v.hyperparameters)
    return out


def seed_application(model, owner, summary: dict[str, Any] | None) -> dict[str, Any]:
    s = summary or {}
    count = s.get("count")
    return {
        "id": model.id,
        "createUser": model.owner_id,
        "name": model.name,
        "description": model.description,
        "createTime": java_timestamp(model.created_at),
        "userName": owner.name if owner is not None else None,
        "modifiedTime": java_timestamp(model.updated_at),
        "isDelete": 0,
        "type": model.type,
        "developer": model.developer,
        "loginUser": _login_user(owner),
        "aiApplicationVersionsCount": count,
        "aiApplicationVersionsSize": round(s.get("size_bytes", 0) / 1024, 5) if count else None,
        "latestVersion": s.get("latest"),
        "status": SEED_STATUS.get(s["latest_status"]) if s.get("latest_status") else None,
        "isPublic": model.is_public,
    }
