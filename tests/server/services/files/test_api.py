"""Files: the seed's §1.1/§1.2 uploads, the native API (list, stat, mkdir, move, delete, download
with Range, small uploads), the public root's rules, cross-user isolation, events, and the
index in step with the disk (SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import json

import pytest

from modelyard.server.services.files import SAMPLE_CONFIGS
from tests.harness import ADMIN_TOKEN

SEED_OK = {"success": True, "errorCode": 200, "message": "文件上传成功", "result": None}


def root_of(client, settings):
    return settings.users_root / client.id


# --- layout -----------------------------------------------------------------------------------

def test_new_user_gets_the_seed_layout_and_sample_configs(alice, settings):
    names = {e["name"] for e in alice.get("/api/v1/files").json()["items"]}
    assert {"Image", "Model", "Data", "Code", "Config"} <= names
    data = {e["name"] for e in alice.get("/api/v1/files", params={"path": "Data"}).json()["items"]}
    assert data == {"train", "validate", "test"}
    lora = json.loads((root_of(alice, settings) / "Config/LoRA/config.json").read_text(encoding="utf-8"))
    assert lora == SAMPLE_CONFIGS["LoRA"]
    assert lora["fineTuneStrategy"] == "LoRA"
    assert [p["name"] for p in lora["fineTuneHyperParameters"]] == ["lora_alpha", "lora_r", "lora_dropout"]
    assert lora["commonHyperParameters"][0] == {"description": "学习率 / learning rate: the peak step size of the optimizer", "name": "learning_rate", "value": "1e-4"}
    ft = alice.get("/api/v1/files/stat", params={"path": "Config/FineTune/config.json"}).json()
    assert not ft["is_dir"] and ft["size"] > 0
    usage = alice.get("/api/v1/files/usage").json()
    assert usage["files"] == 2 and usage["bytes"] == sum(
        (root_of(alice, settings) / f"Config/{s}/config.json").stat().st_size for s in ("LoRA", "FineTune"))


# --- seed §1.1 / §1.2 -----------------------------------------------------------------------

def test_seed_1_1_upload_folder_example(alice, settings, events_of):
    r = alice.post("/api/file/file/uploadFolder", data={"currentPath": "/upload/folder"},
                   files={"file": ("model.bin", b"<file content>", "application/octet-stream")})
    assert r.status_code == 200, r.text
    assert r.json() == SEED_OK
    p = root_of(alice, settings) / "upload/folder/model.bin"
    assert p.read_bytes() == b"<file content>"
    listing = alice.get("/api/v1/files", params={"path": "upload/folder"}).json()
    [e] = listing["items"]
    assert e["name"] == "model.bin" and e["size"] == 14
    assert e["sha256"] == hashlib.sha256(b"<file content>").hexdigest()
    assert any(ev["kind"] == "file.uploaded" and ev["data"]["path"] == "upload/folder/model.bin"
               for ev in events_of(alice.tc, "file."))


def test_seed_1_1_without_current_path_field_order_and_folder_names(alice, settings):
    # no currentPath: the root; several files, a folder-upload name with sub-folders
    r = alice.post("/api/file/file/uploadFolder",
                   files=[("file", ("a.txt", b"A")), ("file", ("docs/sub/b.txt", b"BB"))])
    assert r.json() == SEED_OK
    root = root_of(alice, settings)
    assert (root / "a.txt").read_bytes() == b"A" and (root / "docs/sub/b.txt").read_bytes() == b"BB"
    # currentPath sent after the file part
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"late.txt\"\r\n\r\nlate\r\n"
            b"--XyZ\r\nContent-Disposition: form-data; name=\"currentPath\"\r\n\r\n/Data/train\r\n--XyZ--\r\n")
    r = alice.post("/api/file/file/uploadFolder", content=body,
                   headers={"Content-Type": "multipart/form-data; boundary=XyZ"})
    assert r.json() == SEED_OK, r.text
    assert (root / "Data/train/late.txt").read_bytes() == b"late"
    # the same name again replaces it (the seed has no overwrite flag)
    alice.post("/api/file/file/uploadFolder", data={"currentPath": "/Data/train"}, files={"file": ("late.txt", b"v2")})
    assert (root / "Data/train/late.txt").read_bytes() == b"v2"


def test_seed_1_1_errors_use_the_envelope(alice, app_client):
    r = alice.post("/api/file/file/uploadFolder", data={"currentPath": "/x"})
    assert r.status_code == 400
    body = r.json()
    assert body["success"] is False and body["errorCode"] == 400 and body["result"] is None
    r = app_client.post("/api/file/file/uploadFolder", files={"file": ("a", b"a")})
    assert r.status_code == 401 and r.json()["success"] is False


def test_seed_1_2_upload_public_folder(alice, bob, admin, settings, assert_index_consistent):
    r = alice.post("/api/file/file/uploadPublicFolder",
                   data={"publicUserId": alice.id, "currentPath": "/upload/folder"},
                   files={"file": ("shared.txt", b"for everyone")})
    assert r.status_code == 200 and r.json() == SEED_OK
    assert (settings.public_root / "upload/folder/shared.txt").read_bytes() == b"for everyone"
    e = bob.get("/api/v1/files/stat", params={"path": "upload/folder/shared.txt", "public": True}).json()
    assert e["owner_id"] == alice.id and e["public"] is True
    assert bob.get("/api/v1/files/download", params={"path": "upload/folder/shared.txt", "public": True}
                   ).content == b"for everyone"
    # the seed's example id is not the caller: 403, nothing written
    before = sorted(p.name for p in settings.public_root.rglob("*"))
    r = bob.post("/api/file/file/uploadPublicFolder", data={"publicUserId": "12345", "currentPath": "/upload/folder"},
                 files={"file": ("x.txt", b"x")})
    assert r.status_code == 403 and r.json()["success"] is False and r.json()["errorCode"] == 403
    r = bob.post("/api/file/file/uploadPublicFolder", data={"publicUserId": alice.id}, files={"file": ("y.txt", b"y")})
    assert r.status_code == 403
    assert sorted(p.name for p in settings.public_root.rglob("*")) == before
    # publicUserId is required
    r = alice.post("/api/file/file/uploadPublicFolder", files={"file": ("z.txt", b"z")})
    assert r.status_code == 400 and r.json()["success"] is False
    # an admin may upload for a user: the file is theirs (and counts against their quota)
    r = admin.post("/api/file/file/uploadPublicFolder", data={"publicUserId": bob.id, "currentPath": "/team"},
                   files={"file": ("by-admin.txt", b"12345")})
    assert r.json() == SEED_OK
    assert bob.get("/api/v1/files/stat", params={"path": "team/by-admin.txt", "public": True}).json()["owner_id"] == bob.id
    assert bob.get("/api/v1/files/usage").json()["bytes"] >= 5
    assert_index_consistent(alice.tc, "public", alice.id, bob.id)


# --- native operations ---------------------------------------------------------------------------

def test_mkdir_move_delete_keep_index_and_disk_in_step(alice, settings, assert_index_consistent, events_of, index_rows):
    root = root_of(alice, settings)
    r = alice.post("/api/v1/files/mkdir", json={"path": "proj/a/b"})
    assert r.status_code == 201 and r.json()["is_dir"]
    for name, data in [("proj/a/one.txt", b"1"), ("proj/a/b/two.txt", b"22")]:
        d, n = name.rsplit("/", 1)
        assert alice.post("/api/v1/files/upload", params={"path": d}, files={"file": (n, data)}).status_code == 201
    assert index_rows(alice.tc, alice.id, "proj") == ["proj", "proj/a", "proj/a/b", "proj/a/b/two.txt",
                                                       "proj/a/one.txt"]
    # rename a directory: the whole subtree moves in the index
    r = alice.post("/api/v1/files/move", json={"src": "proj/a", "dst": "renamed/x"})
    assert r.status_code == 200, r.text
    assert r.json()["path"] == "renamed/x" and r.json()["is_dir"]
    assert (root / "renamed/x/b/two.txt").read_bytes() == b"22" and not (root / "proj/a").exists()
    assert index_rows(alice.tc, alice.id, "proj") == ["proj"]
    assert index_rows(alice.tc, alice.id, "renamed") == ["renamed", "renamed/x", "renamed/x/b", "renamed/x/b/two.txt",
                                                          "renamed/x/one.txt"]
    listing = alice.get("/api/v1/files", params={"path": "renamed/x/b"}).json()
    assert [(e["path"], e["size"]) for e in listing["items"]] == [("renamed/x/b/two.txt", 2)]
    # a file rename; overwrite refused unless asked
    assert alice.post("/api/v1/files/move", json={"src": "renamed/x/one.txt", "dst": "renamed/x/b/two.txt"}
                      ).status_code == 409
    r = alice.post("/api/v1/files/move", json={"src": "renamed/x/one.txt", "dst": "renamed/x/b/two.txt",
                                               "overwrite": True})
    assert r.status_code == 200 and (root / "renamed/x/b/two.txt").read_bytes() == b"1"
    assert_index_consistent(alice.tc, alice.id)
    assert alice.post("/api/v1/files/move", json={"src": "renamed", "dst": "renamed/x/inside"}).status_code == 400
    assert alice.post("/api/v1/files/move", json={"src": "nope", "dst": "x"}).status_code == 404
    usage = alice.get("/api/v1/files/usage").json()
    # delete the tree
    r = alice.delete("/api/v1/files", params={"path": "renamed"})
    assert r.status_code == 200 and r.json()["files"] == 1 and r.json()["bytes"] == 1
    assert not (root / "renamed").exists()
    assert index_rows(alice.tc, alice.id, "renamed") == []
    assert alice.get("/api/v1/files/usage").json()["bytes"] == usage["bytes"] - 1
    assert alice.delete("/api/v1/files", params={"path": "renamed"}).status_code == 404
    assert alice.delete("/api/v1/files", params={"path": ""}).status_code == 400
    # nothing of ours left in the uploads dir (trash removed after commit)
    assert [p.name for p in settings.uploads_dir.iterdir() if p.name != "tmp"] == []
    kinds = [e["kind"] for e in events_of(alice.tc, "file.")]
    for k in ("file.mkdir", "file.uploaded", "file.moved", "file.deleted"):
        assert k in kinds
    # not-empty guard when recursive=false
    alice.post("/api/v1/files/mkdir", json={"path": "keep/inner"})
    r = alice.delete("/api/v1/files", params={"path": "keep", "recursive": False})
    assert r.status_code == 409 and r.json()["error"]["code"] == "not_empty"
    assert_index_consistent(alice.tc, alice.id)


def test_mkdir_conflicts_and_stat(alice):
    alice.post("/api/v1/files/upload", params={"path": "d"}, files={"file": ("f.txt", b"x")})
    assert alice.post("/api/v1/files/mkdir", json={"path": "d/f.txt"}).status_code == 409
    assert alice.post("/api/v1/files/mkdir", json={"path": "d/f.txt/sub"}).status_code == 409
    assert alice.post("/api/v1/files/mkdir", json={"path": "d", "exist_ok": False}).status_code == 409
    assert alice.post("/api/v1/files/mkdir", json={"path": "d"}).status_code == 201
    assert alice.post("/api/v1/files/mkdir", json={"path": "q/r", "parents": False}).status_code == 404
    assert alice.get("/api/v1/files/stat", params={"path": "d/none"}).status_code == 404
    assert alice.get("/api/v1/files", params={"path": "d/f.txt"}).status_code == 400
    assert alice.get("/api/v1/files", params={"path": "nope"}).status_code == 404
    root = alice.get("/api/v1/files/stat").json()
    assert root["is_dir"] and root["path"] == ""


def test_small_upload_overwrite_rules(alice, settings):
    r = alice.post("/api/v1/files/upload", params={"path": "Code"}, files={"file": ("train.py", b"print(1)")})
    assert r.status_code == 201 and r.json()[0]["path"] == "Code/train.py"
    r = alice.post("/api/v1/files/upload", params={"path": "Code"}, files={"file": ("train.py", b"print(2)")})
    assert r.status_code == 409 and r.json()["error"]["code"] == "exists"
    r = alice.post("/api/v1/files/upload", params={"path": "Code", "overwrite": True},
                   files={"file": ("train.py", b"print(2)")})
    assert r.status_code == 201
    assert (root_of(alice, settings) / "Code/train.py").read_bytes() == b"print(2)"
    r = alice.post("/api/v1/files/upload", params={"path": ""}, files={"file": ("Code", b"x")})
    assert r.status_code == 409  # a directory is never replaced by a file
    r = alice.post("/api/v1/files/upload", params={"path": "Code"})
    assert r.status_code == 400
    assert list((settings.uploads_dir / "tmp").iterdir()) == []


def test_download_with_ranges(alice):
    data = bytes(range(256)) * 40  # 10240 bytes
    alice.post("/api/v1/files/upload", params={"path": "Data"}, files={"file": ("blob.bin", data)})
    p = {"path": "Data/blob.bin"}
    r = alice.get("/api/v1/files/download", params=p)
    assert r.status_code == 200 and r.content == data
    assert r.headers["accept-ranges"] == "bytes" and r.headers["content-length"] == str(len(data))
    assert r.headers["x-content-sha256"] == hashlib.sha256(data).hexdigest()
    for header, (a, b) in {"bytes=0-0": (0, 0), "bytes=100-199": (100, 199), "bytes=10000-": (10000, 10239),
                           "bytes=-240": (10000, 10239), "bytes=10200-99999": (10200, 10239)}.items():
        r = alice.get("/api/v1/files/download", params=p, headers={"Range": header})
        assert r.status_code == 206, (header, r.text)
        assert r.content == data[a:b + 1]
        assert r.headers["content-range"] == f"bytes {a}-{b}/{len(data)}"
    for bad in ["bytes=10240-", "bytes=500-100", "bytes=abc", "items=0-1", "bytes=-0", "bytes=-"]:
        r = alice.get("/api/v1/files/download", params=p, headers={"Range": bad})
        assert r.status_code == 416, bad
        assert r.headers["content-range"] == f"bytes */{len(data)}"
        assert r.json()["error"]["code"] == "range_not_satisfiable"
    # several ranges: the whole file (allowed by RFC 9110)
    r = alice.get("/api/v1/files/download", params=p, headers={"Range": "bytes=0-1,5-6"})
    assert r.status_code == 200 and r.content == data
    r = alice.head("/api/v1/files/download", params=p)
    assert r.status_code == 200 and r.headers["content-length"] == str(len(data)) and r.content == b""
    assert alice.get("/api/v1/files/download", params={"path": "Data"}).status_code == 400
    assert alice.get("/api/v1/files/download", params={"path": "Data/none"}).status_code == 404


def test_list_paging_offset_and_keyset(alice):
    files = [("file", (f"f{i:03d}.txt", b"x")) for i in range(250)]
    assert alice.post("/api/v1/files/upload", params={"path": "many"}, files=files).status_code == 201
    r = alice.get("/api/v1/files", params={"path": "many", "page": 3, "page_size": 100}).json()
    assert r["total"] == 250 and [e["name"] for e in r["items"]][:2] == ["f200.txt", "f201.txt"]
    assert len(r["items"]) == 50 and r["next_after"] is None
    seen, after = [], None
    while True:
        params = {"path": "many", "page_size": 64, **({"after": after} if after else {})}
        page = alice.get("/api/v1/files", params=params).json()
        seen += [e["name"] for e in page["items"]]
        after = page["next_after"]
        if not after:
            break
    assert seen == [f"f{i:03d}.txt" for i in range(250)]


# --- public root rules ------------------------------------------------------------------------

def test_public_root_anyone_reads_creator_or_admin_changes(alice, bob, admin, settings, assert_index_consistent):
    assert alice.post("/api/v1/files/mkdir", json={"path": "team-a", "public": True}).status_code == 201
    r = alice.post("/api/v1/files/upload", params={"path": "team-a", "public": True}, files={"file": ("w.txt", b"w")})
    assert r.status_code == 201
    # bob reads
    assert [e["name"] for e in bob.get("/api/v1/files", params={"path": "team-a", "public": True}).json()["items"]] \
        == ["w.txt"]
    assert bob.get("/api/v1/files/download", params={"path": "team-a/w.txt", "public": True}).content == b"w"
    # bob cannot change alice's entries nor create inside her folder
    assert bob.delete("/api/v1/files", params={"path": "team-a/w.txt", "public": True}).status_code == 403
    assert bob.delete("/api/v1/files", params={"path": "team-a", "public": True}).status_code == 403
    assert bob.post("/api/v1/files/move", json={"src": "team-a", "dst": "mine", "public": True}).status_code == 403
    assert bob.post("/api/v1/files/mkdir", json={"path": "team-a/bobs", "public": True}).status_code == 403
    r = bob.post("/api/v1/files/upload", params={"path": "team-a", "public": True, "overwrite": True},
                 files={"file": ("w.txt", b"bob was here")})
    assert r.status_code == 403
    assert (settings.public_root / "team-a/w.txt").read_bytes() == b"w"
    # bob creates his own at the top; alice's folder is not his to delete even if he owns a file inside
    assert bob.post("/api/v1/files/mkdir", json={"path": "team-b", "public": True}).status_code == 201
    # alice cannot delete a tree holding someone else's entry
    admin.post("/api/v1/files/upload", params={"path": "team-a", "public": True}, files={"file": ("adm.txt", b"a")})
    assert alice.delete("/api/v1/files", params={"path": "team-a", "public": True}).status_code == 403
    # an admin can
    assert admin.delete("/api/v1/files", params={"path": "team-a", "public": True}).status_code == 200
    assert not (settings.public_root / "team-a").exists()
    assert bob.post("/api/v1/files/reindex", params={"public": True}).status_code == 403
    assert_index_consistent(alice.tc, "public", alice.id, bob.id)


# --- cross-user -------------------------------------------------------------------------------

def test_bob_cannot_reach_alices_files(alice, bob, settings):
    alice.post("/api/v1/files/upload", params={"path": "Model"}, files={"file": ("secret.bin", b"alice only")})
    up = alice.post("/api/v1/uploads", json={"path": "Model/big.bin", "size": 3,
                                             "sha256": hashlib.sha256(b"abc").hexdigest()}).json()
    other = {"user_id": alice.id}
    # naming alice's root: 403
    assert bob.get("/api/v1/files", params=other).status_code == 403
    assert bob.get("/api/v1/files/stat", params={"path": "Model/secret.bin", **other}).status_code == 403
    assert bob.get("/api/v1/files/download", params={"path": "Model/secret.bin", **other}).status_code == 403
    assert bob.post("/api/v1/files/move", json={"src": "Model/secret.bin", "dst": "x", **other}).status_code == 403
    assert bob.delete("/api/v1/files", params={"path": "Model/secret.bin", **other}).status_code == 403
    assert bob.post("/api/v1/files/mkdir", json={"path": "x", **other}).status_code == 403
    assert bob.post("/api/v1/files/upload", params={"path": "Model", **other},
                    files={"file": ("evil.bin", b"x")}).status_code == 403
    assert bob.post("/api/v1/files/extract", json={"path": "Model/secret.bin", **other}).status_code == 403
    assert bob.get("/api/v1/files/usage", params=other).status_code == 403
    assert bob.post("/api/v1/uploads", json={"path": "a", "size": 1, "sha256": "0" * 64, **other}).status_code == 403
    # the same paths in his own root: not there
    assert bob.get("/api/v1/files/stat", params={"path": "Model/secret.bin"}).status_code == 404
    assert bob.get("/api/v1/files/download", params={"path": "Model/secret.bin"}).status_code == 404
    assert bob.delete("/api/v1/files", params={"path": "Model/secret.bin"}).status_code == 404
    assert bob.post("/api/v1/files/move", json={"src": "Model/secret.bin", "dst": "x"}).status_code == 404
    # climbing out of his root: 400
    assert bob.get("/api/v1/files/download", params={"path": f"../{alice.id}/Model/secret.bin"}).status_code == 400
    # alice's upload session does not exist for bob
    uid = up["id"]
    assert bob.get(f"/api/v1/uploads/{uid}").status_code == 404
    assert bob.put(f"/api/v1/uploads/{uid}/chunks/0", content=b"abc").status_code == 404
    assert bob.post(f"/api/v1/uploads/{uid}/complete").status_code == 404
    assert bob.delete(f"/api/v1/uploads/{uid}").status_code == 404
    assert bob.get("/api/v1/uploads").json() == []
    assert (settings.users_root / alice.id / "Model/secret.bin").read_bytes() == b"alice only"
    assert alice.get(f"/api/v1/uploads/{uid}").json()["state"] == "open"
    # the admin may act for alice
    r = alice.tc.get("/api/v1/files/stat", params={"path": "Model/secret.bin", **other},
                     headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 200 and r.json()["size"] == 10


# --- quota ------------------------------------------------------------------------------------

def test_quota_refusal_leaves_nothing_behind(alice, settings, assert_index_consistent, index_rows, set_storage_quota,
                                             data_snapshot):
    used = alice.get("/api/v1/files/usage").json()
    set_storage_quota(alice.tc, alice.id, bytes_=used["bytes"] + 1000, files=used["files"] + 2)
    before = data_snapshot(settings)
    rows = index_rows(alice.tc, alice.id)
    # multipart: too many bytes
    r = alice.post("/api/v1/files/upload", params={"path": "Data"}, files={"file": ("big.bin", b"x" * 5000)})
    assert r.status_code == 403 and r.json()["error"]["code"] == "quota_exceeded"
    r = alice.post("/api/file/file/uploadFolder", data={"currentPath": "/Data"}, files={"file": ("big.bin", b"x" * 5000)})
    assert r.status_code == 403 and r.json()["success"] is False and r.json()["reason"] == "quota_exceeded"
    # resumable: refused before anything is accepted
    r = alice.post("/api/v1/uploads", json={"path": "Data/huge.bin", "size": 10**9, "sha256": "0" * 64})
    assert r.status_code == 403 and r.json()["error"]["code"] == "quota_exceeded"
    # file count: two fit, the third does not
    files = [("file", (f"s{i}.txt", b"s")) for i in range(3)]
    r = alice.post("/api/v1/files/upload", params={"path": "Data"}, files=files)
    assert r.status_code == 403
    assert data_snapshot(settings) == before
    assert index_rows(alice.tc, alice.id) == rows
    assert alice.get("/api/v1/uploads").json() == []
    # within quota it works; an open upload reserves its size
    assert alice.post("/api/v1/files/upload", params={"path": "Data"}, files={"file": ("ok.bin", b"x" * 500)}
                      ).status_code == 201
    r = alice.post("/api/v1/uploads", json={"path": "Data/r.bin", "size": 400, "sha256": "0" * 64})
    assert r.status_code == 201
    assert alice.post("/api/v1/files/upload", params={"path": "Data"}, files={"file": ("more.bin", b"x" * 200)}
                      ).status_code == 403
    assert alice.delete(f"/api/v1/uploads/{r.json()['id']}").status_code == 204
    assert alice.post("/api/v1/files/upload", params={"path": "Data"}, files={"file": ("more.bin", b"x" * 200)}
                      ).status_code == 201
    assert_index_consistent(alice.tc, alice.id)


# --- index on both databases ----------------------------------------------------------------------

def test_index_operations_on_both_databases(any_db_make_user, any_db_settings, assert_index_consistent):
    u = any_db_make_user("carol")
    for d in ("a/b", "a/b/c", "a%_x"):
        assert u.post("/api/v1/files/mkdir", json={"path": d}).status_code == 201
    u.post("/api/v1/files/upload", params={"path": "a/b/c"}, files={"file": ("f.txt", b"12345")})
    u.post("/api/v1/files/upload", params={"path": "a%_x"}, files={"file": ("g.txt", b"1")})
    u.post("/api/v1/files/upload", params={"path": ""}, files={"file": ("ab.txt", b"1")})
    r = u.post("/api/v1/files/move", json={"src": "a", "dst": "z/新"})
    assert r.status_code == 200, r.text
    names = [e["path"] for e in u.get("/api/v1/files", params={"path": "z/新/b/c"}).json()["items"]]
    assert names == ["z/新/b/c/f.txt"]
    assert u.get("/api/v1/files/stat", params={"path": "ab.txt"}).json()["size"] == 1
    assert u.get("/api/v1/files", params={"path": "a%_x"}).json()["total"] == 1  # same prefix, not moved
    usage = u.get("/api/v1/files/usage").json()
    assert usage["files"] == 2 + 3
    r = u.delete("/api/v1/files", params={"path": "z"})
    assert r.json()["files"] == 1 and r.json()["bytes"] == 5
    assert u.get("/api/v1/files/usage").json()["files"] == 4
    data = b"q" * 70000
    s = u.post("/api/v1/uploads", json={"path": "up/q.bin", "size": len(data),
                                        "sha256": hashlib.sha256(data).hexdigest(), "chunk_size": 65536}).json()
    for i in (1, 0, 1):
        assert u.put(f"/api/v1/uploads/{s['id']}/chunks/{i}", content=data[i * 65536:(i + 1) * 65536]).status_code == 200
    done = u.post(f"/api/v1/uploads/{s['id']}/complete").json()
    assert done["state"] == "completed" and done["file"]["sha256"] == hashlib.sha256(data).hexdigest()
    assert_index_consistent(u.tc, u.id)


@pytest.mark.parametrize("name", ["Données", "数据 集", "a b+c&d=e"])
def test_unicode_and_odd_names(alice, settings, name):
    r = alice.post("/api/v1/files/upload", params={"path": name}, files={"file": (f"{name}.txt", b"u")})
    assert r.status_code == 201, r.text
    assert alice.get("/api/v1/files/download", params={"path": f"{name}/{name}.txt"}).content == b"u"
    assert (settings.users_root / alice.id / name / f"{name}.txt").exists()


def test_temp_files_on_another_filesystem_fall_back_to_a_copy(alice, settings, monkeypatch):
    """uploads_dir on another filesystem (EXDEV): placed through a synced temp file next to the target."""
    import errno
    import os

    real = os.replace
    uploads = str(settings.uploads_dir)

    def cross_device(src, dst):
        if str(src).startswith(uploads) and not str(dst).startswith(uploads):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", cross_device)
    r = alice.post("/api/v1/files/upload", params={"path": "Data"}, files={"file": ("x.bin", b"cross")})
    assert r.status_code == 201, r.text
    root = settings.users_root / alice.id
    assert (root / "Data/x.bin").read_bytes() == b"cross"
    assert [p.name for p in (root / "Data").iterdir() if p.name.startswith(".modelyard")] == []
    assert list((settings.uploads_dir / "tmp").iterdir()) == []
