"""Seed §2 (镜像管理) at its exact paths, in the RESULT envelope.

The seed's responses carry `result: null`; ours carry what a client needs next: §2.1 the new
image's id (`{"id", "imageId", "imageName"}`, needed by §2.2's imageId), §2.2 the imported version
(`{"id", "imageId", "imageTag", "digest", ...}`). success / errorCode / message are the seed's."""

from __future__ import annotations

from modelyard.core.errors import BadRequest, NotFound
from modelyard.server.db import session_scope
from modelyard.server.deps import CtxDep, SessionDep, UserDep
from modelyard.server.routers.compat.envelope import RESULT, compat_router, ok
from modelyard.server.schemas.images import SeedImageUpload, SeedImageUploadOld
from modelyard.server.services import images as svc

router = compat_router(RESULT, tags=["seed §2 images"])


@router.post("/docker/image/upload", summary="§2.1 新增镜像 (register an image)")
def upload(req: SeedImageUpload, session: SessionDep, principal: UserDep):
    """Seed-compatible: creates an image record (name, icon, overview, labels) in the seed's envelope."""
    img = svc.create_image(session, principal, owner_id=req.userId, name=req.imageName or "",
                           icon=req.imageIcon or "", overview=req.imageOverView or "",
                           labels=req.imageLabel or [], description=req.imageDescribe or "")
    return ok(RESULT, {"id": img.id, "imageId": img.id, "imageName": img.name}, message="新增镜像成功")


@router.post("/docker/image/uploadOld", summary="§2.2 上传镜像 (import a version from a tar in the user's files)")
def upload_old(req: SeedImageUploadOld, ctx: CtxDep, principal: UserDep):
    """Seed-compatible: imports an image version from a tar archive already in the caller's files."""
    acting = principal.ensure_acting_as(req.userId)
    ref = req.imageId
    if not ref:
        name = req.imageName[0] if isinstance(req.imageName, list) and req.imageName else req.imageName
        if not isinstance(name, str) or not name:
            raise BadRequest("imageId (or imageName) is required", code="invalid_request")
        with session_scope(ctx.sessions, readonly=True) as s:
            items, _ = svc.list_images(s, principal, name=name, owner_id=acting)
            if not items:
                raise NotFound(f"image {name} not found")
            ref = items[0].id
    v = svc.import_version(ctx.sessions, ctx.settings, principal, image_ref=ref, file_path=req.fileUrl,
                           tag=req.imageTag or None, acting_user_id=acting)
    return ok(RESULT, {"id": v.id, "imageId": v.image_id, "imageTag": v.tag, "digest": v.manifest_digest,
                       "size": v.size_bytes, "os": v.os, "architecture": v.architecture,
                       "layers": len(v.layers)}, message="镜像开始上传")
