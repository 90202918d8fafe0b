"""Seed §1 (file upload), envelope RESULT: {"success", "errorCode", "message", "result"}.

§1.1 POST /api/file/file/uploadFolder        multipart `file` (one or more; a name may carry
     sub-folders, as a browser's folder upload sends them), `currentPath` (optional, '/upload/folder'
     style: relative to the caller's private root; created when missing).
§1.2 POST /api/file/file/uploadPublicFolder  the same into the public root, plus `publicUserId`:
     the user the files belong to (quota, later changes) — must be the caller unless admin (403).
An existing file of the same name is replaced (the seed has no overwrite flag). The body streams to
disk; a refused request (bad path 400, not the caller 403, quota 403) leaves nothing anywhere."""

from __future__ import annotations

from fastapi import Request

from modelyard.server.deps import CtxDep, UserDep
from modelyard.server.routers.compat.envelope import RESULT, compat_router, ok
from modelyard.server.services import uploads

router = compat_router(RESULT, tags=["seed §1 files"])

UPLOADED = "文件上传成功"

_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file"],
    "properties": {"file": {"type": "string", "format": "binary", "description": "要上传的文件"},
                   "currentPath": {"type": "string", "description": "当前路径", "example": "/upload/folder"}}}}}}}
_PUBLIC_FORM = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["file", "publicUserId"],
    "properties": {"file": {"type": "string", "format": "binary", "description": "要上传的文件"},
                   "publicUserId": {"type": "string", "description": "用户ID"},
                   "currentPath": {"type": "string", "description": "当前路径", "example": "/upload/folder"}}}}}}}


@router.post("/api/file/file/uploadFolder", summary="§1.1 私有文件上传", openapi_extra=_FORM)
async def upload_folder(request: Request, ctx: CtxDep, principal: UserDep):
    """Seed-compatible upload of files into the caller's private files, answered in the seed's envelope."""
    await uploads.multipart_upload(ctx, principal, request.headers.get("content-type", ""), request.stream(),
                                   public=False, dir_field="currentPath", strict=False, overwrite=True)
    return ok(RESULT, None, message=UPLOADED)


@router.post("/api/file/file/uploadPublicFolder", summary="§1.2 公共文件上传", openapi_extra=_PUBLIC_FORM)
async def upload_public_folder(request: Request, ctx: CtxDep, principal: UserDep):
    """Seed-compatible upload of files into the shared public root, answered in the seed's envelope."""
    await uploads.multipart_upload(ctx, principal, request.headers.get("content-type", ""), request.stream(),
                                   public=True, dir_field="currentPath", user_field="publicUserId", strict=False,
                                   overwrite=True)
    return ok(RESULT, None, message=UPLOADED)
