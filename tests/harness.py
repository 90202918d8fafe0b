"""The test harness: a real `modelyard server` process, waiting, job processes, and the in-process
app's helpers (its context, a user's quota, a custom job and its state). Plain classes and
functions, imported by name where a fixture does not fit (a module-level helper); conftest.py
turns them into fixtures. No `import *`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

from modelyard.server.db import session_scope
from modelyard.server.services.quota import ledger

ADMIN_TOKEN = "my_test_admin_token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(fn: Callable, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    """Call fn until it returns something truthy (returned); AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def ctx_of(client):
    """The AppContext of the in-process test app behind a TestClient or a conftest UserClient."""
    tc = getattr(client, "tc", client)
    return tc.app.state.ctx


def set_quota(client, user_id: str, **values) -> None:
    """Write the user's quota row (cpu=..., jobs=..., storage_bytes=..., ...)."""
    with session_scope(ctx_of(client).sessions) as s:
        q = ledger.get_quota(s, user_id)
        for k, v in values.items():
            setattr(q, k, v)


def submit_custom(user, command, *, cpu: float = 0.1, memory_mib: int = 64, expect: int = 201, **extra) -> dict:
    """Submit a one-replica custom job as `user`; asserts the status code, returns the job."""
    body = {"kind": "custom", "command": command,
            "roles": [{"role": "master", "replicas": 1, "cpu": cpu, "memory_mib": memory_mib}], **extra}
    r = user.post("/api/v1/jobs", json=body)
    assert r.status_code == expect, r.text
    return r.json()


def wait_state(user, job_id: str, states, timeout: float = 30.0) -> dict:
    """The job once it is in one of the states (the job's detail in the failure message)."""
    states = {states} if isinstance(states, str) else set(states)

    def check():
        j = user.get(f"/api/v1/jobs/{job_id}").json()
        return j if j["state"] in states else None

    try:
        return wait_for(check, timeout=timeout, what=f"job {job_id} in {states}")
    except AssertionError:
        detail = user.get(f"/api/v1/jobs/{job_id}").json()
        raise AssertionError(f"job {job_id} not in {states}: {detail}") from None


def job_processes(root: Path) -> list[psutil.Process]:
    """Replica wrappers started for jobs whose folders live under root."""
    out = []
    needle = str(root)
    for p in psutil.process_iter(["cmdline"]):
        try:
            cmd = p.info["cmdline"] or []
        except (psutil.Error, KeyError):
            continue
        if any(c.endswith("executors/wrapper.py") for c in cmd) and any(needle in c for c in cmd):
            out.append(p)
    return out


def kill_tree(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


class ServerProcess:
    """`modelyard server` as a real process on a free port with MODELYARD_HOME=home (create_all
    schema). background=True runs the scheduler and reconcilers (short poll interval).
    start() / kill9() (SIGKILL: a crash) / stop(), and start() again on the same home."""

    def __init__(self, home: Path, *, background: bool = False, port: int | None = None,
                 extra_env: dict | None = None):
        self.home, self.port, self.background = home, port or free_port(), background
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.extra_env = extra_env or {}
        self.log = home.parent / f"server-{self.port}.log"
        self.headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

    def start(self, timeout: float = 90) -> ServerProcess:
        env = {**os.environ, "MODELYARD_HOME": str(self.home), "MODELYARD_SCHEMA_MODE": "create_all",
               "MODELYARD_ADMIN_TOKEN": ADMIN_TOKEN, "MODELYARD_BACKGROUND": str(self.background).lower(),
               "MODELYARD_SCHEDULER__POLL_INTERVAL_S": "0.5", **self.extra_env}
        env.pop("MODELYARD_DATABASE_URL", None)
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as logf:
            self.proc = subprocess.Popen([sys.executable, "-m", "modelyard.cli.main", "server", "--host",
                                          "127.0.0.1", "--port", str(self.port)], env=env, stdout=logf,
                                         stderr=subprocess.STDOUT, start_new_session=True)

        def up():
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_for(up, timeout=timeout, interval=0.1, what="server up")
        except AssertionError:
            self.stop()
            raise RuntimeError(f"server did not start: {self.log.read_text()[-3000:]}") from None
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill9(self) -> None:
        """SIGKILL: no shutdown, no cleanup (a crash)."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    kill = kill9

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()

    # --- calls as the admin ----------------------------------------------------------------
    def get(self, path: str):
        return httpx.get(self.url + path, headers=self.headers, timeout=10).json()

    def post(self, path: str, **kw):
        r = httpx.post(self.url + path, headers=self.headers, timeout=10, **kw)
        assert r.status_code < 300, r.text
        return r.json()

    def wait_state(self, job_id: str, states, timeout=30.0) -> dict:
        states = {states} if isinstance(states, str) else set(states)
        return wait_for(lambda: (lambda j: j if j["state"] in states else None)(self.get(f"/api/v1/jobs/{job_id}")),
                        timeout=timeout, interval=0.1, what=f"{job_id} in {states}")
