"""`modelyard files ...` against an in-process server: ls, upload (progress, resume), download,
mkdir, mv, rm, extract, usage, uploads, abort."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile

import pytest
from typer.testing import CliRunner

from modelyard.cli import files as cli
from tests.conftest import sdk_for


@pytest.fixture
def run(alice, monkeypatch):
    monkeypatch.setattr(cli, "_client", lambda: sdk_for(alice))
    runner = CliRunner()

    def invoke(*args: str, code: int = 0):
        res = runner.invoke(cli.app, list(args))
        assert res.exit_code == code, res.output + repr(res.exception)
        return res.output

    return invoke


def test_cli_round_trip(run, alice, settings, tmp_path):
    root = settings.users_root / alice.id
    local = tmp_path / "weights.bin"
    local.write_bytes(os.urandom(300_000))
    out = run("upload", str(local), "/Model/", "--chunk-mib", "1")
    assert "stored Model/weights.bin" in out
    assert (root / "Model/weights.bin").read_bytes() == local.read_bytes()
    assert "weights.bin" in run("ls", "/Model")
    assert "Data/" in run("ls") or "Data" in run("ls")
    run("mkdir", "/Model/old")
    run("mv", "Model/weights.bin", "Model/old/w.bin")
    assert (root / "Model/old/w.bin").exists()
    back = tmp_path / "back.bin"
    run("download", "Model/old/w.bin", str(back))
    assert back.read_bytes() == local.read_bytes()
    assert "is a directory" in run("rm", "Model/old", code=1)
    assert "deleted Model/old" in run("rm", "-r", "-y", "Model/old")
    assert not (root / "Model/old").exists()
    # a directory upload, then extract
    d = tmp_path / "ds"
    (d / "train").mkdir(parents=True)
    (d / "train/a.jsonl").write_text('{"instruction": "hi", "output": "yo"}\n')
    run("upload", str(d), "Data/ds")
    assert (root / "Data/ds/train/a.jsonl").exists()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("code/train.py")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"print"))
    arc = tmp_path / "code.tar.gz"
    arc.write_bytes(buf.getvalue())
    run("upload", str(arc), "Code/")
    assert "extracted 1 files" in run("extract", "Code/code.tar.gz")
    assert (root / "Code/code/code/train.py").read_bytes() == b"print"
    assert "files" in run("usage")
    assert "sha256" in run("stat", "Code/code.tar.gz")


def test_cli_upload_resumes_an_interrupted_upload(run, alice, settings, tmp_path):
    local = tmp_path / "big.bin"
    data = os.urandom(3 * 1024 * 1024 + 5)
    local.write_bytes(data)
    cs = 1024 * 1024
    # an earlier, interrupted run: the session exists with its first two chunks
    s = alice.post("/api/v1/uploads", json={"path": "Model/big.bin", "size": len(data), "chunk_size": cs,
                                            "sha256": hashlib.sha256(data).hexdigest()}).json()
    for i in (0, 1):
        alice.put(f"/api/v1/uploads/{s['id']}/chunks/{i}", content=data[i * cs:(i + 1) * cs])
    assert s["id"] in run("uploads")
    out = run("upload", str(local), "Model/big.bin", "--chunk-mib", "1")
    flat = " ".join(out.split())
    assert f"resuming upload {s['id']}" in flat and "2.0 MiB of 3.0 MiB already on the server" in flat
    assert (settings.users_root / alice.id / "Model/big.bin").read_bytes() == data
    # abort
    s = alice.post("/api/v1/uploads", json={"path": "Model/other.bin", "size": 10, "sha256": "0" * 64}).json()
    assert "aborted" in run("abort", s["id"])
    assert alice.get(f"/api/v1/uploads/{s['id']}").json()["state"] == "aborted"
