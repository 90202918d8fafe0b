"""Helpers for the files tests (no tests here): a real `modelyard server` subprocess, disk
snapshots, quota changes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import ADMIN_TOKEN


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """`modelyard server` on a free port with MODELYARD_HOME=home (create_all schema, no background
    loops); start() / kill() (SIGKILL) / stop() and start() again on the same home."""

    def __init__(self, home: Path, port: int | None = None, extra_env: dict | None = None):
        self.home, self.port = home, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.extra_env = extra_env or {}
        self.log = home.parent / f"server-{self.port}.log"

    def start(self, timeout: float = 90) -> ServerProcess:
        env = {**os.environ, "MODELYARD_HOME": str(self.home), "MODELYARD_SCHEMA_MODE": "create_all",
               "MODELYARD_ADMIN_TOKEN": ADMIN_TOKEN, "MODELYARD_BACKGROUND": "false", **self.extra_env}
        env.pop("MODELYARD_DATABASE_URL", None)
        self.home.mkdir(parents=True, exist_ok=True)
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "modelyard.cli.main", "server", "--host", "127.0.0.1",
                                      "--port", str(self.port)], env=env, stdout=logf, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        logf.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not start: {self.log.read_text()[-3000:]}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup (a crash)."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Everything under the roots (path -> (kind, size, mtime_ns)), symlinks not followed."""
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


def data_snapshot(settings) -> dict[str, tuple]:
    """The whole data dir: every root, the uploads dir (partials, temps, staging). The (empty)
    scratch folder for multipart temp files is infrastructure, not data: left out."""
    snap = snapshot(settings.data_dir)
    snap.pop(str(settings.uploads_dir / "tmp"), None)
    return snap


def set_storage_quota(app_client, user_id: str, *, bytes_: int | None, files: int | None) -> None:
    from modelyard.server.db import session_scope
    from modelyard.server.services.quota import ensure_quota

    ctx = app_client.app.state.ctx
    with session_scope(ctx.sessions) as s:
        q = ensure_quota(s, user_id=user_id)
        q.storage_bytes, q.storage_files = bytes_, files


def index_rows(app_client, root: str, prefix: str = "") -> list[str]:
    from sqlalchemy import select

    from modelyard.server.db import session_scope
    from modelyard.server.orm.files import FileModel

    with session_scope(app_client.app.state.ctx.sessions) as s:
        return sorted(p for p in s.scalars(select(FileModel.path).where(FileModel.root == root))
                      if p.startswith(prefix))


def assert_index_consistent(app_client, *roots: str) -> None:
    """The maintained aggregates (directory entry counts, per-owner usage) equal a recount, and the
    index holds exactly what is on disk."""
    from sqlalchemy import select

    from modelyard.server.db import session_scope
    from modelyard.server.orm.files import FileModel
    from modelyard.server.services import files as fs

    ctx = app_client.app.state.ctx
    with session_scope(ctx.sessions) as s:
        for root in roots:
            if not fs.is_indexed(s, root):
                continue  # indexed on first use
            assert fs.verify_index(s, root) == [], root
            base = ctx.settings.public_root if root == "public" else ctx.settings.users_root / root
            indexed = {(p, d) for p, d in s.execute(select(FileModel.path, FileModel.is_dir).where(FileModel.root == root))}
            on_disk = {(rel, d) for rel, d, _, _ in fs.walk_disk(base.resolve(), "")}
            assert indexed == on_disk, (root, indexed ^ on_disk)


def events_of(app_client, kind_prefix: str = "") -> list[dict]:
    from sqlalchemy import select

    from modelyard.server.db import session_scope
    from modelyard.server.orm import EventModel

    with session_scope(app_client.app.state.ctx.sessions) as s:
        return [{"kind": e.kind, "actor_id": e.actor_id, "object_type": e.object_type, "object_id": e.object_id,
                 "data": e.data} for e in s.scalars(select(EventModel).order_by(EventModel.id))
                if e.kind.startswith(kind_prefix)]


def admin_headers() -> dict:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


from tests.conftest import sdk_for  # noqa: E402,F401  (re-exported for the files tests)
