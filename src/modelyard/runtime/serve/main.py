"""CLI and process life of the transformers runtime (see the package docstring for the argv)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
import time
from pathlib import Path

from .api import ReplicaState, build_app

STARTED = time.perf_counter()
log = logging.getLogger("modelyard.runtime.serve")
# Test hook: seconds the loader sleeps before loading (lets tests see /readyz answer 503 first).
LOAD_DELAY_ENV = "MODELYARD_SERVE_TEST_LOAD_DELAY_S"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m modelyard.runtime.serve",
                                description="Serve a Hugging Face model folder as an OpenAI-compatible API.")
    p.add_argument("--model", required=True, help="Hugging Face model folder (config.json, safetensors, tokenizer)")
    p.add_argument("--served-name", action="append", default=[], dest="served_names",
                   help="a `model` name answered for the base (repeatable; default: the folder name)")
    p.add_argument("--adapter", action="append", default=[], dest="adapters", metavar="NAME=PATH",
                   help="a PEFT LoRA adapter folder of this base, answered as `model: NAME` (repeatable)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--uds", help="serve HTTP on this Unix socket path")
    where.add_argument("--host", help="serve HTTP on this TCP host (with --port)")
    p.add_argument("--port", type=int)
    p.add_argument("--dtype", default="auto", choices=["auto", "bfloat16", "float16", "float32"])
    p.add_argument("--max-batch-tokens", type=int, default=None)
    p.add_argument("--max-model-len", type=int, default=None)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    args = p.parse_args(argv)
    if args.host is not None and args.port is None:
        p.error("--host needs --port")
    if args.uds is not None and args.port is not None:
        p.error("--port goes with --host, not --uds")
    if not (Path(args.model) / "config.json").is_file():
        p.error(f"--model {args.model}: no config.json there")
    adapters: dict[str, str] = {}
    for spec in args.adapters:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            p.error(f"--adapter {spec!r}: expected NAME=PATH")
        if not (Path(path) / "adapter_config.json").is_file():
            p.error(f"--adapter {spec}: no adapter_config.json in {path}")
        adapters[name] = path
    args.adapters = adapters
    args.served_names = args.served_names or [Path(args.model).resolve().name]
    clash = set(args.served_names) & set(adapters)
    if clash:
        p.error(f"names used both for the base and an adapter: {sorted(clash)}")
    for n in (args.max_batch_tokens, args.max_model_len):
        if n is not None and n < 1:
            p.error("--max-batch-tokens and --max-model-len must be positive")
    return args


def _warm_up(engine) -> None:
    """One short generation per served model: the first step allocates the paged cache."""
    from .params import SamplingParams

    async def run():
        seen = set()
        for name, served in engine.models.items():
            if id(served.manager) in seen:
                continue
            seen.add(id(served.manager))
            ids = engine.tokenizer("Hello", add_special_tokens=True)["input_ids"] or [0]
            async for _ in engine.stream(name, ids, SamplingParams(temperature=0.0), 2):
                pass

    asyncio.run(run())


def _load(args, state: ReplicaState, on_failure) -> None:
    m = state.metrics
    try:
        delay = float(os.environ.get(LOAD_DELAY_ENV, "0") or 0)
        if delay > 0:
            time.sleep(delay)
        t0 = time.perf_counter()
        import torch  # noqa: F401  (timed: the import is a large share of a cold start)
        import transformers  # noqa: F401

        from .engine import load_engine

        m.startup.labels("import").set(time.perf_counter() - t0)
        timings: dict[str, float] = {}
        engine = load_engine(args.model, served_names=args.served_names, adapters=args.adapters, dtype=args.dtype,
                             device=args.device, max_batch_tokens=args.max_batch_tokens,
                             max_model_len=args.max_model_len, timings=timings, on_step=m.observe_step)
        m.startup.labels("load_weights").set(timings["load_weights_s"])
        t1 = time.perf_counter()
        _warm_up(engine)
        m.startup.labels("warmup").set(time.perf_counter() - t1)
        m.startup.labels("total").set(time.perf_counter() - STARTED)
        m.info.info({"runtime": "transformers", "model": args.served_names[0], "dtype": engine.dtype,
                     "device": engine.device, "adapters": ",".join(args.adapters)})
        state.engine = engine
        m.ready.set(1)
        log.info("ready: %s (%s on %s)", ", ".join(engine.models), engine.dtype, engine.device)
    except BaseException as exc:  # a replica that cannot load must say why and end, not hang unready
        state.load_error = f"{type(exc).__name__}: {exc}"
        log.exception("loading failed")
        on_failure()


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state = ReplicaState(served_names=args.served_names)
    failed = threading.Event()
    server: uvicorn.Server | None = None

    def on_failure():
        failed.set()
        if server is not None:
            server.should_exit = True

    def start_loader():  # the server is starting: /livez answers while the weights load
        threading.Thread(target=_load, args=(args, state, on_failure), name="loader", daemon=True).start()

    app = build_app(state, on_startup=start_loader)
    if args.uds:
        Path(args.uds).parent.mkdir(parents=True, exist_ok=True)
        Path(args.uds).unlink(missing_ok=True)
        config = uvicorn.Config(app, uds=args.uds, log_level="warning", timeout_graceful_shutdown=5)
    else:
        config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    try:
        server.run()
    finally:
        if state.engine is not None:
            state.engine.stop()
        if args.uds:
            Path(args.uds).unlink(missing_ok=True)
    if failed.is_set():
        print(f"modelyard.runtime.serve: {state.load_error}", file=sys.stderr)
        return 3
    return 0
