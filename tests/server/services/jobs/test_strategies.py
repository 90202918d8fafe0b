"""One strategy vocabulary (lora, full, qlora, pretrain) on the native API, the seed's LoRA /
FineTune on the seed routes; qlora refused with its reason on a machine without CUDA GPUs; a
bogus strategy refused with the list; the output model named <base>-<strategy>; the hyperparameter
catalogue; enum filters (canceled accepted, unknown values refused)."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.server.db import session_scope

API = "/api/v1"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from modelyard.runtime import tiny

    return tiny.build_model(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def base(alice, settings, ctx_of, tiny_model) -> str:
    from modelyard.runtime import tiny
    from modelyard.server.services import models

    with session_scope(ctx_of(alice).sessions) as s:
        models.register_version(s, settings, owner_id=alice.id, model_name="smollm2-135m-instruct",
                                source_dir=tiny_model, source=3)
    tiny.write_jsonl(settings.users_root / alice.id / "Data" / "train" / "t.jsonl", tiny.chat_rows(8))
    return "smollm2-135m-instruct"


def _submit(user, model, **body):
    return user.post(f"{API}/jobs", json={"kind": "finetune", "model": model, "input_type": "local",
                                          "common_hyperparameters": {"max_steps": "1"}, **body})


def test_native_strategies_and_output_model_names(alice, base):
    for given, strategy in (("lora", "lora"), ("full", "full"), ("FineTune", "full"), ("LoRA", "lora")):
        r = _submit(alice, base, strategy=given)
        assert r.status_code == 201, r.text
        job = alice.get(f"{API}/jobs/{r.json()['id']}").json()
        assert job["strategy"] == strategy
        assert job["spec"]["output_model_name"] == f"smollm2-135m-instruct-{strategy}"
        assert job["spec"]["training"]["strategy"] == strategy
    r = _submit(alice, f"{base}:1", strategy="pretrain")
    assert r.status_code == 201, r.text
    job = alice.get(f"{API}/jobs/{r.json()['id']}").json()
    assert job["kind"] == "pretrain" and job["strategy"] == "pretrain"
    r = _submit(alice, base, strategy="lora", output_model="my-assistant")
    assert alice.get(f"{API}/jobs/{r.json()['id']}").json()["spec"]["output_model_name"] == "my-assistant"
    # list filter by strategy
    names = {j["strategy"] for j in alice.get(f"{API}/jobs", params={"strategy": "full"}).json()["items"]}
    assert names == {"full"}


def test_bogus_and_qlora_strategies_are_refused_with_reasons(alice, base):
    r = _submit(alice, base, strategy="bogus")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_strategy"
    assert r.json()["error"]["details"]["valid"] == ["lora", "full", "qlora", "pretrain"]
    r = _submit(alice, base, strategy="qlora")
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "unsupported_strategy"
    assert "QLoRA needs a CUDA GPU and bitsandbytes" in err["message"]
    assert alice.get(f"{API}/jobs").json()["total"] == 0  # nothing queued, nothing run as LoRA


def test_seed_routes_keep_their_words(alice, base):
    env = alice.post("/kernel/fineTune/createLlmFineTuneTask", json={
        "name": "seed-lora", "modelId": base, "inputType": "local", "fineTuneStrategy": "LoRA",
        "commonHyperParameters": [{"name": "max_steps", "value": "1"}],
        "resource": [{"nodeType": "master", "numbers": 1, "cpuNumber": 1, "memory": 1}], "isPretrain": 0}).json()
    assert env["success"] is True, env
    task = env["data"]
    assert task["fineTuneStrategy"] == "LoRA"
    assert alice.get(f"{API}/jobs/{task['taskId']}").json()["strategy"] == "lora"
    lst = alice.post("/kernel/fineTune/listLlmFineTuneTask", json={"pageNum": 1, "pageSize": 10}).json()
    assert [t["fineTuneStrategy"] for t in lst["data"]["list"]] == ["LoRA"]


def test_hparams_catalogue(alice):
    r = alice.get(f"{API}/hparams")
    assert r.status_code == 200
    body = r.json()
    assert [s["name"] for s in body["strategies"]] == ["lora", "full", "qlora", "pretrain"]
    by = {h["name"]: h for h in body["hyperparameters"]}
    assert by["lora_r"]["strategies"] == ["lora", "qlora"] and by["lora_r"]["range"] == [1, 4096]
    assert by["from_scratch"]["strategies"] == ["pretrain"]
    assert by["lr_scheduler_type"]["choices"][0] == "linear" and by["learning_rate"]["default"] == 1e-4
    assert all(h["description"] and h["description"] != h["name"] for h in body["hyperparameters"])
    full = {h["name"] for h in alice.get(f"{API}/hparams", params={"strategy": "full"}).json()["hyperparameters"]}
    assert "lora_r" not in full and "learning_rate" in full
    assert alice.get(f"{API}/hparams", params={"strategy": "bogus"}).status_code == 400
    old = alice.get(f"{API}/jobs/hyperparameters", params={"strategy": "LoRA"}).json()
    assert old["strategy"] == "lora" and "lora_r" in {h["name"] for h in old["hyperparameters"]}


def test_enum_filters(alice, submit_custom):
    job = submit_custom(alice, "true")
    alice.post(f"{API}/jobs/{job['id']}/cancel")
    for spelling in ("canceled", "cancelled", "Cancelled"):
        page = alice.get(f"{API}/jobs", params={"state": spelling}).json()
        assert [j["id"] for j in page["items"]] == [job["id"]], spelling
    for params in ({"state": "finished-ish"}, {"kind": "cron"}, {"strategy": "bogus"}):
        r = alice.get(f"{API}/jobs", params=params)
        assert r.status_code == 400, (params, r.text)
    r = alice.get(f"{API}/jobs", params={"state": "nope"})
    assert r.json()["error"]["code"] == "invalid_filter" and "cancelled" in r.json()["error"]["message"]
    assert alice.get(f"{API}/searches", params={"state": "canceled"}).status_code == 200
    assert alice.get(f"{API}/searches", params={"state": "nope"}).status_code == 400
