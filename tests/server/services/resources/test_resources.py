"""Native resources API: nodes, resource groups, flavors, quotas, pool statistics, tags, events."""

from __future__ import annotations

import pytest

from modelyard.server.db import session_scope
from modelyard.server.orm import NodeModel, ResourceGroupModel
from modelyard.server.services.quota import ledger
from modelyard.server.services.quota.ledger import Part, Resources

DIMS = ("cpu", "memory_mib", "gpu", "vgpu", "mig")


def sessions_of(client):
    return client.tc.app.state.ctx.sessions


def add_node(client, name, *, group_key=None, cpu=16, memory_mib=64 * 1024, gpu=0, vgpu=0, mig=0,
             status="ready") -> str:
    with session_scope(sessions_of(client)) as s:
        gid = None
        if group_key:
            from sqlalchemy import select

            gid = s.scalar(select(ResourceGroupModel.id).where(ResourceGroupModel.key == group_key))
        n = NodeModel(name=name, group_id=gid, cpu=cpu, memory_mib=memory_mib, gpu=gpu, vgpu=vgpu, mig=mig,
                      status=status, gpu_info=[{"name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559}] * gpu)
        s.add(n)
        s.flush()
        return n.id


def allocate(client, user_id, consumer_id, *parts: dict, node_id=None, counts_as_job=True):
    with session_scope(sessions_of(client)) as s:
        rows = ledger.allocate(s, user_id=user_id, consumer_type="job", consumer_id=consumer_id,
                               parts=[Part(f"p{i}", Resources(**p), node_id=node_id) for i, p in enumerate(parts)],
                               counts_as_job=counts_as_job)
        return [r.node_id for r in rows]


def release(client, consumer_id):
    with session_scope(sessions_of(client)) as s:
        ledger.release(s, consumer_type="job", consumer_id=consumer_id)


def set_quota(admin, user, **fields):
    r = admin.put(f"/api/v1/quotas/{user}", json=fields)
    assert r.status_code == 200, r.text
    return r.json()


# --- nodes ------------------------------------------------------------------------------------

def test_local_node_registered_with_real_capacity(alice):
    import psutil

    nodes = alice.get("/api/v1/nodes").json()
    assert len(nodes) == 1
    n = nodes[0]
    assert n["capacity"]["cpu"] == psutil.cpu_count(logical=True)
    assert n["capacity"]["memory_mib"] == psutil.virtual_memory().total // (1024 * 1024)
    assert n["status"] == "ready" and n["group_key"] == "default"
    assert n["free"] == n["capacity"] and n["allocations"] == 0
    assert alice.get(f"/api/v1/nodes/{n['name']}").json()["id"] == n["id"]
    assert alice.get("/api/v1/nodes/nope").status_code == 404


def test_node_detail_capacity_allocated_free(admin, alice, bob):
    node = add_node(admin, "gpu-1", cpu=32, memory_mib=128 * 1024, gpu=4, vgpu=8, mig=7)
    set_quota(admin, alice.id, cpu=32, memory_mib=128 * 1024, gpu=4, vgpu=8, mig=7)
    set_quota(admin, bob.id, cpu=32, memory_mib=128 * 1024, gpu=4, vgpu=8, mig=7)
    allocate(admin, alice.id, "ja", {"cpu": 4, "memory_mib": 8192, "gpu": 2}, {"cpu": 2, "memory_mib": 1024, "mig": 3},
             node_id=node)
    allocate(admin, bob.id, "jb", {"cpu": 1.5, "memory_mib": 2048, "vgpu": 5}, node_id=node)
    d = admin.get(f"/api/v1/nodes/{node}").json()
    assert d["capacity"] == {"cpu": 32, "memory_mib": 131072, "gpu": 4, "vgpu": 8, "mig": 7}
    assert d["allocated"] == {"cpu": 7.5, "memory_mib": 11264, "gpu": 2, "vgpu": 5, "mig": 3}
    assert d["free"] == {"cpu": 24.5, "memory_mib": 131072 - 11264, "gpu": 2, "vgpu": 3, "mig": 4}
    assert d["allocations"] == 3 and d["consumers"] == 2
    assert {a["consumer_id"] for a in d["live_allocations"]} == {"ja", "jb"}
    # a user sees the node's totals but only their own pieces on it
    mine = alice.get(f"/api/v1/nodes/{node}").json()
    assert mine["allocated"] == d["allocated"]
    assert {a["consumer_id"] for a in mine["live_allocations"]} == {"ja"}
    release(admin, "ja")
    d = admin.get(f"/api/v1/nodes/{node}").json()
    assert d["allocated"]["cpu"] == 1.5 and d["allocations"] == 1


def test_cordon_uncordon_admin_only_and_respected_by_the_ledger(admin, alice):
    local = admin.get("/api/v1/nodes").json()[0]
    node = add_node(admin, "n2", cpu=8)
    assert alice.post(f"/api/v1/nodes/{node}/cordon").status_code == 403
    for n in (local["id"], node):
        r = admin.post(f"/api/v1/nodes/{n}/cordon")
        assert r.status_code == 200 and r.json()["status"] == "cordoned"
    with session_scope(sessions_of(admin)) as s:
        assert ledger.try_allocate(s, user_id=alice.id, consumer_type="job", consumer_id="j",
                                   parts=[Part("p", Resources(cpu=1))]) is None
    # a restart re-registers the local node but keeps the admin's cordon
    from modelyard.server.services.resources.nodes import register_local_node

    with session_scope(sessions_of(admin)) as s:
        register_local_node(s)
    assert admin.get(f"/api/v1/nodes/{local['id']}").json()["status"] == "cordoned"
    assert admin.post(f"/api/v1/nodes/{node}/uncordon").json()["status"] == "ready"
    assert allocate(admin, alice.id, "j", {"cpu": 1}) == [node]
    assert [n["name"] for n in admin.get("/api/v1/nodes", params={"status": "cordoned"}).json()] == [local["name"]]
    kinds = [e["kind"] for e in admin.get(f"/api/v1/events/node/{node}").json()["items"]]
    assert kinds == ["node.cordoned", "node.uncordoned"]


def test_node_labels_and_listing_by_label(admin, alice):
    a = add_node(admin, "a", cpu=4)
    b = add_node(admin, "b", cpu=4)
    assert alice.put(f"/api/v1/nodes/{a}/labels", json={"labels": {"zone": "z1"}}).status_code == 403
    assert admin.put(f"/api/v1/nodes/{a}/labels", json={"labels": {"zone": "z1", "gpu": "h100"}}).json() == \
        {"gpu": "h100", "zone": "z1"}
    admin.put(f"/api/v1/nodes/{b}/labels", json={"labels": {"zone": "z2"}})
    assert alice.get(f"/api/v1/nodes/{a}/labels").json() == {"gpu": "h100", "zone": "z1"}
    names = lambda params: [n["name"] for n in alice.get("/api/v1/nodes", params=params).json()]  # noqa: E731
    assert names({"tag": "zone"}) == ["a", "b"]
    assert names({"tag": "zone=z2"}) == ["b"]
    assert names({"tag": ["zone", "gpu=h100"]}) == ["a"]
    assert names({"tag": "zone=z9"}) == []
    assert admin.delete(f"/api/v1/nodes/{a}/labels/gpu").json() == {"zone": "z1"}
    # replace=true: exactly the given labels
    assert admin.put(f"/api/v1/nodes/{a}/labels", params={"replace": "true"},
                     json={"labels": {"rack": "r1"}}).json() == {"rack": "r1"}
    assert alice.get(f"/api/v1/nodes/{a}").json()["labels"] == {"rack": "r1"}


# --- resource groups --------------------------------------------------------------------------

def test_resource_group_crud(admin, alice):
    assert alice.post("/api/v1/resource-groups", json={"name": "X", "key": "x"}).status_code == 403
    r = admin.post("/api/v1/resource-groups", json={"name": "Training", "key": "train", "description": "A100s"})
    assert r.status_code == 201, r.text
    g = r.json()
    assert g["key"] == "train" and g["nodes"] == 0
    assert admin.post("/api/v1/resource-groups", json={"name": "T", "key": "train"}).status_code == 409
    assert admin.post("/api/v1/resource-groups", json={"name": "T", "key": "../x"}).status_code == 422
    assert [x["key"] for x in alice.get("/api/v1/resource-groups").json()] == ["default", "train"]
    assert alice.get("/api/v1/resource-groups/train").json()["id"] == g["id"]
    r = admin.patch(f"/api/v1/resource-groups/{g['id']}", json={"description": "H100s"})
    assert r.json()["description"] == "H100s" and r.json()["name"] == "Training"
    node = add_node(admin, "t1")
    r = admin.put(f"/api/v1/nodes/{node}/group", json={"group_id": "train"})
    assert r.json()["group_id"] == g["id"] and r.json()["group_key"] == "train"
    assert alice.get("/api/v1/nodes", params={"group": "train"}).json()[0]["name"] == "t1"
    r = admin.delete("/api/v1/resource-groups/train")
    assert r.status_code == 409 and r.json()["error"]["code"] == "in_use"
    admin.put(f"/api/v1/nodes/{node}/group", json={"group_id": None})
    assert admin.delete("/api/v1/resource-groups/train").status_code == 204
    assert alice.get("/api/v1/resource-groups/train").status_code == 404
    kinds = [e["kind"] for e in admin.get(f"/api/v1/events/resource_group/{g['id']}").json()["items"]]
    assert kinds == ["resource_group.created", "resource_group.updated", "resource_group.deleted"]


# --- flavors ----------------------------------------------------------------------------------

def test_flavors_crud_and_specification_fields(admin, alice):
    add_node(admin, "gpu-1", cpu=32, memory_mib=128 * 1024, gpu=2)
    set_quota(admin, alice.id, cpu=8, memory_mib=32 * 1024, gpu=1)
    body = {"name": "gpu.1x", "cpu": 8, "memory_mib": 32768, "gpu": 1, "gpu_memory_mib": 81920,
            "description": "one GPU"}
    assert alice.post("/api/v1/flavors", json=body).status_code == 403
    r = admin.post("/api/v1/flavors", json=body)
    assert r.status_code == 201, r.text
    admin.post("/api/v1/flavors", json={"name": "cpu.small", "cpu": 2, "memory_mib": 4096})
    admin.post("/api/v1/flavors", json={"name": "gpu.8x", "cpu": 64, "memory_mib": 512 * 1024, "gpu": 8})
    assert admin.post("/api/v1/flavors", json=body).status_code == 409
    assert admin.post("/api/v1/flavors", json={**body, "name": "bad", "cpu": 0}).status_code == 422
    lst = alice.get("/api/v1/flavors").json()
    assert lst["total_count"] == lst["count"] == 3
    specs = {s["specification"]: s for s in lst["specifications"]}
    g1 = specs["gpu.1x"]
    assert g1["category"] == "GPU" and g1["spec_status"] == "normal" and g1["over_quota"] is False
    assert g1["cpu_info"]["cpu"] == 8 and g1["memory_info"] == {"unit": "MB", "memory": 32768}
    assert g1["gpu_info"] == {"brand": "NVIDIA", "version": "NVIDIA H100 80GB HBM3", "unit": "GB", "memory": 80,
                              "gpu": 1}
    assert specs["cpu.small"]["category"] == "CPU" and specs["cpu.small"]["gpu_info"] is None
    # bigger than any node: sold out; bigger than alice's quota: over_quota (for her, not for admin)
    assert specs["gpu.8x"]["spec_status"] == "sellout" and specs["gpu.8x"]["over_quota"] is True
    assert [s["name"] for s in alice.get("/api/v1/flavors", params={"category": "cpu"}).json()["specifications"]] \
        == ["cpu.small"]
    r = admin.patch("/api/v1/flavors/gpu.1x", json={"cpu": 12})
    assert r.json()["cpu"] == 12 and alice.get("/api/v1/flavors/gpu.1x").json()["over_quota"] is True
    # a flavor that does not fit the free capacity right now is sold out
    allocate(admin, admin.id, "fill", {"cpu": 8, "memory_mib": 1024, "gpu": 0})
    assert alice.get("/api/v1/flavors/cpu.small").json()["spec_status"] == "normal"
    assert admin.delete("/api/v1/flavors/gpu.8x").status_code == 204
    assert alice.get("/api/v1/flavors/gpu.8x").status_code == 404
    assert alice.delete("/api/v1/flavors/gpu.1x").status_code == 403


# --- quotas -----------------------------------------------------------------------------------

def test_quota_read_and_set(admin, alice, bob):
    me = alice.get("/api/v1/quotas/me").json()
    assert me["user_id"] == alice.id and me["is_init_config"] is False
    assert me["limits"] == {"cpu": 8, "memory_mib": 16384, "gpu": 0, "vgpu": 0, "mig": 0}
    assert me["jobs"] == 4 and me["jobs_used"] == 0 and me["active"] is True
    assert me["storage"]["enabled"] is False
    assert alice.get(f"/api/v1/quotas/{bob.id}").status_code == 403
    assert alice.get(f"/api/v1/quotas/{alice.id}").status_code == 200
    assert alice.put(f"/api/v1/quotas/{alice.id}", json={"cpu": 100}).status_code == 403
    assert admin.put(f"/api/v1/quotas/{alice.id}", json={"bogus": 1}).status_code == 422
    assert admin.put(f"/api/v1/quotas/{alice.id}", json={"cpu": -1}).status_code == 422
    assert admin.put("/api/v1/quotas/nobody", json={"cpu": 1}).status_code == 404
    # by name, a subset of fields; the rest unchanged
    q = set_quota(admin, "alice", cpu=16, gpu=2, jobs=2, storage_bytes=10 * 1024 ** 3, storage_files=5000)
    assert q["limits"] == {"cpu": 16, "memory_mib": 16384, "gpu": 2, "vgpu": 0, "mig": 0}
    assert q["is_init_config"] is True and q["storage"]["bytes_quota"] == 10 * 1024 ** 3
    node = add_node(admin, "n", cpu=64, gpu=4)
    allocate(admin, alice.id, "j1", {"cpu": 3, "memory_mib": 4096, "gpu": 1}, node_id=node)
    me = alice.get("/api/v1/quotas/me").json()
    assert me["used"]["cpu"] == 3 and me["remaining"]["cpu"] == 13 and me["remaining"]["gpu"] == 1
    assert me["jobs_used"] == 1 and me["jobs_remaining"] == 1
    # lowering below what is held: remaining never goes negative
    me = set_quota(admin, alice.id, cpu=2)
    assert me["remaining"]["cpu"] == 0 and me["used"]["cpu"] == 3
    listed = {q["user_name"]: q for q in admin.get("/api/v1/quotas").json()}
    assert set(listed) == {"admin", "alice", "bob"} and listed["alice"]["used"]["cpu"] == 3
    assert alice.get("/api/v1/quotas").status_code == 403
    ev = alice.get(f"/api/v1/events/quota/{alice.id}").json()["items"]
    assert [e["kind"] for e in ev] == ["quota.updated", "quota.updated"]
    assert ev[-1]["data"]["before"] == {"cpu": 16} and ev[-1]["data"]["after"] == {"cpu": 2}


# --- statistics -------------------------------------------------------------------------------

def test_pool_statistics_match_allocations(any_db_admin, any_db_make_user):
    admin = any_db_admin
    alice, bob = any_db_make_user("alice"), any_db_make_user("bob")
    for u in (alice, bob):
        set_quota(admin, u.id, cpu=64, memory_mib=512 * 1024, gpu=8, vgpu=8, mig=8, jobs=10)
    admin.post("/api/v1/resource-groups", json={"name": "GPU pool", "key": "gpu"})
    g1 = add_node(admin, "g1", group_key="gpu", cpu=32, memory_mib=256 * 1024, gpu=4, vgpu=4, mig=0)
    g2 = add_node(admin, "g2", group_key="gpu", cpu=32, memory_mib=256 * 1024, gpu=4, vgpu=0, mig=7)
    loose = add_node(admin, "loose", cpu=4, memory_mib=8192)
    # the local node must not take anything: cordon it
    local = [n for n in admin.get("/api/v1/nodes").json() if n["group_key"] == "default"][0]
    admin.post(f"/api/v1/nodes/{local['id']}/cordon")
    allocate(admin, alice.id, "a1", {"cpu": 8, "memory_mib": 65536, "gpu": 2}, node_id=g1)
    allocate(admin, alice.id, "a2", {"cpu": 4, "memory_mib": 1024, "vgpu": 3}, {"cpu": 4, "memory_mib": 1024},
             node_id=g1)
    allocate(admin, bob.id, "b1", {"cpu": 16, "memory_mib": 32768, "gpu": 4, "mig": 5}, node_id=g2)
    allocate(admin, bob.id, "b2", {"cpu": 1, "memory_mib": 512}, node_id=loose)
    allocate(admin, bob.id, "gone", {"cpu": 1, "memory_mib": 512}, node_id=loose)
    release(admin, "gone")

    st = alice.get("/api/v1/resource-groups/statistics").json()
    groups = {g["key"]: g for g in st["groups"]}
    assert set(groups) == {"default", "gpu", None}
    gpu = groups["gpu"]
    assert gpu["nodes_total"] == 2 and gpu["nodes_ready"] == 2
    assert gpu["capacity"] == {"cpu": 64, "memory_mib": 512 * 1024, "gpu": 8, "vgpu": 4, "mig": 7}
    assert gpu["allocated"] == {"cpu": 32, "memory_mib": 65536 + 2048 + 32768, "gpu": 6, "vgpu": 3, "mig": 5}
    assert gpu["free"] == {d: gpu["capacity"][d] - gpu["allocated"][d] for d in DIMS}
    assert gpu["allocations"] == 4 and gpu["consumers"] == 3
    nodes = {n["name"]: n for n in gpu["nodes"]}
    assert nodes["g1"]["allocated"] == {"cpu": 16, "memory_mib": 65536 + 2048, "gpu": 2, "vgpu": 3, "mig": 0}
    assert nodes["g1"]["allocations"] == 3 and nodes["g1"]["consumers"] == 2
    assert nodes["g2"]["free"] == {"cpu": 16, "memory_mib": 256 * 1024 - 32768, "gpu": 0, "vgpu": 0, "mig": 2}
    assert groups[None]["allocated"]["cpu"] == 1 and groups[None]["allocations"] == 1
    assert groups["default"]["allocated"]["cpu"] == 0 and groups["default"]["nodes_ready"] == 0
    tot = st["totals"]
    assert tot["allocated"]["cpu"] == 33 and tot["allocations"] == 5 and tot["consumers"] == 4
    assert tot["capacity"]["cpu"] == 64 + 4 + local["capacity"]["cpu"]
    one = alice.get("/api/v1/resource-groups/gpu/statistics").json()
    assert [g["key"] for g in one["groups"]] == ["gpu"] and one["totals"]["allocated"] == gpu["allocated"]
    # the ModelArts views of the same figures
    metrics = alice.get("/api/v1/pools/metrics").json()
    assert metrics["kind"] == "PoolMetricsList" and metrics["apiVersion"] == "v2"
    item = [i for i in metrics["items"] if i["metadata"]["name"] == "gpu"][0]
    assert item["table"]["allocated"]["value"] == {"cpu": 32, "memory": f"{65536 + 2048 + 32768}Mi", "gpu": 6,
                                                   "vgpu": 3, "mig": 5}
    assert item["table"]["capacity"]["value"]["memory"] == f"{512 * 1024}Mi"
    assert alice.get("/api/v1/pools/statistics").json()["statistics"]["status"] == \
        {"created": 1, "creating": 0, "failed": 0, "pending": 1}
    # releasing brings the numbers back
    for c in ("a1", "a2", "b1", "b2"):
        release(admin, c)
    st = alice.get("/api/v1/resource-groups/statistics").json()
    assert st["totals"]["allocations"] == 0 and st["totals"]["free"] == st["totals"]["capacity"]


# --- tags -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind,rtype", [("nodes", "node"), ("resource-groups", "resource_group"),
                                        ("flavors", "flavor")])
def test_tags_on_each_resource_kind(kind, rtype, admin, alice):
    ref = {"nodes": lambda: add_node(admin, "tagme"),
           "resource-groups": lambda: admin.post("/api/v1/resource-groups", json={"name": "T", "key": "tagme"}).json()["id"],
           "flavors": lambda: admin.post("/api/v1/flavors", json={"name": "tagme", "cpu": 1, "memory_mib": 512}).json()["id"],
           }[kind]()
    url = f"/api/v1/{kind}/{ref}/tags"
    assert alice.put(url, json={"tags": [{"key": "team", "value": "nlp"}]}).status_code == 403
    r = admin.put(url, json={"tags": [{"key": "team", "value": "nlp"}, {"key": "tier", "value": "gold"}]})
    assert r.status_code == 200, r.text
    assert r.json() == {"resource_type": rtype, "resource_id": ref,
                        "tags": [{"key": "team", "value": "nlp"}, {"key": "tier", "value": "gold"}]}
    admin.put(url, json={"tags": [{"key": "team", "value": "cv"}]})  # upsert
    assert alice.get(url).json()["tags"] == [{"key": "team", "value": "cv"}, {"key": "tier", "value": "gold"}]
    agg = alice.get("/api/v1/tags", params={"resource_type": rtype}).json()["tags"]
    assert agg == [{"key": "team", "values": ["cv"]}, {"key": "tier", "values": ["gold"]}]
    found = alice.get("/api/v1/tags/resources", params={"tag": "team=cv"}).json()
    assert found["total"] == 1 and found["resources"][0] == {"resource_type": rtype, "resource_id": ref,
                                                             "name": "tagme", "tags": {"team": "cv", "tier": "gold"}}
    assert alice.get("/api/v1/tags/resources", params={"tag": "team=nlp"}).json()["total"] == 0
    assert alice.get("/api/v1/tags/resources", params={"resource_type": "bogus"}).status_code == 400
    assert admin.delete(url, params={"key": "tier"}).json()["tags"] == [{"key": "team", "value": "cv"}]
    assert admin.delete(url).json()["tags"] == []
    assert alice.get(f"/api/v1/{kind}/nope/tags").status_code == 404


# --- events -----------------------------------------------------------------------------------

def test_events_visibility(any_db_admin, any_db_make_user):
    admin = any_db_admin
    alice, bob = any_db_make_user("alice"), any_db_make_user("bob")
    set_quota(admin, alice.id, cpu=4)
    set_quota(admin, bob.id, cpu=4)
    admin.post("/api/v1/resource-groups", json={"name": "X", "key": "x"})
    mine = alice.get("/api/v1/events").json()
    # alice: her user.created and her quota change; not bob's, not the admin's group
    assert {(e["kind"], e["object_id"]) for e in mine["items"]} == {("user.created", alice.id),
                                                                   ("quota.updated", alice.id)}
    assert mine["total"] == 2
    every = admin.get("/api/v1/events", params={"page_size": 1000}).json()
    kinds = [e["kind"] for e in every["items"]]
    assert kinds.count("user.created") == 3 and "resource_group.created" in kinds
    assert every["items"][0]["id"] > every["items"][-1]["id"]  # newest first
    # per object: bob's history is not alice's business
    assert alice.get(f"/api/v1/events/user/{bob.id}").json()["total"] == 0
    assert bob.get(f"/api/v1/events/quota/{bob.id}").json()["total"] == 1
    # filters
    q = admin.get("/api/v1/events", params={"kind": "quota.", "order": "asc"}).json()
    assert [e["object_id"] for e in q["items"]] == [alice.id, bob.id]
    assert admin.get("/api/v1/events", params={"kind": "quota.updated", "object_id": bob.id}).json()["total"] == 1
    assert admin.get("/api/v1/events", params={"actor_id": admin.id, "kind": "user*"}).json()["total"] == 2
    p = admin.get("/api/v1/events", params={"page": 2, "page_size": 2}).json()
    assert p["page"] == 2 and len(p["items"]) == 2 and p["total"] == every["total"]
    # what a user caused is theirs to see even on objects they do not own
    node = add_node(admin, "n")
    with session_scope(sessions_of(admin)) as s:
        from modelyard.server.services import events

        events.record(s, actor_id=bob.id, kind="node.poked", object_type="node", object_id=node)
    assert bob.get(f"/api/v1/events/node/{node}").json()["total"] == 1
    assert alice.get(f"/api/v1/events/node/{node}").json()["total"] == 0


def test_large_storage_quota_round_trips(any_db_admin, any_db_make_user):
    """Storage quotas of many GiB (PostgreSQL: needs a BIGINT column)."""
    alice = any_db_make_user("alice")
    big = 100 * 1024 ** 3
    q = set_quota(any_db_admin, alice.id, storage_bytes=big, storage_files=10 ** 7)
    assert q["storage"]["bytes_quota"] == big
    assert alice.get("/api/v1/quotas/me").json()["storage"]["bytes_quota"] == big
    res = alice.post("/resource/configRemake/getQuotaRemainResource", json={"userId": alice.id, "uId": 2004})
    assert res.json()["result"]["blockQuota"] == big // 1024
