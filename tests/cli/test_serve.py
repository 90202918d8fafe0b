"""`modelyard serve ...` and client.services against the in-process app, with the stand-in replica
(tests/server/services/serving/conftest.FAKE_REPLICA) as the runtime."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from tests.conftest import sdk_for
from tests.server.services.serving.conftest import fake_argv, import_model

pytestmark = pytest.mark.background


@pytest.fixture
def fake_runtime(settings):
    settings.serving.runtime_argv = fake_argv()
    settings.serving.probe_interval_s = 0.3
    yield settings
    from modelyard.server.services.serving import socket_root

    shutil.rmtree(socket_root(settings), ignore_errors=True)


def test_serve_cli_deploy_to_rm(alice, bob, fake_runtime, monkeypatch):
    import modelyard.cli.serve as cli_serve
    from modelyard.cli.main import app
    from modelyard.sdk import APIError

    mv = import_model(fake_runtime, alice)
    monkeypatch.setattr(cli_serve, "client", lambda: sdk_for(alice))
    run = CliRunner().invoke
    r = run(app, ["serve", "deploy", "tiny:1", "--name", "chatty", "--replicas", "1..2", "--cpu", "0.5",
                  "--memory", "512MiB", "--env", "A=1", "--wait"])
    assert r.exit_code == 0, r.output
    assert "running" in r.output and "/v1" in r.output
    r = run(app, ["serve", "ls", "--json"])
    items = json.loads(r.output)["items"]
    assert [(s["name"], s["state"], s["ready_replicas"]) for s in items] == [("chatty", "running", 1)]
    sid = items[0]["id"]
    r = run(app, ["serve", "show", sid[:10], "--json"])
    d = json.loads(r.output)
    v = d["versions"][0]
    assert v["model_version_id"] == mv["id"] and v["resources"]["memory_mib"] == 512 and v["env"] == {"A": "1"}
    assert (v["scaling"]["min_replicas"], v["scaling"]["max_replicas"]) == (1, 2)
    r = run(app, ["serve", "show", "chatty"])
    assert r.exit_code == 0 and "chatty" in r.output and "running" in r.output
    r = run(app, ["serve", "logs", "chatty"])
    assert r.exit_code == 0 and "fake replica serving on" in r.output
    r = run(app, ["serve", "events", "chatty"])
    assert r.exit_code == 0 and "weights loaded" in r.output
    r = run(app, ["serve", "scale", "chatty", "2"])
    assert r.exit_code == 0 and "v1: 2" in r.output
    s = sdk_for(alice).services
    d = s.wait("chatty")
    import time

    deadline = time.monotonic() + 30
    while s.get("chatty")["ready_replicas"] < 2:
        assert time.monotonic() < deadline, s.get("chatty")
        time.sleep(0.3)
    assert s.monitor("chatty")["service_running_instance_count"] == 2
    # bob: not found, by name or id
    with pytest.raises(APIError) as e:
        sdk_for(bob).services.get(sid)
    assert e.value.status == 404
    r = run(app, ["serve", "rm", "chatty", "-y"])
    assert r.exit_code == 0 and "deleted service chatty" in r.output, r.output
    assert s.list()["total"] == 0
    r = run(app, ["serve", "show", "chatty"])
    assert r.exit_code != 0 and "not found" in r.output, r.output
