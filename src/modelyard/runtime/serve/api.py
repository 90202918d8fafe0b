"""The replica's OpenAI-compatible HTTP app: /v1/models, /v1/completions, /v1/chat/completions,
/livez, /readyz, /metrics. The engine arrives later (`state.engine`, set by the loader thread once
the weights are loaded and a warm-up generation ran); until then /readyz and the /v1 routes say 503.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from dataclasses import dataclass, field

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException

from .metrics import ReplicaMetrics
from .requests import ApiError, GenerationRequest, parse_chat, parse_completion

DISCONNECT_POLL_S = 0.5


@dataclass
class ReplicaState:
    metrics: ReplicaMetrics = field(default_factory=ReplicaMetrics)
    engine: object | None = None  # engine.Engine once ready
    load_error: str | None = None
    served_names: list[str] = field(default_factory=list)


def _error(exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status)


class TextTracker:
    """Turns the growing token list into text deltas, holding back what might still become a stop
    string or an incomplete UTF-8 character, and cuts the text at the first stop string."""

    def __init__(self, tokenizer, stops: list[str]):
        self.tokenizer, self.stops = tokenizer, stops
        self.sent = 0  # characters of the text already handed out
        self.stopped = False
        self.text = ""

    def update(self, tokens: list[int], final: bool = False) -> str:
        text = self.tokenizer.decode(tokens, skip_special_tokens=True)
        for s in self.stops:
            at = text.find(s)
            if at != -1:
                text, self.stopped, final = text[:at], True, True
        self.text = text
        safe = len(text)
        if not final:
            if text.endswith("\ufffd"):
                safe = len(text.rstrip("\ufffd"))
            for s in self.stops:  # a tail that is a prefix of a stop string is not sent yet
                for k in range(min(len(s) - 1, len(text)), 0, -1):
                    if text.endswith(s[:k]):
                        safe = min(safe, len(text) - k)
                        break
        delta = text[self.sent:safe] if safe > self.sent else ""
        self.sent = max(self.sent, safe)
        return delta


def build_app(state: ReplicaState, on_startup=None) -> FastAPI:
    """`on_startup` runs once the server starts (it starts the loader thread)."""

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        if on_startup is not None:
            on_startup()
        yield

    app = FastAPI(title="modelyard replica (transformers)", docs_url=None, redoc_url=None, openapi_url=None,
                  lifespan=lifespan)
    m = state.metrics

    @app.exception_handler(ApiError)
    async def _api_error(_request, exc: ApiError):
        return _error(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request, exc: RequestValidationError):
        return _error(ApiError(422, f"invalid request: {exc.errors()}"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request, exc: StarletteHTTPException):
        return _error(ApiError(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None))

    @app.get("/livez")
    async def livez():
        if state.engine is not None and not state.engine.healthy():
            return JSONResponse({"status": "dead", "error": "a generation loop stopped"}, status_code=503)
        return {"status": "alive"}

    @app.get("/readyz")
    async def readyz():
        if state.engine is not None:
            if not state.engine.healthy():
                return JSONResponse({"status": "failed", "error": "a generation loop stopped"}, status_code=503)
            return {"status": "ready"}
        if state.load_error:
            return JSONResponse({"status": "failed", "error": state.load_error}, status_code=503)
        return JSONResponse({"status": "loading"}, status_code=503)

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)

    def engine():
        if state.engine is None:
            raise ApiError(503, state.load_error or "the model is still loading; retry when /readyz answers 200",
                           type_="service_unavailable", code="loading")
        return state.engine

    @app.get("/v1/models")
    async def models():
        eng = engine()
        data = [{"id": name, "object": "model", "created": sm.created, "owned_by": "modelyard",
                 "root": sm.root, "parent": None if sm.root == name else sm.root,
                 "max_model_len": eng.max_model_len, "dtype": eng.dtype, "device": eng.device}
                for name, sm in eng.models.items()]
        return {"object": "list", "data": data}

    async def _read_json(request: Request) -> dict:
        try:
            body = json.loads(await request.body() or b"null")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from exc
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return body

    async def _serve(request: Request, chat: bool):
        endpoint = "chat" if chat else "completions"
        try:
            eng = engine()
            body = await _read_json(request)
            req = (parse_chat if chat else parse_completion)(body, eng.tokenizer)
            if req.model not in eng.models:
                raise ApiError(404, f"the model '{req.model}' does not exist here; served: {sorted(eng.models)}",
                               param="model", code="model_not_found")
            room = eng.max_model_len - len(req.prompt_ids)
            if room < 1 or (req.max_tokens is not None and req.max_tokens > room):
                raise ApiError(400, f"this model's maximum context length is {eng.max_model_len} tokens; the prompt "
                               f"has {len(req.prompt_ids)} and max_tokens asks {req.max_tokens or 1}",
                               param="max_tokens", code="context_length_exceeded")
        except ApiError as exc:
            m.requests.labels(endpoint, str(exc.status)).inc()
            return _error(exc)
        max_new = req.max_tokens if req.max_tokens is not None else room
        m.prompt_tokens.inc(len(req.prompt_ids))
        if req.stream:
            return StreamingResponse(_sse(eng, req, max_new, chat, endpoint), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return await _whole(request, eng, req, max_new, chat, endpoint)

    async def _generate(eng, req: GenerationRequest, max_new: int, tracker: TextTracker):
        """Yields (text delta, Finished | None); closes (cancels) the engine request on a stop string."""
        from .engine import Finished

        t0 = time.perf_counter()
        m.queue_depth.inc()
        first = True
        produced = 0
        tracker_tokens: list[int] = []
        try:
            async with contextlib.aclosing(eng.stream(req.model, req.prompt_ids, req.params, max_new)) as gen:
                async for item in gen:
                    if isinstance(item, Finished):
                        tail = tracker.update(tracker_tokens, final=True)
                        yield tail, item
                        return
                    tracker_tokens = item
                    if first:
                        first = False
                        m.ttft.observe(time.perf_counter() - t0)
                        m.queue_depth.dec()
                        m.running.inc()
                    m.add_generated(len(item) - produced)
                    produced = len(item)
                    delta = tracker.update(item)
                    if tracker.stopped:
                        yield delta, Finished("stop", len(req.prompt_ids), produced)
                        return
                    if delta:
                        yield delta, None
        finally:
            if first:
                m.queue_depth.dec()
            else:
                m.running.dec()
            m.latency.observe(time.perf_counter() - t0)

    def _usage(fin) -> dict:
        return {"prompt_tokens": fin.prompt_tokens, "completion_tokens": fin.completion_tokens,
                "total_tokens": fin.prompt_tokens + fin.completion_tokens}

    async def _whole(request: Request, eng, req, max_new: int, chat: bool, endpoint: str):
        tracker = TextTracker(eng.tokenizer, req.stop)

        async def collect():
            async with contextlib.aclosing(_generate(eng, req, max_new, tracker)) as gen:
                async for _delta, fin in gen:
                    if fin is not None:
                        return fin

        task = asyncio.ensure_future(collect())
        while not task.done():  # a client that hangs up cancels its generation
            await asyncio.wait([task], timeout=DISCONNECT_POLL_S)
            if not task.done() and await request.is_disconnected():
                task.cancel()
                m.requests.labels(endpoint, "499").inc()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return Response(status_code=499)
        try:
            fin = task.result()
        except Exception as exc:
            m.requests.labels(endpoint, "500").inc()
            return _error(ApiError(500, f"generation failed: {exc}", type_="server_error"))
        rid, created = uuid.uuid4().hex, int(time.time())
        if chat:
            body = {"id": f"chatcmpl-{rid}", "object": "chat.completion", "created": created, "model": req.model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": tracker.text},
                                 "logprobs": None, "finish_reason": fin.finish_reason}], "usage": _usage(fin)}
        else:
            body = {"id": f"cmpl-{rid}", "object": "text_completion", "created": created, "model": req.model,
                    "choices": [{"index": 0, "text": tracker.text, "logprobs": None,
                                 "finish_reason": fin.finish_reason}], "usage": _usage(fin)}
        m.requests.labels(endpoint, "200").inc()
        return JSONResponse(body)

    async def _sse(eng, req, max_new: int, chat: bool, endpoint: str):
        rid, created = uuid.uuid4().hex, int(time.time())
        base = ({"id": f"chatcmpl-{rid}", "object": "chat.completion.chunk"} if chat
                else {"id": f"cmpl-{rid}", "object": "text_completion"})
        base.update(created=created, model=req.model)

        def chunk(delta: str | None, reason: str | None, role: bool = False) -> str:
            if chat:
                d = {"role": "assistant", "content": ""} if role else ({"content": delta} if delta is not None else {})
                choice = {"index": 0, "delta": d, "logprobs": None, "finish_reason": reason}
            else:
                choice = {"index": 0, "text": delta or "", "logprobs": None, "finish_reason": reason}
            body = dict(base, choices=[choice])
            if req.include_usage:
                body["usage"] = None
            return f"data: {json.dumps(body)}\n\n"

        tracker = TextTracker(eng.tokenizer, req.stop)
        status = "200"
        try:
            if chat:
                yield chunk(None, None, role=True)
            async with contextlib.aclosing(_generate(eng, req, max_new, tracker)) as gen:
                async for delta, fin in gen:
                    if delta:
                        yield chunk(delta, None)
                    if fin is not None:
                        yield chunk(None, fin.finish_reason)
                        if req.include_usage:
                            yield f"data: {json.dumps(dict(base, choices=[], usage=_usage(fin)))}\n\n"
            yield "data: [DONE]\n\n"
        except asyncio.CancelledError:  # the client went away: _generate's closing cancelled the request
            status = "499"
            raise
        except Exception as exc:
            status = "500"
            err = ApiError(500, f"generation failed: {exc}", type_="server_error")
            yield f"data: {json.dumps(err.body())}\n\n"
        finally:
            m.requests.labels(endpoint, status).inc()

    @app.post("/v1/completions")
    async def completions(request: Request):
        return await _serve(request, chat=False)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        return await _serve(request, chat=True)

    return app
