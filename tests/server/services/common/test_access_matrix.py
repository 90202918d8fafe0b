"""Cross-user access matrix: user B cannot read, list, change or delete user A's files, images,
datasets or models; the admin can read them. Invisible objects answer 404 (no existence leak)."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def alice_objects(alice):
    rows = "\n".join(json.dumps({"instruction": f"say {i}", "input": "", "output": str(i)}) for i in range(5))
    r = alice.post("/api/v1/files/upload", params={"path": "Data/train"},
                   files={"file": ("train.jsonl", rows.encode(), "application/octet-stream")})
    assert r.status_code == 201, r.text
    ds = alice.post("/api/v1/datasets", json={"name": "alice-ds", "path": "Data"})
    assert ds.status_code in (200, 201), ds.text
    img = alice.post("/api/v1/images", json={"name": "alice/base"})
    assert img.status_code in (200, 201), img.text
    model = alice.post("/api/v1/models", json={"name": "alice-model"})
    assert model.status_code in (200, 201), model.text
    return {"dataset": ds.json()["id"], "image": img.json()["id"], "model": model.json()["id"]}


def test_files_are_private(alice, bob, alice_objects):
    # bob's own listing never shows alice's file; naming alice's root is refused
    assert "train.jsonl" not in json.dumps(bob.get("/api/v1/files", params={"path": "Data/train"}).json())
    for method, path, kw in [
        ("get", "/api/v1/files", {"params": {"path": "Data/train", "user_id": alice.id}}),
        ("get", "/api/v1/files/stat", {"params": {"path": "Data/train/train.jsonl", "user_id": alice.id}}),
        ("get", "/api/v1/files/download", {"params": {"path": "Data/train/train.jsonl", "user_id": alice.id}}),
        ("post", "/api/v1/files/move", {"json": {"src": "Data/train/train.jsonl", "dst": "x.jsonl",
                                                 "user_id": alice.id}}),
        ("delete", "/api/v1/files", {"params": {"path": "Data/train/train.jsonl", "user_id": alice.id}}),
    ]:
        r = getattr(bob, method)(path, **kw)
        assert r.status_code in (403, 404), (method, path, r.status_code, r.text)
        assert r.json()["error"]["code"]
    # still there, unchanged, for alice
    assert alice.get("/api/v1/files/stat", params={"path": "Data/train/train.jsonl"}).status_code == 200


@pytest.mark.parametrize("kind,base", [("dataset", "/api/v1/datasets"), ("image", "/api/v1/images"),
                                       ("model", "/api/v1/models")])
def test_objects_are_private(alice, bob, admin, alice_objects, kind, base):
    oid = alice_objects[kind]
    listed = bob.get(base).json()
    assert oid not in json.dumps(listed)
    assert bob.get(f"{base}/{oid}").status_code == 404
    assert bob.patch(f"{base}/{oid}", json={"description": "mine now"}).status_code == 404
    assert bob.delete(f"{base}/{oid}").status_code == 404
    # nothing changed; the owner and the admin still see it
    assert alice.get(f"{base}/{oid}").status_code == 200
    assert admin.get(f"{base}/{oid}").status_code == 200
    assert oid in json.dumps(admin.get(base).json())


def test_public_objects_are_readable_not_writable(alice, bob, alice_objects):
    oid = alice_objects["dataset"]
    assert alice.patch(f"/api/v1/datasets/{oid}", json={"is_public": True}).status_code == 200
    assert bob.get(f"/api/v1/datasets/{oid}").status_code == 200
    assert bob.delete(f"/api/v1/datasets/{oid}").status_code == 403
    assert alice.get(f"/api/v1/datasets/{oid}").status_code == 200


def test_seed_routes_refuse_acting_as_another_user(alice, bob, alice_objects):
    r = bob.post("/docker/image/upload", json={"imageName": "bob/x", "userId": alice.id})
    assert r.status_code == 403 and r.json()["success"] is False
    r = bob.post("/api/file/file/uploadPublicFolder", data={"publicUserId": alice.id, "currentPath": "/"},
                 files={"file": ("a.txt", b"x")})
    assert r.status_code == 403 and r.json()["success"] is False
    r = bob.get("/model/aiApplication/getAiApplicationDetail", params={"aiApplicationId": alice_objects["model"]})
    assert r.status_code == 404 and r.json()["success"] is False
