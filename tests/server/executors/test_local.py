"""LocalProcessExecutor on its own: process groups, exit codes through the wrapper, cancel
(SIGTERM, then SIGKILL), logs, and re-attaching to a replica started by another executor
instance (what a restarted server does)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import psutil
import pytest

from modelyard.server.executors.base import ReplicaHandle, ReplicaLaunch
from modelyard.server.executors.local import LocalProcessExecutor, read_exit_code
from tests.harness import wait_for


def _launch(tmp: Path, argv: list[str], name: str = "master-0", env: dict | None = None) -> ReplicaLaunch:
    rdir = tmp / "job" / name
    role, index = name.split("-")
    return ReplicaLaunch(job_id="j" * 32, attempt=1, role=role, index=int(index), rank=0, argv=argv,
                         env={"PATH": os.environ["PATH"], **(env or {})}, cwd=rdir, replica_dir=rdir,
                         log_path=rdir / "output.log")


def _ended(ex, h, timeout=10.0):
    return wait_for(lambda: (lambda st: st if not st.alive else None)(ex.poll(h)), timeout=timeout, what="replica end")


def test_exit_code_env_cwd_and_log(tmp_path):
    ex = LocalProcessExecutor()
    ln = _launch(tmp_path, ["/bin/sh", "-c", "echo foo=$FOO; pwd; echo err >&2; exit 3"], env={"FOO": "bar"})
    (h,) = ex.submit([ln])
    assert h.pid and h.pid_start_time
    st = _ended(ex, h)
    assert st.exit_code == 3 and "exit code 3" in st.reason
    assert read_exit_code(h.replica_dir) == 3
    log = Path(h.log_path).read_text()
    assert "foo=bar" in log and str(ln.cwd) in log and "err" in log
    data, off = ex.logs(h, offset=0)
    assert data.decode() == log and off == len(data)
    assert ex.logs(h, offset=off) == (b"", off)


def test_replica_runs_in_its_own_process_group_and_cancel_kills_the_tree(tmp_path):
    ex = LocalProcessExecutor()
    (h,) = ex.submit([_launch(tmp_path, ["/bin/sh", "-c", "sleep 60 & sleep 60 & wait"])])
    wait_for(lambda: len(psutil.Process(h.pid).children(recursive=True)) >= 3, what="grandchildren")
    tree = [h.pid] + [c.pid for c in psutil.Process(h.pid).children(recursive=True)]
    assert os.getpgid(h.pid) == h.pid and os.getsid(h.pid) == h.pid
    assert all(os.getpgid(p) == h.pid for p in tree)
    assert os.getpgid(h.pid) != os.getpgid(os.getpid())
    ex.cancel([h])
    st = _ended(ex, h)
    # sh dies of SIGTERM; the wrapper survives it and records the code
    assert st.exit_code == -15 and "SIGTERM" in st.reason
    wait_for(lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                             for p in tree[1:]), what="the whole tree gone")


def test_sigterm_ignored_then_sigkill(tmp_path):
    ex = LocalProcessExecutor()
    script = "trap '' TERM; echo ready; while true; do sleep 0.1; done"
    (h,) = ex.submit([_launch(tmp_path, ["/bin/sh", "-c", script])])
    wait_for(lambda: b"ready" in ex.logs(h)[0], what="trap installed")
    ex.cancel([h])
    time.sleep(0.5)
    assert ex.poll(h).alive  # TERM ignored
    ex.cancel([h], force=True)
    st = _ended(ex, h)
    assert st.exit_code == -9 and "SIGKILL" in st.reason
    assert read_exit_code(h.replica_dir) is None  # the wrapper was killed too


def test_recover_after_restart_and_pid_reuse_guard(tmp_path):
    first = LocalProcessExecutor()
    (h,) = first.submit([_launch(tmp_path, ["/bin/sh", "-c", "sleep 1; exit 7"])])
    # a "restarted server": a new executor that never started this process
    notified = []
    second = LocalProcessExecutor(notify=lambda: notified.append(time.monotonic()))
    assert second.recover(h) is True
    assert second.poll(h).alive
    # the pid with another start time is someone else: never ours
    imposter = ReplicaHandle(name=h.name, replica_dir=h.replica_dir, log_path=h.log_path, pid=h.pid,
                             pid_start_time=h.pid_start_time - 1000)
    assert second.recover(imposter) is False
    second.cancel([imposter], force=True)  # must not signal the live process
    assert second.poll(h).alive
    first.poll(h)  # (first reaps it as its parent when it exits)
    st = wait_for(lambda: (lambda s: s if not s.alive else None)(second.poll(h)), what="end via pidfd/poll")
    assert st.exit_code == 7
    wait_for(lambda: notified, timeout=5, what="pidfd notification")


def test_vanished_replica_is_reported(tmp_path):
    ex = LocalProcessExecutor()
    gone = ReplicaHandle(name="master-0", replica_dir=str(tmp_path / "nothing"), log_path=str(tmp_path / "x.log"),
                         pid=2**22 - 3, pid_start_time=1.0)
    assert ex.recover(gone) is False
    st = ex.poll(gone)
    assert not st.alive and st.exit_code is None and "vanished" in st.reason


def test_submit_is_all_or_nothing(tmp_path):
    ex = LocalProcessExecutor()
    good = _launch(tmp_path, ["/bin/sh", "-c", "sleep 30"], name="master-0")
    bad = _launch(tmp_path, ["/bin/sh"], name="worker-0")
    bad.cwd = Path("/proc/1/nonexistent/x")  # cannot be created -> submit fails
    with pytest.raises(OSError):
        ex.submit([good, bad])
    pids = [p for p in psutil.process_iter(["cmdline"]) if str(good.replica_dir) in " ".join(p.info["cmdline"] or [])]
    wait_for(lambda: all(not p.is_running() or p.status() == psutil.STATUS_ZOMBIE for p in pids),
             what="the started replica stopped")


def test_wrapper_reports_a_command_that_cannot_start(tmp_path):
    ex = LocalProcessExecutor()
    (h,) = ex.submit([_launch(tmp_path, ["/definitely/not/here"])])
    st = _ended(ex, h)
    assert st.exit_code == 127
    assert "cannot start" in Path(h.log_path).read_text()


def test_wrapper_starts_fast(tmp_path):
    """submit returns right after the fork; the wrapper is stdlib-only."""
    ex = LocalProcessExecutor()
    t0 = time.perf_counter()
    (h,) = ex.submit([_launch(tmp_path, [sys.executable, "-c", "pass"])])
    assert time.perf_counter() - t0 < 2.0
    assert _ended(ex, h).exit_code == 0
