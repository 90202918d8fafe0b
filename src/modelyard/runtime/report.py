"""What the runtime tells the platform: metrics.jsonl lines while training, modelyard_result.json at
the end (formats in ARCHITECTURE.md, "Server ↔ runtime contract", "jobs")."""

from __future__ import annotations

import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def append_metrics(path: str | Path, record: dict[str, Any]) -> None:
    """One JSON object per line, flushed at once (the server tails this file)."""
    line = json.dumps(record, separators=(",", ":")) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)
        f.flush()


def write_json_atomic(path: str | Path, obj: Any) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


class TokenMeter:
    """Tokens/s between two log points, from the running count of real tokens trained on."""

    def __init__(self, counter, world_size: int = 1):
        self.counter = counter  # object with a `.tokens` attribute (train.TokenCounter)
        self.world = max(1, world_size)
        self.t0 = self.last_t = None
        self.tokens0 = self.last_tokens = 0

    def start(self) -> None:
        self.t0 = self.last_t = time.perf_counter()
        self.tokens0 = self.last_tokens = self.counter.tokens

    def rate_since_last(self) -> float | None:
        if self.last_t is None:
            return None
        now, tok = time.perf_counter(), self.counter.tokens
        dt, dtok = now - self.last_t, tok - self.last_tokens
        self.last_t, self.last_tokens = now, tok
        return dtok * self.world / dt if dt > 0 and dtok > 0 else None


def make_callback(metrics_file: str | None, meter: TokenMeter, *, is_main: bool, stop_flag=None,
                  on_checkpoint=None):
    """A transformers TrainerCallback writing metrics (main process only) and turning a SIGTERM
    (stop_flag() true) into "save a checkpoint now and stop"."""
    from transformers import TrainerCallback  # lazy: the server imports this module, not transformers

    class ModelyardCallback(TrainerCallback):
        def on_train_begin(self, args, state, control, **kw):
            meter.start()

        def on_log(self, args, state, control, logs=None, **kw):
            if not is_main or not logs:
                return
            rec: dict[str, Any] = {"step": int(state.global_step), "epoch": round(float(state.epoch or 0), 4)}
            n_metrics = 0
            for key in ("loss", "learning_rate", "grad_norm", "eval_loss"):
                v = _finite(logs.get(key))
                if v is not None:
                    rec[key] = v
                    n_metrics += 1
            if "loss" in rec:
                tps = meter.rate_since_last()
                if tps is not None:
                    rec["tokens_per_s"] = round(tps, 2)
            if not n_metrics:  # the end-of-training summary and the like
                return
            if state.max_steps and state.max_steps > 0:
                rec["max_steps"] = int(state.max_steps)  # for progress bars
            rec["ts"] = round(time.time(), 3)
            if metrics_file:
                append_metrics(metrics_file, rec)
            parts = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()
                             if k not in ("ts", "max_steps"))
            print(f"[modelyard] {parts}", flush=True)

        def on_step_end(self, args, state, control, **kw):
            if stop_flag is not None and stop_flag():
                control.should_save = args.save_strategy != "no"
                control.should_training_stop = True
            return control

        def on_save(self, args, state, control, **kw):
            if on_checkpoint is not None:
                on_checkpoint(args, state)

    return ModelyardCallback()


def log(msg: str) -> None:
    print(f"[modelyard] {msg}", flush=True, file=sys.stdout)
