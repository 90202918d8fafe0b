"""The platform's port end to end: a service deployed here, routed by the gateway (server/gateway)
from this service's route snapshot to its ready replica's socket; invocations counted back."""

from __future__ import annotations

import time

import pytest

from tests.server.services.serving.conftest import import_model, wait_service

pytestmark = pytest.mark.background


def test_openai_calls_reach_the_ready_replica_and_are_counted(alice, bob, settings):
    mv = import_model(settings, alice)
    r = alice.post("/api/v1/services", json={"name": "gwsvc", "versions": [{"model": mv["id"], "cpu": 0.5,
                                                                           "memory_mib": 256}]})
    assert r.status_code == 201, r.text
    d = wait_service(alice, "gwsvc", lambda d: d["state"] == "running", what="running")
    body = {"model": "gwsvc", "messages": [{"role": "user", "content": "hi"}]}
    deadline = time.monotonic() + 15
    while True:  # the gateway's table refreshes on the ready replica's wake-up (or within a second)
        r = alice.post("/v1/chat/completions", json=body)
        if r.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "hello" and r.json()["model"] == "gwsvc"
    assert bob.post("/v1/chat/completions", json=body).status_code == 404
    deadline = time.monotonic() + 20
    while alice.get("/api/v1/services/gwsvc").json()["invocations"] < 1:
        assert time.monotonic() < deadline, "the gateway's counts never reached the service"
        time.sleep(0.3)
    assert d["id"]
