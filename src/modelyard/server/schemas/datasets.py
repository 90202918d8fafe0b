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
    model_config = ConfigDict(use_attribute_docstrings=True)

    name: str = Field(description="1-128 letters, digits, '_', '.', '-'", max_length=MAX_NAME)
    description: str = ""
    """what the data is"""
    is_public: bool = False
    """visible (read-only) to every user"""


class DatasetVersionCreateRequest(DatasetSourceFields):
    model_config = ConfigDict(use_attribute_docstrings=True)

    description: str = ""
    """what changed in this version"""


class DatasetUpdateRequest(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True, str_max_length=MAX_DESCRIPTION)  # every text: schemas/common.py

    description: str | None = None
    """a new description"""
    is_public: bool | None = None
    """make it visible to every user, or private again"""


class DatasetFileResponse(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    split: str
    """train, validate or test"""
    name: str
    """the file's name"""
    size: int
    """its size in bytes"""
    sha256: str
    """its SHA-256, hex"""
    rows: int
    """how many rows it holds"""
    format: str
    """jsonl, json, csv, parquet or txt"""
    source: str
    """where it was copied from, in your files"""


class DatasetVersionSummary(ORMModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """the version's id (any unique prefix of 4+ also names it)"""
    dataset_id: str
    """the dataset it belongs to"""
    version: int
    """its number: 1, 2, ..."""
    shape: str
    """chat, alpaca or text"""
    chat_format: str
    """messages or sharegpt, for chat data"""
    format: str
    """the files' format"""
    rows: dict[str, int]
    """rows per split"""
    total_rows: int
    """rows in all splits"""
    size_bytes: int
    """total size of its files"""
    source: str
    """the folder or file it was built from"""
    description: str
    """what changed in it"""
    created_by: str | None
    """the user who created it"""
    created_at: UTCDateTime
    """when it was created (UTC)"""

    @classmethod
    def of(cls, v) -> DatasetVersionSummary:
        return cls(**_summary(v))


class DatasetVersionResponse(DatasetVersionSummary):
    model_config = ConfigDict(use_attribute_docstrings=True)

    files: list[DatasetFileResponse]
    """every file with split, size, rows and SHA-256"""
    preview: dict[str, list[dict[str, Any]]]
    """the first rows of each split"""

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
    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """the dataset's id (any unique prefix of 4+ also names it)"""
    owner_id: str
    """the user it belongs to"""
    name: str
    """its name, unique per owner"""
    description: str
    """what the data is"""
    is_public: bool
    """visible to every user"""
    created_at: UTCDateTime
    """when it was created (UTC)"""
    updated_at: UTCDateTime
    """when it last changed"""
    versions_count: int = 0
    """how many versions it has"""
    latest_version: DatasetVersionSummary | None = None
    """its newest version"""


class DatasetDetailResponse(DatasetResponse):
    model_config = ConfigDict(use_attribute_docstrings=True)

    versions: list[DatasetVersionSummary] = Field(default_factory=list)
    """every version, oldest first"""


class DatasetCreatedResponse(DatasetResponse):
    model_config = ConfigDict(use_attribute_docstrings=True)

    version: DatasetVersionResponse
    """the first version, built from the given files"""


class DatasetRowsResponse(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    split: str
    """the split read"""
    offset: int
    """the first row returned"""
    limit: int
    """the most rows asked for"""
    total: int
    """rows in the split"""
    rows: list[dict[str, Any]]
    """the rows, as the trainer reads them"""
