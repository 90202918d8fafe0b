from __future__ import annotations

from fastapi import APIRouter, Query, status

from modelyard.server.deps import AdminDep, CtxDep, SessionDep, SettingsDep, UserDep
from modelyard.server.schemas.users import (
    TokenCreatedResponse,
    TokenCreateRequest,
    TokenResponse,
    UserCreatedResponse,
    UserCreateRequest,
    UserResponse,
)
from modelyard.server.services import users as svc

router = APIRouter(tags=["users"])


@router.post("/users", status_code=status.HTTP_201_CREATED, response_model=UserCreatedResponse)
def create_user(req: UserCreateRequest, session: SessionDep, settings: SettingsDep, admin: AdminDep):
    """Admin: create a user

    Creates the account with its quota row and the seed's folder layout, and returns its first API token (shown only this once)."""
    user, token = svc.create_user(session, settings, name=req.name, role=req.role, actor=admin)
    return UserCreatedResponse(**UserResponse.model_validate(user).model_dump(), token=token)


@router.get("/users", response_model=list[UserResponse])
def list_users(session: SessionDep, _admin: AdminDep):
    """Admin: list users

    Every account, oldest first, with its role and whether it is disabled (deleted accounts stay listed, disabled)."""
    return svc.list_users(session)


@router.get("/users/me", response_model=UserResponse)
def me(session: SessionDep, principal: UserDep):
    """The calling user

    Who the bearer token belongs to: id, name, role."""
    return svc.get_user(session, principal.id)


@router.get("/users/{ref}", response_model=UserResponse, summary="Admin: one user",
            description="A user by id, unique id prefix (4+ characters) or name. Deleted accounts answer 404.")
def get_user(ref: str, session: SessionDep, _admin: AdminDep):
    return svc.get_user_ref(session, ref)


@router.delete("/users/{ref}", status_code=status.HTTP_204_NO_CONTENT, summary="Admin: delete a user",
               description="Closes the account: tokens revoked, name released (renamed `<name>.deleted-<id8>`), "
                           "its files, models, datasets and images kept so no lineage breaks (delete them one by one "
                           "if wanted). Refused (409 user_busy, listing them) while the user has active jobs, running "
                           "searches or open uploads, unless force=true, which cancels them first. An admin cannot "
                           "delete itself.")
def delete_user(ref: str, session: SessionDep, ctx: CtxDep, admin: AdminDep,
                force: bool = Query(False, description="cancel the user's active jobs, running searches and open "
                                                       "uploads first instead of refusing")):
    svc.delete_user(session, ctx, admin=admin, user_ref=ref, force=force)


@router.get("/tokens", response_model=list[TokenResponse])
def list_tokens(session: SessionDep, principal: UserDep):
    """My API tokens

    The caller's tokens (name, prefix, last use, revocation); never the secrets themselves."""
    return svc.list_tokens(session, principal.id)


@router.post("/tokens", status_code=status.HTTP_201_CREATED, response_model=TokenCreatedResponse)
def create_token(req: TokenCreateRequest, session: SessionDep, principal: UserDep):
    """Create an API token

    Issues a new token for the caller; the plaintext is in this response only."""
    row, token = svc.create_token(session, user_id=principal.id, name=req.name)
    return TokenCreatedResponse(**TokenResponse.model_validate(row).model_dump(), token=token)


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token_id: str, session: SessionDep, principal: UserDep):
    """Revoke an API token

    The token stops authenticating at once. Named by id, or (your own) by unique id prefix or name; an
    admin may revoke anyone's by id."""
    svc.revoke_token(session, principal=principal, token_id=token_id)
