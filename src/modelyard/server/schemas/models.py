"""Model registry bodies: the native /api/v1 models API and the seed §3 (aiApplication) shapes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from .common import MAX_DESCRIPTION, MAX_NAME, ORMModel, UTCDateTime

# --- native ----------------------------------------------------------------------------------------


class ModelCreateRequest(BaseModel):
    model_config = ConfigDict(str_max_length=MAX_DESCRIPTION)  # every text: schemas/common.py

    name: str = Field(description="unique per owner; no '/', ':' or control characters", max_length=MAX_NAME)
    description: str = ""
    type: str = "LLM"
    developer: str = ""
    is_public: bool = False
    owner_id: str | None = Field(None, description="admin only: create for another user")
    path: str | None = Field(None, description="first version: folder (HF / PEFT) or .gguf file, relative to "
                                               "the owner's file root")
    version: str | None = Field(None, description="first version's name (default '1')")
    source: int = Field(3, description="1 training result / 2 custom image / 3 local files")
    image: str = ""
    hyper_parameter_list: list[dict[str, Any]] = Field(default_factory=list)


class ModelUpdateRequest(BaseModel):
    model_config = ConfigDict(str_max_length=MAX_DESCRIPTION)  # every text: schemas/common.py

    name: str | None = Field(None, max_length=MAX_NAME)
    description: str | None = None
    type: str | None = None
    developer: str | None = None
    is_public: bool | None = None


class VersionCreateRequest(BaseModel):
    model_config = ConfigDict(str_max_length=MAX_DESCRIPTION)  # every text: schemas/common.py

    path: str | None = Field(None, description="folder (HF / PEFT) or .gguf file, relative to the owner's root")
    version: str | None = Field(None, description="default: next integer")
    description: str = ""
    source: int = 3
    image: str = ""
    hyper_parameter_list: list[dict[str, Any]] = Field(default_factory=list)


class AliasSetRequest(BaseModel):
    model_config = ConfigDict(str_max_length=MAX_DESCRIPTION)  # every text: schemas/common.py

    version: str = Field(description="version id, version string or another alias of the same model")


class MetricItem(BaseModel):
    name: str
    value: float
    step: int | None = None


class MetricsAddRequest(BaseModel):
    """Either `metrics` ({name: value}, with an optional shared `step`) or `items` ([{name, value, step}])."""

    metrics: dict[str, float] = Field(default_factory=dict)
    step: int | None = None
    items: list[MetricItem] = Field(default_factory=list)

    def as_items(self) -> list[dict[str, Any]]:
        out = [{"name": k, "value": v, "step": self.step} for k, v in self.metrics.items()]
        out += [i.model_dump() for i in self.items]
        return out


class MetricResponse(ORMModel):
    id: int
    version_id: str
    name: str
    value: float
    step: int | None
    created_at: UTCDateTime


class FileEntry(BaseModel):
    path: str
    size: int
    sha256: str


class VersionResponse(ORMModel):
    id: str
    model_id: str
    owner_id: str
    version: str
    description: str
    status: str
    status_reason: str
    source: int
    save_type: int
    save_path: str
    path: str
    format: str
    architecture: str
    model_type: str
    parameters: int | None
    dtype: str
    quantization: str
    context_length: int | None
    size_bytes: int
    scale: str
    model_structure: str
    image: str
    metrics: dict[str, Any]
    job_id: str | None
    base_version_id: str | None
    dataset_version_id: str | None
    hyperparameters: dict[str, Any] | None
    aliases: list[str] = Field(default_factory=list)
    created_at: UTCDateTime
    finished_at: UTCDateTime | None


class VersionDetailResponse(VersionResponse):
    files: list[FileEntry]
    details: dict[str, Any]
    hyper_parameter_list: list[dict[str, Any]]


class AliasResponse(ORMModel):
    alias: str
    version_id: str
    version: str | None = None
    updated_at: UTCDateTime


class ModelResponse(ORMModel):
    id: str
    owner_id: str
    owner_name: str | None = None
    name: str
    description: str
    type: str
    developer: str
    is_public: bool
    versions_count: int = 0
    size_bytes: int = 0
    latest_version: str | None = None
    latest_status: str | None = None
    created_at: UTCDateTime
    updated_at: UTCDateTime


class ModelDetailResponse(ModelResponse):
    versions: list[VersionResponse] = Field(default_factory=list)
    aliases: list[AliasResponse] = Field(default_factory=list)


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
    name: LenientStr = None
    createUser: LenientStr = None
    description: LenientStr = ""
    userName: LenientStr = None
    type: LenientStr = "LLM"
    developer: LenientStr = ""
    loginUser: LenientInt = None
    isPublic: bool | None = None


class SeedVersion(_Seed):
    applicationName: LenientStr = None
    createUser: LenientStr = None
    userName: LenientStr = None
    description: LenientStr = ""
    version: LenientStr = None
    source: LenientInt = 3
    trainTaskVersionId: LenientStr = ""
    llmFineTuneTaskId: LenientStr = ""
    image: LenientStr = ""
    imageType: LenientInt = None
    framework: LenientInt = None
    frameworkStyle: LenientInt = None
    saveType: LenientInt = 2
    savePath: LenientStr = ""
    configSaveType: LenientInt = None
    configPath: LenientStr = None
    label: LenientStr = ""
    scale: LenientStr = ""
    modelStructure: LenientStr = ""
    preDeployLabel: LenientStr = None
    loginUser: LenientInt = None


class SeedHyperParameter(_Seed):
    paramName: LenientStr = None
    type: LenientStr = None
    value: LenientStr = None
    valueRange: list[Any] | None = None
    edit: bool | None = None


class SeedCreateRequest(_Seed):
    application: SeedApplication
    aiApplicationVersionList: list[SeedVersion] = Field(default_factory=list)
    hyperParameterList: list[SeedHyperParameter] = Field(default_factory=list)


class SeedPageRequest(_Seed):
    pageNum: LenientInt = 1
    pageSize: LenientInt = 10
    queryInfo: dict[str, Any] | None = None


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
