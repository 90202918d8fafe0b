"""Helpers shared by the jobs / scheduler / executor tests (no tests here).

Test modules import the fixtures they need: `from tests.server.test_jobs_support import *`."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from tests.conftest import make_settings

__all__ = ["settings", "any_db_settings", "kill_leftovers", "wait_for", "set_quota", "ctx_of", "submit_custom",
           "wait_state", "job_processes", "kill_tree"]


def _jobs_settings(home: Path, db: str | None = None, **kw):
    return make_settings(home, db, background=True,
                         scheduler={"poll_interval_s": 0.5, "cancel_grace_s": kw.pop("cancel_grace_s", 1.0)}, **kw)


@pytest.fixture
def settings(tmp_path):
    """Overrides conftest's: the jobs loop runs (background=True), short poll and grace."""
    return _jobs_settings(tmp_path / "home")


@pytest.fixture
def any_db_settings(tmp_path, db_url):
    return _jobs_settings(tmp_path / "home", db_url)


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


@pytest.fixture(autouse=True)
def kill_leftovers(tmp_path):
    yield
    for p in job_processes(tmp_path):
        kill_tree(p.pid)


def wait_for(fn: Callable, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


def ctx_of(client):
    tc = getattr(client, "tc", client)
    return tc.app.state.ctx


def set_quota(client, user_id: str, **values) -> None:
    from modelyard.server.db import session_scope
    from modelyard.server.services.quota import ledger

    with session_scope(ctx_of(client).sessions) as s:
        q = ledger.get_quota(s, user_id)
        for k, v in values.items():
            setattr(q, k, v)


def submit_custom(user, command, *, cpu: float = 0.1, memory_mib: int = 64, expect: int = 201, **extra) -> dict:
    body = {"kind": "custom", "command": command,
            "roles": [{"role": "master", "replicas": 1, "cpu": cpu, "memory_mib": memory_mib}], **extra}
    r = user.post("/api/v1/jobs", json=body)
    assert r.status_code == expect, r.text
    return r.json()


def wait_state(user, job_id: str, states, timeout: float = 30.0) -> dict:
    states = {states} if isinstance(states, str) else set(states)

    def check():
        j = user.get(f"/api/v1/jobs/{job_id}").json()
        return j if j["state"] in states else None

    try:
        return wait_for(check, timeout=timeout, what=f"job {job_id} in {states}")
    except AssertionError:
        detail = user.get(f"/api/v1/jobs/{job_id}").json()
        raise AssertionError(f"job {job_id} not in {states}: {detail}") from None
