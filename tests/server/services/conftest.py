"""Fixtures shared by the domain tests that watch the disk and the file index (files, uploads):
`snapshot`, `data_snapshot`, `set_storage_quota`, `index_rows`, `assert_index_consistent`,
`events_of`. Each fixture is the helper function itself."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from sqlalchemy import select

from modelyard.server.db import session_scope
from modelyard.server.orm import EventModel
from modelyard.server.orm.files import FileModel
from modelyard.server.services import files as fs
from modelyard.server.services.quota import ensure_quota


def _snapshot(*roots: Path) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for root in roots:
        if not root.exists():
            continue
        for cur, dirs, files in os.walk(root):
            for n in dirs + files:
                p = os.path.join(cur, n)
                st = os.lstat(p)
                kind = "l" if os.path.islink(p) else "d" if os.path.isdir(p) else "f"
                out[p] = (kind, st.st_size if kind == "f" else 0, st.st_mtime_ns if kind == "f" else 0)
    return out


@pytest.fixture
def snapshot():
    """snapshot(*roots) -> everything under the roots (path -> (kind, size, mtime_ns)), symlinks
    not followed."""
    return _snapshot


@pytest.fixture
def data_snapshot():
    """data_snapshot(settings) -> a snapshot of the whole data dir: every root, the uploads dir
    (partials, temps, staging). The (empty) scratch folder for multipart temp files is
    infrastructure, not data: left out."""

    def snap(settings) -> dict[str, tuple]:
        out = _snapshot(settings.data_dir)
        out.pop(str(settings.uploads_dir / "tmp"), None)
        return out

    return snap


@pytest.fixture
def set_storage_quota():
    """set_storage_quota(client, user_id, bytes_=..., files=...) writes the user's storage quota."""

    def set_(app_client, user_id: str, *, bytes_: int | None, files: int | None) -> None:
        with session_scope(app_client.app.state.ctx.sessions) as s:
            q = ensure_quota(s, user_id=user_id)
            q.storage_bytes, q.storage_files = bytes_, files

    return set_


@pytest.fixture
def index_rows():
    """index_rows(client, root, prefix="") -> the indexed paths of a root under prefix, sorted."""

    def rows(app_client, root: str, prefix: str = "") -> list[str]:
        with session_scope(app_client.app.state.ctx.sessions) as s:
            return sorted(p for p in s.scalars(select(FileModel.path).where(FileModel.root == root))
                          if p.startswith(prefix))

    return rows


@pytest.fixture
def assert_index_consistent():
    """assert_index_consistent(client, *roots): the maintained aggregates (directory entry counts,
    per-owner usage) equal a recount, and the index holds exactly what is on disk."""

    def check(app_client, *roots: str) -> None:
        ctx = app_client.app.state.ctx
        with session_scope(ctx.sessions) as s:
            for root in roots:
                if not fs.is_indexed(s, root):
                    continue  # indexed on first use
                assert fs.verify_index(s, root) == [], root
                base = ctx.settings.public_root if root == "public" else ctx.settings.users_root / root
                indexed = {(p, d) for p, d in s.execute(select(FileModel.path, FileModel.is_dir)
                                                        .where(FileModel.root == root))}
                on_disk = {(rel, d) for rel, d, _, _ in fs.walk_disk(base.resolve(), "")}
                assert indexed == on_disk, (root, indexed ^ on_disk)

    return check


@pytest.fixture
def events_of():
    """events_of(client, kind_prefix="") -> the events written so far, oldest first."""

    def events(app_client, kind_prefix: str = "") -> list[dict]:
        with session_scope(app_client.app.state.ctx.sessions) as s:
            return [{"kind": e.kind, "actor_id": e.actor_id, "object_type": e.object_type,
                     "object_id": e.object_id, "data": e.data}
                    for e in s.scalars(select(EventModel).order_by(EventModel.id))
                    if e.kind.startswith(kind_prefix)]

    return events
