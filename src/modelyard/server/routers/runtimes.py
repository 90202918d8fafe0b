"""Runtimes (/api/v1/runtimes): what a service version can run on, whether it is prepared, and
(admins) preparing one in the background; progress shows in GET."""

from __future__ import annotations

from fastapi import APIRouter, status

from modelyard.server.deps import AdminDep, SettingsDep, UserDep
from modelyard.server.services import runtimes as svc

router = APIRouter(tags=["runtimes"])


@router.get("/runtimes")
def list_runtimes(settings: SettingsDep, _principal: UserDep):
    """name, kind (builtin | environment), ready, status (absent | preparing | ready | failed),
    size_bytes, progress while preparing, log_tail when failed, and how to prepare it."""
    return {"items": svc.list_runtimes(settings)}


@router.get("/runtimes/{name}")
def show_runtime(name: str, settings: SettingsDep, _principal: UserDep):
    """One runtime: whether it is ready, its environment's size and path, or how to prepare it."""
    return svc.runtime_status(settings, name)


@router.post("/runtimes/{name}/install", status_code=status.HTTP_202_ACCEPTED)
def install_runtime(name: str, settings: SettingsDep, _admin: AdminDep):
    """Start preparing the runtime's environment (admin only); poll GET for progress."""
    return svc.start_prepare(settings, name)
