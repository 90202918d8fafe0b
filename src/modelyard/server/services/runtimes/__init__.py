"""Runtimes a service replica runs on, and the prepared Python environments behind them (cached
uv virtualenvs, shared with service templates)."""

from modelyard.server.services.runtimes.catalog import (
    RUNTIMES,
    is_ready,
    list_runtimes,
    prepare,
    require_ready,
    runtime_env_dir,
    runtime_status,
    start_env_prepare,
    start_prepare,
    vllm_spec,
)
from modelyard.server.services.runtimes.envs import (
    EnvSpec,
    env_dir,
    env_status,
    envs_root,
    find_python,
    is_env_ready,
    prepare_env,
    uv_bin,
)
from modelyard.server.services.runtimes.vllm import kv_cache_gib, plan_vllm

__all__ = [
    "RUNTIMES",
    "EnvSpec",
    "env_dir",
    "env_status",
    "envs_root",
    "find_python",
    "is_env_ready",
    "is_ready",
    "kv_cache_gib",
    "list_runtimes",
    "plan_vllm",
    "prepare",
    "prepare_env",
    "require_ready",
    "runtime_env_dir",
    "runtime_status",
    "start_env_prepare",
    "start_prepare",
    "uv_bin",
    "vllm_spec",
]
