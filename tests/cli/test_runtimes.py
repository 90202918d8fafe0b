"""`modelyard runtimes ls|show|install` against the in-process server, through the root group (the
shared client, one-line errors). The vllm requirement set is swapped for a local tiny wheel (no
network in tests): the install, the background preparation, the polled progress lines and the
final state are the real ones."""

from __future__ import annotations

from modelyard.server.services import runtimes as runtimes_svc
from modelyard.server.services.runtimes import catalog
from tests.server.services.runtimes.wheels import build_wheel


def test_ls_show_and_install_with_progress(cli, admin, alice, monkeypatch, tmp_path, settings):
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "fakevllm", "0.1", "X = 1\n")
    monkeypatch.setattr(catalog, "vllm_spec", lambda s, cuda=None: runtimes_svc.EnvSpec(
        requirements=("fakevllm",), index_url=str(wheels), label="vllm-test"))
    api = alice.get("/api/v1/runtimes").json()["items"]
    assert cli.json(alice, "runtimes", "ls") == api
    rows = {x["name"]: x for x in api}
    assert rows["vllm"]["status"] == "absent" and rows["transformers"]["ready"]
    assert cli.json(alice, "runtimes", "show", "vllm") == alice.get("/api/v1/runtimes/vllm").json()
    # piped: a header line, then one whole tab-separated row per runtime; -o wide adds columns
    lines = cli(alice, "runtimes", "ls", env={"COLUMNS": "40"}).stdout.splitlines()
    assert lines[0].split("\t") == ["name", "kind", "status", "size", "how to prepare"]
    vllm = next(line.split("\t") for line in lines[1:] if line.startswith("vllm\t"))
    assert vllm[2] == "absent" and vllm[4] == rows["vllm"]["prepare"]  # the hint whole, not cut
    wide = cli(alice, "runtimes", "ls", "-o", "wide").stdout.splitlines()
    assert len(wide[0].split("\t")) > len(lines[0].split("\t"))
    assert "fakevllm" in next(line.split("\t") for line in wide if line.startswith("vllm\t"))
    shown = dict(line.split("\t", 1) for line in cli(alice, "runtimes", "show", "vllm").stdout.splitlines()[1:])
    assert shown["status"] == "absent" and shown["requirements"] == "fakevllm" and shown["label"] == "vllm-test"
    # failures: one line and exit 1 through the root group
    r = cli(alice, "runtimes", "show", "nosuch", code=1)
    assert r.output.count("\n") == 1 and r.output.startswith("error: runtime_not_found: ")
    r = cli(alice, "runtimes", "install", "vllm", code=1)  # alice is no admin
    assert r.output.count("\n") == 1 and r.output.startswith("error: ")
    assert not runtimes_svc.is_ready(settings, "vllm")
    r = cli(admin, "runtimes", "install", "vllm", "--poll", "0.2")
    assert "vllm: " in r.stdout  # progress lines (not a TTY)
    assert "vllm is ready" in r.stdout
    assert runtimes_svc.is_ready(settings, "vllm")
    assert cli.json(admin, "runtimes", "show", "vllm")["status"] == "ready"
    lines = cli(alice, "runtimes", "ls").stdout.splitlines()
    assert next(line.split("\t") for line in lines if line.startswith("vllm\t"))[2] == "ready"
    # installing what is ready (or built in) answers at once, without following
    r = cli(admin, "runtimes", "install", "transformers", "--no-follow")
    assert r.stdout.startswith("transformers: ready")


def test_a_failed_install_is_one_error_line_and_exit_1(cli, admin, monkeypatch, tmp_path, settings):
    empty = tmp_path / "wheels"
    empty.mkdir()  # an index with nothing in it: the preparation fails for real
    monkeypatch.setattr(catalog, "vllm_spec", lambda s, cuda=None: runtimes_svc.EnvSpec(
        requirements=("nosuchpkg-anywhere",), index_url=str(empty), label="vllm-missing"))
    r = cli(admin, "runtimes", "install", "vllm", "--poll", "0.2", code=1)
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: runtime_failed: preparing vllm ended failed: ")
    assert cli.json(admin, "runtimes", "show", "vllm")["status"] == "failed"
    assert not runtimes_svc.is_ready(settings, "vllm")
