"""A tiny random Llama + a LoRA adapter of it, built here (nothing downloaded), served by a real
`python -m modelyard.runtime.serve` subprocess on a Unix socket, and the real `openai` client
pointed at that socket."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from modelyard.runtime import tiny
from tests.harness import wait_for

BASE = "tiny"
ADAPTER = "tiny-lora"
LOAD_DELAY_S = 2.0  # the replica's test hook: /readyz must answer 503 for at least this long


def build_lora_adapter(base_dir: Path, out_dir: Path) -> Path:
    """A PEFT LoRA adapter of the base with large random B weights, so it answers differently."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj", "o_proj"],
                                                  init_lora_weights=False))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # non-zero: the merged weights differ from the base's
    peft_model.save_pretrained(str(out_dir))
    return out_dir


@pytest.fixture(scope="session")
def tiny_dirs(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("serve-model")
    base = tiny.build_model(root / "base")
    adapter = build_lora_adapter(base, root / "adapter")
    return base, adapter


class Replica:
    def __init__(self, proc: subprocess.Popen, socket_path: str, log: Path):
        self.proc, self.socket_path, self.log = proc, socket_path, log
        self.http = httpx.Client(transport=httpx.HTTPTransport(uds=socket_path), base_url="http://replica",
                                 timeout=60)
        self.before_ready: list[tuple[int, int]] = []  # (livez, readyz) statuses seen while loading

    def openai(self):
        import openai

        return openai.OpenAI(base_url="http://replica/v1", api_key="unused", max_retries=0,
                             http_client=httpx.Client(transport=httpx.HTTPTransport(uds=self.socket_path), timeout=60))

    def metric(self, name: str, labels: str = "") -> float:
        key = f"{name}{{{labels}}}" if labels else name
        for line in self.http.get("/metrics").text.splitlines():
            if line.startswith(key + " "):
                return float(line.split()[-1])
        return 0.0

    def wait_ready(self, timeout: float = 120.0) -> None:
        def probe():
            if self.proc.poll() is not None:
                raise AssertionError(f"replica exited {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                live, ready = self.http.get("/livez").status_code, self.http.get("/readyz").status_code
            except httpx.TransportError:
                return False
            if ready != 200:
                self.before_ready.append((live, ready))
            return ready == 200

        wait_for(probe, timeout=timeout, interval=0.1, what="the replica's /readyz")

    def stop(self) -> int:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def start_replica(tmp: Path, argv: list[str], env: dict | None = None) -> Replica:
    sock = str(tmp / "r.sock")
    log = tmp / "replica.log"
    proc = subprocess.Popen([sys.executable, "-m", "modelyard.runtime.serve", *argv, "--uds", sock],
                            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                            stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while not Path(sock).exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"replica did not listen ({proc.poll()}):\n{log.read_text()[-3000:]}")
        time.sleep(0.05)
    return Replica(proc, sock, log)


@pytest.fixture(scope="module")
def replica(tiny_dirs, tmp_path_factory):
    base, adapter = tiny_dirs
    r = start_replica(tmp_path_factory.mktemp("replica"),
                      ["--model", str(base), "--served-name", BASE, "--adapter", f"{ADAPTER}={adapter}"],
                      env={"MODELYARD_SERVE_TEST_LOAD_DELAY_S": str(LOAD_DELAY_S)})
    try:
        r.wait_ready()
        yield r
    finally:
        r.stop()
