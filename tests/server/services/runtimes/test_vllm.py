"""plan_vllm: refusal before preparation, the argv/env it plans, and (marked vllm) a real vLLM
replica started from the plan answering an OpenAI chat request."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from modelyard.core.errors import Conflict
from modelyard.server.services.runtimes import (
    env_dir,
    is_ready,
    list_runtimes,
    plan_vllm,
    runtime_status,
    vllm_spec,
)
from modelyard.server.settings import Settings


def _fake_ready(settings):
    """A vllm env folder with bin/python: the status reads ready (the argv is all we check here)."""
    d = env_dir(settings, vllm_spec(settings))
    (d / "bin").mkdir(parents=True)
    (d / "bin" / "python").symlink_to("/usr/bin/true")
    return d


def test_catalog_lists_transformers_ready_and_vllm_with_how_to_prepare(settings):
    rows = {r["name"]: r for r in list_runtimes(settings)}
    assert rows["transformers"]["ready"] is True and rows["transformers"]["kind"] == "builtin"
    assert rows["vllm"]["ready"] is False and rows["vllm"]["status"] == "absent"
    assert "modelyard runtimes install vllm" in rows["vllm"]["prepare"]
    assert is_ready(settings, "transformers") and not is_ready(settings, "vllm")


def test_plan_refuses_until_prepared(settings, tmp_path):
    with pytest.raises(Conflict) as err:
        plan_vllm(settings, model_path=str(tmp_path), adapters={}, served_names=["m"],
                  socket_path=str(tmp_path / "s.sock"), resources={"memory_mib": 4096})
    assert err.value.code == "runtime_not_ready"
    assert "modelyard runtimes install vllm" in err.value.message


def test_plan_argv_env_and_binds(settings, tmp_path):
    envd = _fake_ready(settings)
    assert runtime_status(settings, "vllm")["ready"]
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"max_position_embeddings": 32768}')
    adapter = tmp_path / "ad"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text('{"r": 64}')
    plan = plan_vllm(settings, model_path=str(model), adapters={"colors": str(adapter)},
                     served_names=["svc", "svc:1"], socket_path="/tmp/x.sock",
                     resources={"memory_mib": 10 * 1024, "cpu": 2})
    argv = plan.argv
    assert argv[1:6] == ["-m", "modelyard.runtime.relay", "--uds", "/tmp/x.sock", "--port"]
    port = argv[6]
    engine = argv[argv.index("--") + 1:]
    assert engine[:3] == [str(envd / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server"]
    assert engine[engine.index("--model") + 1] == str(model)
    assert engine[engine.index("--port") + 1] == port and engine[engine.index("--host") + 1] == "127.0.0.1"
    names = engine.index("--served-model-name")
    assert engine[names + 1:names + 3] == ["svc", "svc:1"]
    assert engine[engine.index("--max-model-len") + 1] == "4096"  # capped
    assert "--enable-lora" in engine and f"colors={adapter}" in engine
    assert engine[engine.index("--max-lora-rank") + 1] == "64"
    assert engine[engine.index("--dtype") + 1] == "float32"
    assert plan.env["VLLM_CPU_KVCACHE_SPACE"] == "4" and plan.env["OMP_NUM_THREADS"] == "2"
    assert plan.binds == [(str(envd), False)]
    assert plan.served_names == ["svc", "svc:1", "colors"]
    assert plan.boot_timeout_s >= 600 and plan.kind == "openai"


# --- the real engine ---------------------------------------------------------------------------

def _vllm_home() -> Path | None:
    candidates = [os.environ.get("MODELYARD_TEST_VLLM_HOME"), os.environ.get("MODELYARD_HOME")]
    for c in candidates:
        if c and is_ready(Settings(home=Path(c)), "vllm"):
            return Path(c)
    return None


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.timeout(1900)
def test_real_vllm_replica_answers_a_chat_request(tmp_path):
    home = _vllm_home()
    if home is None:
        pytest.skip("vLLM runtime not prepared: run `modelyard runtimes install vllm` (≈3.1 GB) "
                    "or set MODELYARD_TEST_VLLM_HOME to a home where it is prepared")
    from modelyard.runtime.tiny import build_model

    model = build_model(tmp_path / "tiny", hidden=128, heads=2)  # head size 64: vLLM's CPU kernels
    settings = Settings(home=home)
    sock = f"/tmp/myv-{os.getpid()}.sock"
    plan = plan_vllm(settings, model_path=str(model), adapters={}, served_names=["tiny"], socket_path=sock,
                     resources={"memory_mib": 2048, "cpu": 1, "max_model_len": 256})
    env = {**os.environ, **plan.env}
    log = open(tmp_path / "vllm.log", "w")
    # the planned argv: the relay on the socket in front of vLLM's own server on its TCP port
    proc = subprocess.Popen(plan.argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=sock), base_url="http://replica", timeout=60) as c:
            deadline = time.monotonic() + plan.boot_timeout_s
            while True:
                assert proc.poll() is None, (tmp_path / "vllm.log").read_text()[-3000:]
                try:
                    if c.get(plan.ready_path).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "vLLM not ready within the plan's boot timeout"
                time.sleep(1)
            r = c.post("/v1/chat/completions", json={"model": "tiny", "max_tokens": 5,
                                                      "messages": [{"role": "user", "content": "hi"}]})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["model"] == "tiny" and body["usage"]["completion_tokens"] == 5
            assert body["choices"][0]["message"]["content"]
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()
