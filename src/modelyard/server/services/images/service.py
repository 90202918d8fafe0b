"""Images (seed §2): register an image, import versions from docker-save / OCI archives found in
the user's files, list / show / delete, blob garbage collection.

An import parses and stores the archive's blobs with no database transaction open (that can take
minutes for a multi-GB archive and must not hold SQLite's write lock), then records the version
in one short transaction. Blob files and blob rows are kept consistent under one lock
("image_blobs": SQLite's write lock / a PostgreSQL advisory lock): the final import transaction
re-checks that every blob it references is on disk (a concurrent deletion may have collected
one in between) and deletions move unreferenced blobs aside before committing, deleting them for
good only after the commit."""

from __future__ import annotations

import contextlib
import re
import time
from pathlib import Path

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from modelyard.core.errors import BadRequest, Conflict, NotFound
from modelyard.server.auth import Principal
from modelyard.server.db import advisory_lock, paginate, session_scope
from modelyard.server.orm.images import ImageBlobModel, ImageModel, ImageVersionBlobModel, ImageVersionModel
from modelyard.server.orm.users import UserModel
from modelyard.server.services import events
from modelyard.server.services.common import references
from modelyard.server.services.common.access import get_owned, get_visible, visible
from modelyard.server.services.common.paths import resolve_user_path
from modelyard.server.services.common.refs import pick_by_name, resolve_ref
from modelyard.server.services.images import rootfs
from modelyard.server.services.images.oci import (
    BlobStore,
    ImageInfo,
    import_archive,
    open_source,
)
from modelyard.server.settings import Settings

# docker reference grammar for repository names (lower case, '/'-separated components)
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_ID_RE = re.compile(r"^[0-9a-f]{32}$")
LOCK = "image_blobs"


def blob_store(settings: Settings) -> BlobStore:
    return BlobStore(settings.blobs_dir)


def validate_name(name: str | None) -> str:
    name = (name or "").strip()
    if not name:
        raise BadRequest("imageName is required", code="invalid_name")
    if len(name) > 255 or not NAME_RE.match(name):
        raise BadRequest(f"invalid image name {name!r}: use lower-case letters, digits and '.', '_', '-' "
                         "separators, components joined by '/' (e.g. 'team/pytorch-cuda')", code="invalid_name")
    return name


def validate_tag(tag: str) -> str:
    if not TAG_RE.match(tag or ""):
        raise BadRequest(f"invalid image tag {tag!r}: 1-128 of letters, digits, '_', '.', '-' "
                         "(not starting with '.' or '-')", code="invalid_tag")
    return tag


# --- images ------------------------------------------------------------------------------------

def create_image(session: Session, principal: Principal, *, owner_id: str | None = None, name: str,
                 icon: str = "", overview: str = "", labels: list | None = None, description: str = "",
                 is_public: bool = False) -> ImageModel:
    owner_id = principal.ensure_acting_as(owner_id)
    if owner_id != principal.id and session.get(UserModel, owner_id) is None:
        raise NotFound(f"user {owner_id} not found")
    name = validate_name(name)
    if session.scalar(select(ImageModel.id).where(ImageModel.owner_id == owner_id, ImageModel.name == name)):
        raise Conflict(f"image {name!r} already exists", code="image_exists")
    img = ImageModel(owner_id=owner_id, name=name, icon=icon or "", overview=overview or "",
                     labels=list(labels or []), description=description or "", is_public=bool(is_public))
    session.add(img)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(f"image {name!r} already exists", code="image_exists") from None
    events.record(session, actor_id=principal.id, kind="image.created", object_type="image", object_id=img.id,
                  message=f"image {name} created", data={"name": name, "owner_id": owner_id})
    return img


def list_images(session: Session, principal: Principal, *, page: int = 1, page_size: int = 20,
                q: str | None = None, name: str | None = None, owner_id: str | None = None
                ) -> tuple[list[ImageModel], int]:
    stmt = visible(select(ImageModel), ImageModel, principal)
    if q:
        stmt = stmt.where(ImageModel.name.contains(q, autoescape=True))
    if name:
        stmt = stmt.where(ImageModel.name == name)
    if owner_id:
        stmt = stmt.where(ImageModel.owner_id == owner_id)
    return paginate(session, stmt.order_by(ImageModel.created_at.desc(), ImageModel.id),
                    page=page, page_size=page_size)


def tags_by_image(session: Session, image_ids: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {i: [] for i in image_ids}
    if image_ids:
        rows = session.execute(select(ImageVersionModel.image_id, ImageVersionModel.tag)
                               .where(ImageVersionModel.image_id.in_(image_ids))
                               .order_by(ImageVersionModel.created_at))
        for iid, tag in rows:
            out[iid].append(tag)
    return out


def get_image(session: Session, principal: Principal, ref: str) -> ImageModel:
    """By id, or by name (the caller's own image first, then a public one)."""
    return pick_by_name(session, ImageModel, ref, principal, what="image")


def get_owned_image(session: Session, principal: Principal, ref: str) -> ImageModel:
    img = get_image(session, principal, ref)
    return get_owned(session, ImageModel, img.id, principal, what="image")


def update_image(session: Session, principal: Principal, ref: str, **fields) -> ImageModel:
    img = get_owned_image(session, principal, ref)
    changed = {}
    for key in ("icon", "overview", "labels", "description", "is_public"):
        if fields.get(key) is not None and getattr(img, key) != fields[key]:
            setattr(img, key, fields[key])
            changed[key] = fields[key]
    if changed:
        events.record(session, actor_id=principal.id, kind="image.updated", object_type="image",
                      object_id=img.id, data={"changed": sorted(changed)})
    return img


def versions_of(session: Session, image_id: str) -> list[ImageVersionModel]:
    return list(session.scalars(select(ImageVersionModel).where(ImageVersionModel.image_id == image_id)
                                .order_by(ImageVersionModel.created_at, ImageVersionModel.id)))


def get_version(session: Session, principal: Principal, image_ref: str, version_ref: str) -> ImageVersionModel:
    """version_ref: a version id or a tag."""
    img = get_image(session, principal, image_ref)
    v = session.scalar(select(ImageVersionModel).where(
        ImageVersionModel.image_id == img.id,
        or_(ImageVersionModel.id == version_ref, ImageVersionModel.tag == version_ref)))
    if v is None:  # a version id prefix (services/common/refs.py)
        v = resolve_ref(session, ImageVersionModel, version_ref, None, what=f"version of image {img.name}",
                        name_col="tag", owned=False, where=ImageVersionModel.image_id == img.id)
    return v


def version_blob_media_type(session: Session, principal: Principal, image_ref: str, version_ref: str,
                            digest: str) -> str:
    """The media type of one blob of a visible version (404 when the version has no such blob)."""
    v = get_version(session, principal, image_ref, version_ref)
    row = session.execute(select(ImageVersionBlobModel, ImageBlobModel)
                          .join(ImageBlobModel, ImageBlobModel.digest == ImageVersionBlobModel.digest)
                          .where(ImageVersionBlobModel.version_id == v.id,
                                 ImageVersionBlobModel.digest == digest)).first()
    if row is None:
        raise NotFound(f"version {v.tag} has no blob {digest}")
    return row[1].media_type or "application/octet-stream"


def resolve_image_version(session: Session, principal: Principal, ref: str) -> ImageVersionModel:
    """ref = version id, image id / name (its newest version), or "<name>:<tag>". 404 if not visible."""
    ref = (ref or "").strip()
    if _ID_RE.match(ref):
        v = session.get(ImageVersionModel, ref)
        if v is not None:
            get_visible(session, ImageModel, v.image_id, principal, what="image")
            return v
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = ref.rsplit(":", 1)
        return get_version(session, principal, name, tag)
    img = get_image(session, principal, ref)
    v = session.scalar(select(ImageVersionModel).where(ImageVersionModel.image_id == img.id)
                       .order_by(ImageVersionModel.created_at.desc(), ImageVersionModel.id.desc()).limit(1))
    if v is None:
        raise NotFound(f"image {img.name} has no version yet")
    return v


# --- import ------------------------------------------------------------------------------------

def import_version(sessions: sessionmaker[Session], settings: Settings, principal: Principal, *,
                   image_ref: str, file_path: str, tag: str | None = None,
                   acting_user_id: str | None = None) -> ImageVersionModel:
    """Seed §2.2: import a version of an image from a tar (or an OCI layout folder) in the acting
    user's files. The archive is parsed and its blobs stored before the short transaction that
    records the version."""
    acting = principal.ensure_acting_as(acting_user_id)
    if tag is not None and tag != "":
        validate_tag(tag)
    else:
        tag = None
    with session_scope(sessions, readonly=True) as s:
        img = get_owned_image(s, principal, image_ref)
        if acting != principal.id and img.owner_id != acting:
            raise NotFound(f"image {image_ref} not found")
        image_id, image_name = img.id, img.name
        if tag and _tag_exists(s, image_id, tag):
            raise Conflict(f"image {image_name} already has a version tagged {tag!r}", code="tag_exists")
    path = resolve_user_path(settings, acting, file_path)
    if not path.exists():
        raise BadRequest(f"fileUrl {file_path!r} not found in the user's files", code="file_not_found")
    store = blob_store(settings)
    new_blobs: list[str] = []
    try:
        with open_source(path, label=file_path, tmp_dir=store.tmp_dir()) as src:
            info = import_archive(src, store, new_blobs, want_tag=tag)
            final_tag = tag or (info.tag if info.tag and TAG_RE.match(info.tag) else "latest")
            with session_scope(sessions) as s:
                advisory_lock(s, LOCK)
                if s.get(ImageModel, image_id) is None:
                    raise NotFound(f"image {image_ref} not found (deleted during the import)")
                if _tag_exists(s, image_id, final_tag):
                    raise Conflict(f"image {image_name} already has a version tagged {final_tag!r}",
                                   code="tag_exists")
                if any(not store.exists(d) for d, *_ in info.blobs()):
                    # collected by a concurrent deletion since we checked: store them again
                    info = import_archive(src, store, new_blobs, want_tag=tag)
                version = _record_version(s, principal, image_id, final_tag, info, file_path)
        return version
    except BaseException:
        _forget_new_blobs(sessions, store, new_blobs)
        raise


def _tag_exists(s: Session, image_id: str, tag: str) -> bool:
    return s.scalar(select(ImageVersionModel.id).where(ImageVersionModel.image_id == image_id,
                                                       ImageVersionModel.tag == tag)) is not None


def _record_version(s: Session, principal: Principal, image_id: str, tag: str, info: ImageInfo,
                    source: str) -> ImageVersionModel:
    v = ImageVersionModel(
        image_id=image_id, tag=tag, status="done", archive_format=info.archive_format,
        manifest_digest=info.manifest_digest, manifest_media_type=info.manifest_media_type,
        config_digest=info.config_digest, layers=[la.to_dict() for la in info.layers],
        size_bytes=info.size_bytes, uncompressed_size_bytes=info.uncompressed_size_bytes,
        os=info.os, architecture=info.architecture, variant=info.variant, env=info.env,
        entrypoint=info.entrypoint, cmd=info.cmd, working_dir=info.working_dir, config_user=info.user,
        config_labels=info.labels, exposed_ports=info.exposed_ports, image_created=info.created,
        repo_tags=info.repo_tags, source_path=source, created_by=principal.id)
    s.add(v)
    s.flush()
    for digest, size, media_type, role in info.blobs():
        if s.get(ImageBlobModel, digest) is None:
            s.add(ImageBlobModel(digest=digest, size=size, media_type=media_type))
            s.flush()
        s.add(ImageVersionBlobModel(version_id=v.id, digest=digest, role=role))
    s.flush()
    events.record(s, actor_id=principal.id, kind="image.version_imported", object_type="image", object_id=image_id,
                  message=f"tag {tag} imported ({info.archive_format}, {len(info.layers)} layers)",
                  data={"version_id": v.id, "tag": tag, "manifest_digest": info.manifest_digest,
                        "size_bytes": info.size_bytes, "source": source})
    return v


def _forget_new_blobs(sessions: sessionmaker[Session], store: BlobStore, digests: list[str]) -> None:
    """After a failed import: remove the blobs it stored first, unless something recorded them since."""
    if not digests:
        return
    with contextlib.suppress(Exception), session_scope(sessions) as s:
        advisory_lock(s, LOCK)
        for d in set(digests):
            if s.get(ImageBlobModel, d) is None:
                store.path(d).unlink(missing_ok=True)


# --- deletion and garbage collection ----------------------------------------------------------

def _drop_versions(s: Session, store: BlobStore, versions: list[ImageVersionModel]) -> list[tuple[str, Path]]:
    """Delete versions and the blobs only they used (moved to the trash; see module doc)."""
    if not versions:
        return []
    ids = [v.id for v in versions]
    digests = set(s.scalars(select(ImageVersionBlobModel.digest).where(ImageVersionBlobModel.version_id.in_(ids))))
    s.execute(delete(ImageVersionBlobModel).where(ImageVersionBlobModel.version_id.in_(ids)))
    for v in versions:
        s.delete(v)
    s.flush()
    return _collect(s, store, digests)


def _collect(s: Session, store: BlobStore, digests) -> list[tuple[str, Path]]:
    trashed: list[tuple[str, Path]] = []
    for d in sorted(digests):
        used = s.scalar(select(func.count()).select_from(ImageVersionBlobModel).where(ImageVersionBlobModel.digest == d))
        if used:
            continue
        s.execute(delete(ImageBlobModel).where(ImageBlobModel.digest == d))
        t = store.trash(d)
        if t is not None:
            trashed.append((d, t))
    return trashed


def _commit_deletion(sessions, settings, work) -> int:
    """Run work(session, store) -> trashed blobs in a locked transaction; empty the trash after
    the commit, put the blobs back if it failed. Returns how many unused rootfs caches went."""
    store = blob_store(settings)
    trashed: list[tuple[str, Path]] = []
    try:
        with session_scope(sessions) as s:
            advisory_lock(s, LOCK)
            trashed = work(s, store)
    except BaseException:
        for d, t in trashed:
            store.restore(d, t)
        raise
    for _, t in trashed:
        t.unlink(missing_ok=True)
    return collect_rootfs(sessions, settings)


def collect_rootfs(sessions, settings: Settings) -> int:
    """Remove the unpacked root filesystems of manifests no version uses any more."""
    with session_scope(sessions) as s:
        live = set(s.scalars(select(ImageVersionModel.manifest_digest)))
    return rootfs.collect(settings, live)


def ensure_rootfs(settings: Settings, session: Session, version_id: str) -> Path:
    """The version's root filesystem, unpacked from its layer blobs on first use and cached."""
    v = session.get(ImageVersionModel, version_id)
    if v is None:
        raise NotFound(f"image version {version_id} no longer exists", code="image_version_not_found")
    store = blob_store(settings)
    paths = []
    for la in v.layers or []:
        p = store.path(la["digest"])
        if not p.is_file():
            raise Conflict(f"layer {la['digest']} of image version {v.tag} is missing from the blob store",
                           code="missing_blob")
        paths.append(p)
    if not paths:
        raise BadRequest(f"image version {v.tag} has no layers to run in", code="invalid_image_layer")
    return rootfs.ensure(settings, v.manifest_digest, paths)


def run_config(settings: Settings, session: Session, version_id: str) -> dict:
    """How a replica runs in the version: {uid, gid, working_dir, env}, User resolved in its rootfs."""
    v = session.get(ImageVersionModel, version_id)
    if v is None:
        raise NotFound(f"image version {version_id} no longer exists", code="image_version_not_found")
    uid, gid = rootfs.resolve_user(rootfs.rootfs_dir(settings, v.manifest_digest), v.config_user or "")
    env = dict(item.split("=", 1) for item in (v.env or []) if isinstance(item, str) and "=" in item)
    return {"uid": uid, "gid": gid, "working_dir": v.working_dir or "", "env": env}


def delete_version(sessions, settings: Settings, principal: Principal, image_ref: str, version_ref: str) -> None:
    def work(s: Session, store: BlobStore):
        img = get_owned_image(s, principal, image_ref)
        v = get_version(s, principal, img.id, version_ref)
        references.ensure_unused(s, "image_version", v.id)
        references.ensure_unused(s, "image", img.id)
        trashed = _drop_versions(s, store, [v])
        events.record(s, actor_id=principal.id, kind="image.version_deleted", object_type="image", object_id=img.id,
                      message=f"tag {v.tag} deleted", data={"version_id": v.id, "tag": v.tag})
        return trashed

    _commit_deletion(sessions, settings, work)


def delete_image(sessions, settings: Settings, principal: Principal, image_ref: str) -> None:
    def work(s: Session, store: BlobStore):
        img = get_owned_image(s, principal, image_ref)
        references.ensure_unused(s, "image", img.id)
        versions = versions_of(s, img.id)
        for v in versions:
            references.ensure_unused(s, "image_version", v.id)
        trashed = _drop_versions(s, store, versions)
        events.record(s, actor_id=principal.id, kind="image.deleted", object_type="image", object_id=img.id,
                      message=f"image {img.name} deleted", data={"name": img.name, "versions": len(versions)})
        s.delete(img)
        return trashed

    _commit_deletion(sessions, settings, work)


def collect_garbage(sessions, settings: Settings, *, grace_s: float = 3600) -> dict:
    """Admin sweep: blob rows no version references, blob files with no row (older than grace_s:
    younger ones may belong to an import in progress), stale temp files."""
    result = {"blobs_removed": 0, "orphan_files_removed": 0, "temp_files_removed": 0, "bytes_freed": 0}

    def work(s: Session, store: BlobStore):
        unref = list(s.scalars(select(ImageBlobModel.digest).where(
            ~select(ImageVersionBlobModel.digest).where(ImageVersionBlobModel.digest == ImageBlobModel.digest)
            .exists())))
        trashed = _collect(s, store, unref)
        result["blobs_removed"] = len(trashed)
        known = set(s.scalars(select(ImageBlobModel.digest)))
        now = time.time()
        for d in store.iter_digests():
            if d in known:
                continue
            p = store.path(d)
            with contextlib.suppress(OSError):
                if now - p.stat().st_mtime > grace_s:
                    t = store.trash(d)
                    if t is not None:
                        trashed.append((d, t))
                        result["orphan_files_removed"] += 1
        result["bytes_freed"] = sum(t.stat().st_size for _, t in trashed if t.exists())
        return trashed

    result["rootfs_removed"] = _commit_deletion(sessions, settings, work)
    result["temp_files_removed"] = blob_store(settings).sweep_tmp(grace_s)
    return result


def blob_path(settings: Settings, digest: str) -> Path:
    return blob_store(settings).path(digest)
