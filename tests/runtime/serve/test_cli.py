"""The replica's command line: bad argv exits 2 with a reason; weights that cannot load end the
process with status 3 and the reason in its output, instead of a replica that never gets ready."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def serve(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelyard.runtime.serve", *argv], capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("argv,says", [
    (["--model", "/nonexistent", "--uds", "/tmp/x.sock"], "no config.json"),
    (["--model", "{model}"], "one of the arguments --uds --host is required"),
    (["--model", "{model}", "--host", "127.0.0.1"], "--host needs --port"),
    (["--model", "{model}", "--uds", "/tmp/x.sock", "--adapter", "nopath"], "expected NAME=PATH"),
    (["--model", "{model}", "--uds", "/tmp/x.sock", "--adapter", "a={model}"], "no adapter_config.json"),
    (["--model", "{model}", "--uds", "/tmp/x.sock", "--dtype", "int3"], "invalid choice"),
])
def test_bad_argv_exits_2_with_a_reason(tiny_dirs, argv, says):
    r = serve(*[a.replace("{model}", str(tiny_dirs[0])) for a in argv], timeout=60)
    assert r.returncode == 2 and says in r.stderr, r.stderr


def test_weights_that_cannot_load_exit_3(tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 64}))
    sock = tmp_path / "r.sock"
    r = serve("--model", str(broken), "--uds", str(sock))
    assert r.returncode == 3, r.stderr[-2000:]
    assert "modelyard.runtime.serve:" in r.stderr
    assert not sock.exists()
