"""Jobs: submit -> running latency of a trivial command job (p50 over 100, target < 1 s) against a
bare subprocess.Popen of the same command, and one scheduling pass over 1,000 queued jobs
(target < 1 s)."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

N_LATENCY = 100
N_QUEUED = 1000
COMMAND = "true"


def _client(home: Path, **settings_kw):
    from fastapi.testclient import TestClient

    from modelyard.server.app import create_app
    from modelyard.server.settings import Settings

    s = Settings(home=home, admin_token="my_bench_admin", schema_mode="create_all", **settings_kw)
    return TestClient(create_app(s))


def _p(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def submit_until_running(tc, headers: dict, body: dict) -> tuple[float, float]:
    """Submit a job, poll until it is running, then until it ended (succeeded, else raise).
    Returns (server-side created -> running seconds, client-observed submit -> running seconds)."""
    t0 = time.perf_counter()
    job = tc.post("/api/v1/jobs", json=body, headers=headers).json()
    while True:
        j = tc.get(f"/api/v1/jobs/{job['id']}", headers=headers).json()
        if j["running_at"]:
            break
        time.sleep(0.002)
    client_s = time.perf_counter() - t0
    while j["state"] not in ("succeeded", "failed"):
        time.sleep(0.002)
        j = tc.get(f"/api/v1/jobs/{job['id']}", headers=headers).json()
    if j["state"] != "succeeded":
        raise RuntimeError(f"bench job failed: {j['error']}")
    server_s = (datetime.fromisoformat(j["running_at"]) - datetime.fromisoformat(j["created_at"])).total_seconds()
    return server_s, client_s


def latency() -> tuple[float, float, float]:
    """(server-side p50, client-observed p50, bare Popen p50) in seconds."""
    headers = {"Authorization": "Bearer my_bench_admin"}
    server_side, client_side = [], []
    with tempfile.TemporaryDirectory() as tmp, _client(Path(tmp) / "home", background=True) as tc:
        body = {"kind": "custom", "command": COMMAND, "roles": [{"cpu": 0.1, "memory_mib": 16}]}
        for i in range(N_LATENCY + 5):
            server_s, client_s = submit_until_running(tc, headers, body)
            if i >= 5:  # warm-up excluded
                client_side.append(client_s)
                server_side.append(server_s)
    bare = []
    for _ in range(N_LATENCY):
        t0 = time.perf_counter()
        p = subprocess.Popen(["/bin/sh", "-c", COMMAND], start_new_session=True)
        bare.append(time.perf_counter() - t0)
        p.wait()
    return statistics.median(server_side), statistics.median(client_side), statistics.median(bare)


def one_pass(repeat: int = 3) -> tuple[float, float, int]:
    """(admission pass seconds, pass incl. launching seconds, jobs started) over N_QUEUED queued jobs;
    medians of `repeat` fresh runs (the machine may be shared)."""
    from modelyard.core.enums import JobState
    from modelyard.server.db import session_scope
    from modelyard.server.orm.base import utcnow
    from modelyard.server.orm.jobs import JobModel
    from modelyard.server.scheduler import queue
    from modelyard.server.services.users import create_user

    results = []
    for launch in [False] * repeat + [True]:
        with tempfile.TemporaryDirectory() as tmp, _client(Path(tmp) / "home", background=False) as tc:
            ctx = tc.app.state.ctx
            with session_scope(ctx.sessions) as s:
                users = [create_user(s, ctx.settings, name=f"u{i}")[0].id for i in range(20)]
            with session_scope(ctx.sessions) as s:
                now = utcnow()
                roles = [{"role": "master", "replicas": 1, "cpu": 0.01, "memory_mib": 1, "gpu": {}}]
                for i in range(N_QUEUED):
                    s.add(JobModel(owner_id=users[i % len(users)], name=f"j{i}", kind="custom",
                                   state=JobState.queued.value, queued_at=now, roles=roles,
                                   spec={"roles": roles,
                                         "argv": ["/bin/sh", "-c", COMMAND], "env": {},
                                         "job_dir": str(ctx.settings.jobs_dir / f"j{i}"),
                                         "output_dir": str(ctx.settings.jobs_dir / f"j{i}" / "output"),
                                         "checkpoint_dir": str(ctx.settings.jobs_dir / f"j{i}" / "ck"),
                                         "metrics_file": str(ctx.settings.jobs_dir / f"j{i}" / "m.jsonl")}))
            t0 = time.perf_counter()
            res = queue.schedule_pass(ctx, launch=launch)
            results.append((time.perf_counter() - t0, len(res.started)))
    admission = statistics.median(r[0] for r in results[:-1])
    return admission, results[-1][0], results[0][1]


def run() -> bool:
    srv, cli, bare = latency()
    print(f"submit -> running, trivial command job, p50 over {N_LATENCY}: server-side {srv * 1000:.1f} ms, "
          f"client-observed (HTTP submit + polling) {cli * 1000:.1f} ms  (target < 1000 ms)")
    print(f"bare peer subprocess.Popen('{COMMAND}') p50: {bare * 1000:.2f} ms  -> ratio platform/bare "
          f"{srv / bare:.1f}x (server-side), {cli / bare:.1f}x (client-observed)")
    admit_s, full_s, started = one_pass()
    print(f"one scheduling pass over {N_QUEUED} queued jobs (20 users, default quota 4 jobs each), median of 3: "
          f"{admit_s * 1000:.0f} ms, admitting {started} ({admit_s / max(started, 1) * 1000:.1f} ms each, one "
          f"transaction per job) and deciding the other {N_QUEUED - started} wait  (target < 1000 ms); "
          f"{full_s * 1000:.0f} ms when the pass also launches the {started} jobs' processes")
    try:
        import os

        print(f"(machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")
    except OSError:
        pass
    return cli < 1.0 and srv < 1.0 and admit_s < 1.0


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
