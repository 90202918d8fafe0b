"""Images (seed §2): registration, import of real docker-save and OCI archives built in-test, dedup,
broken archives, cross-user access, deletion and blob GC."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from pathlib import Path

from tests.conftest import sdk_for


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer_tar(files: dict[str, bytes]) -> bytes:
    """A filesystem layer: a tar of the given files (deterministic bytes)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in sorted(files.items()):
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime, ti.mode = len(data), 0, 0o644
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def image_config(diff_ids: list[str], **over) -> dict:
    cfg = {
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin", "APP_MODE=test"],
                   "Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hello"], "WorkingDir": "/app",
                   "User": "1000", "Labels": {"org.example.team": "ml"}, "ExposedPorts": {"8080/tcp": {}}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "test"}],
    }
    cfg.update(over)
    return cfg


def write_tar(path: Path, entries: dict[str, bytes | str]) -> Path:
    """entries: name -> bytes, or name -> "->target" for a symlink."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tf:
        for name, data in entries.items():
            ti = tarfile.TarInfo(name)
            ti.mtime = 0
            if isinstance(data, str) and data.startswith("->"):
                ti.type, ti.linkname = tarfile.SYMTYPE, data[2:]
                tf.addfile(ti)
            else:
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    return path


LAYER_A = layer_tar({"bin/hello": b"#!/bin/sh\necho hello\n", "etc/os-release": b"ID=test\n"})
LAYER_B = layer_tar({"app/main.py": b"print('hi')\n"})
LAYER_C = layer_tar({"app/extra.txt": b"extra\n" * 100})


def docker_save_entries(layers: list[bytes], repo_tag: str = "team/app:1.0", **cfg_over) -> dict[str, bytes | str]:
    cfg = json.dumps(image_config([sha(la) for la in layers], **cfg_over)).encode()
    cfg_hex = sha(cfg).split(":")[1]
    entries: dict[str, bytes | str] = {}
    layer_names = []
    for i, la in enumerate(layers):
        lid = hashlib.sha256(f"v1-{i}".encode()).hexdigest()
        entries[f"{lid}/VERSION"] = b"1.0"
        entries[f"{lid}/json"] = json.dumps({"id": lid}).encode()
        entries[f"{lid}/layer.tar"] = la
        layer_names.append(f"{lid}/layer.tar")
    entries[f"{cfg_hex}.json"] = cfg
    entries["manifest.json"] = json.dumps([{"Config": f"{cfg_hex}.json", "RepoTags": [repo_tag],
                                            "Layers": layer_names}]).encode()
    repo, tag = repo_tag.rsplit(":", 1)
    entries["repositories"] = json.dumps({repo: {tag: layer_names[-1].split("/")[0]}}).encode()
    return entries


def oci_entries(layers: list[tuple[bytes, bool]], ref_name: str | None = "2.0", *, platform_index: bool = False,
                **cfg_over) -> tuple[dict[str, bytes | str], dict]:
    """layers: (uncompressed tar, gzip it?). Returns (entries, facts)."""
    blobs: dict[str, bytes] = {}
    descs = []
    diff_ids = []
    for raw, compress in layers:
        data = gz(raw) if compress else raw
        blobs[sha(data)] = data
        diff_ids.append(sha(raw))
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar" + ("+gzip" if compress else ""),
                      "digest": sha(data), "size": len(data)})
    cfg = json.dumps(image_config(diff_ids, **cfg_over)).encode()
    blobs[sha(cfg)] = cfg
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": sha(cfg), "size": len(cfg)},
                           "layers": descs}).encode()
    blobs[sha(manifest)] = manifest
    top = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(manifest),
           "size": len(manifest)}
    if platform_index:
        # an image index: an arm64 manifest first (its blobs absent: it must not be followed)
        arm = {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:" + "ab" * 32,
               "size": 10, "platform": {"os": "linux", "architecture": "arm64"}}
        idx = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                          "manifests": [arm, {**top, "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()
        blobs[sha(idx)] = idx
        top = {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha(idx), "size": len(idx)}
    if ref_name:
        top["annotations"] = {"org.opencontainers.image.ref.name": ref_name}
    entries: dict[str, bytes | str] = {"oci-layout": b'{"imageLayoutVersion": "1.0.0"}',
                                       "index.json": json.dumps({"schemaVersion": 2, "manifests": [top]}).encode()}
    for d, data in blobs.items():
        entries["blobs/sha256/" + d.split(":")[1]] = data
    return entries, {"manifest_digest": sha(manifest), "config_digest": sha(cfg), "layer_digests": [x["digest"] for x in descs],
                     "diff_ids": diff_ids}


# --- tests -------------------------------------------------------------------------------------

import pytest  # noqa: E402


def user_file(settings, user, rel: str) -> Path:
    return settings.users_root / user.id / rel


def blob_files(settings) -> set[str]:
    d = settings.blobs_dir / "sha256"
    return {p.name for p in d.iterdir()} if d.is_dir() else set()


def seed_create(client, name: str, **extra) -> str:
    body = {"imageName": name, "imageIcon": "", "imageOverView": "", "imageLabel": [], "imageDescribe": "",
            "userId": client.id, **extra}
    r = client.post("/docker/image/upload", json=body)
    assert r.status_code == 200, r.text
    j = r.json()
    assert j["success"] is True and j["errorCode"] == 200 and j["message"] == "新增镜像成功"
    return j["result"]["id"]


def seed_import(client, image_id: str, file_url: str, tag: str | None = "1.0"):
    body = {"userId": client.id, "imageId": image_id, "fileUrl": file_url}
    if tag is not None:
        body["imageTag"] = tag
    return client.post("/docker/image/uploadOld", json=body)


@pytest.fixture
def docker_tar(settings, alice):
    return write_tar(user_file(settings, alice, "Image/app-docker.tar"), docker_save_entries([LAYER_A, LAYER_B]))


def test_seed_register_and_import_docker_save(alice, settings, docker_tar):
    # §2.1 with the seed's request example (userId = the caller)
    r = alice.post("/docker/image/upload", json={"imageName": "dzq/45", "imageIcon": "", "imageOverView": "",
                                                 "imageLabel": [], "imageDescribe": "", "userId": alice.id})
    body = r.json()
    assert r.status_code == 200 and set(body) == {"success", "errorCode", "message", "result"}
    assert body["success"] is True and body["errorCode"] == 200 and body["message"] == "新增镜像成功"
    image_id = body["result"]["id"]
    # §2.2 with the seed's example shape
    r = seed_import(alice, image_id, "Image/app-docker.tar", "1.0")
    body = r.json()
    assert r.status_code == 200, body
    assert body["success"] is True and body["errorCode"] == 200 and body["message"] == "镜像开始上传"
    v = alice.get(f"/api/v1/images/{image_id}/versions/1.0").json()
    assert v["archive_format"] == "docker" and v["tag"] == "1.0"
    assert v["os"] == "linux" and v["architecture"] == "amd64"
    assert v["env"] == ["PATH=/usr/local/bin:/usr/bin:/bin", "APP_MODE=test"]
    assert v["entrypoint"] == ["/bin/sh", "-c"] and v["cmd"] == ["echo hello"]
    assert v["working_dir"] == "/app" and v["config_user"] == "1000"
    assert v["config_labels"] == {"org.example.team": "ml"} and v["exposed_ports"] == ["8080/tcp"]
    assert v["repo_tags"] == ["team/app:1.0"]
    assert [la["digest"] for la in v["layers"]] == [sha(LAYER_A), sha(LAYER_B)]
    assert all(la["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar" for la in v["layers"])
    assert v["size_bytes"] == sum(la["size"] for la in v["layers"]) + len(
        json.dumps(image_config([sha(LAYER_A), sha(LAYER_B)])).encode())
    assert v["manifest_digest"].startswith("sha256:") and v["config_digest"].startswith("sha256:")
    # every blob is stored content-addressed, and its bytes hash to its name
    for d in [v["manifest_digest"], v["config_digest"], *[la["digest"] for la in v["layers"]]]:
        p = settings.blobs_dir / "sha256" / d.split(":")[1]
        assert sha(p.read_bytes()) == d
    # the stored manifest is a registry manifest listing the same config and layers
    mf = json.loads((settings.blobs_dir / "sha256" / v["manifest_digest"].split(":")[1]).read_bytes())
    assert mf["config"]["digest"] == v["config_digest"]
    assert [la["digest"] for la in mf["layers"]] == [sha(LAYER_A), sha(LAYER_B)]
    # a blob can be fetched back through the API
    r = alice.get(f"/api/v1/images/{image_id}/versions/1.0/blobs/{sha(LAYER_B)}")
    assert r.status_code == 200 and r.content == LAYER_B
    detail = alice.get(f"/api/v1/images/{image_id}").json()
    assert detail["name"] == "dzq/45" and detail["tags"] == ["1.0"] and len(detail["versions"]) == 1
    from modelyard.server.db import session_scope
    from modelyard.server.services import events

    with session_scope(alice.tc.app.state.ctx.sessions, readonly=True) as s:
        evs = events.list_for(s, object_type="image", object_id=image_id)
        assert [e.kind for e in evs] == ["image.created", "image.version_imported"]
        assert all(e.actor_id == alice.id for e in evs) and evs[1].data["tag"] == "1.0"


def test_oci_layout_with_gzip_layer_and_dedup(alice, settings, docker_tar):
    image_id = seed_create(alice, "team/app")
    assert seed_import(alice, image_id, "Image/app-docker.tar", "1.0").status_code == 200
    before = blob_files(settings)
    stat_b = (settings.blobs_dir / "sha256" / sha(LAYER_B).split(":")[1]).stat()
    # OCI layout: a gzip layer (new) and LAYER_B uncompressed (shared with the docker archive)
    entries, facts = oci_entries([(LAYER_C, True), (LAYER_B, False)], ref_name="2.0")
    write_tar(user_file(settings, alice, "Image/app-oci.tar"), entries)
    r = seed_import(alice, image_id, "Image/app-oci.tar", tag=None)  # tag from the archive: 2.0
    assert r.status_code == 200, r.text
    assert r.json()["result"]["imageTag"] == "2.0"
    v = alice.get(f"/api/v1/images/{image_id}/versions/2.0").json()
    assert v["archive_format"] == "oci"
    assert v["manifest_digest"] == facts["manifest_digest"] and v["config_digest"] == facts["config_digest"]
    assert [la["digest"] for la in v["layers"]] == facts["layer_digests"]
    assert v["layers"][0]["mediaType"].endswith("+gzip")
    assert v["layers"][0]["diff_id"] == sha(LAYER_C) and v["layers"][0]["uncompressed_size"] == len(LAYER_C)
    assert v["env"][1] == "APP_MODE=test" and v["os"] == "linux" and v["architecture"] == "amd64"
    after = blob_files(settings)
    # new: gzip layer C, config, manifest; LAYER_B was not stored a second time
    assert after - before == {d.split(":")[1] for d in (facts["layer_digests"][0], facts["config_digest"],
                                                         facts["manifest_digest"])}
    stat_b2 = (settings.blobs_dir / "sha256" / sha(LAYER_B).split(":")[1]).stat()
    assert (stat_b.st_ino, stat_b.st_mtime_ns) == (stat_b2.st_ino, stat_b2.st_mtime_ns)
    # importing the same docker archive again under another tag stores nothing new
    assert seed_import(alice, image_id, "Image/app-docker.tar", "1.0-again").status_code == 200
    assert blob_files(settings) == after
    v1 = alice.get(f"/api/v1/images/{image_id}/versions/1.0").json()
    v1b = alice.get(f"/api/v1/images/{image_id}/versions/1.0-again").json()
    assert v1["manifest_digest"] == v1b["manifest_digest"]
    assert not list((settings.blobs_dir / ".tmp").iterdir())


def test_oci_image_index_picks_linux_amd64_and_gzipped_archive(alice, settings):
    image_id = seed_create(alice, "multi")
    entries, facts = oci_entries([(LAYER_A, True)], ref_name="3.1", platform_index=True)
    path = write_tar(user_file(settings, alice, "Image/multi.tar"), entries)
    path.with_suffix(".tar.gz").write_bytes(gz(path.read_bytes()))
    r = seed_import(alice, image_id, "Image/multi.tar.gz", tag=None)
    assert r.status_code == 200, r.text
    v = alice.get(f"/api/v1/images/{image_id}/versions/3.1").json()
    assert v["manifest_digest"] == facts["manifest_digest"] and v["architecture"] == "amd64"


def test_native_api_create_import_list_delete(alice, settings, docker_tar):
    r = alice.post("/api/v1/images", json={"name": "team/native", "description": "d", "labels": ["cv"]})
    assert r.status_code == 201, r.text
    image_id = r.json()["id"]
    r = alice.post(f"/api/v1/images/{image_id}/versions", json={"path": "Image/app-docker.tar"})
    assert r.status_code == 201, r.text
    assert r.json()["tag"] == "1.0"  # from the archive's RepoTags
    r = alice.post(f"/api/v1/images/{image_id}/versions", json={"path": "Image/app-docker.tar", "tag": "1.0"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "tag_exists"
    r = alice.post("/api/v1/images", json={"name": "team/native"})
    assert r.status_code == 409
    r = alice.post("/api/v1/images", json={"name": "Bad Name!"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_name"
    page = alice.get("/api/v1/images", params={"page": 1, "page_size": 10}).json()
    assert page["total"] == 1 and page["items"][0]["tags"] == ["1.0"]
    assert alice.get("/api/v1/images", params={"name": "team/native"}).json()["total"] == 1
    assert len(alice.get(f"/api/v1/images/{image_id}/versions").json()) == 1
    assert alice.patch(f"/api/v1/images/{image_id}", json={"description": "new"}).json()["description"] == "new"
    assert alice.delete(f"/api/v1/images/{image_id}/versions/1.0").status_code == 204
    assert blob_files(settings) == set()  # nothing references them any more
    assert alice.get(f"/api/v1/images/{image_id}/versions/1.0").status_code == 404
    assert alice.delete(f"/api/v1/images/{image_id}").status_code == 204
    assert alice.get(f"/api/v1/images/{image_id}").status_code == 404


def test_delete_keeps_shared_blobs_and_refuses_in_use(alice, settings, docker_tar):
    from modelyard.server.services.common import references

    image_id = seed_create(alice, "shared")
    assert seed_import(alice, image_id, "Image/app-docker.tar", "1.0").status_code == 200
    entries, facts = oci_entries([(LAYER_C, True), (LAYER_B, False)])
    write_tar(user_file(settings, alice, "Image/app-oci.tar"), entries)
    assert seed_import(alice, image_id, "Image/app-oci.tar", "2.0").status_code == 200
    v1 = alice.get(f"/api/v1/images/{image_id}/versions/1.0").json()
    # a job uses version 1.0: deleting it (or the image) is refused
    blocked = {v1["id"]}
    check = references.checker("image_version")(lambda s, oid: "job j1" if oid in blocked else None)
    try:
        r = alice.delete(f"/api/v1/images/{image_id}/versions/1.0")
        assert r.status_code == 409 and r.json()["error"]["code"] == "in_use"
        assert alice.delete(f"/api/v1/images/{image_id}").status_code == 409
    finally:
        references.remove_checker("image_version", check)
    assert alice.delete(f"/api/v1/images/{image_id}/versions/1.0").status_code == 204
    left = blob_files(settings)
    assert sha(LAYER_B).split(":")[1] in left  # still used by 2.0
    assert sha(LAYER_A).split(":")[1] not in left  # only 1.0 used it
    assert v1["manifest_digest"].split(":")[1] not in left
    # GC (admin) finds nothing more to remove; an orphan file older than the grace is removed
    orphan = settings.blobs_dir / "sha256" / ("0" * 64)
    orphan.write_bytes(b"x")
    r = alice.post("/api/v1/images/gc")
    assert r.status_code == 403


def test_gc_by_admin(admin, settings):
    orphan = settings.blobs_dir / "sha256" / ("0" * 64)
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"x")
    r = admin.post("/api/v1/images/gc", params={"grace_s": 0})
    assert r.status_code == 200 and r.json()["orphan_files_removed"] == 1
    assert not orphan.exists()


def _import_error(client, settings, entries_or_bytes, name="bad.tar") -> tuple[int, str]:
    image_id = seed_create(client, "broken-" + name.replace(".", "-").lower())
    p = user_file(settings, client, f"Image/{name}")
    if isinstance(entries_or_bytes, bytes):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(entries_or_bytes)
    else:
        write_tar(p, entries_or_bytes)
    r = seed_import(client, image_id, f"Image/{name}")
    body = r.json()
    assert body["success"] is False and body["result"] is None
    return r.status_code, body["message"]


def test_broken_archives_are_refused_saying_why(alice, settings):
    before = blob_files(settings)
    st, msg = _import_error(alice, settings, b"this is not a tar file at all\n" * 20, "text.tar")
    assert st == 400 and "not a tar" in msg
    st, msg = _import_error(alice, settings, {"hello.txt": b"hi"}, "plain.tar")
    assert st == 400 and "manifest.json" in msg and "index.json" in msg
    e = docker_save_entries([LAYER_A])
    e["manifest.json"] = b"[{not json"
    st, msg = _import_error(alice, settings, e, "badjson.tar")
    assert st == 400 and "invalid JSON in manifest.json" in msg
    e = docker_save_entries([LAYER_A, LAYER_B])
    missing = json.loads(e["manifest.json"])[0]["Layers"][1]
    del e[missing]
    st, msg = _import_error(alice, settings, e, "missing.tar")
    assert st == 400 and f"missing blob {missing}" in msg
    e = docker_save_entries([LAYER_A, LAYER_B])
    tampered = json.loads(e["manifest.json"])[0]["Layers"][0]
    e[tampered] = LAYER_C
    st, msg = _import_error(alice, settings, e, "tampered.tar")
    assert st == 400 and "digest mismatch" in msg and tampered in msg
    # OCI: a blob whose bytes do not hash to its name
    e, facts = oci_entries([(LAYER_A, True), (LAYER_B, False)])
    e["blobs/sha256/" + facts["layer_digests"][1].split(":")[1]] = LAYER_C
    st, msg = _import_error(alice, settings, e, "oci-tampered.tar")
    assert st == 400 and f"digest mismatch for {facts['layer_digests'][1]}" in msg
    e, facts = oci_entries([(LAYER_A, True)])
    del e["blobs/sha256/" + facts["config_digest"].split(":")[1]]
    st, msg = _import_error(alice, settings, e, "oci-missing.tar")
    assert st == 400 and f"missing blob {facts['config_digest']}" in msg
    e, facts = oci_entries([(LAYER_A, True)])
    e["index.json"] = b"{]"
    st, msg = _import_error(alice, settings, e, "oci-badindex.tar")
    assert st == 400 and "invalid JSON in index.json" in msg
    # none of the failed imports left a blob or a version behind
    assert blob_files(settings) == before
    assert not list((settings.blobs_dir / ".tmp").iterdir())
    assert all(not i["tags"] for i in alice.get("/api/v1/images").json()["items"])


def test_file_url_traversal_and_missing(alice, settings):
    image_id = seed_create(alice, "paths")
    for bad in ["../other/x.tar", "Image/../../x.tar", "/../x.tar", "a\\b.tar", "a\x00b.tar"]:
        r = seed_import(alice, image_id, bad)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["success"] is False
    r = seed_import(alice, image_id, "Image/nope.tar")
    assert r.status_code == 400 and "not found" in r.json()["message"]


def test_cross_user_access(alice, bob, settings, docker_tar, admin):
    image_id = seed_create(alice, "private/app")
    assert seed_import(alice, image_id, "Image/app-docker.tar", "1.0").status_code == 200
    # bob cannot see alice's image
    assert bob.get(f"/api/v1/images/{image_id}").status_code == 404
    assert bob.get(f"/api/v1/images/{image_id}/versions").status_code == 404
    assert bob.get(f"/api/v1/images/{image_id}/versions/1.0").status_code == 404
    assert bob.get("/api/v1/images").json()["total"] == 0
    v = alice.get(f"/api/v1/images/{image_id}/versions/1.0").json()
    assert bob.get(f"/api/v1/images/{image_id}/versions/1.0/blobs/{v['config_digest']}").status_code == 404
    # nor import into it, nor delete it
    write_tar(user_file(settings, bob, "Image/b.tar"), docker_save_entries([LAYER_C]))
    r = seed_import(bob, image_id, "Image/b.tar", "evil")
    assert r.status_code == 404 and r.json()["success"] is False
    assert bob.delete(f"/api/v1/images/{image_id}").status_code == 404
    assert bob.delete(f"/api/v1/images/{image_id}/versions/1.0").status_code == 404
    # acting as alice through a seed userId: 403
    r = bob.post("/docker/image/upload", json={"imageName": "x", "userId": alice.id})
    assert r.status_code == 403 and r.json()["success"] is False
    r = bob.post("/docker/image/uploadOld", json={"userId": alice.id, "imageId": image_id, "imageTag": "x",
                                                  "fileUrl": "Image/app-docker.tar"})
    assert r.status_code == 403
    # bob's fileUrl resolves in his own root: alice's tar is not reachable
    bob_img = seed_create(bob, "mine")
    r = seed_import(bob, bob_img, "Image/app-docker.tar")
    assert r.status_code == 400 and "not found" in r.json()["message"]
    # a public image is visible to bob but not changeable
    assert alice.patch(f"/api/v1/images/{image_id}", json={"is_public": True}).status_code == 200
    assert bob.get(f"/api/v1/images/{image_id}").status_code == 200
    assert bob.delete(f"/api/v1/images/{image_id}").status_code == 403
    assert seed_import(bob, image_id, "Image/b.tar", "evil").status_code == 403
    # admin may act for alice
    r = admin.post("/docker/image/upload", json={"imageName": "by-admin", "userId": alice.id})
    assert r.status_code == 200
    assert alice.get(f"/api/v1/images/{r.json()['result']['id']}").json()["owner_id"] == alice.id


def test_resolve_image_version(alice, settings, docker_tar):
    from modelyard.server.auth import Principal
    from modelyard.server.db import session_scope
    from modelyard.server.services.images import resolve_image_version

    image_id = seed_create(alice, "team/resolve")
    seed_import(alice, image_id, "Image/app-docker.tar", "1.0")
    seed_import(alice, image_id, "Image/app-docker.tar", "2.0")
    p = Principal(alice.id, alice.name, "user")
    with session_scope(alice.tc.app.state.ctx.sessions) as s:
        assert resolve_image_version(s, p, "team/resolve").tag == "2.0"
        assert resolve_image_version(s, p, "team/resolve:1.0").tag == "1.0"
        v = resolve_image_version(s, p, image_id)
        assert resolve_image_version(s, p, v.id).id == v.id
        other = Principal("0" * 32, "nobody", "user")
        with pytest.raises(Exception) as ei:
            resolve_image_version(s, other, v.id)
        assert getattr(ei.value, "status", None) == 404


def test_sdk_and_cli(alice, settings, docker_tar, monkeypatch):
    from typer.testing import CliRunner

    from modelyard.cli import images as cli

    client = sdk_for(alice)
    img = client.images.create("team/sdk", description="via sdk")
    v = client.images.import_version("team/sdk", "Image/app-docker.tar", tag="1.0")
    assert v["tag"] == "1.0" and v["os"] == "linux"
    assert client.images.get("team/sdk")["id"] == img["id"]
    assert client.images.version("team/sdk", "1.0")["manifest_digest"] == v["manifest_digest"]

    monkeypatch.setattr(cli, "_client", lambda: client)
    runner = CliRunner()
    r = runner.invoke(cli.app, ["import", "team/cli", "Image/app-docker.tar", "--tag", "x1"])  # creates it
    assert r.exit_code == 0, r.output
    assert "team/cli:x1" in r.output
    r = runner.invoke(cli.app, ["ls"])
    assert r.exit_code == 0 and "team/sdk" in r.output and "team/cli" in r.output
    r = runner.invoke(cli.app, ["show", "team/cli"])
    assert r.exit_code == 0 and "x1" in r.output and "linux/amd64" in r.output
    # --upload: a local archive goes up through the resumable upload first
    local = write_tar(settings.home.parent / "local" / "oci.tar", oci_entries([(LAYER_C, True)], ref_name="up")[0])
    r = runner.invoke(cli.app, ["import", "team/cli", "Image/uploaded.tar", "--upload", str(local)])
    assert r.exit_code == 0, r.output
    assert (settings.users_root / alice.id / "Image/uploaded.tar").read_bytes() == local.read_bytes()
    assert client.images.version("team/cli", "up")["archive_format"] == "oci"
    r = runner.invoke(cli.app, ["rm", "team/cli:x1", "-y"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli.app, ["rm", "team/cli", "-y"])
    assert r.exit_code == 0 and client.images.list()["total"] == 1


def test_docker25_archive_symlinked_layers_and_layout_folder(alice, settings):
    image_id = seed_create(alice, "formats")
    # Docker >= 25 writes an OCI layout plus manifest.json in one tar: the OCI index is followed
    entries, facts = oci_entries([(LAYER_A, False), (LAYER_B, False)], ref_name="latest")
    entries["manifest.json"] = json.dumps([{
        "Config": "blobs/sha256/" + facts["config_digest"].split(":")[1], "RepoTags": ["formats:latest"],
        "Layers": ["blobs/sha256/" + d.split(":")[1] for d in facts["layer_digests"]]}]).encode()
    write_tar(user_file(settings, alice, "Image/d25.tar"), entries)
    r = seed_import(alice, image_id, "Image/d25.tar", tag=None)
    assert r.status_code == 200, r.text
    v = alice.get(f"/api/v1/images/{image_id}/versions/latest").json()
    assert v["archive_format"] == "oci" and v["manifest_digest"] == facts["manifest_digest"]
    # classic docker save with a layer stored once and symlinked (older Docker does this)
    e = docker_save_entries([LAYER_C, LAYER_C])
    names = json.loads(e["manifest.json"])[0]["Layers"]
    e[names[1]] = "->../" + names[0]
    write_tar(user_file(settings, alice, "Image/symlinked.tar"), e)
    r = seed_import(alice, image_id, "Image/symlinked.tar", "sym")
    assert r.status_code == 200, r.text
    v = alice.get(f"/api/v1/images/{image_id}/versions/sym").json()
    assert [la["digest"] for la in v["layers"]] == [sha(LAYER_C)] * 2
    # an extracted OCI layout folder in the user's files
    entries, facts = oci_entries([(LAYER_A, True)], ref_name="dir")
    for name, data in entries.items():
        p = user_file(settings, alice, "Image/layout/" + name)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    r = seed_import(alice, image_id, "Image/layout", tag=None)
    assert r.status_code == 200, r.text
    assert alice.get(f"/api/v1/images/{image_id}/versions/dir").json()["manifest_digest"] == facts["manifest_digest"]


def test_more_broken_oci_archives(alice, settings):
    # gzip claimed, plain content
    e, facts = oci_entries([(LAYER_A, False)])
    mf_name = "blobs/sha256/" + facts["manifest_digest"].split(":")[1]
    mf = json.loads(e[mf_name])
    mf["layers"][0]["mediaType"] += "+gzip"
    raw = json.dumps(mf).encode()
    del e[mf_name]
    e["blobs/sha256/" + sha(raw).split(":")[1]] = raw
    e["index.json"] = json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(raw), "size": len(raw)}]}).encode()
    st, msg = _import_error(alice, settings, e, "mt.tar")
    assert st == 400 and "does not match its content" in msg
    # the config's diff_ids do not match the (gzip) layer's uncompressed content
    e, facts = oci_entries([(LAYER_A, True)], rootfs={"type": "layers", "diff_ids": [sha(LAYER_B)]})
    st, msg = _import_error(alice, settings, e, "diffid.tar")
    assert st == 400 and "rootfs.diff_ids[0]" in msg
    # a descriptor size that is not the blob's
    e, facts = oci_entries([(LAYER_A, False)])
    idx = json.loads(e["index.json"])
    idx["manifests"][0]["size"] += 1
    e["index.json"] = json.dumps(idx).encode()
    st, msg = _import_error(alice, settings, e, "size.tar")
    assert st == 400 and "size mismatch" in msg
    # layers that are symlinks to each other
    e = docker_save_entries([LAYER_A, LAYER_B])
    n0, n1 = json.loads(e["manifest.json"])[0]["Layers"]
    e[n0], e[n1] = "->../" + n1, "->../" + n0
    st, msg = _import_error(alice, settings, e, "loop.tar")
    assert st == 400 and n0 in msg
    # an empty file, a truncated tar
    st, msg = _import_error(alice, settings, b"", "empty.tar")
    assert st == 400 and "not a tar" in msg
    good = write_tar(settings.home / "t.tar", docker_save_entries([LAYER_A])).read_bytes()
    st, msg = _import_error(alice, settings, good[: len(good) // 2], "truncated.tar")
    assert st == 400
    r = seed_import(alice, "f" * 32, "Image/truncated.tar")
    assert r.status_code == 404 and r.json()["success"] is False


class _Pattern(io.RawIOBase):
    """size bytes of a repeating pseudo-random block, produced on demand."""

    def __init__(self, size: int):
        import random

        self.block = random.Random(7).randbytes(1 << 20)
        self.left, self.pos = size, 0

    def readable(self):
        return True

    def readinto(self, b):
        n = min(len(b), self.left, len(self.block) - self.pos)
        b[:n] = self.block[self.pos:self.pos + n]
        self.pos = (self.pos + n) % len(self.block)
        self.left -= n
        return n


def test_import_streams_big_layers(tmp_path):
    """A 48 MiB layer is copied and verified without ever being held in memory."""
    import hashlib
    import tracemalloc

    from modelyard.server.services.images.oci import BlobStore, import_archive, open_source

    size = 48 << 20
    h = hashlib.sha256()
    src = _Pattern(size)
    while chunk := src.read(1 << 20):
        h.update(chunk)
    layer_digest = "sha256:" + h.hexdigest()
    cfg = json.dumps(image_config([layer_digest])).encode()
    archive = tmp_path / "big.tar"
    with tarfile.open(archive, "w") as tf:
        for name, data in (("cfg.json", cfg), ("manifest.json", json.dumps(
                [{"Config": "cfg.json", "RepoTags": ["big:1"], "Layers": ["l/layer.tar"]}]).encode())):
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            tf.addfile(ti, io.BytesIO(data))
        ti = tarfile.TarInfo("l/layer.tar")
        ti.size = size
        tf.addfile(ti, io.BufferedReader(_Pattern(size)))
    store = BlobStore(tmp_path / "blobs")
    tracemalloc.start()
    try:
        with open_source(archive, label="big.tar", tmp_dir=tmp_path / "tmp") as s:
            info = import_archive(s, store, [])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.layers[0].digest == layer_digest and info.layers[0].size == size
    assert store.path(layer_digest).stat().st_size == size
    assert peak < 12 << 20, f"peak {peak / 2**20:.1f} MiB"


def test_import_dedup_and_gc_on_both_databases(any_db_make_user, any_db_settings):
    """The blob bookkeeping (rows, references, locks) on SQLite and PostgreSQL."""
    settings = any_db_settings
    alice, bob = any_db_make_user("alice"), any_db_make_user("bob")
    write_tar(user_file(settings, alice, "Image/a.tar"), docker_save_entries([LAYER_A, LAYER_B]))
    entries, facts = oci_entries([(LAYER_C, True), (LAYER_B, False)])
    write_tar(user_file(settings, bob, "Image/b.tar"), entries)
    ia, ib = seed_create(alice, "team/app"), seed_create(bob, "team/app")
    assert seed_import(alice, ia, "Image/a.tar", "1.0").status_code == 200
    assert seed_import(bob, ib, "Image/b.tar", "1.0").status_code == 200
    assert seed_import(alice, ia, "Image/a.tar", "1.0").status_code == 409  # tag exists
    shared = sha(LAYER_B).split(":")[1]
    assert shared in blob_files(settings)
    assert bob.get(f"/api/v1/images/{ia}").status_code == 404
    assert alice.delete(f"/api/v1/images/{ia}").status_code == 204
    assert shared in blob_files(settings)  # bob's version still uses it
    assert sha(LAYER_A).split(":")[1] not in blob_files(settings)
    assert bob.delete(f"/api/v1/images/{ib}/versions/1.0").status_code == 204
    assert blob_files(settings) == set()
