"""The transformers runtime's real command line, runtime choice and socket paths (no server)."""

from __future__ import annotations

import sys

import pytest

from modelyard.core.errors import BadRequest
from modelyard.server.services.serving import planning
from modelyard.server.settings import Settings


def test_transformers_argv_names_model_adapters_socket(tmp_path):
    s = Settings(home=tmp_path / "h")
    plan = planning.plan_transformers(s, model_path="/reg/base", adapters={"sql": "/reg/lora"},
                                      served_names=["chat"], socket_path="/tmp/x/s.sock", resources={})
    assert plan.argv == [sys.executable, "-m", "modelyard.runtime.serve", "--model", "/reg/base",
                         "--served-name", "chat", "--adapter", "sql=/reg/lora", "--uds", "/tmp/x/s.sock",
                         "--dtype", "auto"]
    assert plan.served_names == ["chat", "sql"] and plan.ready_path == "/readyz" and plan.live_path == "/livez"


def test_auto_is_transformers_without_a_prepared_vllm_and_unknown_runtimes_are_refused(tmp_path):
    s = Settings(home=tmp_path / "h")
    assert planning.choose_runtime(s, "auto", model_format="hf") in ("transformers", "vllm")
    if not planning.vllm_ready(s):
        assert planning.choose_runtime(s, "auto", model_format="hf") == "transformers"
    with pytest.raises(BadRequest) as e:
        planning.choose_runtime(s, "tensorrt", model_format="hf")
    assert e.value.code == "unknown_runtime"


def test_socket_paths_stay_under_the_kernel_limit(tmp_path):
    s = Settings(home=tmp_path / ("deep" * 40))
    path = planning.socket_path(s, "0" * 32)
    assert len(path.encode()) < 108 and path.startswith("/tmp/modelyard-")
    s2 = Settings(home=tmp_path / "h", serving={"socket_root": str(tmp_path / ("x" * 90))})
    with pytest.raises(BadRequest) as e:
        planning.socket_path(s2, "0" * 32)
    assert e.value.code == "socket_path_too_long"
