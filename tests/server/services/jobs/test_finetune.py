"""Fine-tune / pre-train jobs: the seed's §4/§5 routes and their envelope, refused bodies (nothing
queued), and end to end a LoRA job on a tiny random Llama whose output becomes a model version
with lineage; full fine-tuning, pre-training, a 2-replica gloo run, kill -9 of the trainer +
resume, and registering a custom job's output."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from modelyard.server.auth import Principal
from modelyard.server.db import session_scope
from modelyard.server.orm.jobs import JobModel
from tests.harness import ctx_of

pytestmark = pytest.mark.background

FT = "/kernel/fineTune"
COMMON = [{"name": "max_steps", "value": "24"}, {"name": "per_device_train_batch_size", "value": "8"},
          {"name": "learning_rate", "value": "3e-3"}, {"name": "logging_steps", "value": "2"},
          {"name": "save_steps", "value": "8"}, {"name": "max_seq_length", "value": "64"}]
LORA = [{"name": "lora_r", "value": "8"}, {"name": "lora_alpha", "value": "16"}, {"name": "lora_dropout", "value": "0"}]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from modelyard.runtime import tiny

    return tiny.build_model(tmp_path_factory.mktemp("tiny-llama"))


def _principal(user) -> Principal:
    return Principal(user.id, user.name, user.user["role"])


def _register(user, settings, src: Path, name: str = "tiny-llama", **kw):
    from modelyard.server.services import models

    with session_scope(ctx_of(user).sessions) as s:
        v = models.register_version(s, settings, owner_id=user.id, model_name=name, source_dir=src, source=3, **kw)
        return v.id


def _user_data(user, settings, *, train=True, validate=True, shape="chat") -> Path:
    from modelyard.runtime import tiny

    root = settings.users_root / user.id / "Data"
    rows = {"chat": tiny.chat_rows, "alpaca": tiny.alpaca_rows, "text": tiny.text_rows}[shape]
    if train:
        tiny.write_jsonl(root / "train" / "train.jsonl", rows(96, seed=1))
    if validate:
        tiny.write_jsonl(root / "validate" / "validate.jsonl", rows(16, seed=2))
    return root


def _dataset(user, settings, name="colors") -> str:
    from modelyard.server.services import datasets

    ds, v = datasets.create_dataset(ctx_of(user).sessions, settings, _principal(user), name=name,
                                    source=datasets.Source(path="Data"))
    return v.id


def _count_jobs(user) -> int:
    with session_scope(ctx_of(user).sessions, readonly=True) as s:
        return s.scalar(select(func.count()).select_from(JobModel))


def _seed_create(user, body: dict, expect: int = 200) -> dict:
    r = user.post(f"{FT}/createLlmFineTuneTask", json=body)
    assert r.status_code == expect, r.text
    env = r.json()
    assert set(env) >= {"returnCode", "success", "message", "data"}
    return env


# --- refused bodies: nothing queued ---------------------------------------------------------------

def test_refused_bodies_queue_nothing(alice, bob, settings, tiny_model):
    mv = _register(alice, settings, tiny_model)
    bobs = _register(bob, settings, tiny_model, name="bobs-private")
    _user_data(alice, settings)
    base = {"name": "t", "modelVersionId": mv, "inputType": "local", "fineTuneStrategy": "LoRA",
            "commonHyperParameters": COMMON, "fineTuneHyperParameters": LORA}

    env = _seed_create(alice, {**base, "commonHyperParameters": COMMON + [{"name": "learning_rat", "value": "1"}]},
                       expect=400)
    assert env["success"] is False and env["returnCode"] == 400 and env["reason"] == "invalid_hyperparameter"
    assert "learning_rat" in env["message"] and "learning_rate" in env["details"]["valid"]

    env = _seed_create(alice, {**base, "fineTuneHyperParameters": [{"name": "lora_r", "value": "-1"}]}, expect=400)
    assert env["reason"] == "invalid_hyperparameter" and "lora_r" in env["message"]
    assert "lora_alpha" in env["details"]["valid"]

    # native API, same validation
    r = alice.post("/api/v1/jobs", json={"kind": "finetune", "model": mv, "input_type": "local",
                                         "finetune_hyperparameters": {"lora_r": "-1"}})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_hyperparameter"

    env = _seed_create(alice, {**base, "inputDir": "Empty"}, expect=400)
    assert env["reason"] == "missing_train_split" and "Empty/train" in env["message"]
    (settings.users_root / alice.id / "Data" / "train" / "train.jsonl").unlink()
    env = _seed_create(alice, base, expect=400)
    assert env["reason"] == "missing_train_split"
    _user_data(alice, settings, validate=False)

    env = _seed_create(alice, {**base, "modelVersionId": bobs}, expect=404)
    assert env["success"] is False and env["returnCode"] == 404 and bobs in env["message"]
    env = _seed_create(alice, {**base, "modelVersionId": None, "modelId": "bobs-private"}, expect=404)

    env = _seed_create(alice, {**base, "fineTuneStrategy": "QuantumTune"}, expect=400)
    assert env["reason"] == "invalid_strategy"
    env = _seed_create(alice, {**base, "resource": [{"nodeType": "master", "numbers": 1, "cpuNumber": 1000,
                                                      "memory": 1}]}, expect=403)
    assert env["reason"] == "quota_exceeded" and "cpu" in env["message"]
    env = _seed_create(alice, {**base, "isPretrain": 1, "fineTuneHyperParameters": LORA}, expect=400)
    assert env["reason"] == "invalid_hyperparameter"  # LoRA knobs do not apply to pre-training
    assert _count_jobs(alice) == 0 and _count_jobs(bob) == 0


def test_seed_routes_with_a_custom_task(alice, bob, admin, wait_state):
    # urgent tasks need an allowance; rdma cannot be honoured here (refused: test_seed_task_fields.py)
    assert admin.put(f"/api/v1/quotas/{alice.id}", json={"can_urgent": True}).status_code == 200
    body = {"name": "seed-custom", "command": "echo seed-job; exit 0", "isPretrain": 1, "priority": "high",
            "isUrgentTask": "1", "describe": "d", "variable": [{"name": "A", "value": "1"}, {"B": "2"}],
            "resource": [{"nodeType": "master", "numbers": 1, "cpuNumber": 1, "memory": 1,
                          "gpuResource": {"gpuNum": 0, "gpuShare": "none", "migRes": ""}}],
            "rdma": False, "podDelete": 0, "commands": [], "nodeName": []}
    env = _seed_create(alice, body)
    assert env["returnCode"] == 0 and env["success"] is True
    task = env["data"]
    assert task["taskId"] and task["isPretrain"] == 1 and task["kind"] == "custom" and task["priority"] == 10
    assert task["isUrgentTask"] == "1" and task["resource"][0]["memory"] == 1.0 and task["status"] == "queued"
    wait_state(alice, task["taskId"], "succeeded")
    # wrapped body {"createTaskBO": {...}} works too
    env = _seed_create(alice, {"createTaskBO": {**body, "name": "wrapped", "isPretrain": 0}})
    wait_state(alice, env["data"]["taskId"], "succeeded")

    lst = alice.post(f"{FT}/listLlmFineTuneTask", json={"isPretrain": 1, "pageNum": 1, "pageSize": 10}).json()
    assert lst["returnCode"] == 0 and lst["data"]["total"] == 1 and lst["data"]["list"][0]["name"] == "seed-custom"
    lst = alice.post(f"{FT}/listLlmFineTuneTask", json={"pageNum": 0, "pageSize": 0, "status": "Succeeded",
                                                      "taskName": "wrap"}).json()
    assert lst["data"]["total"] == 1 and lst["data"]["list"][0]["status"] == "succeeded"
    assert alice.post(f"{FT}/listLlmFineTuneTask", json={"userId": bob.id}).json()["returnCode"] == 403
    assert bob.post(f"{FT}/listLlmFineTuneTask", json={}).json()["data"]["total"] == 0
    assert admin.post(f"{FT}/listLlmFineTuneTask", json={"userId": alice.id}).json()["data"]["total"] == 2

    d = alice.post(f"{FT}/queryLlmFineTuneTaskDetail", params={"taskId": task["taskId"]}).json()
    assert d["returnCode"] == 0 and d["data"]["status"] == "succeeded" and d["data"]["userName"] == "alice"
    assert d["data"]["replicas"][0]["exit_code"] == 0 and d["data"]["runTime"]
    d2 = alice.post(f"{FT}/queryLlmFineTuneTaskDetail", data={"taskId": task["taskId"]}).json()
    assert d2["data"]["taskId"] == task["taskId"]
    miss = bob.post(f"{FT}/queryLlmFineTuneTaskDetail", params={"taskId": task["taskId"]})
    assert miss.status_code == 404 and miss.json()["returnCode"] == 404 and miss.json()["success"] is False
    assert alice.post(f"{FT}/queryLlmFineTuneTaskDetail").json()["returnCode"] == 400
    log = alice.get(f"/api/v1/jobs/{task['taskId']}/logs").text
    assert "seed-job" in log
    mng = alice.post("/kernel/fineTuneManage/listFineTuneTaskManage", json={"pageNum": 1, "pageSize": 10}).json()
    assert mng["returnCode"] == 0 and mng["data"]["total"] == 0  # no model produced by these tasks
    bad = alice.post(f"{FT}/createLlmFineTuneTask", json={"resource": "lots"})
    assert bad.status_code == 400 and bad.json()["success"] is False


# --- end to end: training -------------------------------------------------------------------------

def _losses(user, job_id):
    s = user.get(f"/api/v1/jobs/{job_id}/metrics", params={"name": "loss"}).json()["series"]
    return s.get("loss", {}).get("value", [])


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_lora_through_the_seed_api_registers_a_version_with_lineage(alice, settings, tiny_model, wait_state):
    base = _register(alice, settings, tiny_model)
    _user_data(alice, settings)
    dsv = _dataset(alice, settings)
    env = _seed_create(alice, {
        "name": "colors-lora", "modelVersionId": base, "inputType": "dataset", "datasetVersionId": dsv,
        "fineTuneStrategy": "LoRA", "commonHyperParameters": COMMON, "fineTuneHyperParameters": LORA,
        "resource": [{"nodeType": "master", "numbers": 1, "cpuNumber": 2, "memory": 4}], "isPretrain": 0})
    task = env["data"]
    assert task["kind"] == "finetune" and task["fineTuneStrategy"] == "LoRA" and task["datasetVersionId"] == dsv
    from modelyard.core.errors import InUse
    from modelyard.server.services.common import references

    with session_scope(ctx_of(alice).sessions, readonly=True) as s:  # a live job pins what it uses
        for kind, obj in (("model_version", base), ("dataset_version", dsv)):
            with pytest.raises(InUse):
                references.ensure_unused(s, kind, obj)
    job = wait_state(alice, task["taskId"], ("succeeded", "failed"), timeout=100)
    assert job["state"] == "succeeded", (job["error"], alice.get(f"/api/v1/jobs/{job['id']}/logs").text[-3000:])
    spec = json.loads((settings.jobs_dir / job["id"] / "spec.json").read_text())
    # it trained inside the sandbox (where bubblewrap runs), and still registered its output below
    from modelyard.server.executors import sandbox as sandbox_mech

    launch = json.loads((settings.jobs_dir / job["id"] / "master-0" / "launch.json").read_text())
    assert launch["sandboxed"] is (sandbox_mech.unavailable_reason() is None)
    assert spec["hyperparameters"]["r" if "r" in spec["hyperparameters"] else "lora_r"] == 8
    assert spec["data"]["shape"] == "chat" and spec["model_format"] == "hf"
    losses = _losses(alice, job["id"])
    assert len(losses) >= 5 and losses[-1] < losses[0], losses
    assert job["progress"]["step"] == 24
    assert job["result"]["global_step"] == 24 and job["result"]["format"] == "peft"
    out = job["output_model_version_id"]
    from modelyard.server.orm.models import ModelVersionModel

    with session_scope(ctx_of(alice).sessions, readonly=True) as s:
        v = s.get(ModelVersionModel, out)
        assert v.status == "done" and v.format == "peft" and v.source == 1
        assert v.job_id == job["id"] and v.base_version_id == base and v.dataset_version_id == dsv
        assert v.hyperparameters["max_steps"] == 24
        adapter_dir = Path(v.path)
    assert (adapter_dir / "adapter_config.json").exists()
    mng = alice.post("/kernel/fineTuneManage/listFineTuneTaskManage", json={"isPretrain": 0}).json()
    item = mng["data"]["list"][0]
    assert mng["data"]["total"] == 1 and item["modelVersionId"] == out and item["baseModelVersionId"] == base
    assert item["taskId"] == job["id"] and item["metrics"]["train_loss"] > 0
    # the adapter loads on its base and generates
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(adapter_dir)
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), adapter_dir)
    ids = tok("what color is the sky?", return_tensors="pt")
    with torch.no_grad():
        gen = model.generate(**ids, max_new_tokens=5, do_sample=False)
    assert gen.shape[1] > ids["input_ids"].shape[1]


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["finetune", "pretrain"])
def test_full_finetune_and_pretrain_native(alice, settings, tiny_model, kind, wait_state):
    base = _register(alice, settings, tiny_model)
    _user_data(alice, settings, shape="text")
    common = {"max_steps": "6", "per_device_train_batch_size": "8", "learning_rate": "3e-3", "logging_steps": "2",
              "save_strategy": "no", "max_seq_length": "64"}
    body = {"kind": kind, "model": "tiny-llama" if kind == "finetune" else base, "input_type": "local",
            "common_hyperparameters": common, "output_model_name": f"tiny-{kind}"}
    if kind == "finetune":
        body["strategy"] = "FineTune"
    j = alice.post("/api/v1/jobs", json=body).json()
    done = wait_state(alice, j["id"], ("succeeded", "failed"), timeout=100)
    assert done["state"] == "succeeded", (done["error"], alice.get(f"/api/v1/jobs/{j['id']}/logs").text[-3000:])
    assert done["result"]["format"] == "hf" and done["output_model_version_id"]
    assert done["is_pretrain"] is (kind == "pretrain") and done["strategy"] == ("full" if kind == "finetune" else kind)


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_two_replica_gloo_run(alice, settings, tiny_model, wait_state):
    base = _register(alice, settings, tiny_model)
    _user_data(alice, settings)
    common = {"max_steps": "6", "per_device_train_batch_size": "4", "logging_steps": "2", "save_strategy": "no",
              "max_seq_length": "64"}
    j = alice.post("/api/v1/jobs", json={
        "kind": "finetune", "model": base, "input_type": "local", "strategy": "LoRA", "common_hyperparameters": common,
        "roles": [{"role": "master", "cpu": 1, "memory_mib": 2048}, {"role": "worker", "replicas": 1, "cpu": 1,
                                                                     "memory_mib": 2048}]}).json()
    done = wait_state(alice, j["id"], ("succeeded", "failed"), timeout=140)
    assert done["state"] == "succeeded", (done["error"], alice.get(f"/api/v1/jobs/{j['id']}/logs").text[-3000:],
                                          alice.get(f"/api/v1/jobs/{j['id']}/logs", params={"replica": "worker-0"}).text[-2000:])
    assert [r["exit_code"] for r in done["replicas"]] == [0, 0]
    assert done["output_model_version_id"]


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_trainer_killed_then_resume_continues_from_checkpoint(alice, settings, tiny_model, wait_for, wait_state):
    base = _register(alice, settings, tiny_model)
    _user_data(alice, settings)
    common = {"max_steps": "20", "per_device_train_batch_size": "4", "logging_steps": "1", "save_steps": "4",
              "max_seq_length": "64"}
    j = alice.post("/api/v1/jobs", json={"kind": "finetune", "model": base, "input_type": "local",
                                         "common_hyperparameters": common}).json()
    ckpts = settings.jobs_dir / j["id"] / "checkpoints"
    wait_for(lambda: any(p.name.startswith("checkpoint-") for p in ckpts.glob("checkpoint-*"))
             and alice.get(f"/api/v1/jobs/{j['id']}").json()["progress"].get("step", 0) >= 6,
             timeout=100, interval=0.1, what="a checkpoint and step >= 6")
    running = alice.get(f"/api/v1/jobs/{j['id']}").json()
    # kill -9 the training process (inside the replica's sandbox), not the wrapper
    import psutil

    trainer = next(p for p in psutil.Process(running["replicas"][0]["pid"]).children(recursive=True)
                   if "modelyard.runtime.train" in p.cmdline() and not p.cmdline()[0].endswith("bwrap"))
    os.kill(trainer.pid, signal.SIGKILL)
    failed = wait_state(alice, j["id"], "failed", timeout=30)
    assert "SIGKILL" in failed["error"]
    step_at_kill = failed["progress"]["step"]
    r = alice.post(f"/api/v1/jobs/{j['id']}/resume")
    assert r.status_code == 200 and r.json()["attempt"] == 2
    assert json.loads((settings.jobs_dir / j["id"] / "spec.json").read_text())["resume"] is True
    done = wait_state(alice, j["id"], ("succeeded", "failed"), timeout=120)
    assert done["state"] == "succeeded", (done["error"], alice.get(f"/api/v1/jobs/{j['id']}/logs").text[-3000:])
    series = alice.get(f"/api/v1/jobs/{j['id']}/metrics", params={"name": "loss", "attempt": 2}).json()["series"]
    steps2 = series.get("loss", {}).get("step", [])
    if done["result"]["resumed_from"] == "checkpoint-20":  # killed after the final checkpoint: nothing to train
        assert steps2 == []
    else:
        assert steps2[0] > 1 and steps2[0] <= step_at_kill + 1  # continued from a checkpoint, not from step 0
    assert done["result"]["global_step"] == 20


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_register_a_custom_jobs_output(alice, settings, tiny_model, wait_state):
    import shutil

    # the sandboxed job sees the user's own files (not the test's temp folder)
    shutil.copytree(tiny_model, settings.users_root / alice.id / "Models" / "tiny")
    job = alice.post("/api/v1/jobs", json={"kind": "custom", "command": "cp -r /data/Models/tiny/. $MODELYARD_OUTPUT_DIR/",
                                           "roles": [{"cpu": 0.1, "memory_mib": 64}]}).json()
    assert alice.post(f"/api/v1/jobs/{job['id']}/register", json={"model_name": "x"}).status_code == 409
    wait_state(alice, job["id"], "succeeded")
    r = alice.post(f"/api/v1/jobs/{job['id']}/register", json={"model_name": "from-custom"})
    assert r.status_code == 201, r.text
    v = r.json()
    assert v["format"] == "hf" and v["job_id"] == job["id"] and v["status"] == "done"
    assert alice.get(f"/api/v1/jobs/{job['id']}").json()["output_model_version_id"] == v["id"]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_failing_trainer_explains_itself_in_the_job_error(alice, settings, tiny_model, wait_state):
    vid = _register(alice, settings, tiny_model, name="broken-llama")
    with session_scope(ctx_of(alice).sessions) as s:
        from modelyard.server.orm.models import ModelVersionModel

        config = Path(s.get(ModelVersionModel, vid).path) / "config.json"
    config.chmod(0o644)
    config.write_text("{ this is not json")  # damaged on disk after registration
    _user_data(alice, settings, shape="text")
    body = {"kind": "pretrain", "model": vid, "input_type": "local",
            "common_hyperparameters": {"max_steps": "2", "save_strategy": "no"}}
    j = alice.post("/api/v1/jobs", json=body).json()
    done = wait_state(alice, j["id"], ("succeeded", "failed"), timeout=100)
    assert done["state"] == "failed"
    # not just "exit code 1": the trainer's own message about the unreadable config comes through
    assert " — " in done["error"] and ("json" in done["error"].lower() or "config" in done["error"].lower()), \
        done["error"]
