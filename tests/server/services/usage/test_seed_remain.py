"""Seed 000 §8.1 / §4.5 getRemainResource and §8.2 getQuotaRemainResource: called with the
sections' request examples, checked against their response shapes, with figures from the ledger
and from the bytes really stored."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest

from modelyard.server.db import session_scope
from modelyard.server.orm import NodeModel
from modelyard.server.orm.base import utcnow
from modelyard.server.services.quota import ledger
from modelyard.server.services.quota.ledger import Part, Resources

REMAIN_PATHS = ["/system/config/getRemainResource", "/api/system/config/getRemainResource"]
QUOTA_PATH = "/resource/configRemake/getQuotaRemainResource"
# seed §8.1 response example's result keys (§4.5 shows the first six)
REMAIN_KEYS = {"remainCpu", "remainMemory", "remainVgpu", "remainMig", "remainJobNum", "remainGpu",
               "isInitConfig", "startTime", "endTime"}
STORAGE_KEYS = {"inodeQuota", "inodeUsed", "inodeRemain", "blockQuota", "blockUsed", "blockRemain",
                "startTime", "endTime", "initConfig"}
OFF = "存储配额未开启-无限制"


def sessions_of(client):
    return client.tc.app.state.ctx.sessions


def add_node(client, cpu=64, memory_mib=256 * 1024, gpu=8, vgpu=8, mig=8) -> str:
    with session_scope(sessions_of(client)) as s:
        n = NodeModel(name="big-test-node", cpu=cpu, memory_mib=memory_mib, gpu=gpu, vgpu=vgpu, mig=mig)
        s.add(n)
        s.flush()
        return n.id


def envelope(resp, status=200, success=True):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert {"success", "errorCode", "message", "result"} <= set(body)
    assert body["success"] is success and body["errorCode"] == status
    return body


def remain(client, user_id, path=REMAIN_PATHS[0]):
    body = envelope(client.post(path, json={"userId": user_id}))
    assert body["message"] == "获取剩余资源成功"
    assert set(body["result"]) == REMAIN_KEYS
    return body["result"]


def set_quota(admin, user_id, **fields):
    r = admin.put(f"/api/v1/quotas/{user_id}", json=fields)
    assert r.status_code == 200, r.text
    return r.json()


@pytest.mark.parametrize("path", REMAIN_PATHS)
def test_remain_resource_seed_example_shape(path, alice):
    # the seed's request example is {"userId": "7"}: the caller's own id in its place
    res = remain(alice, alice.id, path)
    assert isinstance(res["remainCpu"], int) and isinstance(res["remainMemory"], float)
    for k in ("remainVgpu", "remainMig", "remainJobNum", "remainGpu"):
        assert isinstance(res[k], int)
    assert res["isInitConfig"] is False and res["startTime"] is None and res["endTime"] is None
    # the defaults (settings.quota): 8 CPU, 16 GiB, 4 jobs
    assert (res["remainCpu"], res["remainMemory"], res["remainJobNum"]) == (8, 16.0, 4)
    # §4.5's example sends an empty userId: the caller
    body = envelope(alice.post(path, json={"userId": ""}))
    assert body["result"] == res


@pytest.mark.parametrize("path", REMAIN_PATHS)
def test_remain_resource_follows_the_ledger(path, any_db_admin, any_db_make_user):
    admin, alice = any_db_admin, any_db_make_user("alice")
    add_node(alice)
    set_quota(admin, alice.id, cpu=10, memory_mib=20 * 1024, gpu=2, vgpu=3, mig=4, jobs=3)
    before = remain(alice, alice.id, path)
    assert before == {"remainCpu": 10, "remainMemory": 20.0, "remainVgpu": 3, "remainMig": 4, "remainJobNum": 3,
                      "remainGpu": 2, "isInitConfig": True, "startTime": None, "endTime": None}
    with session_scope(sessions_of(alice)) as s:
        ledger.allocate(s, user_id=alice.id, consumer_type="job", consumer_id="job-1",
                        parts=[Part("master-0", Resources(cpu=2.5, memory_mib=3 * 1024 + 512, gpu=1, vgpu=1)),
                               Part("worker-0", Resources(cpu=1, memory_mib=1024, mig=2))])
        ledger.allocate(s, user_id=alice.id, consumer_type="service", consumer_id="svc-1",
                        parts=[Part("replica-0", Resources(cpu=1, memory_mib=512))], counts_as_job=False)
    during = remain(alice, alice.id, path)
    assert during["remainCpu"] == 5.5  # fractional CPU stays fractional
    assert during["remainMemory"] == 15.0  # 20 GiB - 3.5 - 1 - 0.5
    assert (during["remainGpu"], during["remainVgpu"], during["remainMig"], during["remainJobNum"]) == (1, 2, 2, 2)
    with session_scope(sessions_of(alice)) as s:
        assert ledger.release(s, consumer_type="job", consumer_id="job-1") == 2
    after = remain(alice, alice.id, path)
    assert after["remainCpu"] == 9 and after["remainMemory"] == 19.5 and after["remainJobNum"] == 3
    with session_scope(sessions_of(alice)) as s:
        ledger.release(s, consumer_type="service", consumer_id="svc-1")
    assert remain(alice, alice.id, path) == before
    # another user's allocations do not touch alice's figures
    assert remain(admin, alice.id, path) == before


@pytest.mark.parametrize("path", REMAIN_PATHS + [QUOTA_PATH])
def test_other_users_id_is_403_unless_admin(path, admin, alice, bob):
    r = bob.post(path, json={"userId": alice.id, "uId": 2004})
    body = envelope(r, status=403, success=False)
    assert body["result"] is None and body["reason"] == "not_caller"
    # the admin may ask about anyone; an unknown user is a 404 envelope
    envelope(admin.post(path, json={"userId": alice.id, "uId": 2004}))
    r = admin.post(path, json={"userId": "7", "uId": 2004})
    assert envelope(r, status=404, success=False)["reason"] == "user_not_found"
    # no token: 401 in the same envelope
    r = alice.tc.post(path, json={"userId": alice.id})
    envelope(r, status=401, success=False)


def test_quota_window(admin, alice):
    add_node(alice)
    start, end = "2023-10-23 00:00:00", "2099-11-30 23:59:59"
    q = set_quota(admin, alice.id, start_at=start, end_at=end)
    assert q["active"] is True and q["is_init_config"] is True
    res = remain(alice, alice.id)
    assert (res["startTime"], res["endTime"], res["isInitConfig"]) == (start, end, True)
    assert res["remainCpu"] == 8
    # the window ended: nothing can be allocated, so nothing remains
    past = (utcnow() - timedelta(days=1)).replace(microsecond=0)
    set_quota(admin, alice.id, end_at=past.isoformat())
    res = remain(alice, alice.id)
    assert res["endTime"] == past.strftime("%Y-%m-%d %H:%M:%S")
    assert all(res[k] == 0 for k in REMAIN_KEYS if k.startswith("remain"))
    with session_scope(sessions_of(alice)) as s:
        assert ledger.try_allocate(s, user_id=alice.id, consumer_type="job", consumer_id="j",
                                   parts=[Part("p", Resources(cpu=1))]) is None
    # not started yet: same
    future = utcnow() + timedelta(days=1)
    set_quota(admin, alice.id, start_at=future.isoformat(), end_at=None)
    res = remain(alice, alice.id)
    assert res["endTime"] is None and res["remainCpu"] == 0
    # a timezone offset is converted to UTC
    set_quota(admin, alice.id, start_at="2024-01-01T08:00:00+08:00", end_at=None)
    assert remain(alice, alice.id)["startTime"] == "2024-01-01 00:00:00"
    # end before start is refused
    r = admin.put(f"/api/v1/quotas/{alice.id}", json={"start_at": "2030-01-02 00:00:00",
                                                       "end_at": "2030-01-01 00:00:00"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_window"


def storage(client, user_id, uid=2004):
    # the seed's request example: {"userId": "7", "uId": 2004} (the seed misspells the second key "uid")
    body = envelope(client.post(QUOTA_PATH, json={"userId": user_id, "uId": uid}))
    assert body["message"] == "查询成功"
    assert set(body["result"]) == STORAGE_KEYS
    return body["result"]


def test_storage_quota_not_enabled_matches_the_seed_example(alice):
    res = storage(alice, alice.id)
    assert res == {"inodeQuota": OFF, "inodeUsed": OFF, "inodeRemain": OFF, "blockQuota": OFF, "blockUsed": OFF,
                   "blockRemain": OFF, "startTime": OFF, "endTime": "无限制", "initConfig": False}
    # the seed's misspelt key is accepted too
    assert envelope(alice.post(QUOTA_PATH, json={"userId": alice.id, "uid": 2004}))["result"] == res


def test_storage_quota_figures(admin, alice, monkeypatch):
    """Arithmetic of the enabled quota, with the stored figures pinned."""
    from modelyard.server.services import files

    monkeypatch.setattr(files, "storage_usage", lambda session, settings, user_id: (10 * 1024 + 1, 7),
                        raising=False)
    set_quota(admin, alice.id, storage_bytes=1024 * 1024, storage_files=100,
              start_at="2023-10-23 00:00:00", end_at="2099-11-30 23:59:59")
    res = storage(alice, alice.id)
    assert res == {"inodeQuota": 100, "inodeUsed": 7, "inodeRemain": 93,
                   "blockQuota": 1024, "blockUsed": 11, "blockRemain": 1013,  # 1 KiB blocks, used rounded up
                   "startTime": "2023-10-23 00:00:00", "endTime": "2099-11-30 23:59:59", "initConfig": True}
    # no file-count limit: the inode limit reads unlimited; no window: the times too
    set_quota(admin, alice.id, storage_files=None, start_at=None, end_at=None)
    res = storage(alice, alice.id)
    assert res["inodeQuota"] == "无限制" and res["inodeRemain"] == "无限制" and res["inodeUsed"] == 7
    assert res["startTime"] == "无限制" and res["endTime"] == "无限制"
    # native view: exact bytes
    q = alice.get("/api/v1/quotas/me").json()["storage"]
    assert q == {"enabled": True, "bytes_quota": 1024 * 1024, "bytes_used": 10 * 1024 + 1,
                 "bytes_remaining": 1024 * 1024 - 10 * 1024 - 1, "files_quota": None, "files_used": 7,
                 "files_remaining": None}
    # turning it off again: the seed's strings
    set_quota(admin, alice.id, storage_bytes=None)
    assert storage(alice, alice.id)["blockQuota"] == OFF


def test_storage_used_grows_with_uploaded_bytes(admin, alice):
    """Upload through the seed's §1.1 route and watch the real figures move (needs the files
    domain's uploadFolder and services/files.storage_usage)."""
    set_quota(admin, alice.id, storage_bytes=1024 ** 3, storage_files=1000)
    before = storage(alice, alice.id)
    bytes_before = alice.get("/api/v1/quotas/me").json()["storage"]["bytes_used"]
    sizes = {"a.bin": 3 * 1024, "b.txt": 4097}
    for name, size in sizes.items():
        r = alice.post("/api/file/file/uploadFolder", data={"currentPath": "/Data/train"},
                       files={"file": (name, b"x" * size, "application/octet-stream")})
        assert r.status_code == 200 and r.json()["success"] is True, r.text
    after = storage(alice, alice.id)
    q = alice.get("/api/v1/quotas/me").json()["storage"]
    added = sum(sizes.values())
    assert q["bytes_used"] == bytes_before + added
    assert after["inodeUsed"] == before["inodeUsed"] + len(sizes)
    assert after["inodeRemain"] == before["inodeRemain"] - len(sizes)
    assert after["blockUsed"] == math.ceil((bytes_before + added) / 1024)
    assert after["blockRemain"] == after["blockQuota"] - after["blockUsed"]


def test_seed_time_format_is_parseable(admin, alice):
    set_quota(admin, alice.id, start_at="2023-10-23 00:00:00", end_at="2023-11-30 23:59:59")
    res = remain(alice, alice.id)
    assert datetime.strptime(res["endTime"], "%Y-%m-%d %H:%M:%S") == datetime(2023, 11, 30, 23, 59, 59)
