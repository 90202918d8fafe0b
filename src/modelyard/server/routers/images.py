"""Native image API (/api/v1/images). `{image}` is an image id or name; names with '/' are
addressed by id (or `GET /images?name=`)."""

from __future__ import annotations

from fastapi import APIRouter, Query, status
from fastapi.responses import FileResponse

from modelyard.core.errors import NotFound
from modelyard.server.db import session_scope
from modelyard.server.deps import AdminDep, CtxDep, SessionDep, SettingsDep, UserDep
from modelyard.server.routers.params import IdQ, NameQ, PageQ, PageSizeQ, SearchQ
from modelyard.server.schemas.common import Page
from modelyard.server.schemas.images import (
    GCResponse,
    ImageCreateRequest,
    ImageDetailResponse,
    ImageImportRequest,
    ImageResponse,
    ImageUpdateRequest,
    ImageVersionResponse,
)
from modelyard.server.services import images as svc

router = APIRouter(tags=["images"])


def _image(session, img, *, detail: bool = False):
    tags = svc.tags_by_image(session, [img.id])[img.id]
    base = ImageResponse.model_validate(img).model_dump()
    base["tags"] = tags
    if detail:
        return ImageDetailResponse(**base, versions=[ImageVersionResponse.model_validate(v)
                                                     for v in svc.versions_of(session, img.id)])
    return ImageResponse(**base)


@router.post("/images", status_code=status.HTTP_201_CREATED, response_model=ImageDetailResponse)
def create_image(req: ImageCreateRequest, session: SessionDep, principal: UserDep):
    """Register an image

    Creates an empty image (a named repository); versions are imported into it from tar archives."""
    img = svc.create_image(session, principal, name=req.name, icon=req.icon, overview=req.overview,
                           labels=req.labels, description=req.description, is_public=req.is_public)
    return _image(session, img, detail=True)


@router.get("/images", response_model=Page[ImageResponse])
def list_images(session: SessionDep, principal: UserDep, page: PageQ = 1, page_size: PageSizeQ = 20,
                q: SearchQ = None, name: NameQ = None, owner_id: IdQ = None):
    """List images

    Your images and public ones, with their tags."""
    items, total = svc.list_images(session, principal, page=page, page_size=page_size, q=q, name=name,
                                   owner_id=owner_id)
    tags = svc.tags_by_image(session, [i.id for i in items])
    out = []
    for img in items:
        r = ImageResponse.model_validate(img)
        r.tags = tags[img.id]
        out.append(r)
    return Page[ImageResponse](items=out, total=total, page=page, page_size=page_size)


@router.post("/images/gc", response_model=GCResponse)
def collect_garbage(ctx: CtxDep, _admin: AdminDep, grace_s: float = Query(3600, ge=0)):
    """Admin: remove blobs no version references and stray files (older than grace_s)."""
    return svc.collect_garbage(ctx.sessions, ctx.settings, grace_s=grace_s)


@router.get("/images/{image}", response_model=ImageDetailResponse)
def get_image(image: str, session: SessionDep, principal: UserDep):
    """One image

    Addressed by id, unique id prefix or name; includes its versions."""
    return _image(session, svc.get_image(session, principal, image), detail=True)


@router.patch("/images/{image}", response_model=ImageDetailResponse)
def update_image(image: str, req: ImageUpdateRequest, session: SessionDep, principal: UserDep):
    """Change an image

    Icon, overview, labels, description or visibility; the owner only."""
    img = svc.update_image(session, principal, image, **req.model_dump())
    session.flush()
    return _image(session, img, detail=True)


@router.delete("/images/{image}", status_code=status.HTTP_204_NO_CONTENT)
def delete_image(image: str, ctx: CtxDep, principal: UserDep):
    """Refused (409 in_use) while a job or service uses the image; blobs no other version uses go."""
    svc.delete_image(ctx.sessions, ctx.settings, principal, image)


@router.get("/images/{image}/versions", response_model=list[ImageVersionResponse])
def list_versions(image: str, session: SessionDep, principal: UserDep):
    """Versions of an image

    Every imported version (tag, digest, size, config), oldest first."""
    img = svc.get_image(session, principal, image)
    return svc.versions_of(session, img.id)


@router.post("/images/{image}/versions", status_code=status.HTTP_201_CREATED, response_model=ImageVersionResponse)
def import_version(image: str, req: ImageImportRequest, ctx: CtxDep, principal: UserDep):
    """Import a version from a docker-save or OCI archive in your files (seed §2.2's native twin)."""
    return svc.import_version(ctx.sessions, ctx.settings, principal, image_ref=image, file_path=req.path,
                              tag=req.tag)


@router.get("/images/{image}/versions/{version}", response_model=ImageVersionResponse)
def get_version(image: str, version: str, session: SessionDep, principal: UserDep):
    """version: a version id or a tag."""
    return svc.get_version(session, principal, image, version)


@router.delete("/images/{image}/versions/{version}", status_code=status.HTTP_204_NO_CONTENT)
def delete_version(image: str, version: str, ctx: CtxDep, principal: UserDep):
    """Delete an image version

    Refused (409 in_use) while a queued or running job uses it; unshared blobs are collected."""
    svc.delete_version(ctx.sessions, ctx.settings, principal, image, version)


@router.get("/images/{image}/versions/{version}/blobs/{digest}")
def get_blob(image: str, version: str, digest: str, ctx: CtxDep, settings: SettingsDep, principal: UserDep):
    """A blob (manifest, config or layer) of a version, as stored (content-addressed)."""
    with session_scope(ctx.sessions, readonly=True) as session:
        media_type = svc.version_blob_media_type(session, principal, image, version, digest)
    path = svc.blob_path(settings, digest)
    if not path.is_file():
        raise NotFound(f"blob {digest} is missing from the store")
    return FileResponse(path, media_type=media_type, headers={"Docker-Content-Digest": digest})
