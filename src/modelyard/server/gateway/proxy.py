"""The proxy: `<platform>/v1/*` (OpenAI's API, routed by the body's `model`) and
`<platform>/serving/{service}/{path}` (template services, routed by path), to the ready replicas
of the route table (gateway/table.py) over pooled Unix-socket connections (gateway/upstreams.py).

Per request: the caller from the token cache, the route from the in-memory table, one upstream
call. No database query, no lock. The body is parsed once to read `model`; it is re-encoded only
when the replica answers to another name (its served name), and the answer gets the caller's
`model` back by a byte substitution on the `"model": "<served>"` fields (per complete line of a
server-sent-event stream), so nothing else is re-encoded. Streams are relayed chunk by chunk; a
client that goes away closes the upstream request at once."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator, Callable
from functools import lru_cache
from typing import Any

import anyio
import httpx
from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from modelyard.core.serving import RouteEntry, RouteReplica
from modelyard.server.auth import Principal
from modelyard.server.gateway.table import Candidates, InvocationCounts, RouteTable
from modelyard.server.gateway.tokens import TokenCache
from modelyard.server.gateway.upstreams import RETRYABLE, Balancer, Upstreams

HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
                        "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length"})
_NOT_FORWARDED = HOP_BY_HOP | {"authorization"}
_OPENAI_DROPPED = _NOT_FORWARDED | {"accept-encoding", "cookie", "content-type"}
# the platform's server sets its own
_ANSWER_DROPPED = HOP_BY_HOP | {"date", "server"}
_WAITING_STATES = ("pending", "deploying", "starting")
RETRY_AFTER_S = 5


def openai_error(status: int, code: str, message: str, type_: str | None = None) -> JSONResponse:
    """OpenAI's error shape: {"error": {"message", "type", "code"}}."""
    type_ = type_ or ("invalid_request_error" if status < 500 else "server_error")
    return JSONResponse({"error": {"message": message, "type": type_, "code": code}}, status_code=status)


def _raw_path(request: Request) -> str:
    """The request's path as sent (percent-escapes kept), for the upstream URL."""
    raw = request.scope.get("raw_path")
    return raw.decode("latin-1") if raw else request.url.path


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else None


@lru_cache(maxsize=1024)
def _model_rewriter(served: str, requested: str) -> Callable[[bytes], bytes]:
    """bytes -> bytes with every `"model": "<served>"` field turned into the requested name."""
    forms = {json.dumps(served).encode(), json.dumps(served, ensure_ascii=False).encode()}
    pattern = re.compile(rb'("model"\s*:\s*)(?:' + b"|".join(re.escape(f) for f in sorted(forms)) + rb")")
    replacement = json.dumps(requested, ensure_ascii=False).encode()
    return lambda data: pattern.sub(lambda m: m.group(1) + replacement, data)


@lru_cache(maxsize=512)
def _upstream_url(path_and_query: str) -> httpx.URL:
    return httpx.URL("http://replica" + path_and_query)


async def _rewrite_lines(chunks: AsyncIterator[bytes], rewrite: Callable[[bytes], bytes]) -> AsyncIterator[bytes]:
    """Rewrite complete lines as they arrive (a field never spans a line in an event stream)."""
    tail = b""
    async for chunk in chunks:
        data = tail + chunk
        cut = data.rfind(b"\n") + 1
        if cut == 0:
            tail = data
            continue
        tail = data[cut:]
        yield rewrite(data[:cut])
    if tail:
        yield rewrite(tail)


class _Relay:
    """An upstream response relayed as it arrives. A disconnecting client cancels the relay, and
    the upstream request is closed whatever happened; `done(failed)` runs exactly once."""

    def __init__(self, upstream: httpx.Response, chunks: AsyncIterator[bytes],
                 headers: list[tuple[bytes, bytes]], done: Callable[[bool], None]):
        self.upstream, self.chunks, self.headers, self.done = upstream, chunks, headers, done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        failed = False
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch, receive, tg.cancel_scope)
                try:
                    await send({"type": "http.response.start", "status": self.upstream.status_code,
                                "headers": self.headers})
                    async for chunk in self.chunks:
                        await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                except httpx.HTTPError:
                    failed = True  # the replica broke off mid-answer: the client sees a cut stream
                except OSError:
                    pass  # the client went away
                finally:
                    tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.upstream.aclose()
            self.done(failed or self.upstream.status_code >= 500)

    @staticmethod
    async def _watch(receive: Receive, cancel_scope: anyio.CancelScope) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                cancel_scope.cancel()
                return


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None):
        registry = registry or CollectorRegistry()
        self.requests = Counter("modelyard_gateway_requests", "Requests through the serving gateway",
                                ["service", "status"], registry=registry)
        self.latency = Histogram("modelyard_gateway_upstream_seconds",
                                 "Time from forwarding a request to a replica to the end of its answer",
                                 ["service"], registry=registry,
                                 buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300))


class Gateway:
    """One per app (ctx.components["gateway"]): the route table, the token cache, the pools."""

    def __init__(self, ctx: Any, registry: CollectorRegistry | None = None):
        self.ctx = ctx
        self.table = RouteTable()
        self.tokens = TokenCache(ctx.sessions)
        self.counts = InvocationCounts()
        self.balancer = Balancer()
        self.upstreams = Upstreams()
        self.metrics = GatewayMetrics(registry)

    # --- the route table (written by the refresher thread, read by the proxy) ----------------
    def publish(self, entries: list[RouteEntry]) -> None:
        current = self.table
        if tuple(entries) != current.entries:
            self.table = RouteTable.build(entries, current.generation + 1)

    async def aclose(self) -> None:
        await self.upstreams.aclose()

    # --- endpoints -----------------------------------------------------------------------------
    async def _caller(self, request: Request) -> Principal | None:
        return await self.tokens.principal(_bearer(request))

    @staticmethod
    def _unauthorized() -> JSONResponse:
        return openai_error(401, "invalid_api_key", "missing, unknown or revoked token "
                                                    "(Authorization: Bearer <your Modelyard token>)")

    @staticmethod
    def _not_found(model: str) -> JSONResponse:
        return openai_error(404, "model_not_found",
                            f"The model `{model}` does not exist or you do not have access to it.")

    async def list_models(self, request: Request) -> Response:
        principal = await self._caller(request)
        if principal is None:
            return self._unauthorized()
        data = [{"id": name, "object": "model", "created": 0, "owned_by": entry.owner_id}
                for name, entry in self.table.models_for(principal)]
        return JSONResponse({"object": "list", "data": data})

    async def get_model(self, request: Request) -> Response:
        principal = await self._caller(request)
        if principal is None:
            return self._unauthorized()
        model = request.path_params["model"]
        cands = self.table.resolve(model, principal)
        if cands is None or cands.entry.kind != "openai":
            return self._not_found(model)
        return JSONResponse({"id": model, "object": "model", "created": 0, "owned_by": cands.entry.owner_id})

    async def openai(self, request: Request) -> Response:
        """POST /v1/{path}: chat/completions, completions, embeddings, ... routed by `model`."""
        principal = await self._caller(request)
        if principal is None:
            return self._unauthorized()
        body = await request.body()
        try:
            payload = json.loads(body)
        except (ValueError, RecursionError):
            return openai_error(400, "invalid_json", "the request body is not valid JSON")
        model = payload.get("model") if isinstance(payload, dict) else None
        if not isinstance(model, str) or not model:
            return openai_error(400, "missing_model", "the body needs `model`: a service name, "
                                                      "SERVICE:VERSION or an adapter name a service serves")
        table = self.table
        cands = table.resolve(model, principal)
        if cands is None:
            return self._not_found(model)
        if cands.entry.kind != "openai":
            return openai_error(400, "not_an_openai_service", f"service `{cands.entry.name}` is a template "
                                f"service: call it at /serving/{cands.entry.name}/...")
        bodies: dict[str, bytes] = {model: body}

        def body_for(served: str) -> bytes:
            if served not in bodies:
                bodies[served] = json.dumps({**payload, "model": served}, ensure_ascii=False).encode()
            return bodies[served]

        headers = [(k, v) for k, v in request.headers.raw if k.decode("latin-1").lower() not in _OPENAI_DROPPED]
        # the body was JSON whatever the client declared (curl -d says form-urlencoded); the answer
        # is rewritten as bytes, so it must come unencoded
        headers += [(b"content-type", b"application/json"), (b"accept-encoding", b"identity")]
        return await self._forward(table, cands, "POST", _raw_path(request), request.url.query, headers,
                                   body_for, model)

    async def serving(self, request: Request) -> Response:
        """Any method at /serving/{service}/{path}: passed through to a replica of the service."""
        principal = await self._caller(request)
        if principal is None:
            return self._unauthorized()
        name = request.path_params["service"]
        table = self.table
        cands = table.resolve(name, principal)
        if cands is None or cands.served_name is not None:
            return openai_error(404, "service_not_found", f"no service `{name}` (or it is not yours)")
        body = await request.body()
        headers = [(k, v) for k, v in request.headers.raw if k.decode("latin-1").lower() not in _NOT_FORWARDED]
        client = request.client.host if request.client else ""
        headers += [(b"x-forwarded-prefix", f"/serving/{name}".encode()),
                    (b"x-forwarded-proto", request.url.scheme.encode()),
                    (b"x-forwarded-host", request.headers.get("host", "").encode("latin-1")),
                    (b"x-forwarded-for", client.encode())]
        # /serving/<service>/<rest>: the replica gets /<rest>, still percent-encoded as it came
        rest = _raw_path(request).split("/", 3)[3:]
        return await self._forward(table, cands, request.method, "/" + (rest[0] if rest else ""),
                                   request.url.query, headers, lambda _served: body, None)

    # --- forwarding ----------------------------------------------------------------------------
    async def _forward(self, table: RouteTable, cands: Candidates, method: str, path: str, query: str,
                       headers: list[tuple[bytes, bytes]], body_for: Callable[[str], bytes],
                       model: str | None) -> Response:
        entry = cands.entry
        self.upstreams.prune(table)
        url = path + ("?" + query if query else "")
        tried: set[str] = set()
        while True:
            picked = self.balancer.pick(cands, tried)
            if picked is None:
                self._account(entry, 503 if not tried else 502, 0.0)
                if not tried:
                    busy = openai_error(503, "no_ready_replica", self._unavailable(entry), "service_unavailable")
                    if entry.state in _WAITING_STATES:
                        busy.headers["retry-after"] = str(RETRY_AFTER_S)  # clients that honour it wait
                    return busy
                return openai_error(502, "upstream_unreachable",
                                    f"no replica of service `{entry.name}` could be reached; try again")
            version, replica = picked
            served = model
            if model is not None:
                served = cands.served_name or (replica.served_names[0] if replica.served_names else model)
            client = self.upstreams.client(replica.socket_path)
            # a Request built directly: the client's build_request would re-merge and re-parse the URL
            request = httpx.Request(method, _upstream_url(url), content=body_for(served), headers=headers)
            self.balancer.acquire(replica)
            self.upstreams.acquire(replica.socket_path)
            start = time.perf_counter()
            try:
                upstream = await client.send(request, stream=True)
            except RETRYABLE:
                self._release(replica)
                self.balancer.mark_down(replica)
                tried.add(replica.replica_id)
                if len(tried) >= 2:  # one retry on another replica, no more
                    cands = Candidates(entry, ())
                continue
            except httpx.HTTPError as exc:
                self._release(replica)
                self._account(entry, 502, time.perf_counter() - start)
                return openai_error(502, "upstream_error", f"replica of `{entry.name}` failed: {exc!r}")
            except BaseException:
                self._release(replica)
                raise
            return await self._answer(entry, replica, upstream, start, served, model)

    async def _answer(self, entry: RouteEntry, replica: RouteReplica, upstream: httpx.Response,
                      start: float, served: str | None, model: str | None) -> Response:
        rewrite = _model_rewriter(served, model) if model is not None and served != model else None
        openai_path = model is not None
        drop = _ANSWER_DROPPED if openai_path else _ANSWER_DROPPED - {"content-length"}
        headers = [(k, v) for k, v in upstream.headers.raw if k.decode("latin-1").lower() not in drop]
        finished = False

        def done(failed: bool) -> None:
            nonlocal finished
            if finished:
                return
            finished = True
            self._release(replica)
            self._account(entry, upstream.status_code, time.perf_counter() - start, failed=failed)

        streamed = upstream.headers.get("content-type", "").startswith("text/event-stream")
        if streamed or not openai_path:
            chunks = upstream.aiter_raw()
            if rewrite is not None:
                chunks = _rewrite_lines(chunks, rewrite)
            return _Relay(upstream, chunks, headers, done)  # type: ignore[return-value]
        try:
            content = await upstream.aread()
        except httpx.HTTPError as exc:
            done(True)
            return openai_error(502, "upstream_error", f"replica of `{entry.name}` broke off: {exc!r}")
        except BaseException:
            done(True)
            raise
        finally:
            await upstream.aclose()
        done(upstream.status_code >= 500)
        if rewrite is not None:
            content = rewrite(content)
        response = Response(content, status_code=upstream.status_code)
        response.raw_headers = headers + [(b"content-length", str(len(content)).encode())]
        return response

    def _release(self, replica: RouteReplica) -> None:
        self.balancer.release(replica)
        self.upstreams.release(replica.socket_path)

    def _account(self, entry: RouteEntry, status: int, seconds: float, *, failed: bool | None = None) -> None:
        failed = status >= 500 if failed is None else failed
        self.counts.add(entry.service_id, failed=failed)
        self.metrics.requests.labels(entry.name, str(status)).inc()
        if seconds:
            self.metrics.latency.labels(entry.name).observe(seconds)

    @staticmethod
    def _unavailable(entry: RouteEntry) -> str:
        if entry.state in _WAITING_STATES:
            return f"service `{entry.name}` is {entry.state}: no replica is ready yet; try again shortly"
        if entry.state in ("saved", "stopping", "stopped"):
            return f"service `{entry.name}` is {entry.state}: start it to call it"
        return f"service `{entry.name}` ({entry.state}) has no ready replica right now"
