"""Sandbox cost: submit -> running p50 of a trivial job with the bubblewrap sandbox vs without it
(sandbox.mode unsafe), same run (target: < 30 ms added); LoRA tokens/s of the trainer inside the
sandbox vs the bare transformers+PEFT script (target >= 0.98x).

BENCH_SANDBOX_N (default 40) jobs per side, alternating sides; BENCH_FINETUNE_STEPS etc. size the
LoRA run as in bench_finetune."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench import bench_finetune as ft
from bench.bench_jobs import submit_until_running

N = int(os.environ.get("BENCH_SANDBOX_N", 40))
ADDED_TARGET_S = 0.030
BODY = {"kind": "custom", "command": "true", "roles": [{"cpu": 0.1, "memory_mib": 64}]}
RATIO_TARGET = 0.98


def _client(home: Path, mode: str):
    from fastapi.testclient import TestClient

    from modelyard.server.app import create_app
    from modelyard.server.settings import Settings

    s = Settings(home=home, admin_token="my_bench_admin", schema_mode="create_all", background=True,
                 sandbox={"mode": mode}, scheduler={"poll_interval_s": 0.5})
    return TestClient(create_app(s))


def latency() -> dict[str, float]:
    headers = {"Authorization": "Bearer my_bench_admin"}
    out: dict[str, list[float]] = {"bwrap": [], "unsafe": []}
    with tempfile.TemporaryDirectory() as tmp, _client(Path(tmp) / "a", "auto") as sbx, \
            _client(Path(tmp) / "b", "unsafe") as bare:
        for i in range(N + 3):
            for name, tc in (("bwrap", sbx), ("unsafe", bare)) if i % 2 == 0 else (("unsafe", bare), ("bwrap", sbx)):
                t = submit_until_running(tc, headers, BODY)[0]
                if i >= 3:  # warm-up excluded
                    out[name].append(t)
    return {k: statistics.median(v) for k, v in out.items()}


def run_sandboxed_trainer(model: Path, data: Path, work: Path) -> dict:
    """The trainer as a sandboxed replica runs it: bwrap with the job's binds, no network."""
    from modelyard.runtime import hparams as H
    from modelyard.server.executors.base import Bind, SandboxSpec
    from modelyard.server.executors.sandbox import bwrap_argv
    from modelyard.server.services.jobs.sandbox import runtime_dirs

    job = work / "sandboxed-job"
    job.mkdir(parents=True, exist_ok=True)
    hp = H.validate("LoRA", {k: v for k, v in ft.HPARAMS.items() if not k.startswith("lora")},
                    {k: v for k, v in ft.HPARAMS.items() if k.startswith("lora")}, False)
    spec = {"job_id": job.name, "kind": "finetune", "strategy": "LoRA", "model_dir": str(model), "model_format": "hf",
            "data": {"shape": "chat", "train": [str(data)], "validate": []}, "hyperparameters": hp,
            "output_dir": str(job / "output"), "checkpoint_dir": str(job / "checkpoints"), "resume": False,
            "metrics_file": str(job / "metrics.jsonl"), "packing": False, "max_seq_length": ft.SEQ}
    (job / "spec.json").write_text(json.dumps(spec))
    sb = SandboxSpec(binds=[*(Bind(d, d) for d in runtime_dirs()), Bind(str(job), str(job), writable=True),
                            Bind(str(model), str(model)), Bind(str(data.parent), str(data.parent))],
                     network="none", uid=65534, gid=65534, cwd=str(job))
    env = ft._env({"MODELYARD_JOB_ID": job.name, "MODELYARD_SPEC": str(job / "spec.json"), "HOME": "/tmp",
                   "RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1",
                   "MASTER_PORT": "29500"})
    p = subprocess.run(bwrap_argv(sb, [sys.executable, "-m", "modelyard.runtime.train"]), env=env,
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError("sandboxed trainer failed:\n" + p.stdout[-3000:] + p.stderr[-3000:])
    m = json.loads((job / "output" / "modelyard_result.json").read_text())["metrics"]
    return {"tokens": m["train_tokens"], "seconds": m["train_runtime_s"], "tokens_per_s": m["tokens_per_s"]}


def run() -> bool:
    from modelyard.server.executors.sandbox import unavailable_reason

    why = unavailable_reason()
    if why:
        print(f"  no sandbox here: {why}")
        return False
    lat = latency()
    added = lat["bwrap"] - lat["unsafe"]
    print(f"  submit -> running p50 over {N}: sandboxed {lat['bwrap'] * 1000:.1f} ms, unsandboxed "
          f"{lat['unsafe'] * 1000:.1f} ms -> added {added * 1000:.1f} ms (target < {ADDED_TARGET_S * 1000:.0f} ms), "
          f"ratio {lat['bwrap'] / lat['unsafe']:.2f}x", flush=True)
    model = ft.demo_model_dir()
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        work = Path(tmp)
        data = work / "data" / "train.jsonl"
        data.parent.mkdir()
        data.write_text("".join(json.dumps(r) + "\n" for r in ft.chat_samples(max(400, ft.STEPS * ft.BATCH // 4))))
        best: dict[str, float] = {"bare": 0.0, "sandboxed": 0.0}
        for i in range(ft.REPEATS):
            for name in (("bare", "sandboxed") if i % 2 == 0 else ("sandboxed", "bare")):
                r = ft.run_bare(model, data, work) if name == "bare" else run_sandboxed_trainer(model, data, work)
                print(f"  {name:<10} {r['tokens_per_s']:>9.1f} tokens/s ({r['tokens']} tokens in {r['seconds']:.1f}s)",
                      flush=True)
                best[name] = max(best[name], r["tokens_per_s"])
    ratio = best["sandboxed"] / best["bare"]
    print(f"  LoRA tokens/s sandboxed trainer / bare script: {ratio:.3f} (best of {ft.REPEATS}; target >= "
          f"{RATIO_TARGET})", flush=True)
    return added < ADDED_TARGET_S and ratio >= RATIO_TARGET


if __name__ == "__main__":
    sys.exit(0 if run() else 1)
