"""`python -m modelyard.runtime.train`: the training process of a fine-tuning / pre-training job.

Started by the job executor once per replica (contract: ARCHITECTURE.md, "Server ↔ runtime contract", "jobs"). Reads
MODELYARD_SPEC (spec.json), trains with transformers' Trainer (+ PEFT for LoRA), writes metrics
lines to metrics_file, checkpoints into checkpoint_dir, and on success the output model plus
modelyard_result.json into output_dir. Never imports the server.

Exit codes: 0 success; 1 error (message on stderr and in output_dir/modelyard_error.json);
143 stopped by SIGTERM (a checkpoint was saved when save_strategy allows, so `resume` goes on).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

from modelyard.core.spec import (
    ENV_FALLBACKS,
    SPEC_ENV,
    SPEC_FILE,
    SpecError,
    TrainingSpec,
    parse_training_spec,
)
from modelyard.runtime import data as D
from modelyard.runtime import hparams as H
from modelyard.runtime.report import TokenMeter, append_metrics, log, make_callback, write_json_atomic

# torch, transformers and peft are imported inside the functions that use them: a bad spec or bad
# data is refused before seconds of imports

CKPT_RE = re.compile(r"^checkpoint-(\d+)$")
COMPLETE_MARKER = "modelyard_complete"
EXIT_TERMINATED = 143


class RuntimeFailure(Exception):
    """An expected failure with a message for the user (no traceback needed)."""


# --- spec ---------------------------------------------------------------------------------------

def load_spec(path: str | None = None) -> TrainingSpec:
    """The job's spec.json (core/spec.py TrainingSpec); a malformed one fails with the field named."""
    path = path or os.environ.get(SPEC_ENV)
    if not path:
        raise RuntimeFailure(f"{SPEC_ENV} is not set (path of the job's {SPEC_FILE})")
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as exc:
        raise RuntimeFailure(f"cannot read spec {path}: {exc}") from None
    except ValueError as exc:
        raise RuntimeFailure(f"spec {path} is not valid JSON: {exc}") from None
    if isinstance(raw, dict):
        # spec values win; the env vars of the contract fill gaps
        for key, var in ENV_FALLBACKS.items():
            if not raw.get(key) and os.environ.get(var):
                raw[key] = os.environ[var]
    try:
        return parse_training_spec(raw, source=f"spec {path}")
    except SpecError as exc:
        raise RuntimeFailure(str(exc)) from None


# --- checkpoints --------------------------------------------------------------------------------

def _checkpoint_complete(path: Path) -> bool:
    """Only checkpoints written to the end count: kill -9 during a save leaves a partial folder."""
    if (path / COMPLETE_MARKER).exists():
        return True
    try:
        state = json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    m = CKPT_RE.match(path.name)
    if not m or int(state.get("global_step", -1)) != int(m.group(1)):
        return False
    has_weights = any((path / f).exists() for f in (
        "adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json",
        "adapter_model.bin", "pytorch_model.bin", "pytorch_model.bin.index.json"))
    return has_weights and (path / "optimizer.pt").exists()


def checkpoints(ckpt_dir: Path) -> list[tuple[int, Path]]:
    if not ckpt_dir.is_dir():
        return []
    out = []
    for p in ckpt_dir.iterdir():
        m = CKPT_RE.match(p.name)
        if m and p.is_dir():
            out.append((int(m.group(1)), p))
    return sorted(out)


def newest_complete_checkpoint(ckpt_dir: Path, *, discard_partial: bool = False) -> Path | None:
    """The newest complete checkpoint; partial ones newer than it are moved aside (so neither
    the Trainer's rotation nor a later resume trips on them)."""
    found = None
    for _step, path in reversed(checkpoints(ckpt_dir)):
        if _checkpoint_complete(path):
            found = path
            break
        if discard_partial:
            aside = path.with_name(f"partial-{path.name}-{int(time.time())}")
            log(f"checkpoint {path.name} is incomplete (interrupted save); moved to {aside.name}")
            try:
                path.rename(aside)
                shutil.rmtree(aside, ignore_errors=True)
            except OSError:
                pass
    return found


def _finished_state(path: Path, max_steps: int) -> int | None:
    """The checkpoint's global_step when it has reached the run's max_steps (the run's own when set,
    else the one the checkpoint was written for), so there is nothing left to train; else None."""
    try:
        state = json.loads((path / "trainer_state.json").read_text())
        step = int(state.get("global_step") or 0)
        target = int(max_steps) if max_steps and max_steps > 0 else int(state.get("max_steps") or 0)
    except (OSError, ValueError, TypeError):
        return None
    return step if target > 0 and step >= target else None


# --- model --------------------------------------------------------------------------------------

def _is_peft_dir(path: Path) -> bool:
    return (path / "adapter_config.json").exists()


def qlora_unavailable(cuda: bool) -> str | None:
    """Why QLoRA cannot run in this process (None: it can). Never fall back to plain LoRA."""
    import importlib.util

    if not cuda:
        return "QLoRA needs a CUDA GPU (this replica sees none)"
    if importlib.util.find_spec("bitsandbytes") is None:
        return "QLoRA needs bitsandbytes, which is not installed for the trainer's python"
    return None


def qlora_quantization(hp: dict):
    """The 4-bit base QLoRA trains on (Dettmers et al.): NF4 weights, double quantisation, and
    compute in bf16 (fp16 when the job asked for fp16)."""
    import torch
    from transformers import BitsAndBytesConfig

    compute = torch.float16 if hp.get("fp16") else torch.bfloat16
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute)


def load_model(spec: TrainingSpec, strategy: str, hp: dict, is_pretrain: bool, device_type: str):
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    model_dir = Path(spec.model_dir)
    if not model_dir.exists():
        raise RuntimeFailure(f"model_dir {model_dir} does not exist")
    dtype = torch.float32  # master weights; bf16/fp16 run as autocast through the Trainer
    peft_dir = None
    if spec.model_format == "peft" or _is_peft_dir(model_dir):
        peft_dir = model_dir
        base = spec.base_model_dir
        if not base:
            base = json.loads((model_dir / "adapter_config.json").read_text()).get("base_model_name_or_path")
        if not base or not Path(base).exists():
            raise RuntimeFailure(f"the PEFT adapter's base model is not available (base_model_dir={base!r})")
        model_dir = Path(base)
    if is_pretrain and hp.get("from_scratch"):
        config = AutoConfig.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
        log(f"pre-training from scratch: {config.model_type}, {model.num_parameters():,} parameters")
    elif strategy == "qlora" and not is_pretrain:
        why = qlora_unavailable(device_type == "cuda")
        if why:
            raise RuntimeFailure(why)
        from peft import prepare_model_for_kbit_training

        model = AutoModelForCausalLM.from_pretrained(model_dir, quantization_config=qlora_quantization(hp),
                                                     device_map={"": torch.cuda.current_device()})
        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=bool(hp.get("gradient_checkpointing")))
        log("QLoRA: base loaded in 4 bits (NF4, double quantisation) through bitsandbytes")
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    adapter = strategy in H.ADAPTER_STRATEGIES and not is_pretrain
    if peft_dir is not None:
        from peft import PeftModel

        if adapter:
            # go on training the same adapter
            return PeftModel.from_pretrained(model, peft_dir, is_trainable=True), True
        model = PeftModel.from_pretrained(model, peft_dir).merge_and_unload()
        log("merged the base version's LoRA adapter into its base for full training")
    if adapter:
        from peft import LoraConfig, TaskType, get_peft_model

        kw = dict(H.split(hp)[H.LORA])
        target = kw.get("target_modules")
        if isinstance(target, list) and len(target) == 1 and target[0] in ("all-linear", "all_linear", "all"):
            kw["target_modules"] = "all-linear"
        try:
            cfg = LoraConfig(task_type=TaskType.CAUSAL_LM, **kw)
            model = get_peft_model(model, cfg)
        except ValueError as exc:
            raise RuntimeFailure(f"LoRA configuration rejected: {exc}") from None
        return model, True
    return model, False


class TokenCounter:
    tokens = 0  # real tokens trained on so far by this process


def counting_trainer(base, counter: TokenCounter):
    """The Trainer, counting the real tokens of each training micro-batch (for tokens/s)."""
    key = D.Collator.NUM_TOKENS

    class CountingTrainer(base):
        def training_step(self, model, inputs, *args, **kwargs):
            counter.tokens += int(inputs.pop(key, 0))
            return super().training_step(model, inputs, *args, **kwargs)

        def prediction_step(self, model, inputs, *args, **kwargs):
            inputs.pop(key, None)
            return super().prediction_step(model, inputs, *args, **kwargs)

    return CountingTrainer


# --- main ---------------------------------------------------------------------------------------

class Stopper:
    """SIGTERM: before training, exit at once; during training, save a checkpoint and stop at the
    end of the current step (all replicas agree, so collectives stay in step)."""

    def __init__(self):
        self.requested = False
        self.training = False
        self.distributed = False

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum, _frame):
        self.requested = True
        if not self.training:
            log(f"received signal {signum} before training started; exiting")
            raise SystemExit(EXIT_TERMINATED)
        log(f"received signal {signum}: saving a checkpoint and stopping after this step")

    def __call__(self) -> bool:
        if not self.distributed:
            return self.requested
        import torch
        import torch.distributed as dist

        flag = torch.tensor([1 if self.requested else 0], dtype=torch.int32)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        self.requested = bool(flag.item())
        return self.requested


def _env_int(name: str, default: int) -> int:
    try:
        return int(os.environ.get(name, default))
    except ValueError:
        return default


def run(spec: TrainingSpec, stopper: Stopper) -> int:
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    if world > 1:
        os.environ.setdefault("LOCAL_RANK", str(rank))
        os.environ.setdefault("LOCAL_WORLD_SIZE", str(world))
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        if "MASTER_PORT" not in os.environ:
            raise RuntimeFailure("WORLD_SIZE > 1 but MASTER_PORT is not set")
    is_main = rank == 0
    if world <= 1:
        # a single process: without LOCAL_RANK, accelerate does not set up a one-process DDP on a
        # CUDA node (which warns about find_unused_parameters at every step and buys nothing)
        os.environ.pop("LOCAL_RANK", None)

    is_pretrain = spec.kind == "pretrain"
    strategy = H.normalize_strategy(spec.strategy, is_pretrain)
    hp = H.validate(strategy, spec.hyperparameters, None, is_pretrain)
    parts = H.split(hp)
    # the spec's top-level values (set by the platform) win over the hyperparameter defaults
    max_len = int(spec.max_seq_length or parts[H.DATA].get("max_seq_length") or 1024)
    packing = spec.packing if spec.packing is not None else bool(parts[H.DATA].get("packing"))
    hp["max_seq_length"], hp["packing"] = max_len, packing
    train_on_inputs = bool(parts[H.DATA].get("train_on_inputs"))
    shape = spec.data.shape or ("text" if is_pretrain else "chat")
    if is_pretrain and shape != "text":
        raise RuntimeFailure(f"pre-training needs a text dataset, got shape {shape!r}")

    data_spec = spec.data
    if not data_spec.train:
        raise RuntimeFailure("no training files (data.train is empty)")
    for f in data_spec.train + data_spec.validation:
        if not Path(f).is_file():
            raise RuntimeFailure(f"training data: data file not found: {f}")

    import torch

    cuda = torch.cuda.is_available()
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    if not cuda and local_world > 1 and "OMP_NUM_THREADS" not in os.environ:
        # replicas on one machine share its cores (the executor normally sets OMP_NUM_THREADS)
        torch.set_num_threads(max(1, torch.get_num_threads() // local_world))

    from transformers import AutoTokenizer, PrinterCallback, Trainer, TrainingArguments, set_seed
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_warning()
    out_dir = Path(spec.output_dir)
    ckpt_dir = Path(spec.checkpoint_dir)
    if is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "modelyard_result.json").unlink(missing_ok=True)
    metrics_file = spec.metrics_file if is_main else None

    # tokenizer and data (every replica builds the same examples; the sampler shards them)
    tok_dir = Path(spec.model_dir)
    if spec.model_format == "peft" and not (tok_dir / "tokenizer_config.json").exists() and spec.base_model_dir:
        tok_dir = Path(spec.base_model_dir)
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    D.ensure_pad_token(tokenizer)
    if shape != "text" and D.ensure_chat_template(tokenizer):
        log("the tokenizer has no chat template; using ChatML (saved with the output)")
    t0 = time.perf_counter()
    try:
        train_ex = D.build(tokenizer, list(data_spec.train), shape, max_len=max_len, packing=packing,
                           train_on_inputs=train_on_inputs)
        eval_ex = D.build(tokenizer, list(data_spec.validation), shape, max_len=max_len,
                          packing=False, train_on_inputs=train_on_inputs) if data_spec.validation else []
    except D.DataError as exc:
        raise RuntimeFailure(f"training data: {exc}") from None
    log(f"data: {len(train_ex)} training {'blocks' if packing or shape == 'text' else 'samples'}, "
        f"{len(eval_ex)} validation, shape={shape}, max_seq_length={max_len}, packing={packing} "
        f"({time.perf_counter() - t0:.1f}s)")

    set_seed(int(hp.get("seed", 42)))  # LoRA / from-scratch initialisation is reproducible too
    model, is_lora = load_model(spec, strategy, hp, is_pretrain, "cuda" if cuda else "cpu")
    if is_lora and is_main:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        log(f"LoRA: {trainable:,} trainable of {total:,} parameters")
    if hp.get("gradient_checkpointing") and is_lora:
        model.enable_input_require_grads()

    args_kw = dict(parts[H.ARGS])
    for key in ("logging_steps", "save_steps", "eval_steps", "warmup_steps"):
        v = args_kw.get(key)
        if isinstance(v, float) and v >= 1 and v.is_integer():
            args_kw[key] = int(v)
    if not eval_ex:
        args_kw["eval_strategy"] = "no"
    if "gradient_checkpointing" in args_kw and "activation_checkpointing" in TrainingArguments.__dataclass_fields__:
        args_kw["activation_checkpointing"] = args_kw.pop("gradient_checkpointing")  # the v5 name
    if world > 1:
        args_kw.setdefault("ddp_backend", "gloo" if not cuda else "nccl")
        args_kw["ddp_find_unused_parameters"] = False
    if args_kw.get("bf16") and not cuda and not torch.backends.mps.is_available():
        log("bf16 autocast on CPU")
    if args_kw.get("fp16") and not cuda:
        raise RuntimeFailure("fp16 needs a GPU; use bf16 on CPU")
    try:
        targs = TrainingArguments(
            output_dir=str(ckpt_dir), report_to="none", disable_tqdm=True, logging_first_step=True,
            remove_unused_columns=False, use_cpu=not cuda, save_only_model=False,
            dataloader_pin_memory=cuda, **args_kw)
    except (ValueError, TypeError) as exc:
        raise RuntimeFailure(f"training arguments rejected: {exc}") from None
    stopper.distributed = world > 1

    collator = D.Collator(tokenizer.pad_token_id)
    counter = TokenCounter()
    meter = TokenMeter(counter, world)

    def mark_complete(args, state):
        if is_main:
            path = ckpt_dir / f"checkpoint-{state.global_step}"
            if path.is_dir():
                (path / COMPLETE_MARKER).write_text(json.dumps({"global_step": state.global_step}))

    callback = make_callback(metrics_file, meter, is_main=is_main, stop_flag=stopper, on_checkpoint=mark_complete)
    trainer = counting_trainer(Trainer, counter)(model=model, args=targs, train_dataset=D.ListDataset(train_ex),
                      eval_dataset=D.ListDataset(eval_ex) if eval_ex else None, data_collator=collator,
                      processing_class=tokenizer, callbacks=[callback])
    trainer.remove_callback(PrinterCallback)  # our callback prints one line per log

    resume_from = None
    if spec.resume:
        if is_main:  # moves partial checkpoints aside before any replica looks
            newest_complete_checkpoint(ckpt_dir, discard_partial=True)
        if world > 1:
            trainer.accelerator.wait_for_everyone()
        resume_from = newest_complete_checkpoint(ckpt_dir)
        if resume_from is None:
            log(f"resume requested but {ckpt_dir} holds no complete checkpoint; starting from step 0")
        else:
            log(f"resuming from {resume_from.name}")

    # A checkpoint at max_steps (kill -9 after the last save, before the output was written) is the trained
    # model already: trainer.train() would run one more optimizer step from it (the Trainer tests
    # global_step >= max_steps only after a step, and its epoch loop still has batches left when max_steps
    # ends mid-epoch), finishing at max_steps + 1. Load it and go straight to the output instead.
    finished = _finished_state(resume_from, targs.max_steps) if resume_from else None

    stopper.training = True
    if stopper.requested:  # a signal that raced the start of training
        raise SystemExit(EXIT_TERMINATED)
    t_train = time.perf_counter()
    if finished is not None:
        from transformers import TrainerState

        log(f"{resume_from.name} is at max_steps ({finished}); nothing left to train")
        trainer._load_from_checkpoint(str(resume_from))
        trainer.state = TrainerState.load_from_json(str(resume_from / "trainer_state.json"))
        logged = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        training_loss = sum(logged) / len(logged) if logged else 0.0
    else:
        result = trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
        training_loss = result.training_loss
    seconds = time.perf_counter() - t_train  # the whole of trainer.train(), as a bare script would time it
    tokens = counter.tokens * max(1, world)
    if stopper():
        saved = checkpoints(ckpt_dir)
        log(f"stopped by signal at step {trainer.state.global_step}"
            + (f"; newest checkpoint {saved[-1][1].name}" if saved else ""))
        return EXIT_TERMINATED
    stopper.training = False

    eval_loss = None
    if eval_ex:
        last_eval = [e for e in trainer.state.log_history if "eval_loss" in e]
        if last_eval and last_eval[-1].get("step") == trainer.state.global_step:
            eval_loss = float(last_eval[-1]["eval_loss"])
        else:
            eval_loss = float(trainer.evaluate()["eval_loss"])  # logged as a metrics line by the callback

    # the output: adapter (LoRA) or full weights, plus the tokenizer
    trainer.save_model(str(out_dir))
    if is_main:
        tokenizer.save_pretrained(str(out_dir))
        losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
        metrics: dict[str, Any] = {
            # the run's mean loss, as transformers' TrainOutput.training_loss reports it
            "train_loss": float(training_loss),
            "first_loss": float(losses[0]) if losses else float(training_loss),
            "last_loss": float(losses[-1]) if losses else float(training_loss),
            "tokens_per_s": round(tokens / seconds, 2) if seconds > 0 else 0.0,
            "train_tokens": tokens,
            "train_runtime_s": round(seconds, 3),
        }
        if eval_loss is not None:
            metrics["eval_loss"] = eval_loss
        write_json_atomic(out_dir / "modelyard_result.json", {
            "format": "peft" if is_lora else "hf",
            "global_step": int(trainer.state.global_step),
            "metrics": metrics,
            "strategy": "pretrain" if is_pretrain else strategy,
            "resumed_from": resume_from.name if resume_from else None,
            "world_size": world,
            "hyperparameters": hp,
        })
        log(f"done: global_step={trainer.state.global_step} train_loss={metrics['train_loss']:.4f} "
            f"tokens/s={metrics['tokens_per_s']:.1f} -> {out_dir}")
    if world > 1:
        trainer.accelerator.wait_for_everyone()
    return 0


def _write_error(spec: TrainingSpec | None, message: str) -> None:
    try:
        out = (spec.output_dir if spec is not None else None) or os.environ.get(ENV_FALLBACKS["output_dir"])
        if out and _env_int("RANK", 0) == 0:
            Path(out).mkdir(parents=True, exist_ok=True)
            write_json_atomic(Path(out) / "modelyard_error.json", {"error": message, "ts": time.time()})
    except OSError:
        pass


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # deprecation notices of the libraries (renamed arguments) are noise in a job's log
    warnings.filterwarnings("ignore", category=FutureWarning)
    stopper = Stopper()
    stopper.install()
    spec = None
    try:
        spec = load_spec(argv[0] if argv else None)
        code = run(spec, stopper)
    except SystemExit:
        raise
    except RuntimeFailure as exc:
        msg = str(exc)
        print(f"modelyard.runtime: error: {msg}", file=sys.stderr, flush=True)
        _write_error(spec, msg)
        code = 1
    except Exception as exc:  # noqa: BLE001 - everything else is a bug or an environment problem
        traceback.print_exc()
        msg = f"{type(exc).__name__}: {exc}"
        print(f"modelyard.runtime: error: {msg}", file=sys.stderr, flush=True)
        _write_error(spec, msg)
        code = 1
    finally:
        _shutdown_distributed()
    return code


def _shutdown_distributed() -> None:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    except Exception:  # noqa: BLE001
        pass


if __name__ == "__main__":
    sys.exit(main())


# metrics helper re-exported for tests / the bare bench script
__all__ = ["main", "run", "load_spec", "newest_complete_checkpoint", "append_metrics"]
