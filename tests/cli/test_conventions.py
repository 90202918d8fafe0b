"""The CLI conventions (README "CLI conventions"): --json on every read command with the API's
objects, whole rows when piped, rm asks, one-line errors with exit codes, no silent admin token,
help without type tags, the shipped sample."""

from __future__ import annotations

import json

import pytest

from tests.cli.conftest import chat_jsonl, put_file
from tests.conftest import InProcessTransport, sdk_for
from tests.harness import free_port

READ_VERBS = {"ls", "show", "metrics", "versions", "resolve", "stat", "usage", "uploads", "algorithms", "nodes",
              "pools", "flavors", "whoami", "hparams"}


def _commands():
    import typer

    from modelyard.cli.main import app

    root = typer.main.get_command(app)
    for name, cmd in root.commands.items():
        subs = getattr(cmd, "commands", None)
        if subs:
            for sub_name, sub in subs.items():
                yield f"{name} {sub_name}", sub_name, sub
        else:
            yield name, name, cmd


def test_every_read_command_takes_json_and_help_has_no_type_tags(cli):
    seen = set()
    for path, verb, cmd in _commands():
        opts = {o for p in cmd.params for o in getattr(p, "opts", [])}
        if verb in READ_VERBS:
            seen.add(path)
            assert "--json" in opts, f"`modelyard {path}` has no --json"
        assert "--set" not in {o for p in cmd.params if not getattr(p, "hidden", False) for o in p.opts}, path
        if "-f" in opts:  # -f is --follow everywhere, never --file
            assert any(p.opts[:2] in (["--follow", "-f"], ["-f", "--follow"]) or
                       set(p.opts) == {"--follow", "-f"} for p in cmd.params), path
    assert {"jobs ls", "models show", "datasets ls", "search show", "quota ls", "tokens ls", "users ls",
            "hparams", "whoami", "images ls", "files ls"} <= seen
    assert "quota list" not in {p for p, _, _ in _commands()}
    for args in (["search", "create", "--help"], ["finetune", "--help"], ["jobs", "run", "--help"]):
        out = cli(None, *args, env={"COLUMNS": "200"}).output
        for tag in ("<bool>", "<str>", "<int>", "<float>", "--no-no-"):
            assert tag not in out, (args, tag)
    out = cli(None, "finetune", "--help", env={"COLUMNS": "200"}).output
    assert "modelyard hparams" in out and "lora | full | qlora | pretrain" in out
    assert "--early-stopping" in cli(None, "search", "create", "--help", env={"COLUMNS": "200"}).output


def test_json_is_the_api_and_piped_tables_keep_whole_rows(cli, alice, settings):
    long_name = "a-dataset-name-long-enough-to-be-cut-at-eighty-columns-" + "x" * 30
    put_file(settings, alice, "Data/train/train.jsonl", chat_jsonl())
    cli(alice, "datasets", "create", long_name, "--path", "Data")
    api = alice.get("/api/v1/datasets").json()["items"]
    assert cli.json(alice, "datasets", "ls") == json.loads(json.dumps(api))
    one = cli.json(alice, "datasets", "show", long_name)
    assert one == alice.get(f"/api/v1/datasets/{api[0]['id']}").json()
    assert cli.json(alice, "datasets", "show", f"{long_name}:1") == \
        alice.get(f"/api/v1/datasets/{api[0]['id']}/versions/1").json()
    assert cli.json(alice, "whoami") == alice.get("/api/v1/users/me").json()
    assert cli.json(alice, "quota", "show") == alice.get("/api/v1/quotas/me").json()
    assert cli.json(alice, "tokens", "ls") == alice.get("/api/v1/tokens").json()
    assert cli.json(alice, "files", "ls", "Data/train")[0]["name"] == "train.jsonl"
    algos = cli.json(alice, "search", "algorithms")
    assert algos == alice.get("/api/v1/searches/algorithms").json()["search_algo_list"]
    # piped: a header line, then one tab-separated line per object, nothing cut or wrapped
    lines = cli(alice, "datasets", "ls", env={"COLUMNS": "80"}).stdout.splitlines()
    assert lines[0].split("\t")[:2] == ["id", "name"]
    assert lines[1].split("\t")[:2] == [api[0]["id"], long_name]
    wide = cli(alice, "datasets", "ls", "-o", "wide").stdout.splitlines()
    assert len(wide[0].split("\t")) > len(lines[0].split("\t"))
    assert "-o takes 'wide'" in cli(alice, "datasets", "ls", "-o", "tall", code=2).output


def test_rm_asks_and_n_keeps_it(cli, alice, settings):
    put_file(settings, alice, "Data/train/train.jsonl", chat_jsonl())
    ds = cli.json(alice, "datasets", "create", "keep-me", "--path", "Data")
    r = cli(alice, "datasets", "rm", "keep-me", input="n\n", code=1)
    assert "delete dataset keep-me" in r.output
    assert alice.get(f"/api/v1/datasets/{ds['dataset_id']}").status_code == 200
    cli(alice, "datasets", "rm", "keep-me", input="y\n")
    assert alice.get(f"/api/v1/datasets/{ds['dataset_id']}").status_code == 404


def test_errors_are_one_line_with_an_exit_code(cli, alice):
    r = cli(alice, "datasets", "show", "no-such-dataset", code=1)
    assert r.output.count("\n") == 1 and r.output.startswith("error: not_found: ")
    assert "Traceback" not in r.output
    port = free_port()  # nothing listens there
    r = cli(None, "jobs", "ls", code=2, env={"MODELYARD_URL": f"http://127.0.0.1:{port}", "MODELYARD_TOKEN": "x"})
    assert r.output.count("\n") == 1 and f"http://127.0.0.1:{port}" in r.output
    assert "modelyard server" in r.output and "MODELYARD_URL" in r.output
    r = cli(None, "--debug", "jobs", "ls", code=2,
            env={"MODELYARD_URL": f"http://127.0.0.1:{port}", "MODELYARD_TOKEN": "x"})
    assert "Traceback" in r.output
    r = cli(alice, "finetune", "--model", "m", "--strategy", "LoRA-ish", code=2, env={"COLUMNS": "200"})
    assert "lora, full, qlora, pretrain" in r.output


def test_no_silent_admin_fallback(cli, admin, alice, tmp_path, monkeypatch):
    import modelyard.sdk
    from modelyard.sdk import APIError, Client

    home = tmp_path / "server-home"  # the server's machine: its first start saved the admin token here
    home.mkdir()
    (home / "admin.token").write_text(admin.token + "\n")
    monkeypatch.setenv("MODELYARD_HOME", str(home))
    monkeypatch.delenv("MODELYARD_TOKEN", raising=False)
    transport = InProcessTransport(admin.tc)
    c = Client("http://testserver", transport=transport)  # no token given or in the environment
    assert c.token is None
    with pytest.raises(APIError) as exc:
        c.whoami()
    assert exc.value.status == 401
    assert Client.local_admin("http://testserver", transport=transport).whoami()["name"] == "admin"

    class Wired(Client):  # the CLI's own client construction, routed to the test app
        def __init__(self, url=None, token=None, **kw):
            super().__init__("http://testserver", token, transport=transport)

    monkeypatch.setattr(modelyard.sdk, "Client", Wired)
    r = cli(None, "whoami")
    assert r.stdout.startswith("admin (admin")
    assert "using the local admin token from" in r.stderr and "set MODELYARD_TOKEN" in r.stderr
    monkeypatch.setenv("MODELYARD_TOKEN", alice.token)
    r = cli(None, "whoami")
    assert r.stdout.startswith("alice (user") and "admin token" not in r.stderr


def test_users_and_tokens(cli, admin, alice):
    out = cli(admin, "users", "create", "carol").stdout
    carol_token = out.strip().splitlines()[-1]
    carol = admin.tc.get("/api/v1/users/me", headers={"Authorization": f"Bearer {carol_token}"}).json()
    assert carol["name"] == "carol"
    assert {u["name"] for u in cli.json(admin, "users", "ls")} == {"admin", "alice", "carol"}
    t = cli.json(alice, "tokens", "create", "laptop")
    assert t["name"] == "laptop" and t["token"]
    auth = {"Authorization": f"Bearer {t['token']}"}
    assert alice.tc.get("/api/v1/users/me", headers=auth).json()["name"] == "alice"
    assert "laptop" in cli(alice, "tokens", "ls").stdout
    cli(alice, "tokens", "rm", t["id"], input="n\n", code=1)
    assert alice.tc.get("/api/v1/users/me", headers=auth).status_code == 200
    cli(alice, "tokens", "rm", t["id"], "-y")
    assert alice.tc.get("/api/v1/users/me", headers=auth).status_code == 401
    assert "laptop" not in cli(alice, "tokens", "ls").stdout
    # users rm (admin; by name): needs DELETE /api/v1/users/{ref}
    r = cli(alice, "users", "rm", "carol", "-y", code=1)
    assert r.output.startswith("error: ")
    cli(admin, "users", "rm", "carol", "-y")
    assert "carol" not in {u["name"] for u in cli.json(admin, "users", "ls")}


def test_samples_ship_with_the_package(cli, tmp_path):
    from importlib import resources

    rows = cli.json(None, "samples", "ls")
    assert rows[0]["name"] == "chat-demo" and 40 <= rows[0]["rows"] <= 80
    out = tmp_path / "train.jsonl"
    cli(None, "samples", "get", "chat-demo", out)
    data = out.read_bytes()
    assert data == resources.files("modelyard.samples").joinpath("chat-demo.jsonl").read_bytes()
    lines = data.decode().splitlines()
    assert len(lines) == rows[0]["rows"]
    questions = set()
    for line in lines:
        msgs = json.loads(line)["messages"]
        assert msgs[-1]["role"] == "assistant" and msgs[-2]["role"] == "user" and msgs[-1]["content"].strip()
        questions.add(msgs[-2]["content"])
    assert len(questions) == len(lines)  # varied: no repeated question
    assert "exists" in cli(None, "samples", "get", "chat-demo", out, code=2).output
    cli(None, "samples", "get", "chat-demo", tmp_path)  # a folder: NAME.jsonl inside it
    assert (tmp_path / "chat-demo.jsonl").read_bytes() == data


def test_hparams_lists_the_api_table(cli, alice):
    api = alice.get("/api/v1/hparams").json()
    assert cli.json(alice, "hparams") == api
    lines = cli(alice, "hparams").stdout.splitlines()
    assert lines[0].split("\t")[:3] == ["name", "type", "default"]
    names = {line.split("\t")[0] for line in lines[1:]}
    assert {"learning_rate", "max_steps"} <= names and len(names) == len(api["hyperparameters"])
    lora = alice.get("/api/v1/hparams", params={"strategy": "lora"}).json()
    assert cli.json(alice, "hparams", "--strategy", "lora") == lora
    assert "lora_r" in {h["name"] for h in lora["hyperparameters"]}


def test_sdk_client_without_token_sends_none(alice, monkeypatch):
    monkeypatch.delenv("MODELYARD_TOKEN", raising=False)
    sent = []

    class Recording(InProcessTransport):
        def handle_request(self, request):
            sent.append(request.headers.get("authorization"))
            return super().handle_request(request)

    from modelyard.sdk import APIError, Client

    c = Client("http://testserver", transport=Recording(alice.tc))
    with pytest.raises(APIError) as exc:
        c.whoami()
    assert exc.value.status == 401
    assert sent == [None]
    assert sdk_for(alice).whoami()["name"] == "alice"
