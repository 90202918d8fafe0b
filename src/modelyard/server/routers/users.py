from __future__ import annotations

from fastapi import APIRouter, status

from modelyard.server.deps import AdminDep, SessionDep, SettingsDep, UserDep
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
    user, token = svc.create_user(session, settings, name=req.name, role=req.role, actor=admin)
    return UserCreatedResponse(**UserResponse.model_validate(user).model_dump(), token=token)


@router.get("/users", response_model=list[UserResponse])
def list_users(session: SessionDep, _admin: AdminDep):
    return svc.list_users(session)


@router.get("/users/me", response_model=UserResponse)
def me(session: SessionDep, principal: UserDep):
    return svc.get_user(session, principal.id)


@router.get("/tokens", response_model=list[TokenResponse])
def list_tokens(session: SessionDep, principal: UserDep):
    return svc.list_tokens(session, principal.id)


@router.post("/tokens", status_code=status.HTTP_201_CREATED, response_model=TokenCreatedResponse)
def create_token(req: TokenCreateRequest, session: SessionDep, principal: UserDep):
    row, token = svc.create_token(session, user_id=principal.id, name=req.name)
    return TokenCreatedResponse(**TokenResponse.model_validate(row).model_dump(), token=token)


@router.delete("/tokens/{token_id}", status_code=status.HTTP_204_NO_CONTENT)
def revoke_token(token_id: str, session: SessionDep, principal: UserDep):
    svc.revoke_token(session, principal=principal, token_id=token_id)
