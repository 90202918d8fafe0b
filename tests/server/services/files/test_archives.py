"""Extracting archives built here (tar, tar.gz, zip): the good path, and every guard — tar-slip,
absolute names, symlinks, hard links, device files, zip symlinks, zip bombs (ratio and total size),
the storage quota. A refused archive leaves nothing behind."""

from __future__ import annotations

import hashlib
import io
import stat
import tarfile
import zipfile

import pytest

from modelyard.server.services.files import archives


def tar_bytes(members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for m in members:
            if isinstance(m, tuple):
                info = tarfile.TarInfo(m[0])
                info.size = len(m[1])
                tar.addfile(info, io.BytesIO(m[1]))
            else:
                tar.addfile(m)
    return buf.getvalue()


def zip_bytes(entries: list[tuple[str | zipfile.ZipInfo, bytes]], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=compression) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def put(client, name: str, data: bytes, folder: str = "Data") -> str:
    r = client.post("/api/v1/files/upload", params={"path": folder, "overwrite": True}, files={"file": (name, data)})
    assert r.status_code == 201, r.text
    return f"{folder}/{name}"


def extract(client, path: str, dest: str | None = "Data/out", **kw):
    body = {"path": path, **kw}
    if dest is not None:
        body["dest"] = dest
    return client.post("/api/v1/files/extract", json=body)


def test_extract_tar_gz_and_zip(alice, settings, assert_index_consistent, index_rows):
    root = settings.users_root / alice.id
    d = tarfile.TarInfo("ds/train")
    d.type = tarfile.DIRTYPE
    tgz = tar_bytes([d, ("ds/train/a.jsonl", b'{"x": 1}\n'), ("./ds/validate/b.jsonl", b'{"x": 2}\n')], "w:gz")
    path = put(alice, "ds.tar.gz", tgz)
    r = extract(alice, path, dest=None)  # default: next to the archive, named after it
    assert r.status_code == 200, r.text
    assert r.json()["dest"] == "Data/ds" and r.json()["files"] == 2 and r.json()["format"] == "tar"
    assert (root / "Data/ds/ds/train/a.jsonl").read_bytes() == b'{"x": 1}\n'
    e = alice.get("/api/v1/files/stat", params={"path": "Data/ds/ds/validate/b.jsonl"}).json()
    assert e["sha256"] == hashlib.sha256(b'{"x": 2}\n').hexdigest()
    assert "Data/ds/ds/train" in index_rows(alice.tc, alice.id, "Data/ds")
    zpath = put(alice, "code.zip", zip_bytes([("code/train.py", b"print('hi')"), ("code/empty/", b"")]))
    r = extract(alice, zpath, dest="Code/unzipped")
    assert r.status_code == 200 and r.json()["format"] == "zip"
    assert (root / "Code/unzipped/code/train.py").read_bytes() == b"print('hi')"
    assert (root / "Code/unzipped/code/empty").is_dir()
    # extracting again: existing files are kept unless overwrite
    assert extract(alice, zpath, dest="Code/unzipped").status_code == 409
    assert extract(alice, zpath, dest="Code/unzipped", overwrite=True).status_code == 200
    usage = alice.get("/api/v1/files/usage").json()
    assert usage["files"] == 2 + 2 + 2 + 1  # configs, two archives, ds files, train.py
    # not an archive / a directory
    assert extract(alice, put(alice, "plain.txt", b"hello")).json()["error"]["code"] == "not_an_archive"
    assert extract(alice, "Data").status_code == 400
    assert extract(alice, "Data/none.tar").status_code == 404
    assert_index_consistent(alice.tc, alice.id)


@pytest.fixture
def refused(data_snapshot, index_rows):
    """refused(client, settings, name, data, code=, member=, status=) -> the error of an archive
    whose extraction is refused, after checking it left nothing behind (disk and index)."""

    def check(client, settings, name: str, data: bytes, code: str = "unsafe_archive", member: str | None = None,
              status: int = 400):
        path = put(client, name, data)
        before, rows = data_snapshot(settings), index_rows(client.tc, client.id)
        r = extract(client, path)
        assert r.status_code == status, r.text
        err = r.json()["error"]
        assert err["code"] == code, err
        if member is not None:
            assert repr(member) in err["message"] and err["details"]["member"] == member
        assert data_snapshot(settings) == before, "a refused archive left something behind"
        assert index_rows(client.tc, client.id) == rows
        return err

    return check


def test_tar_slip_and_absolute_names(alice, settings, tmp_path, refused):
    refused(alice, settings, "slip.tar", tar_bytes([("ok.txt", b"1"), ("../../escaped.txt", b"x")]),
             member="../../escaped.txt")
    refused(alice, settings, "slip2.tar", tar_bytes([("a/../../../escaped.txt", b"x")]), member="a/../../../escaped.txt")
    refused(alice, settings, "abs.tar", tar_bytes([("/tmp/abs.txt", b"x")]), member="/tmp/abs.txt")
    refused(alice, settings, "bs.tar", tar_bytes([("..\\..\\win.txt", b"x")]), member="..\\..\\win.txt")
    assert not (settings.users_root / "escaped.txt").exists() and not (settings.data_dir / "escaped.txt").exists()


def test_tar_links_and_devices_are_refused(alice, settings, refused):
    sym = tarfile.TarInfo("data/link")
    sym.type, sym.linkname = tarfile.SYMTYPE, "/etc/passwd"
    err = refused(alice, settings, "sym.tar", tar_bytes([("data/a.txt", b"a"), sym]), member="data/link")
    assert "symlink" in err["message"]
    inner = tarfile.TarInfo("data/inner")
    inner.type, inner.linkname = tarfile.SYMTYPE, "a.txt"  # even pointing inside
    refused(alice, settings, "sym2.tar", tar_bytes([("data/a.txt", b"a"), inner]), member="data/inner")
    hard = tarfile.TarInfo("data/hard")
    hard.type, hard.linkname = tarfile.LNKTYPE, "data/a.txt"
    err = refused(alice, settings, "hard.tar", tar_bytes([("data/a.txt", b"a"), hard]), member="data/hard")
    assert "hard link" in err["message"]
    for kind, label in [(tarfile.CHRTYPE, "character device"), (tarfile.BLKTYPE, "block device"),
                        (tarfile.FIFOTYPE, "FIFO")]:
        dev = tarfile.TarInfo("dev/x")
        dev.type = kind
        err = refused(alice, settings, f"dev{kind.decode()}.tar", tar_bytes([dev]), member="dev/x")
        assert label in err["message"]


def test_zip_slip_symlink_and_bombs(alice, settings, monkeypatch, refused):
    refused(alice, settings, "slip.zip", zip_bytes([("../evil.txt", b"x")]), member="../evil.txt")
    refused(alice, settings, "abs.zip", zip_bytes([("/abs.txt", b"x")]), member="/abs.txt")
    link = zipfile.ZipInfo("link")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    refused(alice, settings, "sym.zip", zip_bytes([("a.txt", b"a"), (link, b"/etc/passwd")]), member="link")
    # ratio: 32 MiB of zeros compress ~1000x
    bomb = zip_bytes([("zeros.bin", b"\0" * (32 * 1024 * 1024))])
    assert len(bomb) < 100_000
    err = refused(alice, settings, "bomb.zip", bomb, code="archive_too_large", member="zeros.bin")
    assert "bomb" in err["message"]
    # the same bytes as a tar.gz: caught while extracting (a tar has no directory up front)
    tbomb = tar_bytes([("zeros.bin", b"\0" * (32 * 1024 * 1024))], "w:gz")
    err = refused(alice, settings, "bomb.tar.gz", tbomb, code="archive_too_large", member="zeros.bin")
    # total uncompressed size cap (stored, so no ratio involved)
    monkeypatch.setattr(archives, "EXTRACT_MAX_BYTES", 1000)
    refused(alice, settings, "big.zip", zip_bytes([("a", b"a" * 600), ("b", b"b" * 600)], zipfile.ZIP_STORED),
             code="archive_too_large")
    refused(alice, settings, "big.tar", tar_bytes([("a", b"a" * 600), ("b", b"b" * 600)]), code="archive_too_large",
             member="b")


def test_extraction_bounded_by_storage_quota(alice, settings, index_rows, set_storage_quota, data_snapshot):
    tar = tar_bytes([(f"f{i}.bin", b"x" * 400) for i in range(5)])
    zp = zip_bytes([(f"f{i}.bin", b"x" * 400) for i in range(5)], zipfile.ZIP_STORED)
    put(alice, "q.tar", tar)
    put(alice, "q.zip", zp)
    used = alice.get("/api/v1/files/usage").json()
    set_storage_quota(alice.tc, alice.id, bytes_=used["bytes"] + 1000, files=None)
    before, rows = data_snapshot(settings), index_rows(alice.tc, alice.id)
    for name in ("q.tar", "q.zip"):
        r = extract(alice, f"Data/{name}")
        assert r.status_code == 403 and r.json()["error"]["code"] == "quota_exceeded", r.text
    set_storage_quota(alice.tc, alice.id, bytes_=None, files=used["files"] + 3)
    r = extract(alice, "Data/q.tar")
    assert r.status_code == 403 and r.json()["error"]["code"] == "quota_exceeded"
    assert data_snapshot(settings) == before and index_rows(alice.tc, alice.id) == rows


def test_public_archive_into_private_folder(alice, bob, settings):
    r = alice.post("/api/v1/files/upload", params={"path": "pub", "public": True},
                   files={"file": ("p.tar", tar_bytes([("p.txt", b"shared")]))})
    assert r.status_code == 201
    r = bob.post("/api/v1/files/extract", json={"path": "pub/p.tar", "public": True, "dest_public": False,
                                                "dest": "Data/p"})
    assert r.status_code == 200, r.text
    assert (settings.users_root / bob.id / "Data/p/p.txt").read_bytes() == b"shared"
    # but not into alice's public folder
    r = bob.post("/api/v1/files/extract", json={"path": "pub/p.tar", "public": True, "dest": "pub/x"})
    assert r.status_code == 403


@pytest.mark.parametrize("name,expect", [("a.tar.gz", "a"), ("a.tgz", "a"), ("x/b.zip", "x/b"), ("c.bin", "c.bin.d")])
def test_default_destination(name, expect):
    assert archives.default_dest(name) == expect
