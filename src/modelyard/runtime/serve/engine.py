"""The models one replica serves and the continuous-batching engines that run them.

A replica loads one base model (a Hugging Face folder) and optionally several PEFT LoRA adapters of
it. Each served model (the base, every adapter) gets its own transformers `ContinuousBatchingManager`
with `RequestSampler` as its only logits processor (see sampling.py). Adapters: peft's multi-adapter
mode picks adapters per batch row only inside `generate`, not inside continuous batching, so each
adapter is merged into its own copy of the base (`merge_and_unload`); every parameter the adapter did
not change is then re-pointed at the base's tensor, so only the LoRA-targeted matrices are
duplicated (the embeddings, norms, head and untargeted projections stay shared).
"""

from __future__ import annotations

import asyncio
import copy
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from .params import SamplingParams
from .sampling import RequestSampler, install


def cpu_has_bf16() -> bool:
    """avx512_bf16 or AMX: bf16 matmuls run natively (several times fp32 speed); without them bf16 is emulated."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def pick_device(requested: str) -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible")
    return requested


def pick_dtype(requested: str, device: str):
    import torch

    if requested == "auto":
        return torch.bfloat16 if device == "cuda" or cpu_has_bf16() else torch.float32
    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[requested]


@dataclass
class Finished:
    """The end of one generation: why it ended and the token counts."""
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int


@dataclass
class ServedModel:
    name: str
    root: str  # the base's served name for an adapter, itself for the base
    manager: object  # ContinuousBatchingManager
    sampler: RequestSampler
    created: int = field(default_factory=lambda: int(time.time()))


class Engine:
    """Owns the tokenizer and the served models; `stream()` runs one request through continuous batching."""

    def __init__(self, tokenizer, models: dict[str, ServedModel], *, dtype: str, device: str,
                 max_model_len: int, eos_ids: list[int]):
        self.tokenizer = tokenizer
        self.models = models
        self.dtype = dtype
        self.device = device
        self.max_model_len = max_model_len
        self.eos_ids = eos_ids

    def healthy(self) -> bool:
        """False once a generation thread died (a fatal error inside transformers): nothing will answer."""
        return all(m.manager.is_running() for m in self.models.values())

    async def stream(self, model: str, prompt_ids: list[int], params: SamplingParams, max_new_tokens: int,
                     on_tokens=None) -> AsyncIterator[list[int] | Finished]:
        """Yields the list of tokens generated so far each time it grows, then a `Finished`.
        Closing the iterator early (client gone, stop string hit) cancels the request."""
        served = self.models[model]
        manager, sampler = served.manager, served.sampler
        slot = sampler.open(params)
        request_id = uuid.uuid4().hex
        outputs: asyncio.Queue = asyncio.Queue()
        manager.register_result_handler(request_id, outputs.put_nowait)
        done = False
        try:
            added = manager.add_request(prompt_ids, request_id=request_id, max_new_tokens=max_new_tokens,
                                        streaming=True, eos_token_id=self.eos_ids, slot=slot)
            if added is None:
                raise RuntimeError("the generation loop is not accepting requests")
            seen = 0
            while True:
                out = await outputs.get()
                if out.error:
                    raise RuntimeError(f"generation failed: {out.error}")
                tokens = list(out.generated_tokens)
                finished = out.is_finished()
                hit_eos = bool(tokens) and tokens[-1] in self.eos_ids and finished
                visible = tokens[:-1] if hit_eos else tokens
                if len(visible) > seen:
                    seen = len(visible)
                    yield visible
                if finished:
                    done = True
                    reason = "stop" if hit_eos else "length"
                    yield Finished(reason, len(prompt_ids), len(tokens))
                    return
        finally:
            if not done:
                manager.cancel_request(request_id)
                with manager.output_router._lock:  # no late outputs for a request nobody reads
                    manager.output_router.result_handlers.pop(request_id, None)
            sampler.close(slot)

    def stop(self) -> None:
        for m in self.models.values():
            try:
                m.manager.stop(block=True, timeout=5)
            except Exception:  # shutting down: a manager that will not stop must not keep the others running
                pass


def _share_unchanged(merged, base) -> int:
    """Point every parameter of `merged` equal to the base's at the base's tensor; returns how many."""
    import torch

    base_params = dict(base.named_parameters())
    shared = 0
    for name, module in merged.named_modules():
        for pname, p in list(module.named_parameters(recurse=False)):
            full = f"{name}.{pname}" if name else pname
            b = base_params.get(full)
            if b is not None and b.shape == p.shape and torch.equal(b, p):
                setattr(module, pname, b)
                shared += 1
    return shared


# The paged KV cache holds this many tokens (all running requests together), at least one full context.
# transformers would otherwise size it from the free memory, which on a CPU host means gigabytes, and
# its sdpa attention mask grows with max_batch_tokens x cache tokens.
KV_CACHE_TOKENS = 8192
PAGE_TOKENS = 256
DEFAULT_BATCH_TOKENS = {"cpu": 512, "cuda": 2048}


def _new_manager(model, *, max_batch_tokens: int | None, max_model_len: int, on_step):
    from transformers import GenerationConfig
    from transformers.generation.configuration_utils import ContinuousBatchingConfig

    gen = GenerationConfig(do_sample=False, max_new_tokens=max_model_len, eos_token_id=-1,
                           pad_token_id=model.generation_config.pad_token_id or 0)
    kv_tokens = max(KV_CACHE_TOKENS, max_model_len)
    batch_tokens = max_batch_tokens or DEFAULT_BATCH_TOKENS.get(model.device.type, 512)
    cb = ContinuousBatchingConfig(max_batch_tokens=batch_tokens, num_blocks=-(-kv_tokens // PAGE_TOKENS),
                                  page_size=PAGE_TOKENS, auto_switch_to_flash=False)
    manager = model.init_continuous_batching(generation_config=gen, continuous_batching_config=cb)
    sampler = RequestSampler()
    sampler.on_step = on_step
    install(manager, sampler)
    manager.start()
    return manager, sampler


def load_engine(model_path: str, *, served_names: list[str], adapters: dict[str, str], dtype: str,
                device: str, max_batch_tokens: int | None, max_model_len: int | None,
                timings: dict[str, float], on_step=None) -> Engine:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    device = pick_device(device)
    torch_dtype = pick_dtype(dtype, device)
    t0 = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(model_path)
    base = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch_dtype, attn_implementation="sdpa")
    base.to(device).eval()
    limit = max_model_len or getattr(base.config, "max_position_embeddings", None) or 2048
    eos = base.generation_config.eos_token_id
    eos = eos if isinstance(eos, list) else [eos] if eos is not None else []
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in eos:
        eos.append(tokenizer.eos_token_id)
    if "<|im_end|>" in tokenizer.get_vocab() and tokenizer.convert_tokens_to_ids("<|im_end|>") not in eos:
        eos.append(tokenizer.convert_tokens_to_ids("<|im_end|>"))  # ChatML ends a turn there
    merged: dict[str, object] = {}
    for name, path in adapters.items():
        from peft import PeftModel

        copy_of_base = copy.deepcopy(base)
        m = PeftModel.from_pretrained(copy_of_base, path).merge_and_unload().eval()
        _share_unchanged(m, base)
        merged[name] = m
    timings["load_weights_s"] = time.perf_counter() - t0
    models: dict[str, ServedModel] = {}
    root = served_names[0]
    manager, sampler = _new_manager(base, max_batch_tokens=max_batch_tokens, max_model_len=limit, on_step=on_step)
    for n in served_names:
        models[n] = ServedModel(n, root, manager, sampler)
    for name, m in merged.items():
        manager, sampler = _new_manager(m, max_batch_tokens=max_batch_tokens, max_model_len=limit, on_step=on_step)
        models[name] = ServedModel(name, root, manager, sampler)
    dtype_name = str(torch_dtype).removeprefix("torch.")
    return Engine(tokenizer, models, dtype=dtype_name, device=device, max_model_len=limit, eos_ids=eos)
