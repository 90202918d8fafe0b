"""Query parameters shared by the native routers, bounded (server/guards.py covers the rest of a
request): a page number or an offset a database cannot hold, or a search pattern of megabytes,
answers 422 `validation_error` before any service runs."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from modelyard.server.schemas.common import (
    MAX_NAME,
    MAX_PAGE,
    MAX_PAGE_SIZE,
    MAX_PATH,
    MAX_SAFE_INT,
    MAX_SEARCH,
)

PageQ = Annotated[int, Query(ge=1, le=MAX_PAGE, description="1-based page number")]
PageSizeQ = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="items per page")]
OffsetQ = Annotated[int, Query(ge=0, le=MAX_SAFE_INT)]
StepQ = Annotated[int | None, Query(ge=0, le=MAX_SAFE_INT)]
AttemptQ = Annotated[int | None, Query(ge=0, le=MAX_PAGE)]
SearchQ = Annotated[str | None, Query(max_length=MAX_SEARCH, description="substring of the name")]
NameQ = Annotated[str | None, Query(max_length=MAX_NAME)]
ListQ = Annotated[str | None, Query(max_length=MAX_SEARCH, description="comma-separated")]
PathQ = Annotated[str, Query(max_length=MAX_PATH)]
OptPathQ = Annotated[str | None, Query(max_length=MAX_PATH)]
IdQ = Annotated[str | None, Query(max_length=MAX_NAME)]
