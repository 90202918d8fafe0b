"""The SDK's resources/quota helpers and `modelyard quota` against an in-process server."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from modelyard.sdk import APIError
from tests.conftest import sdk_for as sdk


def test_sdk_quota_and_resources(admin, alice):
    a, me = sdk(admin), sdk(alice)
    q = a.quota.set("alice", cpu=6, memory_mib=8192, jobs=2, start_at="2023-10-23 00:00:00", storage_bytes=1 << 30)
    assert q["limits"]["cpu"] == 6 and q["is_init_config"] is True
    assert me.quota.me()["limits"]["memory_mib"] == 8192
    assert me.quota.remain()["remainCpu"] == 6 and me.quota.remain()["startTime"] == "2023-10-23 00:00:00"
    assert me.quota.storage_remain()["blockQuota"] == 1 << 20
    q = a.quota.set("alice", start_at=None, storage_bytes=None)
    assert q["start_at"] is None and q["storage"]["enabled"] is False
    with pytest.raises(APIError) as exc:
        me.quota.set("alice", cpu=100)
    assert exc.value.status == 403
    with pytest.raises(APIError):
        me.quota.remain(admin.id)

    g = a.resources.create_group("Train", "train")
    node = me.resources.nodes()[0]["name"]
    assert a.resources.move_node(node, "train")["group_key"] == "train"
    assert a.resources.set_labels(node, {"zone": "z1"}) == {"zone": "z1"}
    assert [n["name"] for n in me.resources.nodes(tags=["zone=z1"])] == [node]
    assert a.resources.cordon(node)["status"] == "cordoned"
    assert a.resources.uncordon(node)["status"] == "ready"
    a.resources.create_flavor("cpu.small", cpu=1, memory_mib=1024, description="small")
    assert [f["name"] for f in me.resources.flavors()] == ["cpu.small"]
    assert a.resources.set_tags("flavors", "cpu.small", {"tier": "free"}) == {"tier": "free"}
    assert me.resources.tagged(["tier=free"])[0]["name"] == "cpu.small"
    st = me.resources.statistics("train")
    assert st["groups"][0]["id"] == g["id"] and st["groups"][0]["nodes_total"] == 1
    kinds = [e["kind"] for e in a.resources.history("node", me.resources.node(node)["id"])]
    assert kinds[:3] == ["node.group_changed", "node.tags_changed", "node.cordoned"]
    assert me.resources.events()["total"] >= 1


def test_cli_quota(admin, alice, monkeypatch):
    from modelyard.cli import quota as cli

    runner = CliRunner()
    monkeypatch.setattr(cli, "_client", lambda: sdk(admin))
    r = runner.invoke(cli.app, ["set", "alice", "--cpu", "3", "--memory", "6GiB", "--jobs", "2",
                                "--end", "2099-01-01 00:00:00", "--storage", "10GiB", "--files", "500"],
                      env={"COLUMNS": "200"})
    assert r.exit_code == 0, r.output
    assert "6.0 GiB" in r.output and "2099-01-01" in r.output and "10.0 GiB" in r.output
    r = runner.invoke(cli.app, ["show", "--user", "alice"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "Quota of alice" in r.output
    for cmd in (["ls"], ["nodes"], ["pools"], ["flavors"]):
        r = runner.invoke(cli.app, cmd, env={"COLUMNS": "200"})
        assert r.exit_code == 0, (cmd, r.output)
    assert "alice" in runner.invoke(cli.app, ["ls"], env={"COLUMNS": "200"}).output
    r = runner.invoke(cli.app, ["set", "alice", "--storage", "off", "--end", "none"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "not enabled" in r.output
    monkeypatch.setattr(cli, "_client", lambda: sdk(alice))
    r = runner.invoke(cli.app, ["show"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "Quota of alice" in r.output and "3" in r.output
