"""Users and their tokens."""

from __future__ import annotations

import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from modelyard.core.errors import BadRequest, Conflict, NotFound
from modelyard.server.auth import Principal, hash_token, issue_token
from modelyard.server.orm import ApiTokenModel, UserModel
from modelyard.server.orm.base import utcnow
from modelyard.server.services import events
from modelyard.server.services.files import ensure_user_layout
from modelyard.server.services.quota import ensure_quota
from modelyard.server.settings import Settings

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def create_user(session: Session, settings: Settings, *, name: str, role: str = "user",
                actor: Principal | None = None, token: str | None = None) -> tuple[UserModel, str]:
    """Create a user with a quota, the seed's folder layout and a first token (returned in clear once)."""
    if not _NAME.match(name or ""):
        raise BadRequest("user name must be 1-64 letters, digits, '_', '.', '-' and start with a letter or digit",
                         code="invalid_name")
    if role not in ("admin", "user"):
        raise BadRequest("role must be 'admin' or 'user'", code="invalid_role")
    if session.scalar(select(UserModel).where(UserModel.name == name)):
        raise Conflict(f"user {name!r} already exists", code="user_exists")
    user = UserModel(name=name, role=role)
    session.add(user)
    session.flush()
    ensure_quota(session, user_id=user.id)
    plaintext = issue_token(session, user_id=user.id, token=token)

    ensure_user_layout(settings, user.id)
    events.record(session, actor_id=actor.id if actor else None, kind="user.created", object_type="user",
                  object_id=user.id, data={"name": name, "role": role})
    return user, plaintext


def bootstrap_admin(session: Session, settings: Settings) -> str | None:
    """First start: create `admin`. Returns a generated token to print once (None if it was given
    through MODELYARD_ADMIN_TOKEN or admin already existed)."""
    admin = session.scalar(select(UserModel).where(UserModel.name == "admin"))
    if admin is None:
        _, token = create_user(session, settings, name="admin", role="admin", token=settings.admin_token)
        return None if settings.admin_token else token
    if settings.admin_token:
        known = session.scalar(select(ApiTokenModel).where(ApiTokenModel.token_hash == hash_token(settings.admin_token)))
        if known is None:
            issue_token(session, user_id=admin.id, name="env", token=settings.admin_token)
    return None


def get_user(session: Session, user_id: str) -> UserModel:
    user = session.get(UserModel, user_id)
    if user is None:
        raise NotFound(f"user {user_id} not found")
    return user


def list_users(session: Session, *, order: str = "created") -> list[UserModel]:
    """Every user, oldest first (order="name": by name)."""
    key = UserModel.name if order == "name" else UserModel.created_at
    return list(session.scalars(select(UserModel).order_by(key)))


def list_tokens(session: Session, user_id: str) -> list[ApiTokenModel]:
    return list(session.scalars(select(ApiTokenModel).where(ApiTokenModel.user_id == user_id)))


def create_token(session: Session, *, user_id: str, name: str = "default") -> tuple[ApiTokenModel, str]:
    """A new API token for the user: (its row, the secret, shown once)."""
    token = issue_token(session, user_id=user_id, name=name)
    row = session.scalar(select(ApiTokenModel).where(ApiTokenModel.token_hash == hash_token(token)))
    return row, token


def revoke_token(session: Session, *, principal: Principal, token_id: str) -> None:
    """token_id: the token's id, or one of the caller's own tokens by unique id prefix or name."""
    tok = session.get(ApiTokenModel, token_id)
    if tok is None:
        from modelyard.server.services.common.refs import resolve_ref

        tok = resolve_ref(session, ApiTokenModel, token_id, None, what="token", owned=False,
                          where=ApiTokenModel.user_id == principal.id)
    if tok.user_id != principal.id and not principal.is_admin:
        raise NotFound(f"token {token_id} not found")
    tok.revoked_at = tok.revoked_at or utcnow()
    events.record(session, actor_id=principal.id, kind="token.revoked", object_type="user",
                  object_id=tok.user_id, data={"token_id": token_id})
