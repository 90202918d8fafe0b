"""kill -9 of the server while a job runs, with a real server process:

(a) restarted while the job still runs -> re-attached (pid + start time), finishes `succeeded`;
(b) the job's processes killed too while the server is down -> `failed` with the reason, and its
    allocations released;
(c) the job ended (exit 0) while the server was down -> `succeeded` from its exit_code file.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import create_engine, text

from tests.harness import ServerProcess

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@pytest.fixture
def server(server_process):
    """A real `modelyard server` with its background loops (the scheduler and reconcilers)."""
    return server_process(background=True)


def _live_allocations(home: Path, job_id: str) -> int:
    eng = create_engine(f"sqlite:///{home / 'modelyard.db'}")
    try:
        with eng.connect() as c:
            return c.execute(text("select count(*) from allocations where consumer_id = :j and released_at is null"),
                             {"j": job_id}).scalar()
    finally:
        eng.dispose()


def _submit(srv: ServerProcess, command: str) -> dict:
    return srv.post("/api/v1/jobs", json={"kind": "custom", "command": command,
                                          "roles": [{"role": "master", "cpu": 0.1, "memory_mib": 16}]})


def test_restart_reattaches_to_a_live_replica(server):
    # the gate is in the job's folder: the sandboxed job sees nothing else of the host
    job = _submit(server, "echo start; while [ ! -f $MODELYARD_JOB_DIR/gate ]; do sleep 0.05; done; echo end")
    running = server.wait_state(job["id"], "running")
    gate = Path(running["spec"]["job_dir"]) / "gate"
    pid = running["replicas"][0]["pid"]
    server.kill9()
    assert psutil.pid_exists(pid)  # the replica outlives the server (own session)
    time.sleep(0.5)
    server.start()
    detail = server.get(f"/api/v1/jobs/{job['id']}")
    assert detail["state"] == "running" and detail["replicas"][0]["pid"] == pid
    gate.touch()  # let it finish: the restarted server learns the end through its pidfd watcher
    done = server.wait_state(job["id"], "succeeded", timeout=30)
    assert done["replicas"][0]["exit_code"] == 0
    assert any(e["kind"] == "job.recovered" for e in done["events"])
    log = httpx.get(f"{server.url}/api/v1/jobs/{job['id']}/logs", headers=server.headers).text
    assert "start" in log and "end" in log
    assert _live_allocations(server.home, job["id"]) == 0


def test_replica_killed_while_the_server_is_down_is_failed_and_released(server, wait_for):
    job = _submit(server, "sleep 60")
    running = server.wait_state(job["id"], "running")
    pid = running["replicas"][0]["pid"]
    assert _live_allocations(server.home, job["id"]) == 1
    server.kill9()
    os.killpg(pid, signal.SIGKILL)  # the replica's whole process group, wrapper included
    wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
             what="replica gone")
    server.start()
    done = server.wait_state(job["id"], "failed", timeout=20)
    assert "vanished while the server was down" in done["error"]
    assert done["replicas"][0]["state"] == "failed"
    assert _live_allocations(server.home, job["id"]) == 0
    # and the platform keeps working: the next job runs
    nxt = _submit(server, "true")
    server.wait_state(nxt["id"], "succeeded")


def test_replica_that_finished_while_the_server_was_down_succeeds(server):
    job = _submit(server, "sleep 1")
    server.wait_state(job["id"], "running")
    server.kill9()
    time.sleep(2.0)  # it exits 0 meanwhile; the wrapper records the code
    server.start()
    done = server.wait_state(job["id"], "succeeded", timeout=20)
    assert done["replicas"][0]["exit_code"] == 0
    assert _live_allocations(server.home, job["id"]) == 0
