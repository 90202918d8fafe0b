"""kill -9 of the server while a job runs, with a real server process:

(a) restarted while the job still runs -> re-attached (pid + start time), finishes `succeeded`;
(b) the job's processes killed too while the server is down -> `failed` with the reason, and its
    allocations released;
(c) the job ended (exit 0) while the server was down -> `succeeded` from its exit_code file.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import create_engine, text

from tests.conftest import ADMIN_TOKEN
from tests.server.test_jobs_support import kill_leftovers, wait_for  # noqa: F401

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
H = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, home: Path):
        self.home, self.port, self.proc = home, _port(), None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        env = {**os.environ, "MODELYARD_HOME": str(self.home), "MODELYARD_ADMIN_TOKEN": ADMIN_TOKEN,
               "MODELYARD_SCHEMA_MODE": "create_all", "MODELYARD_SCHEDULER__POLL_INTERVAL_S": "0.5"}
        env.pop("MODELYARD_DATABASE_URL", None)
        self.log = open(self.home.parent / f"server-{time.time_ns()}.log", "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "modelyard.cli.main", "server", "--host", "127.0.0.1",
                                      "--port", str(self.port)], env=env, stdout=self.log, stderr=subprocess.STDOUT)

        def up():
            try:
                return httpx.get(self.url + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                assert self.proc.poll() is None, "server died at start"
                return False

        wait_for(up, timeout=60, interval=0.1, what="server up")
        return self

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def get(self, path: str):
        return httpx.get(self.url + path, headers=H, timeout=10).json()

    def post(self, path: str, **kw):
        r = httpx.post(self.url + path, headers=H, timeout=10, **kw)
        assert r.status_code < 300, r.text
        return r.json()

    def wait_state(self, job_id: str, states, timeout=30.0) -> dict:
        states = {states} if isinstance(states, str) else set(states)
        return wait_for(lambda: (lambda j: j if j["state"] in states else None)(self.get(f"/api/v1/jobs/{job_id}")),
                        timeout=timeout, interval=0.1, what=f"{job_id} in {states}")


@pytest.fixture
def server(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    srv = Server(home)
    yield srv
    srv.stop()


def _live_allocations(home: Path, job_id: str) -> int:
    eng = create_engine(f"sqlite:///{home / 'modelyard.db'}")
    try:
        with eng.connect() as c:
            return c.execute(text("select count(*) from allocations where consumer_id = :j and released_at is null"),
                             {"j": job_id}).scalar()
    finally:
        eng.dispose()


def _submit(srv: Server, command: str) -> dict:
    return srv.post("/api/v1/jobs", json={"kind": "custom", "command": command,
                                          "roles": [{"role": "master", "cpu": 0.1, "memory_mib": 16}]})


def test_restart_reattaches_to_a_live_replica(server):
    server.start()
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
    log = httpx.get(f"{server.url}/api/v1/jobs/{job['id']}/logs", headers=H).text
    assert "start" in log and "end" in log
    assert _live_allocations(server.home, job["id"]) == 0


def test_replica_killed_while_the_server_is_down_is_failed_and_released(server):
    server.start()
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
    server.start()
    job = _submit(server, "sleep 1")
    server.wait_state(job["id"], "running")
    server.kill9()
    time.sleep(2.0)  # it exits 0 meanwhile; the wrapper records the code
    server.start()
    done = server.wait_state(job["id"], "succeeded", timeout=20)
    assert done["replicas"][0]["exit_code"] == 0
    assert _live_allocations(server.home, job["id"]) == 0
