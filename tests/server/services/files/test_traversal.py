"""Every traversal case ('..', absolute, a symlink pointing out, NUL, backslash) on every
operation that takes a path: 400 invalid_path, and nothing written anywhere (the data dir, the
directory the symlink points to, the index)."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile

import pytest

# name -> a path text that must be refused (native API: paths are relative, '/' is absolute)
CASES = {
    "dotdot": "../escape",
    "dotdot_inner": "Data/../../escape",
    "absolute": "/etc/passwd",
    "symlink": "evil/inside",
    "nul": "Data/a\x00b",
    "backslash": "Data\\..\\..\\escape",
}
# the seed's currentPath is root-relative with a leading '/'; '//' is its absolute form
SEED_CASES = {**CASES, "absolute": "//etc"}


@pytest.fixture
def world(alice, settings, tmp_path, index_rows, data_snapshot, snapshot):
    """alice with a file, a valid archive, and `evil` -> a directory outside every root."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "inside").write_text("outside secret")
    root = settings.users_root / alice.id
    os.symlink(outside, root / "evil")
    alice.post("/api/v1/files/upload", params={"path": "Model"}, files={"file": ("w.bin", b"weights")})
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("ok.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"ok"))
    alice.post("/api/v1/files/upload", params={"path": "Data"}, files={"file": ("ok.tar", buf.getvalue())})

    class W:
        pass

    w = W()
    w.alice, w.settings, w.outside, w.root = alice, settings, outside, root

    def state():
        return data_snapshot(settings), snapshot(outside), index_rows(alice.tc, alice.id)

    w.state = state
    return w


def _assert_refused(w, name: str, resp, *, seed: bool = False) -> None:
    assert resp.status_code == 400, f"{name}: {resp.status_code} {resp.text}"
    body = resp.json()
    code = body["reason"] if seed else body["error"]["code"]
    assert code == "invalid_path", f"{name}: {body}"


def _run(w, call, *, seed: bool = False, cases=CASES) -> None:
    before = w.state()
    for name, path in cases.items():
        _assert_refused(w, name, call(path), seed=seed)
        assert w.state() == before, f"{name}: something was written"


def test_upload_multipart_directory(world):
    _run(world, lambda p: world.alice.post("/api/v1/files/upload", params={"path": p},
                                           files={"file": ("f.txt", b"payload")}))


def test_upload_multipart_file_names(world):
    names = {"dotdot": "../f.txt", "dotdot_inner": "x/../../f.txt", "absolute": "/tmp/f.txt",
             "symlink": "evil/f.txt", "backslash": "..\\f.txt"}
    _run(world, lambda n: world.alice.post("/api/v1/files/upload", params={"path": ""},
                                           files={"file": (n, b"payload")}), cases=names)
    _run(world, lambda n: world.alice.post("/api/file/file/uploadFolder", data={"currentPath": "/"},
                                           files={"file": (n, b"payload")}), seed=True, cases=names)


def test_seed_upload_current_path(world):
    _run(world, lambda p: world.alice.post("/api/file/file/uploadFolder", data={"currentPath": p},
                                           files={"file": ("f.txt", b"payload")}), seed=True, cases=SEED_CASES)
    # also when currentPath comes after the file part (the file was already streamed to a temp)
    def late(p):
        body = (b"--B\r\nContent-Disposition: form-data; name=\"file\"; filename=\"f.txt\"\r\n\r\npayload\r\n"
                b"--B\r\nContent-Disposition: form-data; name=\"currentPath\"\r\n\r\n" + p.encode() + b"\r\n--B--\r\n")
        return world.alice.post("/api/file/file/uploadFolder", content=body,
                                headers={"Content-Type": "multipart/form-data; boundary=B"})

    _run(world, late, seed=True, cases=SEED_CASES)


def test_seed_public_upload_current_path(world):
    _run(world, lambda p: world.alice.post("/api/file/file/uploadPublicFolder",
                                           data={"currentPath": p, "publicUserId": world.alice.id},
                                           files={"file": ("f.txt", b"payload")}), seed=True,
         cases={k: v for k, v in SEED_CASES.items() if k != "symlink"})


def test_mkdir(world):
    _run(world, lambda p: world.alice.post("/api/v1/files/mkdir", json={"path": p}))


def test_move_source_and_destination(world):
    _run(world, lambda p: world.alice.post("/api/v1/files/move", json={"src": p, "dst": "Model/moved"}))
    _run(world, lambda p: world.alice.post("/api/v1/files/move", json={"src": "Model/w.bin", "dst": p}))
    _run(world, lambda p: world.alice.post("/api/v1/files/move", json={"src": "Model", "dst": p}))


def test_delete(world):
    cases = {**CASES, "symlink_itself": "evil"}
    _run(world, lambda p: world.alice.delete("/api/v1/files", params={"path": p}), cases=cases)
    assert (world.outside / "inside").read_text() == "outside secret"


def test_download_stat_list(world):
    _run(world, lambda p: world.alice.get("/api/v1/files/download", params={"path": p}))
    _run(world, lambda p: world.alice.get("/api/v1/files/stat", params={"path": p}))
    _run(world, lambda p: world.alice.get("/api/v1/files", params={"path": p}))
    _run(world, lambda p: world.alice.get("/api/v1/files/download", params={"path": p, "public": True}),
         cases={k: v for k, v in CASES.items() if k != "symlink"})


def test_extract_archive_and_destination(world):
    _run(world, lambda p: world.alice.post("/api/v1/files/extract", json={"path": p, "dest": "Data/out"}))
    _run(world, lambda p: world.alice.post("/api/v1/files/extract", json={"path": "Data/ok.tar", "dest": p}))
    # and it works with sane paths
    r = world.alice.post("/api/v1/files/extract", json={"path": "Data/ok.tar", "dest": "Data/out"})
    assert r.status_code == 200 and (world.root / "Data/out/ok.txt").read_bytes() == b"ok"


def test_resumable_upload_path(world):
    sha = hashlib.sha256(b"abc").hexdigest()
    _run(world, lambda p: world.alice.post("/api/v1/uploads", json={"path": p, "size": 3, "sha256": sha}))


def test_symlink_inside_root_is_not_listed_nor_followed_out(world):
    names = [e["name"] for e in world.alice.get("/api/v1/files").json()["items"]]
    assert "evil" not in names
