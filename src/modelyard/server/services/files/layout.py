"""Files: scopes (one root as seen by one caller) and the path helpers the files modules share.

The roots, the path rules, the index and the quota are described in services/files.py."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from modelyard.core.errors import InvalidPath
from modelyard.server.orm.files import (
    MAX_PATH_BYTES,
)
from modelyard.server.services.common.paths import resolve_in

# Our own scratch names: never shown nor indexed if one is ever found inside a root.
SCRATCH_PREFIX = ".modelyard-"


@dataclass(frozen=True)
class Scope:
    """One root as seen by one caller.

    key: the user id (private) or "public"; owner_id: who new entries belong to (and whose quota
    they count against); actor_id: who is calling (for events)."""

    key: str
    root: Path
    public: bool
    owner_id: str
    is_admin: bool
    actor_id: str | None

    def can_write_any(self) -> bool:
        return not self.public or self.is_admin


def check_text(text: str | None, *, strict: bool = True) -> str:
    """Checks on the text alone (resolve_in does the rest). strict: a leading '/' is an absolute
    path and refused (native API); not strict: it means the root (the seed's currentPath)."""
    text = text or ""
    if "\x00" in text:
        raise InvalidPath("path contains a NUL byte")
    if "\\" in text:
        raise InvalidPath("path contains a backslash")
    if strict and text.startswith("/"):
        raise InvalidPath(f"absolute path not allowed (paths are relative to the root): {text!r}")
    if text.startswith("//"):
        raise InvalidPath(f"absolute path not allowed: {text!r}")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise InvalidPath(f"path longer than {MAX_PATH_BYTES} bytes")
    return text


def resolve(scope: Scope, text: str | None, *, strict: bool = True) -> tuple[Path, str]:
    """(absolute path, canonical relative path) of text inside scope's root; '' is the root."""
    target = resolve_in(scope.root, check_text(text, strict=strict))
    rel = "" if target == scope.root else target.relative_to(scope.root).as_posix()
    if len(rel.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise InvalidPath(f"path longer than {MAX_PATH_BYTES} bytes")
    if any(p.startswith(SCRATCH_PREFIX) for p in rel.split("/") if p):
        raise InvalidPath(f"names starting with {SCRATCH_PREFIX!r} are reserved")
    return target, rel


def join(rel_dir: str, name: str) -> str:
    return f"{rel_dir}/{name}" if rel_dir else name


def parent_of(rel: str) -> str:
    return rel.rsplit("/", 1)[0] if "/" in rel else ""


def name_of(rel: str) -> str:
    return rel.rsplit("/", 1)[-1]


def _mtime(st: os.stat_result) -> datetime:
    return datetime.fromtimestamp(st.st_mtime, UTC).replace(tzinfo=None)


def ancestors(rel: str) -> list[str]:
    parts = rel.split("/")[:-1]
    return ["/".join(parts[:i + 1]) for i in range(len(parts))]
