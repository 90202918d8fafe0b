"""`modelyard runtimes ls|install` against the in-process server. The vllm requirement set is
swapped for a local tiny wheel (no network in tests): the install, the background preparation,
the polled progress lines and the final state are the real ones."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from modelyard.cli import runtimes as cli
from modelyard.server.services import runtimes as runtimes_svc
from modelyard.server.services.runtimes import catalog
from tests.conftest import sdk_for
from tests.server.services.runtimes.wheels import build_wheel


def test_ls_and_install_with_progress(admin, alice, monkeypatch, tmp_path, settings):
    wheels = tmp_path / "wheels"
    build_wheel(wheels, "fakevllm", "0.1", "X = 1\n")
    monkeypatch.setattr(catalog, "vllm_spec", lambda s, cuda=None: runtimes_svc.EnvSpec(
        requirements=("fakevllm",), index_url=str(wheels), label="vllm-test"))
    runner = CliRunner()
    monkeypatch.setattr(cli, "_client", lambda: sdk_for(alice))
    r = runner.invoke(cli.app, ["ls", "--json"])
    rows = {x["name"]: x for x in json.loads(r.stdout)}
    assert rows["vllm"]["status"] == "absent" and rows["transformers"]["ready"]
    r = runner.invoke(cli.app, ["install", "vllm"])
    assert r.exit_code != 0  # alice is no admin
    monkeypatch.setattr(cli, "_client", lambda: sdk_for(admin))
    r = runner.invoke(cli.app, ["install", "vllm", "--poll", "0.2"])
    assert r.exit_code == 0, r.stdout
    assert "vllm: " in r.stdout  # progress lines (not a TTY)
    assert "vllm is ready" in r.stdout
    assert runtimes_svc.is_ready(settings, "vllm")
    r = runner.invoke(cli.app, ["ls"])
    assert "vllm" in r.stdout and "ready" in r.stdout
