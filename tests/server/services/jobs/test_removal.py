"""Deletes that lineage and running work protect: a job (active -> job_active; producer of a model
version -> in_use naming it), a dataset version a model version was trained on (in_use), and
both succeeding once nothing needs them, with the job's folder gone. Also: registering a job's
output twice hands back the same version."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

pytestmark = [pytest.mark.background, pytest.mark.timeout(120)]
API = "/api/v1"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from modelyard.runtime import tiny

    return tiny.build_model(tmp_path_factory.mktemp("tiny"))


def test_job_and_dataset_version_deletes_follow_lineage(alice, bob, settings, tiny_model, submit_custom, wait_state):
    from modelyard.runtime import tiny

    tiny.write_jsonl(settings.users_root / alice.id / "Data" / "train" / "t.jsonl", tiny.alpaca_rows(4))
    assert alice.post(f"{API}/datasets", json={"name": "colors", "path": "Data"}).status_code == 201
    shutil.copytree(tiny_model, settings.users_root / alice.id / "Models" / "tiny")

    # an active job is refused, saying to cancel it first
    sleeper = submit_custom(alice, "sleep 60", name="sleeper")
    wait_state(alice, sleeper["id"], "running")
    r = alice.delete(f"{API}/jobs/sleeper")
    assert r.status_code == 409 and r.json()["error"]["code"] == "job_active"
    assert "cancel" in r.json()["error"]["message"]
    alice.post(f"{API}/jobs/sleeper/cancel")

    job = submit_custom(alice, "cp -r /data/Models/tiny/. $MODELYARD_OUTPUT_DIR/", name="producer",
                        input_type="dataset", dataset="colors")
    wait_state(alice, job["id"], "succeeded")
    first = alice.post(f"{API}/jobs/producer/register", json={"model_name": "from-job"})
    assert first.status_code == 201, first.text
    again = alice.post(f"{API}/jobs/{job['id'][:6]}/register", json={"model_name": "from-job"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert [v["version"] for v in alice.get(f"{API}/models/from-job/versions").json()] == ["1"]

    # bob cannot delete alice's job (it does not exist for him)
    assert bob.delete(f"{API}/jobs/producer").status_code == 404
    r = alice.delete(f"{API}/jobs/producer")
    assert r.status_code == 409 and r.json()["error"]["code"] == "in_use"
    assert "from-job:1" in r.json()["error"]["message"]
    r = alice.delete(f"{API}/datasets/colors/versions/1")
    assert r.status_code == 409 and r.json()["error"]["code"] == "in_use"
    assert "from-job:1" in r.json()["error"]["message"]
    assert alice.get(f"{API}/model-versions/from-job:1").json()["dataset_version_id"]

    folder = settings.jobs_dir / job["id"]
    assert folder.is_dir()
    assert alice.delete(f"{API}/models/from-job/versions/1").status_code == 204
    r = alice.delete(f"{API}/jobs/producer")
    assert r.status_code == 204, r.text
    assert alice.get(f"{API}/jobs/{job['id']}").status_code == 404
    assert not folder.exists()
    assert alice.get(f"{API}/jobs/{job['id']}/metrics").status_code == 404
    evs = alice.get(f"{API}/events", params={"object_type": "job", "object_id": job["id"]}).json()
    assert "job.deleted" in [e["kind"] for e in evs["items"]]
    assert alice.delete(f"{API}/datasets/colors/versions/1").status_code == 204
    wait_state(alice, sleeper["id"], "cancelled")
    assert alice.delete(f"{API}/jobs/sleeper").status_code == 204


def test_logs_and_metrics_by_name(alice, submit_custom, wait_state):
    job = submit_custom(alice, "echo hello-from-log", name="greeter")
    wait_state(alice, job["id"], "succeeded")
    for ref in ("greeter", job["id"][:5]):
        assert "hello-from-log" in alice.get(f"{API}/jobs/{ref}/logs").text, ref
        assert alice.get(f"{API}/jobs/{ref}/metrics").json()["job_id"] == job["id"]
