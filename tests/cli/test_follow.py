"""--follow without a terminal: progress lines every few seconds and the final state; the exit
code is the job's outcome; Ctrl-C leaves the job running and says how to reattach."""

from __future__ import annotations

import re
import time
from types import SimpleNamespace

import pytest

pytestmark = pytest.mark.background

STEPS = ("for i in 1 2 3 4 5 6; do echo \"{\\\"step\\\": $i, \\\"loss\\\": $((10 - i)).5, \\\"max_steps\\\": 6, "
         "\\\"tokens_per_s\\\": 512}\" >> $MODELYARD_METRICS_FILE; echo step $i; sleep 0.6; done")


def test_follow_prints_progress_lines_and_exits_with_the_outcome(cli, alice, submit_custom, monkeypatch):
    monkeypatch.setenv("MODELYARD_FOLLOW_SECONDS", "0")  # a line whenever progress changes
    job = submit_custom(alice, STEPS, name="stepper")
    r = cli(alice, "jobs", "show", job["id"], "--watch")
    lines = r.stdout.splitlines()
    progress = [ln for ln in lines if ln.startswith("step ")]
    assert len(progress) >= 2, r.stdout
    assert all(re.fullmatch(r"step \d/6 loss \d\.\d{3} tok/s 512", ln) for ln in progress), progress
    assert progress[-1] == "step 6/6 loss 4.500 tok/s 512"
    assert lines[-1].startswith("job stepper succeeded")
    assert "\x1b[" not in r.stdout  # no terminal codes in a pipe

    bad = submit_custom(alice, "echo about to fail; exit 3", name="breaks")
    r = cli(alice, "jobs", "show", bad["id"], "--watch", code=1)
    assert "job breaks failed" in r.stdout
    r = cli(alice, "jobs", "logs", "-f", bad["id"], code=1)  # followed logs: the exit code says it failed
    assert "about to fail" in r.stdout


def test_ctrl_c_while_following_leaves_the_job_running(cli, alice, submit_custom, wait_state, monkeypatch):
    import modelyard.cli.jobs as jobs_cli

    job = submit_custom(alice, "sleep 30", name="sleeper")
    wait_state(alice, job["id"], "running")

    def interrupted(_seconds):
        raise KeyboardInterrupt

    # only the CLI's pause between polls is interrupted (the server's threads keep the real time module)
    monkeypatch.setattr(jobs_cli, "time", SimpleNamespace(sleep=interrupted, monotonic=time.monotonic))
    r = cli(alice, "jobs", "show", job["id"], "--watch", code=130)
    assert "the job keeps running" in r.stderr
    assert "modelyard jobs logs -f sleeper" in r.stderr and "modelyard jobs show sleeper" in r.stderr
    monkeypatch.undo()
    assert alice.get(f"/api/v1/jobs/{job['id']}").json()["state"] == "running"
    alice.post(f"/api/v1/jobs/{job['id']}/cancel")
    wait_state(alice, job["id"], "cancelled")
