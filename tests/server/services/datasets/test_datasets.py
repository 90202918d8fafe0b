"""Datasets: every shape and format, malformed rows refused with file and line, immutable versions,
cross-user access, in-use deletion, and the resolve_dataset_version / read_rows contract."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path

import pytest

from tests.conftest import sdk_for

ALPACA = [{"instruction": f"Add {i} and {i}", "input": "", "output": str(2 * i)} for i in range(12)]
CHAT = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Say {i}"},
                      {"role": "assistant", "content": str(i)}]} for i in range(8)]
SHAREGPT = [{"conversations": [{"from": "human", "value": f"hi {i}"}, {"from": "gpt", "value": f"hello {i}"}]}
            for i in range(6)]
TEXT = [{"text": f"Document number {i}. " * 3} for i in range(7)]


def ufile(settings, user, rel: str) -> Path:
    p = settings.users_root / user.id / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


def jsonl(rows) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


def write(settings, user, rel: str, content: str | bytes) -> Path:
    p = ufile(settings, user, rel)
    p.write_bytes(content.encode() if isinstance(content, str) else content)
    return p


def write_csv(settings, user, rel: str, rows: list[dict]) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    for r in rows:
        w.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()})
    return write(settings, user, rel, buf.getvalue())


def write_parquet(settings, user, rel: str, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = ufile(settings, user, rel)
    pq.write_table(pa.Table.from_pylist(rows), p)
    return p


def create(client, name: str, **body):
    return client.post("/api/v1/datasets", json={"name": name, **body})


def sha_file(p) -> str:
    return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def test_alpaca_from_seed_data_folder(alice, settings):
    write(settings, alice, "Data/train/train.jsonl", jsonl(ALPACA[:10]))
    write(settings, alice, "Data/validate/val.jsonl", jsonl(ALPACA[10:]))
    write(settings, alice, "Data/test/test.jsonl", jsonl(ALPACA[:1]))
    write(settings, alice, "Data/README.md", "not data")
    r = create(alice, "alpaca-demo", path="Data", description="sums")
    assert r.status_code == 201, r.text
    body = r.json()
    v = body["version"]
    assert body["name"] == "alpaca-demo" and body["versions_count"] == 1
    assert v["version"] == 1 and v["shape"] == "alpaca" and v["format"] == "jsonl"
    assert v["rows"] == {"train": 10, "validate": 2, "test": 1} and v["total_rows"] == 13
    assert v["preview"]["train"] == ALPACA[:5] and v["preview"]["validate"] == ALPACA[10:]
    assert {f["source"] for f in v["files"]} == {"Data/train/train.jsonl", "Data/validate/val.jsonl",
                                                  "Data/test/test.jsonl"}
    # immutable copies under datasets_dir/<id>/1/<split>/, with their sha256
    for f in v["files"]:
        copy = settings.datasets_dir / body["id"] / "1" / f["split"] / f["name"]
        assert copy.is_file() and sha_file(copy) == f["sha256"] and copy.stat().st_size == f["size"]
        assert not os.access(copy, os.W_OK) or os.geteuid() == 0
        assert (copy.stat().st_mode & 0o222) == 0
    # detail, list, versions, version detail
    d = alice.get(f"/api/v1/datasets/{body['id']}").json()
    assert d["latest_version"]["version"] == 1 and len(d["versions"]) == 1
    assert alice.get("/api/v1/datasets/alpaca-demo").json()["id"] == body["id"]  # by name
    page = alice.get("/api/v1/datasets", params={"page": 1, "page_size": 5}).json()
    assert page["total"] == 1 and page["items"][0]["latest_version"]["rows"]["train"] == 10
    assert alice.get(f"/api/v1/datasets/{body['id']}/versions").json()[0]["version"] == 1
    vd = alice.get(f"/api/v1/datasets/{body['id']}/versions/1").json()
    assert vd["preview"]["test"] == ALPACA[:1] and vd["id"] == v["id"]
    assert alice.get(f"/api/v1/datasets/{body['id']}/versions/latest").json()["id"] == v["id"]
    rows = alice.get(f"/api/v1/datasets/{body['id']}/versions/1/rows",
                     params={"split": "train", "offset": 8, "limit": 5}).json()
    assert rows["rows"] == ALPACA[8:10] and rows["total"] == 10


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "parquet"])
def test_formats_and_shapes(alice, settings, fmt):
    cases = {"alpaca": (ALPACA, "alpaca", ""), "chat": (CHAT, "chat", "messages"),
             "sharegpt": (SHAREGPT, "chat", "sharegpt"), "text": (TEXT, "text", "")}
    for key, (rows, shape, chat_format) in cases.items():
        rel = f"up/{key}.{fmt}"
        if fmt == "jsonl":
            write(settings, alice, rel, jsonl(rows))
        elif fmt == "json":
            write(settings, alice, rel, json.dumps(rows, indent=1))
        elif fmt == "csv":
            write_csv(settings, alice, rel, rows)
        else:
            write_parquet(settings, alice, rel, rows)
        r = create(alice, f"{key}-{fmt}", path=rel)
        assert r.status_code == 201, (key, fmt, r.text)
        v = r.json()["version"]
        assert (v["shape"], v["chat_format"], v["format"]) == (shape, chat_format, fmt)
        assert v["rows"] == {"train": len(rows), "validate": 0, "test": 0}
        assert v["preview"]["train"][0] == rows[0]
        # read_rows gives the runtime the same rows back (csv chats decoded from their JSON cells)
        from modelyard.server.services.datasets import read_rows

        got = list(read_rows(settings.datasets_dir / r.json()["id"] / "1" / "train" / f"{key}.{fmt}"))
        assert got == rows


def test_plain_text_lines_and_explicit_splits(alice, settings):
    write(settings, alice, "corpus/a.txt", "first line\n\nsecond line\nthird\n")
    write(settings, alice, "corpus/b.txt", "fourth\n")
    write(settings, alice, "heldout.txt", "held out\n")
    r = create(alice, "corpus", train="corpus", validate="heldout.txt")
    assert r.status_code == 201, r.text
    v = r.json()["version"]
    assert v["shape"] == "text" and v["format"] == "txt"
    assert v["rows"] == {"train": 4, "validate": 1, "test": 0}
    assert v["preview"]["train"][:2] == [{"text": "first line"}, {"text": "second line"}]


def test_split_named_files_and_mixed_formats(alice, settings):
    write(settings, alice, "ds/train.jsonl", jsonl(CHAT[:5]))
    write(settings, alice, "ds/validation.json", json.dumps(CHAT[5:]))
    r = create(alice, "mixed", path="ds")
    assert r.status_code == 201, r.text
    v = r.json()["version"]
    assert v["format"] == "mixed" and v["rows"] == {"train": 5, "validate": 3, "test": 0}


@pytest.mark.parametrize("rel,content,expected", [
    ("Data/train/train.jsonl", jsonl(ALPACA[:6]) + "{not json\n" + jsonl(ALPACA[:2]),
     "Data/train/train.jsonl line 7: invalid JSON"),
    ("Data/train/train.jsonl", jsonl(ALPACA[:2]) + json.dumps({"instruction": "x", "input": ""}) + "\n",
     "Data/train/train.jsonl line 3: missing 'output'"),
    ("Data/train/train.jsonl", jsonl(ALPACA[:1]) + "\n\n" + json.dumps({"instruction": 5, "output": "x"}) + "\n",
     "line 4: 'instruction' must be a string"),
    ("Data/train/train.jsonl", jsonl(ALPACA[:1]) + "[1, 2]\n", "line 2: expected a JSON object"),
    ("Data/train/chat.jsonl", jsonl(CHAT[:4]) + json.dumps({"messages": [{"role": "bot", "content": "x"}]}) + "\n",
     "chat.jsonl line 5: messages[0]: unknown role 'bot'"),
    ("Data/train/chat.jsonl", json.dumps({"messages": [{"role": "user", "content": "only a question"}]}) + "\n",
     "chat.jsonl line 1: 'messages' has no assistant turn"),
    ("Data/train/sg.jsonl", jsonl(SHAREGPT[:2]) + json.dumps({"conversations": [{"from": "gpt"}]}) + "\n",
     "sg.jsonl line 3: conversations[0]: missing 'value'"),
    ("Data/train/t.jsonl", jsonl(TEXT[:3]) + json.dumps({"text": "   "}) + "\n", "t.jsonl line 4: 'text' is empty"),
    ("Data/train/weird.jsonl", json.dumps({"question": "q", "answer": "a"}) + "\n",
     "weird.jsonl line 1: cannot tell the dataset's shape"),
    ("Data/train/arr.json", json.dumps([ALPACA[0], "oops"]), "arr.json row 2: expected a JSON object"),
    ("Data/train/arr.json", '[\n{"instruction": "a", "output": "b"},\n{"instruction": }\n]',
     "arr.json line 3: invalid JSON"),
    ("Data/train/bad.csv", "instruction,input,output\na,,b\nc,d\n", "bad.csv line 3: fewer fields"),
    ("Data/train/bad2.csv", "instruction,input,output\na,,b\nc,d,e,f\n", "bad2.csv line 3: more fields"),
    ("Data/train/utf.jsonl", jsonl(ALPACA[:1]).encode() + b'{"instruction": "\xff\xfe"}\n',
     "utf.jsonl line 2: not valid UTF-8"),
    ("Data/train/empty.jsonl", "\n\n", "the training split has no rows"),
    ("Data/train/x.parquet", b"PAR1 not really", "x.parquet: not a valid Parquet file"),
])
def test_malformed_rows_are_refused_with_file_and_line(alice, settings, rel, content, expected):
    write(settings, alice, rel, content)
    r = create(alice, "bad", path="Data")
    assert r.status_code == 400, r.text
    assert expected in r.json()["error"]["message"], r.json()
    # nothing was left behind
    assert alice.get("/api/v1/datasets").json()["total"] == 0
    assert list(settings.datasets_dir.iterdir()) == []


def test_missing_paths_and_empty_folders(alice, settings):
    r = create(alice, "none", path="Nope")
    assert r.status_code == 400 and r.json()["error"]["code"] == "path_not_found"
    r = create(alice, "empty", path="Data")  # the seed layout, still empty
    assert r.status_code == 400 and "no training data" in r.json()["error"]["message"]
    write(settings, alice, "f/notes.md", "x")  # .md is text, one row per line (core.formats)
    assert create(alice, "md", path="f/notes.md").json()["version"]["shape"] == "text"
    write(settings, alice, "f/notes.pdf", "x")
    r = create(alice, "pdf", path="f/notes.pdf")
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_format"
    assert create(alice, "bad name!", path="Data").json()["error"]["code"] == "invalid_name"
    assert create(alice, "both", path="Data", train="Data/train").status_code == 400


def test_traversal_and_symlinks_out_of_root(alice, bob, settings):
    write(settings, bob, "Data/train/secret.jsonl", jsonl(ALPACA))
    for bad in ["../" + bob.id + "/Data", "/../x", "Data/../../" + bob.id, "a\\b", "x\x00y"]:
        r = create(alice, "evil", path=bad)
        assert r.status_code == 400, (bad, r.text)
    # a symlink inside alice's folder that points into bob's files
    d = ufile(settings, alice, "Data/train/x").parent
    os.symlink(settings.users_root / bob.id / "Data/train/secret.jsonl", d / "link.jsonl")
    r = create(alice, "evil", path="Data")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_path"
    assert list(settings.datasets_dir.iterdir()) == []


def test_versions_are_immutable(alice, settings):
    src = write(settings, alice, "Data/train/train.jsonl", jsonl(ALPACA[:4]))
    body = create(alice, "imm", path="Data").json()
    v1 = body["version"]
    copy = settings.datasets_dir / body["id"] / "1" / "train" / "train.jsonl"
    before = sha_file(copy)
    assert before == v1["files"][0]["sha256"] == sha_file(src)
    # the source changes: version 1 does not
    src.write_text(jsonl(ALPACA[:9]))
    assert sha_file(copy) == before
    again = alice.get(f"/api/v1/datasets/{body['id']}/versions/1").json()
    assert again["rows"]["train"] == 4 and again["files"][0]["sha256"] == before
    # new data = a new version
    r = alice.post(f"/api/v1/datasets/{body['id']}/versions", json={"path": "Data", "description": "more"})
    assert r.status_code == 201, r.text
    v2 = r.json()
    assert v2["version"] == 2 and v2["rows"]["train"] == 9 and v2["files"][0]["sha256"] == sha_file(src)
    assert sha_file(copy) == before
    assert alice.get(f"/api/v1/datasets/{body['id']}").json()["latest_version"]["version"] == 2
    # versions cannot be changed in place (no route), only deleted
    assert alice.patch(f"/api/v1/datasets/{body['id']}/versions/1", json={"description": "x"}).status_code == 405
    assert alice.delete(f"/api/v1/datasets/{body['id']}/versions/1").status_code == 204
    assert not copy.exists()
    assert [x["version"] for x in alice.get(f"/api/v1/datasets/{body['id']}/versions").json()] == [2]
    # numbers are never reused
    r = alice.post(f"/api/v1/datasets/{body['id']}/versions", json={"train": "Data/train/train.jsonl"})
    assert r.json()["version"] == 3


def test_cross_user_access(alice, bob, admin, settings):
    write(settings, alice, "Data/train/train.jsonl", jsonl(ALPACA))
    ds = create(alice, "private", path="Data").json()
    write(settings, bob, "Data/train/train.jsonl", jsonl(ALPACA[:3]))
    for path in [f"/api/v1/datasets/{ds['id']}", f"/api/v1/datasets/{ds['id']}/versions",
                 f"/api/v1/datasets/{ds['id']}/versions/1", f"/api/v1/datasets/{ds['id']}/versions/1/rows",
                 "/api/v1/datasets/private"]:
        assert bob.get(path).status_code == 404, path
    assert bob.get("/api/v1/datasets").json()["total"] == 0
    assert bob.delete(f"/api/v1/datasets/{ds['id']}").status_code == 404
    assert bob.delete(f"/api/v1/datasets/{ds['id']}/versions/1").status_code == 404
    assert bob.post(f"/api/v1/datasets/{ds['id']}/versions", json={"path": "Data"}).status_code == 404
    assert bob.patch(f"/api/v1/datasets/{ds['id']}", json={"is_public": True}).status_code == 404
    # the same name is free for bob
    assert create(bob, "private", path="Data").status_code == 201
    assert create(alice, "private", path="Data").status_code == 409
    # public: bob reads it but cannot change it
    assert alice.patch(f"/api/v1/datasets/{ds['id']}", json={"is_public": True}).status_code == 200
    assert bob.get(f"/api/v1/datasets/{ds['id']}/versions/1").status_code == 200
    assert bob.delete(f"/api/v1/datasets/{ds['id']}").status_code == 403
    assert bob.post(f"/api/v1/datasets/{ds['id']}/versions", json={"path": "Data"}).status_code == 403
    # admin sees everything
    assert admin.get("/api/v1/datasets").json()["total"] == 2


def test_resolve_dataset_version_and_in_use(alice, bob, settings):
    from modelyard.core.errors import InUse, NotFound
    from modelyard.server.auth import Principal
    from modelyard.server.db import session_scope
    from modelyard.server.services.common import references
    from modelyard.server.services.datasets import read_rows, resolve_dataset_version

    write(settings, alice, "Data/train/train.jsonl", jsonl(CHAT[:5]))
    write(settings, alice, "Data/validate/v.jsonl", jsonl(CHAT[5:]))
    ds = create(alice, "chatty", path="Data").json()
    v2 = alice.post(f"/api/v1/datasets/{ds['id']}/versions", json={"path": "Data"}).json()
    pa, pb = Principal(alice.id, "alice", "user"), Principal(bob.id, "bob", "user")
    sessions = alice.tc.app.state.ctx.sessions
    with session_scope(sessions, readonly=True) as s:
        for ref in ["chatty", ds["id"], v2["id"], "chatty:2", f"{ds['id']}:latest"]:
            v = resolve_dataset_version(s, pa, ref)
            assert v.id == v2["id"] and v.version == 2 and v.shape == "chat"
        v1 = resolve_dataset_version(s, pa, "chatty:1")
        assert v1.version == 1
        assert v1.splits["train"]["rows"] == 5 and v1.splits["validate"]["rows"] == 3
        assert v1.splits["test"] == {"rows": 0, "files": []}
        for f in v1.splits["train"]["files"] + v1.splits["validate"]["files"]:
            assert Path(f).is_absolute() and Path(f).is_file()
            assert str(settings.datasets_dir) in f
        assert [r for f in v1.splits["train"]["files"] for r in read_rows(f)] == CHAT[:5]
        for ref in ["chatty", ds["id"], v2["id"], "chatty:1"]:
            with pytest.raises(NotFound):
                resolve_dataset_version(s, pb, ref)
    # in use: deletion refused (409), version and dataset both
    blocked = {v1.id}
    check = references.checker("dataset_version")(lambda s, oid: "job j1" if oid in blocked else None)
    try:
        r = alice.delete(f"/api/v1/datasets/{ds['id']}/versions/1")
        assert r.status_code == 409 and r.json()["error"]["code"] == "in_use"
        assert alice.delete(f"/api/v1/datasets/{ds['id']}").status_code == 409
        with session_scope(sessions) as s, pytest.raises(InUse):
            references.ensure_unused(s, "dataset_version", v1.id)
    finally:
        references.remove_checker("dataset_version", check)
    assert alice.delete(f"/api/v1/datasets/{ds['id']}").status_code == 204
    assert not (settings.datasets_dir / ds["id"]).exists()
    assert alice.get(f"/api/v1/datasets/{ds['id']}").status_code == 404
    events = alice.get(f"/api/v1/events?object_type=dataset&object_id={ds['id']}")
    if events.status_code == 200:  # the events router (another domain) may list them
        assert events.json()


def test_sdk_and_cli(alice, settings, monkeypatch):
    from typer.testing import CliRunner

    from modelyard.cli import datasets as cli
    from modelyard.sdk import APIError

    client = sdk_for(alice)
    write(settings, alice, "Data/train/train.jsonl", jsonl(CHAT))
    ds = client.datasets.create("sdk-chat", "Data", description="via sdk")
    assert ds["version"]["shape"] == "chat" and ds["version"]["rows"]["train"] == len(CHAT)
    assert client.datasets.get("sdk-chat")["id"] == ds["id"]
    assert client.datasets.rows("sdk-chat", split="train", limit=2)["rows"] == CHAT[:2]
    with pytest.raises(APIError) as ei:
        client.datasets.create("sdk-bad", train="Data/nope.jsonl")
    assert ei.value.status == 400

    monkeypatch.setattr(cli, "_client", lambda: client)
    runner = CliRunner()
    r = runner.invoke(cli.app, ["ls"])
    assert r.exit_code == 0 and "sdk-chat" in r.output
    r = runner.invoke(cli.app, ["create", "sdk-chat", "--path", "Data"])  # exists: a new version
    assert r.exit_code == 0, r.output
    assert [v["version"] for v in client.datasets.versions("sdk-chat")] == [1, 2]
    r = runner.invoke(cli.app, ["show", "sdk-chat"])
    assert r.exit_code == 0 and "chat" in r.output and "train.jsonl" in r.output
    r = runner.invoke(cli.app, ["rm", "sdk-chat:1", "-y"])
    assert r.exit_code == 0, r.output
    r = runner.invoke(cli.app, ["rm", "sdk-chat", "-y"])
    assert r.exit_code == 0 and client.datasets.list()["total"] == 0


def test_versions_on_both_databases(any_db_make_user, any_db_settings):
    settings = any_db_settings
    alice, bob = any_db_make_user("alice"), any_db_make_user("bob")
    write(settings, alice, "Data/train/train.jsonl", jsonl(ALPACA))
    ds = create(alice, "db", path="Data").json()
    v2 = alice.post(f"/api/v1/datasets/{ds['id']}/versions", json={"path": "Data"}).json()
    assert v2["version"] == 2
    page = alice.get("/api/v1/datasets").json()
    assert page["total"] == 1 and page["items"][0]["latest_version"]["version"] == 2
    assert page["items"][0]["versions_count"] == 2
    assert bob.get(f"/api/v1/datasets/{ds['id']}").status_code == 404
    assert create(alice, "db", path="Data").status_code == 409
    assert alice.delete(f"/api/v1/datasets/{ds['id']}").status_code == 204
    assert not (settings.datasets_dir / ds["id"]).exists()
