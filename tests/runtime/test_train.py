"""The training runtime as the executor runs it: `python -m modelyard.runtime.train` in a real
subprocess, on a tiny random Llama and tokenizer built here (nothing downloaded)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelyard.runtime import hparams as H
from modelyard.runtime import tiny
from modelyard.runtime.train import COMPLETE_MARKER, newest_complete_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def base_model(tmp_path_factory) -> Path:
    return tiny.build_model(tmp_path_factory.mktemp("tiny-llama"))


def write_spec(job: Path, model_dir: Path, *, kind="finetune", strategy="LoRA", shape="chat", rows=None,
               val_rows=None, common=None, finetune=None, resume=False, packing=False, max_len=64) -> Path:
    job.mkdir(parents=True, exist_ok=True)
    rows = rows if rows is not None else tiny.chat_rows(120)
    train = tiny.write_jsonl(job / "data" / "train.jsonl", rows)
    val = tiny.write_jsonl(job / "data" / "validate.jsonl", val_rows) if val_rows else None
    hp = H.validate(strategy, common or {}, finetune or {}, kind == "pretrain")
    spec = {"job_id": job.name, "kind": kind, "strategy": strategy, "model_dir": str(model_dir), "model_format": "hf",
            "data": {"shape": shape, "train": [str(train)], "validate": [str(val)] if val else []},
            "hyperparameters": hp, "output_dir": str(job / "output"), "checkpoint_dir": str(job / "checkpoints"),
            "resume": resume, "metrics_file": str(job / "metrics.jsonl"), "packing": packing, "max_seq_length": max_len}
    path = job / "spec.json"
    path.write_text(json.dumps(spec))
    return path


def env_for(spec: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(MODELYARD_SPEC=str(spec), PYTHONUNBUFFERED="1", **{k: str(v) for k, v in extra.items()})
    return env


def start(spec: Path, log: Path, **extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "modelyard.runtime.train"], cwd=spec.parent, env=env_for(spec, **extra),
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


def train(spec: Path, timeout: float = 120, **extra) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelyard.runtime.train"], cwd=spec.parent, env=env_for(spec, **extra),
                          capture_output=True, text=True, timeout=timeout)


def metrics(job: Path) -> list[dict]:
    f = job / "metrics.jsonl"
    return [json.loads(x) for x in f.read_text().splitlines()] if f.exists() else []


def result(job: Path) -> dict:
    return json.loads((job / "output" / "modelyard_result.json").read_text())


def losses(job: Path) -> list[float]:
    return [m["loss"] for m in metrics(job) if "loss" in m]


def chat_prompt_ids(tok):
    text = tok.apply_chat_template([{"role": "user", "content": "what color is the sky?"}], tokenize=False,
                                   add_generation_prompt=True)
    return tok(text, return_tensors="pt", add_special_tokens=False)


COMMON = {"max_steps": "30", "per_device_train_batch_size": "8", "logging_steps": "5", "save_steps": "10"}


def test_lora_loss_falls_and_adapter_loads_and_generates(base_model, tmp_path):
    job = tmp_path / "job-lora"
    spec = write_spec(job, base_model, common={**COMMON, "learning_rate": "1e-2"},
                      finetune={"lora_r": "8", "lora_alpha": "16", "lora_target": "all-linear"},
                      val_rows=tiny.chat_rows(16, seed=1))
    proc = train(spec)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ls = losses(job)
    assert len(ls) >= 5 and ls[-1] < ls[0] - 0.5, ls
    ms = metrics(job)
    assert all({"step", "epoch", "ts"} <= set(m) for m in ms)
    assert any("learning_rate" in m and "grad_norm" in m and m.get("tokens_per_s", 0) > 0 for m in ms)
    assert any("eval_loss" in m for m in ms)
    res = result(job)
    assert res["format"] == "peft" and res["global_step"] == 30
    assert res["metrics"]["train_loss"] < res["metrics"]["first_loss"] and res["metrics"]["tokens_per_s"] > 0
    # train_loss is the run's mean (TrainOutput.training_loss): each logged loss covers the steps since the last
    logged = [(m["step"], m["loss"]) for m in ms if "loss" in m]
    steps = [0] + [st for st, _ in logged]
    mean = sum(loss * (steps[i + 1] - steps[i]) for i, (_, loss) in enumerate(logged)) / steps[-1]
    assert res["metrics"]["train_loss"] == pytest.approx(mean, rel=1e-3)
    assert res["metrics"]["last_loss"] == pytest.approx(ls[-1])
    assert "eval_loss" in res["metrics"]
    out = job / "output"
    assert (out / "adapter_config.json").exists() and (out / "adapter_model.safetensors").exists()
    assert (out / "tokenizer_config.json").exists()
    assert sorted(p.name for p in (job / "checkpoints").iterdir()) == ["checkpoint-10", "checkpoint-20", "checkpoint-30"]

    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    base = AutoModelForCausalLM.from_pretrained(base_model)
    model = PeftModel.from_pretrained(base, out).eval()
    lora_b = [p for n, p in model.named_parameters() if "lora_B" in n]
    assert lora_b and any(float(p.abs().sum()) > 0 for p in lora_b)  # the adapter learned something
    enc = chat_prompt_ids(tok)
    with torch.no_grad():
        gen = model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    assert gen.shape[1] > enc["input_ids"].shape[1]
    # the adapter changes the base model's predictions
    with torch.no_grad():
        plain = AutoModelForCausalLM.from_pretrained(base_model)(**enc).logits
        tuned = model(**enc).logits
    assert not torch.allclose(plain, tuned)


def test_full_finetune_on_alpaca(base_model, tmp_path):
    job = tmp_path / "job-full"
    spec = write_spec(job, base_model, strategy="FineTune", shape="alpaca", rows=tiny.alpaca_rows(120),
                      common={**COMMON, "learning_rate": "3e-3", "save_strategy": "no"})
    proc = train(spec)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ls = losses(job)
    assert ls[-1] < ls[0] - 1.0, ls
    res = result(job)
    assert res["format"] == "hf" and res["global_step"] == 30
    out = job / "output"
    assert (out / "model.safetensors").exists() and not (out / "adapter_config.json").exists()
    assert not (job / "checkpoints").exists() or not list((job / "checkpoints").iterdir())

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    enc = tok(tok.apply_chat_template([{"role": "user", "content": "name the color\n\nsky"}], tokenize=False,
                                      add_generation_prompt=True), return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        gen = model.generate(**enc, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    assert gen.shape[1] > enc["input_ids"].shape[1]


def test_pretraining_on_plain_text_with_packing(base_model, tmp_path):
    job = tmp_path / "job-pre"
    spec = write_spec(job, base_model, kind="pretrain", strategy="FineTune", shape="text", rows=tiny.text_rows(150),
                      common={**COMMON, "learning_rate": "3e-3", "save_strategy": "no"}, packing=True, max_len=32)
    proc = train(spec)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ls = losses(job)
    assert ls[-1] < ls[0] - 1.0, ls
    res = result(job)
    assert res["format"] == "hf" and res["strategy"] == "pretrain" and res["global_step"] == 30
    assert (job / "output" / "model.safetensors").exists()


def test_kill9_mid_run_then_resume_continues_from_the_checkpoint(base_model, tmp_path):
    job = tmp_path / "job-kill"
    common = {"max_steps": "40", "per_device_train_batch_size": "8", "logging_steps": "1", "save_steps": "5",
              "learning_rate": "1e-2"}
    spec = write_spec(job, base_model, common=common)
    log = job / "train.log"
    proc = start(spec, log)
    ckpt_dir = job / "checkpoints"
    deadline = time.time() + 90
    try:
        while time.time() < deadline and proc.poll() is None:
            if (ckpt_dir / "checkpoint-10" / COMPLETE_MARKER).exists():
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run ended before it could be killed: " + log.read_text()[-2000:]
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    assert not (job / "output" / "modelyard_result.json").exists()
    ckpt = newest_complete_checkpoint(ckpt_dir)
    assert ckpt is not None
    saved_step = int(ckpt.name.split("-")[1])
    assert 10 <= saved_step < 40
    before = len(metrics(job))

    spec_doc = json.loads(spec.read_text())
    spec_doc["resume"] = True
    spec.write_text(json.dumps(spec_doc))
    done = train(spec)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"resuming from checkpoint-{saved_step}" in done.stdout
    new = [m for m in metrics(job)[before:] if "loss" in m]
    assert new[0]["step"] == saved_step + 1, new[:3]  # the step counter continues from the checkpoint
    assert new[-1]["step"] == 40
    res = result(job)
    assert res["global_step"] == 40 and res["resumed_from"] == f"checkpoint-{saved_step}"


def test_resume_from_the_final_checkpoint_takes_no_extra_step(base_model, tmp_path):
    """kill -9 after the checkpoint at max_steps was saved but before the output was written: the resume
    must finish at max_steps (the Trainer alone would take one more step, 7 of 6, when max_steps ends
    mid-epoch: it only checks global_step >= max_steps after a step)."""
    job = tmp_path / "job-final"
    common = {"max_steps": "6", "per_device_train_batch_size": "8", "logging_steps": "1", "save_steps": "3",
              "learning_rate": "1e-2"}  # 120 rows / 8 = 15 steps an epoch: max_steps ends mid-epoch
    spec = write_spec(job, base_model, common=common)
    first = train(spec)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    ckpt_dir = job / "checkpoints"
    assert newest_complete_checkpoint(ckpt_dir) == ckpt_dir / "checkpoint-6"
    # the state a kill -9 during the final trainer.save_model(output_dir) leaves behind
    shutil.rmtree(job / "output")
    before = len(metrics(job))

    spec_doc = json.loads(spec.read_text())
    spec_doc["resume"] = True
    spec.write_text(json.dumps(spec_doc))
    done = train(spec)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resuming from checkpoint-6" in done.stdout
    assert [m["step"] for m in metrics(job)[before:] if "loss" in m] == []  # no step trained past max_steps
    res = result(job)
    assert res["global_step"] == 6 and res["resumed_from"] == "checkpoint-6", res
    assert res["metrics"]["train_loss"] > 0
    assert not (ckpt_dir / "checkpoint-7").exists()
    assert (job / "output" / "tokenizer_config.json").exists()
    # the output is the checkpoint's adapter, not the untrained initialisation
    import torch
    from safetensors.torch import load_file

    out_w = load_file(str(job / "output" / "adapter_model.safetensors"))
    ckpt_w = load_file(str(ckpt_dir / "checkpoint-6" / "adapter_model.safetensors"))
    assert out_w.keys() == ckpt_w.keys() and all(torch.equal(out_w[k], ckpt_w[k]) for k in out_w)
    assert any(float(v.abs().sum()) > 0 for k, v in out_w.items() if "lora_B" in k)


def test_sigterm_saves_a_checkpoint_and_exits_nonzero(base_model, tmp_path):
    job = tmp_path / "job-term"
    spec = write_spec(job, base_model, common={"max_steps": "2000", "per_device_train_batch_size": "4",
                                               "logging_steps": "1", "save_steps": "1000"})
    log = job / "train.log"
    proc = start(spec, log)
    try:
        deadline = time.time() + 90
        while time.time() < deadline and proc.poll() is None and len(metrics(job)) < 3:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert rc == 143, log.read_text()[-2000:]
    ckpt = newest_complete_checkpoint(job / "checkpoints")
    assert ckpt is not None and int(ckpt.name.split("-")[1]) >= 3
    assert not (job / "output" / "modelyard_result.json").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_replica_distributed_run(base_model, tmp_path):
    job = tmp_path / "job-ddp"
    spec = write_spec(job, base_model, common={"max_steps": "10", "per_device_train_batch_size": "4",
                                               "logging_steps": "2", "save_steps": "5", "learning_rate": "1e-2"})
    port = _free_port()
    procs = [start(spec, job / f"rank{r}.log", RANK=r, LOCAL_RANK=r, WORLD_SIZE=2, MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=port, OMP_NUM_THREADS=1) for r in (0, 1)]
    try:
        rcs = [p.wait(120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
    logs = "\n".join((job / f"rank{r}.log").read_text()[-2000:] for r in (0, 1))
    assert rcs == [0, 0], logs
    res = result(job)
    assert res["world_size"] == 2 and res["global_step"] == 10
    # one metrics stream (rank 0 only) and one output
    steps = [m["step"] for m in metrics(job) if "loss" in m]
    assert steps == sorted(set(steps)) and steps[-1] == 10
    # 2 replicas x 4 per device x 10 steps = 80 samples: two thirds of an epoch of 120
    assert abs(metrics(job)[-1]["epoch"] - 80 / 120) < 0.01
    assert (job / "output" / "adapter_model.safetensors").exists()
    assert (job / "checkpoints" / "checkpoint-10" / COMPLETE_MARKER).exists()


def test_errors_exit_nonzero_with_a_clear_message(base_model, tmp_path):
    job = tmp_path / "job-bad"
    spec = write_spec(job, base_model, common={"max_steps": "2"})
    doc = json.loads(spec.read_text())
    doc["data"]["train"] = [str(job / "missing.jsonl")]
    spec.write_text(json.dumps(doc))
    proc = train(spec)
    assert proc.returncode == 1
    assert "data file not found" in proc.stderr
    err = json.loads((job / "output" / "modelyard_error.json").read_text())
    assert "missing.jsonl" in err["error"]
    # a pre-training job on chat data is refused the same way
    job2 = tmp_path / "job-bad2"
    spec2 = write_spec(job2, base_model, kind="pretrain", strategy="FineTune", shape="chat", common={"max_steps": "2"})
    proc2 = train(spec2)
    assert proc2.returncode == 1 and "text dataset" in proc2.stderr
