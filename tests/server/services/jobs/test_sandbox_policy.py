"""The sandbox policy where bubblewrap cannot run: other users' jobs are refused (never run
unsandboxed silently), the admin's own jobs still run, and `unsafe` is an explicit admin choice."""

from __future__ import annotations

import pytest

from modelyard.server.services.jobs import sandbox as policy

pytestmark = [pytest.mark.background, pytest.mark.timeout(60)]


@pytest.fixture
def no_bwrap(monkeypatch):
    monkeypatch.setattr(policy, "unavailable_reason", lambda: "bubblewrap (bwrap) is not installed")


def _submit(user):
    return user.post("/api/v1/jobs", json={"kind": "custom", "command": "echo ran-$MODELYARD_JOB_KIND",
                                           "roles": [{"cpu": 0.1, "memory_mib": 64}]})


def test_without_bwrap_other_users_jobs_are_refused(alice, admin, no_bwrap, wait_state):
    r = _submit(alice)
    assert r.status_code == 409 and r.json()["error"]["code"] == "sandbox_unavailable", r.text
    assert "bubblewrap" in r.json()["error"]["message"]
    assert alice.get("/api/v1/jobs").json()["total"] == 0
    # the admin's own job runs (unsandboxed, as the admin chose to run this server)
    r = _submit(admin)
    assert r.status_code == 201, r.text
    assert wait_state(admin, r.json()["id"], "succeeded")["state"] == "succeeded"


def test_mode_bwrap_refuses_even_the_admin_and_unsafe_runs_everyone(alice, admin, no_bwrap, ctx_of, wait_state):
    settings = ctx_of(admin).settings
    settings.sandbox.mode = "bwrap"
    assert _submit(admin).status_code == 409
    settings.sandbox.mode = "unsafe"
    r = _submit(alice)
    assert r.status_code == 201, r.text
    assert wait_state(alice, r.json()["id"], "succeeded")["state"] == "succeeded"


def test_host_network_needs_an_admin_or_the_servers_list(alice, admin, ctx_of, wait_state):
    body = {"kind": "custom", "command": "cat /proc/net/dev", "network": "host",
            "roles": [{"cpu": 0.1, "memory_mib": 64}]}
    r = alice.post("/api/v1/jobs", json=body)
    assert r.status_code == 403 and r.json()["error"]["code"] == "network_not_allowed", r.text
    assert admin.post("/api/v1/jobs", json=body).status_code == 201
    ctx_of(alice).settings.sandbox.network_users = [alice.name]
    r = alice.post("/api/v1/jobs", json=body)
    assert r.status_code == 201, r.text
    done = wait_state(alice, r.json()["id"], "succeeded")
    log = alice.get(f"/api/v1/jobs/{done['id']}/logs").text
    ifaces = {line.split(":")[0].strip() for line in log.splitlines()[3:] if ":" in line}
    assert ifaces - {"lo"}, log  # the host's interfaces, not only loopback
