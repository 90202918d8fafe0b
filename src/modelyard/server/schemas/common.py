from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

T = TypeVar("T")

# --- bounds shared by every body and query (docs/hardening: nothing a client sends reaches the
# database or the disk as a number or a text it cannot hold) ------------------------------------

MAX_PAGE = 10**6  # 1-based page numbers; (MAX_PAGE - 1) * MAX_PAGE_SIZE stays far below 2**63
MAX_PAGE_SIZE = 1000
MAX_SAFE_INT = 2**53  # sizes, offsets, steps: exact in JSON doubles and in every database integer
MAX_NAME = 256  # names, tags, keys
MAX_DESCRIPTION = 10_000
MAX_SEARCH = 1024  # a search / filter pattern (becomes a LIKE pattern)
MAX_PATH = 4096  # a path text (services/files refuses longer paths in bytes too)

SafeInt = Annotated[int, Field(ge=-MAX_SAFE_INT, le=MAX_SAFE_INT)]
SafeCount = Annotated[int, Field(ge=0, le=MAX_SAFE_INT)]


def as_utc(v: datetime) -> datetime:
    """Timestamps are stored naive-UTC (orm/base.utcnow); responses say so: +00:00 / Z."""
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v.astimezone(UTC)


# A response timestamp: serialized with its offset (RFC 3339 `date-time`), naive values taken as UTC.
UTCDateTime = Annotated[datetime, AfterValidator(as_utc)]


class ORMModel(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Page(BaseModel, Generic[T]):
    model_config = ConfigDict(use_attribute_docstrings=True)

    items: list[T]
    """the objects on this page"""
    total: int
    """how many objects match in all pages"""
    page: int
    """this page's number, from 1"""
    page_size: int
    """objects per page asked for"""


class ErrorBody(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    code: str
    """a stable machine-readable error code, e.g. not_found or in_use"""
    message: str
    """what went wrong and what to do, in English"""
    details: Any = None
    """structured specifics when there are some: the valid values, the candidates of an ambiguous
    reference, what still uses an object"""


class ErrorResponse(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    error: ErrorBody
    """the error's code and message (and details, when there are some)"""
