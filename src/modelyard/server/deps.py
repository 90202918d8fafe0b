"""FastAPI dependencies: the app context, a session per request, the calling principal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from modelyard.core.errors import Forbidden
from modelyard.server.auth import Principal, authenticate
from modelyard.server.context import AppContext
from modelyard.server.db import session_scope
from modelyard.server.settings import Settings


def get_ctx(request: Request) -> AppContext:
    return request.app.state.ctx


def get_settings(request: Request) -> Settings:
    return request.app.state.ctx.settings


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request; GET/HEAD read without taking SQLite's write lock."""
    readonly = request.method in ("GET", "HEAD")
    session = request.app.state.ctx.sessions()
    if readonly:
        session.connection(execution_options={"sqlite_begin": "DEFERRED"})
    try:
        yield session
        # A seed route turns its errors into an envelope response before this dependency's
        # cleanup runs, so the failure arrives as a flag rather than an exception.
        if getattr(request.state, "failed", False):
            session.rollback()
        else:
            session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    if auth.lower().startswith("oauth "):  # seed 003 (ZStack): "Authorization: OAuth <session uuid>"
        return auth[6:].strip()
    return None


# Declares the bearer scheme on every operation that authenticates (Swagger UI's Authorize button);
# auto_error=False: a missing token is answered by authenticate() with the house's 401 body.
BEARER = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="An API token (`modelyard tokens create`, or the admin token printed at first start), "
                                "sent as `Authorization: Bearer <token>`.")


def current_user(request: Request,
                 _credentials: Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)] = None) -> Principal:
    """Authenticate in a short read-only session of its own, so the principal is known even to
    handlers that stream and manage their own sessions."""
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    with session_scope(request.app.state.ctx.sessions, readonly=True) as session:
        principal = authenticate(session, _bearer(request))
    request.state.principal = principal
    return principal


def require_admin(principal: Annotated[Principal, Depends(current_user)]) -> Principal:
    if not principal.is_admin:
        raise Forbidden("admin only")
    return principal


SessionDep = Annotated[Session, Depends(get_session)]
UserDep = Annotated[Principal, Depends(current_user)]
AdminDep = Annotated[Principal, Depends(require_admin)]
CtxDep = Annotated[AppContext, Depends(get_ctx)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
