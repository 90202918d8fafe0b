"""runtime.data: rows -> tokens with loss on answers only, ShareGPT, alpaca, text blocks, packing."""

from __future__ import annotations

import json

import pytest

from modelyard.runtime import data as D
from modelyard.runtime import tiny


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return tiny.build_tokenizer(tmp_path_factory.mktemp("tok"))


def _decode_trained(tok, ex):
    return tok.decode([i for i, lab in zip(ex["input_ids"], ex["labels"], strict=True) if lab != D.IGNORE])


def test_chat_loss_only_on_assistant_turns(tok):
    row = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "what color is the sky?"},
                        {"role": "assistant", "content": "the sky is blue."},
                        {"role": "user", "content": "and the sun?"}, {"role": "assistant", "content": "yellow."}]}
    [ex] = D.tokenize_supervised(tok, [row], "chat", 256)
    trained = _decode_trained(tok, ex)
    assert "the sky is blue." in trained and "yellow." in trained
    assert "what color" not in trained and "be brief" not in trained and "and the sun" not in trained
    assert trained.count("<|im_end|>") == 2  # the model learns to end its turn
    full = tok.apply_chat_template(row["messages"], tokenize=False)
    assert tok.decode(ex["input_ids"]) == full
    # train_on_inputs: everything
    [ex2] = D.tokenize_supervised(tok, [row], "chat", 256, train_on_inputs=True)
    assert all(lab != D.IGNORE for lab in ex2["labels"])


def test_sharegpt_and_alpaca_and_fallback_template(tmp_path):
    tok = tiny.build_tokenizer(tmp_path / "t", chat_template=False)
    assert D.ensure_chat_template(tok) is True
    sg = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello there"}]}
    al = {"instruction": "name the color", "input": "sky", "output": "blue"}
    a, b = D.tokenize_supervised(tok, [sg, al], "chat", 128)
    assert _decode_trained(tok, a).startswith("hello there")
    assert _decode_trained(tok, b).startswith("blue") and "sky" in tok.decode(b["input_ids"])
    with pytest.raises(D.DataError):
        D.tokenize_supervised(tok, [{"messages": [{"role": "user", "content": "no answer"}]}], "chat", 64)
    with pytest.raises(D.DataError):
        D.tokenize_supervised(tok, [{"foo": 1}], "alpaca", 64)


def test_truncation_packing_and_text_blocks(tok, tmp_path):
    rows = tiny.chat_rows(30)
    exs = D.tokenize_supervised(tok, rows, "chat", 22)
    assert exs and all(len(e["input_ids"]) <= 22 for e in exs)
    full = D.tokenize_supervised(tok, rows, "chat", 256)
    packed = D.pack(full, 64)
    assert sum(len(p["input_ids"]) for p in packed) <= sum(len(e["input_ids"]) for e in full)
    assert all(len(p["input_ids"]) == 64 for p in packed[:-1])
    blocks = D.tokenize_text(tok, tiny.text_rows(20), 32)
    assert all(len(b["input_ids"]) == 32 for b in blocks[:-1]) and blocks[0]["labels"] == blocks[0]["input_ids"]
    # readers: jsonl, json, csv, txt
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in rows[:3]))
    (tmp_path / "b.json").write_text(json.dumps(rows[:2]))
    (tmp_path / "c.csv").write_text("instruction,input,output\nname the color,sky,blue\n")
    (tmp_path / "d.txt").write_text("first doc\n\nsecond doc\n")
    got = D.read_all([tmp_path / n for n in ("a.jsonl", "b.json", "c.csv", "d.txt")])
    assert len(got) == 3 + 2 + 1 + 2 and got[5]["output"] == "blue" and got[7] == {"text": "second doc"}
    coll = D.Collator(tok.pad_token_id)
    batch = coll(exs[:3])
    assert batch["input_ids"].shape == batch["labels"].shape == batch["attention_mask"].shape
    assert batch[D.Collator.NUM_TOKENS] == int(batch["attention_mask"].sum())
