"""client.jobs and `modelyard jobs ... / modelyard finetune` against an in-process server."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from modelyard.sdk import APIError
from tests.conftest import sdk_for as sdk

pytestmark = pytest.mark.background


def test_sdk_jobs(alice, wait_state):
    c = sdk(alice)
    metric = json.dumps({"step": 1, "loss": 1.5})
    j = c.jobs.run(f"echo hi; echo '{metric}' >> $MODELYARD_METRICS_FILE", cpu=0.1, memory_mib=32, name="sdk")
    done = c.jobs.wait(j["id"], timeout=30, interval=0.05)
    assert done["state"] == "succeeded"
    assert "hi" in "".join(c.jobs.logs(j["id"], follow=True))
    assert c.jobs.list(state="succeeded")["total"] == 1
    m = c.jobs.metrics(j["id"], names=["loss"])
    assert m["series"]["loss"]["value"] == [1.5]
    long = c.jobs.run("sleep 30", cpu=0.1, memory_mib=32)
    wait_state(alice, long["id"], "running")
    assert c.jobs.cancel(long["id"])["cancel_requested_at"]
    assert c.jobs.wait(long["id"], timeout=10, interval=0.05)["state"] == "cancelled"
    assert c.jobs.resume(long["id"])["attempt"] == 2
    c.jobs.cancel(long["id"])
    with pytest.raises(APIError) as exc:
        c.jobs.get("0" * 32)
    assert exc.value.status == 404
    with pytest.raises(APIError) as exc:
        c.jobs.finetune("no-such-model", strategy="LoRA")
    assert exc.value.status == 404


def test_cli(alice, monkeypatch, wait_state):
    import modelyard.cli.jobs as cli_jobs
    from modelyard.cli.main import app

    monkeypatch.setattr(cli_jobs, "client", lambda: sdk(alice))
    runner = CliRunner()
    r = runner.invoke(app, ["jobs", "run", "--cpu", "0.1", "--memory", "32MiB", "--name", "cli-job",
                            "--", "echo from-cli; echo '{\"step\": 3, \"loss\": 0.5, \"max_steps\": 10}' >> $MODELYARD_METRICS_FILE"])
    assert r.exit_code == 0, r.output
    job_id = r.output.split("submitted job ")[1].split("(")[1].split(")")[0]
    wait_state(alice, job_id, "succeeded")
    r = runner.invoke(app, ["jobs", "ls"])
    assert r.exit_code == 0 and "cli-job" in r.output and "succeeded" in r.output and "3/10" in r.output
    r = runner.invoke(app, ["jobs", "show", job_id])
    assert r.exit_code == 0 and "step 3/10" in r.output and "master-0" in r.output and "running -> succeeded" in r.output
    r = runner.invoke(app, ["jobs", "logs", job_id])
    assert r.exit_code == 0 and "from-cli" in r.output
    r = runner.invoke(app, ["jobs", "metrics", job_id])
    assert r.exit_code == 0 and "loss" in r.output
    r = runner.invoke(app, ["jobs", "show", job_id, "--json"])
    assert r.exit_code == 0 and job_id in r.output
    r = runner.invoke(app, ["jobs", "cancel", job_id])
    assert r.exit_code == 1 and r.output.startswith("error: ")  # a 409: one line, no traceback
    r = runner.invoke(app, ["finetune", "--model", "nope", "--strategy", "lora"])
    assert r.exit_code == 1 and "error: not_found" in r.output


def test_sparkline():
    from modelyard.cli.jobs import sparkline

    assert sparkline([3, 2, 1]) == "█▄▁"
    assert len(sparkline(list(range(500)), width=40)) == 40
    assert sparkline([]) == ""
