"""core/spec.py, the server ↔ runtime contract: the spec.json the server writes for a training job
is read back field for field by the trainer's parser, and a malformed spec.json fails the trainer
(exit 1) with a message naming the field, in its stderr and in output/modelyard_error.json."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from modelyard.core.spec import SPEC_FILE, SpecError, TrainingSpec, parse_training_spec
from modelyard.runtime import hparams as H
from modelyard.runtime.train import RuntimeFailure, load_spec


def _user_files(settings, user) -> Path:
    return settings.users_root / user.id


def test_the_server_built_spec_round_trips_through_the_runtime_parser(alice, settings):
    root = _user_files(settings, alice)
    (root / "Model/base").mkdir(parents=True)
    (root / "Model/base/config.json").write_text("{}")  # submit only checks that it is a HF folder
    (root / "Data/train").mkdir(parents=True, exist_ok=True)
    (root / "Data/validate").mkdir(parents=True, exist_ok=True)
    chat = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    (root / "Data/train/a.jsonl").write_text(json.dumps(chat) + "\n")
    (root / "Data/validate/v.jsonl").write_text(json.dumps(chat) + "\n")
    r = alice.post("/api/v1/jobs", json={
        "kind": "finetune", "strategy": "LoRA", "model_dir": "Model/base", "input_type": "local",
        "input_dir": "Data", "common_hyperparameters": {"max_steps": 3, "max_seq_length": 48, "packing": True},
        "finetune_hyperparameters": {"lora_r": 4},
        "roles": [{"role": "master", "replicas": 1, "cpu": 0.1, "memory_mib": 64}]})
    assert r.status_code == 201, r.text
    job = alice.get(f"/api/v1/jobs/{r.json()['id']}").json()
    stored = job["spec"]["training"]
    path = settings.jobs_dir / job["id"] / SPEC_FILE
    assert json.loads(path.read_text()) == stored  # the file is the stored block

    spec = load_spec(str(path))  # the trainer's own reader
    assert isinstance(spec, TrainingSpec)
    assert spec.model_dump() == stored  # nothing lost or renamed on the way
    assert spec.job_id == job["id"] and spec.kind == "finetune" and spec.strategy == "lora"
    assert spec.model_dir == str(root / "Model/base") and spec.model_format == "hf"
    assert spec.data.shape == "chat"
    assert spec.data.train == [str(root / "Data/train/a.jsonl")]
    assert spec.data.validation == [str(root / "Data/validate/v.jsonl")]
    assert spec.output_dir == job["spec"]["output_dir"] and spec.checkpoint_dir == job["spec"]["checkpoint_dir"]
    assert spec.metrics_file == job["spec"]["metrics_file"] and spec.resume is False
    assert spec.packing is True and spec.max_seq_length == 48
    # the typed hyperparameters pass the trainer's table unchanged
    assert spec.hyperparameters["max_steps"] == 3 and spec.hyperparameters["lora_r"] == 4
    assert H.validate(H.normalize_strategy(spec.strategy, False), spec.hyperparameters, None, False)["lora_r"] == 4


def _spec_doc(tmp_path: Path) -> dict:
    return TrainingSpec(job_id="j1", model_dir=str(tmp_path / "m"), output_dir=str(tmp_path / "out"),
                        checkpoint_dir=str(tmp_path / "ckpt")).model_dump()


@pytest.mark.parametrize("change, field", [
    (lambda d: d["data"].update(train="a.jsonl"), "data.train"),
    (lambda d: d.update(max_seq_length=0), "max_seq_length"),
    (lambda d: d.update(kind="distill"), "kind"),
    (lambda d: d.update(learning_rate=1e-3), "learning_rate"),  # a stray key: refused, not ignored
    (lambda d: d["data"].update(shape="csv"), "data.shape"),
    (lambda d: d.pop("checkpoint_dir"), "checkpoint_dir"),
])
def test_a_malformed_spec_is_refused_naming_the_field(tmp_path, change, field):
    doc = _spec_doc(tmp_path)
    change(doc)
    with pytest.raises(SpecError, match=re.escape(f"spec.json is malformed: {field}: ")):
        parse_training_spec(doc)
    path = tmp_path / SPEC_FILE
    path.write_text(json.dumps(doc))
    with pytest.raises(RuntimeFailure, match=re.escape(f"{path} is malformed: {field}: ")):
        load_spec(str(path))


def test_a_spec_that_is_not_an_object_is_refused():
    with pytest.raises(SpecError, match="spec.json must hold a JSON object, got list"):
        parse_training_spec([{}])


def test_the_trainer_exits_1_on_a_malformed_spec_with_the_field_in_its_error(tmp_path):
    doc = _spec_doc(tmp_path)
    doc["data"]["train"] = "not-a-list.jsonl"
    path = tmp_path / SPEC_FILE
    path.write_text(json.dumps(doc))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    env.update(MODELYARD_SPEC=str(path), MODELYARD_OUTPUT_DIR=str(tmp_path / "out"))
    proc = subprocess.run([sys.executable, "-m", "modelyard.runtime.train"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "is malformed: data.train: Input should be a valid list" in proc.stderr
    err = json.loads((tmp_path / "out" / "modelyard_error.json").read_text())
    assert "data.train" in err["error"]


def test_env_fills_the_paths_a_hand_written_spec_leaves_out(tmp_path, monkeypatch):
    doc = _spec_doc(tmp_path)
    for key in ("output_dir", "checkpoint_dir", "job_id"):
        doc.pop(key)
    path = tmp_path / SPEC_FILE
    path.write_text(json.dumps(doc))
    monkeypatch.setenv("MODELYARD_OUTPUT_DIR", "/x/out")
    monkeypatch.setenv("MODELYARD_CHECKPOINT_DIR", "/x/ckpt")
    monkeypatch.setenv("MODELYARD_JOB_ID", "j9")
    spec = load_spec(str(path))
    assert (spec.output_dir, spec.checkpoint_dir, spec.job_id) == ("/x/out", "/x/ckpt", "j9")
    monkeypatch.delenv("MODELYARD_CHECKPOINT_DIR")
    with pytest.raises(RuntimeFailure, match="checkpoint_dir: Field required"):
        load_spec(str(path))
