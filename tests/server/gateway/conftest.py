"""Fixtures of the gateway tests: replica doubles (small OpenAI-shaped HTTP apps on Unix sockets,
run by uvicorn on threads) and the platform served by uvicorn on a free TCP port, so the real
`openai` client can stream from it. The route table comes from a fake `route_snapshot` that the
test sets (`platform.set_routes([...])`), published through the real refresher (woken like a
state door wakes it)."""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from modelyard.core.serving import RouteEntry, RouteReplica, RouteVersion
from modelyard.server import background
from modelyard.server.app import create_app
from modelyard.server.gateway import table as gateway_table
from modelyard.server.services.common.wake import wake_all
from tests.harness import ADMIN_TOKEN, free_port, wait_for

CHUNKS = ["Hel", "lo", " there"]


@dataclass
class Seen:
    method: str
    path: str
    query: str
    headers: dict
    body: bytes
    raw_path: bytes = b""

    @property
    def json(self) -> dict:
        return json.loads(self.body)


@dataclass
class ReplicaDouble:
    """What a replica answers, and what it was sent."""

    name: str
    socket_path: str
    chunk_delay_s: float = 0.0  # between streamed chunks
    answer_delay_s: float = 0.0  # before answering
    seen: list[Seen] = field(default_factory=list)
    inflight: int = 0
    max_inflight: int = 0
    streams_finished: int = 0  # streams sent to the end
    streams_cut: int = 0  # streams whose reader went away before the end

    def app(self) -> Starlette:
        async def openai(request: Request) -> Response:
            body = await request.body()
            self.seen.append(Seen(request.method, request.url.path, request.url.query, dict(request.headers), body))
            payload = json.loads(body)
            model = payload["model"]
            chat = request.url.path.endswith("/chat/completions")
            self.inflight += 1
            self.max_inflight = max(self.max_inflight, self.inflight)
            try:
                if self.answer_delay_s:
                    await asyncio.sleep(self.answer_delay_s)
            finally:
                self.inflight -= 1
            usage = {"prompt_tokens": 3, "completion_tokens": len(CHUNKS), "total_tokens": 3 + len(CHUNKS)}
            base = {"id": "cmpl-" + uuid.uuid4().hex[:8], "created": int(time.time()), "model": model}
            if not payload.get("stream"):
                text = "".join(CHUNKS) + f" from {self.name}"
                if chat:
                    choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    obj = "chat.completion"
                else:
                    choice = {"index": 0, "text": text, "finish_reason": "stop", "logprobs": None}
                    obj = "text_completion"
                return JSONResponse({**base, "object": obj, "choices": [choice], "usage": usage})

            async def events():
                finished = False
                try:
                    async for event in chunks():
                        yield event
                    finished = True
                finally:
                    if finished:
                        self.streams_finished += 1
                    else:
                        self.streams_cut += 1

            async def chunks():
                for i, piece in enumerate(CHUNKS):
                    if i and self.chunk_delay_s:
                        await asyncio.sleep(self.chunk_delay_s)
                    if chat:
                        choice = {"index": 0, "delta": {"content": piece}, "finish_reason": None}
                        chunk = {**base, "object": "chat.completion.chunk", "choices": [choice]}
                    else:
                        chunk = {**base, "object": "text_completion",
                                 "choices": [{"index": 0, "text": piece, "finish_reason": None, "logprobs": None}]}
                    # a model-like field inside generated text must not be rewritten
                    yield f"data: {json.dumps(chunk)}\n\n"
                done = {**base, "object": "chat.completion.chunk" if chat else "text_completion",
                        "choices": [], "usage": usage}
                yield f"data: {json.dumps(done)}\n\n"
                yield "data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream")

        async def echo(request: Request) -> Response:
            body = await request.body()
            self.seen.append(Seen(request.method, request.url.path, request.url.query, dict(request.headers), body,
                                  request.scope.get("raw_path", b"")))
            return JSONResponse({"replica": self.name, "method": request.method, "path": request.url.path,
                                 "query": request.url.query, "body": body.decode()},
                                status_code=201 if request.method == "PUT" else 200,
                                headers={"x-replica": self.name})

        return Starlette(routes=[Route("/v1/{kind:path}", openai, methods=["POST"]),
                                 Route("/{rest:path}", echo, methods=["GET", "POST", "PUT", "DELETE", "PATCH"])])


class ThreadServer:
    """uvicorn on a thread (a Unix socket or a TCP port), stopped by stop()."""

    def __init__(self, app, **bind):
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **bind))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> ThreadServer:
        self.thread.start()
        wait_for(lambda: self.server.started, timeout=30, what="uvicorn started")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture
def sockets_dir():
    # short: a Unix socket path must fit in 108 bytes, which pytest's tmp_path may not
    path = Path(tempfile.mkdtemp(prefix="gw", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def replicas(sockets_dir):
    """Three replica doubles, a1 / a2 / b, each on its own Unix socket."""
    doubles, servers = {}, []
    for name in ("a1", "a2", "b"):
        d = ReplicaDouble(name, str(sockets_dir / f"{name}.sock"))
        servers.append(ThreadServer(d.app(), uds=d.socket_path).start())
        doubles[name] = d
    yield doubles
    for s in servers:
        s.stop()


class Platform:
    """The live platform: url, users' tokens, the gateway, and the fake serving service."""

    def __init__(self, app, url: str):
        self.app, self.url = app, url
        self.ctx = app.state.ctx
        self.gateway = app.state.gateway
        self.entries: list[RouteEntry] = []
        self.recorded: list[dict] = []
        self.snapshots = 0

    # the fake serving service the refresher calls
    def route_snapshot(self, _session) -> list[RouteEntry]:
        self.snapshots += 1
        return list(self.entries)

    def record_invocations(self, _session, counts) -> bool:
        self.recorded.append(dict(counts))
        return True

    def set_routes(self, entries: list[RouteEntry]) -> None:
        """Publish entries the way a state change does: the door wakes the loops."""
        self.entries = list(entries)
        wake_all()
        wait_for(lambda: self.gateway.table.entries == tuple(entries), timeout=5, what="route table refreshed")

    def user(self, name: str, role: str = "user") -> str:
        r = httpx.post(self.url + "/api/v1/users", json={"name": name, "role": role},
                       headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert r.status_code == 201, r.text
        return r.json()["token"]

    def user_id(self, token: str) -> str:
        return httpx.get(self.url + "/api/v1/users/me", headers={"Authorization": f"Bearer {token}"}).json()["id"]

    @staticmethod
    def replica(double: ReplicaDouble, *served: str) -> RouteReplica:
        return RouteReplica(replica_id="r-" + double.name, socket_path=double.socket_path, served_names=list(served))

    @staticmethod
    def entry(name: str, owner_id: str, versions: list[RouteVersion], *, kind: str = "openai",
              state: str = "running") -> RouteEntry:
        return RouteEntry(service_id=f"svc-{name}-{owner_id}", name=name, owner_id=owner_id, kind=kind,
                          state=state, versions=versions)

    def openai(self, token: str):
        import openai

        return openai.OpenAI(base_url=self.url + "/v1", api_key=token, max_retries=0, timeout=30)


@pytest.fixture
def platform(settings, monkeypatch):
    """The platform with only the gateway's background component, its refresher woken by state
    changes (the periodic refresh is pushed out of the way to prove the wake-up)."""
    monkeypatch.setattr(background, "COMPONENTS", ["modelyard.server.gateway:component"])
    monkeypatch.setattr(gateway_table, "REFRESH_S", 60.0)
    app = create_app(settings.model_copy(update={"background": True}))
    port = free_port()
    plat = Platform(app, f"http://127.0.0.1:{port}")
    monkeypatch.setattr(gateway_table, "load_route_snapshot", plat.route_snapshot)
    monkeypatch.setattr(gateway_table, "record_invocations", plat.record_invocations)
    server = ThreadServer(app, host="127.0.0.1", port=port).start()
    yield plat
    server.stop()

