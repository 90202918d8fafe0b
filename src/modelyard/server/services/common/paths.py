"""User-supplied paths, resolved and confined to a root.

Every path that comes from a request goes through `resolve_in(root, rel)`. Refused (400
invalid_path, nothing touched): NUL bytes, backslashes, absolute paths, '..' components, and
anything whose resolution (following symlinks) leaves the root."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from modelyard.core.errors import InvalidPath
from modelyard.server.settings import Settings


def clean_rel(rel: str | None) -> PurePosixPath:
    """Validate the text of a relative path. '' / '/' / None mean the root itself.

    A leading '/' is accepted as 'relative to the root' (the seed's currentPath is written
    '/upload/folder'); everything else must be plain relative components."""
    rel = rel or ""
    if "\x00" in rel:
        raise InvalidPath("path contains a NUL byte")
    if "\\" in rel:
        raise InvalidPath("path contains a backslash")
    if rel.startswith("//"):
        raise InvalidPath(f"absolute path not allowed: {rel!r}")
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidPath(f"'..' not allowed in path: {rel!r}")
    if any(len(p.encode()) > 255 for p in parts):
        raise InvalidPath("a path component is longer than 255 bytes")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def resolve_in(root: Path, rel: str | None) -> Path:
    """The absolute path of rel under root, guaranteed (after resolving symlinks) inside root."""
    root = root.resolve()
    target = (root / clean_rel(rel)).resolve()
    if target != root and root not in target.parents:
        raise InvalidPath(f"path escapes its root: {rel!r}")
    return target


def user_root(settings: Settings, user_id: str) -> Path:
    return settings.users_root / user_id


def public_root(settings: Settings) -> Path:
    return settings.public_root


def resolve_user_path(settings: Settings, user_id: str, rel: str | None) -> Path:
    return resolve_in(user_root(settings, user_id), rel)
