"""The route table's name resolution and the balancer's choices, without any server."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from modelyard.core.serving import RouteEntry, RouteReplica, RouteVersion
from modelyard.server.auth import Principal
from modelyard.server.gateway.table import RouteTable
from modelyard.server.gateway.upstreams import Balancer

ALICE, BOB, ADMIN = Principal("u-a", "alice", "user"), Principal("u-b", "bob", "user"), Principal("u-x", "root", "admin")


def _table() -> RouteTable:
    r = lambda i, *served: RouteReplica(f"r{i}", f"/tmp/r{i}.sock", list(served))  # noqa: E731
    return RouteTable.build([
        RouteEntry("s1", "chat", "u-a", "openai", "running", [
            RouteVersion("v1", 1, 100, [r(1, "base", "ad"), r(2, "base")]),
            RouteVersion("v2", 2, 0, [r(3, "base2")])]),
        RouteEntry("s2", "chat", "u-b", "openai", "running", [RouteVersion("v3", 1, 100, [r(4, "bobbase")])]),
        RouteEntry("s3", "web", "u-b", "http", "running", [RouteVersion("v4", 1, 100, [r(5)])]),
    ], generation=1)


def test_resolution_is_per_caller():
    t = _table()
    assert t.resolve("chat", ALICE).entry.service_id == "s1"
    assert t.resolve("chat", BOB).entry.service_id == "s2"  # the same name, each their own
    assert t.resolve("chat", ADMIN).entry.service_id in ("s1", "s2")
    assert [v.number for v, _ in t.resolve("chat:2", ALICE).groups] == [2]
    assert t.resolve("chat:7", ALICE) is None
    ad = t.resolve("ad", ALICE)
    assert ad.served_name == "ad" and [r.replica_id for _, rs in ad.groups for r in rs] == ["r1"]
    assert t.resolve("ad", BOB) is None and t.resolve("web", ALICE) is None
    assert t.resolve("web", ADMIN).entry.kind == "http"
    assert {n for n, _ in t.models_for(BOB)} == {"chat", "chat:1", "bobbase"}  # no template service


def test_balancer_weights_turns_and_down_replicas():
    t, b = _table(), Balancer(random.Random(7))
    cands = t.resolve("chat", ALICE)
    picks = Counter(b.pick(cands)[1].replica_id for _ in range(100))
    assert picks == {"r1": 50, "r2": 50}  # version 2 is at 0 %; version 1's replicas take turns
    r1 = cands.groups[0][1][0]
    b.acquire(r1)
    assert {b.pick(cands)[1].replica_id for _ in range(5)} == {"r2"}  # fewest in flight
    b.release(r1)
    b.mark_down(r1)
    assert {b.pick(cands)[1].replica_id for _ in range(5)} == {"r2"}  # passed over while down
    # a version at 0 % serves only when no weighted version has a replica left
    assert b.pick(cands, exclude={"r1", "r2"})[1].replica_id == "r3"
    assert b.pick(cands, exclude={"r1", "r2", "r3"}) is None


def test_a_failed_flush_keeps_the_counts_of_routed_services_only(app_client, monkeypatch):
    from modelyard.server.gateway import Gateway, RouteRefresher
    from modelyard.server.gateway import table as gateway_table

    ctx = app_client.app.state.ctx
    gw = Gateway(ctx)
    gw.publish([RouteEntry("s1", "chat", "u-a", "openai", "running", [])])
    refresher = RouteRefresher(ctx, gw)
    gw.counts.add("s1", failed=False)
    gw.counts.add("s1", failed=True)
    gw.counts.add("gone", failed=False)  # a service deleted since

    def failing(_session, counts):
        raise RuntimeError("database away")

    monkeypatch.setattr(gateway_table, "record_invocations", failing)
    with pytest.raises(RuntimeError):
        refresher.flush()
    taken: list[dict] = []
    monkeypatch.setattr(gateway_table, "record_invocations", lambda _s, counts: taken.append(counts) or True)
    gw.counts.add("s1", failed=False)
    refresher.flush()
    assert taken == [{"s1": (3, 1)}]
