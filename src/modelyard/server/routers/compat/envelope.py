"""Response envelopes of the seed's modules. A seed route's router is made with
`compat_router(STYLE)`: its handlers return `ok(...)`, and any error raised inside becomes the
same envelope with success=false, the error's HTTP status, its message, and `reason` (our code).

Styles (seed 000):
- RESULT    §1, §2, §8:  {"success", "errorCode", "message", "result"}
- DATA      §3, §6, §7:  {"code", "success", "message", "data"}
- RETURN    §4, §5:      {"returnCode", "success", "message", "data"}
- ZSTACK    seed 003:     the payload as is ({"inventory": ...}); errors {"error": {"code",
                          "description", "details", "elaboration", "opaque", "cause"}}
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import DataError

from modelyard.core.errors import ModelyardError

RESULT, DATA, RETURN, ZSTACK = "result", "data", "returnCode", "zstack"


def body(style: str, *, success: bool, status: int, message: str, payload: Any) -> dict:
    if style == ZSTACK:
        return payload if success else {"error": {"code": str(status), "description": message, "details": message,
                                                  "elaboration": None, "opaque": None, "cause": None}}
    if style == RESULT:
        return {"success": success, "errorCode": status, "message": message, "result": payload}
    if style == DATA:
        return {"code": status, "success": success, "message": message, "data": payload}
    return {"returnCode": 0 if success else status, "success": success, "message": message, "data": payload}


def ok(style: str, payload: Any = None, message: str = "success") -> JSONResponse:
    return JSONResponse(jsonable_encoder(body(style, success=True, status=200, message=message, payload=payload)))


def fail(style: str, status: int, message: str, reason: str, details: Any = None) -> JSONResponse:
    content = body(style, success=False, status=status, message=message, payload=None)
    if style == ZSTACK:  # ZStack's ErrorCode: code = our stable reason, description = the summary
        content["error"]["code"] = reason
        content["error"]["description"] = message.split(":")[0][:200]
        if details is not None:
            content["error"]["opaque"] = details
        return JSONResponse(jsonable_encoder(content), status_code=status)
    content["reason"] = reason
    if details is not None:
        content["details"] = details
    return JSONResponse(jsonable_encoder(content), status_code=status)


def unstorable(exc: Exception) -> tuple[str, str]:
    """(code, message) for a value the database refused (a backstop: the schemas bound numbers)."""
    if isinstance(exc, OverflowError):
        return "value_out_of_range", "a number in the request is out of the range the server can store"
    return "invalid_value", f"a value in the request cannot be stored: {str(getattr(exc, 'orig', exc))[:200]}"


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for e in exc.errors()[:5]:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body", "query", "form"))
        parts.append(f"{loc}: {e.get('msg')}" if loc else str(e.get("msg")))
    return "invalid request: " + "; ".join(parts)


def compat_router(style: str, **kwargs) -> APIRouter:
    class EnvelopeRoute(APIRoute):
        envelope_style = style  # server/guards.py answers its refusals in this envelope too

        def get_route_handler(self) -> Callable:
            handler = super().get_route_handler()

            async def wrapped(request: Request) -> Response:
                try:
                    return await handler(request)
                except ModelyardError as exc:
                    request.state.failed = True  # the request's session rolls back (deps.get_session)
                    return fail(style, exc.status, exc.message, exc.code, exc.details)
                except RequestValidationError as exc:
                    request.state.failed = True
                    return fail(style, 400, _validation_message(exc), "invalid_request",
                                jsonable_encoder(exc.errors(), custom_encoder={Exception: str}))
                except (OverflowError, DataError) as exc:  # a number the database cannot hold
                    request.state.failed = True
                    code, message = unstorable(exc)
                    return fail(style, 422, message, code)

            return wrapped

    kwargs.setdefault("tags", ["seed compatibility"])
    return APIRouter(route_class=EnvelopeRoute, **kwargs)
