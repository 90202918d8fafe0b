"""Serving gateway overhead: requests/s and p50/p99 through <platform>/v1 vs straight to the replica.

The replica is a fast OpenAI-shaped double (a raw ASGI app under uvicorn on a Unix socket, in its
own process): the fair peer for what the proxy adds, since a real model's generation time would
hide it. The platform is a real `modelyard` server process (uvicorn, SQLite, background loops
off) whose gateway routes service `bench` to that socket (the route table is published at start,
as the refresher would publish the serving service's snapshot; the replica answers to another
name, so the `model` rewrite is on the path). The same requests are sent straight to the socket
and through the platform, in alternating rounds, in one run:
- non-streamed chat completions: latency at 1 in flight, requests/s at CONCURRENCY in flight;
- streamed chat completions (STREAM_CHUNKS events): time to the last byte at 1 in flight.
BENCH_GATEWAY_REQUESTS / BENCH_GATEWAY_CONCURRENCY change the sizes."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

REQUESTS = int(os.environ.get("BENCH_GATEWAY_REQUESTS", 600))
CONCURRENCY = int(os.environ.get("BENCH_GATEWAY_CONCURRENCY", 16))
ROUNDS = 3
STREAM_CHUNKS = 16
TOKEN = "my_bench_admin_token"
# A sanity floor, not a goal: on a small shared machine the client, the platform and the double
# compete for the same CPUs, and against a double that answers in ~0.4 ms of CPU the platform's
# per-request work (middleware, auth cache, routing, and above all the httpx/httpcore upstream
# call, over half of it) dominates; the figures printed are the result.
MIN_RPS_RATIO = 0.1

UPSTREAM = r'''
import json, sys, uvicorn

def answer(model):
    return json.dumps({"id": "c1", "object": "chat.completion", "created": 0, "model": model,
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello " * 8},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13}}).encode()

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            await send({"type": m["type"] + ".complete"})
            if m["type"] == "lifespan.shutdown":
                return
    body, more = b"", True
    while more:
        m = await receive()
        body += m.get("body", b"")
        more = m.get("more_body", False)
    req = json.loads(body)
    if not req.get("stream"):
        data = answer(req["model"])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]})
        await send({"type": "http.response.body", "body": data})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
    for i in range(int(sys.argv[2])):
        chunk = {"id": "c1", "object": "chat.completion.chunk", "created": 0, "model": req["model"],
                 "choices": [{"index": 0, "delta": {"content": "tok%d " % i}, "finish_reason": None}]}
        await send({"type": "http.response.body", "body": b"data: " + json.dumps(chunk).encode() + b"\n\n",
                    "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})

uvicorn.run(app, uds=sys.argv[1], log_level="warning", access_log=False)
'''

PLATFORM = r'''
import sys, uvicorn
from modelyard.core.serving import RouteEntry, RouteReplica, RouteVersion
from modelyard.server.app import create_app

app = create_app()
replica = RouteReplica("r1", sys.argv[1], ["bench-base-model"])
app.state.gateway.publish([RouteEntry("s1", "bench", "bench-owner", "openai", "running",
                                      [RouteVersion("v1", 1, 100, [replica])])])
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], p: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(p / 100 * (len(v) - 1)))))]


def _wait(check, what: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if check():
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start")


def _body(model: str, stream: bool) -> dict:
    return {"model": model, "stream": stream, "max_tokens": 16,
            "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Say hello."}]}


async def _sequential(client: httpx.AsyncClient, url: str, body: dict, n: int, expect_model: str) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        if body["stream"]:
            async with client.stream("POST", url, json=body) as r:
                assert r.status_code == 200
                last = b""
                async for chunk in r.aiter_raw():
                    last = chunk
                assert last.endswith(b"data: [DONE]\n\n")
        else:
            r = await client.post(url, json=body)
            assert r.status_code == 200 and r.json()["model"] == expect_model, r.text[:300]
        out.append((time.perf_counter() - t) * 1000)
    return out


async def _throughput(client: httpx.AsyncClient, url: str, body: dict, n: int, concurrency: int) -> float:
    left = n

    async def worker():
        nonlocal left
        while left > 0:
            left -= 1
            r = await client.post(url, json=body)
            assert r.status_code == 200, r.text[:300]

    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return n / (time.perf_counter() - t)


def _cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


async def _measure(sock: str, base: str, procs: dict[str, psutil.Process]) -> dict:
    limits = httpx.Limits(max_connections=CONCURRENCY * 2, max_keepalive_connections=CONCURRENCY * 2)
    direct = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=sock), base_url="http://replica",
                               limits=limits, timeout=60)
    proxied = httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, limits=limits,
                                timeout=60)
    peers = {"direct": (direct, "bench-base-model"), "gateway": (proxied, "bench")}
    res: dict[str, dict[str, list]] = {k: {"lat": [], "stream": [], "rps": [], "cpu": []} for k in peers}
    try:
        for client, model in peers.values():  # warm-up: connections, token cache, first calls
            await _sequential(client, "/v1/chat/completions", _body(model, False), 30, model)
            await _sequential(client, "/v1/chat/completions", _body(model, True), 10, model)
        per_round = max(1, REQUESTS // ROUNDS)
        for _ in range(ROUNDS):
            for name, (client, model) in peers.items():
                res[name]["lat"] += await _sequential(client, "/v1/chat/completions", _body(model, False),
                                                      per_round // 2, model)
                res[name]["stream"] += await _sequential(client, "/v1/chat/completions", _body(model, True),
                                                         per_round // 4, model)
                cpu = {k: _cpu_s(p) for k, p in procs.items()}
                res[name]["rps"].append(await _throughput(client, "/v1/chat/completions", _body(model, False),
                                                          per_round, CONCURRENCY))
                # CPU per request of the process that answered this peer's requests besides the replica
                if name == "gateway":
                    res[name]["cpu"].append((_cpu_s(procs["platform"]) - cpu["platform"]) / per_round * 1000)
                else:
                    res[name]["cpu"].append((_cpu_s(procs["replica"]) - cpu["replica"]) / per_round * 1000)
    finally:
        await direct.aclose()
        await proxied.aclose()
    return res


def run() -> bool:
    tmp = Path(tempfile.mkdtemp(prefix="mybg"))  # short: a Unix socket path fits in 108 bytes
    sock = str(tmp / "replica.sock")
    port = _free_port()
    env = {**os.environ, "MODELYARD_HOME": str(tmp / "home"), "MODELYARD_ADMIN_TOKEN": TOKEN,
           "MODELYARD_BACKGROUND": "false", "MODELYARD_SCHEMA_MODE": "create_all",
           "MODELYARD_DATABASE_URL": f"sqlite:///{tmp / 'home' / 'modelyard.db'}"}
    upstream = subprocess.Popen([sys.executable, "-c", UPSTREAM, sock, str(STREAM_CHUNKS)], env=env)
    platform = subprocess.Popen([sys.executable, "-c", PLATFORM, sock, str(port)], env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: os.path.exists(sock), "the replica double", upstream)
        _wait(lambda: httpx.get(base + "/healthz", timeout=1).status_code == 200, "the platform", platform)
        print(f"  load average before measuring: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
        res = asyncio.run(_measure(sock, base, {"platform": psutil.Process(platform.pid),
                                                 "replica": psutil.Process(upstream.pid)}))
    finally:
        for p in (platform, upstream):
            p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    d, g = res["direct"], res["gateway"]
    rows = [("chat, 1 in flight: p50 ms", statistics.median(d["lat"]), statistics.median(g["lat"])),
            ("chat, 1 in flight: p99 ms", _pct(d["lat"], 99), _pct(g["lat"], 99)),
            ("chat streamed (16 events), p50 ms", statistics.median(d["stream"]), statistics.median(g["stream"])),
            ("chat streamed (16 events), p99 ms", _pct(d["stream"], 99), _pct(g["stream"], 99)),
            (f"chat, {CONCURRENCY} in flight: requests/s", statistics.median(d["rps"]), statistics.median(g["rps"]))]
    print(f"  {'':<40} {'direct':>10} {'gateway':>10} {'ratio':>8}")
    for label, direct, via in rows:
        print(f"  {label:<40} {direct:10.2f} {via:10.2f} {via / max(direct, 1e-9):7.2f}x", flush=True)
    print(f"  CPU per request (16 in flight): the replica double {statistics.median(d['cpu']):.2f} ms, "
          f"the platform's gateway {statistics.median(g['cpu']):.2f} ms", flush=True)
    added = statistics.median(g["lat"]) - statistics.median(d["lat"])
    ratio = statistics.median(g["rps"]) / statistics.median(d["rps"])
    print(f"  the gateway adds {added:.2f} ms per call (p50) and keeps {ratio:.0%} of the replica's requests/s "
          f"(target >= {MIN_RPS_RATIO:.0%}; the platform, the double and this client share the machine's CPUs)",
          flush=True)
    return ratio >= MIN_RPS_RATIO

