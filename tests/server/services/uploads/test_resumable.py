"""Resumable uploads: chunks in any order and retried, state, SHA-256 verification, abort,
quota before and at completion, and an upload cut mid-way by a server crash (SIGKILL of a real
`modelyard server`), resumed after the restart with a matching SHA-256."""

from __future__ import annotations

import hashlib
import os
import socket
import time

import pytest

from tests.conftest import sdk_for

CS = 64 * 1024


def _open(client, data: bytes, path: str = "Model/w.bin", **kw):
    r = client.post("/api/v1/uploads", json={"path": path, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                                             "chunk_size": CS, **kw})
    assert r.status_code == 201, r.text
    return r.json()


def _chunk(data: bytes, i: int) -> bytes:
    return data[i * CS:(i + 1) * CS]


def test_chunks_any_order_retried_state_and_complete(alice, settings, assert_index_consistent, events_of):
    data = os.urandom(5 * CS + 123)
    s = _open(alice, data)
    assert s["chunk_count"] == 6 and s["missing"] == list(range(6)) and s["state"] == "open"
    part = settings.uploads_dir / f"{s['id']}.part"
    assert part.stat().st_size == len(data)  # preallocated
    for i in (5, 2, 2, 0):  # any order; chunk 2 twice (idempotent)
        r = alice.put(f"/api/v1/uploads/{s['id']}/chunks/{i}", content=_chunk(data, i))
        assert r.status_code == 200, r.text
    st = alice.get(f"/api/v1/uploads/{s['id']}").json()
    assert st["received"] == [0, 2, 5] and st["missing"] == [1, 3, 4]
    assert st["received_ranges"] == [[0, CS], [2 * CS, 3 * CS], [5 * CS, len(data)]]
    assert st["received_bytes"] == 2 * CS + 123
    # completing early: 409 with the missing chunks
    r = alice.post(f"/api/v1/uploads/{s['id']}/complete")
    assert r.status_code == 409 and r.json()["error"]["details"]["missing"] == [1, 3, 4]
    for i in (4, 1, 3):
        alice.put(f"/api/v1/uploads/{s['id']}/chunks/{i}", content=_chunk(data, i))
    r = alice.post(f"/api/v1/uploads/{s['id']}/complete")
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["state"] == "completed" and done["file"]["path"] == "Model/w.bin"
    assert done["file"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert (settings.users_root / alice.id / "Model/w.bin").read_bytes() == data
    assert not part.exists()
    assert alice.post(f"/api/v1/uploads/{s['id']}/complete").json()["state"] == "completed"  # idempotent
    assert alice.put(f"/api/v1/uploads/{s['id']}/chunks/0", content=_chunk(data, 0)).status_code == 409
    assert alice.get("/api/v1/files/download", params={"path": "Model/w.bin"}).content == data
    kinds = [e["kind"] for e in events_of(alice.tc)]
    assert "upload.created" in kinds and "upload.completed" in kinds and "file.uploaded" in kinds
    assert_index_consistent(alice.tc, alice.id)


def test_chunk_size_and_checksum_are_checked(alice):
    data = os.urandom(2 * CS)
    s = _open(alice, data)
    url = f"/api/v1/uploads/{s['id']}/chunks"
    assert alice.put(f"{url}/0", content=_chunk(data, 0)[:-1]).json()["error"]["code"] == "chunk_size_mismatch"
    assert alice.put(f"{url}/0", content=_chunk(data, 0) + b"x").json()["error"]["code"] == "chunk_size_mismatch"
    assert alice.put(f"{url}/2", content=b"x").json()["error"]["code"] == "invalid_chunk"
    r = alice.put(f"{url}/1", content=_chunk(data, 1), headers={"X-Chunk-SHA256": "0" * 64})
    assert r.status_code == 400 and r.json()["error"]["code"] == "chunk_checksum_mismatch"
    assert alice.get(f"/api/v1/uploads/{s['id']}").json()["received"] == []
    ok = hashlib.sha256(_chunk(data, 1)).hexdigest()
    assert alice.put(f"{url}/1", content=_chunk(data, 1), headers={"X-Chunk-SHA256": ok}).status_code == 200
    assert alice.get(f"/api/v1/uploads/{s['id']}").json()["received"] == [1]


def test_sha256_mismatch_places_nothing(alice, settings, index_rows):
    data = os.urandom(3 * CS)
    s = _open(alice, data, path="Data/train/x.bin")
    for i in range(3):
        body = _chunk(data, i) if i != 1 else b"\0" * CS  # corrupt chunk 1
        alice.put(f"/api/v1/uploads/{s['id']}/chunks/{i}", content=body)
    r = alice.post(f"/api/v1/uploads/{s['id']}/complete")
    assert r.status_code == 400 and r.json()["error"]["code"] == "sha256_mismatch"
    assert not (settings.users_root / alice.id / "Data/train/x.bin").exists()
    assert not (settings.uploads_dir / f"{s['id']}.part").exists()
    assert "Data/train/x.bin" not in index_rows(alice.tc, alice.id)
    st = alice.get(f"/api/v1/uploads/{s['id']}").json()
    assert st["state"] == "failed" and "SHA-256" in st["error"]


def test_resent_chunk_with_different_bytes_is_caught(alice, settings):
    """A chunk folded into the running hash and then sent again with other bytes: the running hash
    is dropped and completion reads the file back, so the verdict follows what is on disk."""
    data = os.urandom(2 * CS)
    s = _open(alice, data)
    url = f"/api/v1/uploads/{s['id']}/chunks"
    alice.put(f"{url}/0", content=b"\1" * CS)  # wrong bytes first (folded into the running hash)
    alice.put(f"{url}/0", content=_chunk(data, 0))  # corrected
    alice.put(f"{url}/1", content=_chunk(data, 1))
    r = alice.post(f"/api/v1/uploads/{s['id']}/complete")
    assert r.status_code == 200, r.text
    assert (settings.users_root / alice.id / "Model/w.bin").read_bytes() == data


def test_abort_and_conflicts(alice, settings, assert_index_consistent):
    data = b"z" * (CS + 1)
    s = _open(alice, data)
    alice.put(f"/api/v1/uploads/{s['id']}/chunks/0", content=_chunk(data, 0))
    assert alice.delete(f"/api/v1/uploads/{s['id']}").status_code == 204
    assert not (settings.uploads_dir / f"{s['id']}.part").exists()
    assert alice.get(f"/api/v1/uploads/{s['id']}").json()["state"] == "aborted"
    assert alice.put(f"/api/v1/uploads/{s['id']}/chunks/1", content=b"z").status_code == 409
    assert alice.post(f"/api/v1/uploads/{s['id']}/complete").status_code == 409
    # target exists: 409 unless overwrite; a directory: 409
    alice.post("/api/v1/files/upload", params={"path": "Model"}, files={"file": ("w.bin", b"old")})
    r = alice.post("/api/v1/uploads", json={"path": "Model/w.bin", "size": 1, "sha256": hashlib.sha256(b"n").hexdigest()})
    assert r.status_code == 409
    assert alice.post("/api/v1/uploads", json={"path": "Model", "size": 1, "sha256": "0" * 64}).status_code == 409
    assert alice.post("/api/v1/uploads", json={"path": "Model/x", "size": 1, "sha256": "xyz"}).status_code == 400
    assert alice.post("/api/v1/uploads", json={"path": "Model/x", "size": 1, "sha256": "0" * 64,
                                               "chunk_size": 10}).status_code == 400
    s = _open(alice, b"new", overwrite=True)
    alice.put(f"/api/v1/uploads/{s['id']}/chunks/0", content=b"new")
    assert alice.post(f"/api/v1/uploads/{s['id']}/complete").status_code == 200
    assert (settings.users_root / alice.id / "Model/w.bin").read_bytes() == b"new"
    # an empty file
    s = _open(alice, b"", path="Model/empty")
    assert s["chunk_count"] == 0
    assert alice.post(f"/api/v1/uploads/{s['id']}/complete").json()["file"]["size"] == 0
    assert_index_consistent(alice.tc, alice.id)


def test_quota_checked_again_at_completion_nothing_left(alice, settings, index_rows, set_storage_quota, data_snapshot):
    data = os.urandom(2 * CS)
    used = alice.get("/api/v1/files/usage").json()
    set_storage_quota(alice.tc, alice.id, bytes_=used["bytes"] + len(data), files=None)
    s = _open(alice, data)
    # a second session does not fit while the first holds its reservation
    r = alice.post("/api/v1/uploads", json={"path": "Model/b", "size": 10, "sha256": "0" * 64})
    assert r.status_code == 403 and r.json()["error"]["code"] == "quota_exceeded"
    for i in range(2):
        alice.put(f"/api/v1/uploads/{s['id']}/chunks/{i}", content=_chunk(data, i))
    rows = index_rows(alice.tc, alice.id)
    set_storage_quota(alice.tc, alice.id, bytes_=used["bytes"] + 100, files=None)  # lowered meanwhile
    before = data_snapshot(settings)
    r = alice.post(f"/api/v1/uploads/{s['id']}/complete")
    assert r.status_code == 403 and r.json()["error"]["code"] == "quota_exceeded"
    after = data_snapshot(settings)
    assert not (settings.users_root / alice.id / "Model/w.bin").exists()
    assert set(after) == set(before) - {str(settings.uploads_dir / f"{s['id']}.part")}
    assert index_rows(alice.tc, alice.id) == rows
    assert alice.get(f"/api/v1/uploads/{s['id']}").json()["state"] == "failed"


def test_public_upload_session_belongs_to_the_caller(alice, bob, settings):
    data = b"p" * 100
    s = _open(alice, data, path="shared/p.bin", public=True)
    assert s["public"] is True
    alice.put(f"/api/v1/uploads/{s['id']}/chunks/0", content=data)
    assert alice.post(f"/api/v1/uploads/{s['id']}/complete").json()["file"]["owner_id"] == alice.id
    assert (settings.public_root / "shared/p.bin").read_bytes() == data
    r = bob.post("/api/v1/uploads", json={"path": "shared/p.bin", "size": 1, "sha256": "0" * 64, "public": True,
                                          "overwrite": True})
    assert r.status_code == 403


def test_sdk_upload_and_download_in_process(alice, tmp_path, settings):
    """The SDK against the ASGI app (no network): resumable upload with parallel chunks, download."""
    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(3 * CS + 7))
    c = sdk_for(alice)
    seen = []
    e = c.files.upload(src, "/Model/sdk.bin", chunk_size=CS, parallel=3, progress=lambda d, t: seen.append(d))
    assert e["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest() and seen[-1] == src.stat().st_size
    out = c.files.download("Model/sdk.bin", tmp_path / "back.bin")
    assert out.read_bytes() == src.read_bytes()
    # a partial download is continued with a Range request
    part = tmp_path / "again.bin.part"
    part.write_bytes(src.read_bytes()[:1000])
    assert c.files.download("Model/sdk.bin", tmp_path / "again.bin").read_bytes() == src.read_bytes()
    assert [x["name"] for x in c.files.iter("Model")] == ["sdk.bin"]
    c.files.move("Model/sdk.bin", "Model/renamed.bin")
    assert c.files.stat("Model/renamed.bin")["size"] == src.stat().st_size
    c.files.delete("Model/renamed.bin")
    assert not c.files.exists("Model/renamed.bin")


@pytest.mark.slow
def test_upload_cut_by_server_crash_resumes_after_restart(tmp_path, server_process):
    """A real server is SIGKILLed in the middle of a chunk, after some chunks were acknowledged.
    After a restart on the same MODELYARD_HOME the session, its received chunks and the partial
    file are still there; the SDK resumes (sending only what is missing) and the server verifies
    the SHA-256."""
    from modelyard.sdk import Client
    from modelyard.sdk.files import UploadInterrupted

    home = tmp_path / "home"
    srv = server_process(home=home)
    try:
        admin = Client(srv.url, "my_test_admin_token")
        token = admin.users.create("alice")["token"]
        c = Client(srv.url, token)
        cs = 256 * 1024
        src = tmp_path / "big.bin"
        src.write_bytes(os.urandom(24 * cs + 999))  # 25 chunks
        size = src.stat().st_size
        sha = hashlib.sha256(src.read_bytes()).hexdigest()

        acked = []

        def progress(done, total):
            acked.append(done)
            if len(acked) == 9:  # 8 chunks acknowledged: crash now
                srv.kill()

        with pytest.raises(UploadInterrupted) as exc:
            c.files.upload(src, "Model/big.bin", chunk_size=cs, progress=progress, retries=1, backoff=0.05)
        uid = exc.value.upload_id

        # a chunk cut mid-body by a crash: never counted as received
        srv.start()
        st = c.files.upload_state(uid)
        assert st["state"] == "open" and st["received"] == list(range(8)), st["received"]
        with socket.create_connection(("127.0.0.1", srv.port)) as sock:
            head = (f"PUT /api/v1/uploads/{uid}/chunks/8 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                    f"Content-Length: {cs}\r\nContent-Type: application/octet-stream\r\n\r\n").encode()
            sock.sendall(head + src.read_bytes()[8 * cs: 8 * cs + cs // 2])
            time.sleep(0.5)
            srv.kill()

        srv.start()
        st = c.files.upload_state(uid)
        assert st["received"] == list(range(8)) and st["missing"] == list(range(8, 25))
        assert (home / "data/uploads" / f"{uid}.part").exists()

        sent = []
        resumed = []
        entry = c.files.upload(src, "Model/big.bin", chunk_size=cs, progress=lambda d, t: sent.append(d),
                               on_session=lambda s, r: resumed.append((s["id"], r)))
        assert resumed == [(uid, True)]
        assert sent[0] == 8 * cs and sent[-1] == size and len(sent) == 1 + 17  # only the missing chunks
        assert entry["sha256"] == sha and entry["size"] == size
        stored = home / "data/users" / c.users.me()["id"] / "Model/big.bin"
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == sha
        assert not (home / "data/uploads" / f"{uid}.part").exists()
        assert c.files.upload_state(uid)["state"] == "completed"
        # and the index says so after yet another restart
        srv.stop()
        srv.start()
        assert c.files.stat("Model/big.bin")["sha256"] == sha
    finally:
        srv.stop()


def test_completion_interrupted_midway_can_be_completed_again(alice, settings, tmp_path, assert_index_consistent):
    """A server that died while completing leaves the session `completing`: chunk requests are
    refused (the verified bytes must be the placed bytes), and completing again finishes it; the
    SDK's resume finds such a session too."""
    from sqlalchemy import update

    from modelyard.server.db import session_scope
    from modelyard.server.orm.files import UploadModel

    data = os.urandom(2 * CS)
    s = _open(alice, data)
    for i in range(2):
        alice.put(f"/api/v1/uploads/{s['id']}/chunks/{i}", content=_chunk(data, i))
    with session_scope(alice.tc.app.state.ctx.sessions) as db:
        db.execute(update(UploadModel).where(UploadModel.id == s["id"]).values(state="completing"))
    r = alice.put(f"/api/v1/uploads/{s['id']}/chunks/0", content=_chunk(data, 0))
    assert r.status_code == 409 and r.json()["error"]["code"] == "upload_completing"
    assert [u["id"] for u in alice.get("/api/v1/uploads").json()] == [s["id"]]  # still live
    src = tmp_path / "w.bin"
    src.write_bytes(data)
    sessions = []
    entry = sdk_for(alice).files.upload(src, "Model/w.bin", chunk_size=CS, on_session=lambda u, r: sessions.append(r))
    assert sessions == [True] and entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert alice.get(f"/api/v1/uploads/{s['id']}").json()["state"] == "completed"
    assert_index_consistent(alice.tc, alice.id)


def test_conflict_at_completion_reopens_the_session(alice, settings):
    data = b"c" * 1000
    s = _open(alice, data, path="Data/c.bin")
    alice.put(f"/api/v1/uploads/{s['id']}/chunks/0", content=data)
    # something took the name meanwhile
    alice.post("/api/v1/files/upload", params={"path": "Data"}, files={"file": ("c.bin", b"other")})
    r = alice.post(f"/api/v1/uploads/{s['id']}/complete")
    assert r.status_code == 409 and r.json()["error"]["code"] == "exists"
    assert alice.get(f"/api/v1/uploads/{s['id']}").json()["state"] == "open"
    alice.delete("/api/v1/files", params={"path": "Data/c.bin"})
    assert alice.post(f"/api/v1/uploads/{s['id']}/complete").json()["state"] == "completed"
    assert (settings.users_root / alice.id / "Data/c.bin").read_bytes() == data
