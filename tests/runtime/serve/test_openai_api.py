"""The transformers runtime as a replica runs it (a real subprocess on a Unix socket), spoken to with
the real `openai` package: answers, usage, max_tokens, stop, seeds, adapters, batching, readiness and
OpenAI-shaped refusals."""

from __future__ import annotations

import threading

import openai
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from .conftest import ADAPTER, BASE, LOAD_DELAY_S

pytestmark = pytest.mark.slow

CHAT = [{"role": "user", "content": "what color is the sky?"}]


@pytest.fixture(scope="module")
def tokenizer(tiny_dirs):
    return AutoTokenizer.from_pretrained(str(tiny_dirs[0]))


@pytest.fixture(scope="module")
def client(replica):
    return replica.openai()


def reference_greedy(model_dir, tokenizer, ids: list[int], n: int, **kw) -> str:
    """What a plain transformers `generate` answers greedily: the replica must match it."""
    model = AutoModelForCausalLM.from_pretrained(str(model_dir)).eval()
    eos = [tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")]
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, eos_token_id=eos,
                             pad_token_id=tokenizer.pad_token_id, **kw)
    return tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)


def test_readyz_was_503_while_loading_and_livez_answered(replica):
    assert replica.before_ready, "never saw /readyz before ready"
    assert all(live == 200 and ready == 503 for live, ready in replica.before_ready)
    assert replica.http.get("/readyz").status_code == 200
    assert replica.metric("modelyard_replica_ready") == 1.0
    assert replica.metric("modelyard_replica_startup_seconds", 'phase="load_weights"') > 0


def test_models_lists_base_and_adapter(client):
    models = {m.id: m for m in client.models.list().data}
    assert set(models) == {BASE, ADAPTER}
    assert models[ADAPTER].model_extra["parent"] == BASE
    assert models[BASE].model_extra["dtype"] in ("float32", "bfloat16")


def test_chat_answers_like_generate_with_usage(client, tokenizer, tiny_dirs):
    r = client.chat.completions.create(model=BASE, messages=CHAT, max_tokens=8, temperature=0)
    prompt_ids = tokenizer.apply_chat_template(CHAT, add_generation_prompt=True, tokenize=True, return_dict=False)
    assert r.object == "chat.completion" and r.model == BASE
    choice = r.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == reference_greedy(tiny_dirs[0], tokenizer, prompt_ids, 8)
    assert r.usage.prompt_tokens == len(prompt_ids)
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    if choice.finish_reason == "length":
        assert r.usage.completion_tokens == 8
    else:
        assert choice.finish_reason == "stop" and r.usage.completion_tokens <= 8


def test_completion_max_tokens_and_usage(client, tokenizer, tiny_dirs):
    prompt = "the banana is"
    ids = tokenizer(prompt)["input_ids"]
    r = client.completions.create(model=BASE, prompt=prompt, max_tokens=5, temperature=0)
    assert r.object == "text_completion"
    assert r.usage.prompt_tokens == len(ids)
    assert r.choices[0].text == reference_greedy(tiny_dirs[0], tokenizer, ids, 5)
    assert r.usage.completion_tokens <= 5
    if r.choices[0].finish_reason == "length":
        assert r.usage.completion_tokens == 5
    one = client.completions.create(model=BASE, prompt=prompt, max_tokens=1, temperature=0)
    assert one.usage.completion_tokens == 1 and one.choices[0].finish_reason in ("length", "stop")


def test_streams_match_the_whole_answers(client):
    whole = client.chat.completions.create(model=BASE, messages=CHAT, max_tokens=10, temperature=0)
    chunks = list(client.chat.completions.create(model=BASE, messages=CHAT, max_tokens=10, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    finals = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finals == [whole.choices[0].finish_reason]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert chunks[-1].usage.prompt_tokens == whole.usage.prompt_tokens

    cwhole = client.completions.create(model=BASE, prompt="the sea is", max_tokens=7, temperature=0)
    cchunks = list(client.completions.create(model=BASE, prompt="the sea is", max_tokens=7, temperature=0,
                                             stream=True))
    assert "".join(c.choices[0].text for c in cchunks) == cwhole.choices[0].text
    assert all(c.usage is None for c in cchunks)


def test_stop_string_is_honoured_and_not_returned(client):
    full = client.completions.create(model=BASE, prompt="the snow is", max_tokens=16, temperature=0,
                                     ).choices[0].text
    clean = [i for i in range(2, len(full) - 2) if "\ufffd" not in full[i:i + 2] and full[i:i + 2].strip()]
    if not clean:
        pytest.fail(f"the tiny model's greedy text has no usable stop candidate: {full!r}")
    stop = full[clean[len(clean) // 2]: clean[len(clean) // 2] + 2]
    expected = full[:full.index(stop)]
    r = client.completions.create(model=BASE, prompt="the snow is", max_tokens=16, temperature=0, stop=[stop, "@@@"])
    assert r.choices[0].text == expected and r.choices[0].finish_reason == "stop"
    streamed = list(client.completions.create(model=BASE, prompt="the snow is", max_tokens=16, temperature=0,
                                              stop=stop, stream=True))
    assert "".join(c.choices[0].text for c in streamed) == expected
    assert streamed[-1].choices[0].finish_reason == "stop"


def test_same_seed_same_text_and_sampling_params(client):
    kw = dict(model=BASE, prompt="the rose is", max_tokens=12, temperature=1.0, top_p=0.95)
    a = client.completions.create(seed=1234, **kw).choices[0].text
    b = client.completions.create(seed=1234, **kw).choices[0].text
    assert a == b
    others = {client.completions.create(seed=s, **kw).choices[0].text for s in (1, 2, 3, 4)}
    assert len(others | {a}) > 1, "different seeds never changed the sampled text"
    # top_k=1 is greedy whatever the temperature; repetition_penalty changes the greedy path
    greedy = client.completions.create(model=BASE, prompt="the rose is", max_tokens=12, temperature=0).choices[0].text
    topk1 = client.completions.create(model=BASE, prompt="the rose is", max_tokens=12, temperature=1.5,
                                      extra_body={"top_k": 1}).choices[0].text
    assert topk1 == greedy


def test_repetition_penalty_matches_generate(client, tokenizer, tiny_dirs):
    """Pick a prompt where transformers' own repetition penalty changes the greedy text; the replica
    must give exactly the penalised text."""
    for prompt in ("the rose is", "the sky is blue. the sky is", "the apple the apple the apple", "red red red"):
        ids = tokenizer(prompt)["input_ids"]
        plain = reference_greedy(tiny_dirs[0], tokenizer, ids, 24)
        penalised = reference_greedy(tiny_dirs[0], tokenizer, ids, 24, repetition_penalty=3.0)
        if penalised != plain:
            break
    else:
        pytest.fail("no prompt where the penalty changes the tiny model's greedy text")
    served = client.completions.create(model=BASE, prompt=prompt, max_tokens=24, temperature=0,
                                       extra_body={"repetition_penalty": 3.0}).choices[0].text
    assert served == penalised


def test_adapter_answers_differently_from_its_base(client):
    base = client.chat.completions.create(model=BASE, messages=CHAT, max_tokens=10, temperature=0)
    lora = client.chat.completions.create(model=ADAPTER, messages=CHAT, max_tokens=10, temperature=0)
    assert lora.model == ADAPTER
    assert lora.choices[0].message.content != base.choices[0].message.content
    again = client.chat.completions.create(model=ADAPTER, messages=CHAT, max_tokens=10, temperature=0)
    assert again.choices[0].message.content == lora.choices[0].message.content


def test_concurrent_requests_are_batched(replica, client):
    results: list = []
    errors: list = []

    def ask(i: int):
        try:
            results.append(client.completions.create(model=BASE, prompt=f"the {i} sun is", max_tokens=24,
                                                     temperature=0))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and len(results) == 6
    assert replica.metric("modelyard_replica_batch_rows_max") > 1
    assert replica.metric("modelyard_replica_requests_total", 'endpoint="completions",status="200"') >= 6
    assert replica.metric("modelyard_replica_generated_tokens_total") >= sum(r.usage.completion_tokens for r in results)
    assert replica.metric("modelyard_replica_time_to_first_token_seconds_count") >= 6


def test_client_disconnect_cancels_generation(replica, client):
    before = replica.metric("modelyard_replica_generated_tokens_total")
    stream = client.completions.create(model=BASE, prompt="the leaf is", max_tokens=200, temperature=0,
                                       stream=True, extra_body={"repetition_penalty": 1.0})
    next(iter(stream))
    stream.close()
    from tests.harness import wait_for

    wait_for(lambda: replica.metric("modelyard_replica_running_requests") == 0
             and replica.metric("modelyard_replica_queue_depth") == 0, timeout=30, what="the request to end")
    assert replica.metric("modelyard_replica_generated_tokens_total") - before < 200


@pytest.mark.parametrize("kwargs,status,param", [
    ({"n": 2}, 400, "n"),
    ({"model": "no-such-model"}, 404, "model"),
    ({"max_tokens": -1}, 400, "max_tokens"),
    ({"logprobs": True}, 400, "logprobs"),
    ({"temperature": 9}, 400, "temperature"),
    ({"extra_body": {"tools": [{"type": "function", "function": {"name": "f"}}]}}, 400, "tools"),
    ({"extra_body": {"frobnicate": 1}}, 400, "frobnicate"),
    ({"max_tokens": 100000}, 400, "max_tokens"),
])
def test_bad_requests_are_refused_in_openai_shape(client, kwargs, status, param):
    kw = {"model": BASE, "messages": CHAT, "max_tokens": 4, **kwargs}
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(**kw)
    assert err.value.status_code == status
    body = err.value.response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"} and body["message"]
    assert body["param"] == param


def test_harmless_fields_are_accepted(client):
    r = client.chat.completions.create(model=BASE, messages=CHAT, max_tokens=2, user="someone", logprobs=False,
                                       presence_penalty=0)
    assert r.choices[0].message.role == "assistant"


def test_malformed_bodies_never_500(replica):
    for body in (b"{", b"[]", b'{"model": "tiny"}', b'{"model": "tiny", "messages": "hi"}',
                 b'{"model": "tiny", "messages": [{"role": "wizard", "content": "x"}]}',
                 b'{"model": "tiny", "prompt": [1, "a"]}'):
        for path in ("/v1/chat/completions", "/v1/completions"):
            r = replica.http.post(path, content=body, headers={"content-type": "application/json"})
            assert 400 <= r.status_code < 500, (path, body, r.status_code, r.text)
            assert "message" in r.json()["error"]
    assert replica.http.get("/v1/nothing").status_code == 404
    assert LOAD_DELAY_S > 0
