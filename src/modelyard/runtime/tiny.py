"""A tiny random Llama and tokenizer built from scratch, plus small learnable datasets: what the
tests (and smoke checks) train on. Seconds on a laptop CPU; nothing is downloaded."""

from __future__ import annotations

import json
import random
from pathlib import Path

COLORS = ["red", "blue", "green", "yellow", "black", "white", "pink", "brown"]
THINGS = ["apple", "sky", "grass", "banana", "coal", "snow", "rose", "bear", "sea", "leaf", "sun", "cloud"]
ANSWER = {t: COLORS[i % len(COLORS)] for i, t in enumerate(THINGS)}


def chat_rows(n: int = 120, seed: int = 0) -> list[dict]:
    """Chat samples with a fixed mapping to learn: "what color is the X?" -> "the X is C."."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        t = rng.choice(THINGS)
        rows.append({"messages": [
            {"role": "user", "content": f"what color is the {t}?"},
            {"role": "assistant", "content": f"the {t} is {ANSWER[t]}."},
        ]})
    return rows


def alpaca_rows(n: int = 120, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        t = rng.choice(THINGS)
        rows.append({"instruction": "name the color", "input": t, "output": f"the {t} is {ANSWER[t]}."})
    return rows


def text_rows(n: int = 120, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [{"text": " ".join(f"the {t} is {ANSWER[t]}." for t in rng.sample(THINGS, 4))} for _ in range(n)]


def corpus() -> list[str]:
    out = []
    for r in chat_rows(60) + alpaca_rows(20):
        out.append(json.dumps(r))
    out += [r["text"] for r in text_rows(40)]
    return out


CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tokenizer(out_dir: str | Path, *, vocab_size: int = 400, chat_template: bool = True):
    """A byte-level BPE tokenizer trained on corpus(), with <pad>, <|endoftext|> and ChatML tokens."""
    # lazy (here and below): tests and benches import this module for its rows without torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus(), trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<|endoftext|>",
                                   bos_token="<|endoftext|>", unk_token=None)
    fast.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    if chat_template:
        fast.chat_template = CHATML
    fast.save_pretrained(str(out_dir))
    return fast


def build_model(out_dir: str | Path, *, hidden: int = 64, layers: int = 2, heads: int = 4, seed: int = 0,
                chat_template: bool = True) -> Path:
    """A randomly initialised LlamaForCausalLM + tokenizer saved (safetensors) in out_dir."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer(out_dir, chat_template=chat_template)
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2,
                      num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                      max_position_embeddings=256, pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                      bos_token_id=tok.bos_token_id, tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(str(out_dir))
    return out_dir


def write_jsonl(path: str | Path, rows: list[dict]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
