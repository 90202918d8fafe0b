"""API tokens: `my_<random>` shown once, stored as SHA-256."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelyard.core.errors import Forbidden, Unauthorized
from modelyard.server.orm import ApiTokenModel, UserModel
from modelyard.server.orm.base import utcnow


@dataclass(frozen=True)
class Principal:
    id: str
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def ensure_acting_as(self, user_id: str | int | None) -> str:
        """A seed body's userId / createUser must be the caller, unless the caller is admin.
        Returns the user the request acts for."""
        if user_id in (None, ""):
            return self.id
        uid = str(user_id)
        if uid != self.id and not self.is_admin:
            raise Forbidden(f"userId {uid} is not the calling user", code="not_caller")
        return uid


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, *, user_id: str, name: str = "default", token: str | None = None) -> str:
    token = token or "my_" + secrets.token_urlsafe(32)
    session.add(ApiTokenModel(user_id=user_id, name=name, token_hash=hash_token(token), prefix=token[:8]))
    session.flush()
    return token


def authenticate(session: Session, token: str | None) -> Principal:
    if not token:
        raise Unauthorized("missing bearer token (Authorization: Bearer <token>)")
    row = session.execute(
        select(ApiTokenModel, UserModel).join(UserModel, ApiTokenModel.user_id == UserModel.id)
        .where(ApiTokenModel.token_hash == hash_token(token))).first()
    if row is None or row[0].revoked_at is not None or row[1].disabled:
        raise Unauthorized("invalid or revoked token")
    return Principal(row[1].id, row[1].name, row[1].role)


def touch(session: Session, token: str) -> None:
    session.query(ApiTokenModel).filter(ApiTokenModel.token_hash == hash_token(token)).update(
        {"last_used_at": utcnow()})
