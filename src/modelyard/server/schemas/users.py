from __future__ import annotations

from pydantic import BaseModel, Field

from .common import MAX_NAME, ORMModel, UTCDateTime


class UserCreateRequest(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    role: str = Field("user", max_length=32)


class UserResponse(ORMModel):
    id: str
    name: str
    role: str
    disabled: bool
    created_at: UTCDateTime


class UserCreatedResponse(UserResponse):
    token: str = Field(description="shown once; store it")


class TokenCreateRequest(BaseModel):
    name: str = Field("default", max_length=MAX_NAME)


class TokenResponse(ORMModel):
    id: str
    name: str
    prefix: str
    created_at: UTCDateTime
    last_used_at: UTCDateTime | None
    revoked_at: UTCDateTime | None


class TokenCreatedResponse(TokenResponse):
    token: str
