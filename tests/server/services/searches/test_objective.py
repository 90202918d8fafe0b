"""A search's objective must be one its trials can report: without a validation split the default
is the training loss (a real 2-trial search on a tiny model succeeds with it), an explicit
eval_loss is refused at submit, an unknown metric too. Also: searches by name / prefix and their
delete (refused while running; the trials' jobs stay)."""

from __future__ import annotations

import time

import pytest

from modelyard.runtime import tiny
from modelyard.server.db import session_scope

pytestmark = [pytest.mark.background, pytest.mark.slow, pytest.mark.timeout(240)]
API = "/api/v1"


def _setup(alice, ctx_of, tmp_path, *, validate: bool):
    from modelyard.server.services import models

    ctx = ctx_of(alice)
    with session_scope(ctx.sessions) as s:
        models.register_version(s, ctx.settings, owner_id=alice.id, model_name="tiny",
                                source_dir=tiny.build_model(tmp_path / "tiny"), source=3)
    root = ctx.settings.users_root / alice.id
    tiny.write_jsonl(root / "Data" / "train" / "train.jsonl", tiny.chat_rows(16))
    if validate:
        tiny.write_jsonl(root / "Data" / "validate" / "validate.jsonl", tiny.chat_rows(4, seed=1))
    return {"kind": "finetune", "model": "tiny", "input_type": "local", "strategy": "lora",
            "roles": [{"role": "master", "replicas": 1, "cpu": 1, "memory_mib": 1024}],
            "common_hyperparameters": {"max_steps": "2", "per_device_train_batch_size": "4", "logging_steps": "1",
                                       "save_strategy": "no", "max_seq_length": "32"}}


def _search(base, **kw):
    return {"name": "no-val", "base": base, "algorithm": "random", "max_trials": 2, "parallel_trials": 2,
            "space": [{"name": "learning_rate", "type": "float", "low": 1e-4, "high": 1e-2, "log": True}],
            "early_stopping": False, "seed": 3, **kw}


def test_search_without_validation_uses_the_training_loss(alice, bob, ctx_of, tmp_path):
    base = _setup(alice, ctx_of, tmp_path, validate=False)
    r = alice.post(f"{API}/searches", json=_search(base, metric="eval_loss"))
    assert r.status_code == 400 and r.json()["error"]["code"] == "objective_unavailable", r.text
    assert "validat" in r.json()["error"]["message"]
    r = alice.post(f"{API}/searches", json=_search(base, metric="bleu"))
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_objective"
    assert alice.get(f"{API}/jobs").json()["total"] == 0  # nothing was queued by the refusals

    r = alice.post(f"{API}/searches", json=_search(base))
    assert r.status_code == 201, r.text
    s = r.json()
    assert s["objective"]["metric"] == "train_loss"
    r = alice.delete(f"{API}/searches/no-val")
    assert r.status_code == 409 and r.json()["error"]["code"] == "search_running"
    deadline = time.time() + 200
    while time.time() < deadline:
        d = alice.get(f"{API}/searches/{s['id'][:6]}").json()
        if d["state"] != "running":
            break
        time.sleep(1)
    jobs = alice.get(f"{API}/jobs", params={"page_size": 50}).json()["items"]
    assert d["state"] == "succeeded", (d, [(j["name"], j["state"], j["error"]) for j in jobs])
    assert d["trials"] == {"complete": 2}
    for t in d["trials_detail"]:
        job = alice.get(f"{API}/jobs/{t['job_id']}").json()
        # the objective is the run's mean loss the trainer reported
        assert t["value"] == pytest.approx(job["result"]["metrics"]["train_loss"])
        assert "eval_loss" not in job["result"]["metrics"]
        # both trials' outputs are versions of the one model named after the search
    assert sorted(v["version"] for v in alice.get(f"{API}/models/no-val/versions").json()) == ["1", "2"]

    assert bob.delete(f"{API}/searches/no-val").status_code == 404
    assert alice.delete(f"{API}/searches/no-val").status_code == 204
    assert alice.get(f"{API}/searches/{s['id']}").status_code == 404
    left = alice.get(f"{API}/jobs", params={"page_size": 50}).json()["items"]
    assert len(left) == 2 and all(j["state"] == "succeeded" for j in left)  # the trials' jobs stay
    assert alice.get(f"{API}/jobs", params={"search_id": s["id"]}).json()["total"] == 0  # no longer in a search
