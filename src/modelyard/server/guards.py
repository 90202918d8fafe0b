"""Request guards run once for every route, before any handler parses anything (an ASGI
middleware, so native and seed routes are covered alike):

- the body size: at most settings.request_body_max_bytes (default 16 MiB), refused from the
  Content-Length header at once or, for a body without one, as soon as the bytes passed it: 413
  `body_too_large`. The streaming upload endpoints (resumable chunks, multipart file uploads) are
  exempt: their bodies go to disk as they arrive, bounded by the chunk size / the storage quota.
- JSON bodies (declared JSON, or undeclared ones that look like JSON: seed handlers call
  request.json() whatever the content type): nesting deeper than MAX_JSON_DEPTH is refused
  before any parser recurses (422 `json_too_deep`); NaN / Infinity / numbers that overflow a
  double (422 `json_not_finite`), lone UTF-16 surrogates that no database can store (422
  `invalid_unicode`) and a body that is not UTF-8 or holds a number too long to read (422
  `invalid_json`). Malformed JSON is left to the route (its usual validation error). Bodies
  for the serving gateway (/v1/..., /serving/...) get only the size limit.
- the query string: at most MAX_QUERY_BYTES (414 `query_too_long`); single parameters have their
  own limits in the routes (routers/params.py).

Errors answer in the route's shape: {"error": {"code", "message"}} on native routes, the seed's
envelope (routers/compat/envelope.py) on seed routes."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.server.routers.compat.envelope import fail

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_JSON_DEPTH = 64
MAX_QUERY_BYTES = 32 * 1024

# Bodies streamed to disk by their handlers (their own limits apply).
_STREAMED = re.compile(r"^(?:/api/v1/uploads/[^/]+/chunks/[^/]+|/api/v1/files/upload"
                       r"|/api/file/file/uploadFolder|/api/file/file/uploadPublicFolder)/?$")
# Bodies the serving gateway passes on to replicas: only the size limit applies here (the gateway
# reads `model` itself and refuses what it cannot parse; the replica validates the rest), so the
# proxy's hot path parses a body once, not twice.
_PROXIED = re.compile(r"^/(?:v1|serving)/")
_NOT_JSON = ("multipart/", "application/x-www-form-urlencoded", "application/octet-stream")
_STRING = re.compile(rb'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_BRACKETS_ONLY = bytes(range(256)).translate(None, b"[]{}")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class GuardError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class _BodyTooLarge(Exception):
    pass


class _NonFinite(Exception):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NonFinite(name)


def json_depth_exceeds(body: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the arrays/objects of a JSON text nest deeper than limit, found without parsing:
    string literals dropped, then the innermost `[]` pairs removed once per level (C-speed passes,
    at most limit + 1 of them)."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    s = _STRING.sub(b"", body).translate(None, _BRACKETS_ONLY).translate(bytes.maketrans(b"{}", b"[]"))
    for _ in range(limit):
        shorter = s.replace(b"[]", b"")
        if shorter == s:  # done (or unbalanced: the parser reports that)
            return False
        s = shorter
    return b"[]" in s


def check_json(body: bytes, *, declared: bool, max_depth: int = MAX_JSON_DEPTH) -> GuardError | None:
    """The refusal for a JSON body, or None (fine, or malformed: left to the route)."""
    if json_depth_exceeds(body, max_depth):
        return GuardError(422, "json_too_deep", f"JSON nested deeper than {max_depth} levels")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return GuardError(422, "invalid_json", "the JSON body is not UTF-8") if declared else None
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except _NonFinite as exc:
        return GuardError(422, "json_not_finite", f"{exc} is not a JSON number")
    except json.JSONDecodeError:
        return None
    except RecursionError:
        return GuardError(422, "json_too_deep", f"JSON nested deeper than {max_depth} levels")
    except ValueError as exc:  # e.g. an integer of more digits than Python reads
        return GuardError(422, "invalid_json", f"invalid JSON: {exc}")
    surrogates = _SURROGATE_ESCAPE.search(text) is not None
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, float):
            if not math.isfinite(v):
                return GuardError(422, "json_not_finite", "a number in the body overflows a double")
        elif surrogates and isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return GuardError(422, "invalid_unicode", "the body holds a lone UTF-16 surrogate (\\ud800-\\udfff)")
    return None


def _json_like(content_type: str, body: bytes) -> tuple[bool, bool]:
    """(check it?, declared JSON?)"""
    ct = content_type.split(";", 1)[0].strip().lower()
    if ct.startswith(_NOT_JSON):
        return False, False
    declared = ct == "application/json" or (ct.startswith("application/") and ct.endswith("+json"))
    if declared:
        return True, True
    head = body.lstrip()[:1]
    return head in (b"{", b"["), False


def envelope_styles(routers) -> list[tuple[re.Pattern, str]]:
    """(path pattern, envelope style) of the seed routes of these routers (compat_router's)."""
    return [(route.path_regex, route.envelope_style) for router in routers for route in router.routes
            if getattr(route, "envelope_style", None) and getattr(route, "path_regex", None) is not None]


def error_response(scope: Scope, err: GuardError,
                   envelopes: list[tuple[re.Pattern, str]] = ()) -> JSONResponse:
    """err in the shape of the route the request was for."""
    style = next((s for pattern, s in envelopes if pattern.match(scope["path"])), None)
    if style is not None:
        return fail(style, err.status, err.message, err.code)
    return JSONResponse({"error": {"code": err.code, "message": err.message}}, status_code=err.status)


class RequestGuard:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 max_json_depth: int = MAX_JSON_DEPTH, envelopes: list[tuple[re.Pattern, str]] = ()):
        self.app, self.max_body, self.max_depth = app, max_body_bytes, max_json_depth
        self.envelopes = list(envelopes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if len(scope.get("query_string", b"")) > MAX_QUERY_BYTES:
            await self._refuse(scope, receive, send, GuardError(
                414, "query_too_long", f"the query string is longer than {MAX_QUERY_BYTES} bytes"))
            return
        limit = None if _STREAMED.match(scope["path"]) else self.max_body
        headers = Headers(scope=scope)
        if limit is not None:
            declared = _content_length(headers)
            if declared is not None and declared > limit:
                await self._refuse(scope, receive, send, _too_large(limit))
                return
        if scope["method"] in ("GET", "HEAD", "OPTIONS") and "content-length" not in headers \
                and "transfer-encoding" not in headers:
            await self.app(scope, receive, send)
            return
        content_type = headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower().startswith(_NOT_JSON) or _PROXIED.match(scope["path"]):
            await self._limited(scope, receive, send, limit)
            return
        # a body that may be JSON: read it whole (bounded), check it, hand it on
        chunks: list[bytes] = []
        total = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            piece = message.get("body", b"")
            total += len(piece)
            if limit is not None and total > limit:
                await self._refuse(scope, receive, send, _too_large(limit))
                return
            chunks.append(piece)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        check, declared = _json_like(content_type, body)
        if check and body:
            err = check_json(body, declared=declared, max_depth=self.max_depth)
            if err is not None:
                await self._refuse(scope, receive, send, err)
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send, limit: int | None) -> None:
        """Pass a non-JSON body through, counting it against limit while it streams."""
        if limit is None:
            await self.app(scope, receive, send)
            return
        state = {"total": 0, "over": False, "started": False}

        async def counting() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state["total"] += len(message.get("body", b""))
                if state["total"] > limit:
                    state["over"] = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            if state["over"]:
                # the handler turned the interrupted read into a response of its own: answer 413
                if message["type"] == "http.response.start" and not state["started"]:
                    state["started"] = True
                    await error_response(scope, _too_large(limit), self.envelopes)(scope, receive, send)
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, counting, guarded_send)
        except _BodyTooLarge:
            if not state["started"]:
                await error_response(scope, _too_large(limit), self.envelopes)(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, err: GuardError) -> None:
        await error_response(scope, err, self.envelopes)(scope, receive, send)


def _too_large(limit: int) -> GuardError:
    return GuardError(413, "body_too_large", f"the request body is larger than {limit} bytes")


def _content_length(headers: Headers) -> int | None:
    try:
        return int(headers.get("content-length", ""))
    except ValueError:
        return None
