"""The CLI through typer's runner against the in-process test app: `cli(user, *args)` runs
`modelyard ARGS` with the CLI's client acting as `user` (the shared wiring of every CLI test)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import sdk_for


class CLI:
    def __init__(self, monkeypatch):
        from modelyard.cli import _common

        self.monkeypatch = monkeypatch
        self.runner = CliRunner()
        self.real_make_client = _common.make_client

    def __call__(self, user, *args: str, input: str | None = None, code: int | None = 0, env: dict | None = None):
        """Run `modelyard ARGS` as `user` (None: the real client, from the environment). code=None: any exit."""
        from modelyard.cli import _common
        from modelyard.cli.main import app

        self.monkeypatch.setattr(_common, "make_client",
                                 self.real_make_client if user is None else (lambda: sdk_for(user)))
        _common.state.warned_admin = False
        r = self.runner.invoke(app, [str(a) for a in args], input=input, env=env)
        if code is not None:
            assert r.exit_code == code, (args, r.exit_code, r.output, r.exception)
        return r

    def json(self, user, *args: str):
        """`modelyard ARGS --json` parsed (stdout only)."""
        return json.loads(self(user, *args, "--json").stdout)


@pytest.fixture
def cli(monkeypatch) -> CLI:
    return CLI(monkeypatch)


def put_file(settings, user, rel: str, data: bytes | str) -> Path:
    """A file in the user's private root (what an upload would leave)."""
    p = settings.users_root / user.id / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return p


def chat_jsonl(n: int = 8) -> str:
    return "".join(json.dumps({"messages": [{"role": "user", "content": f"question {i}?"},
                                            {"role": "assistant", "content": f"answer {i}."}]}) + "\n"
                   for i in range(n))


def docker_save_tar(tag: str = "team/app:1.0") -> bytes:
    """A minimal `docker save` archive: one layer, a config, manifest.json."""
    def tar_of(entries: dict[str, bytes]) -> bytes:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tf:
            for name, data in entries.items():
                ti = tarfile.TarInfo(name)
                ti.size, ti.mtime, ti.mode = len(data), 0, 0o644
                tf.addfile(ti, io.BytesIO(data))
        return buf.getvalue()

    layer = tar_of({"app/hello.txt": b"hello\n"})
    diff = "sha256:" + hashlib.sha256(layer).hexdigest()
    cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["echo", "hi"]},
                      "rootfs": {"type": "layers", "diff_ids": [diff]}}).encode()
    cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
    return tar_of({"l1/layer.tar": layer, cfg_name: cfg,
                   "manifest.json": json.dumps([{"Config": cfg_name, "RepoTags": [tag],
                                                 "Layers": ["l1/layer.tar"]}]).encode()})
