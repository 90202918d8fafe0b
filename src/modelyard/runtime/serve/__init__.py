"""The built-in `transformers` runtime: one process per service replica serving an OpenAI-compatible
HTTP app over transformers' continuous batching.

    python -m modelyard.runtime.serve --model PATH [--served-name NAME ...] [--adapter NAME=PATH ...]
        (--uds SOCKET_PATH | --host H --port P) [--dtype auto|bfloat16|float16|float32]
        [--max-batch-tokens N] [--max-model-len N] [--device auto|cpu|cuda]

The socket listens at once (GET /livez answers 200); the weights load in a background thread and
GET /readyz answers 200 only after they are loaded and a warm-up generation ran (503 before, with
{"status": "loading"} or {"status": "failed", "error": ...}; a failed load also exits the process
with status 3 so the replica is seen as failed). Modules: main (CLI, loader), api (HTTP app),
requests (body validation), engine (models, adapters, continuous batching), sampling (per-request
sampling inside the batch), metrics (Prometheus names).
"""
