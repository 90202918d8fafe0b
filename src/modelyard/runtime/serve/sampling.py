"""Per-request sampling inside transformers' continuous batching.

transformers' own per-request processors cover temperature / top-k / top-p, but not a per-request
`seed` (its sampler draws from one global generator shared by the whole batch, so a request's
tokens would depend on its neighbours) nor `repetition_penalty`. So one processor does all of a
request's sampling here: each batch row carries a slot number (the int32 tensor argument transformers
hands every per-request processor), the slot names the request's `SamplingParams` and its own
`torch.Generator`, and the processor returns scores where only the chosen token is finite. The
manager runs with `do_sample=False`, so its argmax then picks exactly that token. Rows with greedy
decoding and no penalty are left untouched (argmax of the raw logits).
"""

from __future__ import annotations

import threading

import torch
from transformers.generation.continuous_batching.cb_logits_processors import (
    ContinuousBatchingLogitsProcessor,
    ContinuousBatchingLogitsProcessorList,
)
from transformers.generation.logits_process import LogitsProcessorList

from .params import SamplingParams

NO_SLOT = -1


class _Slot:
    __slots__ = ("params", "generator", "state")

    def __init__(self, params: SamplingParams):
        self.params = params
        self.generator = torch.Generator(device="cpu")
        if params.seed is not None:
            self.generator.manual_seed(params.seed)
        else:
            self.generator.seed()
        self.state = None  # transformers' RequestState, set when the request first enters a batch


class RequestSampler(ContinuousBatchingLogitsProcessor):
    supported_kwargs: dict[str, type] = {"slot": int}
    ignored_kwargs: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._slots: dict[int, _Slot] = {}
        self._next = 0
        self._lock = threading.Lock()
        self.last_rows = 0  # rows that got a token in the last step (the running batch size)
        self.on_step = None  # called with that row count once per step (metrics)

    def open(self, params: SamplingParams) -> int:
        with self._lock:
            slot = self._next
            self._next = (self._next + 1) % (2**31 - 1)
            self._slots[slot] = _Slot(params)
        return slot

    def close(self, slot: int) -> None:
        with self._lock:
            self._slots.pop(slot, None)

    # --- called by transformers' generation thread ---
    def fill_defaults(self, int32_tensor: torch.Tensor) -> None:
        int32_tensor.fill_(NO_SLOT)

    def prepare_tensor_args(self, requests_with_new_token) -> torch.Tensor:
        ids = []
        with self._lock:
            for fut in requests_with_new_token:
                slot = fut.state.logit_processor_kwargs.get("slot", NO_SLOT)
                entry = self._slots.get(slot)
                if entry is not None:
                    entry.state = fut.state
                ids.append(slot)
        self.last_rows = len(ids)
        if self.on_step is not None:
            self.on_step(len(ids))
        return torch.tensor(ids, dtype=torch.int32)

    def __call__(self, scores: torch.Tensor, tensor_arg: torch.Tensor) -> torch.Tensor:
        slots = tensor_arg[: scores.size(0)].tolist()
        with self._lock:
            entries = [self._slots.get(s) for s in slots]
        out = None
        for row, entry in enumerate(entries):
            if entry is None or entry.params.passthrough:
                continue
            token = self._choose(scores[row], entry)
            if out is None:
                out = scores.clone()
            out[row].fill_(float("-inf"))
            out[row, token] = 0.0
        return scores if out is None else out

    @staticmethod
    def _choose(logits: torch.Tensor, entry: _Slot) -> int:
        p = entry.params
        logits = logits.float()
        if p.repetition_penalty != 1.0 and entry.state is not None:
            # as transformers' RepetitionPenaltyLogitsProcessor: over the prompt and the generated tokens
            seen = torch.tensor(sorted(set(entry.state.initial_tokens) | set(entry.state.generated_tokens)),
                                dtype=torch.long)
            if seen.numel():
                picked = logits[seen]
                logits = logits.clone()
                logits[seen] = torch.where(picked < 0, picked * p.repetition_penalty, picked / p.repetition_penalty)
        if p.greedy:
            return int(torch.argmax(logits))
        logits = logits / p.temperature
        if p.top_k and p.top_k < logits.numel():
            kth = torch.topk(logits, p.top_k).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if p.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True)
            cum = sorted_logits.softmax(-1).cumsum(-1)
            drop = cum - sorted_logits.softmax(-1) >= p.top_p  # keep the smallest prefix reaching top_p
            logits = logits.masked_fill(drop.scatter(0, order, drop), float("-inf"))
        probs = logits.softmax(-1)
        return int(torch.multinomial(probs, 1, generator=entry.generator))


def install(manager, sampler: RequestSampler) -> None:
    """Make `sampler` the manager's only logits processor (before its generation thread starts)."""
    lst = ContinuousBatchingLogitsProcessorList(LogitsProcessorList([sampler]), per_request_processors=False)
    lst.tensors_required = 1  # one int32 row per step: the slot of each batch row
    manager.logit_processor = lst
