"""Training data inside the job: read rows, render them through the tokenizer, mask, pack, collate.

Files are read with modelyard.core.formats (the reader dataset validation and job resolution use:
the same formats, the same rows). Shapes (spec["data"]["shape"]):
- "chat":   {"messages": [{"role", "content"}, ...]} or ShareGPT {"conversations": [{"from", "value"}]}.
            Rendered with the tokenizer's chat template (a ChatML fallback when it has none); the loss
            is on the assistant turns only (labels -100 elsewhere) unless train_on_inputs.
- "alpaca": {"instruction", "input"?, "output"} (also "prompt"/"response"|"completion"): one user turn
            and one assistant answer, rendered like chat; loss on the answer.
- "text":   {"text"} rows (or .txt/.md files, one text per line): causal LM on everything, concatenated with EOS and cut
            into max_seq_length blocks (group_texts).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from modelyard.core import formats

log = logging.getLogger("modelyard.runtime")

IGNORE = -100

# ChatML, used when the tokenizer ships no chat template (saved with the output tokenizer, so the
# trained model is served with the template it was trained with).
FALLBACK_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_SHAREGPT_ROLES = {**formats.SHAREGPT_ROLES, "model": "assistant", "bot": "assistant"}


class DataError(ValueError):
    """Bad or unusable training data (the job fails with this message)."""


# --- reading ----------------------------------------------------------------------------------

def read_rows(path: str | Path) -> Iterator[dict[str, Any]]:
    """Rows of a data file: modelyard.core.formats, the reader datasets validate with (jsonl, json,
    csv, tsv, parquet; txt/md one text per line). A bad file is a DataError naming file and line."""
    try:
        yield from formats.read_rows(path)
    except formats.FormatError as exc:
        raise DataError(exc.message) from None


def read_all(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in paths:
        if not Path(path).exists():
            raise DataError(f"data file not found: {path}")
        rows.extend(read_rows(path))
    return rows


# --- rows -> conversations ---------------------------------------------------------------------

def to_messages(row: dict[str, Any], shape: str) -> list[dict[str, str]]:
    """A chat or alpaca row as [{"role", "content"}]."""
    if shape == "alpaca" or (formats.detect_shape(row) or ("",))[0] == "alpaca":
        ikey, okey = formats.alpaca_keys(row)
        instr, out = row.get(ikey), row.get(okey)
        if instr is None or out is None:
            raise DataError(f"alpaca row needs instruction and output (or prompt and response), "
                            f"got keys {sorted(row)}")
        inp = row.get("input") or ""
        user = f"{instr}\n\n{inp}" if str(inp).strip() else str(instr)
        msgs = []
        if row.get("system"):
            msgs.append({"role": "system", "content": str(row["system"])})
        msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": str(out)}]
        return msgs
    conv = formats.json_cell(row.get("messages", row.get("conversations", row.get("conversation"))))
    if not isinstance(conv, list) or not conv:
        raise DataError(f"chat row needs a non-empty messages (or conversations) list, got keys {sorted(row)}")
    msgs = []
    for m in conv:
        if not isinstance(m, dict):
            raise DataError("each message must be an object with role and content")
        if "role" in m:
            role, content = str(m["role"]).lower(), m.get("content", "")
        elif "from" in m:
            role = _SHAREGPT_ROLES.get(str(m["from"]).lower())
            if role is None:
                raise DataError(f"unknown ShareGPT speaker {m['from']!r}")
            content = m.get("value", "")
        else:
            raise DataError("each message needs role/content (or ShareGPT from/value)")
        msgs.append({"role": role, "content": "" if content is None else str(content)})
    if not any(m["role"] == "assistant" for m in msgs):
        raise DataError("a conversation has no assistant turn to learn from")
    return msgs


# --- tokenisation ------------------------------------------------------------------------------

def ensure_chat_template(tokenizer) -> bool:
    """Give the tokenizer a chat template if it has none. True when the fallback was installed."""
    if getattr(tokenizer, "chat_template", None):
        return False
    tokenizer.chat_template = FALLBACK_CHAT_TEMPLATE
    return True


def ensure_pad_token(tokenizer) -> None:
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})


def _render(tokenizer, msgs: list[dict], *, gen: bool) -> str:
    return tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=gen)


def chat_segments(tokenizer, msgs: list[dict], train_on_inputs: bool = False) -> list[tuple[str, bool]]:
    """The rendered conversation cut into (text, trained) pieces: assistant answers (with the
    template's end-of-turn marker) are trained, everything else is context."""
    full = _render(tokenizer, msgs, gen=False)
    if train_on_inputs:
        return [(full, True)]
    segs: list[tuple[str, bool]] = []
    done = ""
    for i, m in enumerate(msgs):
        if m["role"] != "assistant":
            continue
        prompt = _render(tokenizer, msgs[:i], gen=True) if i else ""
        upto = _render(tokenizer, msgs[: i + 1], gen=False)
        if not (prompt.startswith(done) and upto.startswith(prompt)):
            # a template that rewrites earlier turns: no clean answer boundaries
            return [(full, True)]
        segs.append((prompt[len(done):], False))
        segs.append((upto[len(prompt):], True))
        done = upto
    if full.startswith(done) and len(full) > len(done):
        segs.append((full[len(done):], False))
    return [(t, trained) for t, trained in segs if t]


def tokenize_supervised(tokenizer, rows: list[dict], shape: str, max_len: int,
                        train_on_inputs: bool = False) -> list[dict[str, list[int]]]:
    """chat / alpaca rows -> [{"input_ids", "labels"}] truncated to max_len."""
    ensure_chat_template(tokenizer)
    all_segs: list[list[tuple[str, bool]]] = []
    for i, row in enumerate(rows):
        try:
            all_segs.append(chat_segments(tokenizer, to_messages(row, shape), train_on_inputs))
        except DataError as exc:
            raise DataError(f"row {i + 1}: {exc}") from None
    flat = [t for segs in all_segs for t, _ in segs]
    ids = tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
    out: list[dict[str, list[int]]] = []
    k = 0
    dropped = 0
    for segs in all_segs:
        input_ids: list[int] = []
        labels: list[int] = []
        for _text, trained in segs:
            piece = ids[k]
            k += 1
            input_ids += piece
            labels += piece if trained else [IGNORE] * len(piece)
        input_ids, labels = input_ids[:max_len], labels[:max_len]
        if not any(x != IGNORE for x in labels):
            dropped += 1  # the answer was truncated away
            continue
        out.append({"input_ids": input_ids, "labels": labels})
    if dropped:
        log.warning("%d sample(s) dropped: no answer tokens within max_seq_length=%d", dropped, max_len)
    return out


def text_of(row: dict[str, Any]) -> str:
    for key in ("text", "content", "document", "body"):
        if isinstance(row.get(key), str):
            return row[key]
    if "messages" in row or "conversations" in row or "instruction" in row:
        raise DataError("pre-training expects plain text rows ({\"text\": ...}), got a chat/alpaca row")
    raise DataError(f"text row needs a 'text' field, got keys {sorted(row)}")


def tokenize_text(tokenizer, rows: list[dict], max_len: int) -> list[dict[str, list[int]]]:
    """Plain text -> concatenated with EOS -> blocks of max_len (the last partial block kept)."""
    texts = [text_of(r) for r in rows]
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []
    eos = tokenizer.eos_token_id
    stream: list[int] = []
    for seq in ids:
        stream += seq + ([eos] if eos is not None else [])
    blocks = [stream[i:i + max_len] for i in range(0, len(stream), max_len)]
    blocks = [b for b in blocks if len(b) > 1]
    return [{"input_ids": b, "labels": list(b)} for b in blocks]


def pack(examples: list[dict[str, list[int]]], max_len: int) -> list[dict[str, list[int]]]:
    """Concatenate supervised examples (labels kept) and cut into full max_len blocks."""
    ids: list[int] = []
    labels: list[int] = []
    for ex in examples:
        ids += ex["input_ids"]
        labels += ex["labels"]
    out = []
    for i in range(0, len(ids), max_len):
        lab = labels[i:i + max_len]
        if any(x != IGNORE for x in lab) and len(lab) > 1:
            out.append({"input_ids": ids[i:i + max_len], "labels": lab})
    return out


def build(tokenizer, paths: list[str], shape: str, *, max_len: int, packing: bool = False,
          train_on_inputs: bool = False) -> list[dict[str, list[int]]]:
    rows = read_all(paths)
    if not rows:
        raise DataError(f"no rows in {', '.join(str(p) for p in paths) or '(no files)'}")
    if shape == "text":
        return tokenize_text(tokenizer, rows, max_len)
    if shape not in ("chat", "alpaca"):
        raise DataError(f"unknown data shape {shape!r} (chat, alpaca, text)")
    examples = tokenize_supervised(tokenizer, rows, shape, max_len, train_on_inputs)
    if not examples:
        raise DataError("no usable samples (every answer was empty or truncated away)")
    return pack(examples, max_len) if packing else examples


class ListDataset:
    """A map-style dataset over tokenised examples (torch's Dataset protocol)."""

    def __init__(self, examples: list[dict[str, list[int]]]):
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        return self.examples[i]


class Collator:
    """Pads a batch (right padding; labels -100 on padding). The batch carries its count of real
    (non-pad) tokens under NUM_TOKENS, a plain int the trainer pops before the forward pass (so
    counting never waits on the GPU)."""

    NUM_TOKENS = "modelyard_num_tokens"

    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, batch: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch  # lazy: row reading and validation need no torch

        n = max(len(ex["input_ids"]) for ex in batch)
        ids = torch.full((len(batch), n), self.pad_id, dtype=torch.long)
        labels = torch.full((len(batch), n), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(batch), n), dtype=torch.long)
        for i, ex in enumerate(batch):
            k = len(ex["input_ids"])
            ids[i, :k] = torch.tensor(ex["input_ids"], dtype=torch.long)
            labels[i, :k] = torch.tensor(ex["labels"], dtype=torch.long)
            mask[i, :k] = 1
        n_real = sum(len(ex["input_ids"]) for ex in batch)
        return {"input_ids": ids, "attention_mask": mask, "labels": labels, self.NUM_TOKENS: n_real}
