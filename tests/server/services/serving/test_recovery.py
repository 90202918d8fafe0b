"""A real server process killed -9 while a replica is ready: after the restart the replica is still
ready on the same job (re-attached, not relaunched) and still answers on its socket."""

from __future__ import annotations

import json
import shutil
import time

import httpx
import pytest

from tests.server.services.serving.conftest import fake_argv, make_tiny_hf

pytestmark = [pytest.mark.background, pytest.mark.slow]


def _wait(srv, sid: str, pred, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    d = None
    while time.monotonic() < deadline:
        d = srv.get(f"/api/v1/services/{sid}")
        if pred(d):
            return d
        time.sleep(0.3)
    raise AssertionError(f"timed out: {d}\n{srv.get(f'/api/v1/services/{sid}/events')}")


def test_server_kill9_keeps_a_ready_replica_and_its_job(server_process, tmp_path):
    env = {"MODELYARD_SERVING__RUNTIME_ARGV": json.dumps(fake_argv()), "MODELYARD_SERVING__PROBE_INTERVAL_S": "0.3"}
    srv = server_process(background=True, extra_env=env)
    try:
        me = srv.get("/api/v1/users/me")
        make_tiny_hf(tmp_path / "home" / "data" / "users" / me["id"] / "Model" / "tiny")
        v = srv.post("/api/v1/models", json={"name": "tiny", "path": "Model/tiny"})["versions"][0]
        deadline = time.monotonic() + 60
        while srv.get(f"/api/v1/model-versions/{v['id']}")["status"] == "importing":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        sid = srv.post("/api/v1/services", json={"name": "keep", "versions": [{"model": v["id"], "cpu": 0.5,
                                                                              "memory_mib": 256}]})["id"]
        d = _wait(srv, sid, lambda d: d["state"] == "running")
        rep = next(r for r in d["replicas"] if r["state"] == "ready")
        job_before = srv.get(f"/api/v1/jobs/{rep['job_id']}")
        pid_before = job_before["replicas"][0]["pid"]

        srv.kill9()
        srv.start()
        # the jobs' recovery re-attached the replica's process; the serving loop finds it ready
        time.sleep(2.0)  # a few reconcile passes after the restart
        d = _wait(srv, sid, lambda d: d["state"] == "running")
        after = [r for r in d["replicas"] if r["state"] in ("pending", "starting", "ready")]
        assert [r["id"] for r in after] == [rep["id"]] and after[0]["state"] == "ready"
        job_after = srv.get(f"/api/v1/jobs/{rep['job_id']}")
        assert job_after["state"] == "running" and job_after["replicas"][0]["pid"] == pid_before
        assert any(e["kind"] == "job.recovered" for e in job_after["events"])
        with httpx.Client(transport=httpx.HTTPTransport(uds=rep["socket_path"])) as c:
            assert c.get("http://r/readyz").status_code == 200
        srv.post(f"/api/v1/services/{sid}/stop")
        _wait(srv, sid, lambda d: d["state"] == "stopped")
    finally:
        srv.stop()
        from modelyard.server.services.serving.planning import socket_root
        from modelyard.server.settings import Settings

        shutil.rmtree(socket_root(Settings(home=tmp_path / "home")), ignore_errors=True)
