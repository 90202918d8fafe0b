"""An HPO search that really trains: 4 TPE trials of LoRA on a tiny random Llama, through the API,
with the platform's background loops (scheduler, local executor, search driver) running. Every
trial is a job running `python -m modelyard.runtime.train`; the best trial's output is a
registered model version."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from modelyard.runtime import tiny
from modelyard.server.app import create_app
from modelyard.server.db import session_scope
from tests.conftest import ADMIN_TOKEN, UserClient, make_settings

pytestmark = pytest.mark.slow


def test_tpe_search_of_four_real_trials(tmp_path):
    model_dir = tiny.build_model(tmp_path / "tiny")
    settings = make_settings(tmp_path / "home", background=True)
    settings.scheduler.poll_interval_s = 0.5
    with TestClient(create_app(settings)) as tc:
        admin = UserClient(tc, ADMIN_TOKEN, tc.get("/api/v1/users/me",
                                                   headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json())
        r = admin.post("/api/v1/users", json={"name": "alice"})
        alice = UserClient(tc, r.json()["token"], r.json())
        ctx = tc.app.state.ctx
        from modelyard.server.services import models

        with session_scope(ctx.sessions) as s:
            models.register_version(s, ctx.settings, owner_id=alice.id, model_name="tiny", source_dir=model_dir, source=3)
        root = ctx.settings.users_root / alice.id
        tiny.write_jsonl(root / "Data" / "train" / "train.jsonl", tiny.chat_rows(64))
        tiny.write_jsonl(root / "Data" / "validate" / "validate.jsonl", tiny.chat_rows(8, seed=1))

        base = {"kind": "finetune", "model": "tiny", "input_type": "local", "strategy": "LoRA",
                "roles": [{"role": "master", "replicas": 1, "cpu": 1, "memory_mib": 1024}],
                "common_hyperparameters": {"max_steps": "8", "per_device_train_batch_size": "8",
                                           "logging_steps": "2", "save_strategy": "no", "max_seq_length": "64"},
                "finetune_hyperparameters": {"lora_target": "all-linear"}}
        resp = alice.post("/api/v1/searches", json={
            "name": "tiny-hpo", "base": base, "algorithm": "tpe", "algorithm_params": {"n_initial_points": 2},
            "space": [{"name": "learning_rate", "type": "float", "low": 1e-4, "high": 3e-2, "log": True},
                      {"name": "lora_r", "type": "categorical", "choices": [4, 8]}],
            "max_trials": 4, "parallel_trials": 2, "early_stopping": False, "seed": 7})
        assert resp.status_code == 201, resp.text
        sid = resp.json()["id"]
        assert resp.json()["objective"]["metric"] == "eval_loss"

        deadline = time.time() + 420
        while time.time() < deadline:
            d = alice.get(f"/api/v1/searches/{sid}").json()
            if d["state"] != "running":
                break
            time.sleep(1)
        jobs = alice.get("/api/v1/jobs", params={"page_size": 50}).json()["items"]
        assert d["state"] == "succeeded", (d, [(j["name"], j["state"], j["error"]) for j in jobs])
        assert d["trials"] == {"complete": 4}
        assert len(jobs) == 4 and all(j["state"] == "succeeded" for j in jobs)
        values = [t["value"] for t in d["trials_detail"]]
        assert all(isinstance(v, float) for v in values)
        best = d["best"]
        assert best["value"] == min(values) and d["best_value"] == best["value"]
        # the best trial's output is a registered model version (a LoRA adapter on the base)
        mv = alice.get(f"/api/v1/model-versions/{best['model_version_id']}")
        assert mv.status_code == 200, mv.text
        mv = mv.json()
        assert d["best_model_version_id"] == mv["id"] and mv.get("job_id") == best["job_id"]
        assert mv.get("format") == "peft"
        # and the trials' model (named after the search) has the alias best on it
        by_alias = alice.get("/api/v1/model-versions/resolve", params={"ref": "tiny-hpo:best"})
        assert by_alias.status_code == 200 and by_alias.json()["id"] == mv["id"], by_alias.text
        job = alice.get(f"/api/v1/jobs/{best['job_id']}").json()
        assert job["output_model_version_id"] == mv["id"]
        assert job["spec"]["training"]["hyperparameters"]["learning_rate"] == pytest.approx(
            best["params"]["learning_rate"])
