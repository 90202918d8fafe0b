"""The probes' answers for each phase of a replica's life (the app alone, no model loaded)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from modelyard.runtime.serve.api import ReplicaState, build_app


class FakeEngine:
    def __init__(self, healthy: bool):
        self._healthy = healthy

    def healthy(self) -> bool:
        return self._healthy


def probes(state: ReplicaState) -> tuple[int, int]:
    with TestClient(build_app(state)) as c:
        return c.get("/livez").status_code, c.get("/readyz").status_code


def test_loading_failed_ready_and_dead():
    assert probes(ReplicaState()) == (200, 503)  # loading
    assert probes(ReplicaState(load_error="OSError: no weights")) == (200, 503)
    assert probes(ReplicaState(engine=FakeEngine(True))) == (200, 200)
    assert probes(ReplicaState(engine=FakeEngine(False))) == (503, 503)  # its generation loop died


def test_loading_answers_in_openai_shape():
    with TestClient(build_app(ReplicaState())) as c:
        body = c.get("/v1/models").json()
        assert c.post("/v1/completions", json={"model": "m", "prompt": "x"}).status_code == 503
    assert body["error"]["code"] == "loading" and body["error"]["type"] == "service_unavailable"
