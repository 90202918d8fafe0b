"""Fixtures of the serving tests: a tiny model in the registry, and the stand-in replica.

The stand-in (FAKE_REPLICA) is a test double for the replica runtime (modelyard.runtime.serve,
built on another branch): a stdlib HTTP server on the replica's Unix socket answering /livez,
/readyz (503 for READY_AFTER seconds, then 200), /v1/models, /v1/chat/completions and /metrics. It
is started by the server as the transformers runtime's command through the operator setting
`serving.runtime_argv` — inside the replica's sandbox, so the socket path and the model folder it
checks prove the binds."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import pytest

FAKE_REPLICA = r'''
import json, os, socketserver, sys, time
from http.server import BaseHTTPRequestHandler
sock, model = sys.argv[1], sys.argv[2]
assert os.path.isfile(os.path.join(model, "config.json")), "model folder not visible: " + model
ready_after = float(os.environ.get("FAKE_READY_AFTER", "0.3"))
t0 = time.time()
calls = [0]
class H(BaseHTTPRequestHandler):
    def _send(self, code, obj):
        b = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)
    def do_GET(self):
        if self.path == "/livez":  # a file `unhealthy` beside the socket (the test's switch) fails it
            bad = os.path.exists(os.path.join(os.path.dirname(sock), "unhealthy"))
            return self._send(500 if bad else 200, {"status": "sick" if bad else "live"})
        if self.path == "/readyz":
            return self._send(200 if time.time() - t0 > ready_after else 503, {})
        if self.path == "/v1/models":
            return self._send(200, {"object": "list", "data": [{"id": os.environ.get("MODELYARD_SERVICE", "m"), "object": "model"}]})
        if self.path == "/metrics":
            b = ("requests_total %d\n" % calls[0]).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
            return
        self._send(404, {"error": {"message": "not found"}})
    def do_POST(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n) or b"{}")
        calls[0] += 1
        self._send(200, {"id": "chatcmpl-1", "object": "chat.completion", "model": body.get("model"),
                         "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
                         "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
    def log_message(self, *a):
        pass
class S(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    def get_request(self):
        conn, _ = super().get_request()
        return conn, ("replica", 0)
print("fake replica serving on", sock, flush=True)
S(sock, H).serve_forever()
'''

CRASHING_REPLICA = "import sys; print('boom: the weights are corrupt', flush=True); sys.exit(3)"


def fake_argv() -> list[str]:
    return [sys.executable, "-c", FAKE_REPLICA, "{socket}", "{model}"]


def make_tiny_hf(dest: Path) -> None:
    """A 2-layer Llama (hidden 32) saved as safetensors, with a word-level tokenizer."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    torch.manual_seed(0)
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      num_key_value_heads=2, vocab_size=64, max_position_embeddings=128)
    dest.mkdir(parents=True, exist_ok=True)
    LlamaForCausalLM(cfg).save_pretrained(str(dest))
    vocab = {"[UNK]": 0, "[PAD]": 1, "<s>": 2, "</s>": 3, **{w: i + 4 for i, w in enumerate("hello world".split())}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>",
                            eos_token="</s>").save_pretrained(str(dest))


def import_model(settings, user, name: str = "tiny") -> dict:
    """A tiny model imported into the registry for `user`; returns the ready version."""
    make_tiny_hf(settings.users_root / user.id / "Model" / name)
    r = user.post("/api/v1/models", json={"name": name, "path": f"Model/{name}"})
    assert r.status_code == 201, r.text
    vid = r.json()["versions"][0]["id"]
    deadline = time.monotonic() + 60
    while True:
        v = user.get(f"/api/v1/model-versions/{vid}").json()
        if v["status"] != "importing":
            assert v["status"] == "done", v
            return v
        assert time.monotonic() < deadline
        time.sleep(0.05)


@pytest.fixture
def settings(settings):
    """The stand-in replica as the transformers runtime's command; quick probes."""
    settings.serving.runtime_argv = fake_argv()
    settings.serving.probe_interval_s = 0.3
    settings.serving.probe_timeout_s = 1.0
    yield settings
    from modelyard.server.services.serving import socket_root

    shutil.rmtree(socket_root(settings), ignore_errors=True)


def wait_service(user, ref: str, pred, timeout: float = 45.0, what: str = "") -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        r = user.get(f"/api/v1/services/{ref}")
        assert r.status_code == 200, r.text
        last = r.json()
        if pred(last):
            return last
        time.sleep(0.2)
    ev = user.get(f"/api/v1/services/{ref}/events").json()
    raise AssertionError(f"timed out waiting for {what}: {last}\nevents: {ev}")
