from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .common import MAX_DESCRIPTION, MAX_NAME, ORMModel, UTCDateTime

_SOURCE_DOC = ("relative to your file root: a folder with train/ validate/ test/ sub-folders (e.g. 'Data'), "
               "a folder of split-named or plain data files, or one file (all 'train')")


class DatasetSourceFields(BaseModel):
    path: str | None = Field(None, description=_SOURCE_DOC)
    train: str | None = Field(None, description="instead of path: the training file or folder")
    validate_: str | None = Field(None, alias="validate", description="instead of path: the validation file or folder")
    test: str | None = Field(None, description="instead of path: the test file or folder")

    model_config = {"populate_by_name": True, "str_max_length": MAX_DESCRIPTION}


class DatasetCreateRequest(DatasetSourceFields):
    name: str = Field(description="1-128 letters, digits, '_', '.', '-'", max_length=MAX_NAME)
    description: str = ""
    is_public: bool = False


class DatasetVersionCreateRequest(DatasetSourceFields):
    description: str = ""


class DatasetUpdateRequest(BaseModel):
    model_config = ConfigDict(str_max_length=MAX_DESCRIPTION)  # every text: schemas/common.py

    description: str | None = None
    is_public: bool | None = None


class DatasetFileResponse(BaseModel):
    split: str
    name: str
    size: int
    sha256: str
    rows: int
    format: str
    source: str


class DatasetVersionSummary(ORMModel):
    id: str
    dataset_id: str
    version: int
    shape: str
    chat_format: str
    format: str
    rows: dict[str, int]
    total_rows: int
    size_bytes: int
    source: str
    description: str
    created_by: str | None
    created_at: UTCDateTime

    @classmethod
    def of(cls, v) -> DatasetVersionSummary:
        return cls(**_summary(v))


class DatasetVersionResponse(DatasetVersionSummary):
    files: list[DatasetFileResponse]
    preview: dict[str, list[dict[str, Any]]]

    @classmethod
    def of(cls, v) -> DatasetVersionResponse:
        return cls(**_summary(v), files=[DatasetFileResponse(**{k: f[k] for k in DatasetFileResponse.model_fields})
                                         for f in v.files or []], preview=v.preview or {})


def _summary(v) -> dict:
    return dict(id=v.id, dataset_id=v.dataset_id, version=v.version, shape=v.shape, chat_format=v.chat_format or "",
                format=v.format, rows={s: int(d.get("rows", 0)) for s, d in (v.splits or {}).items()},
                total_rows=v.total_rows, size_bytes=v.size_bytes, source=v.source, description=v.description or "",
                created_by=v.created_by, created_at=v.created_at)


class DatasetResponse(ORMModel):
    id: str
    owner_id: str
    name: str
    description: str
    is_public: bool
    created_at: UTCDateTime
    updated_at: UTCDateTime
    versions_count: int = 0
    latest_version: DatasetVersionSummary | None = None


class DatasetDetailResponse(DatasetResponse):
    versions: list[DatasetVersionSummary] = Field(default_factory=list)


class DatasetCreatedResponse(DatasetResponse):
    version: DatasetVersionResponse


class DatasetRowsResponse(BaseModel):
    split: str
    offset: int
    limit: int
    total: int
    rows: list[dict[str, Any]]
