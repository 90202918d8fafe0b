"""The serving gateway through the real `openai` client: routing by `model`, streaming chunk by
chunk, access, balancing, failover and what it records — against replica doubles on Unix
sockets (tests/server/gateway/conftest.py)."""

from __future__ import annotations

import concurrent.futures
import time
from collections import Counter

import httpx
import openai
import pytest
from sqlalchemy import event

from modelyard.core.serving import RouteEntry, RouteReplica, RouteVersion
from modelyard.server.gateway import table as gateway_table
from tests.harness import wait_for


@pytest.fixture
def deployed(platform, replicas):
    """alice's `chat` (version 1: a1 + a2 at 80 %, version 2: b at 20 %) and bob's `bobsvc` (b)."""
    alice, bob = platform.user("alice"), platform.user("bob")
    a_id, b_id = platform.user_id(alice), platform.user_id(bob)
    rep = platform.replica
    chat = platform.entry("chat", a_id, [
        RouteVersion("v1", 1, 80, [rep(replicas["a1"], "base-model", "alice-adapter"),
                                   rep(replicas["a2"], "base-model", "alice-adapter")]),
        RouteVersion("v2", 2, 20, [rep(replicas["b"], "base-model-v2")])])
    bobsvc = platform.entry("bobsvc", b_id, [RouteVersion("bv1", 1, 100, [rep(replicas["b"], "bob-base")])])
    platform.set_routes([chat, bobsvc])
    return {"alice": alice, "bob": bob, "alice_id": a_id, "bob_id": b_id, "chat": chat, "bobsvc": bobsvc}


def _all_seen(replicas) -> list:
    return [s for d in replicas.values() for s in d.seen]


def test_models_lists_what_the_caller_can_call(platform, deployed):
    ids = {m.id for m in platform.openai(deployed["alice"]).models.list()}
    assert {"chat", "chat:1", "chat:2", "base-model", "alice-adapter", "base-model-v2"} <= ids
    assert not {"bobsvc", "bob-base"} & ids
    bob_ids = {m.id for m in platform.openai(deployed["bob"]).models.list()}
    assert bob_ids == {"bobsvc", "bobsvc:1", "bob-base"}
    assert platform.openai(deployed["alice"]).models.retrieve("chat:2").id == "chat:2"


def test_chat_not_streamed_rewrites_model_both_ways(platform, deployed, replicas):
    client = platform.openai(deployed["alice"])
    out = client.chat.completions.create(model="chat:1", messages=[{"role": "user", "content": "hi"}])
    assert out.model == "chat:1"
    assert out.choices[0].message.content.startswith("Hello there from a")
    assert out.usage.total_tokens == 6
    seen = _all_seen(replicas)
    assert len(seen) == 1 and seen[0].json["model"] == "base-model"  # the replica's served name
    assert seen[0].json["messages"] == [{"role": "user", "content": "hi"}]
    assert "authorization" not in seen[0].headers  # the platform token stays at the platform


def test_chat_streamed_chunk_by_chunk(platform, deployed, replicas):
    for d in replicas.values():
        d.chunk_delay_s = 0.3
    client = platform.openai(deployed["alice"])
    arrivals, pieces, models = [], [], set()
    stream = client.chat.completions.create(model="chat", stream=True, stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "hi"}])
    for chunk in stream:
        models.add(chunk.model)
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
            pieces.append(chunk.choices[0].delta.content)
        if chunk.usage:
            assert chunk.usage.completion_tokens == 3
    assert "".join(pieces) == "Hello there"
    assert models == {"chat"}
    # relayed as they were produced, not gathered: 0.3 s apart at the replica, so at the client too
    assert arrivals[1] - arrivals[0] > 0.2 and arrivals[2] - arrivals[1] > 0.2


def test_a_client_that_goes_away_closes_the_upstream_stream(platform, deployed, replicas):
    replicas["b"].chunk_delay_s = 0.4
    auth = {"Authorization": f"Bearer {deployed['alice']}"}
    with httpx.stream("POST", platform.url + "/v1/completions", headers=auth,
                      json={"model": "chat:2", "prompt": "x", "stream": True}) as r:
        first = next(r.iter_raw())
        assert b'"model": "chat:2"' in first
    # the proxy closed its upstream request: the replica's stream stopped before its end
    wait_for(lambda: replicas["b"].streams_cut == 1, timeout=5, what="the replica's stream cut")
    assert replicas["b"].streams_finished == 0
    wait_for(lambda: not platform.gateway.balancer.outstanding, timeout=5, what="nothing outstanding")


def test_completions_streamed_and_not(platform, deployed, replicas):
    client = platform.openai(deployed["alice"])
    out = client.completions.create(model="chat:2", prompt="say hi")
    assert out.model == "chat:2" and out.choices[0].text == "Hello there from b"
    assert replicas["b"].seen[-1].json["model"] == "base-model-v2"
    texts = [(c.model, c.choices[0].text) for c in client.completions.create(model="chat:2", prompt="x", stream=True)
             if c.choices]
    assert texts == [("chat:2", "Hel"), ("chat:2", "lo"), ("chat:2", " there")]


def test_adapter_by_name_goes_as_named(platform, deployed, replicas):
    out = platform.openai(deployed["alice"]).chat.completions.create(
        model="alice-adapter", messages=[{"role": "user", "content": "hi"}])
    assert out.model == "alice-adapter"
    seen = _all_seen(replicas)
    assert [s.json["model"] for s in seen] == ["alice-adapter"]
    assert replicas["b"].seen == []  # b does not serve the adapter


def test_another_users_service_is_404_and_never_reaches_a_replica(platform, deployed, replicas):
    bob = platform.openai(deployed["bob"])
    for model in ("chat", "chat:1", "alice-adapter", "base-model"):
        with pytest.raises(openai.NotFoundError) as err:
            bob.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
        assert err.value.status_code == 404
        assert err.value.body["code"] == "model_not_found"
    r = httpx.get(platform.url + "/serving/chat/x", headers={"Authorization": f"Bearer {deployed['bob']}"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "service_not_found"
    assert _all_seen(replicas) == []
    # the admin sees everyone's
    admin = platform.openai("my_test_admin_token")
    assert admin.chat.completions.create(model="chat:2", messages=[{"role": "user", "content": "x"}]).model == "chat:2"


def test_unknown_token_is_401_and_bad_bodies_are_400(platform, deployed, replicas):
    with pytest.raises(openai.AuthenticationError) as err:
        platform.openai("my_not_a_token").chat.completions.create(model="chat", messages=[])
    assert err.value.status_code == 401 and err.value.body["code"] == "invalid_api_key"
    assert httpx.get(platform.url + "/v1/models").status_code == 401
    auth = {"Authorization": f"Bearer {deployed['alice']}"}
    r = httpx.post(platform.url + "/v1/chat/completions", content=b"{not json", headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = httpx.post(platform.url + "/v1/chat/completions", json={"messages": []}, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_model"
    r = httpx.post(platform.url + "/v1/chat/completions", json={"model": "chat:9", "messages": []}, headers=auth)
    assert r.status_code == 404
    assert _all_seen(replicas) == []


def test_revoked_token_stops_working_within_the_cache_ttl(platform, deployed):
    platform.gateway.tokens.ttl_s = 0.5
    auth = {"Authorization": f"Bearer {deployed['alice']}"}
    made = httpx.post(platform.url + "/api/v1/tokens", json={"name": "second"}, headers=auth).json()
    second = platform.openai(made["token"])
    assert second.models.list().data
    assert httpx.delete(platform.url + f"/api/v1/tokens/{made['id']}", headers=auth).status_code == 204
    time.sleep(0.6)
    with pytest.raises(openai.AuthenticationError):
        second.models.list()


def test_weighted_split_between_versions(platform, deployed, replicas):
    client = platform.openai(deployed["alice"])
    for _ in range(200):
        client.completions.create(model="chat", prompt="x")
    v1 = len(replicas["a1"].seen) + len(replicas["a2"].seen)
    v2 = len(replicas["b"].seen)
    assert v1 + v2 == 200
    assert 135 <= v1 <= 185, (v1, v2)  # 80 % of 200 = 160, sd 5.7
    # within version 1, least-outstanding with ties taken in turn spreads sequential calls evenly
    assert abs(len(replicas["a1"].seen) - len(replicas["a2"].seen)) <= 2


def test_least_outstanding_spreads_concurrent_requests(platform, deployed, replicas):
    for d in replicas.values():
        d.answer_delay_s = 0.6
    client = platform.openai(deployed["alice"])
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(lambda _: client.completions.create(model="chat:1", prompt="x"), range(8)))
    assert {o.model for o in outs} == {"chat:1"}
    assert len(replicas["a1"].seen) == len(replicas["a2"].seen) == 4
    assert replicas["a1"].max_inflight == replicas["a2"].max_inflight == 4


def test_a_dead_replica_is_passed_over(platform, deployed, replicas, sockets_dir):
    rep = platform.replica
    dead = rep(replicas["a1"], "base-model")
    dead.replica_id, dead.socket_path = "r-dead", str(sockets_dir / "gone.sock")
    chat = platform.entry("chat", deployed["alice_id"], [
        RouteVersion("v1", 1, 100, [dead, rep(replicas["a2"], "base-model")])])
    platform.set_routes([chat])
    client = platform.openai(deployed["alice"])
    # ties are taken in turn, so one of the first two calls goes to the dead socket first
    outs = [client.completions.create(model="chat", prompt="x") for _ in range(4)]
    assert [o.choices[0].text for o in outs] == ["Hello there from a2"] * 4
    assert replicas["a2"].socket_path in platform.gateway.upstreams._clients  # pooled, kept
    assert len(replicas["a2"].seen) == 4
    assert "r-dead" in platform.gateway.balancer._down_until
    # no live replica at all: 502 after one retry
    dead2 = rep(replicas["b"], "base-model")
    dead2.replica_id, dead2.socket_path = "r-dead2", str(sockets_dir / "gone2.sock")
    platform.set_routes([platform.entry("chat", deployed["alice_id"], [RouteVersion("v1", 1, 100, [dead, dead2])])])
    with pytest.raises(openai.APIStatusError) as err:
        client.completions.create(model="chat", prompt="x")
    assert err.value.status_code == 502 and err.value.body["code"] == "upstream_unreachable"
    # a2 left the table: its pooled client was closed on the next request
    assert replicas["a2"].socket_path not in platform.gateway.upstreams._clients


def test_no_ready_replica_is_503_with_the_reason(platform, deployed):
    platform.set_routes([platform.entry("chat", deployed["alice_id"], [RouteVersion("v1", 1, 100, [])],
                                        state="deploying")])
    with pytest.raises(openai.APIStatusError) as err:
        platform.openai(deployed["alice"]).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 503
    assert err.value.body["code"] == "no_ready_replica" and "deploying" in err.value.body["message"]
    assert err.value.response.headers["retry-after"] == "5"


def test_serving_path_passes_method_body_query_through(platform, deployed, replicas):
    web = platform.entry("web", deployed["alice_id"], [RouteVersion("w1", 1, 100, [platform.replica(replicas["b"])])],
                         kind="http")
    platform.set_routes([deployed["chat"], web])
    auth = {"Authorization": f"Bearer {deployed['alice']}"}
    r = httpx.put(platform.url + "/serving/web/items/7%2F8?q=1&x=a%20b", content=b"raw body",
                  headers={**auth, "x-custom": "yes", "content-type": "text/plain"})
    assert r.status_code == 201 and r.headers["x-replica"] == "b"
    assert r.json() == {"replica": "b", "method": "PUT", "path": "/items/7/8", "query": "q=1&x=a%20b",
                        "body": "raw body"}
    seen = replicas["b"].seen[-1]
    assert seen.raw_path == b"/items/7%2F8"  # passed on as it was sent
    assert seen.headers["x-custom"] == "yes" and "authorization" not in seen.headers
    assert seen.headers["x-forwarded-prefix"] == "/serving/web"
    assert seen.headers["x-forwarded-host"] == platform.url.removeprefix("http://")
    assert httpx.delete(platform.url + "/serving/web", headers=auth).json()["path"] == "/"
    # a template service is not a model
    r = httpx.post(platform.url + "/v1/completions", json={"model": "web", "prompt": "x"}, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "not_an_openai_service"


def test_invocations_are_counted_and_flushed(platform, deployed, monkeypatch):
    monkeypatch.setattr(gateway_table, "FLUSH_S", 0.0)
    client = platform.openai(deployed["alice"])
    for _ in range(5):
        client.completions.create(model="chat", prompt="x")
    platform.set_routes([platform.entry("chat", deployed["alice_id"], [RouteVersion("v1", 1, 100, [])]),
                         deployed["bobsvc"]])
    for _ in range(2):
        with pytest.raises(openai.APIStatusError):
            client.completions.create(model="chat", prompt="x")
    platform.openai(deployed["bob"]).completions.create(model="bobsvc", prompt="x")

    def totals():
        from modelyard.server.services.common.wake import wake_all

        wake_all()
        t = Counter()
        for counts in platform.recorded:
            for sid, (calls, failures) in counts.items():
                t[(sid, "calls")] += calls
                t[(sid, "failures")] += failures
        return t if t[(deployed["chat"].service_id, "calls")] == 7 and t[(deployed["bobsvc"].service_id, "calls")] == 1 else None

    t = wait_for(totals, timeout=10, interval=0.2, what="invocation counts flushed")
    assert t[(deployed["chat"].service_id, "failures")] == 2
    assert t[(deployed["bobsvc"].service_id, "failures")] == 0
    metrics = httpx.get(platform.url + "/metrics/", headers={"Authorization": "Bearer my_test_admin_token"}).text
    assert 'modelyard_gateway_requests_total{service="chat",status="503"} 2.0' in metrics
    assert 'modelyard_gateway_upstream_seconds_count{service="chat"} 5.0' in metrics


def test_no_database_query_per_request(platform, deployed):
    client = platform.openai(deployed["alice"])
    client.completions.create(model="chat", prompt="warm-up")  # fills the token cache
    statements = []

    def count(conn, cursor, statement, *args):
        statements.append(statement)

    event.listen(platform.ctx.engine, "before_cursor_execute", count)
    try:
        for i in range(50):
            if i % 2:
                client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
            else:
                assert "".join(c.choices[0].text for c in client.completions.create(
                    model="chat", prompt="x", stream=True) if c.choices) == "Hello there"
        client.models.list()
    finally:
        event.remove(platform.ctx.engine, "before_cursor_execute", count)
    assert statements == []


def test_in_process_test_client_and_the_body_limit(settings, replicas):
    """The proxy under a plain TestClient (how other tests drive the app) and the platform's body
    limit on proxied requests (413 before anything is forwarded)."""
    from fastapi.testclient import TestClient

    from modelyard.server.app import create_app

    app = create_app(settings.model_copy(update={"request_body_max_bytes": 2000}))
    with TestClient(app) as tc:
        auth = {"Authorization": "Bearer my_test_admin_token"}
        admin_id = tc.get("/api/v1/users/me", headers=auth).json()["id"]
        app.state.gateway.publish([RouteEntry("s1", "svc", admin_id, "openai", "running", [
            RouteVersion("v1", 1, 100, [RouteReplica("r1", replicas["a1"].socket_path, ["base"])])])])
        r = tc.post("/v1/chat/completions", headers=auth, json={"model": "svc", "messages": []})
        assert r.status_code == 200 and r.json()["model"] == "svc"
        with tc.stream("POST", "/v1/completions", headers=auth, json={"model": "svc", "prompt": "x", "stream": True}) as r:
            assert r.status_code == 200
            assert '"model": "svc"' in "".join(r.iter_text())
        r = tc.post("/v1/chat/completions", headers=auth, json={"model": "svc", "messages": [], "pad": "x" * 3000})
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
        assert len(replicas["a1"].seen) == 2
