from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .common import MAX_NAME, ORMModel, UTCDateTime


class UserCreateRequest(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    name: str = Field(min_length=1, max_length=64)
    """login name: letters, digits, '_', '.', '-', starting with a letter or digit"""
    role: str = Field("user", max_length=32)
    """user (default) or admin"""


class UserResponse(ORMModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """the user's id (32 hex characters)"""
    name: str
    """the login name (a deleted account's ends in .deleted-<id8>)"""
    role: str
    """user or admin"""
    disabled: bool
    """true once the account is deleted: its tokens no longer work"""
    created_at: UTCDateTime
    """when the account was created (UTC)"""


class UserCreatedResponse(UserResponse):
    token: str = Field(description="shown once; store it")


class TokenCreateRequest(BaseModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    name: str = Field("default", max_length=MAX_NAME)
    """a label to tell your tokens apart, e.g. laptop or ci"""


class TokenResponse(ORMModel):
    model_config = ConfigDict(use_attribute_docstrings=True)

    id: str
    """the token's id (use it to revoke the token)"""
    name: str
    """the label given at creation"""
    prefix: str
    """the first characters of the secret, to recognise it"""
    created_at: UTCDateTime
    """when it was issued (UTC)"""
    last_used_at: UTCDateTime | None
    """when it last authenticated a request, if ever"""
    revoked_at: UTCDateTime | None
    """when it was revoked; null while it works"""


class TokenCreatedResponse(TokenResponse):
    model_config = ConfigDict(use_attribute_docstrings=True)

    token: str
    """the secret, shown only in this response: store it now"""
