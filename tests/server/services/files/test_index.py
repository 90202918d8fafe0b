"""The file index: listing and paging 100k files is an indexed query (p99 well under 50 ms on
SQLite), storage usage is a sum over it, and it catches up with out-of-band changes (first use of
a root, reindex, index_path for other domains)."""

from __future__ import annotations

import os
import random
import statistics
import time

from sqlalchemy import insert

from modelyard.server.db import session_scope
from modelyard.server.orm.base import utcnow
from modelyard.server.orm.files import FileModel
from modelyard.server.services import files as fs

N = 100_000


def _seed(app_client, user_id: str) -> None:
    ctx = app_client.app.state.ctx
    now = utcnow()
    with session_scope(ctx.sessions) as s:
        s.execute(insert(FileModel), [dict(root=user_id, path="big", parent="", name="big", is_dir=True, size=0,
                                           mtime=now, owner_id=user_id)])
        rows = [dict(root=user_id, path=f"big/f{i:06d}.bin", parent="big", name=f"f{i:06d}.bin", is_dir=False,
                     size=1000, mtime=now, owner_id=user_id) for i in range(N)]
        for i in range(0, N, 10_000):
            s.execute(insert(FileModel), rows[i:i + 10_000])
        # written behind the services' back: let the index recompute its aggregates
        fs.recount_entries(s, user_id, "big")
        fs.recount_usage(s, [user_id])
        assert fs.verify_index(s, user_id) == []


def _p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def test_listing_100k_files_is_fast(alice, capsys):
    alice.get("/api/v1/files")  # index the root
    _seed(alice.tc, alice.id)
    rnd = random.Random(1)
    offset_t, keyset_t, usage_t = [], [], []
    for _ in range(150):
        page = rnd.randint(1, N // 100)
        t = time.perf_counter()
        r = alice.get("/api/v1/files", params={"path": "big", "page": page, "page_size": 100})
        offset_t.append(time.perf_counter() - t)
        assert r.status_code == 200
        body = r.json()
        assert body["total"] == N and body["items"][0]["name"] == f"f{(page - 1) * 100:06d}.bin"
    for _ in range(150):
        after = f"f{rnd.randint(0, N - 200):06d}.bin"
        t = time.perf_counter()
        r = alice.get("/api/v1/files", params={"path": "big", "after": after, "page_size": 100})
        keyset_t.append(time.perf_counter() - t)
        assert len(r.json()["items"]) == 100
    base_t = []
    for _ in range(50):
        t = time.perf_counter()
        u = alice.get("/api/v1/files/usage").json()
        usage_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        alice.get("/api/v1/users/me")
        base_t.append(time.perf_counter() - t)
    assert u["files"] == N + 2 and u["bytes"] >= N * 1000
    figures = {name: (statistics.median(ts) * 1000, _p99(ts) * 1000)
               for name, ts in (("offset", offset_t), ("keyset", keyset_t), ("usage", usage_t),
                                ("users/me (baseline)", base_t))}
    base = figures.pop("users/me (baseline)")[0]
    with capsys.disabled():
        print("\n  100k files in one folder, SQLite, through HTTP (TestClient): " + ", ".join(
            f"{k} median {m:.1f} ms p99 {p:.1f} ms" for k, (m, p) in figures.items()) + f"; /users/me {base:.1f} ms")
    # The target (p99 < 50 ms) is measured on a quiet machine (see the closing notes). Here, on a
    # runner that may be busy, the median beyond a trivial request's must meet it and the p99 only
    # has to stay sane, so the test does not flake with the machine's load.
    for name, (median, p99) in figures.items():
        assert median - base < 50 and p99 < 500, (name, median, p99, base)


def test_first_use_and_reindex_catch_up_with_the_disk(alice, admin, settings):
    root = settings.users_root / alice.id
    alice.get("/api/v1/files")
    # written behind the API's back
    (root / "Data/train/side.jsonl").write_text("{}\n")
    os.makedirs(root / "Data/extra/deep")
    (root / "Data/extra/deep/x.txt").write_text("x")
    (root / "Config/LoRA/config.json").unlink()
    names = [e["name"] for e in alice.get("/api/v1/files", params={"path": "Data/train"}).json()["items"]]
    assert names == []  # the index does not walk the disk on every listing
    # a directory that exists on disk but not in the index is picked up when listed
    assert [e["name"] for e in alice.get("/api/v1/files", params={"path": "Data/extra/deep"}).json()["items"]] == ["x.txt"]
    r = alice.post("/api/v1/files/reindex", params={"path": "Data"})
    assert r.status_code == 200 and r.json()["added"] >= 1
    assert [e["name"] for e in alice.get("/api/v1/files", params={"path": "Data/train"}).json()["items"]] == ["side.jsonl"]
    r = alice.post("/api/v1/files/reindex").json()
    assert r["removed"] == 1
    assert alice.get("/api/v1/files/usage").json()["files"] == 3  # FineTune config, side.jsonl, x.txt
    # other domains: index_path
    (root / "Model/ckpt").mkdir()
    (root / "Model/ckpt/adapter.safetensors").write_bytes(b"w" * 10)
    ctx = alice.tc.app.state.ctx
    with session_scope(ctx.sessions) as s:
        fs.index_path(s, settings, alice.id, "Model/ckpt")
    assert alice.get("/api/v1/files/stat", params={"path": "Model/ckpt/adapter.safetensors"}).json()["id"] is not None
    assert alice.get("/api/v1/files/usage").json()["bytes"] >= 10
    # the public root is reindexed by admins only
    (settings.public_root / "dropped.txt").write_text("d")
    assert admin.post("/api/v1/files/reindex", params={"public": True}).json()["added"] == 1
    e = alice.get("/api/v1/files/stat", params={"path": "dropped.txt", "public": True}).json()
    assert e["owner_id"] is None  # found on disk: admin-managed
    assert alice.delete("/api/v1/files", params={"path": "dropped.txt", "public": True}).status_code == 403


def test_storage_usage_contract(alice, settings):
    ctx = alice.tc.app.state.ctx
    with session_scope(ctx.sessions) as s:
        b, n = fs.storage_usage(s, settings, alice.id)
    assert n == 2 and b > 0
    alice.post("/api/v1/files/upload", params={"path": "x", "public": True}, files={"file": ("p.bin", b"12345")})
    with session_scope(ctx.sessions) as s:
        assert fs.storage_usage(s, settings, alice.id) == (b + 5, n + 1)  # public files count for their creator
