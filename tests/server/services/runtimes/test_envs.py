"""Prepared environments: built with uv from a local wheel (no network), cached by hash, atomic,
serialized, with a status on disk."""

from __future__ import annotations

import json
import subprocess
import threading

import pytest

from modelyard.core.errors import BadRequest
from modelyard.server.services.runtimes import EnvSpec, env_dir, env_status, envs_root, prepare_env
from tests.server.services.runtimes.wheels import build_wheel


@pytest.fixture
def wheels(tmp_path):
    d = tmp_path / "wheels"
    build_wheel(d, "tinypkg", "1.0", "VALUE = 'tiny-one'\n")
    return d


def test_key_ignores_order_case_and_spaces_but_not_python():
    a = EnvSpec(requirements=("Foo==1", "bar>=2"))
    b = EnvSpec(requirements=("bar >= 2", "foo==1"))
    assert a.key == b.key
    assert EnvSpec(requirements=("foo==1",), python="3.99").key != EnvSpec(requirements=("foo==1",)).key
    assert EnvSpec(requirements=("foo==1",), index_url="/x").key != EnvSpec(requirements=("foo==1",)).key


def test_prepare_installs_from_a_local_wheel_folder_and_is_cached(settings, wheels):
    spec = EnvSpec(requirements=("tinypkg==1.0",), index_url=str(wheels))
    assert env_status(settings, spec)["state"] == "absent"
    seen = []
    st = prepare_env(settings, spec, progress=lambda s: seen.append(s["state"]))
    assert st["state"] == "ready" and st["size_bytes"] > 0
    assert seen[0] == "preparing" and seen[-1] == "ready"
    path = env_dir(settings, spec)
    out = subprocess.run([str(path / "bin" / "python"), "-c", "import tinypkg; print(tinypkg.VALUE)"],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "tiny-one"
    on_disk = json.loads((envs_root(settings) / f"{spec.key}.json").read_text())
    assert on_disk["state"] == "ready" and on_disk["spec"]["requirements"] == ["tinypkg==1.0"]
    assert not list(envs_root(settings).glob("*.tmp-*"))
    # second prepare: nothing rebuilt
    again = prepare_env(settings, spec)
    assert again["started_at"] == st["started_at"]


def test_concurrent_prepares_build_once(settings, wheels):
    spec = EnvSpec(requirements=("tinypkg",), index_url=str(wheels))
    results = []
    threads = [threading.Thread(target=lambda: results.append(prepare_env(settings, spec))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r["state"] for r in results] == ["ready", "ready"]
    assert results[0]["started_at"] == results[1]["started_at"]


def test_failed_install_leaves_no_env_and_keeps_the_log_tail(settings, wheels):
    spec = EnvSpec(requirements=("no-such-package-xyz",), index_url=str(wheels))
    with pytest.raises(BadRequest) as err:
        prepare_env(settings, spec)
    assert err.value.code == "environment_failed"
    st = env_status(settings, spec)
    assert st["state"] == "failed" and "no-such-package-xyz" in st["log_tail"]
    assert not env_dir(settings, spec).exists()
    assert not list(envs_root(settings).glob("*.tmp-*"))


def test_a_preparing_status_without_its_preparer_reads_as_interrupted(settings):
    spec = EnvSpec(requirements=("tinypkg",))
    envs_root(settings).mkdir(parents=True)
    (envs_root(settings) / f"{spec.key}.json").write_text(json.dumps({"state": "preparing", "progress": {}}))
    st = env_status(settings, spec)
    assert st["state"] == "failed" and "interrupted" in st["error"]


def test_unavailable_python_is_refused(settings, wheels):
    spec = EnvSpec(requirements=("tinypkg",), index_url=str(wheels), python="2.6")
    with pytest.raises(BadRequest) as err:
        prepare_env(settings, spec)
    assert err.value.code == "python_unavailable"
    assert env_status(settings, spec)["state"] == "failed"
