"""The whole chain with the real built-in runtime (no stand-in): a tiny model and a LoRA adapter
of it imported into the registry, deployed as one service (the replica is a sandboxed serve job
running `python -m modelyard.runtime.serve`), called through the platform's gateway with the real
`openai` client — the base by the service's name, the adapter by its own name next to it."""

from __future__ import annotations

import time

import openai
import pytest

from tests.server.services.serving.conftest import import_model, wait_service

pytestmark = [pytest.mark.background, pytest.mark.slow, pytest.mark.timeout(400)]


@pytest.fixture
def settings(settings):
    settings.serving.runtime_argv = None  # the real runtime, not the folder's stand-in
    return settings


def _import_adapter(settings, user, base: dict) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base["path"])
    # init_lora_weights=False: B is random too, so the adapter really changes the outputs
    peft = get_peft_model(model, LoraConfig(r=4, lora_alpha=32, target_modules=["q_proj", "v_proj", "o_proj"],
                                            init_lora_weights=False))
    dest = settings.users_root / user.id / "Model" / "tiny-lora"
    peft.save_pretrained(str(dest))
    # peft records the folder the base was loaded from (the registry's): the import resolves it
    assert base["path"] in (dest / "adapter_config.json").read_text()
    r = user.post("/api/v1/models", json={"name": "tiny-lora", "path": "Model/tiny-lora"})
    assert r.status_code == 201, r.text
    vid = r.json()["versions"][0]["id"]
    deadline = time.monotonic() + 60
    while (v := user.get(f"/api/v1/model-versions/{vid}").json())["status"] == "importing":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert v["status"] == "done" and v["format"] == "peft" and v["base_version_id"] == base["id"], v
    return v


def _client(user) -> openai.OpenAI:
    # the TestClient is an httpx.Client: the openai package talks to the in-process platform
    return openai.OpenAI(base_url="http://testserver/v1", api_key=user.token, http_client=user.tc, max_retries=0)


def test_a_registry_model_and_its_adapter_answer_through_the_gateway(alice, bob, settings):
    base = import_model(settings, alice)
    adapter = _import_adapter(settings, alice, base)
    r = alice.post("/api/v1/services", json={"name": "real", "versions": [{
        "model": base["id"], "runtime": "transformers", "cpu": 1, "memory_mib": 2048,
        "adapters": {"tiny-lora": adapter["id"]}}]})
    assert r.status_code == 201, r.text
    wait_service(alice, "real", lambda d: d["state"] == "running", timeout=240, what="running")

    client = _client(alice)
    deadline = time.monotonic() + 20
    while True:  # the gateway's table follows the ready replica within a refresh
        try:
            out = client.completions.create(model="real", prompt="hello world", max_tokens=6, temperature=0)
            break
        except openai.NotFoundError:
            assert time.monotonic() < deadline
            time.sleep(0.3)
    assert out.model == "real" and out.choices[0].finish_reason in ("length", "stop")
    assert out.usage.prompt_tokens > 0 and out.usage.completion_tokens > 0
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    streamed = client.completions.create(model="real", prompt="hello world", max_tokens=6, temperature=0,
                                         stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == out.choices[0].text

    lora = client.completions.create(model="tiny-lora", prompt="hello world", max_tokens=6, temperature=0)
    assert lora.model == "tiny-lora"
    assert lora.choices[0].text != out.choices[0].text, "the adapter answered like its base"
    assert {m.id for m in client.models.list()} >= {"real", "tiny-lora"}

    with pytest.raises(openai.NotFoundError):
        _client(bob).completions.create(model="real", prompt="hello", max_tokens=2)

    # stopping releases the replica's allocation
    assert alice.post("/api/v1/services/real/stop").status_code in (200, 202)
    wait_service(alice, "real", lambda d: d["state"] == "stopped", timeout=60, what="stopped")
