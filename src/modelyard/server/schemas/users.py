from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from .common import ORMModel


class UserCreateRequest(BaseModel):
    name: str = Field(min_length=1, max_length=64)
    role: str = "user"


class UserResponse(ORMModel):
    id: str
    name: str
    role: str
    disabled: bool
    created_at: datetime


class UserCreatedResponse(UserResponse):
    token: str = Field(description="shown once; store it")


class TokenCreateRequest(BaseModel):
    name: str = "default"


class TokenResponse(ORMModel):
    id: str
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreatedResponse(TokenResponse):
    token: str
