"""The README quick start through the CLI against the test app: the shipped sample → upload →
dataset → a tiny model → finetune --follow (progress lines in a pipe) → the output model named
<base>-<strategy> with lineage → the lineage refuses deleting its dataset version, saying so →
models and searches addressed by name, alias and id prefix."""

from __future__ import annotations

import pytest

pytestmark = [pytest.mark.background, pytest.mark.slow]


def test_quick_start_end_to_end(cli, alice, tmp_path, monkeypatch):
    from modelyard.runtime import tiny

    monkeypatch.setenv("MODELYARD_FOLLOW_SECONDS", "0")
    sample = tmp_path / "train.jsonl"
    cli(alice, "samples", "get", "chat-demo", sample)
    cli(alice, "files", "upload", sample, "Data/train/train.jsonl")
    ds = cli.json(alice, "datasets", "create", "chat-demo", "--path", "Data")
    assert ds["shape"] == "chat" and ds["rows"]["train"] == 60

    model_dir = tiny.build_model(tmp_path / "tiny")
    cli(alice, "files", "upload", model_dir, "Model/tiny")
    out = cli(alice, "models", "import", "tiny", "Model/tiny").stdout
    assert "done" in out

    r = cli(alice, "finetune", "--model", "tiny", "--dataset", "chat-demo", "--strategy", "lora",
            "--hp", "max_steps=4", "--hp", "logging_steps=1", "--hp", "per_device_train_batch_size=4",
            "--hp", "max_seq_length=64", "--name", "qs-lora", "--follow")
    steps = [ln for ln in r.stdout.splitlines() if ln.startswith("step ")]
    assert steps and steps[-1].startswith("step 4/4 loss "), r.stdout
    assert r.stdout.splitlines()[-1].startswith("job qs-lora succeeded (model version ")

    job = cli.json(alice, "jobs", "show", "qs-lora")
    models = {m["name"]: m for m in cli.json(alice, "models", "ls")}
    assert "tiny-lora" in models, sorted(models)  # <base>-<strategy>
    out_v = cli.json(alice, "models", "show", "tiny-lora:1")
    assert out_v["id"] == job["output_model_version_id"] and out_v["dataset_version_id"] == ds["id"]

    # the lineage needs the dataset version: refused, one line saying what
    r = cli(alice, "datasets", "rm", "chat-demo:1", "-y", code=1)
    assert r.output.startswith("error: in_use: ") and r.output.count("\n") == 1
    assert "tiny-lora" in r.output or out_v["id"] in r.output or "lineage" in r.output
    assert cli.json(alice, "datasets", "show", "chat-demo:1")["id"] == ds["id"]
    r = cli(alice, "jobs", "rm", "qs-lora", "-y", code=1)
    assert r.output.startswith("error: in_use: ")

    # models: name:version, alias, id prefix
    base = cli.json(alice, "models", "show", "tiny")
    v1 = cli.json(alice, "models", "show", "tiny:1")
    cli(alice, "models", "alias", "tiny:1", "prod")
    assert cli.json(alice, "models", "show", "tiny:prod")["id"] == v1["id"]
    assert cli.json(alice, "models", "show", base["id"][:6])["id"] == base["id"]
    assert cli.json(alice, "models", "resolve", "tiny:prod")["id"] == v1["id"]
    line = cli(alice, "models", "resolve", "tiny:prod", env={"COLUMNS": "40"}).stdout
    assert line.count("\n") == 1 and v1["path"] in line  # a pipe gets the whole path on one line
    r = cli(alice, "models", "rm", "tiny", input="n\n", code=1)
    assert "delete model tiny" in r.output and cli.json(alice, "models", "show", "tiny")["id"] == base["id"]

    # searches: --follow in a pipe prints a line per trial change and the summary table, no raw JSON;
    # then addressed by name and id prefix
    r = cli(alice, "search", "create", "--model", "tiny", "--dataset", "chat-demo", "-p",
            "learning_rate=float:1e-4..1e-3:log", "--max-trials", "1", "--hp", "max_steps=1",
            "--hp", "max_seq_length=64", "--name", "qs-search", "--follow")
    lines = r.stdout.splitlines()
    assert any(ln.startswith("trial 0 complete train_loss ") for ln in lines), r.stdout
    assert not any(ln.lstrip().startswith(("{", "}", '"')) for ln in lines), r.stdout
    s = cli.json(alice, "search", "show", "qs-search")
    assert s["state"] == "succeeded" and cli.json(alice, "search", "show", s["id"][:6])["id"] == s["id"]
    cli(alice, "search", "rm", "qs-search", "-y")
    assert alice.get(f"/api/v1/searches/{s['id']}").status_code == 404
    assert "qs-lora" in cli(alice, "jobs", "ls").stdout
